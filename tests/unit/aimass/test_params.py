from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from aimass.config import Settings
from aimass.errors import ConfigError
from aimass.params import validate_params

pytestmark = pytest.mark.unit
RUN_DATE = datetime(2026, 11, 25, 2, 0)


@pytest.fixture
def raw_file(settings: Settings) -> Path:
    path = settings.var_dir / "data" / "raw" / "chicago_taxi" / "data.csv"
    path.parent.mkdir(parents=True)
    path.write_text("header\n", encoding="utf-8")
    return path


def test_defaults_resolve_spec_source_and_run_date(settings: Settings, raw_file: Path) -> None:
    p = validate_params({}, settings, run_date=RUN_DATE)
    assert p.dataset == "chicago_taxi"
    assert p.ds == "2026-11-25"
    assert p.input_path == str(raw_file.resolve())
    assert p.workers == 1 and p.epochs is None and p.min_auc is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epochs": -1}, "epochs=-1 is out of range"),
        ({"epochs": "many"}, "epochs='many' must be an integer"),
        ({"workers": 0}, "workers=0 is out of range"),
        ({"dataset": "nope"}, "dataset spec 'nope' not found"),
        ({"dataset": "../etc/passwd"}, "not a path"),
        ({"ds": "25/11/2026"}, "must be a date like"),
        ({"ds": "2026-02-30"}, "not a real calendar date"),
        ({"min_auc": 1.5}, "between 0 and 1"),
        ({"input_path": "/etc/hostname"}, "outside the allowed data roots"),
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
