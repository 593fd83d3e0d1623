"""The spec's ``tuning`` section, hyperparameter encoding and the tuning data split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from testkit import TAXI_SPEC

from aimass.data.spec import DatasetSpec, TuningSpec, load_spec
from aimass.platform.errors import ConfigError, StageError
from aimass.training.tuning import (
    apply_hparams,
    decode_hparams,
    encode_choice,
    hyperparameters,
    make_oracle,
    validation_partition,
)

pytestmark = pytest.mark.unit


def _raw() -> dict:
    return dict(yaml.safe_load(TAXI_SPEC.read_text(encoding="utf-8")))


def _with_tuning(tuning: object) -> DatasetSpec:
    return DatasetSpec.from_dict({**_raw(), "tuning": tuning}, origin="test")


def test_a_spec_without_tuning_gets_the_default_search() -> None:
    spec = load_spec(TAXI_SPEC)
    assert spec.tuning == TuningSpec()
    assert spec.tuning_objective == "auc"
    assert [h.name for h in spec.tuning.space] == ["learning_rate", "hidden_units", "dropout"]


def test_tuning_round_trips_through_the_workers_yaml() -> None:
    spec = _with_tuning(
        {
            "algorithm": "random",
            "max_trials": 5,
            "epochs": 2,
            "objective": "log_loss",
            "validation_percent": 10,
            "space": {
                "learning_rate": {"min": 0.0001, "max": 0.01, "sampling": "log"},
                "batch_size": {"values": [128, 256]},
                "hidden_units": {"values": [[32], [64, 32]]},
                "max_vocab": {"min": 50, "max": 400},
            },
        }
    )
    assert spec.tuning.algorithm == "random" and spec.tuning_objective == "log_loss"
    again = DatasetSpec.from_dict(
        yaml.safe_load(yaml.safe_dump(spec.to_dict(), sort_keys=False)), origin="x"
    )
    assert again == spec


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"algorithm": "grid"}, "tuning.algorithm 'grid' is unknown"),
        ({"max_trials": 0}, "max_trials must be 1..100"),
        ({"space": {"epochs": {"min": 1, "max": 9}}}, "'epochs' cannot be tuned"),
        ({"space": {"learning_rate": {"min": 0.1, "max": 0.01}}}, "needs min < max"),
        ({"space": {"learning_rate": {"min": 0.0, "max": 0.1, "sampling": "log"}}}, "log sampling"),
        ({"space": {"learning_rate": {"min": 0.001, "max": 2.0}}}, "learning_rate must be in"),
        ({"space": {"dropout": {"values": [0.1, 1.5]}}}, "dropout must be in"),
        ({"space": {"hidden_units": {"min": 8, "max": 64}}}, "list the layer sizes"),
        ({"space": {"hidden_units": {"values": [64, 32]}}}, "list of layer sizes"),
        ({"space": {"batch_size": {"min": 10.5, "max": 64}}}, "integer min and max"),
        ({"space": {"dropout": {"values": [0.1], "min": 0.0}}}, "either values or min/max"),
        ({"space": {}}, "tuning.space is empty"),
        ({"objective": "rmse"}, "tuning.objective 'rmse' is not a binary metric"),
        ({"trials": 3}, "unknown fields \\['trials'\\]"),
        ("fast", "tuning must be a mapping"),
    ],
)
def test_bad_tuning_sections_say_what_to_fix(tuning: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _with_tuning(tuning)


def test_choices_are_encoded_for_keras_tuner_and_decoded_back() -> None:
    assert encode_choice("hidden_units", (128, 64)) == "128-64"
    assert decode_hparams(
        {"hidden_units": "128-64", "batch_size": 256.0, "learning_rate": 0.002, "dropout": 0}
    ) == {"hidden_units": [128, 64], "batch_size": 256, "learning_rate": 0.002, "dropout": 0.0}


def test_apply_hparams_replaces_only_the_training_values() -> None:
    spec = load_spec(TAXI_SPEC)
    tuned = apply_hparams(spec, {"hidden_units": [16], "dropout": 0.2, "learning_rate": 0.003})
    assert tuned.training.hidden_units == (16,)
    assert (tuned.training.dropout, tuned.training.learning_rate) == (0.2, 0.003)
    assert tuned.training.batch_size == spec.training.batch_size
    assert tuned.features == spec.features and tuned.gate == spec.gate
    with pytest.raises(ConfigError, match="cannot be set"):
        apply_hparams(spec, {"epochs": 3})
    with pytest.raises(ConfigError, match="dropout must be in"):
        apply_hparams(spec, {"dropout": 1.0})


def test_the_space_and_the_oracles_follow_the_spec() -> None:
    import keras_tuner as kt

    spec = _with_tuning(
        {
            "objective": "log_loss",
            "space": {
                "learning_rate": {"min": 0.0001, "max": 0.01, "sampling": "log"},
                "batch_size": {"min": 64, "max": 512},
                "hidden_units": {"values": [[32], [64, 32]]},
            },
        }
    )
    space = {hp.name: hp for hp in hyperparameters(spec.tuning.space).space}
    assert isinstance(space["learning_rate"], kt.engine.hyperparameters.Float)
    assert space["learning_rate"].sampling == "log"
    assert isinstance(space["batch_size"], kt.engine.hyperparameters.Int)
    assert space["hidden_units"].values == ["32", "64-32"]
    bayes = make_oracle(spec, algorithm="bayesian", max_trials=4, seed=1)
    assert isinstance(bayes, kt.oracles.BayesianOptimizationOracle)
    assert bayes.objective.name == "log_loss" and bayes.objective.direction == "min"
    rand = make_oracle(load_spec(TAXI_SPEC), algorithm="random", max_trials=4, seed=1)
    assert isinstance(rand, kt.oracles.RandomSearchOracle)
    assert rand.objective.direction == "max"  # auc


def _clean(tmp_path: Path, splits: list[str], files: int = 2) -> Path:
    part = tmp_path / "clean"
    part.mkdir()
    per = -(-len(splits) // files)
    for i in range(files):
        chunk = splits[i * per : (i + 1) * per]
        table = pa.table(
            {"x": np.arange(i * per, i * per + len(chunk), dtype=np.float64), "split": chunk}
        )
        pq.write_table(table, part / f"part-{i:05d}.parquet")
    (part / "_SUCCESS").write_text("")
    return part


def test_validation_partition_keeps_only_train_rows_and_marks_a_share(tmp_path: Path) -> None:
    splits = ["train"] * 800 + ["holdout"] * 200
    clean = _clean(tmp_path, splits)
    out = tmp_path / "tuning"
    counts = validation_partition(clean, out, percent=20, seed=7)
    table = pq.read_table(sorted(out.glob("*.parquet")))
    # every train row once, no holdout row: the gate's holdout stays unseen by the search
    assert sorted(table.column("x").to_pylist()) == list(range(800))
    assert counts["train"] + counts["validation"] == 800
    assert 100 <= counts["validation"] <= 220
    assert table.column("split").to_pylist().count("holdout") == counts["validation"]
    # the same seed marks the same rows
    again = validation_partition(clean, tmp_path / "again", percent=20, seed=7)
    assert again == counts


def test_validation_partition_needs_both_shares(tmp_path: Path) -> None:
    clean = _clean(tmp_path, ["holdout"] * 10, files=1)
    with pytest.raises(StageError, match="needs both"):
        validation_partition(clean, tmp_path / "out", percent=20, seed=1)
