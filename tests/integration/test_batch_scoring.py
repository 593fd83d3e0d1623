"""Batch scoring (``jobs/score``) on real Spark, and online/batch parity for every shipped spec.

For each spec in conf/datasets the real clean job cleans the first rows of its sample file, a
model is built and trained for an epoch on them and exported with the serving contract. The
scoring job then scores the whole partition on ``local[2]`` (Arrow batches through
``mapInArrow``), and the model server answers the same rows over gRPC: both must give the same
predictions to 1e-6. Other tests feed the job bad rows, a bad model and a failing run.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from aimass.data.spec import MULTICLASS, DatasetSpec, load_spec
from aimass.platform.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

tf = pytest.importorskip("tensorflow")

SHIPPED = sorted(p.stem for p in (REPO_ROOT / "conf" / "datasets").glob("*.yaml"))
DS = "2024-01-01"
ROWS = 1500
PARITY = 1e-6


def _sample(spec: DatasetSpec, out: Path) -> Path:
    """The first ``ROWS`` rows of the spec's sample file (header kept)."""
    from aimass.data.sample_data import fetch_sample

    var_dir = Settings.from_env().var_dir
    fetch_sample(var_dir)
    source = Path(spec.resolved_source_path(var_dir))
    with open(source, encoding="utf-8", newline="") as fh:
        lines = list(itertools.islice(fh, ROWS + (1 if spec.header else 0)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines), encoding="utf-8")
    return out


def _clean(spark: Any, spec: DatasetSpec, base: Path) -> Path:
    """The spec's sample through the real clean job: the day's clean partition."""
    from jobs.clean.main import parse_args, run

    raw = _sample(spec, base / "raw" / f"{spec.name}.csv")
    out = base / "lake" / "clean" / spec.name / f"ds={DS}"
    run(
        spark,
        parse_args(
            [
                *("--spec", spec.name, "--input", str(raw), "--ds", DS, "--out", str(out)),
                *("--quarantine", str(base / "lake" / "quarantine" / spec.name / f"ds={DS}")),
                *("--summary", str(base / "reports" / f"{spec.name}.json")),
            ]
        ),
    )
    return out


def _export(spec: DatasetSpec, partition: Path, out: Path) -> Path:
    """A model trained for one epoch on the partition, exported as the model server reads it."""
    from models.tabular.export import export_saved_model
    from models.tabular.inputs import load_arrays
    from models.tabular.model import build_model

    features, labels = load_arrays(partition, spec, None)
    tf.keras.utils.set_random_seed(7)
    model = build_model(spec, adapt_data=features, adapt_labels=labels)
    model.fit(features, labels, epochs=1, batch_size=64, verbose=0)
    return export_saved_model(model, spec, out)


@pytest.fixture(scope="module")
def shipped(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Per shipped spec: its clean partition and its exported model."""
    base = tmp_path_factory.mktemp("batch_scoring")
    out: dict[str, dict[str, Path]] = {}
    for name in SHIPPED:
        spec = load_spec(name, REPO_ROOT / "conf")
        partition = _clean(spark, spec, base)
        out[name] = {
            "partition": partition,
            "model": _export(spec, partition, base / "models" / name),
            "base": base,
        }
    return out


def _score(spark: Any, name: str, inputs: list[Path], model: Path, out: Path, **kw: str) -> dict:
    from jobs.score.main import parse_args, run

    argv = [
        *("--spec", name, "--model", str(model), "--model-name", name),
        *("--model-version", kw.get("version", "1"), "--ds", DS, "--out", str(out)),
        *("--summary", str(out.parent / f"{out.name}.summary.json")),
    ]
    for path in inputs:
        argv += ["--input", str(path)]
    return dict(run(spark, parse_args(argv)))


def _read(folder: Path) -> pa.Table:
    return pads.dataset(folder, format="parquet", exclude_invalid_files=True).to_table()


@pytest.mark.parametrize("name", SHIPPED)
def test_batch_and_online_predictions_are_equal_for_every_shipped_spec(
    spark: Any, shipped: dict[str, dict[str, Path]], tmp_path: Path, name: str
) -> None:
    from servingkit import served

    from models.tabular.export import output_key
    from models.tabular.inputs import feature_arrays

    spec = load_spec(name, REPO_ROOT / "conf")
    case = shipped[name]
    summary = _score(spark, name, [case["partition"]], case["model"], tmp_path / "pred")
    clean = _read(case["partition"])
    assert summary["rows_in"] == clean.num_rows == summary["rows_scored"]
    assert summary["rows_rejected"] == 0

    predictions = _read(tmp_path / "pred")
    assert predictions.num_rows == clean.num_rows
    assert set(predictions.column("model_name").to_pylist()) == {name}
    assert set(predictions.column("model_version").to_pylist()) == {"1"}
    assert set(predictions.column("ds").to_pylist()) == {DS}
    assert {Path(p) for p in predictions.column("input_partition").to_pylist()} == {
        case["partition"].resolve()
    }
    # Online: the same rows through the model server, matched to the batch's by row_id.
    from jobs.score.rows import read_rows, typed_rows

    rows = typed_rows(read_rows(spark, spec, [str(case["partition"])]), spec).toArrow()
    assert sorted(rows.column("row_id").to_pylist()) == sorted(
        predictions.column("row_id").to_pylist()
    )
    feeds = feature_arrays(spec, rows)
    with served(tmp_path / "server", models={name: case["model"]}) as server:
        online = np.concatenate(
            [
                server.client.predict_grpc(
                    name, {k: v[i : i + 500] for k, v in feeds.items()}, timeout=60
                )[output_key(spec)]
                for i in range(0, rows.num_rows, 500)
            ]
        )
    at = {row_id: i for i, row_id in enumerate(predictions.column("row_id").to_pylist())}
    order = [at[row_id] for row_id in rows.column("row_id").to_pylist()]
    predictions = predictions.take(pa.array(order))
    if spec.task == MULTICLASS:
        batch = np.array(predictions.column("probabilities").to_pylist())
        classes = np.array(spec.label_classes)[np.argmax(batch, axis=1)]
        assert predictions.column("predicted_class").to_pylist() == classes.tolist()
    else:
        column = "probability" if spec.is_classification else "prediction"
        batch = predictions.column(column).to_numpy()
    np.testing.assert_allclose(batch, online.astype(np.float64), rtol=0, atol=PARITY)
    assert np.std(batch) > 0, "the scores do not depend on the rows; the test would show nothing"


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_rows_that_cannot_be_scored_are_written_with_a_reason(
    spark: Any, shipped: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    name = "chicago_taxi"
    spec = load_spec(name, REPO_ROOT / "conf")
    raw = shipped[name]["base"] / "raw" / f"{name}.csv"
    with open(raw, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(itertools.islice(reader, 200))
    rows[3]["fare"] = "twelve"
    rows[7]["trip_start_hour"] = "7.5"
    rows[9]["trip_miles"] = "  "  # blank is missing, not bad: the model imputes it
    # A scoring input has no label: the label column is not needed.
    header.remove("tips")
    for row in rows:
        row.pop("tips")
    path = _write_csv(tmp_path / "to_score.csv", header, rows)

    summary = _score(spark, name, [path], shipped[name]["model"], tmp_path / "pred")
    assert summary["rows_in"] == 200
    assert summary["rows_scored"] + summary["rows_rejected"] == 200
    assert summary["rows_rejected"] == 2
    assert summary["reasons"] == {
        "unparseable double in fare: 'twelve'": 1,
        "unparseable long in trip_start_hour: '7.5'": 1,
    }
    rejected = _read(tmp_path / "pred" / "_rejected")
    assert sorted(rejected.column("reason").to_pylist()) == sorted(summary["reasons"])
    assert rejected.column("probability").null_count == 2
    scored = _read(tmp_path / "pred")
    assert scored.num_rows == 198 and scored.column("probability").null_count == 0
    lineage = json.loads((tmp_path / "pred" / "_lineage.json").read_text())
    assert lineage["model"]["version"] == "1" and lineage["rows_rejected"] == 2
    # The key and the lineage travel with the prediction; the other inputs stay in the lake.
    assert set(spec.dedupe_key) - {"tips"} <= set(scored.column_names)  # tips: not in the file
    assert "payment_type" not in scored.column_names


def test_a_failed_run_leaves_the_day_s_predictions_as_they_were(
    spark: Any, shipped: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    name = "palmer_penguins"
    case = shipped[name]
    out = tmp_path / "pred"
    _score(spark, name, [case["partition"]], case["model"], out)
    before = sorted(p.name for p in out.iterdir())
    lineage = (out / "_lineage.json").read_text()
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(Exception, match="not a SavedModel"):
        _score(spark, name, [case["partition"]], not_a_model, out, version="2")
    assert sorted(p.name for p in out.iterdir()) == before
    assert (out / "_lineage.json").read_text() == lineage
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "staging left behind"


def _register(settings: Settings, name: str, export: Path) -> str:
    """Log ``export`` as a run's SavedModel, register it and make it champion."""
    from aimass.platform import tracking

    with tracking.start_run(settings, name, name="scoring test") as run:
        run.folder(export, tracking.MODEL_ARTIFACT)
    version = tracking.register_version(
        settings, name, run_id=run.run_id, run_key=f"test/{run.run_id}", tags={}
    )
    tracking.promote(settings, name, version)
    return version


def test_the_stages_score_the_champion_and_refuse_bad_params_before_any_work(
    spark: Any, shipped: dict[str, dict[str, Path]], settings: Settings
) -> None:
    import shutil
    from datetime import UTC, datetime

    from aimass.platform.errors import ConfigError
    from aimass.platform.scoring_records import ScoringResult
    from aimass.stages.batch_predict import prepare_scoring, publish_scoring
    from jobs.score.main import parse_args, run

    name = "seattle_weather"
    case = shipped[name]
    day = settings.clean_partition(name, DS)
    shutil.copytree(case["partition"], day)
    version = _register(settings, name, case["model"])
    when = datetime(2026, 12, 1, tzinfo=UTC)

    def prepare(**params: Any) -> Any:
        return prepare_scoring(
            {"dataset": name, **params}, dag_id="aimass_batch_predict", run_id="r1", run_date=when
        )

    for params, message in (
        ({"model": "7"}, r"has no such version \(versions \[1\]\)"),
        ({"model": "latest"}, "use champion, previous or a version number"),
        ({"model": "previous"}, "has no such version"),
        ({"ds": "2024-02-30x"}, "must be a date"),
        ({"ds": "2023-01-01"}, "has no clean rows"),
        ({"input_path": "/etc/passwd"}, "outside the allowed data roots"),
        ({"input_path": "s3://bucket/rows.csv"}, "reads local files"),
        ({"dataset": "nope"}, "nope"),
    ):
        with pytest.raises(ConfigError, match=message):
            prepare(**params)
    assert not settings.predictions_partition(name, DS).exists()

    request = prepare()  # the newest clean day, the champion
    assert (request.ds, request.model_version, request.inputs) == (DS, version, [str(day)])
    argv = [f"@{request.args_file}", "--spec", name, "--model", request.model_dir]
    argv += ["--model-name", name, "--model-version", request.model_version, "--ds", request.ds]
    argv += ["--out", request.output_dir, "--summary", request.summary_file]
    run(spark, parse_args(argv))
    result = publish_scoring(request.dump())
    rows = _read(case["partition"]).num_rows
    assert (result.rows_in, result.rows_scored, result.rows_rejected) == (rows, rows, 0)
    assert result.mlflow_run_url and result.output_dir == request.output_dir
    records = Path(request.report_dir) / "records"
    assert ScoringResult.read(records / "scoring_result.json") == result
    assert (records / "scoring_request.json").exists()
