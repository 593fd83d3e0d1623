"""The regression spec through a running Airflow: the same DAG, a different YAML.

Its own stack (tests/e2e/conftest.py), so `make test` runs it beside the longer
test_retrain_dag.py on the other process.
"""

from __future__ import annotations

import pytest
from e2ekit import predict_stable, run_retrain, task_log_tail

from aimass.platform.airflow_api import AirflowClient
from aimass.platform.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


def test_a_regression_spec_runs_through_the_same_dag(
    stack: tuple[Settings, AirflowClient],
) -> None:
    settings, client = stack

    # Body mass in grams; the two rows without it are quarantined, not dropped.
    run_id, state, summary = run_retrain(
        client, {"dataset": "penguins_body_mass", "ds": "2026-11-02", "workers": 2}
    )
    assert state == "success", task_log_tail(settings, run_id)
    assert summary is not None
    counts = summary["clean"]
    assert counts["rows_in"] == 344 and counts["rows_quarantined"] == 2
    assert counts["quarantine_reasons"] == {"null label body_mass: `body_mass_g`": 2}
    # Gate PASSED: the stack's first body-mass run has no champion, so only the absolute
    # bars apply (r2 >= 0.6, rmse <= 500 g).
    gate = summary["gate"]
    assert gate["task"] == "regression" and gate["champion"] is None
    assert gate["verdict"] == "passed", gate["checks"]
    assert gate["candidate"]["rmse"] < 500 and gate["candidate"]["r2"] > 0.6
    deployment = summary["deployment"]
    assert deployment["output"] == "predictions"
    (grams,) = predict_stable(settings, "penguins_body_mass", deployment["rest_instance"])
    assert 2000 < float(grams) < 7000

    # A classification-only override is refused for the regression spec, before any work.
    run_id, state, _ = run_retrain(
        client, {"dataset": "penguins_body_mass", "ds": "2026-11-03", "min_auc": 0.9}
    )
    assert state == "failed"
    assert "applies to classification" in task_log_tail(settings, run_id)
    assert not settings.clean_partition("penguins_body_mass", "2026-11-03").exists()


def test_a_time_series_spec_holds_out_its_latest_days_and_derives_from_the_date(
    stack: tuple[Settings, AirflowClient],
) -> None:
    """seattle_weather (vega_datasets' file, as `make setup` extracts it): split by time."""
    import shutil

    from aimass.data.sample_data import raw_dir
    from aimass.platform.settings import REPO_ROOT

    settings, client = stack
    sample = raw_dir(REPO_ROOT / "var", "seattle_weather") / "seattle-weather.csv"
    raw = raw_dir(settings.var_dir, "seattle_weather")
    raw.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample, raw / sample.name)
    from aimass.training.run import auto_workers

    # workers auto (the default; the other e2e runs train on 2): one per 4 cores here.
    run_id, state, summary = run_retrain(
        client, {"dataset": "seattle_weather", "ds": "2026-11-04", "workers": "auto", "epochs": 20}
    )
    assert state == "success", task_log_tail(settings, run_id)
    assert summary is not None
    assert summary["model"]["workers"] == auto_workers()[0]
    counts = summary["clean"]
    assert counts["rows_in"] == counts["rows_clean"] == 1461, counts
    assert 270 <= counts["rows_holdout"] <= 310, counts  # the latest 20 % of days

    # Every holdout day comes after every training day, and the date's parts were derived.
    from aimass.data.lake import open_partition

    partition = settings.clean_partition("seattle_weather", "2026-11-04")
    clean = open_partition(partition).to_table().to_pylist()
    train = [r["date"] for r in clean if r["split"] == "train"]
    holdout = [r["date"] for r in clean if r["split"] == "holdout"]
    assert max(train) < min(holdout) and max(holdout) == "2015/12/31"
    assert {r["month"] for r in clean} == set(range(1, 13))
    assert max(r["day_of_year"] for r in clean) == 366  # 2012 was a leap year

    # The mean of the training days scores an RMSE of about 8 °C on this holdout.
    gate = summary["gate"]
    assert gate["verdict"] == "passed", gate["checks"]
    assert gate["candidate"]["rmse"] < 4.5 and gate["candidate"]["r2"] > 0.65
    # A row as the file writes it, date included: 2015/07/01 (the highest was 32.2 °C).
    day = {"date": "2015/07/01", "precipitation": 0.0, "temp_min": 17.2, "wind": 4.3}
    (high,) = predict_stable(settings, "seattle_weather", day | {"weather": "sun"})
    assert 24 < float(high) < 40
    # The served model trims as the clean job does: a padded value scores the same.
    (padded,) = predict_stable(settings, "seattle_weather", day | {"weather": "  sun\t"})
    assert float(padded) == pytest.approx(float(high), rel=1e-6)
