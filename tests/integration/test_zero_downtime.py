"""Zero dropped requests: a steady gRPC + REST stream through a rollout, a rollback and a
broken candidate, against the model server running as its own process."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from testkit import save_tiny_model

from aimass.platform.errors import ServingError
from aimass.platform.settings import Settings
from aimass.serving.client import ServingClient
from aimass.serving.config import find_model, read_config
from aimass.serving.rollout import rollback, rollout, serving_config_path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from loadgen import LoadGenerator, start_model_server  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "taxi"
_RNG = np.random.default_rng(11)
ROWS = {
    "fare": _RNG.uniform(2, 40, 64).astype(np.float32),
    "company": np.array([b"Flash Cab", b"Other"] * 32, dtype=object),
    "trip_start_hour": _RNG.integers(0, 24, 64).astype(np.int64),
}
SAMPLE = {k: v[:3] for k, v in ROWS.items()}


@pytest.fixture
def server(settings: Settings) -> Iterator[ServingClient]:
    """``python -m aimass.serving.server`` on free ports, reading the platform's models.config."""
    proc, client = start_model_server(
        serving_config_path(settings), settings.var_dir / "server.log", timeout_s=120
    )
    try:
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


def _labels(settings: Settings) -> dict[str, int]:
    entry = find_model(read_config(serving_config_path(settings)), MODEL)
    return {} if entry is None else dict(entry.version_labels)


def _roll(settings: Settings, client: ServingClient, model_dir: Path, registry: str) -> dict:
    return rollout(
        settings,
        client,
        model_name=MODEL,
        saved_model_dir=model_dir,
        registry_version=registry,
        sample=SAMPLE,
        canary_rows=ROWS,
    )


def test_rollout_rollback_and_a_broken_candidate_drop_no_request(
    settings: Settings, server: ServingClient, tmp_path: Path
) -> None:
    client = server
    _roll(settings, client, save_tiny_model(tmp_path / "v1", 0.0), "1")
    load = LoadGenerator(client.grpc_target, client.rest_url, MODEL, ROWS, rate_per_s=20)
    with load:
        load.mark("steady")
        time.sleep(3)
        load.mark("rollout")
        done = _roll(settings, client, save_tiny_model(tmp_path / "v2", 0.05), "2")
        assert done["serving_version"] == 2 and done["canary"]["passed"]
        load.mark("after rollout")
        time.sleep(2)
        load.mark("rollback")
        back = rollback(settings, client, model_name=MODEL, sample=SAMPLE)
        assert back["serving_version"] == 1
        load.mark("after rollback")
        time.sleep(2)
        broken = save_tiny_model(tmp_path / "broken", 0.0)
        pb = broken / "saved_model.pb"
        pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])
        load.mark("broken candidate")
        with pytest.raises(ServingError, match="infra validation"):
            _roll(settings, client, broken, "3")
        load.mark("end")
        time.sleep(1)

    report = load.report()
    assert load.failed == 0, report
    # the rollback itself takes well under a second (the target is still loaded)
    assert back["seconds"] < 5
    for phase in ("steady", "rollout", "after rollout", "after rollback", "broken candidate"):
        assert report[phase]["grpc"]["requests"] > 0 and report[phase]["rest"]["requests"] > 0
    assert sum(r["all"]["requests"] for r in report.values()) >= 200
    assert _labels(settings) == {"stable": 1, "previous": 2}
