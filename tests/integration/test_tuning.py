"""A real Keras Tuner search: trials are training runs, tracked as child MLflow runs, and the
next training uses the best values unless its params override them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from testkit import TAXI_SPEC, write_partition

from aimass.data.spec import load_spec
from aimass.platform.settings import Settings
from aimass.stages.tune import prepare_tuning, run_search
from aimass.training.hparams import resolve_hparams
from aimass.training.tuning import BEST_TAG, KIND_TAG, STATUS_TAG, tuned_hparams

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_random_search_tracks_trials_and_feeds_the_next_training(
    settings: Settings, taxi_csv: Path
) -> None:
    from aimass.platform import tracking

    spec = load_spec(TAXI_SPEC)
    clean = write_partition(taxi_csv, settings.clean_partition("chicago_taxi", "2024-01-02"), spec)
    assert resolve_hparams(settings, spec)[1] == "spec"  # nothing tuned yet

    ctx = prepare_tuning(
        {"algorithm": "random", "max_trials": 3, "epochs": 3, "workers": 1},
        run_id="manual__tune test",
    )
    assert ctx["clean_dir"] == str(clean)  # the newest partition, found without a ds
    summary = run_search(ctx)

    # three trials, each a real run with its own score; the best is the best of them
    scores = {tid: t["auc"] for tid, t in summary["trials"].items()}
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores.values()), scores
    assert len(set(scores.values())) == 3, scores  # different values, different models
    assert summary["best_score"] == max(scores.values()) > 0.75, scores
    assert summary["best_hparams"] == summary["trials"][summary["best_trial"]]["hparams"]

    # the search saw the train split only, with a share of it held out for validation
    data = pq.read_table(Path(ctx["work_dir"]) / "data")
    train_rows = pq.read_table(clean, filters=[("split", "==", "train")]).num_rows
    assert data.num_rows == train_rows

    # MLflow: a parent run with the best values, and one child run per trial
    mlc = tracking.client(settings)
    parent = mlc.get_run(summary["mlflow_run_id"])
    assert parent.data.tags[KIND_TAG] == "tuning" and parent.data.tags[STATUS_TAG] == "complete"
    assert json.loads(parent.data.tags[BEST_TAG]) == summary["best_hparams"]
    assert float(parent.data.params["best.learning_rate"]) == pytest.approx(
        summary["best_hparams"]["learning_rate"]
    )
    children = mlc.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert len(children) == 3
    assert sorted(c.data.metrics["val_auc"] for c in children) == sorted(scores.values())
    assert all("hp.learning_rate" in c.data.params for c in children)

    # a retry of the search task resumes: no trial is trained or logged again
    again = run_search(ctx)
    assert again["best_hparams"] == summary["best_hparams"]
    assert (
        len(mlc.search_runs([parent.info.experiment_id], "tags.`aimass.kind` = 'tuning_trial'"))
        == 3
    )

    # the next training uses the best values; params win over them; the switch turns them off
    assert tuned_hparams(settings, "chicago_taxi") == (summary["best_hparams"], parent.info.run_id)
    tuned, source = resolve_hparams(settings, spec)
    assert source.startswith(f"tuned by MLflow run {parent.info.run_id}")
    assert tuned.training.learning_rate == pytest.approx(summary["best_hparams"]["learning_rate"])
    assert list(tuned.training.hidden_units) == summary["best_hparams"]["hidden_units"]
    overridden, source = resolve_hparams(settings, spec, learning_rate=0.0042)
    assert overridden.training.learning_rate == 0.0042
    assert overridden.training.hidden_units == tuned.training.hidden_units
    assert "run params override" in source
    plain, source = resolve_hparams(settings, spec, use_tuned=False)
    assert plain.training == spec.training and source == "spec"
