"""DAG integrity and policy: every DAG imports cleanly, explains itself and stays cheap to parse."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
HEAVY = (
    "pyspark",
    "tensorflow",
    "tf_keras",
    "keras",
    "keras_tuner",
    "great_expectations",
    "pandas",
    "mlflow",
    "sklearn",
)


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_there_are_dags() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS_DIR}"


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert {"aimass_retrain", "aimass_tune", "aimass_rollback"} <= set(dagbag.dag_ids)


def test_every_dag_has_tags_retries_docs_and_no_catchup(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert "aimass" in dag.tags, f"{dag_id} lacks the 'aimass' tag"
        assert dag.doc_md and len(dag.doc_md) > 100, (
            f"{dag_id} has no doc_md (use the module docstring)"
        )
        assert dag.catchup is False, f"{dag_id} must set catchup=False"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_every_param_is_a_documented_form_field(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        for name in dag.params:
            spec = dag.params.get_param(name)
            schema = spec.schema
            assert schema.get("title"), f"{dag_id} param {name} has no title"
            assert spec.description, f"{dag_id} param {name} has no description"
            assert schema.get("type"), f"{dag_id} param {name} has no type"


def test_task_ids_are_verbs(dagbag) -> None:  # type: ignore[no-untyped-def]
    verbs = (
        "prepare",
        "clean",
        "validate",
        "check",
        "train",
        "evaluate",
        "compress",
        "deploy",
        "reject",
        "publish",
        "search",
        "roll",
        "score",
    )
    for dag_id, dag in dagbag.dags.items():
        for task_id in dag.task_ids:
            assert task_id.split("_")[0] in verbs, (
                f"{dag_id}: task id {task_id} should start with a verb"
            )


def test_tuning_is_manual_and_feeds_training_params(dagbag) -> None:  # type: ignore[no-untyped-def]
    tune = dagbag.dags["aimass_tune"]
    assert type(tune.timetable).__name__ == "NullTimetable"  # manual only
    assert tune.task_ids == ["prepare_tuning", "search_hyperparameters"]
    assert tune.params.get_param("algorithm").schema["enum"] == ["", "bayesian", "random"]
    retrain = dagbag.dags["aimass_retrain"]
    for name in ("use_tuned_hparams", "learning_rate", "batch_size", "mixed_precision"):
        assert name in retrain.params, f"aimass_retrain lacks the {name} param"
    assert retrain.params["use_tuned_hparams"] is True


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_heavy_imports_at_module_level(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:  # only module-level statements; imports inside tasks are fine
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in HEAVY, f"{path.name} imports {name} at module level"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_does_not_load_heavy_modules(path: Path) -> None:
    """Importing the DAG file (as the DAG processor does) must not pull in heavy libraries indirectly."""
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dagfile', {str(path)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"parsing {path.name} loaded {loaded}"


def test_retrain_runs_nightly_and_never_fires_for_a_slot_that_already_passed(
    dagbag,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DAG deployed at 02:40 must wait for tomorrow's 02:00, not start retraining at once."""
    import datetime as dt

    import airflow.timetables.trigger as trigger
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    # The timetable the scheduler uses: the DAG after serialization.
    dag = dagbag.dags["aimass_retrain"]
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    assert timetable.summary == "Asset or 0 2 * * *"  # nightly, or when data lands
    now = dt.datetime(2026, 11, 26, 2, 40, tzinfo=dt.UTC)
    monkeypatch.setattr(trigger, "utcnow", lambda: now)
    restriction = TimeRestriction(earliest=None, latest=None, catchup=False)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert info is not None
    assert info.run_after == dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)


def test_retrain_schedule_comes_from_the_environment() -> None:
    code = "import dags.aimass_retrain as m; print(m.dag.timetable.__class__.__name__)"
    env = {**os.environ, "AIMASS_RETRAIN_SCHEDULE": "none"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    # no nightly run: only landed data schedules it
    assert out.stdout.strip().splitlines()[-1] == "AssetTriggeredTimetable"


def test_every_dataset_has_a_watched_landing_zone(dagbag) -> None:  # type: ignore[no-untyped-def]
    import dags.aimass_retrain as module
    from aimass.data.landing_trigger import LandingZoneTrigger

    names = {asset.name for asset in module.LANDED}
    assert names == {f"aimass_landing_{d}" for d in module.DATASETS}
    for asset in module.LANDED:
        (watcher,) = asset.watchers
        assert isinstance(watcher.trigger, LandingZoneTrigger)
        dataset = asset.name.removeprefix("aimass_landing_")
        assert watcher.trigger.location.endswith(f"/landing/{dataset}")
        assert asset.uri == f"file://{watcher.trigger.location}"
        # the triggerer rebuilds the trigger from this
        classpath, kwargs = watcher.trigger.serialize()
        assert classpath == "aimass.data.landing_trigger.LandingZoneTrigger"
        assert LandingZoneTrigger(**kwargs).serialize() == (classpath, kwargs)
    validate = dagbag.dags["aimass_retrain"].get_task("validate_quality")
    assert [o.name for o in validate.outlets] == ["aimass_clean_partition"]


def test_rollback_is_manual_and_asks_for_a_version_and_a_reason(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["aimass_rollback"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert dag.task_ids == ["prepare_rollback", "roll_back"]
    assert {"dataset", "version", "reason"} <= set(dag.params)
    assert dag.params["version"] is None  # empty: the 'previous' label


def test_bad_data_fails_its_task_without_the_retry(dagbag) -> None:  # type: ignore[no-untyped-def]
    """The same batch fails the same checks again: a retry would only repeat the alert."""
    from airflow.sdk.exceptions import AirflowFailException

    import dags.aimass_retrain as module
    from aimass.platform.errors import DataQualityError, StageError

    with pytest.raises(AirflowFailException, match="fare drifted"):
        with module._no_retry_on_bad_data():
            raise DataQualityError("fare drifted")
    with pytest.raises(StageError):  # other failures keep their retry
        with module._no_retry_on_bad_data():
            raise StageError("the lake is not mounted")


def test_the_nightly_retrain_dag_backfills_the_docs_range(dagbag) -> None:  # type: ignore[no-untyped-def]
    """docs/runs.md's backfill: with the nightly schedule, one run per night of the range.

    The e2e stack runs with AIMASS_RETRAIN_SCHEDULE=none (no nightly run fires during the
    tests), where Airflow refuses a backfill; this checks the command's range and conf as
    Airflow's backfill does, on the DAG as the scheduler holds it.
    """
    import datetime as dt

    from airflow.models.backfill import ReprocessBehavior, _get_info_list, _validate_backfill_params
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags["aimass_retrain"]))
    assert dag.timetable.periodic  # what `backfill create` demands
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    conf = {"input_path": "var/data/raw/chicago_taxi/data.csv"}
    _validate_backfill_params(dag, False, start, end, ReprocessBehavior.COMPLETED, conf)
    nights = _get_info_list(dag=dag, from_date=start, to_date=end, reverse=False)
    # One run per 02:00 slot in the range; --to-date 2026-11-03 is that day's midnight.
    assert [i.logical_date for i in nights] == [start.replace(hour=2), start.replace(day=2, hour=2)]
