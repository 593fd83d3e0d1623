"""
### Score lake rows in bulk (`aimass_batch_predict`)

For scores of many rows at once (a day of trips, a nightly mailing list, a backfill) where
calling the model server row by row would be slow and load production. The rows are scored
on Spark with the same SavedModel the model server loads, so a row gets the score it would
get online.

1. **prepare_scoring**: checks the params before any work: the `dataset`, the day (`ds`,
   empty for the newest clean partition) or a Parquet/CSV `input_path`, and the `model`
   (`champion` by default, `previous`, or a registry version). The version is fetched from
   MLflow; a bad value fails at once, saying what to fix.
2. **score_rows**: a Spark job (`jobs/score/main.py`, connection `spark_default`) streams
   the rows to the model as Arrow batches (one model load per Python worker) and writes
   `lake/predictions/<dataset>/ds=<ds>/`: each row's key and `row_id`, its inputs, the
   prediction, `model_name`, `model_version` and `input_partition`. Rows that cannot be
   scored go to `_rejected/` with a `reason`; rows in = scored + rejected, or nothing is
   replaced.
3. **publish_scoring**: records the counts, the reasons and the speed in the run's records
   and in an MLflow run (tagged `aimass.kind=batch_predict`), linked from the task log.

Manual with **Trigger DAG w/ config**; with `AIMASS_BATCH_PREDICT_ON_CLEAN=true` it also
scores each new clean batch as soon as `aimass_retrain` has validated it.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.util import find_spec

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, AssetAlias, get_current_context, task

from aimass.platform.alerts import notify_failed_run
from aimass.platform.settings import Settings
from aimass.stages.params import BATCH_PREDICT_PARAMS, airflow_params

DAG_ID = "aimass_batch_predict"
_SCORE_SPEC = find_spec("jobs.score.main")
if _SCORE_SPEC is None or _SCORE_SPEC.origin is None:
    raise ImportError(
        "cannot locate the Spark job module jobs.score.main; install the aimass project "
        "(pip install -e .) in the environment Airflow runs in",
        name="jobs.score.main",
    )
SCORE_JOB: str = _SCORE_SPEC.origin
_SETTINGS = Settings.from_env()
DATASETS = _SETTINGS.dataset_names()
CTX = "ti.xcom_pull(task_ids='prepare_scoring')"

with DAG(
    dag_id=DAG_ID,
    description="Score a day of the lake (or a file) with a model version on Spark",
    doc_md=__doc__,
    # The alias aimass_retrain's validate_quality adds each validated clean batch to.
    schedule=[AssetAlias("aimass_clean_partition")] if _SETTINGS.batch_predict_on_clean else None,
    catchup=False,
    max_active_runs=1,
    on_failure_callback=notify_failed_run,
    tags=["aimass", "inference"],
    default_args={"owner": "aimass", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params=airflow_params(BATCH_PREDICT_PARAMS, DATASETS),
) as dag:

    @task
    def prepare_scoring() -> dict:
        """Check the params, pick the rows and the model version, fetch the model."""
        from airflow.sdk.exceptions import AirflowFailException

        from aimass.platform.errors import ConfigError
        from aimass.stages.batch_predict import clean_events
        from aimass.stages.batch_predict import prepare_scoring as prepare

        context = get_current_context()
        run = context["dag_run"]
        try:
            return prepare(
                dict(context["params"]),
                dag_id=run.dag_id,
                run_id=run.run_id,
                run_date=run.logical_date or run.run_after,
                events=clean_events(context.get("triggering_asset_events")),
            ).dump()
        except ConfigError as exc:
            raise AirflowFailException(f"invalid batch predict parameters: {exc}") from exc

    score_rows = SparkSubmitOperator(
        task_id="score_rows",
        conn_id="spark_default",
        application=SCORE_JOB,
        name="aimass-score",
        application_args=[
            *("--spec", "{{ " + CTX + "['dataset'] }}"),
            "@{{ " + CTX + "['args_file'] }}",
            *("--model", "{{ " + CTX + "['model_dir'] }}"),
            *("--model-name", "{{ " + CTX + "['model_name'] }}"),
            *("--model-version", "{{ " + CTX + "['model_version'] }}"),
            *("--ds", "{{ " + CTX + "['ds'] }}"),
            *("--out", "{{ " + CTX + "['output_dir'] }}"),
            *("--summary", "{{ " + CTX + "['summary_file'] }}"),
            *("--run-id", "{{ " + CTX + "['run_id'] }}"),
        ],
        conf={
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.files.maxPartitionBytes": "32m",
            "spark.sql.execution.arrow.maxRecordsPerBatch": "8192",
            "spark.ui.enabled": "false",
        },
        driver_memory="2g",
        execution_timeout=timedelta(hours=2),
    )

    @task
    def publish_scoring(ctx: dict) -> dict:
        """Record the counts, reasons and speed; log the run to MLflow."""
        from aimass.stages.batch_predict import publish_scoring as publish

        return publish(ctx).dump()

    ctx = prepare_scoring()
    published = publish_scoring(ctx)
    ctx >> score_rows >> published
