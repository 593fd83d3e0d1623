"""The Airflow plugin loads and its links and macros point at this install's services."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "aimass_plugin.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("aimass_plugin", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_links_follow_the_configured_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_MLFLOW_PORT", "5123")
    monkeypatch.setenv("AIMASS_SERVING_REST_PORT", "8599")
    plugin = _load().AimassPlugin
    hrefs = [view["href"] for view in plugin.external_views]
    assert "http://127.0.0.1:5123/#/models" in hrefs
    assert any(h.startswith("http://127.0.0.1:8599/v1/models/") for h in hrefs)
    assert all(view["category"] == "AI Mass" for view in plugin.external_views)


def test_report_macro_names_the_partition_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path))
    module = _load()
    assert module.report_dir("chicago_taxi", "2026-11-25") == str(
        tmp_path / "reports" / "chicago_taxi" / "ds=2026-11-25"
    )
