"""``aimass spec check``: a dataset spec, and the first rows of its source against its schema.

Seconds, no Spark, no run: the spec is loaded as a run loads it (``DatasetSpec.from_dict``),
then the first rows of its data are read with the spec's own parsing
(:mod:`aimass.data.spec_sample`) and checked the way the clean job would take them: the
header against the schema, each value against its declared type, the label's nulls and
classes. The data is ``--data``, else ``source.path``, else the newest file in the dataset's
landing zone.

Problems (the run would refuse the file, or quarantine rows because the spec does not fit
the data) make the check fail; warnings (rows the clean job quarantines for what they hold,
such as a null label) do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from aimass.data.spec import DatasetSpec, ExpressionError, expr
from aimass.data.spec.base import BINARY, MULTICLASS
from aimass.data.spec_sample import (
    REPLACEMENT_CHAR,
    Parsing,
    Sample,
    column_values,
    parses,
    read_sample,
)
from aimass.platform.errors import ConfigError

if TYPE_CHECKING:
    from aimass.platform.settings import Settings

OK, WARN, PROBLEM = "OK", "WARN", "PROBLEM"
EXAMPLES = 3


@dataclass(frozen=True)
class Finding:
    level: str  # OK, WARN or PROBLEM
    text: str


@dataclass
class Report:
    """What ``spec check`` prints: the spec in brief, where the rows came from, each finding."""

    head: list[str]
    data: str = ""
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == PROBLEM]

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = [*self.head]
        if self.data:
            lines.append(self.data)
        lines.extend(f"  {f.level:8s} {f.text}" for f in self.findings)
        problems = len(self.problems)
        lines.append(
            "result   OK: the spec is valid and the rows fit"
            if not problems
            else f"result   FAILED: {problems} problem{'s' if problems > 1 else ''}"
        )
        return "\n".join(lines)


def spec_path(name_or_file: str, conf_dir: Path) -> Path:
    """A spec's file: ``name_or_file`` itself when it is a file or has a suffix, else
    ``<conf>/datasets/<name>.yaml``."""
    path = Path(name_or_file)
    if path.suffix or path.exists() or "/" in name_or_file:
        return path
    return conf_dir / "datasets" / f"{name_or_file}.yaml"


def load_spec_file(path: Path) -> DatasetSpec:
    """The spec in ``path``, or a ConfigError whose one-line message names the problem."""
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ConfigError(f"no such file; specs in {path.parent}: {known or 'none'}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"not valid YAML{where}: {problem}") from None
    try:
        return DatasetSpec.from_dict(raw, origin=str(path))
    except ConfigError as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(message.removeprefix(f"{path}: ")) from None


def describe(spec: DatasetSpec, origin: str) -> list[str]:
    """The spec in brief: label, features, what the model derives and what clients send."""
    label = (
        f"column {spec.label_column}"
        if spec.label_column is not None
        else f"expression {spec.label_expression}"
    )
    classes = f", classes {', '.join(spec.label_classes)}" if spec.label_classes else ""
    lines = [
        f"spec     {spec.name} ({origin}): valid",
        f"  label    {spec.label_name}: {spec.task}, {label}{classes}",
        f"  features numeric: {', '.join(spec.numeric_features) or '-'}; "
        f"categorical: {', '.join(spec.categorical_features) or '-'}",
    ]
    derived = {d.name: d for d in spec.derived}
    for compiled in spec.feature_expressions():
        d = derived[compiled.name]
        lines.append(
            f"  derived  {d.name} ({d.dtype}) = {d.expression}  (computed inside the model)"
        )
    lines.append(
        f"  clients send these raw columns, as in the source: {', '.join(spec.model_inputs)}"
    )
    lines.append(
        f"  split    {spec.split.by}"
        + (f" on {spec.split.column}" if spec.split.column else "")
        + (f" by {', '.join(spec.split.key)}" if spec.split.key else "")
        + f", holdout {spec.holdout_percent}%"
    )
    return lines


def newest_landed(settings: Settings, dataset: str) -> Path | None:
    """The newest file in ``dataset``'s local landing zone: waiting, claimed or processed."""
    location = settings.landing_location(dataset)
    if "://" in location:
        return None
    folder = Path(location)
    places = [folder, folder / ".claimed", *sorted((folder / "processed").glob("ds=*"))]
    found = [
        p
        for place in places
        if place.is_dir()
        for p in place.iterdir()
        if p.is_file() and not p.name.startswith((".", "_")) and not p.name.endswith(".jsonl")
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def find_source(spec: DatasetSpec, settings: Settings, data: str | None) -> tuple[str | None, str]:
    """The data to check and where it came from, or None and why there is none."""
    if data:
        return data, "--data"
    if spec.source_path:
        return spec.resolved_source_path(settings.var_dir), "source.path"
    landed = newest_landed(settings, spec.name)
    if landed is not None:
        return str(landed), "newest file in the landing zone"
    return None, (
        f"no data checked: the spec has no source.path and nothing has landed in "
        f"{settings.landing_location(spec.name)}; pass --data FILE"
    )


def check(
    spec: DatasetSpec, origin: str, settings: Settings, *, data: str | None = None, rows: int = 1000
) -> Report:
    """The spec in brief and, when there is data to read, its first ``rows`` rows checked."""
    report = Report(describe(spec, origin))
    source, how = find_source(spec, settings, data)
    if source is None:
        report.data = f"data     {how}"
        return report
    if "://" in source:
        report.data = f"data     {source} ({how}): not checked here, only local files are read"
        return report
    try:
        sample = read_sample(
            Path(source), Parsing.of(spec), rows=rows, default_format=spec.source_format
        )
    except (ConfigError, OSError) as exc:
        report.data = f"data     {source} ({how})"
        report.findings.append(Finding(PROBLEM, f"cannot read it: {exc}"))
        return report
    files = f", {sample.files} files" if sample.files > 1 else ""
    report.data = (
        f"data     {source} ({how}), {sample.format}{files}: "
        f"{len(sample.rows)} rows read (at most {rows})"
    )
    report.findings.extend(check_sample(spec, sample))
    return report


def check_sample(spec: DatasetSpec, sample: Sample) -> list[Finding]:
    """Findings on ``sample`` (read with the spec's parsing) against the spec."""
    parsing = Parsing.of(spec)
    findings = _header(spec, sample)
    if any(f.level == PROBLEM for f in findings) and sample.columns is None:
        return findings
    if sample.malformed:
        shown = ", ".join(f"{w} has {n}" for w, n in sample.malformed[:EXAMPLES])
        findings.append(
            Finding(
                PROBLEM,
                f"{len(sample.malformed)} rows have another field count than the "
                f"{sample.width} columns ({shown}): quarantined as malformed; check "
                f"source.delimiter ({spec.delimiter!r}) and source.quote ({spec.quote!r})",
            )
        )
    if not sample.rows:
        findings.append(Finding(WARN, "no data rows to check"))
        return findings
    values = column_values(sample, spec.columns, parsing)
    findings.extend(_types(spec, sample, values))
    findings.extend(_not_null(spec, values))
    findings.extend(_label(spec, sample, values))
    return findings


def _header(spec: DatasetSpec, sample: Sample) -> list[Finding]:
    expected = list(spec.columns)
    if sample.columns is None:
        if sample.rows and sample.width != len(expected):
            return [
                Finding(
                    PROBLEM,
                    f"rows have {sample.width} fields but the schema {len(expected)} columns "
                    f"(no header: columns are taken in schema order); check source.delimiter "
                    f"({spec.delimiter!r}) and the schema",
                )
            ]
        return [Finding(OK, f"{len(expected)} fields a row, as the schema (no header)")]
    found = sample.columns
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing or (extra and sample.format == "csv"):
        hint = (
            f"; one column named {found[0][:60]!r}: is source.delimiter ({spec.delimiter!r}) right?"
            if len(found) == 1 and len(expected) > 1
            else ""
        )
        return [
            Finding(
                PROBLEM,
                f"header: missing columns {missing}, unexpected columns {extra}: the run refuses "
                f"the file; fix the schema (file order) or the file{hint}",
            )
        ]
    if sample.format == "csv" and found != expected:
        return [
            Finding(
                PROBLEM,
                f"header: the columns are in another order ({found}); the schema lists them in "
                "file order",
            )
        ]
    note = f" (and {extra}, not in the schema, ignored)" if extra else ""
    return [Finding(OK, f"header: the {len(expected)} schema columns{note}")]


def _examples(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{v[:40]!r} ({w})" for w, v in pairs[:EXAMPLES])


def _types(spec: DatasetSpec, sample: Sample, values: dict[str, list[str | None]]) -> list[Finding]:
    findings = []
    for col, dtype in spec.schema:
        if col not in values:
            continue
        column = values[col]
        encoding = [
            (w, v) for w, v in zip(sample.where, column, strict=True) if v and REPLACEMENT_CHAR in v
        ]
        if encoding:
            findings.append(
                Finding(
                    PROBLEM,
                    f"{col}: {len(encoding)} values are not valid UTF-8, e.g. "
                    f"{_examples(encoding)}: quarantined as bad encoding; save the file as UTF-8",
                )
            )
        bad = [
            (w, v)
            for w, v in zip(sample.where, column, strict=True)
            if v is not None and not parses(v, dtype)
        ]
        if bad:
            present = sum(v is not None for v in column)
            findings.append(
                Finding(
                    PROBLEM,
                    f"{col} ({dtype}): {len(bad)} of {present} values do not parse, e.g. "
                    f"{_examples(bad)}: quarantined as unparseable; fix schema.{col} "
                    "(or add the token to source.null_values)",
                )
            )
    if not findings:
        findings.append(
            Finding(OK, f"types: every value of the {len(values)} columns fits its declared type")
        )
    return findings


def _not_null(spec: DatasetSpec, values: dict[str, list[str | None]]) -> list[Finding]:
    findings = []
    for col in spec.quality.not_null:
        nulls = sum(v is None for v in values.get(col, []))
        if nulls:
            findings.append(
                Finding(
                    WARN,
                    f"quality.not_null lists {col}, but {nulls} of {len(values[col])} rows have "
                    "no value there: the quality check would stop the run",
                )
            )
    return findings


def _label(spec: DatasetSpec, sample: Sample, values: dict[str, list[str | None]]) -> list[Finding]:
    total = len(sample.rows)
    if spec.label_column is None:
        try:
            reads = [c for c in dict.fromkeys(expr.columns(expr.parse(spec.label_expression)))]
        except ExpressionError:
            return [
                Finding(OK, f"label {spec.label_name}: Spark SQL; the clean job finds its nulls")
            ]
        reads = [c for c in reads if c in values]
        nulls = sum(any(values[c][i] is None for c in reads) for i in range(total))
        what = f"a null in {', '.join(reads)}, which the label reads"
    else:
        column = values.get(spec.label_column, [])
        nulls = sum(v is None for v in column)
        what = f"no value in {spec.label_column}"
    findings = []
    if nulls:
        findings.append(
            Finding(
                PROBLEM if nulls * 2 > total else WARN,
                f"label {spec.label_name}: {nulls} of {total} rows have {what}: the clean job "
                "quarantines them (null label)",
            )
        )
    if spec.label_column is not None and spec.label_column in values:
        findings.extend(_label_values(spec, sample, values[spec.label_column]))
    if not findings:
        findings.append(Finding(OK, f"label {spec.label_name}: a value in every row"))
    return findings


def _label_values(spec: DatasetSpec, sample: Sample, column: list[str | None]) -> list[Finding]:
    if spec.task == MULTICLASS:
        unknown: dict[str, int] = {}
        for v in column:
            if v is not None and v not in spec.label_classes:
                unknown[v] = unknown.get(v, 0) + 1
        if unknown:
            shown = ", ".join(f"{v!r} ({n} rows)" for v, n in sorted(unknown.items())[:5])
            return [
                Finding(
                    PROBLEM,
                    f"label {spec.label_name}: values not in label.classes: {shown}: quarantined "
                    "(unknown class); add them to label.classes",
                )
            ]
        return [Finding(OK, f"label {spec.label_name}: every value is one of label.classes")]
    if spec.task == BINARY:
        bad = [
            (w, v)
            for w, v in zip(sample.where, column, strict=True)
            if v is not None and not (parses(v, "double") and float(v) in (0.0, 1.0))
        ]
        if bad:
            return [
                Finding(
                    PROBLEM,
                    f"label {spec.label_name}: a binary label column must hold 0 or 1, found "
                    f"{_examples(bad)}; write label.expression instead, e.g. "
                    f"\"{spec.label_column} = '{bad[0][1]}'\"",
                )
            ]
    return []
