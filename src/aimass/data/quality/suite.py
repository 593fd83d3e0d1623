"""The quality suite of a dataset: expectations generated from ``spec.quality``, plus a file.

Besides the expectations generated from the spec, a dataset may have hand-written ones in
``conf/expectations/<dataset>.yaml`` (optional; ``find_expectations_file``)::

    expectations:
      - expectation: expect_column_values_to_be_in_set   # any GX 1.x expectation, snake_case
        kwargs: {column: payment_type, value_set: [Cash, Credit Card], mostly: 0.99}
        severity: warning        # critical (stops the run) or warning (recorded); default critical
        notes: why this exists   # optional; shown in Data Docs

``load_expectations`` checks the file before any data is read: the expectation must exist
in ``great_expectations.expectations``, its kwargs must build it, and ``column``,
``column_A``, ``column_B`` and ``column_list`` must name columns of the clean partition
(spec columns, the label, ``split``). Each planned expectation says where it came from
(``source``: ``"spec"`` or the file's path).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from aimass.data.quality.expectations import (
    CRITICAL,
    RESERVED_KWARGS,
    SEVERITIES,
    SPEC_SOURCE,
    WARNING,
    PlannedExpectation,
    build_expectation,
    expectation_class,
    kwargs_error,
)
from aimass.platform.errors import ConfigError

if TYPE_CHECKING:
    from aimass.data.spec import DatasetSpec

# The clean job adds this column to every clean partition (jobs/clean/transforms.py).
SPLIT_COLUMN = "split"
# kwargs that name columns of the batch, checked against the clean partition's columns.
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list",)
_ENTRY_KEYS = ("expectation", "kwargs", "severity", "notes")


def plan_suite(spec: DatasetSpec) -> list[PlannedExpectation]:
    """The expectations generated from ``spec.quality`` (pure, no GX import).

    - ``min_rows`` -> row count at least min_rows (critical);
    - ``not_null`` and the label -> not-null (critical);
    - a classification label -> values in {0, 1} or the class indexes (critical);
    - ``ranges`` -> between min and max with ``mostly``: warning when mostly < 1, else critical.
    """
    plan = [
        PlannedExpectation(
            "expect_table_row_count_to_be_between", {"min_value": spec.quality.min_rows}
        )
    ]
    for col in dict.fromkeys((*spec.quality.not_null, spec.label_name)):
        plan.append(PlannedExpectation("expect_column_values_to_not_be_null", {"column": col}))
    if spec.is_classification:
        # 0/1 for binary, the class indexes for multiclass; regression labels are any number.
        plan.append(
            PlannedExpectation(
                "expect_column_values_to_be_in_set",
                {"column": spec.label_name, "value_set": list(range(spec.num_classes))},
            )
        )
    for rng in spec.quality.ranges:
        kwargs: dict[str, Any] = {"column": rng.column}
        if rng.min is not None:
            kwargs["min_value"] = rng.min
        if rng.max is not None:
            kwargs["max_value"] = rng.max
        if rng.mostly < 1:
            kwargs["mostly"] = rng.mostly
        severity = WARNING if rng.mostly < 1 else CRITICAL
        plan.append(PlannedExpectation("expect_column_values_to_be_between", kwargs, severity))
    return plan


def find_expectations_file(conf_dir: Path, dataset: str) -> Path | None:
    """``conf_dir/expectations/<dataset>.yaml`` when it exists, else None (the file is optional)."""
    path = Path(conf_dir) / "expectations" / f"{dataset}.yaml"
    return path if path.is_file() else None


def _check_columns(kwargs: dict[str, Any], allowed: Sequence[str]) -> str | None:
    """A message for the first kwarg naming a column the clean partition lacks, else None."""
    named = [(key, kwargs[key]) for key in _COLUMN_KWARGS if key in kwargs]
    for key in _COLUMN_LIST_KWARGS:
        value = kwargs.get(key)
        if value is not None and not isinstance(value, list):
            return f"{key} must be a list of column names, got {value!r}"
        named += [(key, col) for col in value or []]
    for key, col in named:
        if col not in allowed:
            close = difflib.get_close_matches(str(col), allowed, n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            return f"{key} {col!r} is not a column of the clean partition{hint}"
    return None


def load_expectations(path: Path, spec: DatasetSpec) -> list[PlannedExpectation]:
    """Read and check a hand-written expectations file (format: see the module docstring).

    Every entry is checked before any data is read: the expectation name, ``severity``,
    the columns its kwargs name and the kwargs themselves (by building the GX object).

    Args:
        path: the YAML file, usually from ``find_expectations_file``.
        spec: the dataset spec, whose clean partition the expectations run on.

    Returns:
        One ``PlannedExpectation`` per entry, in file order, with ``source`` = ``str(path)``.

    Raises:
        ConfigError: the file is missing or malformed; the message names the file, the
            entry index and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"expectations file {path} does not exist; create it or pass none")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML ({first}); fix the syntax") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise ConfigError(
            f"{path}: expected a mapping with an 'expectations' list, got {raw!r}; "
            "see conf/expectations/chicago_taxi.yaml for the format"
        )
    unknown = sorted(set(raw) - {"expectations"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}; only 'expectations' is read")
    allowed = list(dict.fromkeys((*spec.clean_columns, spec.label_name, SPLIT_COLUMN)))
    plan: list[PlannedExpectation] = []
    for index, entry in enumerate(raw["expectations"]):
        where = f"{path}: expectations[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{where} must be a mapping with 'expectation', 'kwargs', 'severity' and "
                f"'notes', got {entry!r}"
            )
        extra = sorted(set(entry) - set(_ENTRY_KEYS))
        if extra:
            raise ConfigError(
                f"{where}: unknown keys {extra}; an entry has {', '.join(_ENTRY_KEYS)} "
                "(expectation arguments go under 'kwargs')"
            )
        name = entry.get("expectation")
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"{where}: 'expectation' must name a GX expectation, e.g. "
                f"expect_column_values_to_be_in_set; got {name!r}"
            )
        where = f"{where} ({name})"
        try:
            cls = expectation_class(name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(
                f"{where}: 'kwargs' must map argument names to values, got {kwargs!r}"
            )
        reserved = sorted(set(kwargs) & set(RESERVED_KWARGS))
        if reserved:
            raise ConfigError(
                f"{where}: kwargs sets {reserved}; set severity and notes on the entry "
                "itself, next to 'kwargs' (meta, id and batch_id are the platform's)"
            )
        severity = entry.get("severity", CRITICAL)
        if severity not in SEVERITIES:
            raise ConfigError(
                f"{where}: severity must be 'critical' (stops the run) or 'warning' "
                f"(recorded, the run goes on), got {severity!r}"
            )
        notes = entry.get("notes")
        if notes is not None and not isinstance(notes, str):
            raise ConfigError(f"{where}: notes must be text, got {notes!r}")
        problem = _check_columns(kwargs, allowed)
        if problem:
            raise ConfigError(
                f"{where}: {problem}; use one of the spec's schema columns, the label "
                f"'{spec.label_name}' or '{SPLIT_COLUMN}'"
            )
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            raise ConfigError(f"{where}: min_value {low} is above max_value {high}; swap them")
        planned = PlannedExpectation(name, dict(kwargs), str(severity), str(path), notes)
        try:
            build_expectation(cls, planned)
        except Exception as exc:  # pydantic or GX rejecting the kwargs: report, do not run
            raise ConfigError(
                f"{where}: the kwargs do not fit {cls.__name__}: {kwargs_error(cls, exc)}; "
                "fix 'kwargs'"
            ) from exc
        plan.append(planned)
    return plan


def plan_suite_with_file(
    spec: DatasetSpec, expectations_file: Path | None = None
) -> list[PlannedExpectation]:
    """``plan_suite(spec)`` followed by the expectations of ``expectations_file`` (if any).

    Raises:
        ConfigError: the file is invalid (see ``load_expectations``) or repeats an
            expectation (same name and kwargs) of the spec or of itself.
    """
    plan = plan_suite(spec)
    if expectations_file is None:
        return plan
    for index, planned in enumerate(load_expectations(expectations_file, spec)):
        twin = next(
            (
                p
                for p in plan
                if p.expectation == planned.expectation and p.kwargs == planned.kwargs
            ),
            None,
        )
        if twin is not None:
            origin = (
                "is generated from spec.quality"
                if twin.source == SPEC_SOURCE
                else "appears earlier in the file"
            )
            raise ConfigError(
                f"{expectations_file}: expectations[{index}] ({planned.describe()}) {origin}; "
                "remove one of the two"
            )
        plan.append(planned)
    return plan
