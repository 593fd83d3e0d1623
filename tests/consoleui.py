"""Driving the AI Mass console in Chromium as a person would: log in, open pages, read figures.

Used by the end-to-end test after real runs (tests/e2e/test_retrain_dag.py); what the pages
show is compared with the records those runs left (``RecordStore``), the serving config, the
alert store and the landing ledger.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Page

from aimass.platform.records import RecordStore
from aimass.platform.settings import Settings

CONSOLE = "/aimass"


def log_in(page: Page, user: str, password: str) -> None:
    """Airflow's login form (simple auth manager), then back to the UI."""
    page.goto("/")
    page.wait_for_selector("input[name=username]")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=30_000)


def open_page(page: Page, path: str) -> str:
    """A console page by its path under the console; returns its main text."""
    response = page.goto(CONSOLE + path)
    assert response is not None and response.status == 200, (path, response and response.status)
    return page.inner_text("main")


def text_of(page: Page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def check_models_page(page: Page, settings: Settings, dataset: str) -> None:
    """Every trained version is a row with the gate's holdout metrics, and every gate line."""
    store = RecordStore(settings.reports_dir)
    trainings = store.trainings(dataset)
    decisions = {d.candidate_version: d for d in store.decisions(dataset)}
    open_page(page, f"/models/{dataset}")
    rows = page.locator("table.versions tbody tr")
    assert rows.count() == len(trainings), (rows.count(), len(trainings))
    for training in trainings:
        row = page.locator(f"tr[data-version='{training.registry_version}']")
        gate = decisions[training.registry_version]
        for metric, value in gate.candidate.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and metric != "rows":
                shown = row.locator(f"[data-metric='{metric}'] b").inner_text()
                want = f"{value:,}" if isinstance(value, int) else f"{value:.3f}"
                assert shown == want, (training.registry_version, metric, shown)
        row.locator("details summary").click()
        lines = row.locator("ul.checks li").all_inner_texts()
        assert lines == [c["message"] for c in gate.checks], lines
    # one chart per metric, and the version on each point without hovering
    assert page.locator("svg.chart").count() >= 1
    labels = page.locator("svg.chart .x-tick").all_text_contents()
    assert {f"v{t.registry_version}" for t in trainings} <= set(labels), labels


def check_data_page(page: Page, settings: Settings, dataset: str, bad_lines: list[str]) -> None:
    """Each partition's row accounting equals its clean record; quarantine shows sample lines."""
    store = RecordStore(settings.reports_dir)
    open_page(page, f"/data/{dataset}")
    runs = store.run_records(dataset)
    checked = 0
    for records in runs:
        checks = records.get("checks")
        request = records.get("request")
        if checks is None or request is None:
            continue
        row = page.locator(f"tr[data-run='{request.run_id}']")  # type: ignore[attr-defined]
        clean = checks.clean  # type: ignore[attr-defined]
        for name in ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate"):
            shown = row.locator(f"[data-field='{name}']").inner_text()
            assert shown == f"{getattr(clean, name):,}", (name, shown)
        checked += 1
    assert checked >= 1
    reasons = page.locator("details.reason")
    assert reasons.count() >= 1
    for i in range(reasons.count()):  # open every reason, as a person reading them would
        reasons.nth(i).locator("summary").click()
    samples = " ".join(page.locator("ul.samples code").all_inner_texts())
    assert any(line.strip() in samples for line in bad_lines), samples[:500]


def check_run_tab(page: Page, settings: Settings, dataset: str, run_id: str) -> None:
    records = RecordStore(settings.reports_dir).run(dataset, run_id)
    clean = records["checks"].clean  # type: ignore[attr-defined]
    text = open_page(page, f"/runs/aimass_retrain/{quote(run_id, safe='')}")
    assert f"{clean.rows_in:,} in = {clean.rows_clean:,} clean" in text, text[:800]
    assert "Data Docs" in text and "Gate report" in text


def alert_count(page: Page) -> int:
    found = re.search(r"(\d+) alerts?\.", page.inner_text("main"))
    assert found, page.inner_text("main")[:500]
    return int(found.group(1))


def save(page: Page, artifacts: Path, name: str) -> None:
    from browserkit import screenshot

    screenshot(page, artifacts, name)
