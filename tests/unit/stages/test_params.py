"""One definition per run param: the DAGs' trigger forms and the validation share it."""

from __future__ import annotations

from datetime import datetime

import pytest

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.stages.params import (
    EPOCHS,
    MONITOR_PARAMS,
    RETRAIN_PARAMS,
    ROLLBACK_PARAMS,
    TUNE_PARAMS,
    WORKERS,
    airflow_params,
)
from aimass.stages.validation import validate_params

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("fields", [RETRAIN_PARAMS, TUNE_PARAMS, ROLLBACK_PARAMS, MONITOR_PARAMS])
def test_every_param_has_a_title_and_a_description(fields: tuple) -> None:
    params = airflow_params(fields, ["chicago_taxi", "palmer_penguins"])
    assert list(params) == [f.name for f in fields]
    for name, param in params.items():
        assert param.schema["title"] and param.description, name


def test_the_forms_suggest_the_dataset_specs_and_accept_a_new_one() -> None:
    """The parsed names are suggestions, not an enum: a spec saved after the DAG processor's
    last parse is accepted by the form and the REST API, and the first task checks it."""
    params = airflow_params(RETRAIN_PARAMS, ["chicago_taxi", "palmer_penguins"])
    assert params["dataset"].schema["examples"] == ["chicago_taxi", "palmer_penguins"]
    assert "enum" not in params["dataset"].schema
    params["dataset"].resolve("saved_a_second_ago")  # Airflow's own check of a trigger's conf
    monitor = airflow_params(MONITOR_PARAMS, ["chicago_taxi"])
    assert monitor["datasets"].schema["examples"] == ["chicago_taxi"]
    monitor["datasets"].resolve(["chicago_taxi", "saved_a_second_ago"])


@pytest.mark.parametrize("value", [None, "auto", 1, 8, "3"])
def test_the_workers_param_takes_auto_or_a_number(value: object) -> None:
    param = airflow_params(RETRAIN_PARAMS, ["chicago_taxi"])["workers"]
    assert param.resolve(value) == value


@pytest.mark.parametrize("value", [0, 9, "many", "Auto ", 2.5])
def test_the_workers_param_refuses_anything_else(value: object) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    param = airflow_params(RETRAIN_PARAMS, ["chicago_taxi"])["workers"]
    with pytest.raises(ParamValidationError):
        param.resolve(value)


def test_the_form_and_the_validation_share_their_bounds(settings: Settings) -> None:
    params = airflow_params(RETRAIN_PARAMS, ["chicago_taxi"])
    assert params["workers"].schema["maximum"] == WORKERS.maximum
    assert params["epochs"].schema["maximum"] == EPOCHS.maximum
    # The form's bound is the one validation enforces for a run started through the API.
    (settings.var_dir / "in.csv").write_text("x\n")
    too_many = {"workers": WORKERS.maximum + 1, "input_path": str(settings.var_dir / "in.csv")}
    with pytest.raises(ConfigError, match=f"between 1 and {WORKERS.maximum}"):
        validate_params(too_many, settings, run_date=datetime(2026, 11, 25))


def test_the_tune_form_keeps_the_shared_bounds_with_its_own_words() -> None:
    tune = {f.name: f for f in TUNE_PARAMS}
    assert tune["epochs"].schema == EPOCHS.schema and tune["epochs"].title == "Epochs per trial"
