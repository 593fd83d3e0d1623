"""Settings from the environment (aimass.platform.settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, "0 2 * * *"), ("30  3 * * 1-5", "30 3 * * 1-5"), ("none", ""), ("", "")],
)
def test_retrain_schedule(monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: str) -> None:
    if raw is None:
        monkeypatch.delenv("AIMASS_RETRAIN_SCHEDULE", raising=False)
    else:
        monkeypatch.setenv("AIMASS_RETRAIN_SCHEDULE", raw)
    assert Settings.from_env().retrain_schedule == expected


def test_a_bad_schedule_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_RETRAIN_SCHEDULE", "nightly")
    with pytest.raises(ConfigError, match="5-field cron"):
        Settings.from_env()


def test_the_landing_uri_is_the_zone_as_an_asset_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("AIMASS_LANDING_ROOT", raising=False)
    assert Settings.from_env().landing_uri("penguins") == f"file://{tmp_path}/landing/penguins"
    monkeypatch.setenv("AIMASS_LANDING_ROOT", "s3://drop/zone/")
    assert Settings.from_env().landing_uri("penguins") == "s3://drop/zone/penguins"
