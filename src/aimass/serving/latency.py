"""Latency of SavedModels in the model server, measured side by side in one sandbox.

The compression stage compares a candidate with its compressed variants where they would
run: :func:`sandbox` starts ``python -m aimass.serving.server`` on free loopback ports (as
infra validation does, :func:`aimass.serving.staging.infra_validate`) serving each folder as
one version of a model, and :func:`predict_latency` times gRPC Predict requests at a batch
size. Nothing of production is touched.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import numpy as np

from aimass.platform.errors import ServingError
from aimass.serving.client import ServingClient
from aimass.serving.config import model_config, server_config, write_config

log = logging.getLogger(__name__)

POLL_S = 0.3


@contextmanager
def sandbox(
    model_name: str, saved_models: Sequence[Path], *, timeout_s: float = 180.0
) -> Iterator[ServingClient]:
    """A sandbox model server serving ``saved_models[i]`` as version ``i + 1``; its client.

    Raises:
        ServingError: a version did not become AVAILABLE in ``timeout_s`` (log tail included).
    """
    from aimass.serving.sandbox import sandbox_server, wait_until

    root = Path(tempfile.mkdtemp(prefix=f"aimass-latency-{model_name}-"))
    base = root / model_name
    base.mkdir()
    versions = list(range(1, len(saved_models) + 1))
    for version, folder in zip(versions, saved_models, strict=True):
        (base / str(version)).symlink_to(Path(folder).resolve(), target_is_directory=True)
    config = write_config(
        root / "models.config", server_config([model_config(model_name, base, versions)])
    )
    with sandbox_server(root, [f"--model_config_file={config}"]) as box:

        def ready() -> bool:
            if box.proc.poll() is not None:
                raise ServingError(
                    f"latency sandbox exited ({box.proc.returncode}) loading {model_name}:\n"
                    f"{box.tail()}"
                )
            try:
                states = box.client.model_status(model_name)
            except ServingError:  # still importing TensorFlow
                return False
            available = {s["version"] for s in states if s.get("state") == "AVAILABLE"}
            return available >= set(versions)

        def gave_up() -> NoReturn:
            raise ServingError(
                f"latency sandbox: {model_name} versions {versions} not AVAILABLE after "
                f"{timeout_s:.0f} s:\n{box.tail()}"
            )

        wait_until(ready, timeout_s=timeout_s, poll_s=POLL_S, on_timeout=gave_up)
        yield box.client


def batch_of(rows: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """The first ``size`` rows (repeated when there are fewer) as one request's inputs."""
    n = len(next(iter(rows.values())))
    if n == 0:
        raise ServingError("no rows to time requests with; the holdout is empty")
    index = np.arange(size) % n
    return {name: np.asarray(values)[index] for name, values in rows.items()}


def predict_latency(
    client: ServingClient,
    model_name: str,
    version: int,
    inputs: dict[str, np.ndarray],
    *,
    requests: int,
    warmup: int = 2,
) -> float:
    """Median milliseconds of ``requests`` gRPC Predict calls with ``inputs`` on ``version``."""
    for _ in range(warmup):
        client.predict_grpc(model_name, inputs, version=version)
    times = []
    for _ in range(max(1, requests)):
        started = time.perf_counter()
        client.predict_grpc(model_name, inputs, version=version)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def measure(
    model_name: str,
    saved_models: Sequence[Path],
    rows: dict[str, np.ndarray],
    *,
    batches: Sequence[int] = (1, 64),
    requests: int = 20,
) -> list[dict[str, float]]:
    """``[{"batch1_ms", "batch64_ms"}]`` per SavedModel, all served by one sandbox.

    Rounds alternate between the models (each round times every model once per batch size,
    and the medians are of the rounds), so a burst of load on a shared machine falls on all
    of them alike.
    """
    times: list[dict[int, list[float]]] = [{b: [] for b in batches} for _ in saved_models]
    inputs = {b: batch_of(rows, b) for b in batches}
    with sandbox(model_name, saved_models) as client:
        for version in range(1, len(saved_models) + 1):
            for b in batches:  # warm every version and shape before any timing
                predict_latency(client, model_name, version, inputs[b], requests=1, warmup=1)
        rounds = max(1, requests // 5)
        for _ in range(rounds):
            for i in range(len(saved_models)):
                for b in batches:
                    times[i][b].append(
                        predict_latency(client, model_name, i + 1, inputs[b], requests=5, warmup=0)
                    )
    return [{f"batch{b}_ms": round(statistics.median(per[b]), 3) for b in batches} for per in times]
