"""Data quality: a Great Expectations suite generated from ``spec.quality``.

``validate_partition`` runs the suite on a clean partition (a Spark DataFrame), renders
Data Docs HTML and returns a JSON-serializable summary; ``raise_for_critical`` turns
critical failures into a ``DataQualityError``. See docs/architecture.md, section 10.

great_expectations and pyspark are imported inside functions: DAG files import this
module and must stay cheap to parse.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aimass.errors import ConfigError, DataQualityError

if TYPE_CHECKING:
    from great_expectations.data_context.types.base import DataContextConfig
    from pyspark.sql import SparkSession

    from aimass.spec import DatasetSpec

log = logging.getLogger(__name__)

CRITICAL = "critical"
WARNING = "warning"
SUMMARY_FILE = "quality_summary.json"
DATA_DOCS_DIR = "data_docs"
_SITE = "aimass"


@dataclass(frozen=True)
class PlannedExpectation:
    """One expectation of the generated suite, before it becomes a GX object."""

    expectation: str  # snake_case GX name, e.g. expect_column_values_to_not_be_null
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = CRITICAL

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
    - the label -> values in {0, 1} (critical);
    - ``ranges`` -> between min and max with ``mostly``: warning when mostly < 1, else critical.
    """
    plan = [
        PlannedExpectation(
            "expect_table_row_count_to_be_between", {"min_value": spec.quality.min_rows}
        )
    ]
    for col in dict.fromkeys((*spec.quality.not_null, spec.label_name)):
        plan.append(PlannedExpectation("expect_column_values_to_not_be_null", {"column": col}))
    plan.append(
        PlannedExpectation(
            "expect_column_values_to_be_in_set", {"column": spec.label_name, "value_set": [0, 1]}
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


def _gx_expectation(planned: PlannedExpectation) -> Any:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.metadata_types import FailureSeverity

    classes = {
        "expect_table_row_count_to_be_between": gxe.ExpectTableRowCountToBeBetween,
        "expect_column_values_to_not_be_null": gxe.ExpectColumnValuesToNotBeNull,
        "expect_column_values_to_be_in_set": gxe.ExpectColumnValuesToBeInSet,
        "expect_column_values_to_be_between": gxe.ExpectColumnValuesToBeBetween,
    }
    return classes[planned.expectation](
        **planned.kwargs,
        severity=FailureSeverity(planned.severity),
        meta={"aimass_severity": planned.severity},
    )


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
    return f"{planned.describe()}: {detail}"


def validate_partition(
    spec: DatasetSpec,
    partition: Path,
    report_dir: Path,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Run the suite from ``spec.quality`` on a clean partition and render Data Docs.

    Args:
        spec: the dataset spec.
        partition: the clean Parquet partition (``Settings.clean_partition``).
        report_dir: where the GX project (``gx/``), ``data_docs/`` and
            ``quality_summary.json`` are written; a rerun replaces them.
        spark: an existing session; default: ``aimass.spark.get_session`` (left running).

    Returns:
        ``{"success", "critical_failures", "warnings", "results", "data_docs"}``, where
        ``success`` is true when no critical expectation failed, ``critical_failures`` and
        ``warnings`` are messages naming the failed expectations, ``results`` has one
        ``{"expectation", "column", "severity", "success", "observed"}`` per expectation
        and ``data_docs`` is the path of the Data Docs ``index.html``.

    Raises:
        ConfigError: the partition does not exist.
    """
    partition = Path(partition)
    report_dir = Path(report_dir)
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
        from aimass.spark import get_session

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
    plan = plan_suite(spec)
    suite = context.suites.add(gx.ExpectationSuite(name=f"{spec.name}_clean"))
    for planned in plan:
        suite.add_expectation(_gx_expectation(planned))
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
        planned = PlannedExpectation(
            config.type,
            {k: v for k, v in config.kwargs.items() if k != "batch_id"},
            (config.meta or {}).get("aimass_severity", CRITICAL),
        )
        planned = by_description.get(planned.describe(), planned)
        observed = _jsonable(_observed(res.result or {}, res.exception_info))
        results.append(
            {
                "expectation": planned.expectation,
                "column": planned.column,
                "severity": planned.severity,
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
    raise DataQualityError(
        f"{len(failures)} critical data-quality expectation(s) failed:\n  - {lines}\n"
        f"See the Data Docs at {summary.get('data_docs')}; fix the data (or the clean job's "
        "rules) or, if the data is right, relax spec.quality in the dataset spec"
    )
