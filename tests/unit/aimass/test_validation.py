from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.stages.validation import (
    allowed_roots,
    allowed_s3_roots,
    validate_params,
    validate_tune_params,
)

pytestmark = pytest.mark.unit
RUN_DATE = datetime(2026, 11, 25, 2, 0)


@pytest.fixture
def raw_file(settings: Settings) -> Path:
    path = settings.var_dir / "data" / "raw" / "chicago_taxi" / "data.csv"
    path.parent.mkdir(parents=True)
    path.write_text("header\n", encoding="utf-8")
    return path


def test_defaults_resolve_spec_source_and_run_date(
    settings: Settings, raw_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aimass.training import run

    # auto workers on an 8-core machine without a GPU: 2
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    (tmp_path / "no_gpus").mkdir()
    monkeypatch.setattr(run, "_NVIDIA_GPUS", str(tmp_path / "no_gpus"))
    p = validate_params({}, settings, run_date=RUN_DATE)
    assert p.dataset == "chicago_taxi"
    assert p.ds == "2026-11-25"
    assert p.input_path == str(raw_file.resolve())
    assert p.workers == 2 and p.epochs is None and p.min_auc is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epochs": -1}, "epochs=-1 is out of range"),
        ({"epochs": "many"}, "epochs='many' must be an integer"),
        ({"workers": 0}, "workers=0 is out of range"),
        ({"dataset": "nope"}, "dataset='nope': there is no spec .*; known datasets: chicago_taxi"),
        ({"dataset": "../etc/passwd"}, "not a path"),
        ({"workers": "many"}, "workers='many' must be auto or an integer between 1 and 8"),
        ({"workers": 9}, "workers=9 is out of range"),
        ({"ds": "25/11/2026"}, "must be a date like"),
        ({"ds": "2026-02-30"}, "not a real calendar date"),
        ({"min_auc": 1.5}, "between 0 and 1"),
        ({"input_path": "/etc/hostname"}, "outside the allowed data roots"),
        ({"learning_rate": 0}, r"learning_rate=0 must be in \(0, 1\)"),
        ({"learning_rate": "fast"}, "learning_rate='fast' must be a number"),
        ({"batch_size": 0}, "batch_size=0 is out of range"),
        ({"use_tuned_hparams": "yes"}, "use_tuned_hparams='yes' must be true or false"),
        ({"mixed_precision": 1}, "mixed_precision=1 must be true or false"),
    ],
)
def test_bad_params_are_rejected_with_a_fix(
    settings: Settings, raw_file: Path, params: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_params(params, settings, run_date=RUN_DATE)


def test_missing_input_inside_roots_is_rejected(settings: Settings, raw_file: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        validate_params(
            {"input_path": str(settings.var_dir / "nothing.csv")}, settings, run_date=RUN_DATE
        )


def test_extra_data_roots_are_allowed(
    settings: Settings, raw_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "landing" / "trips.csv"
    outside.parent.mkdir()
    outside.write_text("x\n", encoding="utf-8")
    monkeypatch.setenv("AIMASS_DATA_ROOTS", str(outside.parent))
    p = validate_params(
        {"input_path": str(outside), "ds": "2026-01-02", "workers": 2}, settings, run_date=RUN_DATE
    )
    assert p.input_path == str(outside.resolve()) and p.ds == "2026-01-02" and p.workers == 2


def _state_file(settings: Settings, relative: str) -> Path:
    path = settings.var_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("secret\n", encoding="utf-8")
    return path


# Platform state under the var dir (an allowed root): each is refused, saying what it holds.
STATE_FILES = [
    ("airflow/aimass-secrets.json", "a secrets file"),
    ("mlflow/aimass-secrets.json", "a secrets file"),
    ("airflow/simple_auth_manager_passwords.json", "Airflow's home"),
    ("airflow/airflow.db", "Airflow's home"),
    ("airflow/logs/dag_id=x/attempt=1.log", "Airflow's home"),
    ("mlflow/mlflow.db", "MLflow's tracking database"),
    ("mlflow/basic_auth.db", "MLflow's store"),
    ("mlflow/artifacts/1/abc/artifacts/saved_model/saved_model.pb", "MLflow's store"),
    ("serving/models/chicago_taxi/1/saved_model.pb", "the model server's base path"),
    ("serving/models.config", "the model server's config"),
    ("logs/mlflow.log", "the services' logs"),
    ("run/mlflow.pid", "the services' pid files"),
]


@pytest.mark.parametrize(("relative", "why"), STATE_FILES)
def test_platform_state_under_the_var_dir_is_never_an_input(
    settings: Settings, raw_file: Path, relative: str, why: str
) -> None:
    path = _state_file(settings, relative)
    with pytest.raises(ConfigError, match=f"points into {why}.*may not read platform state"):
        validate_params({"input_path": str(path)}, settings, run_date=RUN_DATE)
    # its folder is refused as well
    with pytest.raises(ConfigError, match="points into"):
        validate_params({"input_path": str(path.parent)}, settings, run_date=RUN_DATE)


def test_platform_state_stays_refused_when_a_data_root_covers_it(
    settings: Settings, raw_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = _state_file(settings, "airflow/aimass-secrets.json")
    monkeypatch.setenv("AIMASS_DATA_ROOTS", str(settings.airflow_home))
    with pytest.raises(ConfigError, match="points into a secrets file"):
        validate_params({"input_path": str(secrets)}, settings, run_date=RUN_DATE)


def test_airflow_home_from_the_environment_is_refused(
    settings: Settings, raw_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = settings.var_dir / "data" / "airflow-home"
    (home / "airflow.db").parent.mkdir(parents=True)
    (home / "airflow.db").write_text("x", encoding="utf-8")
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    with pytest.raises(ConfigError, match="points into Airflow's home"):
        validate_params({"input_path": str(home / "airflow.db")}, settings, run_date=RUN_DATE)


def test_dot_dot_cannot_climb_from_the_data_folder_into_state(
    settings: Settings, raw_file: Path
) -> None:
    _state_file(settings, "airflow/aimass-secrets.json")
    sneaky = f"{raw_file.parent}/../../../airflow/aimass-secrets.json"
    with pytest.raises(ConfigError, match="points into a secrets file"):
        validate_params({"input_path": sneaky}, settings, run_date=RUN_DATE)


def test_a_link_into_state_is_refused_by_its_target(settings: Settings, raw_file: Path) -> None:
    db = _state_file(settings, "mlflow/mlflow.db")
    link = raw_file.parent / "trips.csv"
    link.symlink_to(db)
    with pytest.raises(ConfigError, match="points into MLflow's tracking database"):
        validate_params({"input_path": str(link)}, settings, run_date=RUN_DATE)


def test_a_folder_input_may_not_hold_a_link_that_leads_out(
    settings: Settings, raw_file: Path, tmp_path: Path
) -> None:
    folder = raw_file.parent
    (folder / "passwords.csv").symlink_to(_state_file(settings, "airflow/aimass-secrets.json"))
    with pytest.raises(ConfigError, match="passwords.csv' points into a secrets file"):
        validate_params({"input_path": str(folder)}, settings, run_date=RUN_DATE)
    (folder / "passwords.csv").unlink()
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("x\n", encoding="utf-8")
    (folder / "more.csv").symlink_to(outside)
    with pytest.raises(ConfigError, match="more.csv links to .*outside the allowed data roots"):
        validate_params({"input_path": str(folder)}, settings, run_date=RUN_DATE)


def test_a_folder_input_with_plain_files_and_inner_links_is_accepted(
    settings: Settings, raw_file: Path
) -> None:
    other = settings.var_dir / "data" / "raw" / "older.csv"
    other.write_text("header\n", encoding="utf-8")
    (raw_file.parent / "older.csv").symlink_to(other)
    p = validate_params({"input_path": str(raw_file.parent)}, settings, run_date=RUN_DATE)
    assert p.input_path == str(raw_file.parent.resolve())


S3_ROOTS = os.pathsep.join(["s3://landing-bucket/raw/taxi", "s3a://other-bucket"])


@pytest.mark.parametrize(
    "uri",
    [
        "s3://landing-bucket/raw/taxi",
        "s3://landing-bucket/raw/taxi/",
        "s3://landing-bucket/raw/taxi/2026-11-25/trips.csv",
        "s3a://landing-bucket/raw/taxi/2026-11-25/",
        "s3://other-bucket/anything.parquet",
    ],
)
def test_s3_input_under_an_s3_data_root_is_allowed_as_given(
    settings: Settings, raw_file: Path, monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    monkeypatch.setenv("AIMASS_DATA_ROOTS", S3_ROOTS)
    p = validate_params({"input_path": uri}, settings, run_date=RUN_DATE)
    # Not resolved as a local path, and not looked up: the clean job lists it.
    assert p.input_path == uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://landing-bucket/raw/taxi-2/trips.csv", "outside the allowed S3 roots"),
        ("s3://landing-bucket/raw/trips.csv", "outside the allowed S3 roots"),
        ("s3://third-bucket/raw/taxi/trips.csv", "add s3://third-bucket/ .*AIMASS_DATA_ROOTS"),
        ("s3://landing-bucket/raw/taxi/../secret.csv", r"'\.' or '\.\.' segment"),
        ("s3://x/raw/taxi/trips.csv", "no valid bucket name"),
    ],
)
def test_s3_input_outside_the_s3_data_roots_is_rejected(
    settings: Settings,
    raw_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    uri: str,
    message: str,
) -> None:
    monkeypatch.setenv("AIMASS_DATA_ROOTS", S3_ROOTS)
    with pytest.raises(ConfigError, match=message):
        validate_params({"input_path": uri}, settings, run_date=RUN_DATE)


def test_s3_input_without_s3_data_roots_names_the_setting(
    settings: Settings, raw_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_DATA_ROOTS", str(tmp_path))
    with pytest.raises(ConfigError, match=r"allowed S3 roots \(none\).*AIMASS_DATA_ROOTS"):
        validate_params(
            {"input_path": "s3://landing-bucket/raw/taxi/trips.csv"}, settings, run_date=RUN_DATE
        )


def test_s3_and_local_data_roots_mix_in_one_setting(
    settings: Settings, raw_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "trips.csv").write_text("x\n", encoding="utf-8")
    monkeypatch.setenv(
        "AIMASS_DATA_ROOTS", os.pathsep.join([str(landing), "s3://landing-bucket/raw"])
    )

    assert allowed_roots(settings) == [settings.var_dir.resolve(), landing.resolve()]
    assert [r.uri for r in allowed_s3_roots()] == ["s3://landing-bucket/raw"]
    local = validate_params({"input_path": str(landing / "trips.csv")}, settings, run_date=RUN_DATE)
    assert local.input_path == str((landing / "trips.csv").resolve())
    remote = validate_params(
        {"input_path": "s3://landing-bucket/raw/a.csv"}, settings, run_date=RUN_DATE
    )
    assert remote.input_path == "s3://landing-bucket/raw/a.csv"


def test_a_bad_s3_data_root_names_the_entry(
    settings: Settings, raw_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_DATA_ROOTS", "s3://")
    with pytest.raises(ConfigError, match="AIMASS_DATA_ROOTS entry 's3://'"):
        validate_params({"input_path": "s3://landing-bucket/a.csv"}, settings, run_date=RUN_DATE)


def test_training_overrides_and_switches(settings: Settings, raw_file: Path) -> None:
    p = validate_params(
        {
            "learning_rate": "0.005",
            "batch_size": 128,
            "use_tuned_hparams": "false",
            "mixed_precision": True,
        },
        settings,
        run_date=RUN_DATE,
    )
    assert (p.learning_rate, p.batch_size) == (0.005, 128)
    assert p.use_tuned_hparams is False and p.mixed_precision is True
    defaults = validate_params({}, settings, run_date=RUN_DATE)
    assert defaults.use_tuned_hparams is True and defaults.mixed_precision is False
    assert defaults.learning_rate is None and defaults.batch_size is None


def _partition(settings: Settings, ds: str) -> None:
    part = settings.clean_partition("chicago_taxi", ds)
    part.mkdir(parents=True)
    (part / "part-00000.parquet").write_bytes(b"")


def test_tuning_params_default_to_the_spec_and_the_newest_partition(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aimass.training import run

    # auto workers: one per GPU (2 here), whatever the cores
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    (tmp_path / "gpus" / "0000:01:00.0").mkdir(parents=True)
    (tmp_path / "gpus" / "0000:02:00.0").mkdir()
    monkeypatch.setattr(run, "_NVIDIA_GPUS", str(tmp_path / "gpus"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _partition(settings, "2026-11-01")
    _partition(settings, "2026-11-20")
    (settings.clean_partition("chicago_taxi", "2026-11-30")).mkdir(parents=True)  # no files yet
    p = validate_tune_params({}, settings)
    assert p.ds == "2026-11-20"
    assert p.clean_dir == str(settings.clean_partition("chicago_taxi", "2026-11-20"))
    assert (p.algorithm, p.max_trials, p.epochs, p.workers) == ("bayesian", 8, 3, 2)
    p = validate_tune_params(
        {"ds": "2026-11-01", "algorithm": "random", "max_trials": 4, "epochs": 2}, settings
    )
    assert (p.ds, p.algorithm, p.max_trials, p.epochs) == ("2026-11-01", "random", 4, 2)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"algorithm": "grid"}, "algorithm='grid' is unknown"),
        ({"max_trials": 0}, "max_trials=0 is out of range"),
        ({"epochs": -2}, "epochs=-2 is out of range"),
        ({"ds": "2026-10-01"}, "there is no clean partition"),
        ({"dataset": "nope"}, "dataset='nope': there is no spec"),
    ],
)
def test_bad_tuning_params_are_rejected_with_a_fix(
    settings: Settings, params: dict, message: str
) -> None:
    _partition(settings, "2026-11-20")
    with pytest.raises(ConfigError, match=message):
        validate_tune_params(params, settings)


def test_tuning_without_a_partition_says_to_run_retraining_first(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="run aimass_retrain"):
        validate_tune_params({}, settings)


def test_force_deploy_with_a_reason_is_accepted(settings: Settings, raw_file: Path) -> None:
    p = validate_params(
        {"force_deploy": True, "force_reason": "  INC-42: champion fails on new fares "},
        settings,
        run_date=RUN_DATE,
    )
    assert p.force_deploy is True and p.force_reason == "INC-42: champion fails on new fares"
    assert p.to_dict()["force_reason"] == p.force_reason
    defaults = validate_params({}, settings, run_date=RUN_DATE)
    assert defaults.force_deploy is False and defaults.force_reason == ""
    string_form = validate_params(
        {"force_deploy": "true", "force_reason": "x" * 10}, settings, run_date=RUN_DATE
    )
    assert string_form.force_deploy is True


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"force_deploy": True}, "force_deploy=true needs force_reason: at least 10 characters"),
        ({"force_deploy": True, "force_reason": "   "}, "needs force_reason"),
        ({"force_deploy": True, "force_reason": "too short"}, "needs force_reason"),
        ({"force_deploy": "yes", "force_reason": "a good long reason"}, "must be true or false"),
        (
            {"force_deploy": True, "force_reason": 12345678901},
            "force_reason=12345678901 must be text",
        ),
        ({"force_deploy": True, "force_reason": "x" * 501}, "shorten it to at most 500"),
        ({"force_reason": "a good long reason"}, "force_deploy is false; tick force_deploy"),
    ],
)
def test_bad_force_params_are_rejected_before_any_work(
    settings: Settings, raw_file: Path, params: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_params(params, settings, run_date=RUN_DATE)
