"""Reading the lake: clean partitions made of immutable batches, and pinned views of them.

A run cleans only its own input into a batch of its day, ``clean/<dataset>/ds=<day>/
batch=<run>/``, and no run rewrites another's batch. Once the batch has passed the
quality check, the run records it in the day's manifest (``ds=<day>/_batches.json``) with
the input files it cleaned. The day's current rows are the union of its batches, less
those superseded: a batch supersedes every earlier batch of the day whose input files it
cleaned too (a reprocess of the day, or a second run on the same source file), so three
files landed on one day are three batches read together, and a rerun on all of them
replaces the three. Superseded batches stay on disk for the versions that learnt from
them, until ``prune`` finds no version that references them.

A run pins what it trains and evaluates on in a view file (``clean_view.json``): the
list of batch folders current when its batch was recorded. Every reader takes a day
folder (its current batches), a view file (the pinned batches) or a plain folder of Parquet
files (a day written before batches existed, a test's partition).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads

from aimass.platform.errors import ConfigError

MANIFEST = "_batches.json"
VIEW_SUFFIX = ".view.json"
BATCH_PREFIX = "batch="


def open_partition(partition: Path) -> pads.Dataset:
    """The partition's Parquet files as one Arrow dataset, in a stable (sorted) file order.

    ``partition`` is a day folder, a view file or a folder of Parquet files (see the module
    docstring). A sorted file list keeps the row order identical for every reader, which
    multi-worker DATA sharding relies on (each worker keeps every N-th batch of the stream).

    Raises:
        ConfigError: the folder or view does not exist or holds no Parquet files.
    """
    partition = Path(partition)
    if not (partition.is_dir() or is_view(partition)):
        raise ConfigError(
            f"clean partition {partition} does not exist or is not a folder; "
            "run the clean stage for this date first or pass the right partition path"
        )
    files = [str(p) for p in partition_files(partition)]
    if not files:
        raise ConfigError(
            f"clean partition {partition} holds no .parquet files; rerun the clean stage for it"
        )
    return pads.dataset(files, format="parquet")


def partition_files(partition: Path) -> list[Path]:
    """The Parquet files a reader of ``partition`` reads, sorted by batch then name.

    A view file: its batches' files. A day folder with a manifest: its current batches'
    files. Any other folder: every Parquet file under it. Hidden and underscore files and
    folders (``_SUCCESS``, a writer's ``_temporary`` or ``.staging`` folder) are skipped.
    Empty when the folder is missing.
    """
    partition = Path(partition)
    if is_view(partition):
        return [f for b in read_view(partition) for f in _files(b)]
    if (partition / MANIFEST).exists():
        return [f for b in current_batches(partition) for f in _files(b)]
    return _files(partition)


def day_batches(day: Path) -> list[Path]:
    """The day's current batches; the day itself when it has no manifest (written before
    batches existed, or with no batch recorded yet)."""
    return current_batches(day) if (Path(day) / MANIFEST).exists() else [Path(day)]


def batch_files(batch: Path) -> list[Path]:
    """One batch's Parquet files (for a day folder: those outside its batch folders)."""
    return _files(batch)


def _files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*.parquet")
        if p.is_file()
        # A day's batch folders are read through its manifest, never by a walk of the day.
        and not any(
            part.startswith((".", "_", BATCH_PREFIX)) for part in p.relative_to(folder).parts
        )
    )


# -- the day's manifest ---------------------------------------------------------------------


@contextmanager
def _locked(day: Path) -> Any:
    """An exclusive lock on the day's manifest (runs of one day may record at once)."""
    day.mkdir(parents=True, exist_ok=True)
    with open(day / f".{MANIFEST}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def manifest(day: Path) -> list[dict[str, Any]]:
    """The day's recorded batches, oldest first (empty when none is recorded)."""
    path = Path(day) / MANIFEST
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["batches"])


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def record_batch(
    day: Path,
    batch: Path,
    *,
    run_id: str,
    inputs: Sequence[str],
    landed: bool = False,
    rows: int | None = None,
) -> list[Path]:
    """Add ``batch`` (a folder under ``day``) to the day's manifest; return the day's current
    batches after it. Recording the same batch again (a retried task) changes nothing.

    ``inputs``: the input files the batch was cleaned from (paths or URIs); ``landed``: the
    batch holds files that landed (it adds to the day). A day cleaned before batches existed
    (Parquet files directly in ``day``) is recorded first as the batch ``.``, with no
    inputs: a landing run adds to it, any other run replaces it.
    """
    day, batch = Path(day), Path(batch)
    if batch.parent != day:
        raise ValueError(f"batch {batch} is not a folder of the day {day}")
    with _locked(day):
        entries = manifest(day)
        if not entries and _legacy_files(day):
            entries.append(_entry(".", run_id="", inputs=[], landed=False, rows=None))
        if all(e["batch"] != batch.name for e in entries):
            entries.append(
                _entry(batch.name, run_id=run_id, inputs=inputs, landed=landed, rows=rows)
            )
            _write_json(day / MANIFEST, {"batches": entries})
        return _current(day, entries)


def _entry(
    name: str, *, run_id: str, inputs: Iterable[str], landed: bool, rows: int | None
) -> dict[str, Any]:
    return {
        "batch": name,
        "run_id": run_id,
        "inputs": sorted(set(inputs)),
        "landed": landed,
        "rows": rows,
        "recorded_at": datetime.now(UTC).isoformat(),
    }


def _legacy_files(day: Path) -> list[Path]:
    return sorted(p for p in day.glob("*.parquet") if p.is_file())


def current_batches(day: Path) -> list[Path]:
    """The day's batches that are not superseded, oldest first."""
    return _current(Path(day), manifest(day))


def _current(day: Path, entries: list[dict[str, Any]]) -> list[Path]:
    current: list[dict[str, Any]] = []
    for entry in entries:
        cleaned = set(entry["inputs"])
        # A newer batch that cleaned every input of an older one replaces it; a legacy day
        # (no inputs recorded) is replaced by a batch that read the whole day's source again.
        current = [
            e
            for e in current
            if not (e["inputs"] and cleaned >= set(e["inputs"]))
            and not (e["batch"] == "." and not entry.get("landed"))
        ]
        current.append(entry)
    return [day if e["batch"] == "." else day / e["batch"] for e in current]


# -- views: what a run trained and evaluated on ----------------------------------------------


def write_view(path: Path, day: Path, batches: Sequence[Path]) -> Path:
    """Pin ``batches`` of ``day`` in the view file ``path`` (``*.view.json``)."""
    if not path.name.endswith(VIEW_SUFFIX):
        raise ValueError(f"a view file's name ends in {VIEW_SUFFIX}: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"day": str(day), "batches": [str(b) for b in batches]})
    return path


def is_view(path: Path) -> bool:
    return Path(path).name.endswith(VIEW_SUFFIX) and Path(path).is_file()


def read_view(path: Path) -> list[Path]:
    """The batch folders a view pins."""
    return [Path(b) for b in json.loads(Path(path).read_text(encoding="utf-8"))["batches"]]


# -- retention -------------------------------------------------------------------------------


def prune(day: Path, keep: Iterable[Path], *, quarantine_day: Path | None = None) -> list[Path]:
    """Remove the day's superseded batches that no view in ``keep`` pins; return them.

    ``keep``: the batch folders that live or previous versions learnt from (their views).
    The quarantine batch of the same name goes too, and the batch leaves the manifest.
    """
    day = Path(day)
    pinned = {Path(k).resolve() for k in keep}
    with _locked(day):
        entries = manifest(day)
        current = {b.resolve() for b in _current(day, entries)}
        removed: list[Path] = []
        kept: list[dict[str, Any]] = []
        for entry in entries:
            folder = day if entry["batch"] == "." else day / entry["batch"]
            if entry["batch"] == "." or folder.resolve() in current | pinned:
                kept.append(entry)
                continue
            shutil.rmtree(folder, ignore_errors=True)
            if quarantine_day is not None:
                shutil.rmtree(Path(quarantine_day) / entry["batch"], ignore_errors=True)
            removed.append(folder)
        if removed:
            _write_json(day / MANIFEST, {"batches": kept})
    return removed
