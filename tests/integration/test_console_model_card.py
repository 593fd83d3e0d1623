"""The console links each version's stored model card and serves it only to a logged-in user.

A small seeded history (``consolekit.seed_history``) and Airflow's real auth; the champion's
run gets a card written by the real writer (``aimass.evaluation.card``) into its report dir,
where ``evaluate_candidate`` puts it. Another version keeps none, as versions trained before
model cards do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from consolekit import AuthKit, History, airflow_auth, console_settings, parse_html, seed_history
from fastapi.testclient import TestClient

from aimass.platform.settings import Settings

pytestmark = pytest.mark.integration

DATASET = "chicago_taxi"
HTML = {"Accept": "text/html"}


@dataclass
class Setup:
    client: TestClient
    auth: AuthKit
    history: History
    settings: Settings
    viewer: str
    card: Path

    def get(self, url: str, token: str | None = None, **kw: Any) -> Any:
        headers = {**kw.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.get(url, headers=headers, **kw)


def _write_card(settings: Settings, run_id: str) -> Path:
    """The champion run's card, written as evaluate_candidate writes it."""
    from aimass.data.spec import load_spec
    from aimass.evaluation.analysis import analyze
    from aimass.evaluation.card import build_card, write_card
    from aimass.platform.records import GateDecision, RecordStore, RunRequest, TrainingResult

    records = RecordStore(settings.reports_dir).run(DATASET, run_id)
    run = RunRequest.of(records["request"])
    spec = load_spec(DATASET, settings.conf_dir)
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    analysis = analyze(
        lambda f: 1 / (1 + np.exp(-np.asarray(f["fare"]))),
        {"fare": x, "trip_miles": rng.normal(size=300)},
        (x > 0).astype(np.int64),
        task="binary",
        metric="auc",
        larger_is_better=True,
        repeats=1,
    )
    card = build_card(
        spec,
        run=run,
        model=TrainingResult.of(records["training"]),
        gate=GateDecision.of(records["gate"]),
        analysis=analysis,
        rows={"train": 1200, "holdout": 300},
    )
    return write_card(Path(run.report_dir), card, analysis)["html"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from aimass.console.app import create_app

    root = tmp_path_factory.mktemp("console_card")
    with airflow_auth(root / "airflow") as auth:
        settings = console_settings(root / "var")
        history = seed_history(settings, DATASET, versions=4, runs=6, ledger=10, alerts=5)
        champion_run = next(r for r in history.runs if r.registry_version == history.champion)
        card = _write_card(settings, champion_run.run_id)
        app = create_app(settings)
        with TestClient(app) as client:
            yield Setup(client, auth, history, settings, auth.token("viewer"), card)
        app.state.console.sampler.stop()


def _card_href(s: Setup, version: str) -> list[str]:
    reply = s.get(f"/models/{DATASET}/versions/{version}", s.viewer, headers=HTML)
    assert reply.status_code == 200, reply.text[:300]
    return [a.attrs["href"] for a in parse_html(reply.text).find_all("a", class_="model-card-link")]


def test_the_version_page_links_its_card_and_the_card_is_served(setup: Setup) -> None:
    s = setup
    relative = s.card.relative_to(s.settings.reports_dir).as_posix()
    assert _card_href(s, s.history.champion) == [f"/files/{relative}"]
    reply = s.get(f"/files/{relative}", s.viewer)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert f"Model card: {DATASET} v{s.history.champion}" in reply.text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bars"' in reply.text
    assert 'id="calibration"' in reply.text


def test_a_version_without_a_card_says_so(setup: Setup) -> None:
    other = next(
        r.registry_version
        for r in setup.history.trained_runs()
        if r.registry_version != setup.history.champion
    )
    assert _card_href(setup, str(other)) == []
    page = setup.get(f"/models/{DATASET}/versions/{other}", setup.viewer, headers=HTML)
    assert "No stored model card" in parse_html(page.text).find("p", class_="model-card").text()


def test_the_run_page_links_the_card(setup: Setup) -> None:
    s = setup
    run = next(r for r in s.history.runs if r.registry_version == s.history.champion)
    page = s.get(f"/runs/aimass_retrain/{run.run_id}", s.viewer, headers=HTML)
    links = {a.text(): a.attrs["href"] for a in parse_html(page.text).find_all("a")}
    relative = s.card.relative_to(s.settings.reports_dir).as_posix()
    assert links["Model card"] == f"/files/{relative}"


@pytest.mark.parametrize("who", ["anonymous", "forged", "expired"])
def test_the_card_needs_a_login(setup: Setup, who: str) -> None:
    s = setup
    token = {
        "anonymous": None,
        "forged": s.auth.forged_token("viewer"),
        "expired": s.auth.expired_token("viewer"),
    }[who]
    relative = s.card.relative_to(s.settings.reports_dir).as_posix()
    reply = s.get(f"/files/{relative}", token)
    assert reply.status_code in (401, 403), (who, reply.status_code)
    assert "Model card" not in reply.text


def test_paths_around_the_card_that_leave_the_reports_are_404(setup: Setup) -> None:
    s = setup
    relative = s.card.relative_to(s.settings.reports_dir).as_posix()
    outside = s.settings.reports_dir.parent / "model_card.html"
    outside.write_text("<html>not a report</html>")
    for path in (
        f"/files/{relative}/../../../../../model_card.html",
        "/files/../model_card.html",
        "/files/%2e%2e/model_card.html",
        f"/files/{relative.replace(DATASET, '..', 1)}",
    ):
        reply = s.get(path, s.viewer)
        assert reply.status_code == 404, (path, reply.status_code)
        assert "not a report" not in reply.text
