"""
### Search hyperparameters (`aimass_tune`)

Manual only. Runs a Keras Tuner search (Bayesian optimization or random search) over the
space in the dataset spec's `tuning` section, on a clean partition the retraining DAG wrote
(the newest one unless `ds` is set):

1. **prepare_tuning**: checks the params; a bad value fails at once, saying what to fix.
2. **search_hyperparameters**: every trial is a real training run with the same worker
   processes as `aimass_retrain` (`workers`), scored on a validation share of the train
   split (the holdout the gate uses stays unseen). Each trial is a child MLflow run under
   one parent run; the parent ends with the best values (`best.*` params,
   `tuning/best_hparams.json`). A retry resumes: finished trials are not rerun.

The next `aimass_retrain` run of the dataset trains with the best values, unless its
`use_tuned_hparams` param is off or its `learning_rate` / `batch_size` params override them.
The task's return value holds the best values, every trial's score and the MLflow link.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, get_current_context, task

from aimass.platform.alerts import notify_failed_run
from aimass.platform.settings import Settings
from aimass.stages.params import TUNE_PARAMS, airflow_params

DAG_ID = "aimass_tune"
DATASETS = Settings.from_env().dataset_names()

with DAG(
    dag_id=DAG_ID,
    description="Keras Tuner search over the spec's space; the best values feed the next training",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    # A failed run is logged, stored and sent to AIMASS_ALERT_CONN_ID (aimass.platform.alerts).
    on_failure_callback=notify_failed_run,
    tags=["aimass", "tuning"],
    default_args={"owner": "aimass", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params=airflow_params(TUNE_PARAMS, DATASETS),
) as dag:

    @task
    def prepare_tuning() -> dict:
        """Validate the params before any work and decide where the search keeps its state."""
        from airflow.sdk.exceptions import AirflowFailException

        from aimass.platform.errors import ConfigError
        from aimass.stages.tune import prepare_tuning as prepare

        context = get_current_context()
        try:
            return prepare(dict(context["params"]), run_id=context["dag_run"].run_id)
        except ConfigError as exc:
            raise AirflowFailException(f"invalid tuning parameters: {exc}") from exc

    @task(execution_timeout=timedelta(hours=12))
    def search_hyperparameters(ctx: dict) -> dict:
        """Train and score each trial; store the best values in MLflow for the next training."""
        from aimass.stages.tune import run_search

        return run_search(ctx)

    ctx = prepare_tuning()
    search_hyperparameters(ctx)
