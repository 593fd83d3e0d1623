"""The console app on a realistic history: auth on every route, the seeded figures on every page.

One module-scoped setup (about 15-40 s): a migrated Airflow DB with the simple auth manager
(``consolekit.airflow_auth``), a history of 20 versions over 120 nightly runs written through
the real record writers (``consolekit.seed_history``), and the app of
``aimass.console.app.create_app`` driven in-process with a TestClient. Airflow's API and the
model server are on ports where nothing listens; Airflow calls of the actions are recorded
instead (``airflow_calls``), so a refused action is shown to make none.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from consolekit import (
    AuthKit,
    History,
    Node,
    airflow_auth,
    console_settings,
    parse_html,
    seed_history,
)
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from aimass.platform.settings import Settings

pytestmark = pytest.mark.integration

DATASET = "chicago_taxi"
KNOWN = ("chicago_taxi", "palmer_penguins", "penguins_body_mass", "seattle_weather")
# Every route of the console: a new one fails test_route_table until it is listed here (and
# its path parameters have a value in path_values).
EXPECTED_ROUTES = {
    ("GET", "/"),
    ("GET", "/models"),
    ("GET", "/models/{dataset}"),
    ("GET", "/models/{dataset}/versions/{version}"),
    ("GET", "/live/{dataset}"),
    ("GET", "/data/{dataset}"),
    ("GET", "/alerts"),
    ("GET", "/runs/{dag}/{run}"),
    ("GET", "/runs/{dag}/{run}/tasks/{task}"),
    ("GET", "/files/{path:path}"),
    ("GET", "/static/console.css"),
    ("POST", "/actions/retrain"),
    ("POST", "/actions/rollback"),
    ("POST", "/actions/approval"),
}
HTML = {"Accept": "text/html"}


@dataclass
class Console:
    app: FastAPI
    client: TestClient
    auth: AuthKit
    history: History
    settings: Settings
    tokens: dict[str, str]

    def get(self, url: str, user: str | None = "viewer", **kw: Any) -> Any:
        headers = {**kw.pop("headers", {}), **self.bearer(user)}
        return self.client.get(url, headers=headers, **kw)

    def post(self, url: str, data: dict[str, str], user: str | None = "viewer") -> Any:
        return self.client.post(url, data=data, headers=self.bearer(user))

    def bearer(self, user: str | None) -> dict[str, str]:
        return {} if user is None else {"Authorization": f"Bearer {self.tokens[user]}"}

    def page(self, url: str, user: str = "viewer") -> Node:
        reply = self.get(url, user, headers=HTML)
        assert reply.status_code == 200, (url, reply.status_code, reply.text[:500])
        assert reply.headers["content-type"].startswith("text/html")
        return parse_html(reply.text)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    from aimass.console.app import create_app

    root = tmp_path_factory.mktemp("console")
    with airflow_auth(root / "airflow") as auth:
        settings = console_settings(root / "var")
        history = seed_history(settings, DATASET, versions=20, runs=120, ledger=1_000)
        app = create_app(settings)
        tokens = {user: auth.token(user) for user in ("admin", "viewer")}
        with TestClient(app) as client:
            yield Console(app, client, auth, history, settings, tokens)
        app.state.console.sampler.stop()


@pytest.fixture
def airflow_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls the console makes to Airflow's REST API, answered as Airflow would."""
    from aimass.console.actions import AirflowAsUser

    calls: list[dict[str, Any]] = []

    async def call(self: AirflowAsUser, method: str, path: str, body: Any = None) -> Any:
        calls.append({"method": method, "path": path, "body": body, "headers": self._headers})
        if method == "POST" and path.endswith("/dagRuns"):
            return {"dag_run_id": "manual__2026-01-01T00:00:00+00:00"}
        return None

    monkeypatch.setattr(AirflowAsUser, "call", call)
    return calls


def path_values(history: History) -> dict[str, str]:
    return {
        "dataset": DATASET,
        "version": history.champion,
        "dag": "aimass_retrain",
        "run": history.last_run.run_id,
        "task": "clean_data",
        "path": history.report_files[0],
    }


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route; anything but an APIRoute (a mount, static files) fails."""
    table = []
    for route in app.routes:
        assert isinstance(route, APIRoute), f"{route!r} is not an API route with dependencies"
        table += [(method, route.path) for method in sorted(route.methods)]
    return table


def fill(path: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"no value for path parameter {name!r} of {path}"
        return values[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


def post_form(history: History, csrf: str = "") -> dict[str, str]:
    return {
        "csrf": csrf,
        "dataset": DATASET,
        "version": str(history.labels["previous"]),
        "reason": "the new version answers slowly (INC-1234)",
        "run_id": history.last_run.run_id,
        "decision": "Approve",
    }


# ----------------------------------------------------------------------------- auth


def test_route_table(console: Console) -> None:
    table = route_table(console.app)
    assert len(table) == len(set(table)) == len(EXPECTED_ROUTES) == 14
    assert set(table) == EXPECTED_ROUTES, "update EXPECTED_ROUTES with the console's routes"


@pytest.mark.parametrize("who", ["anonymous", "forged", "garbage", "expired", "forged cookie"])
def test_every_route_refuses_without_a_valid_token(
    console: Console, who: str, airflow_calls: list[dict[str, Any]]
) -> None:
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    from aimass.console.security import csrf_token

    token = {
        "anonymous": "",
        "forged": console.auth.forged_token("admin"),
        "garbage": console.auth.garbage_token(),
        "expired": console.auth.expired_token("admin"),
        "forged cookie": console.auth.forged_token("admin"),
    }[who]
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if who == "forged cookie":
        cookies = {COOKIE_NAME_JWT_TOKEN: token}
    elif token:
        headers = {"Authorization": f"Bearer {token}"}
    # A form token that matches the presented JWT: only the auth check can refuse the posts.
    form = post_form(console.history, csrf_token(token))
    values = path_values(console.history)
    client = TestClient(console.app, cookies=cookies)
    walked = []
    for method, path in route_table(console.app):
        url = fill(path, values)
        for accept in ("application/json", "text/html"):
            hdrs = {**headers, "Accept": accept}
            if method == "POST":
                reply = client.post(url, data=form, headers=hdrs)
            else:
                reply = client.request(method, url, headers=hdrs, follow_redirects=False)
            assert reply.status_code in (401, 403), (who, method, url, reply.status_code)
            assert "AI Mass" not in reply.text or "not allowed" in reply.text, (who, url)
            assert "security token" not in reply.text, (who, url)
        walked.append((method, path))
    assert set(walked) == EXPECTED_ROUTES and len(walked) == 14
    assert airflow_calls == []


def test_refusals_name_the_reason(console: Console) -> None:
    anonymous = console.get("/models/chicago_taxi", None)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "Not authenticated"}
    forged = console.client.get(
        "/", headers={"Authorization": f"Bearer {console.auth.forged_token('admin')}"}
    )
    assert forged.status_code == 403
    assert forged.json() == {"detail": "Invalid JWT token"}
    page = console.client.get("/alerts", headers=HTML)
    assert page.status_code == 401
    assert "401: not allowed" in parse_html(page.text).find("h1").text()


# ----------------------------------------------------------------------------- pages


def test_every_page_answers_the_viewer(console: Console) -> None:
    values = path_values(console.history)
    for method, path in sorted(EXPECTED_ROUTES):
        if method != "GET":
            continue
        reply = console.get(fill(path, values), follow_redirects=False)
        expected = 303 if path == "/models" else 200
        assert reply.status_code == expected, (path, reply.status_code, reply.text[:300])
    css = console.get("/static/console.css")
    assert css.headers["content-type"].startswith("text/css")


def test_security_headers(console: Console) -> None:
    page = console.get("/", headers=HTML)
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"


def test_overview_shows_champion_labels_runs_and_alerts(console: Console) -> None:
    h = console.history
    card = console.page("/").find("section", data_dataset=DATASET)
    assert card.find("td", data_field="champion").find("a").text() == f"v{h.champion}"
    assert f"serving version {h.champion_serving}" in card.find("td", data_field="champion").text()
    labels = {
        s.attrs["data-label"]: int(s.attrs["data-version"])
        for s in card.find("td", data_field="labels").find_all("span", data_label=True)
    }
    assert labels == h.labels
    last_run = card.find("td", data_field="last-run").text()
    assert h.last_run.run_id in last_run
    assert f"{len(h.runs)} runs in all" in last_run
    assert "running or stopped" in last_run  # the newest run is still in its canary
    assert f"{h.versions} versions" in card.find("p", class_="links").text()
    open_alerts = h.alert_count(dataset=DATASET, hours=24)
    assert open_alerts > 0
    assert f"{open_alerts} in the last 24 h" in card.find("td", data_field="alerts").text()
    backlog = card.find("td", data_field="backlog").text()
    assert f"{len(h.backlog)} files waiting" in backlog
    drift = card.find("td", data_field="drift")
    assert drift.find("a", class_="badge").text() == h.monitor_status
    assert "model server unreachable" in card.find("td", data_field="labels").text()


def test_models_redirects_to_the_first_dataset(console: Console) -> None:
    reply = console.get("/models", follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/models/{KNOWN[0]}"


def test_models_page_lists_every_version(console: Console) -> None:
    h = console.history
    page = console.page(f"/models/{DATASET}")
    assert page.find("b", data_field="champion").text() == f"v{h.champion}"
    lead = page.find("p", class_="lead")
    labels = {
        s.attrs["data-label"]: int(s.attrs["data-version"])
        for s in lead.find_all("span", data_label=True)
    }
    assert labels == h.labels
    rows = page.find("table", class_="versions").find("tbody").find_all("tr", data_version=True)
    assert [r.attrs["data-version"] for r in rows] == sorted(h.verdicts, key=int, reverse=True)
    assert f"Versions ({h.versions})" in page.find("h2", id="versions-h").text()
    for row in rows:
        version = row.attrs["data-version"]
        verdict = row.find("span", class_="verdict").text()
        assert verdict == h.verdicts[version], version
        shown = {
            s.attrs["data-metric"]: float(s.find("b").text())
            for s in row.find_all("span", data_metric=True)
        }
        assert shown == pytest.approx(h.metrics[version], abs=6e-4), version
        serving = h.deployed.get(version)
        assert f"serving {serving or '–'}" in row.find("td").text(), version
    marked = [r.attrs["data-version"] for r in rows if r.find_all("span", class_="label-champion")]
    assert marked == [h.champion]
    assert len(page.find_all("tr", class_="rollback")) == h.rollbacks >= 1
    forced = [f.text() for f in page.find_all("tr", class_="forced")]
    assert len(forced) == len(h.forced) >= 1
    for version, text in zip(sorted(h.forced, key=int, reverse=True), forced, strict=True):
        assert f"forced deploy of v{version} (gate forced)" in text
    # The rollback form offers the loaded serving versions, the previous one chosen.
    select = page.find("form", action="/actions/rollback").find("select")
    offered = {int(o.attrs["value"]): "selected" in o.attrs for o in select.find_all("option")}
    assert sorted(offered) == h.serving_versions
    assert offered[h.labels["previous"]]
    csrf = page.find("form", action="/actions/rollback").find("input", name="csrf")
    assert len(csrf.attrs["value"]) == 40


def test_model_card_of_the_champion(console: Console) -> None:
    h = console.history
    page = console.page(f"/models/{DATASET}/versions/{h.champion}")
    assert f"v{h.champion}" in page.find("h1").text()
    lead = page.find("p", class_="lead")
    assert [s.text() for s in lead.find_all("span", class_="label")] == ["stable"]
    metrics = {
        td.attrs["data-metric"]: float(td.text().split()[0])
        for td in page.find_all("td", data_metric=True)
    }
    assert metrics == pytest.approx(h.metrics[h.champion], abs=6e-5)
    run = next(r for r in h.runs if r.registry_version == h.champion)
    assert f"{run.rows_in:,} in" in page.text()
    lineage = page.find("ol", class_="lineage").text()
    assert f"version {h.champion_serving}" in lineage
    assert f"ds={run.ds}" in lineage


def test_model_card_of_a_forced_version(console: Console) -> None:
    forced = console.history.forced[0]
    page = console.page(f"/models/{DATASET}/versions/{forced}")
    assert "Forced by ops" in page.find("p", class_="warn").text()
    checks = page.find("ul", class_="checks").find_all("li")
    assert any("FAIL" in c.text() for c in checks)
    assert any(c.attrs["class"] == "check-skip" for c in checks)  # the small slice


def test_live_page_without_a_model_server(console: Console) -> None:
    h = console.history
    page = console.page(f"/live/{DATASET}")
    assert "No traffic samples yet" in page.text()
    badge = page.find("span", class_="badge")
    assert badge.text() == h.monitor_status
    options = page.find("select", name="feature").find_all("option")
    assert {o.attrs["value"] for o in options} == set(h.drift_features)
    links = [a.attrs["href"] for a in page.find_all("a") if a.text() == "Full drift report"]
    assert links == [f"/files/{h.report_files[-1]}"]
    assert console.get(links[0]).status_code == 200
    chosen = h.drift_features[3]
    page = console.page(f"/live/{DATASET}?feature={chosen}")
    selected = [o.attrs["value"] for o in page.find_all("option") if "selected" in o.attrs]
    assert selected == [chosen]


def test_data_page_counts(console: Console) -> None:
    h = console.history
    page = console.page(f"/data/{DATASET}")
    heading = page.find("h2", id="parts-h").text()
    assert f"({len(h.runs)} runs, newest 100 shown)" in heading
    rows = page.find("table", class_="partitions").find_all("tr", data_run=True)
    assert len(rows) == 100
    assert [r.attrs["data-run"] for r in rows] == [r.run_id for r in reversed(h.runs)][:100]
    for run in (h.runs[-1], h.runs[-2], h.runs[-57], h.runs[-100]):
        row = page.find("tr", data_run=run.run_id)
        cells = {td.attrs["data-field"]: td.text() for td in row.find_all("td", data_field=True)}
        assert cells == {
            "rows_in": f"{run.rows_in:,}",
            "rows_clean": f"{run.rows_clean:,}",
            "rows_quarantined": f"{run.rows_quarantined:,}",
            "rows_duplicate": f"{run.rows_duplicate:,}",
        }, run.run_id
        assert run.rows_in == run.rows_clean + run.rows_quarantined + run.rows_duplicate
    reasons = {d.attrs["data-reason"]: d.find("summary").text() for d in page.find_all("details")}
    expected = h.quarantine_totals.most_common(10)
    assert list(reasons) == [r for r, _ in expected]
    for reason, count in expected:
        assert reasons[reason].endswith(f"{count:,} rows"), reason
    samples = page.find("details", data_reason=expected[0][0]).find_all("li")
    assert 1 <= len(samples) <= 3
    ledger = page.find("h2", id="ledger-h").text()
    assert f"Landing ledger ({h.ledger_total} files, newest 200 shown)" in ledger
    assert len(page.find("section", id="ledger").find("tbody").find_all("tr")) == 200
    assert all(name in page.find("section", id="ledger").text() for name in h.backlog)


@pytest.mark.parametrize(
    ("query", "kind", "dataset", "hours"),
    [
        ("", None, None, 24 * 7),
        ("?since=all", None, None, None),
        ("?since=24h", None, None, 24),
        ("?since=1h", None, None, 1),
        ("?kind=rollback&since=30d", "rollback", None, 24 * 30),
        (f"?dataset={DATASET}&since=30d", None, DATASET, 24 * 30),
        (
            f"?dataset={DATASET}&kind=candidate_rejected&since=7d",
            "candidate_rejected",
            DATASET,
            168,
        ),
        (
            "?dataset=palmer_penguins&kind=drift_detected&since=all",
            "drift_detected",
            "palmer_penguins",
            None,
        ),
        ("?kind=generic&since=30d", "generic", None, 24 * 30),
    ],
)
def test_alerts_filters(
    console: Console, query: str, kind: str | None, dataset: str | None, hours: int | None
) -> None:
    h = console.history
    expected = h.alert_count(kind=kind, dataset=dataset, hours=hours)
    page = console.page(f"/alerts{query}")
    rows = page.find("table", class_="alerts").find_all("tr", data_kind=True)
    assert len(rows) == expected, query
    if kind:
        assert {r.attrs["data-kind"] for r in rows} <= {kind}
    assert f"{expected} alert" in page.find("main").find("p").text()
    assert expected > 0 or query == "?since=1h"


def test_alerts_refuse_a_bad_filter(console: Console) -> None:
    bad = console.get("/alerts?kind=nonsense")
    assert bad.status_code == 400
    assert "unknown alert kind 'nonsense'" in bad.json()["detail"]
    assert "failed_run" in bad.json()["detail"]
    window = console.get("/alerts?since=2w")
    assert window.status_code == 400
    assert "unknown window" in window.json()["detail"]


def test_run_tab_and_task_tab(console: Console) -> None:
    h = console.history
    run = h.runs[-3]
    page = console.page(f"/runs/aimass_retrain/{run.run_id}")
    rows = page.find("td", data_field="rows").text()
    assert rows.startswith(f"{run.rows_in:,} in = {run.rows_clean:,} clean")
    task = console.page(f"/runs/aimass_retrain/{run.run_id}/tasks/clean_data")
    assert task.find("td", data_field="rows").text() == rows
    trained = h.trained_runs()[-2]
    page = console.page(f"/runs/aimass_retrain/{trained.run_id}/tasks/evaluate_candidate")
    assert page.find("span", class_="verdict").text() == h.verdicts[str(trained.registry_version)]
    unknown = console.page("/runs/aimass_retrain/manual__nope")
    assert "keeps no records" in unknown.text()


def test_run_tab_of_another_dag_with_the_same_run_id(console: Console) -> None:
    run = next(r for r in reversed(console.history.runs) if r.run_id.startswith("scheduled__"))
    page = console.page(f"/runs/aimass_monitor/{run.run_id}")
    assert "keeps no records" in page.text()
    assert not page.find_all("td", data_field="rows")


@pytest.mark.parametrize("path", ["models", "live", "data"])
def test_unknown_dataset_is_404_listing_known_ones(console: Console, path: str) -> None:
    reply = console.get(f"/{path}/no_such_dataset")
    assert reply.status_code == 404
    assert reply.json()["detail"] == (
        f"no dataset 'no_such_dataset'; known datasets: {', '.join(KNOWN)}"
    )
    page = console.get(f"/{path}/no_such_dataset", headers=HTML)
    assert page.status_code == 404
    assert (
        "known datasets: chicago_taxi" in parse_html(page.text).find("p", class_="message").text()
    )


def test_unknown_version_is_404(console: Console) -> None:
    reply = console.get(f"/models/{DATASET}/versions/999")
    assert reply.status_code == 404
    assert "has no registry version '999'" in reply.json()["detail"]


# ----------------------------------------------------------------------------- actions


@pytest.mark.parametrize("action", ["rollback", "retrain", "approval"])
def test_viewer_may_not_act(
    console: Console, action: str, airflow_calls: list[dict[str, Any]]
) -> None:
    from aimass.console.security import csrf_token

    form = post_form(console.history, csrf_token(console.tokens["viewer"]))
    reply = console.post(f"/actions/{action}", form, "viewer")
    assert reply.status_code == 403, reply.text
    assert airflow_calls == []


def test_rollback_needs_a_reason(console: Console, airflow_calls: list[dict[str, Any]]) -> None:
    from aimass.console.security import csrf_token

    form = {**post_form(console.history, csrf_token(console.tokens["admin"])), "reason": "oops"}
    reply = console.post("/actions/rollback", form, "admin")
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith("give a reason of at least 10 characters")
    assert airflow_calls == []


def test_rollback_to_a_version_not_loaded(
    console: Console, airflow_calls: list[dict[str, Any]]
) -> None:
    from aimass.console.security import csrf_token

    form = {**post_form(console.history, csrf_token(console.tokens["admin"])), "version": "1"}
    reply = console.post("/actions/rollback", form, "admin")
    assert reply.status_code == 400
    assert "version 1 is not loaded by the model server" in reply.json()["detail"]
    assert airflow_calls == []


@pytest.mark.parametrize("csrf", ["missing", "other session"])
def test_form_without_its_token_is_refused(
    console: Console, csrf: str, airflow_calls: list[dict[str, Any]]
) -> None:
    from aimass.console.security import csrf_token

    form = post_form(console.history, csrf_token(console.tokens["viewer"]))
    if csrf == "missing":
        del form["csrf"]
    reply = console.post("/actions/rollback", form, "admin")
    assert reply.status_code == 403
    assert "security token does not match" in reply.json()["detail"]
    assert airflow_calls == []


def test_admin_rollback_is_triggered_as_the_admin(
    console: Console, airflow_calls: list[dict[str, Any]]
) -> None:
    from aimass.console.security import csrf_token

    h = console.history
    form = post_form(h, csrf_token(console.tokens["admin"]))
    reply = console.post("/actions/rollback", form, "admin")
    assert reply.status_code == 200, reply.text
    assert "Done: rollback of chicago_taxi" in parse_html(reply.text).find("h1").text()
    [call] = airflow_calls
    assert (call["method"], call["path"]) == ("POST", "/dags/aimass_rollback/dagRuns")
    assert call["body"]["conf"] == {
        "dataset": DATASET,
        "version": h.labels["previous"],
        "reason": form["reason"],
    }
    assert call["headers"] == {"Authorization": f"Bearer {console.tokens['admin']}"}


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    "path",
    [
        "/files/../../etc/passwd",
        "/files/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/files//etc/passwd",
        "/files/%2Fetc%2Fpasswd",
        "/files/chicago_taxi/../../../../../../etc/passwd",
        "/files/chicago_taxi",
        "/files/chicago_taxi/escape/passwd",
        "/files/nope.html",
    ],
)
def test_files_outside_the_reports_are_404(console: Console, path: str) -> None:
    link = console.settings.reports_dir / DATASET / "escape"  # a link out of the reports
    if not link.is_symlink():
        link.symlink_to(Path("/etc"))
    reply = console.get(path)
    assert reply.status_code == 404, (path, reply.status_code)
    assert "root:" not in reply.text


def test_report_files_are_served(console: Console) -> None:
    for relative in console.history.report_files:
        reply = console.get(f"/files/{relative}")
        assert reply.status_code == 200, relative
        assert reply.text.startswith("<html>")
        assert "unsafe-inline" in reply.headers["content-security-policy"]


def test_only_report_files_get_the_relaxed_csp(console: Console) -> None:
    reply = console.get("/runs/files/files", headers=HTML)
    assert reply.status_code == 200
    assert reply.headers["content-security-policy"].startswith("default-src 'none'")
