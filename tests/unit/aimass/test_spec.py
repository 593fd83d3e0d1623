from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import TAXI_SPEC

from aimass.errors import ConfigError
from aimass.spec import DatasetSpec, load_spec

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
        (["gate", "min_auc"], 1.5, "gate.min_auc must be between 0 and 1"),
        (["drift", "psi_warning"], 0.5, "must be > 0 and below drift.psi_critical"),
        (["drift", "on_critical"], "panic", "drift.on_critical 'panic'"),
        (["dedupe_key"], ["trip_id"], "'trip_id' (in dedupe_key or slices) is not in the schema"),
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
