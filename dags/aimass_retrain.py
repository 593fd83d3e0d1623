"""
### Retrain a model from fresh data (`aimass_retrain`)

Runs nightly and on demand. Each run works on one partition of one dataset
(`ds`, the run's date unless set) and goes through these stages:

1. **clean_data**: a Spark job (`jobs/clean/main.py`, connection `spark_default`) reads the raw CSV
   with the spec's explicit schema, derives the label and writes Parquet to
   `lake/clean/<dataset>/ds=<ds>`; rows it cannot use go to `lake/quarantine/...` with a reason.
2. **validate_quality**: a Great Expectations suite generated from the spec; a critical failure stops
   the run. The Data Docs link is in the task log.
3. **check_drift**: the new batch against the reference recorded with the champion (PSI per feature,
   null shares, new/vanished categories, schema); an HTML report per run. Critical drift fails the run
   or is flagged and the run goes on, as the spec's `drift.on_critical` says.
4. **train_model**: TensorFlow worker processes under `MultiWorkerMirroredStrategy`; the run is tracked
   in MLflow and the SavedModel registered as a new version.
5. **evaluate_candidate**: candidate and champion on the same holdout, overall and per slice
   (precision, recall and calibration too); the gate writes one line per check to the log, to
   `gate_decision.json` and `gate_report.html` in the run's report dir and to the MLflow run, and goes
   on to **compress_candidate** or to **reject_candidate** (which logs every failed check). With
   `AIMASS_REQUIRE_APPROVAL=true` a person approves in the UI (**check_approval**) before that.
6. **compress_candidate**: compressed variants of the candidate (pruned, float16 or int8
   weights, a distilled smaller MLP), each a SavedModel measured against it on the same
   holdout and in a sandbox model server (size, batch-1/64 latency, metric changes). The best
   that clears the spec's `compression` bars is registered as its own version and deploys;
   otherwise the candidate does. The log says why either way.
7. **deploy_model**: the next integer version on the model server; `stable` and the MLflow alias
   `champion` move to it only after it loaded and answered.

Trigger it by hand with **Trigger DAG w/ config** to pick the dataset, a date, an input file,
the number of epochs and workers, a stricter AUC bar, the learning rate and batch size, or
mixed precision. Any spec saved in `conf/datasets` can be named, also one added since this
form was drawn; an unknown name fails **prepare_run** with the list of known ones. Without an
input file the run reads the newest landed day of the dataset's landing zone, else the spec's
`source.path` (the log and the request record say which). Workers are `auto` unless set: one
per GPU, else one per 4 CPU cores, at least 1 (logged with the reason). `force_deploy` with a `force_reason` (10+ characters) deploys a candidate the
gate rejects; the decision records it with the triggering user and MLflow tags it `forced`.
Training uses the best values of the latest **aimass_tune** search unless
`use_tuned_hparams` is off or a param overrides them. The summary of every run is the
return value of **publish_summary**; every stage leaves its record in
`reports/<dataset>/ds=<ds>/<run>/records/` (`summary.json` for the whole run).
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Iterator
from datetime import timedelta
from importlib.util import find_spec

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import (
    DAG,
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronTriggerTimetable,
    get_current_context,
    task,
)

from aimass.data.landing_trigger import LandingZoneTrigger
from aimass.data.monitor import DRIFT_ASSET_PREFIX, drift_asset_name, drift_asset_uri
from aimass.platform.alerts import notify_failed_run
from aimass.platform.settings import Settings
from aimass.stages.params import RETRAIN_PARAMS, airflow_params

DAG_ID = "aimass_retrain"
# The Spark job is named by path: the DAG never imports pyspark.
_CLEAN_SPEC = find_spec("jobs.clean.main")
if _CLEAN_SPEC is None or _CLEAN_SPEC.origin is None:
    raise ImportError(
        "cannot locate the Spark job module jobs.clean.main; install the aimass project "
        "(pip install -e .) in the environment Airflow runs in",
        name="jobs.clean.main",
    )
CLEAN_JOB: str = _CLEAN_SPEC.origin
# Spec names for the trigger form; listing a folder is cheap enough for DAG parsing.
_SETTINGS = Settings.from_env()
DATASETS = _SETTINGS.dataset_names()
SCHEDULE = _SETTINGS.retrain_schedule
# One landing zone per dataset: a file dropped in <var>/landing/<dataset>/ (or under
# AIMASS_LANDING_ROOT, a folder or an s3:// prefix) is claimed by the watcher in the
# triggerer and its asset event schedules a run for that dataset.
_VAR = _SETTINGS.var_dir


LANDED = [
    Asset(
        name=f"aimass_landing_{name}",
        uri=_SETTINGS.landing_uri(name),
        group="aimass-landing",
        watchers=[
            AssetWatcher(
                name=f"aimass_landing_{name}_watcher",
                trigger=LandingZoneTrigger(location=_SETTINGS.landing_location(name), dataset=name),
            )
        ],
    )
    for name in DATASETS
]
# Critical drift of the requests a dataset's champion serves, announced by aimass_monitor.
DRIFTED = [
    Asset(name=drift_asset_name(name), uri=drift_asset_uri(_VAR, name), group="aimass-drift")
    for name in DATASETS
]
# A validated clean partition, announced by validate_quality for whichever dataset ran.
CLEAN_PARTITION = AssetAlias("aimass_clean_partition")
_NIGHTLY = (
    CronTriggerTimetable(SCHEDULE, timezone="UTC", run_immediately=timedelta(0))
    if SCHEDULE
    else None
)
_ON_LANDING = functools.reduce(operator.or_, [*LANDED, *DRIFTED])
CTX = "ti.xcom_pull(task_ids='prepare_run')"
# A person approves each deployment in the UI when AIMASS_REQUIRE_APPROVAL is true; otherwise
# the DAG has no approval step and a passing candidate goes straight to deploy_model.
REQUIRE_APPROVAL = _SETTINGS.require_approval
APPROVAL_TASK = "check_approval"
# Unanswered approvals resolve to the default ("Reject") after this long.
APPROVAL_TIMEOUT = timedelta(hours=24)


@contextlib.contextmanager
def _no_retry_on_bad_data() -> Iterator[None]:
    """Fail the task without its retry when the data itself is bad: the same batch would fail
    the same checks again (and send its alert twice)."""
    from airflow.sdk.exceptions import AirflowFailException

    from aimass.platform.errors import DataQualityError

    try:
        yield
    except DataQualityError as exc:
        raise AirflowFailException(str(exc)) from exc


with DAG(
    dag_id=DAG_ID,
    description="Clean, validate, train, evaluate and deploy a model from fresh data",
    doc_md=__doc__,
    # Nightly at 02:00 UTC unless AIMASS_RETRAIN_SCHEDULE says otherwise ("none": manual
    # only). run_immediately=0 and no start_date: a DAG that appears after its slot waits
    # for the next one (Airflow would otherwise run the slot that passed within 10 % of
    # the period, e.g. a DAG deployed at 02:40 would start retraining at once).
    # and whenever a file lands in a dataset's landing zone or its served requests drift.
    schedule=AssetOrTimeSchedule(timetable=_NIGHTLY, assets=_ON_LANDING)
    if _NIGHTLY is not None
    else _ON_LANDING,
    catchup=False,
    max_active_runs=1,
    # A failed run is logged, stored and sent to AIMASS_ALERT_CONN_ID (aimass.platform.alerts).
    on_failure_callback=notify_failed_run,
    tags=["aimass", "retrain"],
    default_args={
        "owner": "aimass",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
    },
    params=airflow_params(RETRAIN_PARAMS, DATASETS),
) as dag:

    @task
    def prepare_run() -> dict:
        """Validate the params before any work and decide where this run reads and writes."""
        from airflow.sdk.exceptions import AirflowFailException

        from aimass.data.landing import NothingLanded
        from aimass.platform.errors import ConfigError
        from aimass.stages.retrain import prepare_run as prepare
        from aimass.stages.triggers import triggering_events

        context = get_current_context()
        run = context["dag_run"]
        # Files announced by a landing-zone watcher, or drift announced by aimass_monitor.
        landed, drifted = triggering_events(
            context.get("triggering_asset_events"), drift_prefix=DRIFT_ASSET_PREFIX
        )
        try:
            return prepare(
                dict(context["params"]),
                dag_id=run.dag_id,
                run_id=run.run_id,
                run_date=run.logical_date or run.run_after,
                landed=landed,
                drifted=drifted,
            ).dump()
        except NothingLanded as exc:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(str(exc)) from exc
        except ConfigError as exc:
            # A bad parameter does not get better on retry: fail now, saying what to fix.
            raise AirflowFailException(f"invalid run parameters: {exc}") from exc

    clean_data = SparkSubmitOperator(
        task_id="clean_data",
        conn_id="spark_default",
        application=CLEAN_JOB,
        name="aimass-clean",
        application_args=[
            "--spec",
            "{{ " + CTX + "['dataset'] }}",
            # "--input <path>" once per input (a landing run's own files), from a file.
            "@{{ " + CTX + "['clean_args'] }}",
            "--ds",
            "{{ " + CTX + "['ds'] }}",
            "--out",
            "{{ " + CTX + "['batch_dir'] }}",
            "--quarantine",
            "{{ " + CTX + "['quarantine_dir'] }}",
            "--summary",
            "{{ " + CTX + "['clean_summary'] }}",
        ],
        conf={
            "spark.sql.shuffle.partitions": "4",
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.files.maxPartitionBytes": "32m",
            "spark.ui.enabled": "false",
        },
        # Local mode does all the work in the driver JVM; its 1g default spills early.
        driver_memory="2g",
        execution_timeout=timedelta(hours=1),
    )

    @task(outlets=[CLEAN_PARTITION])
    def validate_quality(ctx: dict) -> dict:
        """Great Expectations on the clean partition; critical failures stop the run."""
        from aimass.stages.batches import clean_partition_event
        from aimass.stages.retrain import validate_quality as validate

        with _no_retry_on_bad_data():
            result = validate(ctx).dump()
        # The validated partition is an asset other DAGs can be scheduled on.
        name, uri, extra = clean_partition_event(ctx)
        get_current_context()["outlet_events"][CLEAN_PARTITION].add(
            Asset(name=name, uri=uri, group="aimass-clean"), extra=extra
        )
        return result

    @task
    def check_drift(ctx: dict) -> dict:
        """New batch vs the champion's reference: PSI, null shares, schema; report in the log."""
        from aimass.stages.retrain import check_drift as check

        with _no_retry_on_bad_data():
            return check(ctx).dump()

    @task(execution_timeout=timedelta(hours=3))
    def train_model(ctx: dict, checks: dict) -> dict:
        """Train across worker processes, track in MLflow, register a version."""
        from aimass.stages.retrain import train_model as train

        return train(ctx, checks).dump()

    @task.branch
    def evaluate_candidate(ctx: dict, model: dict) -> str:
        """Candidate vs champion on the same holdout; deploy only if the gate passes (or forced)."""
        from aimass.stages.retrain import evaluate_candidate as evaluate

        context = get_current_context()
        user = getattr(context["dag_run"], "triggering_user_name", None)
        decision = evaluate(ctx, model, triggered_by=user).dump()
        context["ti"].xcom_push(key="decision", value=decision)
        if not decision["deploy"]:
            return "reject_candidate"
        # The approval step exists only when AIMASS_REQUIRE_APPROVAL was set at parse time.
        return (
            APPROVAL_TASK
            if APPROVAL_TASK in context["task"].downstream_task_ids
            else "compress_candidate"
        )

    @task(execution_timeout=timedelta(hours=1))
    def compress_candidate(ctx: dict, model: dict) -> dict:
        """Compressed variants measured against the candidate; the best clearing the bars deploys."""
        from aimass.stages.compress import compress_candidate as compress
        from aimass.stages.compress import with_compression

        ti = get_current_context()["ti"]
        decision = ti.xcom_pull(task_ids="evaluate_candidate", key="decision")
        result = compress(ctx, model, decision)
        if decision is not None:
            ti.xcom_push(key="decision", value=with_compression(decision, result).dump())
        return result.dump()

    @task
    def deploy_model(ctx: dict, model: dict, compression: dict) -> dict:
        """Roll out what compression chose and make that registry version champion."""
        from airflow.sdk.exceptions import AirflowFailException

        from aimass.serving.rollout import CandidateRejected
        from aimass.stages.retrain import deploy_model as deploy

        try:
            return deploy(ctx, model, compression).dump()
        except CandidateRejected as exc:
            # The candidate failed infra validation or its canary: a retry gives the same.
            raise AirflowFailException(f"candidate rejected at rollout: {exc}") from exc

    @task
    def reject_candidate() -> dict:
        """Say why the gate kept the candidate out, one line per failed check; production stays."""
        from aimass.stages.retrain import reject_candidate as reject

        decision = get_current_context()["ti"].xcom_pull(
            task_ids="evaluate_candidate", key="decision"
        )
        return reject(decision)

    @task(trigger_rule="none_failed_min_one_success")
    def publish_summary(ctx: dict, checks: dict, model: dict) -> dict:
        """Collect counts, quality, metrics, the decision and the deployment in one summary."""
        from aimass.stages.summary import publish_summary as publish

        ti = get_current_context()["ti"]
        # compress_candidate's copy carries the compression choice, when that task ran.
        decision = ti.xcom_pull(task_ids="compress_candidate", key="decision") or ti.xcom_pull(
            task_ids="evaluate_candidate", key="decision"
        )
        deployment = ti.xcom_pull(task_ids="deploy_model")
        drift = ti.xcom_pull(task_ids="check_drift")
        approval = ti.xcom_pull(task_ids=APPROVAL_TASK) if REQUIRE_APPROVAL else None
        return publish(ctx, checks, model, decision, deployment, drift, approval).dump()

    ctx = prepare_run()
    checks = validate_quality(ctx)
    ctx >> clean_data >> checks
    drift = check_drift(ctx)
    checks >> drift
    model = train_model(ctx, checks)
    drift >> model
    gate = evaluate_candidate(ctx, model)
    compressed = compress_candidate(ctx, model)
    deployed = deploy_model(ctx, model, compressed)
    rejected = reject_candidate()
    if REQUIRE_APPROVAL:
        from airflow.providers.standard.operators.hitl import ApprovalOperator

        # "Reject" (or no answer in time) skips deploy_model; publish_summary still runs.
        approval = ApprovalOperator(
            task_id=APPROVAL_TASK,
            subject="Deploy {{ params.dataset }} ds={{ "
            + CTX
            + "['ds'] }} candidate v{{ ti.xcom_pull(task_ids='evaluate_candidate', "
            "key='decision')['candidate_version'] }}?",
            body="{{ ti.xcom_pull(task_ids='evaluate_candidate', key='decision')['approval_md'] }}",
            defaults=ApprovalOperator.REJECT,
            response_timeout=APPROVAL_TIMEOUT,
        )
        gate >> [approval, rejected]
        approval >> compressed
    else:
        gate >> [compressed, rejected]
    [deployed, rejected] >> publish_summary(ctx, checks, model)
