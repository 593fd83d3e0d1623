"""Rollout against a real model server: load first, then move `stable`; failures change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from testkit import save_tiny_model

from aimass.config import Settings
from aimass.errors import ServingError
from aimass.rollout import MARKER, rollout, serving_config_path
from aimass.serving.client import ServingClient
from aimass.serving.config import (
    find_model,
    list_versions,
    read_config,
    server_config,
    write_config,
)
from aimass.serving.server import ModelServer

pytestmark = pytest.mark.integration

MODEL = "taxi"
SAMPLE = {
    "fare": np.array([10.0, 3.0], dtype=np.float32),
    "company": np.array([b"Flash Cab", b"Other"], dtype=object),
    "trip_start_hour": np.array([5, 23], dtype=np.int64),
}


def _expected(bias: float) -> np.ndarray:
    logit = 0.1 * SAMPLE["fare"] + 0.01 * SAMPLE["trip_start_hour"] + np.array([1.0, 0.0]) + bias
    return 1.0 / (1.0 + np.exp(-logit))


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[Settings, ServingClient]]:
    write_config(serving_config_path(settings), server_config([]))
    server = ModelServer(config_file=serving_config_path(settings), poll_seconds=0.5)
    server.start()
    client = ServingClient(server.grpc_target, server.rest_url)
    try:
        yield settings, client
    finally:
        client.close()
        server.stop()


def _candidate(tmp: Path, name: str, bias: float) -> Path:
    return save_tiny_model(tmp / name, bias)


def _roll(
    served: tuple[Settings, ServingClient],
    saved_model_dir: Path,
    registry_version: str,
    **kwargs: object,
) -> dict:
    settings, client = served
    return rollout(
        settings,
        client,
        model_name=MODEL,
        saved_model_dir=saved_model_dir,
        registry_version=registry_version,
        sample=SAMPLE,
        **kwargs,  # type: ignore[arg-type]
    )


def _stable(settings: Settings) -> int | None:
    entry = find_model(read_config(serving_config_path(settings)), MODEL)
    return None if entry is None else entry.version_labels.get("stable")


def test_first_and_second_rollout_move_stable_and_keep_previous_loaded(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    settings, client = served
    lineage = {"mlflow_run_id": "abc123", "partition": "/lake/clean/taxi/ds=2026-01-01"}
    first = _roll(served, _candidate(tmp_path, "a", 0.0), "7", lineage=lineage)
    assert first["serving_version"] == 1 and first["previous_version"] is None
    assert _stable(settings) == 1
    np.testing.assert_allclose(first["grpc_probabilities"], _expected(0.0), atol=1e-3)
    # The served version leads back to its registry version, run and data partition.
    marker = json.loads((settings.serving_base / MODEL / "1" / MARKER).read_text())
    assert marker == {**lineage, "registry_version": "7"}

    second = _roll(served, _candidate(tmp_path, "b", -2.0), "8")
    assert second["serving_version"] == 2 and second["previous_version"] == 1
    assert _stable(settings) == 2
    by_label = client.predict_grpc(MODEL, SAMPLE, label="stable")["probabilities"]
    np.testing.assert_allclose(by_label, _expected(-2.0), atol=1e-3)
    # the previous version stays loaded for an instant rollback
    states = {s["version"]: s["state"] for s in client.model_status(MODEL)}
    assert states[1] == "AVAILABLE" and states[2] == "AVAILABLE"


def test_retried_rollout_reuses_its_version(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    settings, client = served
    candidate = _candidate(tmp_path, "a", 0.0)
    _roll(served, candidate, "3")
    again = _roll(served, candidate, "3")
    assert again["serving_version"] == 1
    assert list_versions(settings.serving_base / MODEL) == [1]


def test_broken_candidate_never_becomes_stable(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    settings, client = served
    _roll(served, _candidate(tmp_path, "good", 0.0), "1")
    broken = _candidate(tmp_path, "broken", 1.0)
    pb = broken / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])  # a truncated SavedModel

    with pytest.raises(ServingError, match="'stable' stays at 1"):
        _roll(served, broken, "2", load_timeout_s=30)
    assert _stable(settings) == 1
    answer = client.predict_grpc(MODEL, SAMPLE, label="stable")["probabilities"]
    np.testing.assert_allclose(answer, _expected(0.0), atol=1e-3)


def test_not_a_saved_model_is_refused_before_copying(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    settings, client = served
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ServingError, match="not a SavedModel"):
        _roll(served, empty, "1")
    assert (
        not (settings.serving_base / MODEL).exists()
        or list_versions(settings.serving_base / MODEL) == []
    )
