"""The training run dir: what a retried attempt keeps (aimass.training.run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimass.training.run import reset_run_dir

pytestmark = pytest.mark.unit


def test_reset_run_dir_keeps_only_the_checkpoints_of_the_previous_attempt(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "manual__1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "state.json").write_text("{}")
    (run_dir / "export").mkdir()
    (run_dir / "export" / "saved_model.pb").write_bytes(b"x")
    (run_dir / "metrics.json").write_text("{}")

    reset_run_dir(run_dir)

    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints"]
    assert (run_dir / "checkpoints" / "state.json").exists()


def test_reset_run_dir_creates_a_missing_dir(tmp_path: Path) -> None:
    reset_run_dir(tmp_path / "new")
    assert (tmp_path / "new").is_dir()
