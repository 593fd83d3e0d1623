"""
### Watch what the champion meets (`aimass_monitor`)

Runs hourly (`AIMASS_MONITOR_SCHEDULE`, cron in UTC; `none` turns it off) and on demand.
The model server records a sample of the features of the requests it serves
(`serving/requests/<model>/recent.parquet`, the last 10,000 rows per model by default;
`AIMASS_REQUEST_LOG_SAMPLE` sets the share recorded). For every dataset whose model has a
champion, **check_champion_drift** profiles those recent requests with the bins of the
champion's reference profile and compares them with the spec's drift thresholds (PSI per
feature, null shares, new or vanished categories). It compares the newest **batch** the
champion never saw too: the latest clean partition written after the champion was
registered (a landed file whose candidate was rejected or whose run stopped, a day rebuilt
since). Each check writes an HTML and a JSON report under
`reports/<dataset>/monitor/<UTC time>/` (the batch's in `batch/`).

When the drift of a dataset's requests or newest batch is **critical**, the task sends a
`drift_detected` alert with the reason and emits an event on the asset
`aimass_drift_<dataset>`, which schedules **aimass_retrain**
for that dataset on its newest data (the newest landed day, else the spec's source); the
retrain run records the reason. Each champion
asks for one drift retrain: until a new champion is deployed, further critical checks
alert but queue no more retrains (`reports/<dataset>/monitor/last_drift_event.json`). Datasets with
no champion, no reference profile or too few recorded requests are skipped with a reason.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import (
    DAG,
    Asset,
    AssetAlias,
    CronTriggerTimetable,
    get_current_context,
    task,
)

from aimass.data.monitor import drift_asset_name, drift_asset_uri
from aimass.platform.alerts import notify_failed_run
from aimass.platform.settings import Settings
from aimass.stages.params import MONITOR_PARAMS, airflow_params

DAG_ID = "aimass_monitor"
_SETTINGS = Settings.from_env()
# Spec names; listing a folder is cheap enough for DAG parsing.
DATASETS = _SETTINGS.dataset_names()
SCHEDULE = _SETTINGS.monitor_schedule
# Events go through an alias: only the datasets that drifted get an event on their asset.
DRIFT_EVENTS = AssetAlias("aimass_request_drift")

with DAG(
    dag_id=DAG_ID,
    description="Compare the requests the champions serve with their training reference",
    doc_md=__doc__,
    schedule=CronTriggerTimetable(SCHEDULE, timezone="UTC") if SCHEDULE else None,
    catchup=False,
    max_active_runs=1,
    on_failure_callback=notify_failed_run,
    tags=["aimass", "monitor"],
    default_args={
        "owner": "aimass",
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
    },
    params=airflow_params(MONITOR_PARAMS, DATASETS),
) as dag:

    @task(outlets=[DRIFT_EVENTS])
    def check_champion_drift() -> list[dict]:
        """Compare each champion's recent requests and newest batch with its reference; announce critical drift."""
        from airflow.sdk.exceptions import AirflowFailException

        from aimass.platform.errors import ConfigError
        from aimass.stages.monitor import check_champion_drift as check
        from aimass.stages.triggers import known_datasets
        from aimass.stages.validation import check_datasets

        context = get_current_context()
        params = context["params"]
        settings = Settings.from_env()
        try:
            # Checked against conf/datasets now: the form only suggests the parsed names.
            datasets = check_datasets(params["datasets"], settings) or known_datasets(settings)
        except ConfigError as exc:
            raise AirflowFailException(f"invalid run parameters: {exc}") from exc

        def emit(dataset: str, extra: dict) -> None:
            asset = Asset(
                name=drift_asset_name(dataset),
                uri=drift_asset_uri(settings.var_dir, dataset),
                group="aimass-drift",
            )
            context["outlet_events"][DRIFT_EVENTS].add(asset, extra=extra)

        return check(settings, datasets, min_rows=int(params["min_rows"]), emit=emit)

    check_champion_drift()
