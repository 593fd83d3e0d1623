"""Data quality: a Great Expectations suite generated from ``spec.quality``, plus an optional file.

``validate_partition`` runs the suite on a clean partition (a Spark DataFrame), renders
Data Docs HTML and returns a JSON-serializable summary; ``raise_for_critical`` turns
critical failures into a ``DataQualityError``. See docs/architecture.md, section 10.

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
(spec columns, the label, ``split``). Each result in the summary says where its
expectation came from (``source``: ``"spec"`` or the file's path).

great_expectations and pyspark are imported inside functions: DAG files import this
module and must stay cheap to parse.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from aimass.platform.errors import ConfigError, DataQualityError

if TYPE_CHECKING:
    from great_expectations.data_context.types.base import DataContextConfig
    from great_expectations.expectations.expectation import Expectation
    from pyspark.sql import SparkSession

    from aimass.data.spec import DatasetSpec

log = logging.getLogger(__name__)

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)
# ``source`` of the expectations generated from ``spec.quality``.
SPEC_SOURCE = "spec"
SUMMARY_FILE = "quality_summary.json"
# The clean job adds this column to every clean partition (jobs/clean/transforms.py).
SPLIT_COLUMN = "split"
# kwargs that name columns of the batch, checked against the clean partition's columns.
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list",)
# Expectation fields an entry sets at its own level, never inside ``kwargs``.
_RESERVED_KWARGS = ("severity", "notes", "meta", "id", "rendered_content", "batch_id")
_ENTRY_KEYS = ("expectation", "kwargs", "severity", "notes")
DATA_DOCS_DIR = "data_docs"
_SITE = "aimass"


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


def _kwargs_error(cls: type[Expectation], exc: Exception) -> str:
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
    accepted = [f for f in cls.__fields__ if f not in (*_RESERVED_KWARGS, "windows")]
    problems = "; ".join(f"{loc}: {msg}" for loc, msg in by_field.items())
    return f"{problems} ({cls.__name__} accepts {', '.join(accepted)})"


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
        reserved = sorted(set(kwargs) & set(_RESERVED_KWARGS))
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
            _build(cls, planned)
        except Exception as exc:  # pydantic or GX rejecting the kwargs: report, do not run
            raise ConfigError(
                f"{where}: the kwargs do not fit {cls.__name__}: {_kwargs_error(cls, exc)}; "
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


def _build(cls: type[Expectation], planned: PlannedExpectation) -> Expectation:
    from great_expectations.expectations.metadata_types import FailureSeverity

    return cls(
        **planned.kwargs,
        severity=FailureSeverity(planned.severity),
        notes=planned.notes,
        meta={"aimass_severity": planned.severity, "aimass_source": planned.source},
    )


def _gx_expectation(planned: PlannedExpectation) -> Expectation:
    return _build(expectation_class(planned.expectation), planned)


def _observed(result: dict[str, Any], exception: dict[str, Any] | None) -> Any:
    if exception and exception.get("raised_exception"):
        return {"exception": str(exception.get("exception_message"))}
    if "observed_value" in result:
        return result["observed_value"]
    keys = ("element_count", "unexpected_count", "unexpected_percent", "partial_unexpected_list")
    return {k: result[k] for k in keys if k in result}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _failure_message(planned: PlannedExpectation, observed: Any) -> str:
    if isinstance(observed, dict) and "unexpected_count" in observed:
        pct = observed.get("unexpected_percent")
        pct_text = f" ({pct:.2f}%)" if isinstance(pct, int | float) else ""
        detail = f"{observed['unexpected_count']} of {observed.get('element_count')} rows unexpected{pct_text}"
        sample = observed.get("partial_unexpected_list")
        if sample:
            detail += f", e.g. {sample[:5]}"
    else:
        detail = f"observed {observed}"
    origin = "" if planned.source == SPEC_SOURCE else f" [{planned.source}]"
    return f"{planned.describe()}: {detail}{origin}"


def validate_partition(
    spec: DatasetSpec,
    partition: Path,
    report_dir: Path,
    spark: SparkSession | None = None,
    expectations_file: Path | None = None,
) -> dict[str, Any]:
    """Run the suite from ``spec.quality`` (and the expectations file) and render Data Docs.

    Args:
        spec: the dataset spec.
        partition: the clean Parquet partition (``Settings.clean_partition``).
        report_dir: where the GX project (``gx/``), ``data_docs/`` and
            ``quality_summary.json`` are written; a rerun replaces them.
        spark: an existing session; default: ``aimass.platform.spark.get_session`` (left running).
        expectations_file: hand-written expectations added to the generated ones
            (``find_expectations_file``); None: the generated suite only. It is checked
            before the partition is read.

    Returns:
        ``{"success", "critical_failures", "warnings", "results", "data_docs"}``, where
        ``success`` is true when no critical expectation failed, ``critical_failures`` and
        ``warnings`` are messages naming the failed expectations, ``results`` has one
        ``{"expectation", "column", "severity", "source", "success", "observed"}`` per
        expectation (``source``: ``"spec"`` or the expectations file's path) and
        ``data_docs`` is the path of the Data Docs ``index.html``.

    Raises:
        ConfigError: the partition does not exist or the expectations file is invalid.
    """
    partition = Path(partition)
    report_dir = Path(report_dir)
    plan = plan_suite_with_file(spec, expectations_file)
    if expectations_file is not None:
        log.info(
            "quality suite: %d expectations from spec.quality, %d from %s",
            sum(1 for p in plan if p.source == SPEC_SOURCE),
            sum(1 for p in plan if p.source != SPEC_SOURCE),
            expectations_file,
        )
    if not partition.exists():
        raise ConfigError(
            f"clean partition {partition} does not exist; run the clean stage for this ds first"
        )
    # No usage statistics leave the machine, and GX's per-store INFO chatter stays out
    # of task logs unless someone asked for it.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        gx_log.setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if spark is None:
        from aimass.platform.spark import get_session

        spark = get_session(app_name="aimass-quality")
    df = spark.read.parquet(str(partition))

    report_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = report_dir / DATA_DOCS_DIR
    for stale in (report_dir / "gx", docs_dir):
        shutil.rmtree(stale, ignore_errors=True)
    context = gx.get_context(mode="file", project_root_dir=str(report_dir))
    # tqdm bars on stderr only clutter task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # A file context's typed config is its DataContextConfig.
    project_config = cast("DataContextConfig", context.get_config())
    for site in list(project_config.data_docs_sites or {}):
        context.delete_data_docs_site(site)
    context.add_data_docs_site(
        _SITE,
        {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir.resolve()),
            },
        },
    )

    batch_definition = (
        context.data_sources.add_spark(name="spark")
        .add_dataframe_asset(name=spec.name)
        .add_batch_definition_whole_dataframe("clean_partition")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{spec.name}_clean"))
    # The saved suite gives each expectation an id that its result carries back.
    by_id: dict[str, PlannedExpectation] = {}
    for planned in plan:
        added = suite.add_expectation(_gx_expectation(planned))
        if added.id:
            by_id[added.id] = planned
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec.name}_clean", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{spec.name}_clean",
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="data_docs", site_names=[_SITE])],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    log.info("validating %s with %d expectations", partition, len(plan))
    run = checkpoint.run(batch_parameters={"dataframe": df})
    (validation_result,) = run.run_results.values()

    results: list[dict[str, Any]] = []
    critical: list[str] = []
    warnings: list[str] = []
    by_description = {p.describe(): p for p in plan}
    for res in validation_result.results:
        config = res.expectation_config
        if config is None:
            raise RuntimeError(
                f"Great Expectations returned a result without its expectation: {res}"
            )
        meta = config.meta or {}
        planned = PlannedExpectation(
            config.type,
            {k: v for k, v in config.kwargs.items() if k != "batch_id"},
            meta.get("aimass_severity", CRITICAL),
            meta.get("aimass_source", SPEC_SOURCE),
        )
        planned = by_id.get(config.id or "") or by_description.get(planned.describe(), planned)
        observed = _jsonable(_observed(res.result or {}, res.exception_info))
        results.append(
            {
                "expectation": planned.expectation,
                "column": planned.column,
                "severity": planned.severity,
                "source": planned.source,
                "success": bool(res.success),
                "observed": observed,
            }
        )
        if not res.success:
            message = _failure_message(planned, observed)
            (critical if planned.severity == CRITICAL else warnings).append(message)

    index = docs_dir / "index.html"
    if not index.exists():
        context.build_data_docs(site_names=[_SITE])
    summary: dict[str, Any] = {
        "success": not critical,
        "critical_failures": critical,
        "warnings": warnings,
        "results": results,
        "data_docs": str(index),
    }
    (report_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info(
        "quality of %s: %s (%d critical failures, %d warnings); data docs %s",
        partition,
        "passed" if not critical else "FAILED",
        len(critical),
        len(warnings),
        index,
    )
    for message in (*critical, *warnings):
        log.warning("quality: %s", message)
    return summary


def raise_for_critical(summary: dict[str, Any]) -> None:
    """Raise DataQualityError naming each failed critical expectation of ``summary``."""
    failures = summary.get("critical_failures") or []
    if not failures:
        return
    lines = "\n  - ".join(failures)
    sources = {
        r.get("source", SPEC_SOURCE)
        for r in summary.get("results") or []
        if r.get("severity") == CRITICAL and not r.get("success")
    } or {SPEC_SOURCE}
    places = ["spec.quality in the dataset spec"] if SPEC_SOURCE in sources else []
    places += [f"the expectation in {s}" for s in sorted(sources - {SPEC_SOURCE})]
    raise DataQualityError(
        f"{len(failures)} critical data-quality expectation(s) failed:\n  - {lines}\n"
        f"See the Data Docs at {summary.get('data_docs')}; fix the data (or the clean job's "
        f"rules) or, if the data is right, relax {' or '.join(places)}"
    )
