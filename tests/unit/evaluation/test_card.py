"""The model card: built from the run's records and a real analysis, rendered, written, read back.

The analysis is :func:`aimass.evaluation.analysis.analyze` on a function "model" over the spec's
raw model inputs; the records are the real record classes. The page must hold every section
and its plots as inline SVG, run no script and fetch nothing; the JSON must render the same
page again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimass.data.spec import DatasetSpec, load_spec
from aimass.evaluation.analysis import analyze
from aimass.evaluation.card import (
    ANALYSIS_JSON,
    CARD_HTML,
    CARD_JSON,
    add_compression,
    build_card,
    render_html,
    split_text,
    write_card,
)
from aimass.platform.records import GateDecision, RunRequest, TrainingResult
from aimass.platform.settings import REPO_ROOT

pytestmark = pytest.mark.unit

SPECS = REPO_ROOT / "conf" / "datasets"
SECTIONS = ("data", "features", "metrics", "importance", "gate", "lineage")


def _records(spec: DatasetSpec, tmp_path: Path) -> tuple[RunRequest, TrainingResult, GateDecision]:
    run = RunRequest(
        dataset=spec.name,
        ds="2026-11-20",
        input_path="/data/trips.csv",
        workers=1,
        dag_id="aimass_retrain",
        run_id="manual__1",
        run_key="aimass_retrain/manual__1",
        clean_dir=str(tmp_path / "clean"),
        quarantine_dir=str(tmp_path / "q"),
        report_dir=str(tmp_path / "reports"),
        clean_summary=str(tmp_path / "reports" / "clean_summary.json"),
        run_dir=str(tmp_path / "run"),
    )
    model = TrainingResult(
        mlflow_run_id="abc123",
        experiment_id="1",
        mlflow_run_url="http://127.0.0.1:5000/#/experiments/1/runs/abc123",
        registry_version="7",
        saved_model_dir=str(tmp_path / "export"),
        workers=1,
        hparams_source="spec",
        train_seconds=12.5,
    )
    gate = GateDecision(
        passed=False,
        deploy=False,
        verdict="rejected",
        headline="candidate v7 rejected: auc regressed",
        candidate={"auc": 0.91, "ece": 0.02, "rows": 400.0},
        champion={"auc": 0.95, "ece": 0.03, "rows": 400.0},
        slices=[
            {"column": "payment_type", "value": "Cash", "rows": 150, "candidate": {"auc": 0.8}}
        ],
        reasons=["FAIL auc 0.9100 regressed by 0.0400 against champion v6 <script>"],
        dataset=spec.name,
        ds="2026-11-20",
        run_id="manual__1",
        champion_version="6",
        candidate_version="7",
        task=spec.task,
        primary_metric=spec.primary_metric,
    )
    return run, model, gate


def _analysis(spec: DatasetSpec, rows: int = 400) -> dict[str, Any]:
    """A real analysis of a function that decides on ``fare`` alone, over the spec's inputs."""
    rng = np.random.default_rng(0)
    features: dict[str, np.ndarray] = {}
    for name in spec.model_inputs:
        if spec.dtype(name) == "string":
            features[name] = rng.choice(np.array(["a", "b"], dtype=object), size=rows)
        else:
            features[name] = rng.normal(size=rows).astype(np.float32)
    labels = (features["fare"] > 0).astype(np.int64)

    def model(f: dict[str, np.ndarray]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-3.0 * np.asarray(f["fare"], dtype=np.float64)))

    return analyze(
        model,
        features,
        labels,
        task="binary",
        metric="auc",
        larger_is_better=True,
        slices={"payment_type": features["payment_type"]},
        repeats=2,
    )


def _svgs(html: str) -> list[str]:
    return re.findall(r'<svg [^>]*class="chart chart-(\w+)"', html)


def test_the_card_holds_every_section_with_its_plots(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "chicago_taxi.yaml")
    run, model, gate = _records(spec, tmp_path)
    analysis = _analysis(spec)
    card = build_card(
        spec,
        run=run,
        model=model,
        gate=gate,
        analysis=analysis,
        rows={"train": 1600, "holdout": 400},
    )
    assert card["data"]["rows_train"] == 1600 and card["data"]["split"]["by"] == "hash"
    assert card["features"]["model_inputs"] == list(spec.model_inputs)
    assert card["features"]["raw_inputs"] == list(spec.model_inputs)
    [speed] = card["features"]["derived"]
    assert (
        speed["name"] == "trip_speed_mph"
        and speed["feature"]
        and "trip_seconds" in speed["expression"]
    )
    assert card["importance"]["features"][0]["feature"] == "fare"
    assert card["lineage"]["champion_compared_with"] == "6"
    assert card["lineage"]["mlflow_run_id"] == "abc123"
    assert card["gate"]["verdict"] == "rejected" and card["missing"] == {}

    html = render_html(card)
    for section in SECTIONS + ("calibration",):
        assert f'id="{section}"' in html, section
    assert _svgs(html) == ["bars", "xy", "xy", "xy"]  # importance, calibration, ROC, PR
    assert 'data-feature="fare"' in html
    assert "trip_speed_mph" in html and "payment_type=Cash" in html
    # nothing runs and nothing is fetched; values from records are escaped
    assert "<script" not in html and "&lt;script&gt;" in html
    assert not re.search(r'(src|href)="', html)
    assert "reference" in html  # the calibration diagonal


def test_json_round_trips_into_the_same_page(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "chicago_taxi.yaml")
    run, model, gate = _records(spec, tmp_path)
    analysis = _analysis(spec)
    card = build_card(
        spec, run=run, model=model, gate=gate, analysis=analysis, rows={"train": 1, "holdout": 2}
    )
    paths = write_card(tmp_path / "out", card, analysis)
    assert {p.name for p in paths.values()} == {ANALYSIS_JSON, CARD_JSON, CARD_HTML}
    loaded = json.loads(paths["json"].read_text())
    assert loaded == card
    assert render_html(loaded) == paths["html"].read_text()
    assert json.loads(paths["analysis"].read_text())["importance"] == card["importance"]


def test_the_compression_choice_is_added_to_the_card_and_drawn(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "chicago_taxi.yaml")
    run, model, gate = _records(spec, tmp_path)
    analysis = _analysis(spec)
    card = build_card(
        spec, run=run, model=model, gate=gate, analysis=analysis, rows={"train": 1, "holdout": 2}
    )
    out = tmp_path / "out"
    write_card(out, card, analysis)
    assert "Compression" not in (out / CARD_HTML).read_text()
    variant = {
        "name": "int8",
        "size_ratio": 0.66,
        "disk_ratio": 0.97,
        "latency_ratio": 1.04,
        "deltas": {"auc": 0.0002},
        "clears": True,
        "reasons": [],
    }
    missed = {**variant, "name": "distilled", "clears": False, "reasons": ["auc loses 0.03"]}
    failed = {"name": "pruned", "error": "ValueError: boom"}
    comp = {"chosen": "int8", "registry_version": "7", "why": "int8 is the smallest"}
    paths = add_compression(out, {**comp, "variants": [variant, missed, failed]})
    assert paths is not None
    assert json.loads(paths["json"].read_text())["compression"]["chosen"] == "int8"
    html = paths["html"].read_text()
    assert "<b>int8</b> (registry version 7)" in html and "int8 is the smallest" in html
    assert "auc loses 0.03" in html and "failed: ValueError: boom" in html
    assert "0.66×" in html and "auc +0.0002" in html
    assert add_compression(tmp_path / "no-card", comp) is None


def test_a_card_without_its_analysis_says_what_is_missing(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "penguins_body_mass.yaml")
    run, model, gate = _records(spec, tmp_path)
    analysis = {
        "model_inputs": [],
        "importance": None,
        "residuals": None,
        "missing": {"importance": "ConfigError: no holdout rows"},
    }
    card = build_card(
        spec,
        run=run,
        model=model,
        gate=gate,
        analysis=analysis,
        rows={"train": None, "holdout": None},
        missing={"row counts": "no partition"},
    )
    assert card["missing"] == {
        "row counts": "no partition",
        "importance": "ConfigError: no holdout rows",
    }
    html = render_html(card)
    assert 'data-part="importance"' in html and 'data-part="row counts"' in html
    assert 'id="residuals"' in html and 'id="calibration"' not in html
    assert _svgs(html) == []


def test_regression_card_draws_residuals(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "penguins_body_mass.yaml")
    run, model, gate = _records(spec, tmp_path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    analysis = analyze(
        lambda f: 10.0 * np.asarray(f["x"]),
        {"x": x},
        10.0 * x + rng.normal(size=300),
        task="regression",
        metric="rmse",
        larger_is_better=False,
        repeats=1,
    )
    card = build_card(
        spec, run=run, model=model, gate=gate, analysis=analysis, rows={"train": 1, "holdout": 1}
    )
    html = render_html(card)
    assert len(card["residuals"]) == 10
    assert _svgs(html) == ["bars", "xy"]
    assert "Residuals by predicted value" in html


@pytest.mark.parametrize(
    ("split", "text"),
    [
        ({"by": "hash", "holdout_percent": 20}, "hash: 20 % holdout"),
        ({"by": "time", "column": "date", "holdout_percent": 25}, "time by date: 25 % holdout"),
        (
            {"by": "time", "column": "date", "cutoff": "2015-06-01"},
            "time by date: holdout from 2015-06-01",
        ),
        (
            {"by": "group", "key": ["station"], "holdout_percent": 20},
            "group on key station: 20 % holdout",
        ),
    ],
)
def test_split_in_words(split: dict[str, Any], text: str) -> None:
    assert split_text(split) == text
