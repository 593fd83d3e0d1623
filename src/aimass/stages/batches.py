"""The lake's batches as a run sees them: what its clean job reads, and recording what it
wrote (``aimass.data.lake``: batches, the day's manifest, pinned views)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aimass.platform.records import CleanResult, RunRequest
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

# A run's pinned view of its day (``aimass.data.lake.write_view``), in its report folder.
VIEW_FILE = "clean.view.json"


def write_clean_args(run: RunRequest) -> Path:
    """The clean job's inputs as an argument file (the DAG passes ``@<file>``): a landing
    run's own files, each once, else the run's ``input_path``."""
    inputs = run.trigger.get("paths") or [run.input_path]
    path = Path(run.clean_args)
    path.write_text("".join(f"--input\n{item}\n" for item in inputs), encoding="utf-8")
    return path


def record_run_batch(run: RunRequest, clean: CleanResult) -> None:
    """Record the run's validated batch in its day, and pin what the run trains on."""
    from aimass.data.lake import record_batch, write_view

    day = Path(run.clean_dir)
    current = record_batch(
        day,
        Path(run.batch_dir),
        run_id=run.run_id,
        inputs=clean.inputs or [clean.input],
        landed=run.trigger.get("kind") == "landing",
        rows=clean.rows_clean,
    )
    write_view(Path(run.view_file), day, current)
    log.info(
        "lake: batch %s recorded; ds=%s is %d batch(es) now, pinned for this run in %s",
        Path(run.batch_dir).name,
        run.ds,
        len(current),
        run.view_file,
    )


def clean_partition_event(run: RunRequest | Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The asset a validated partition is announced as: its name, URI (the dataset's clean
    folder) and the event's extra (``ds``, ``partition``, the run's ``batch``, ``run_id``)."""
    run = RunRequest.of(run)
    settings = Settings.from_env()
    root = settings.lake_dir / "clean" / run.dataset
    return (
        f"aimass_clean_{run.dataset}",
        f"file://{root}",
        {"ds": run.ds, "partition": run.clean_dir, "batch": run.batch_dir, "run_id": run.run_id},
    )


def pinned_by_versions(settings: Settings, dataset: str) -> list[Path]:
    """The batches some trained version of ``dataset`` learnt from: those pinned by the view
    of every run that trained a model (its records hold a training record)."""
    from aimass.data.lake import read_view
    from aimass.platform.records import RECORDS_DIR, TrainingResult

    pinned: list[Path] = []
    for view in sorted((settings.reports_dir / dataset).glob(f"ds=*/*/{VIEW_FILE}")):
        if (view.parent / RECORDS_DIR / f"{TrainingResult.kind}.json").exists():
            pinned += read_view(view)
    return pinned


def prune_dataset(settings: Settings, dataset: str) -> list[Path]:
    """Remove ``dataset``'s superseded clean batches that no trained version learnt from
    (and their quarantine); return the batch folders removed."""
    from aimass.data.lake import MANIFEST, prune

    keep = pinned_by_versions(settings, dataset)
    removed: list[Path] = []
    for day in sorted((settings.lake_dir / "clean" / dataset).glob("ds=*")):
        if (day / MANIFEST).exists():
            quarantine = settings.quarantine_partition(dataset, day.name.removeprefix("ds="))
            removed += prune(day, keep, quarantine_day=quarantine)
    for folder in removed:
        log.info("lake: removed batch %s (superseded, no version learnt from it)", folder)
    return removed
