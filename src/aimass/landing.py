"""The landing zone: raw files dropped in ``<var>/landing/<dataset>/`` retrain with no one acting.

A file's way through, each step a rename inside the dataset's landing folder (so a file is
always in exactly one place and never deleted):

1. ``<file>``: a producer copies it in (write it as ``.name`` or ``name.tmp`` and rename it,
   or just copy: a file is taken only once its size and mtime stopped changing).
2. ``.claimed/<utc time>-<file>``: the landing-zone trigger (``aimass.landing_trigger``,
   an Airflow ``AssetWatcher`` running in the triggerer) claims it and emits an asset event,
   which schedules ``aimass_retrain``.
3. ``processed/ds=<ds>/<utc time>-<file>``: the retraining run's first task takes every
   claimed file of its dataset, records it in ``processed/ledger.jsonl`` with its run, and
   cleans the whole ``ds=<ds>`` folder (all files that landed that day), so the day's
   partition is rebuilt from all its files and a rerun gives the same partition.

Exactly once: a claimed file moves to ``processed/`` in one run only (a rename), and a run
that finds nothing to take (a duplicate event, e.g. one replayed after a triggerer restart)
skips. A trigger that starts finds files still in ``.claimed/`` (claimed before a restart
but never taken) and announces them again; a run retried after it took its files finds them
in the ledger under its own run id.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class NothingLanded(Exception):
    """A landing event whose files another run already took: the run has nothing to do."""


CLAIMED = ".claimed"
PROCESSED = "processed"
LEDGER = "ledger.jsonl"
SUFFIXES = (".csv", ".parquet")
# Names producers use while a file is still being written.
_PARTIAL = (".tmp", ".part", ".partial", ".crdownload", ".swp")


def landing_dir(var_dir: Path, dataset: str) -> Path:
    return Path(var_dir) / "landing" / dataset


def asset_name(dataset: str) -> str:
    """The name of the Asset a dataset's landing zone updates."""
    return f"aimass_landing_{dataset}"


def is_candidate(path: Path) -> bool:
    """A finished data file: not hidden, not a partial name, a known suffix."""
    name = path.name
    return (
        path.is_file()
        and not name.startswith((".", "_"))
        and not name.endswith(_PARTIAL)
        and name.lower().endswith(SUFFIXES)
    )


@dataclass
class Watch:
    """What a scan saw of one file: it is taken once it has not changed for ``settle_s``."""

    size: int
    mtime_ns: int
    since: float


def settled(
    folder: Path, seen: dict[str, Watch], *, settle_s: float, now: float | None = None
) -> list[Path]:
    """Files in ``folder`` whose size and mtime have not changed for ``settle_s`` seconds.

    ``seen`` carries the previous scans' observations (updated in place).
    """
    now = time.monotonic() if now is None else now
    ready = []
    present = set()
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not is_candidate(path):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        present.add(path.name)
        watch = seen.get(path.name)
        if watch is None or (watch.size, watch.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            seen[path.name] = Watch(stat.st_size, stat.st_mtime_ns, now)
            continue
        if now - watch.since >= settle_s:
            ready.append(path)
    for name in set(seen) - present:
        del seen[name]
    return ready


def claim(path: Path) -> Path | None:
    """Move a landed file into ``.claimed/`` under a unique name; None if it is gone."""
    claimed_dir = path.parent / CLAIMED
    claimed_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = claimed_dir / f"{stamp}-{path.name}"
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    log.info("claimed %s as %s", path, target)
    return target


def event_payload(dataset: str, claimed: Path, *, replay: bool = False) -> dict[str, Any]:
    """What the asset event carries: which dataset and which claimed file."""
    stat = claimed.stat()
    return {
        "dataset": dataset,
        "file": claimed.name,
        "original": claimed.name.split("-", 1)[1] if "-" in claimed.name else claimed.name,
        "bytes": stat.st_size,
        "replay": replay,
    }


def pending(var_dir: Path, dataset: str) -> list[Path]:
    """Files claimed but not yet taken by a run, oldest first."""
    folder = landing_dir(var_dir, dataset) / CLAIMED
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _ledger(var_dir: Path, dataset: str) -> Path:
    return landing_dir(var_dir, dataset) / PROCESSED / LEDGER


def ledger(var_dir: Path, dataset: str) -> list[dict[str, Any]]:
    path = _ledger(var_dir, dataset)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def take(var_dir: Path, dataset: str, *, ds: str, run_id: str) -> list[dict[str, Any]]:
    """Move every claimed file of ``dataset`` to ``processed/ds=<ds>/`` for ``run_id``.

    Returns the ledger entries of this run: the files it took now, or, for a retried run
    whose first attempt already took them, the ones it took then. Empty: nothing to do.
    """
    root = landing_dir(var_dir, dataset)
    out_dir = root / PROCESSED / f"ds={ds}"
    taken = []
    for path in pending(var_dir, dataset):
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / path.name
        try:
            os.rename(path, target)
        except FileNotFoundError:  # another run took it first
            continue
        entry = {
            "file": path.name,
            "path": str(target),
            "ds": ds,
            "run_id": run_id,
            "bytes": target.stat().st_size,
            "taken_at": datetime.now(UTC).isoformat(),
        }
        with open(_ledger(var_dir, dataset), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
        taken.append(entry)
        log.info("took %s for run %s -> %s", path.name, run_id, target)
    if taken:
        return taken
    return [e for e in ledger(var_dir, dataset) if e["run_id"] == run_id]
