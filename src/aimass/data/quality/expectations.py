"""One expectation of the quality suite: planned as plain data, then built as a GX object.

A :class:`PlannedExpectation` names a Great Expectations 1.x expectation by its snake_case
name; :func:`expectation_class` finds its class and :func:`build_expectation` builds it with
the platform's severity and source in ``meta``. great_expectations is imported inside
functions: DAG files import this package and must stay cheap to parse.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aimass.platform.errors import ConfigError

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)
# ``source`` of the expectations generated from ``spec.quality``.
SPEC_SOURCE = "spec"
# Expectation fields an entry sets at its own level, never inside ``kwargs``.
RESERVED_KWARGS = ("severity", "notes", "meta", "id", "rendered_content", "batch_id")


@dataclass(frozen=True)
class PlannedExpectation:
    """One expectation of the suite, before it becomes a GX object."""

    expectation: str  # snake_case GX name, e.g. expect_column_values_to_not_be_null
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = CRITICAL
    # Where it comes from: SPEC_SOURCE, or the path of the expectations file.
    source: str = SPEC_SOURCE
    notes: str | None = None

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.expectation}({args})"


@functools.cache
def _expectation_classes() -> dict[str, type[Expectation]]:
    """Every expectation class of ``great_expectations.expectations``, by snake_case name."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.expectation import Expectation

    classes: dict[str, type[Expectation]] = {}
    for obj in vars(gxe).values():
        if isinstance(obj, type) and issubclass(obj, Expectation):
            # The class's own name, e.g. ExpectColumnKLDivergenceToBeLessThan ->
            # expect_column_kl_divergence_to_be_less_than (the abstract base has none).
            name = getattr(obj, "expectation_type", "")
            if name:
                classes[name] = obj
    return classes


def expectation_class(name: str) -> type[Expectation]:
    """The GX class of a snake_case expectation name.

    Raises:
        ConfigError: no such expectation; the message lists close names.
    """
    classes = _expectation_classes()
    if name in classes:
        return classes[name]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    close = difflib.get_close_matches(snake, classes, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ConfigError(
        f"unknown expectation '{name}'{hint}; use the snake_case name of a class in "
        "great_expectations.expectations, e.g. expect_column_values_to_be_in_set"
    )


def kwargs_error(cls: type[Expectation], exc: Exception) -> str:
    """One line for an exception raised while building ``cls`` (pydantic or other)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return " ".join(str(exc).split())
    # pydantic reports one error per member of a Union; the first says the most.
    by_field: dict[str, str] = {}
    for err in errors():
        loc = ".".join(str(part) for part in err.get("loc", ())) or "kwargs"
        msg = str(err.get("msg", ""))
        if msg == "extra fields not permitted":
            msg = "unknown argument"
        by_field.setdefault(loc, msg)
    accepted = [f for f in cls.__fields__ if f not in (*RESERVED_KWARGS, "windows")]
    problems = "; ".join(f"{loc}: {msg}" for loc, msg in by_field.items())
    return f"{problems} ({cls.__name__} accepts {', '.join(accepted)})"


def build_expectation(cls: type[Expectation], planned: PlannedExpectation) -> Expectation:
    """``planned`` as an instance of ``cls``, its severity and source kept in ``meta``.

    Raises:
        Exception: whatever GX (pydantic) raises for kwargs that do not fit ``cls``.
    """
    from great_expectations.expectations.metadata_types import FailureSeverity

    return cls(
        **planned.kwargs,
        severity=FailureSeverity(planned.severity),
        notes=planned.notes,
        meta={"aimass_severity": planned.severity, "aimass_source": planned.source},
    )


def gx_expectation(planned: PlannedExpectation) -> Expectation:
    """``planned`` as the GX object of the expectation it names."""
    return build_expectation(expectation_class(planned.expectation), planned)
