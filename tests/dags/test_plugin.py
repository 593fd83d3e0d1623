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
    plugin = _load().AimassPlugin
    hrefs = [view["href"] for view in plugin.external_views]
    assert "http://127.0.0.1:5123/#/models" in hrefs


def test_the_console_is_in_the_navigation_and_a_tab_on_runs_and_tasks() -> None:
    """The console app is mounted at /aimass and rendered inside the Airflow UI (url_route);
    its run and task tabs take Airflow's placeholders for the run being looked at."""
    plugin = _load().AimassPlugin
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/aimass"
    views = {view["destination"] + ":" + view["name"]: view for view in plugin.external_views}
    nav = views["nav:AI Mass console"]
    assert (nav["href"], nav["url_route"]) == ("/aimass/", "aimass")
    assert views["dag_run:AI Mass"]["href"] == "/aimass/runs/{DAG_ID}/{RUN_ID}"
    assert (
        views["task_instance:AI Mass"]["href"] == "/aimass/runs/{DAG_ID}/{RUN_ID}/tasks/{TASK_ID}"
    )
    # every view Airflow renders in its own UI needs a url_route
    assert all(v.get("url_route") for v in plugin.external_views if v["href"].startswith("/"))


def test_report_macro_names_the_partition_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path))
    module = _load()
    assert module.report_dir("chicago_taxi", "2026-11-25") == str(
        tmp_path / "reports" / "chicago_taxi" / "ds=2026-11-25"
    )
