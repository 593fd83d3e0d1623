"""Running the quality suite on a clean partition: results, Data Docs and the verdict.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aimass.data.quality.expectations import (
    CRITICAL,
    SPEC_SOURCE,
    PlannedExpectation,
    gx_expectation,
)
from aimass.data.quality.suite import plan_suite_with_file
from aimass.platform.errors import ConfigError, DataQualityError

if TYPE_CHECKING:
    from great_expectations.data_context.types.base import DataContextConfig
    from pyspark.sql import SparkSession

    from aimass.data.spec import DatasetSpec

log = logging.getLogger(__name__)

SUMMARY_FILE = "quality_summary.json"
DATA_DOCS_DIR = "data_docs"
_SITE = "aimass"


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
        added = suite.add_expectation(gx_expectation(planned))
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
