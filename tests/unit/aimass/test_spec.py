from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import TAXI_SPEC

from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(TAXI_SPEC.read_text(encoding="utf-8"))


def test_taxi_spec_loads(raw: dict[str, Any]) -> None:
    spec = DatasetSpec.from_dict(raw)
    assert spec.name == "chicago_taxi" and spec.label_name == "big_tipper"
    assert "fare" in spec.numeric_features and "company" in spec.categorical_features
    assert spec.dtype("trip_start_hour") == "long"
    assert spec.slices == ("payment_type",) and spec.drift.on_critical == "flag"


def _broken(raw: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["name"], "Chicago Taxi", "lower_snake_case"),
        (["label"], KeyError, "missing required field 'label'"),
        (["schema", "fare"], "float", "schema.fare has type 'float'"),
        (["features", "numeric"], ["fare", "nope"], "feature 'nope' is not in the schema"),
        (["features", "numeric"], ["company"], "numeric feature 'company' has type string"),
        (["label", "task"], "ranking", "label.task 'ranking' is not supported"),
        (["training", "epochs"], 0, "training.epochs must be >= 1"),
        (["training", "optimizer"], "sgd", "unexpected keyword argument 'optimizer'"),
        (["gate", "min_auc"], 0.6, "gate has unknown fields"),
        (["gate", "min"], {"rmse": 3.0}, "gate.min.rmse is not a binary metric"),
        (["label", "classes"], ["a", "b"], "label.classes is only for task multiclass"),
        (["label", "column"], "fare", "exactly one of 'column'"),
        (
            ["derived", "fare"],
            {"expression": "1", "type": "double"},
            "clashes with a schema column",
        ),
        (
            ["derived", "speed"],
            {"expression": "1", "type": "float"},
            "derived.speed has type 'float'",
        ),
        (["derived", "speed"], "fare / 2", "derived must map column names"),
        (["drift", "psi_warning"], 0.5, "must be > 0 and below drift.psi_critical"),
        (["drift", "on_critical"], "panic", "drift.on_critical 'panic'"),
        (["dedupe_key"], ["trip_id"], "'trip_id' (in dedupe_key) is not in the schema"),
        (["split", "holdout_percent"], 90, "holdout_percent must be 1..50"),
        (["quality", "not_null"], ["ghost"], "unknown column 'ghost'"),
    ],
)
def test_bad_spec_fails_naming_the_field(
    raw: dict[str, Any], path: list[str], value: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DatasetSpec.from_dict(_broken(raw, path, value), origin="test.yaml")


def test_unknown_spec_name_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "one.yaml").write_text("name: one\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"known specs: \['one'\]"):
        load_spec("two", tmp_path)


def test_to_dict_round_trips(raw: dict[str, Any]) -> None:
    spec = DatasetSpec.from_dict(raw)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


def _multiclass(raw: dict[str, Any], **label: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    out["label"] = {"name": "payment", "column": "payment_type", "task": "multiclass", **label}
    out["features"]["categorical"] = [
        c for c in out["features"]["categorical"] if c != "payment_type"
    ]
    out.pop("gate", None)
    return out


def test_multiclass_label_from_a_column(raw: dict[str, Any]) -> None:
    spec = DatasetSpec.from_dict(_multiclass(raw, classes=["Cash", "Credit Card", "Unknown"]))
    assert spec.task == "multiclass" and spec.num_classes == 3
    assert spec.label_column == "payment_type" and spec.label_expression == "`payment_type`"
    assert spec.gate.bars("min") == {"auc": 0.5}  # the default gate for classification
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ({"classes": ["Cash"]}, "two or more distinct values"),
        ({"classes": ["Cash", "Cash"]}, "two or more distinct values"),
        ({"column": "ghost", "classes": ["a", "b"]}, "label.column 'ghost' is not in the schema"),
        ({"column": "company", "classes": ["a", "b"]}, "is also listed as a feature"),
    ],
)
def test_bad_multiclass_label_is_explained(
    raw: dict[str, Any], label: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DatasetSpec.from_dict(_multiclass(raw, **label))


def test_regression_label_gets_regression_metrics_and_default_gate(raw: dict[str, Any]) -> None:
    out = copy.deepcopy(raw)
    out["label"] = {"name": "tip_amount", "column": "tips", "task": "regression"}
    out.pop("gate")
    out.pop("compression")  # its loss bars name the binary label's metrics
    spec = DatasetSpec.from_dict(out)
    assert set(spec.metrics) == {"rmse", "mae", "r2"} and spec.primary_metric == "rmse"
    assert spec.gate.bars("min") == {"r2": 0.0}
    out["gate"] = {"min": {"auc": 0.6}}
    with pytest.raises(ConfigError, match="gate.min.auc is not a regression metric"):
        DatasetSpec.from_dict(out)


def test_null_values_round_trip(raw: dict[str, Any]) -> None:
    out = copy.deepcopy(raw)
    out["source"]["null_values"] = ["NA", "n/a"]
    spec = DatasetSpec.from_dict(out)
    assert spec.null_values == ("NA", "n/a")
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


def test_derived_columns_are_clean_columns_with_a_type(raw: dict[str, Any]) -> None:
    spec = DatasetSpec.from_dict(raw)
    assert [d.name for d in spec.derived] == ["trip_speed_mph"]
    assert spec.clean_columns[-1] == "trip_speed_mph" and spec.dtype("trip_speed_mph") == "double"
    assert "trip_speed_mph" in spec.numeric_features and "trip_speed_mph" not in spec.columns
