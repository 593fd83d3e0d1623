"""Workers ``auto``: one per GPU, else one per 4 cores, at least 1 (aimass.training.run).

Only the inputs are replaced (the core count, the driver's GPU list, CUDA_VISIBLE_DEVICES);
the resolution itself runs as in a task.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from aimass.platform.errors import ConfigError
from aimass.training import run

pytestmark = pytest.mark.unit


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Set this machine's cores and NVIDIA GPUs (entries of the driver's GPU folder)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def set_machine(cores: int | None, gpus: int) -> None:
        folder = tmp_path / f"gpus-{cores}-{gpus}"
        folder.mkdir()
        for index in range(gpus):
            (folder / f"0000:0{index}:00.0").mkdir()
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        monkeypatch.setattr(run, "_NVIDIA_GPUS", str(folder))

    return set_machine


@pytest.mark.parametrize(
    ("cores", "gpus", "workers", "why"),
    [
        (2, 0, 1, "2 cores, no GPU: one worker per 4 cores, at least 1"),
        (None, 0, 1, "1 cores, no GPU"),  # os.cpu_count() may not know
        (4, 0, 1, "4 cores, no GPU"),
        (16, 0, 4, "16 cores, no GPU: one worker per 4 cores"),
        (2, 1, 1, "2 cores, 1 GPU(s): one worker per GPU"),
        (16, 4, 4, "16 cores, 4 GPU(s): one worker per GPU"),
    ],
)
def test_auto_is_one_worker_per_gpu_or_per_4_cores(
    machine, cores: int | None, gpus: int, workers: int, why: str
) -> None:  # type: ignore[no-untyped-def]
    machine(cores, gpus)
    got, reason = run.auto_workers()
    assert got == workers and why in reason


def test_the_choice_and_its_reason_are_logged(machine, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    machine(2, 0)
    with caplog.at_level(logging.INFO, logger="aimass.training.run"):
        assert run.resolve_workers("auto") == 1
        assert run.resolve_workers(None) == 1
    assert (
        "workers: auto -> 1 (2 cores, no GPU: one worker per 4 cores, at least 1)"
        in caplog.messages
    )


def test_cuda_visible_devices_limits_the_gpus(machine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    machine(32, 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert run.auto_workers()[0] == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every GPU hidden: count the cores
    assert run.auto_workers() == (8, "32 cores, no GPU: one worker per 4 cores, at least 1")


def test_a_number_is_taken_as_given_and_anything_else_refused(machine) -> None:  # type: ignore[no-untyped-def]
    machine(2, 0)
    assert run.resolve_workers(3) == 3 and run.resolve_workers("2") == 2
    for bad in (0, -1, "two", True):
        with pytest.raises(ConfigError, match="use auto or a positive number of workers"):
            run.resolve_workers(bad)


def test_kubernetes_auto_is_one_pod(machine) -> None:  # type: ignore[no-untyped-def]
    machine(64, 8)
    assert run.resolve_workers("auto", launcher="kubernetes") == 1
