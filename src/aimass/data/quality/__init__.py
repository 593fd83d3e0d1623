"""Data quality: a Great Expectations suite generated from ``spec.quality``, plus an optional file.

``validate_partition`` runs the suite on a clean partition (a Spark DataFrame), renders
Data Docs HTML and returns a JSON-serializable summary; ``raise_for_critical`` turns
critical failures into a ``DataQualityError``. See docs/architecture.md, section 10.

The modules, by concern:

- ``expectations``: one planned expectation and the GX object it becomes;
- ``suite``: the suite from the spec and the hand-written ``conf/expectations/<dataset>.yaml``
  (its format is in that module's docstring), checked before any data is read;
- ``validate``: running the suite, Data Docs, the summary and ``raise_for_critical``.

great_expectations and pyspark are imported inside functions: DAG files import this
package and must stay cheap to parse. Callers import every name from
``aimass.data.quality`` itself.
"""

from __future__ import annotations

from aimass.data.quality.expectations import (
    CRITICAL,
    RESERVED_KWARGS,
    SEVERITIES,
    SPEC_SOURCE,
    WARNING,
    PlannedExpectation,
    build_expectation,
    expectation_class,
    gx_expectation,
)
from aimass.data.quality.suite import (
    SPLIT_COLUMN,
    find_expectations_file,
    load_expectations,
    plan_suite,
    plan_suite_with_file,
)
from aimass.data.quality.validate import (
    DATA_DOCS_DIR,
    SUMMARY_FILE,
    raise_for_critical,
    validate_partition,
)

__all__ = [
    "CRITICAL",
    "DATA_DOCS_DIR",
    "RESERVED_KWARGS",
    "SEVERITIES",
    "SPEC_SOURCE",
    "SPLIT_COLUMN",
    "SUMMARY_FILE",
    "WARNING",
    "PlannedExpectation",
    "build_expectation",
    "expectation_class",
    "find_expectations_file",
    "gx_expectation",
    "load_expectations",
    "plan_suite",
    "plan_suite_with_file",
    "raise_for_critical",
    "validate_partition",
]
