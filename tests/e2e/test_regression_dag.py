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
        client, {"dataset": "penguins_body_mass", "ds": "2026-11-02"}
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
