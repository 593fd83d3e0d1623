"""``aimass spec init``: a first dataset spec drafted from a CSV or Parquet file.

From a sample of the file (``SAMPLE_ROWS`` rows): the CSV delimiter (``csv.Sniffer``, else
a comma) and whether the first line is a header; null tokens such as ``?`` or ``NA``; each
column's type (``long``, ``double`` or ``string``, as the clean job will parse them); the
task when it is not given (a string label, or a few distinct integers, is classification;
other numbers regression); features (numeric and categorical, without the label, ids and
high-cardinality strings, each left-out column with a comment saying why); quality bars
(``min_rows``, ``not_null`` for columns without nulls, ranges widened from the sample); and
a time split on a column that looks like a date, else a hash split.

The YAML comes with comments saying what to edit. It always passes
``DatasetSpec.from_dict``: :func:`draft` checks that before returning it.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aimass.data.spec import DatasetSpec, expr
from aimass.data.spec.base import BINARY, MULTICLASS, REGRESSION, TASKS
from aimass.data.spec_sample import (
    Parsing,
    column_values,
    data_files,
    format_of,
    parses,
    read_sample,
)
from aimass.platform.errors import ConfigError

SAMPLE_ROWS = 5000
# Tokens that mean "missing" in files people export (matched after trimming).
NULL_TOKENS = ("?", "NA", "N/A", "n/a", "null", "NULL", "None", "none", "nan", "-")
# An integer label with at most this many distinct values is a class label.
MAX_CLASSES = 20
# A string column with more distinct values than this (and than half its rows) is left out.
MAX_CATEGORIES = 50
_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|^id_", re.IGNORECASE)
_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Plain words YAML 1.1 reads as booleans or null.
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Column:
    name: str
    dtype: str
    values: list[str | None]
    # Why the column is no feature ("" when it is one).
    left_out: str = ""

    @property
    def present(self) -> list[str]:
        return [v for v in self.values if v is not None]

    @property
    def nulls(self) -> int:
        return len(self.values) - len(self.present)


@dataclass
class Draft:
    """The drafted spec: its YAML text (with comments) and what was decided, for the user."""

    text: str
    spec: DatasetSpec
    notes: list[str] = field(default_factory=list)


def spec_name(path: Path, name: str | None) -> str:
    """``name``, or one made from the file name: lower_snake_case, starting with a letter."""
    if name:
        return name
    stem = path.name.split(".")[0] if path.is_file() else path.name
    made = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    return made if re.match(r"^[a-z]", made) else f"dataset_{made}".rstrip("_")


def sniff(path: Path) -> tuple[str, bool]:
    """The CSV delimiter (``csv.Sniffer`` on the first lines, else a comma) and whether the
    first line is a header (no field of it is a number, and its fields differ)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        head = "".join(line for line in itertools.islice(fh, 50))
    try:
        delimiter = csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    first = next(csv.reader(head.splitlines()[:1], delimiter=delimiter), [])
    names = [f.strip() for f in first]
    header = (
        bool(names)
        and all(n and not parses(n, "double") and n not in NULL_TOKENS for n in names)
        and len(set(names)) == len(names)
    )
    return delimiter, header


def draft(
    path: Path,
    *,
    label: str,
    task: str | None = None,
    name: str | None = None,
    var_dir: Path | None = None,
) -> Draft:
    """Draft a spec for the file (or folder of files) at ``path`` with ``label`` as the label.

    Raises:
        ConfigError: the file cannot be read, the label is no column, or the task does not
            fit the label's values.
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    name = spec_name(path, name)
    if not _NAME.match(name):
        raise ConfigError(
            f"--name {name!r}: a dataset name is lower_snake_case (it names lake folders and models)"
        )
    first = data_files(path)[0]
    fmt = format_of(first, "csv")
    delimiter, header = sniff(first) if fmt == "csv" else (",", True)
    plain = Parsing(delimiter=delimiter, header=header)
    sample = read_sample(path, plain, rows=SAMPLE_ROWS, default_format=fmt)
    if not sample.rows:
        raise ConfigError(f"{path} has no data rows to learn the columns from")
    names = sample.columns or [f"column_{i + 1}" for i in range(sample.width)]
    if len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"{first}: the header has empty or repeated column names: {names}")
    raw = column_values(sample, names, plain)
    nulls = sorted({v for vs in raw.values() for v in vs if v in NULL_TOKENS})
    parsing = Parsing(delimiter=delimiter, header=header, null_values=tuple(nulls))
    columns = [Column(n, "", vs) for n, vs in column_values(sample, names, parsing).items()]
    for col in columns:
        col.dtype = _dtype(col.present)
    by_name = {c.name: c for c in columns}
    if label not in by_name:
        raise ConfigError(f"--label {label!r} is not a column of {first}; its columns: {names}")
    notes = [] if header or fmt != "csv" else [f"no header line found: columns named {names[0]}.."]
    target = by_name[label]
    task, label_yaml = _label(target, task, notes)
    split_column = _features(columns, label, len(sample.rows))
    text = _render(
        name=name,
        path=path,
        fmt=fmt,
        parsing=parsing,
        columns=columns,
        label=target,
        task=task,
        label_yaml=label_yaml,
        rows=len(sample.rows),
        split_column=split_column,
        var_dir=var_dir,
    )
    try:
        spec = DatasetSpec.from_dict(yaml.safe_load(text), origin=f"draft of {path}")
    except ConfigError as exc:  # a bug here, not the user's mistake: say what to send
        raise ConfigError(f"the drafted spec does not load ({exc}); please report this") from exc
    if nulls:
        notes.append(f"null tokens seen: {', '.join(nulls)} (source.null_values)")
    return Draft(text, spec, notes)


def _dtype(values: list[str]) -> str:
    if not values:
        return "string"
    if all(parses(v, "long") and "." not in v and "e" not in v.lower() for v in values):
        return "long"
    if all(parses(v, "double") for v in values):
        return "double"
    return "string"


def _label(col: Column, task: str | None, notes: list[str]) -> tuple[str, list[str]]:
    """The task and the YAML lines of ``label`` (under ``label:``)."""
    distinct = sorted(set(col.present), key=_class_order)
    numeric = col.dtype in ("long", "double")
    if task is None:
        if col.dtype == "string" or (col.dtype == "long" and len(distinct) <= MAX_CLASSES):
            task = BINARY if len(distinct) <= 2 else MULTICLASS
        else:
            task = REGRESSION
        notes.append(f"task {task}: inferred from {len(distinct)} distinct {col.dtype} labels")
    if task == REGRESSION:
        if not numeric:
            raise ConfigError(
                f"--task regression needs a numeric label; {col.name} holds strings such as "
                f"{distinct[:3]}: pass --task binary or multiclass"
            )
        return task, [f"column: {_key(col.name)}"]
    if len(distinct) < 2:
        raise ConfigError(
            f"label {col.name} has {len(distinct)} distinct values in the sample; a "
            f"{task} label needs two or more"
        )
    if task == MULTICLASS:
        if len(distinct) > 100:
            raise ConfigError(
                f"label {col.name} has {len(distinct)} distinct values: too many classes; pass "
                "--task regression or pick another column"
            )
        return task, [
            f"column: {_key(col.name)}",
            "# The classes in model output order; rows with other values are quarantined.",
            f"classes: {_flow(distinct)}",
        ]
    if len(distinct) > 2:
        raise ConfigError(
            f"label {col.name} has {len(distinct)} distinct values in the sample; binary needs "
            "two: pass --task multiclass or regression"
        )
    if numeric and {float(v) for v in distinct} <= {0.0, 1.0}:
        return task, [f"column: {_key(col.name)}"]
    counts = Counter(col.present)
    positive = min(distinct, key=lambda v: (counts[v], v))
    literal = positive if numeric else "'" + positive.replace("'", "''") + "'"
    notes.append(f"binary label: {col.name} = {positive!r} is the positive class (the rarer value)")
    return task, [
        "# The positive class (1): the rarer of the two values. Edit if the other one is.",
        f"expression: {json.dumps(f'{_ident(col.name)} = {literal}')}",
    ]


def _class_order(value: str) -> tuple[int, float, str]:
    return (0, float(value), "") if parses(value, "double") else (1, 0.0, value)


def _features(columns: list[Column], label: str, rows: int) -> str | None:
    """Mark the columns that are no features (``left_out``); the time split's column, if any."""
    split_column = None
    for col in columns:
        present = col.present
        distinct = len(set(present))
        if col.name == label:
            col.left_out = "the label"
        elif not present:
            col.left_out = "no value in the sample"
        elif distinct == 1:
            col.left_out = f"one value only in the sample ({present[0][:30]!r})"
        elif col.dtype == "string" and all(re.match(expr.DATE_PATTERN, v) for v in present):
            col.left_out = (
                "a date: used for the time split (derive month(...) etc. to learn from it)"
            )
            split_column = split_column or col.name
        elif _ID_NAME.search(col.name) and col.dtype != "double":
            col.left_out = "looks like an id (by its name)"
        elif col.dtype != "double" and distinct == len(present) and len(present) >= 20:
            col.left_out = f"looks like an id (all {distinct} values distinct)"
        elif col.dtype == "string" and distinct > max(MAX_CATEGORIES, len(present) // 2):
            col.left_out = f"high cardinality ({distinct} distinct values in {len(present)} rows)"
    return split_column


def _render(
    *,
    name: str,
    path: Path,
    fmt: str,
    parsing: Parsing,
    columns: list[Column],
    label: Column,
    task: str,
    label_yaml: list[str],
    rows: int,
    split_column: str | None,
    var_dir: Path | None,
) -> str:
    out = [
        f"# Drafted by `aimass spec init` from {path.name} ({rows} sample rows). Check every",
        "# section, then run `aimass spec check <this file>` (docs/datasets.md explains each part).",
        f"name: {name}",
        f"description: {json.dumps(f'{name} (drafted from {path.name}); predicts {label.name}.')}",
        "",
        "source:",
        f"  format: {fmt}",
        f"  path: {json.dumps(_source_path(path, var_dir))}",
    ]
    if fmt == "csv":
        out.append(f"  header: {'true' if parsing.header else 'false'}")
        if parsing.delimiter != ",":
            out.append(f"  delimiter: {json.dumps(parsing.delimiter)}")
        out.append("  # Spaces and tabs around every value are stripped (the model does the same).")
        out.append("  trim: true")
    if parsing.null_values:
        out.append("  # Values that mean missing, besides the empty field (seen in the sample).")
        out.append(f"  null_values: {_flow(list(parsing.null_values))}")
    out += ["", "# Column types (string, long, double) inferred from the sample, in file order."]
    out.append("schema:")
    out += [f"  {_key(c.name)}: {c.dtype}" for c in columns]
    label_name = _label_name(label.name, {c.name for c in columns})
    out += ["", "label:", f"  name: {label_name}", f"  task: {task}"]
    out += [f"  {line}" for line in label_yaml]
    numeric = [c.name for c in columns if not c.left_out and c.dtype != "string"]
    categorical = [c.name for c in columns if not c.left_out and c.dtype == "string"]
    if not numeric and not categorical:
        raise ConfigError(
            f"no column of {path.name} can be a feature (each is the label, an id, a date or "
            "constant); add features by hand"
        )
    out += ["", "features:", f"  numeric: {_flow(numeric)}", f"  categorical: {_flow(categorical)}"]
    for col in columns:
        if col.left_out and col.name != label.name:
            out.append(f"  # left out: {col.name}: {col.left_out}")
    out += ["", "split:", "  holdout_percent: 20"]
    if split_column:
        out.append(f"  # {split_column} looks like a date: the holdout is the latest rows.")
        out += ["  by: time", f"  column: {_key(split_column)}"]
    else:
        out.append("  # Rows are independent? Then hash. Time-ordered: by: time, column: <date>.")
        out.append("  by: hash")
    out += _quality(columns, label, rows)
    out += [
        "",
        "# training, gate, drift and tuning take their defaults; see conf/datasets/chicago_taxi.yaml",
        "# for every field.",
    ]
    return "\n".join(out) + "\n"


def _quality(columns: list[Column], label: Column, rows: int) -> list[str]:
    out = ["", "quality:"]
    out.append("  # Fewest rows a batch must have after cleaning; raise it for real batches.")
    out.append(f"  min_rows: {min(50, max(1, rows // 10))}")
    not_null = [c.name for c in columns if c.present and not c.nulls and c.name != label.name]
    out.append("  # Columns without a null in the sample: a null in a batch stops the run.")
    out.append(f"  not_null: {_flow(not_null)}")
    ranges = []
    for col in columns:
        if col.dtype == "string" or col.left_out or not col.present:
            continue
        numbers = [float(v) for v in col.present if math.isfinite(float(v))]
        if not numbers:
            continue
        lo, hi = min(numbers), max(numbers)
        pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
        low = 0.0 if lo >= 0 and lo - pad < 0 else lo - pad
        ranges.append(
            f"    {_key(col.name)}: {{min: {_number(low, col)}, max: {_number(hi + pad, col)}, mostly: 0.99}}"
        )
    if ranges:
        out.append("  # The sample's range widened by 10 %; `mostly` is the share that must fit.")
        out.append("  ranges:")
        out += ranges
    return out


def _number(value: float, col: Column) -> str:
    """A bound as YAML reads it back as a number (PyYAML wants a dot in ``1.0e-07``)."""
    if col.dtype == "long":
        return str(math.floor(value) if value < 0 else math.ceil(value))
    text = repr(float(f"{value:.6g}"))
    if "e" in text:
        text = f"{float(text):.12f}".rstrip("0")
        text = f"{text}0" if text.endswith(".") else text
    return text


def _label_name(column: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_") or "target"
    base = base if re.match(r"^[a-z]", base) else f"y_{base}"
    name = f"{base}_label"
    while name in taken:
        name += "_"
    return name


def _source_path(path: Path, var_dir: Path | None) -> str:
    resolved = path.resolve()
    if var_dir is not None and resolved.is_relative_to(var_dir.resolve()):
        return "{var_dir}/" + str(resolved.relative_to(var_dir.resolve()))
    return str(resolved)


def _key(name: str) -> str:
    """``name`` as a YAML string: plain when YAML reads it back as that string, else quoted."""
    plain = _SIMPLE.match(name) and name.lower() not in _YAML_WORDS
    return name if plain else json.dumps(name)


def _ident(name: str) -> str:
    """A column name in a Spark SQL expression."""
    return name if _SIMPLE.match(name) else "`" + name.replace("`", "``") + "`"


def _flow(items: list[Any]) -> str:
    return "[" + ", ".join(_key(str(i)) if isinstance(i, str) else str(i) for i in items) + "]"
