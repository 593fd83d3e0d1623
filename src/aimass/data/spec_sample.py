"""The first rows of a CSV or Parquet source, read the way the clean job reads them, without Spark.

``aimass spec check`` and ``aimass spec init`` need seconds, not a Spark session, so this
module mirrors the clean job's parsing (``jobs/clean/inputs.read_raw`` and
``jobs/clean/transforms.normalized``/``_typed``) with the standard library and pyarrow:

- CSV: the spec's ``source.delimiter`` and ``source.quote`` (a doubled quote inside a quoted
  field is a quote), one record per line, the first line skipped when ``source.header``;
- every field trimmed of spaces and tabs (``source.trim``), then the empty string and the
  ``source.null_values`` tokens are null, then ``source.case`` folds string columns;
- Parquet: each value as Spark casts it to a string, then the same normalization;
- ``long`` accepts integers and integral decimals such as ``8.0``; ``double`` accepts decimal
  and scientific numbers, ``NaN`` and ``Infinity``.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimass.platform.errors import ConfigError

# The clean job's TRIM_CHARACTERS (jobs/clean/transforms.py).
TRIM_CHARACTERS = " \t"
_LONG = re.compile(r"[+-]?\d+")
_DOUBLE = re.compile(
    r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|(?i:nan|inf|infinity))"
)
_LONG_LIMIT = 2.0**63
# Names a landing zone or a folder holds that are no data files.
_NOT_DATA = ("ledger.jsonl",)
REPLACEMENT_CHAR = "\ufffd"


def parses(value: str, dtype: str) -> bool:
    """Whether a normalized, non-null field parses as spec type ``dtype``."""
    if dtype == "string":
        return True
    if dtype == "long":
        if _LONG.fullmatch(value):
            return abs(int(value)) < _LONG_LIMIT
        if not _DOUBLE.fullmatch(value):
            return False
        number = float(value)
        return math.isfinite(number) and number == math.floor(number) and abs(number) < _LONG_LIMIT
    return _DOUBLE.fullmatch(value) is not None


@dataclass(frozen=True)
class Parsing:
    """How fields become values: the spec's ``source`` parsing options."""

    delimiter: str = ","
    quote: str = '"'
    header: bool = True
    trim: bool = True
    null_values: tuple[str, ...] = ()
    case: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, spec: Any) -> Parsing:
        """The parsing options of a :class:`~aimass.data.spec.DatasetSpec`."""
        return cls(
            delimiter=spec.delimiter,
            quote=spec.quote,
            header=spec.header,
            trim=spec.trim,
            null_values=tuple(spec.null_values),
            case=tuple(spec.case),
        )

    def normalize(self, raw: str | None, column: str | None = None) -> str | None:
        """A field as the spec reads it: trimmed, null tokens as None, folded to a case."""
        if raw is None:
            return None
        value = raw.strip(TRIM_CHARACTERS) if self.trim else raw
        if value == "" or value in self.null_values:
            return None
        mode = dict(self.case).get(column or "")
        if mode == "lower":
            return value.lower()
        if mode == "upper":
            return value.upper()
        return value


@dataclass
class Sample:
    """The first rows of a source: raw fields (not yet normalized) by column position."""

    path: str
    format: str
    # The header's names (CSV with a header, Parquet's columns); None for a CSV without one.
    columns: list[str] | None
    rows: list[list[str | None]] = field(default_factory=list)
    # Where each row sits, for examples: "line 12" (CSV) or "row 12" (Parquet).
    where: list[str] = field(default_factory=list)
    # Rows whose field count differs from the header's (or the first row's): (where, count).
    malformed: list[tuple[str, int]] = field(default_factory=list)
    files: int = 1

    @property
    def width(self) -> int:
        if self.columns is not None:
            return len(self.columns)
        return len(self.rows[0]) if self.rows else 0


def data_files(path: Path) -> list[Path]:
    """``path`` itself, or the data files in a folder (not hidden, not ``_SUCCESS``)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"{path} does not exist; fix the path or pass --data FILE")
    files = [
        p
        for p in sorted(path.rglob("*"))
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        and p.name not in _NOT_DATA
    ]
    if not files:
        raise ConfigError(f"{path} is a folder without data files; pass --data FILE")
    return files


def format_of(path: Path, default: str) -> str:
    """``parquet`` for a ``.parquet`` file (or a file starting with Parquet's magic bytes),
    ``csv`` for ``.csv``, else ``default`` (the spec's ``source.format``)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    with open(path, "rb") as fh:
        if fh.read(4) == b"PAR1":
            return "parquet"
    return default


def read_sample(path: Path, parsing: Parsing, *, rows: int, default_format: str) -> Sample:
    """The first ``rows`` rows of ``path`` (a file, or a folder of files read in name order).

    Raises:
        ConfigError: the path does not exist, holds no data file, or cannot be read.
    """
    files = data_files(path)
    sample: Sample | None = None
    for file in files:
        fmt = format_of(file, default_format)
        left = rows - (len(sample.rows) if sample else 0)
        if left <= 0:
            break
        part = _read_parquet(file, left) if fmt == "parquet" else _read_csv(file, parsing, left)
        if sample is None:
            sample = part
        else:
            sample.rows.extend(part.rows)
            sample.where.extend(f"{file.name} {w}" for w in part.where)
            sample.malformed.extend((f"{file.name} {w}", n) for w, n in part.malformed)
            sample.files += 1
    assert sample is not None  # data_files returns at least one file
    sample.path = str(path)
    return sample


def _read_csv(path: Path, parsing: Parsing, limit: int) -> Sample:
    """One record per line, as the clean job reads (``multiLine`` off): a quoted field never
    spans lines, so an unclosed quote spoils one row, not the rest of the file."""
    sample = Sample(str(path), "csv", None)
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.rstrip("\r\n")
            if not text:  # a blank line: Spark skips it too
                continue
            fields = next(
                csv.reader(
                    [text], delimiter=parsing.delimiter, quotechar=parsing.quote, strict=False
                ),
                [],
            )
            if parsing.header and sample.columns is None:
                sample.columns = [f.strip(TRIM_CHARACTERS) for f in fields]
                continue
            width = sample.width or len(fields)
            if len(fields) != width:
                sample.malformed.append((f"line {number}", len(fields)))
                continue
            sample.rows.append(list(fields))
            sample.where.append(f"line {number}")
            if len(sample.rows) >= limit:
                break
    return sample


def _read_parquet(path: Path, limit: int) -> Sample:
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ConfigError(f"{path}: cannot read as Parquet: {exc}") from exc
    columns = list(pfile.schema_arrow.names)
    sample = Sample(str(path), "parquet", columns)
    for batch in pfile.iter_batches(batch_size=min(limit, 65536)):
        for row in batch.to_pylist():
            sample.rows.append([_as_text(row.get(c)) for c in columns])
            sample.where.append(f"row {len(sample.rows)}")
            if len(sample.rows) >= limit:
                return sample
    return sample


def _as_text(value: object) -> str | None:
    """A Parquet value as Spark's cast to string writes it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("NaN" if value != value else "Infinity")
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def column_values(
    sample: Sample, names: Sequence[str], parsing: Parsing
) -> dict[str, list[str | None]]:
    """Normalized values of each named column, by the header's names (positions without one)."""
    positions = (
        {name: i for i, name in enumerate(sample.columns)}
        if sample.columns is not None
        else {name: i for i, name in enumerate(names)}
    )
    return {
        name: [parsing.normalize(row[positions[name]], name) for row in sample.rows]
        for name in names
        if name in positions and positions[name] < sample.width
    }
