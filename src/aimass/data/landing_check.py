"""What the landing zone takes: a file in a format its spec reads, told by content.

A landed file's name says nothing about its format (``adult.data`` is a CSV). The watcher
(``aimass.data.landing_trigger``) reads the start and the last bytes of each settled file
and takes it only when

* it is Parquet (starts and ends with ``PAR1``) or a CSV (UTF-8 text without NUL bytes whose
  first line splits, with the spec's ``source.delimiter`` and ``source.quote``, into the
  spec's header when ``source.header``, else into as many fields as the schema has columns);
* that format is the spec's ``source.format``, or the one its suffix names (``x.parquet``
  in a CSV dataset's zone: the clean job reads a file by its suffix first).

Any other file (empty, binary or compressed, not UTF-8, a header that does not fit, the
other format under a name that does not say so) is moved to ``rejected/<utc time>-<file>``
with ``<utc time>-<file>.reason.txt`` beside it, and an alert is sent
(``aimass.platform.alerts``): it is never silently left. Hidden and partial names (dot-files,
``.tmp``, ``.part``...) and files still growing are not looked at (``aimass.data.landing``).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aimass.data import landing

if TYPE_CHECKING:
    from aimass.data.spec import DatasetSpec
    from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

CSV = "csv"
PARQUET = "parquet"
PARQUET_MAGIC = b"PAR1"
REASON_SUFFIX = ".reason.txt"
# How much of a landed file is read to tell its format (a CSV's first line fits).
SAMPLE_BYTES = 64 * 1024
_SUFFIXES = {".csv": CSV, ".parquet": PARQUET}
_BINARY = {b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "a zip archive", b"BZh": "bzip2"}


@dataclass(frozen=True)
class Sample:
    """The first :data:`SAMPLE_BYTES` and the last 4 bytes of a landed file, and its size."""

    head: bytes
    tail: bytes
    size: int


def read_sample(zone: landing.Zone, name: str) -> Sample:
    """The start and end of the landed file ``name`` (two ranged reads on S3)."""
    if isinstance(zone, landing.LocalZone):
        with open(zone.folder / name, "rb") as fh:
            head = fh.read(SAMPLE_BYTES)
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(size - 4, 0))
            return Sample(head, fh.read(4), size)
    key = zone.prefix + name
    with zone._errors("read", key):
        size = int(zone.client.head_object(Bucket=zone.bucket, Key=key)["ContentLength"])
        if size == 0:
            return Sample(b"", b"", 0)
        get = zone.client.get_object
        head = get(Bucket=zone.bucket, Key=key, Range=f"bytes=0-{SAMPLE_BYTES - 1}")
        tail = get(Bucket=zone.bucket, Key=key, Range=f"bytes={max(size - 4, 0)}-")
        return Sample(head["Body"].read(), tail["Body"].read(), size)


def move_aside(zone: landing.Zone, name: str, reason: str) -> str:
    """Move a landed file to ``rejected/<utc time>-<file>`` with its reason beside it
    (written first); where the file went."""
    moved = landing.stamped(name)
    if isinstance(zone, landing.LocalZone):
        folder = zone.folder / landing.REJECTED
        folder.mkdir(exist_ok=True)
        (folder / (moved + REASON_SUFFIX)).write_text(reason + "\n", encoding="utf-8")
        os.rename(zone.folder / name, folder / moved)
        return str(folder / moved)
    key, target = zone.prefix + name, f"{zone.prefix}{landing.REJECTED}/{moved}"
    with zone._errors("move aside", key):
        zone.client.put_object(
            Bucket=zone.bucket,
            Key=target + REASON_SUFFIX,
            Body=(reason + "\n").encode("utf-8"),
            ContentType="text/plain",
        )
        if zone._copy(key, target):
            zone.client.delete_object(Bucket=zone.bucket, Key=key)
    return f"s3://{zone.bucket}/{target}"


def detect_format(sample: Sample) -> tuple[str | None, str]:
    """``("parquet"|"csv", "")`` from the content, or ``(None, why it is neither)``."""
    if sample.size == 0:
        return None, "it is empty (0 bytes): usually a failed or truncated export"
    if sample.head.startswith(PARQUET_MAGIC):
        if sample.size >= 12 and sample.tail == PARQUET_MAGIC:
            return PARQUET, ""
        return None, "it starts like Parquet but has no PAR1 footer: a truncated upload"
    for magic, what in _BINARY.items():
        if sample.head.startswith(magic):
            return None, f"it is {what}: unpack it and drop the CSV or Parquet file itself"
    if b"\x00" in sample.head:
        return None, "it is binary (NUL bytes), neither CSV text nor Parquet"
    return CSV, ""


def first_line(sample: Sample) -> tuple[str | None, str]:
    """The CSV's first line decoded (UTF-8, a BOM dropped), or ``(None, why not)``."""
    head = sample.head
    end = head.find(b"\n")
    if end < 0 and sample.size > len(head):
        return None, f"its first line is longer than {SAMPLE_BYTES // 1024} KiB: not a CSV"
    raw = head if end < 0 else head[:end]
    try:
        return raw.decode("utf-8-sig").rstrip("\r"), ""
    except UnicodeDecodeError as exc:
        return None, f"its first line is not UTF-8 text ({exc.reason} at byte {exc.start})"


def refusal(spec: DatasetSpec, name: str, sample: Sample) -> str | None:
    """Why the zone will not take ``name`` for ``spec``; None when it takes it."""
    fmt, why = detect_format(sample)
    if fmt is None:
        return why
    named = _SUFFIXES.get(Path(name).suffix.lower())
    if named is not None and named != fmt:
        return (
            f"it is {fmt} but named *{Path(name).suffix}, and the clean job reads a file by its "
            f"suffix: rename it *.{fmt}"
        )
    if fmt != spec.source_format and named != fmt:
        return (
            f"it is {fmt}, but spec {spec.name!r} declares source.format {spec.source_format}: "
            f"export it as {spec.source_format}, or name it *.{fmt} to have it read as {fmt}"
        )
    if fmt == PARQUET:
        return None  # its columns are checked against the schema by the clean job
    line, why = first_line(sample)
    if line is None:
        return why
    fields = next(csv.reader([line], delimiter=spec.delimiter, quotechar=spec.quote), [])
    expected = list(spec.columns)
    if not spec.header:
        if len(fields) == len(expected):
            return None
        return (
            f"its first line splits into {len(fields)} field(s) on {spec.delimiter!r}, but the "
            f"spec (no header) has {len(expected)} columns {expected}: check source.delimiter"
        )
    header = [f.strip() for f in fields]
    if header == expected:
        return None
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    detail = (
        f"the columns are in another order: {header}"
        if not missing and not extra
        else f"missing columns {missing}, unexpected columns {extra}"
    )
    return (
        f"its header does not match spec {spec.name!r} (delimiter {spec.delimiter!r}): "
        f"{detail}; expected {expected}"
    )


def admit(
    zone: landing.Zone, spec: DatasetSpec, name: str, *, settings: Settings | None = None
) -> bool:
    """Whether the zone takes the settled file ``name``; a file it will not take is moved
    aside with its reason and an alert is sent. False too when the file is gone.
    """
    from aimass.platform.alerts import GENERIC, send_alert

    try:
        sample = read_sample(zone, name)
    except FileNotFoundError:
        return False
    except OSError as exc:
        reason = f"it cannot be read: {exc}"
    else:
        reason = refusal(spec, name, sample) or ""
    if not reason:
        return True
    reason = f"{name} was not taken for {spec.name}: {reason}"
    moved = move_aside(zone, name, reason)
    log.warning("%s; moved to %s", reason, moved)
    send_alert(
        GENERIC,
        f"landed file {name} of {spec.name} rejected",
        {"dataset": spec.name, "file": name, "reason": reason, "moved_to": moved},
        settings=settings,
    )
    return False
