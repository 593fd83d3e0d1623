"""Immutable batches: three files landed on one day are three batches, each cleaned once,
and what every run trained on still resolves to the same rows afterwards.

Each run goes the DAG's way: ``prepare_run`` on the landing event (it takes the claimed
file), the clean job with the run's ``@clean_inputs.args``, then ``validate_quality``,
which records the batch in the day's manifest and pins the run's view. A reprocess of the
whole day then replaces the three batches for new runs, while the earlier views keep
their rows until ``prune`` finds them unpinned.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from aimass.data import landing
from aimass.data.lake import current_batches, manifest, open_partition, read_view
from aimass.platform.records import RunRequest
from aimass.platform.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DS = "2026-11-20"
RUN_DATE = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _clean(spark: Any, run: RunRequest) -> dict[str, Any]:
    """The DAG's clean task: the job with the run's own argument file."""
    from jobs.clean.main import parse_args
    from jobs.clean.main import run as clean_run

    args = [
        "--spec",
        run.dataset,
        f"@{run.clean_args}",
        "--ds",
        run.ds,
        "--out",
        run.batch_dir,
        "--quarantine",
        run.quarantine_dir,
        "--summary",
        run.clean_summary,
    ]
    return clean_run(spark, parse_args(args))


def _landing_run(spark: Any, settings: Settings, lines: list[str], n: int) -> RunRequest:
    """Land ``lines`` as one file, claim it and run the stages up to the quality check."""
    from aimass.stages.retrain import prepare_run, validate_quality

    zone = landing.zone_for(settings, "chicago_taxi")
    assert isinstance(zone, landing.LocalZone)
    zone.folder.mkdir(parents=True, exist_ok=True)
    (zone.folder / f"trips-{n}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    claimed = zone.claim(f"trips-{n}.csv")
    assert claimed is not None
    run = prepare_run(
        {},
        dag_id="aimass_retrain",
        run_id=f"asset_triggered__landing_{n}",
        run_date=RUN_DATE,
        landed=[zone.payload(claimed)],
    )
    summary = _clean(spark, run)
    # Cleaned once: its own file only, whatever landed before on the day.
    assert summary["inputs"] == [str(Path(zone.day_input(DS)) / claimed)]
    validate_quality(run)
    return run


def _rows(partition: Path) -> list[tuple[Any, ...]]:
    table = open_partition(partition).to_table()
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


def test_three_landings_make_three_batches_and_every_view_keeps_its_rows(
    spark: Any, settings: Settings, taxi_csv: Path, tmp_path: Path
) -> None:
    from aimass.stages.retrain import prepare_run, validate_quality

    header, *body = taxi_csv.read_text(encoding="utf-8").splitlines()
    chunks = [body[i * 300 : (i + 1) * 300] for i in range(3)]
    runs = [_landing_run(spark, settings, [header, *chunk], n) for n, chunk in enumerate(chunks)]

    day = settings.clean_partition("chicago_taxi", DS)
    batches = current_batches(day)
    assert [b.name for b in batches] == [Path(r.batch_dir).name for r in runs]
    # Each run cleaned its own file into its own batch, and pinned the day as it stood.
    pinned = {r.run_id: read_view(Path(r.view_file)) for r in runs}
    assert [len(pinned[r.run_id]) for r in runs] == [1, 2, 3]
    seen = {r.run_id: _rows(Path(r.view_file)) for r in runs}
    per_batch = [len(_rows(b)) for b in batches]
    assert [len(seen[r.run_id]) for r in runs] == [
        per_batch[0],
        per_batch[0] + per_batch[1],
        sum(per_batch),
    ]
    assert _rows(day) == seen[runs[-1].run_id]  # the day is the union of its batches
    # Training reads a view as it reads a folder: the workers get the view file.
    from aimass.training.local import train

    trained = train(
        "chicago_taxi", data=Path(runs[1].view_file), run_dir=tmp_path / "t", workers=1, epochs=1
    )
    in_view = open_partition(Path(runs[1].view_file)).to_table().column("split").to_pylist()
    assert trained.params["train_rows"] == in_view.count("train")

    # A reprocess of the whole landed day: one batch that replaces the three for new runs.
    reprocess = prepare_run(
        {
            "dataset": "chicago_taxi",
            "ds": DS,
            "input_path": landing.zone_for(settings, "chicago_taxi").day_input(DS),
        },
        dag_id="aimass_retrain",
        run_id="manual__reprocess",
        run_date=RUN_DATE,
    )
    summary = _clean(spark, reprocess)
    validate_quality(reprocess)
    assert current_batches(day) == [Path(reprocess.batch_dir)]
    assert summary["rows_clean"] == len(seen[runs[-1].run_id])
    assert _rows(day) == seen[runs[-1].run_id]
    # The versions trained before still resolve to exactly the rows they saw.
    for run in runs:
        assert _rows(Path(run.view_file)) == seen[run.run_id]

    # Retention: only the first run trained a version (its records hold a training
    # record); what its view pins stays, the rest of the superseded batches go.
    from aimass.platform.records import TrainingResult
    from aimass.stages.batches import prune_dataset

    runs[0].records_dir.mkdir(parents=True, exist_ok=True)
    (runs[0].records_dir / f"{TrainingResult.kind}.json").write_text("{}", encoding="utf-8")
    removed = prune_dataset(settings, "chicago_taxi")
    assert sorted(removed) == sorted(batches[1:])
    assert _rows(Path(runs[0].view_file)) == seen[runs[0].run_id]
    assert [e["batch"] for e in manifest(day)] == [
        batches[0].name,
        Path(reprocess.batch_dir).name,
    ]
    assert not (settings.quarantine_partition("chicago_taxi", DS) / batches[1].name).exists()
    # The lineage of a run names the batches it learnt from.
    from aimass.platform.records import Lineage

    lineage = Lineage.of_run(runs[1], None, None)
    assert lineage.batches == [str(b) for b in pinned[runs[1].run_id]]
    assert json.loads((day / "_batches.json").read_text())["batches"][0]["landed"] is True
    assert pq.read_table(batches[0]).num_rows == per_batch[0]
