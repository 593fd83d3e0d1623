"""
### Roll a model back (`aimass_rollback`)

Manual only, for when the model in production misbehaves. Moves the model server's
`stable` label and the MLflow alias `champion` back to an earlier version **without
retraining**, in seconds when the target is still loaded (the previous version always is):

1. **prepare_rollback**: checks the params against what is served now: the dataset, the
   target `version` (empty means the `previous` label) and a `reason`. A bad value fails at
   once, saying what to fix; nothing moves.
2. **roll_back**: loads the target if it is not loaded, moves `stable` to it (the version
   rolled back from becomes `previous`, so a second rollback rolls forward again), moves
   `champion` in MLflow (the old champion becomes `previous`), and records who and why:
   tags on the registry version and `reports/<dataset>/rollbacks/<time>-v<version>.json`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, get_current_context, task

from aimass.platform.alerts import notify_failed_run
from aimass.platform.settings import Settings
from aimass.stages.params import ROLLBACK_PARAMS, airflow_params

DAG_ID = "aimass_rollback"
DATASETS = Settings.from_env().dataset_names()

with DAG(
    dag_id=DAG_ID,
    description="Move stable and champion back to an earlier model version, without retraining",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    # A failed run is logged, stored and sent to AIMASS_ALERT_CONN_ID (aimass.platform.alerts).
    on_failure_callback=notify_failed_run,
    tags=["aimass", "serving"],
    default_args={"owner": "aimass", "retries": 1, "retry_delay": timedelta(seconds=10)},
    params=airflow_params(ROLLBACK_PARAMS, DATASETS),
) as dag:

    @task
    def prepare_rollback() -> dict:
        """Check the target version and the reason before anything moves."""
        from airflow.sdk.exceptions import AirflowFailException

        from aimass.platform.errors import ConfigError
        from aimass.stages.rollback import prepare_rollback as prepare

        context = get_current_context()
        who = context["dag_run"].triggering_user_name or "unknown"
        try:
            return prepare(dict(context["params"]), who=who)
        except ConfigError as exc:
            raise AirflowFailException(f"invalid rollback parameters: {exc}") from exc

    @task
    def roll_back(ctx: dict) -> dict:
        """Move stable and champion back; record who and why."""
        from aimass.stages.rollback import roll_back as run

        return run(ctx)

    ctx = prepare_rollback()
    roll_back(ctx)
