"""The landing zone: raw files dropped in a dataset's landing zone retrain with no one acting.

The zone is ``<var>/landing/<dataset>/`` by default, or ``<root>/<dataset>/`` under
``AIMASS_LANDING_ROOT``: another folder, or an ``s3://bucket/prefix`` (:class:`S3Zone`).
A file's way through, each step a move inside the dataset's zone (so a file is always in
exactly one place and never deleted):

1. ``<file>``: a producer copies it in (write it as ``.name`` or ``name.tmp`` and rename it,
   or just copy: a file is taken only once its size and mtime stopped changing).
2. ``.claimed/<utc time>-<file>``: the landing-zone trigger (``aimass.data.landing_trigger``,
   an Airflow ``AssetWatcher`` running in the triggerer) claims it and emits an asset event,
   which schedules ``aimass_retrain``.
   A file the zone will not take (not the spec's format, a header that does not fit, empty,
   unreadable; ``aimass.data.landing_check``) goes to ``rejected/<utc time>-<file>`` instead,
   with ``<utc time>-<file>.reason.txt`` beside it, and an alert is sent.
3. ``processed/ds=<ds>/<utc time>-<file>``: the retraining run's first task takes every
   claimed file of its dataset, records it in the ledger (``processed/ledger.jsonl``; one
   object per file under ``processed/ledger/`` on S3) with its run, and cleans the whole
   ``ds=<ds>`` folder (all files that landed that day), so the day's partition is rebuilt
   from all its files and a rerun gives the same partition.

Exactly once: a claimed file moves to ``processed/`` in one run only (a rename; on S3 a
copy, a ledger object, then a delete), and a run that finds nothing to take (a duplicate
event, e.g. one replayed after a triggerer restart) skips. A trigger that starts finds
files still in ``.claimed/`` (claimed before a restart but never taken) and announces them
again; a run retried after it took its files finds them in the ledger under its own run id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aimass.platform.settings import Settings

log = logging.getLogger(__name__)


class NothingLanded(Exception):
    """A landing event whose files another run already took: the run has nothing to do."""


CLAIMED = ".claimed"
PROCESSED = "processed"
REJECTED = "rejected"
LEDGER = "ledger.jsonl"
# Claimed names start with a UTC time in this format, so they sort in landing order.
_STAMP = "%Y%m%dT%H%M%S%fZ"
# Names producers use while a file is still being written.
_PARTIAL = (".tmp", ".part", ".partial", ".crdownload", ".swp")
_DAY = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")


def asset_name(dataset: str) -> str:
    """The name of the Asset a dataset's landing zone updates."""
    return f"aimass_landing_{dataset}"


def is_candidate(path: Path) -> bool:
    """A finished file: not hidden, not a partial name (its format is told by its content)."""
    return path.is_file() and _is_data_name(path.name)


@dataclass
class Watch:
    """What a scan saw of one file: it is taken once it has not changed for ``settle_s``.

    ``version`` is what says the content changed: the mtime of a local file, the ETag and
    last-modified time of an S3 object.
    """

    size: int
    version: object
    since: float


def _is_data_name(name: str) -> bool:
    """A finished file's name: not hidden, not a partial name; any suffix (``adult.data``)."""
    return not name.startswith((".", "_")) and not name.lower().endswith(_PARTIAL)


def _newest_day(counts: dict[str, int]) -> tuple[str, int] | None:
    """The newest ``ds=<day>`` folder name that holds files: (day, files); None if none."""
    days = [(m.group(1), n) for name, n in counts.items() if n and (m := _DAY.match(name))]
    return max(days) if days else None


def stamped(name: str) -> str:
    """``name`` behind the current UTC time, so moved names sort in the order they moved."""
    return f"{datetime.now(UTC).strftime(_STAMP)}-{name}"


def _observe(
    seen: dict[str, Watch], present: dict[str, tuple[int, object]], settle_s: float, now: float
) -> list[str]:
    """Update ``seen`` with one scan (name -> size, version); the names settled for settle_s."""
    ready = []
    for name, (size, version) in sorted(present.items()):
        watch = seen.get(name)
        if watch is None or (watch.size, watch.version) != (size, version):
            seen[name] = Watch(size, version, now)
        elif now - watch.since >= settle_s:
            ready.append(name)
    for name in set(seen) - set(present):
        del seen[name]
    return ready


def settled(
    folder: Path, seen: dict[str, Watch], *, settle_s: float, now: float | None = None
) -> list[Path]:
    """Files in ``folder`` whose size and mtime have not changed for ``settle_s`` seconds.

    ``seen`` carries the previous scans' observations (updated in place).
    """
    now = time.monotonic() if now is None else now
    present: dict[str, tuple[int, object]] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not is_candidate(path):
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        present[path.name] = (stat.st_size, stat.st_mtime_ns)
    return [folder / name for name in _observe(seen, present, settle_s, now)]


def claim(path: Path) -> Path | None:
    """Move a landed file into ``.claimed/`` under a unique name; None if it is gone."""
    claimed_dir = path.parent / CLAIMED
    claimed_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime(_STAMP)
    target = claimed_dir / f"{stamp}-{path.name}"
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    log.info("claimed %s as %s", path, target)
    return target


def event_payload(dataset: str, claimed: Path, *, replay: bool = False) -> dict[str, Any]:
    """What the asset event carries: which dataset and which claimed file."""
    return _payload(dataset, claimed.name, claimed.stat().st_size, replay)


def _payload(dataset: str, claimed: str, size: int, replay: bool) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "file": claimed,
        "original": claimed.split("-", 1)[1] if "-" in claimed else claimed,
        "bytes": size,
        "replay": replay,
    }


class LocalZone:
    """A landing zone in a local (or mounted) folder: every move is one rename."""

    def __init__(self, folder: Path, dataset: str) -> None:
        self.folder = Path(folder)
        self.dataset = dataset

    @property
    def location(self) -> str:
        return str(self.folder)

    @property
    def ledger_location(self) -> str:
        return str(self.folder / PROCESSED / LEDGER)

    def settled(
        self, seen: dict[str, Watch], *, settle_s: float, now: float | None = None
    ) -> list[str]:
        """Names of the landed files that stopped changing (see :func:`settled`)."""
        return [p.name for p in settled(self.folder, seen, settle_s=settle_s, now=now)]

    def claim(self, name: str) -> str | None:
        claimed = claim(self.folder / name)
        return None if claimed is None else claimed.name

    def payload(self, claimed: str, *, replay: bool = False) -> dict[str, Any]:
        return event_payload(self.dataset, self.folder / CLAIMED / claimed, replay=replay)

    def pending(self) -> list[str]:
        """Files claimed but not yet taken by a run, oldest first."""
        folder = self.folder / CLAIMED
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def day_input(self, ds: str) -> str:
        """Where the clean job reads the files that landed for ``ds``."""
        return str(self.folder / PROCESSED / f"ds={ds}")

    def latest_day(self) -> tuple[str, int] | None:
        """The newest ``processed/ds=<day>/`` that holds files, and how many; None if none."""
        folders = (self.folder / PROCESSED).glob("ds=*")
        return _newest_day(
            {p.name: sum(1 for f in p.iterdir() if f.is_file()) for p in folders if p.is_dir()}
        )

    def ledger(self) -> list[dict[str, Any]]:
        path = self.folder / PROCESSED / LEDGER
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def take(self, *, ds: str, run_id: str) -> list[dict[str, Any]]:
        """Move every claimed file to ``processed/ds=<ds>/`` for ``run_id``.

        Returns the ledger entries of this run: the files it took now, or, for a retried
        run whose first attempt already took them, the ones it took then. Empty: nothing
        to do.
        """
        out_dir = self.folder / PROCESSED / f"ds={ds}"
        taken = []
        for name in self.pending():
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / name
            try:
                os.rename(self.folder / CLAIMED / name, target)
            except FileNotFoundError:  # another run took it first
                continue
            entry = _entry(name, str(target), ds, run_id, target.stat().st_size)
            with open(self.folder / PROCESSED / LEDGER, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
            taken.append(entry)
            log.info("took %s for run %s -> %s", name, run_id, target)
        return taken or [e for e in self.ledger() if e["run_id"] == run_id]


def _entry(name: str, path: str, ds: str, run_id: str, size: int) -> dict[str, Any]:
    """A ledger line: which claimed file went where, for which run."""
    return {
        "file": name,
        "path": path,
        "ds": ds,
        "run_id": run_id,
        "bytes": size,
        "taken_at": datetime.now(UTC).isoformat(),
    }


class S3Zone:
    """A landing zone under an ``s3://`` prefix: a move is a copy, then a delete.

    The names and steps are those of :class:`LocalZone`: producers put objects directly
    under the prefix; ``.claimed/`` and ``processed/ds=<ds>/`` are sub-prefixes; the ledger
    is one small JSON object per taken file under ``processed/ledger/``. A move that stops
    half-way (copied, not yet deleted) is finished by the next step that meets it, and the
    ledger object, written before the claimed copy is deleted, keeps such a file to one run.
    Two runs must not take from the same zone at once; ``aimass_retrain`` runs one at a time
    (``max_active_runs=1``).
    """

    def __init__(self, uri: str, dataset: str, *, client: Any | None = None) -> None:
        from aimass.platform.s3io import parse_s3_uri

        root = parse_s3_uri(uri)
        self.bucket = root.bucket
        self.prefix = root.prefix
        self.dataset = dataset
        self._client = client
        self._sizes: dict[str, int] = {}  # claimed name -> bytes, from the claim

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def ledger_location(self) -> str:
        return f"{self.location}{PROCESSED}/ledger/"

    @property
    def client(self) -> Any:
        if self._client is None:
            from aimass.platform.s3io import make_client

            self._client = make_client()
        return self._client

    def _errors(self, action: str, key: str = "") -> Any:
        from aimass.platform.s3io import S3Location, _translated

        return _translated(S3Location(self.bucket, key or self.prefix), self.client, action)

    def _list(self, prefix: str) -> dict[str, dict[str, Any]]:
        """The objects directly under ``prefix``, by name."""
        found: dict[str, dict[str, Any]] = {}
        with self._errors("list the landing zone", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix) :]
                    if name:
                        found[name] = item
        return found

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata, None when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise

    def _copy(self, src: str, dst: str) -> bool:
        """Copy ``src`` to ``dst``; False when ``src`` is gone."""
        from botocore.exceptions import ClientError

        try:
            self.client.copy({"Bucket": self.bucket, "Key": src}, self.bucket, dst)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        return True

    def settled(
        self, seen: dict[str, Watch], *, settle_s: float, now: float | None = None
    ) -> list[str]:
        """Names of the landed objects whose size and ETag stayed the same for ``settle_s``."""
        now = time.monotonic() if now is None else now
        present: dict[str, tuple[int, object]] = {
            name: (int(item["Size"]), (item.get("ETag"), str(item.get("LastModified"))))
            for name, item in self._list(self.prefix).items()
            if _is_data_name(name)
        }
        return _observe(seen, present, settle_s, now)

    def claim(self, name: str) -> str | None:
        """Move a landed object into ``.claimed/``; its claimed name, None if it is gone.

        The claimed name comes from the object's upload time and ETag, so a claim
        interrupted between copy and delete gives the same name when it is made again, and
        a new upload under the same name in the same second (S3 times are in whole
        seconds) gets a name of its own instead of replacing a claimed file.
        """
        key = self.prefix + name
        with self._errors("claim", key):
            head = self._head(key)
            if head is None:
                return None
            uploaded = head["LastModified"].astimezone(UTC).strftime(_STAMP)
            etag = str(head.get("ETag", "")).strip('"').replace("-", "")[:12]
            claimed = f"{uploaded}.{etag}-{name}"
            if not self._copy(key, f"{self.prefix}{CLAIMED}/{claimed}"):
                return None
            self.client.delete_object(Bucket=self.bucket, Key=key)
        self._sizes[claimed] = int(head["ContentLength"])
        log.info("claimed %s as %s", self.location + name, self.location + f"{CLAIMED}/{claimed}")
        return claimed

    def payload(self, claimed: str, *, replay: bool = False) -> dict[str, Any]:
        size = self._sizes.pop(claimed, None)
        if size is None:
            key = f"{self.prefix}{CLAIMED}/{claimed}"
            with self._errors("read", key):
                size = int((self._head(key) or {}).get("ContentLength", 0))
        return _payload(self.dataset, claimed, size, replay)

    def pending(self) -> list[str]:
        return sorted(self._list(f"{self.prefix}{CLAIMED}/"))

    def day_input(self, ds: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{PROCESSED}/ds={ds}/"

    def latest_day(self) -> tuple[str, int] | None:
        """As :meth:`LocalZone.latest_day`, from one listing of ``processed/ds=``."""
        counts: dict[str, int] = {}
        prefix = f"{self.prefix}{PROCESSED}/"
        with self._errors("list the landed files", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix + "ds="
            )
            for page in pages:
                for item in page.get("Contents", []):
                    day, _, rest = item["Key"][len(prefix) :].partition("/")
                    if rest and "/" not in rest:
                        counts[day] = counts.get(day, 0) + 1
        return _newest_day(counts)

    def _ledger_key(self, name: str) -> str:
        return f"{self.prefix}{PROCESSED}/ledger/{name}.json"

    def ledger(self) -> list[dict[str, Any]]:
        entries = []
        prefix = f"{self.prefix}{PROCESSED}/ledger/"
        for name in self._list(prefix):
            with self._errors("read the ledger", prefix + name):
                body = self.client.get_object(Bucket=self.bucket, Key=prefix + name)["Body"]
                entries.append(json.loads(body.read()))
        return sorted(entries, key=lambda e: (e["taken_at"], e["file"]))

    def take(self, *, ds: str, run_id: str) -> list[dict[str, Any]]:
        """As :meth:`LocalZone.take`, with copies and deletes."""
        taken = []
        for name in self.pending():
            claimed = f"{self.prefix}{CLAIMED}/{name}"
            with self._errors("take", claimed):
                if self._head(self._ledger_key(name)) is not None:
                    # taken before an interruption: finish the move, take it no more
                    log.warning(
                        "%s was taken already (see the ledger); removing the claimed copy", name
                    )
                    self.client.delete_object(Bucket=self.bucket, Key=claimed)
                    continue
                target = f"{self.prefix}{PROCESSED}/ds={ds}/{name}"
                if not self._copy(claimed, target):
                    continue  # another run took it first
                size = int(self.client.head_object(Bucket=self.bucket, Key=target)["ContentLength"])
                entry = _entry(name, f"s3://{self.bucket}/{target}", ds, run_id, size)
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._ledger_key(name),
                    Body=json.dumps(entry, sort_keys=True).encode("utf-8"),
                    ContentType="application/json",
                )
                self.client.delete_object(Bucket=self.bucket, Key=claimed)
            taken.append(entry)
            log.info("took %s for run %s -> %s", name, run_id, entry["path"])
        return taken or [e for e in self.ledger() if e["run_id"] == run_id]


Zone = LocalZone | S3Zone


def zone_at(location: str, dataset: str) -> Zone:
    """The landing zone of ``dataset`` at ``location``: a folder, or an ``s3://`` prefix."""
    from aimass.platform.s3io import is_s3_uri

    return S3Zone(location, dataset) if is_s3_uri(location) else LocalZone(Path(location), dataset)


def zone_for(settings: Settings, dataset: str) -> Zone:
    """The landing zone of ``dataset`` as configured (``AIMASS_LANDING_ROOT``)."""
    return zone_at(settings.landing_location(dataset), dataset)
