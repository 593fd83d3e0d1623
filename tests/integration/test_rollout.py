"""Rollout against a real model server: load first, then move `stable`; failures change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from testkit import save_tiny_model

from aimass.platform.errors import ServingError
from aimass.platform.settings import Settings
from aimass.serving.client import ServingClient
from aimass.serving.config import (
    find_model,
    list_versions,
    read_config,
    server_config,
    write_config,
)
from aimass.serving.rollout import (
    MARKER,
    WARMUP_FILE,
    CanaryPolicy,
    rollback,
    rollout,
    serving_config_path,
)
from aimass.serving.server import ModelServer

pytestmark = pytest.mark.integration

MODEL = "taxi"
SAMPLE = {
    "fare": np.array([10.0, 3.0], dtype=np.float32),
    "company": np.array([b"Flash Cab", b"Other"], dtype=object),
    "trip_start_hour": np.array([5, 23], dtype=np.int64),
}


_RNG = np.random.default_rng(3)
# Holdout-like rows for the canary analysis.
ROWS = {
    "fare": _RNG.uniform(2, 40, 120).astype(np.float32),
    "company": np.array([b"Flash Cab", b"Other"] * 60, dtype=object),
    "trip_start_hour": _RNG.integers(0, 24, 120).astype(np.int64),
}
# Candidates in these tests differ by a bias on purpose; the prediction-shift bar is tested alone.
ANY_SHIFT = CanaryPolicy(max_mean_shift=float("inf"))
# A sandbox server costs ~10 s of TensorFlow start-up: tests of other steps skip it.
NO_SANDBOX = {"infra_validation": False}


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
        canary_rows=ROWS,
        **{"policy": ANY_SHIFT, **NO_SANDBOX, **kwargs},  # type: ignore[arg-type]
    )


def _stable(settings: Settings) -> int | None:
    return _labels(settings).get("stable")


def _labels(settings: Settings) -> dict[str, int]:
    entry = find_model(read_config(serving_config_path(settings)), MODEL)
    return {} if entry is None else dict(entry.version_labels)


def _served_versions(settings: Settings) -> list[int]:
    entry = find_model(read_config(serving_config_path(settings)), MODEL)
    return [] if entry is None else sorted(entry.model_version_policy.specific.versions)


def test_first_and_second_rollout_move_stable_and_keep_previous_loaded(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    settings, client = served
    lineage = {"mlflow_run_id": "abc123", "partition": "/lake/clean/taxi/ds=2026-01-01"}
    first = _roll(
        served, _candidate(tmp_path, "a", 0.0), "7", lineage=lineage, infra_validation=True
    )
    assert first["serving_version"] == 1 and first["previous_version"] is None
    assert _stable(settings) == 1
    np.testing.assert_allclose(first["grpc_probabilities"], _expected(0.0), atol=1e-3)
    # The served version leads back to its registry version, run and data partition.
    marker = json.loads((settings.serving_base / MODEL / "1" / MARKER).read_text())
    assert marker == {**lineage, "registry_version": "7"}

    # it passed infra validation in a sandbox and ships its warm-up requests
    assert first["infra_validation"]["output"] == "probabilities"
    assert first["canary"] is None  # nothing to compare with on a first deploy
    assert (settings.serving_base / MODEL / "1" / WARMUP_FILE).is_file()

    second = _roll(served, _candidate(tmp_path, "b", -2.0), "8")
    assert second["serving_version"] == 2 and second["previous_version"] == 1
    assert _labels(settings) == {"stable": 2, "previous": 1}
    # the canary analysis replayed the holdout rows to both and wrote down every check
    canary = second["canary"]
    assert canary["passed"] and canary["canary"]["requests"] == 120
    assert canary["canary"]["errors"] == 0 and len(canary["checks"]) == 3
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

    with pytest.raises(
        ServingError, match="(?s)infra validation.*Wire format was corrupt.*'stable' stays at 1"
    ):
        _roll(served, broken, "2", load_timeout_s=60, infra_validation=True)
    assert _stable(settings) == 1
    # rejected in the sandbox: production never saw a version 2 folder
    assert list_versions(settings.serving_base / MODEL) == [1]
    assert not [p for p in (settings.serving_base / MODEL).iterdir() if p.name != "1"]
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


def test_a_canary_that_answers_nonsense_is_not_promoted(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    """It loads and answers, but every probability is ~0: the prediction-shift bar stops it."""
    settings, client = served
    _roll(served, _candidate(tmp_path, "good", 0.0), "1")
    strict = CanaryPolicy()  # the default bars
    with pytest.raises(ServingError, match="canary analysis failed: FAIL prediction shift"):
        _roll(served, _candidate(tmp_path, "constant", -40.0), "2", policy=strict)
    assert _labels(settings) == {"stable": 1}
    assert _served_versions(settings) == [1]
    answer = client.predict_grpc(MODEL, SAMPLE, label="stable")["probabilities"]
    np.testing.assert_allclose(answer, _expected(0.0), atol=1e-3)
    # a close retrain passes the same default bars
    close = _roll(served, _candidate(tmp_path, "close", 0.05), "3", policy=strict)
    assert close["canary"]["passed"] and _stable(settings) == close["serving_version"]


def test_older_versions_unload_beyond_keep_and_rollback_moves_stable_back(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    settings, client = served
    for number, bias in ((1, 0.0), (2, -1.0), (3, -2.0)):
        _roll(served, _candidate(tmp_path, f"v{number}", bias), str(number))
    assert _labels(settings) == {"stable": 3, "previous": 2}
    assert _served_versions(settings) == [2, 3]  # keep_versions=2: version 1 unloaded
    states = {s["version"]: s["state"] for s in client.model_status(MODEL)}
    assert states[3] == "AVAILABLE" and states[2] == "AVAILABLE"

    back = rollback(settings, client, model_name=MODEL, sample=SAMPLE)
    assert (back["serving_version"], back["rolled_back_from"]) == (2, 3)
    assert back["marker"]["registry_version"] == "2"
    assert _labels(settings) == {"stable": 2, "previous": 3}
    answer = client.predict_grpc(MODEL, SAMPLE, label="stable")["probabilities"]
    np.testing.assert_allclose(answer, _expected(-1.0), atol=1e-3)

    # an unloaded version on disk can be the target too: it is loaded first
    oldest = rollback(settings, client, model_name=MODEL, sample=SAMPLE, version=1)
    assert oldest["serving_version"] == 1 and _labels(settings) == {"stable": 1, "previous": 2}
    answer = client.predict_grpc(MODEL, SAMPLE, label="stable")["probabilities"]
    np.testing.assert_allclose(answer, _expected(0.0), atol=1e-3)

    with pytest.raises(ServingError, match="no version 9"):
        rollback(settings, client, model_name=MODEL, version=9)
    with pytest.raises(ServingError, match="already stable"):
        rollback(settings, client, model_name=MODEL, version=1)
    assert _stable(settings) == 1


def test_rollback_tasks_move_stable_and_champion_and_record_who_and_why(
    served: tuple[Settings, ServingClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What aimass_rollback runs: params checked first, then labels and aliases move back."""
    from aimass.platform import tracking
    from aimass.platform.errors import ConfigError
    from aimass.stages.rollback import prepare_rollback, roll_back

    settings, client = served
    # the tasks find the server through the settings, as in Airflow
    monkeypatch.setenv("AIMASS_SERVING_GRPC_PORT", client.grpc_target.rsplit(":", 1)[1])
    monkeypatch.setenv("AIMASS_SERVING_REST_PORT", client.rest_url.rsplit(":", 1)[1])
    name = "chicago_taxi"  # rollback params name a dataset spec
    mlc = tracking.client(settings)
    mlc.create_registered_model(name)
    for number, bias in ((1, 0.0), (2, -1.0)):
        model_dir = _candidate(tmp_path, f"v{number}", bias)
        registry = mlc.create_model_version(name, source=str(model_dir)).version
        rollout(
            settings,
            client,
            model_name=name,
            saved_model_dir=model_dir,
            registry_version=str(registry),
            sample=SAMPLE,
            policy=ANY_SHIFT,
            infra_validation=False,
        )
        tracking.promote(settings, name, str(registry))
    assert str(tracking.version_by_alias(settings, name, "champion").version) == "2"

    with pytest.raises(ConfigError, match="reason='oops' is too short"):
        prepare_rollback({"dataset": name, "reason": "oops"}, who="ana")
    with pytest.raises(ConfigError, match="version=7 is not a served version"):
        prepare_rollback({"dataset": name, "version": 7, "reason": "bad predictions"}, who="ana")
    ctx = prepare_rollback({"dataset": name, "reason": "complaints about v2 scores"}, who="ana")
    assert (ctx["version"], ctx["stable"]) == (1, 2)  # empty version: the 'previous' label

    done = roll_back(ctx)
    assert done["serving_version"] == 1 and done["registry_version"] == "1"
    entry = find_model(read_config(serving_config_path(settings)), name)
    assert entry is not None and dict(entry.version_labels) == {"stable": 1, "previous": 2}
    answer = client.predict_grpc(name, SAMPLE, label="stable")["probabilities"]
    np.testing.assert_allclose(answer, _expected(0.0), atol=1e-3)
    assert str(tracking.version_by_alias(settings, name, "champion").version) == "1"
    assert str(tracking.version_by_alias(settings, name, "previous").version) == "2"
    tags = mlc.get_model_version(name, "1").tags
    assert tags["aimass.rollback_by"] == "ana"
    assert tags["aimass.rollback_reason"] == "complaints about v2 scores"
    record = json.loads(Path(done["record"]).read_text())
    assert record["who"] == "ana" and record["rolled_back_from"] == 2


def test_a_candidate_with_a_new_feature_is_compared_with_the_stable_model_it_replaces(
    served: tuple[Settings, ServingClient], tmp_path: Path
) -> None:
    """Stable takes three inputs, the candidate four (a feature added to the spec): the canary
    sends each version the inputs of its own signature."""
    settings, client = served
    _roll(served, _candidate(tmp_path, "three", 0.0), "1")
    wider = save_tiny_model(tmp_path / "four", 0.02, extra_input="trip_miles")
    rows = {**ROWS, "trip_miles": np.linspace(0.5, 9.0, 120).astype(np.float32)}
    done = rollout(
        settings,
        client,
        model_name=MODEL,
        saved_model_dir=wider,
        registry_version="2",
        sample={k: v[:3] for k, v in rows.items()},
        canary_rows=rows,
        policy=CanaryPolicy(),  # the default bars
        infra_validation=False,
    )
    canary = done["canary"]
    assert canary["passed"], canary["checks"]
    assert canary["stable"]["errors"] == 0 and canary["canary"]["errors"] == 0
    assert canary["mean_shift"] < 0.05
    assert _stable(settings) == 2
