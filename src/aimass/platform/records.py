"""Typed stage records: what each stage hands the next and what it leaves behind.

Every stage of a run writes one record, a small frozen pydantic model with a schema version,
as JSON in the run's own report folder (``reports/<dataset>/ds=<ds>/<run>/records/``), so a
second run of the same day keeps its own. Rollbacks are records too, one file each. The stages
pass the same records to each other through XCom (``dump()``; ``of()`` reads one back), and
:class:`RecordStore` is the one reader for everything that shows them (``aimass runs``, the
console, alerts): nothing scans the lake or parses logs to find out what happened.

Adding a field is cheap (old files read with its default); changing what a field means needs a
new ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aimass.platform.errors import ConfigError
from aimass.platform.settings import safe_name

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECORDS_DIR = "records"
ROLLBACKS_DIR = "rollbacks"
# Parsed records by (path, type), with the (mtime_ns, size) they were read at.
_CACHE: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}
_CACHE_SIZE = 50_000


class Record(BaseModel):
    """A stage's record: frozen, versioned, JSON on disk and in XCom."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    kind: ClassVar[str] = "record"
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, value: Self | Mapping[str, Any]) -> Self:
        """The record itself, or one read back from its ``dump()`` (an XCom value)."""
        return value if isinstance(value, cls) else cls.model_validate(dict(value))

    def dump(self) -> dict[str, Any]:
        """JSON-able dict (the XCom value and the file's content)."""
        return self.model_dump(mode="json")

    def write(self, folder: Path, name: str | None = None) -> Path:
        """Write the record atomically as ``<folder>/<name or kind>.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name or self.kind}.json"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.dump(), out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: Path) -> Self:
        """A record from its file; a newer schema than this code knows is an error.

        Records are written once (atomically) and never edited in place, so a parsed record
        is kept while the file's size and modification time stay the same: a console page
        over 500 runs reads only what changed since the last view.
        """
        stat = path.stat()
        key = (str(path), cls.__name__)
        cached = _CACHE.get(key)
        if cached is not None and cached[0] == (stat.st_mtime_ns, stat.st_size):
            return cast(Self, cached[1])
        record = cls._parse(path)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))  # the oldest entry; dicts keep insertion order
        _CACHE[key] = ((stat.st_mtime_ns, stat.st_size), record)
        return record

    @classmethod
    def _parse(cls, path: Path) -> Self:
        raw = path.read_bytes()
        try:  # the fast path: pydantic parses and validates the JSON in one pass
            record = cls.model_validate_json(raw)
            if record.schema_version <= SCHEMA_VERSION:
                return record
        except ValidationError:
            pass
        data = json.loads(raw)
        if int(data.get("schema_version", 1)) > SCHEMA_VERSION:
            raise ConfigError(
                f"{path} has record schema {data['schema_version']}, newer than this "
                f"AI Mass reads ({SCHEMA_VERSION}); upgrade AI Mass to read it"
            )
        return cls.model_validate(data)


class RunRequest(Record):
    """A checked run: its params and where every stage of it reads and writes."""

    kind: ClassVar[str] = "request"
    dataset: str
    ds: str
    input_path: str
    epochs: int | None = None
    workers: int
    min_auc: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    use_tuned_hparams: bool = True
    mixed_precision: bool = False
    force_deploy: bool = False
    force_reason: str = ""
    dag_id: str
    run_id: str
    run_key: str
    # The day's clean partition; the batch this run cleans into (and its quarantine); the
    # view file that pins the batches it trains and evaluates on (aimass.data.lake).
    clean_dir: str
    quarantine_dir: str
    report_dir: str
    clean_summary: str
    run_dir: str
    batch_dir: str = ""
    view_file: str = ""
    clean_args: str = ""
    landed_files: list[str] = Field(default_factory=list)
    trigger: dict[str, Any] = Field(default_factory=lambda: {"kind": "schedule_or_manual"})
    requested_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def records_dir(self) -> Path:
        return Path(self.report_dir) / RECORDS_DIR

    @property
    def new_batch(self) -> Path:
        """What this run cleaned: its batch (the day's folder for a run without batches)."""
        return Path(self.batch_dir or self.clean_dir)

    @property
    def training_data(self) -> Path:
        """What this run trains and evaluates on: its pinned view once written, else the day."""
        if self.view_file and Path(self.view_file).is_file():
            return Path(self.view_file)
        return Path(self.clean_dir)


class CleanResult(Record):
    """What the Spark clean job did: rows in = clean + quarantined + duplicates."""

    kind: ClassVar[str] = "clean"
    dataset: str
    ds: str
    input: str = ""
    inputs: list[str] = Field(default_factory=list)
    format: str = ""
    rows_in: int
    rows_clean: int
    rows_quarantined: int
    rows_duplicate: int = 0
    rows_train: int = 0
    rows_holdout: int = 0
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    # Up to 3 rows per reason kind: {kind: [{"raw": line (cut to 500 chars), "reason": ...}]}.
    quarantine_samples: dict[str, list[dict[str, str]]] = Field(default_factory=dict)
    duplicates: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class QualityResult(Record):
    """The Great Expectations suite's outcome on the clean partition."""

    kind: ClassVar[str] = "quality"
    success: bool
    expectations: int
    passed: int
    critical_failures: list[Any] = Field(default_factory=list)
    warnings: list[Any] = Field(default_factory=list)
    data_docs: str | None = None
    results: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def from_gx(cls, summary: Mapping[str, Any]) -> QualityResult:
        """The record of ``aimass.data.quality.validate_partition``'s summary."""
        results = summary.get("results", [])
        return cls(
            success=bool(summary.get("success")),
            expectations=len(results),
            passed=sum(1 for r in results if r.get("success")),
            critical_failures=summary.get("critical_failures", []),
            warnings=summary.get("warnings", []),
            data_docs=summary.get("data_docs"),
            results=[
                {
                    k: r.get(k)
                    for k in ("expectation", "column", "severity", "source", "success", "observed")
                }
                for r in results
            ],
        )


class DataChecks(Record):
    """``validate_quality``'s hand-over: the clean counts and the quality outcome."""

    kind: ClassVar[str] = "checks"
    clean: CleanResult
    quality: QualityResult


class DriftResult(Record):
    """The new batch against the champion's reference."""

    kind: ClassVar[str] = "drift"
    status: str
    reason: str | None = None
    action: str | None = None
    critical_features: list[str] = Field(default_factory=list)
    warning_features: list[str] = Field(default_factory=list)
    schema_changes: list[str] = Field(default_factory=list)
    rows_reference: int | None = None
    rows_current: int | None = None
    report_json: str | None = None
    report_html: str | None = None
    champion_version: str | None = None


class TrainingResult(Record):
    """A trained candidate: its MLflow run and registry version."""

    kind: ClassVar[str] = "training"
    mlflow_run_id: str
    experiment_id: str
    mlflow_run_url: str
    registry_version: str
    saved_model_dir: str
    workers: int
    hparams_source: str
    train_seconds: float


class GateDecision(Record):
    """The explained gate decision for a candidate against the champion."""

    kind: ClassVar[str] = "gate"
    passed: bool
    deploy: bool
    verdict: str
    headline: str = ""
    candidate: dict[str, Any] = Field(default_factory=dict)
    champion: dict[str, Any] | None = None
    checks: list[dict[str, Any]] = Field(default_factory=list)
    slices: list[dict[str, Any]] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    overrides: dict[str, Any] = Field(default_factory=dict)
    min_slice_rows: int = 0
    forced: bool = False
    force_reason: str | None = None
    forced_by: str | None = None
    dataset: str
    ds: str
    run_id: str
    champion_version: str | None = None
    candidate_version: str
    task: str
    primary_metric: str
    threshold: float | None = None
    mlflow_run_url: str | None = None
    report_json: str | None = None
    report_html: str | None = None
    approval_md: str = ""
    # compress_candidate's choice and every variant's figures (None: no compression stage).
    compression: dict[str, Any] | None = None


class CompressionResult(Record):
    """Compressed variants of the candidate, their figures against it and what deploys."""

    kind: ClassVar[str] = "compression"
    enabled: bool = True
    candidate_version: str
    chosen: str | None = None  # the variant deployed; None: the uncompressed candidate
    why: str = ""
    registry_version: str  # what deploy_model rolls out: the variant's version or the candidate's
    saved_model_dir: str
    candidate: dict[str, Any] = Field(default_factory=dict)
    variants: list[dict[str, Any]] = Field(default_factory=list)
    bars: dict[str, Any] = Field(default_factory=dict)


class Deployment(Record):
    """A rollout that made the candidate stable and champion.

    The rollout's smoke answers (``output``, ``rest_instance``, …) ride along as extra fields.
    """

    kind: ClassVar[str] = "deployment"
    model_config = ConfigDict(frozen=True, extra="allow")
    serving_version: int
    previous_version: int | None = None
    registry_version: str
    previous_champion: str | None = None
    infra_validation: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None


class Lineage(Record):
    """Where a served model came from: landed files → partition → DAG run → MLflow run →
    registry version → serving version."""

    kind: ClassVar[str] = "lineage"
    landed_files: list[str] = Field(default_factory=list)
    input_path: str = ""
    partition: str = ""
    # The batch folders the version learnt from (the run's pinned view); empty for a run
    # before batches existed, which learnt from the whole partition.
    batches: list[str] = Field(default_factory=list)
    dag_run: str = ""
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None
    registry_version: str | None = None
    serving_version: int | None = None

    @classmethod
    def of_run(
        cls, run: RunRequest, trained: TrainingResult | None, deployed: Deployment | None
    ) -> Lineage:
        """The chain of one run: its request, the version it trained and where that serves."""
        return cls(
            landed_files=run.landed_files,
            input_path=run.input_path,
            partition=run.clean_dir,
            batches=_pinned_batches(run.view_file),
            dag_run=run.run_key,
            mlflow_run_id=None if trained is None else trained.mlflow_run_id,
            mlflow_run_url=None if trained is None else trained.mlflow_run_url,
            # What serves: a compressed variant's own version when one was deployed.
            registry_version=next((r.registry_version for r in (deployed, trained) if r), None),
            serving_version=None if deployed is None else deployed.serving_version,
        )


class RunSummary(Record):
    """A run's outcome in one place, with its lineage and links."""

    kind: ClassVar[str] = "summary"
    dataset: str
    ds: str
    run_id: str
    dag_id: str = "aimass_retrain"
    outcome: str
    trigger: dict[str, Any] | None = None
    clean: CleanResult | None = None
    quality: QualityResult | None = None
    drift: DriftResult | None = None
    model: TrainingResult | None = None
    gate: dict[str, Any] | None = None
    deployment: Deployment | None = None
    approval: dict[str, Any] | None = None
    lineage: Lineage
    links: dict[str, str | None] = Field(default_factory=dict)
    requested_at: str = ""
    finished_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


class RollbackRecord(Record):
    """A rollback: which versions moved, who asked and why."""

    kind: ClassVar[str] = "rollback"
    dataset: str
    version: int
    stable: int
    reason: str
    who: str
    serving_version: int
    rolled_back_from: int
    registry_version: str | None = None
    previous_champion: str | None = None
    seconds: float | None = None
    marker: dict[str, Any] = Field(default_factory=dict)
    at: str


class RecordStore:
    """The one reader of the records under a reports folder (``Settings.reports_dir``)."""

    def __init__(self, reports_dir: Path) -> None:
        self.reports_dir = Path(reports_dir)

    def datasets(self) -> list[str]:
        """Datasets that have any run or rollback record."""
        if not self.reports_dir.is_dir():
            return []
        return sorted(p.name for p in self.reports_dir.iterdir() if p.is_dir())

    def run_folders(self, dataset: str) -> Iterator[Path]:
        """Each run's records folder of ``dataset``, any day."""
        yield from self.reports_dir.glob(f"{dataset}/ds=*/*/{RECORDS_DIR}")

    def runs(self, dataset: str) -> list[RunSummary | RunRequest]:
        """Every run of ``dataset``, newest first: its summary, or its request while it has
        none yet (running, or stopped before ``publish_summary``)."""
        found: list[RunSummary | RunRequest] = []
        for folder in self.run_folders(dataset):
            summary = folder / f"{RunSummary.kind}.json"
            request = folder / f"{RunRequest.kind}.json"
            if summary.exists():
                found.append(RunSummary.read(summary))
            elif request.exists():
                found.append(RunRequest.read(request))
        return sorted(found, key=_started_at, reverse=True)

    def run(self, dataset: str, run_id: str) -> dict[str, Record]:
        """Every record of one run, by kind (``request``, ``checks``, ``gate``, …)."""
        for folder in self.run_folders(dataset):
            if folder.parent.name == safe_name(run_id):
                return {p.stem: _read_any(p) for p in sorted(folder.glob("*.json"))}
        raise ConfigError(f"no records of run {run_id!r} of {dataset} under {self.reports_dir}")

    def run_records(self, dataset: str) -> list[dict[str, Record]]:
        """Every run's records by kind, newest run first (runs without a request last)."""
        runs = []
        for folder in self.run_folders(dataset):
            records = {p.stem: _read_any(p) for p in folder.glob("*.json") if p.stem in KINDS}
            if records:
                request = records.get(RunRequest.kind)
                runs.append((getattr(request, "requested_at", ""), folder.parent.name, records))
        return [records for *_, records in sorted(runs, key=lambda r: r[:2], reverse=True)]

    def decisions(self, dataset: str) -> list[GateDecision]:
        """Every gate decision of ``dataset``, newest run first."""
        return self._each(dataset, GateDecision)

    def trainings(self, dataset: str) -> list[TrainingResult]:
        """Every trained candidate (registry version) of ``dataset``, newest run first."""
        return self._each(dataset, TrainingResult)

    def deployments(self, dataset: str) -> list[Deployment]:
        """Every deployment of ``dataset``, newest run first."""
        return self._each(dataset, Deployment)

    def rollbacks(self, dataset: str) -> list[RollbackRecord]:
        """Every rollback of ``dataset``, newest first."""
        folder = self.reports_dir / dataset / ROLLBACKS_DIR
        found = [RollbackRecord.read(p) for p in folder.glob("*.json")] if folder.is_dir() else []
        return sorted(found, key=lambda r: r.at, reverse=True)

    def _each(self, dataset: str, cls: type[Any]) -> list[Any]:
        pairs = []
        for folder in self.run_folders(dataset):
            path = folder / f"{cls.kind}.json"
            if path.exists():
                started = folder / f"{RunRequest.kind}.json"
                when = RunRequest.read(started).requested_at if started.exists() else ""
                pairs.append((when, cls.read(path)))
        return [record for _, record in sorted(pairs, key=lambda p: p[0], reverse=True)]


KINDS: dict[str, type[Record]] = {
    cls.kind: cls
    for cls in (
        RunRequest,
        DataChecks,
        DriftResult,
        TrainingResult,
        GateDecision,
        CompressionResult,
        Deployment,
        RunSummary,
        RollbackRecord,
    )
}


def _read_any(path: Path) -> Record:
    cls = KINDS.get(path.stem)
    if cls is None:
        raise ConfigError(f"{path} is no known record (known: {sorted(KINDS)})")
    return cls.read(path)


def _started_at(record: RunSummary | RunRequest) -> str:
    return record.requested_at


def _pinned_batches(view_file: str) -> list[str]:
    """The batch folders a run's view file pins (``aimass.data.lake.write_view``)."""
    if not view_file or not Path(view_file).is_file():
        return []
    return [str(b) for b in json.loads(Path(view_file).read_text(encoding="utf-8"))["batches"]]
