"""Two workers learn what one learns: holdout AUC on the full taxi sample within 0.01.

MultiWorkerMirroredStrategy splits every global batch between the workers (the global
batch grows with them), so the two runs differ in batch arithmetic, not in the data seen.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit import SAMPLE_CSV, TAXI_SPEC, write_partition

from aimass.data.spec import load_spec
from aimass.evaluation.metrics import evaluate
from aimass.training.local import train
from models.tabular.inputs import load_arrays

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_workers_reach_the_one_worker_auc(tmp_path: Path) -> None:
    spec = load_spec(TAXI_SPEC)
    partition = write_partition(SAMPLE_CSV, tmp_path / "clean" / "ds=2024-01-01", spec)
    features, labels = load_arrays(partition, spec, "holdout")

    aucs = {}
    for workers in (1, 2):
        result = train(spec, data=partition, run_dir=tmp_path / f"run{workers}", workers=workers)
        assert result.workers == workers
        assert result.params["global_batch_size"] == spec.training.batch_size * workers
        aucs[workers] = evaluate(result.saved_model_dir, features, labels, task="binary")["auc"]

    assert aucs[1] > 0.9, aucs  # both runs learnt something real
    assert abs(aucs[2] - aucs[1]) <= 0.01, aucs
