"""Console test helpers: a realistic history of records on disk, and Airflow's auth set up once.

``seed_history`` writes what months of nightly retraining leave behind, through the real
record classes and writers: a RunRequest, DataChecks and RunSummary per run, a TrainingResult,
DriftResult and GateDecision (decided by the real gate on the spec's bars) per trained
version, a Deployment per deployed one, rollback records, the model server's config with its
labels, the landing ledger, the alert store and the monitor's newest drift report. It returns a
:class:`History` with the figures a test compares pages against. Everything follows from the
arguments (``now`` included), so two calls with the same ones write the same files.

``airflow_auth`` does what every console route needs from Airflow: a migrated metadata
database (the auth dependency checks the ``revoked_token`` table), a JWT secret and the simple
auth manager with an ``admin`` and a ``viewer``; :class:`AuthKit` then hands out their tokens
and forged ones.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aimass.platform.settings import REPO_ROOT, Settings

# ------------------------------------------------------------------------------- history

ROLLBACK_EVERY = 12  # a deployment whose serving version is a multiple of this is rolled back
REJECT_EVERY, REJECT_AT = 5, 3  # version k is rejected when k % 5 == 3 ...
FORCE_EVERY, FORCE_AT = 15, 13  # ... and forced through anyway when k % 15 == 13
SKILL_DROP = 0.6  # how much worse a rejected candidate is (see _metric)
ALERT_DAYS = 30
OTHER_DATASET = "palmer_penguins"  # some alerts name another dataset; some name none
SLICE_VALUES = {
    "payment_type": ["Credit Card", "Cash", "No Charge", "Unknown"],
    "island": ["Biscoe", "Dream", "Torgersen"],
    "sex": ["female", "male"],
    "species": ["Adelie", "Gentoo", "Chinstrap"],
}
SLICE_ROWS = [1900, 1450, 40, 12]
# metric -> (value at skill 0, change per unit of skill); skill runs ~0.3..0.9
METRIC_CURVES = {
    "auc": (0.93, 0.05),
    "accuracy": (0.88, 0.08),
    "precision": (0.80, 0.10),
    "recall": (0.78, 0.10),
    "log_loss": (0.35, -0.15),
    "ece": (0.05, -0.03),
    "rmse": (380.0, -60.0),
    "mae": (300.0, -50.0),
    "r2": (0.75, 0.15),
}


@dataclass(frozen=True)
class RunInfo:
    """One seeded run, as the data page and the run tab show it."""

    run_id: str
    ds: str
    dag_id: str
    requested_at: str
    rows_in: int
    rows_clean: int
    rows_quarantined: int
    rows_duplicate: int
    registry_version: str | None = None
    outcome: str | None = None  # None: no summary yet (the run is in progress)
    landed_files: int = 0


@dataclass(frozen=True)
class AlertInfo:
    ts: datetime
    kind: str
    dataset: str | None


@dataclass
class History:
    """What ``seed_history`` wrote, as the figures a page must show."""

    dataset: str
    now: datetime
    runs: list[RunInfo]  # oldest first
    verdicts: dict[str, str]  # registry version -> passed / rejected / forced
    deployed: dict[str, int]  # registry version -> serving version
    champion: str  # registry version
    champion_serving: int
    labels: dict[str, int]  # stable / previous / canary -> serving version
    serving_versions: list[int]  # loaded, ascending
    rollbacks: int
    ledger_total: int
    backlog: list[str]
    alerts: list[AlertInfo]  # oldest first
    monitor_run: str  # the monitor's newest check (folder name)
    monitor_status: str
    drift_features: list[str]
    report_files: list[str]  # relative to the reports folder; each exists
    quarantine_totals: Counter[str] = field(default_factory=Counter)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> holdout
    forced: list[str] = field(default_factory=list)  # registry versions forced through

    @property
    def versions(self) -> int:
        return len(self.verdicts)

    @property
    def newest_version(self) -> str:
        return max(self.verdicts, key=int)

    @property
    def last_run(self) -> RunInfo:
        return self.runs[-1]

    def run(self, run_id: str) -> RunInfo:
        return next(r for r in self.runs if r.run_id == run_id)

    def trained_runs(self) -> list[RunInfo]:
        return [r for r in self.runs if r.registry_version is not None]

    def alert_count(
        self, *, kind: str | None = None, dataset: str | None = None, hours: int | None = None
    ) -> int:
        """Alerts of ``kind`` for ``dataset`` in the last ``hours`` (None: any), counted back
        from the clock, as the console counts (a module's tests may run long after seeding)."""
        start = None if hours is None else datetime.now(UTC) - timedelta(hours=hours)
        return sum(
            1
            for a in self.alerts
            if (kind is None or a.kind == kind)
            and (dataset is None or a.dataset == dataset)
            and (start is None or a.ts >= start)
        )


def seed_history(
    settings: Settings,
    dataset: str = "chicago_taxi",
    *,
    versions: int = 50,
    runs: int = 500,
    ledger: int = 10_000,
    alerts: int = 200,
    seed: int = 0,
    now: datetime | None = None,
    canary: bool = True,
    backlog: int = 2,
) -> History:
    """Write ``runs`` nightly runs of ``dataset`` (one a day, the newest yesterday), of which
    ``versions`` trained a registry version, and everything the console reads about them.

    Versions ``k % 5 == 3`` fail the gate (a regression against the champion); those with
    ``k % 15 == 13`` are forced through by ``ops``. Every other version passes and is deployed
    as the next serving version, and serving versions that are multiples of 12 are rolled
    back a few hours later; so is the last deployment. With ``canary``, the newest run is still
    in progress: its version passed the gate and is loaded with the ``canary`` label (no
    Deployment, no summary yet). ``now`` (default: this hour) anchors every time; alerts lie
    at whole hours plus 30 minutes before it, away from the alert page's window edges.

    Raises:
        ValueError: fewer than 3 versions, or more versions than runs.
    """
    if versions < 3 or versions > runs:
        raise ValueError(f"need 3 <= versions <= runs, got versions={versions}, runs={runs}")
    return _Seeder(settings, dataset, seed, now, canary).seed(
        versions=versions, runs=runs, ledger=ledger, alerts=alerts, backlog=backlog
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class _Seeder:
    def __init__(
        self,
        settings: Settings,
        dataset: str,
        seed: int,
        now: datetime | None,
        canary: bool,
    ) -> None:
        from aimass.data.spec import load_spec

        self.settings = settings
        self.dataset = dataset
        self.spec = load_spec(dataset, settings.conf_dir)
        self.rng = random.Random(f"{seed}:{dataset}")
        self.now = now or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.canary = canary
        self.reports: list[str] = []

    # one run at a time -----------------------------------------------------------------

    def seed(self, *, versions: int, runs: int, ledger: int, alerts: int, backlog: int) -> History:
        if self._plan(versions, versions) != "passed":
            self.canary = False  # the newest version failed the gate: nothing to canary
        train_at = {
            runs - 1 - round((versions - k) * runs / versions): k for k in range(1, versions + 1)
        }
        first_day = self.now.date() - timedelta(days=runs)
        files_per_run = _spread(ledger, runs)
        ledger_lines: list[dict[str, Any]] = []
        state = _ServingState()
        infos: list[RunInfo] = []
        verdicts: dict[str, str] = {}
        metrics: dict[str, dict[str, float]] = {}
        quarantine: Counter[str] = Counter()
        deploying = [
            i for i, k in train_at.items() if self._plan(k, versions) in ("passed", "forced")
        ]
        last_deploy = max(i for i in deploying if not (self.canary and train_at[i] == versions))
        for i in range(runs):
            day = first_day + timedelta(days=i)
            request, landed = self._request(i, day, files_per_run[i], ledger_lines)
            request.write(request.records_dir)
            checks = self._checks(request, i)
            checks.write(request.records_dir)
            quarantine.update(checks.clean.quarantine_reasons)
            k = train_at.get(i)
            records: dict[str, Any] = {}
            if k is not None:
                in_progress = self.canary and k == versions
                records = self._train(request, k, versions, state, in_progress)
                verdicts[str(k)] = records["gate"].verdict
                metrics[str(k)] = dict(records["gate"].candidate)
            outcome = None
            if not (k is not None and self.canary and k == versions):
                outcome = self._summary(request, checks, records).outcome
            if "deployment" in records and (
                state.stable in _multiples(ROLLBACK_EVERY) or i == last_deploy
            ):
                self._rollback(request, state)
            infos.append(
                RunInfo(
                    run_id=request.run_id,
                    ds=request.ds,
                    dag_id=request.dag_id,
                    requested_at=request.requested_at,
                    rows_in=checks.clean.rows_in,
                    rows_clean=checks.clean.rows_clean,
                    rows_quarantined=checks.clean.rows_quarantined,
                    rows_duplicate=checks.clean.rows_duplicate,
                    registry_version=None if k is None else str(k),
                    outcome=outcome,
                    landed_files=len(landed),
                )
            )
        self._write_ledger(ledger_lines)
        pending = self._backlog(backlog)
        self._write_serving(state)
        alert_infos = self._alerts(alerts, infos)
        monitor_run, status, features = self._monitor(state)
        self._report_files(infos[-1], state)
        return History(
            dataset=self.dataset,
            now=self.now,
            runs=infos,
            verdicts=verdicts,
            deployed=dict(state.deployed),
            champion=state.champion,
            champion_serving=state.deployed[state.champion],
            labels=state.labels(),
            serving_versions=state.loaded(),
            rollbacks=state.rollbacks,
            ledger_total=len(ledger_lines),
            backlog=pending,
            alerts=alert_infos,
            monitor_run=monitor_run,
            monitor_status=status,
            drift_features=features,
            report_files=sorted(self.reports),
            quarantine_totals=quarantine,
            metrics=metrics,
            forced=[v for v, verdict in verdicts.items() if verdict == "forced"],
        )

    @staticmethod
    def _plan(k: int, versions: int) -> str:
        if k > 1 and k % REJECT_EVERY == REJECT_AT:
            return "forced" if k % FORCE_EVERY == FORCE_AT else "rejected"
        return "passed"

    def _request(
        self, i: int, day: date, files: int, ledger_lines: list[dict[str, Any]]
    ) -> tuple[Any, list[dict[str, Any]]]:
        from aimass.platform.records import RunRequest
        from aimass.platform.settings import safe_name

        s, name = self.settings, self.dataset
        ds = day.isoformat()
        started = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC) + timedelta(days=1)
        manual = i % 10 == 4
        requested = started + timedelta(
            hours=7 if manual else 0,
            minutes=self.rng.randint(0, 3),
            seconds=self.rng.randint(0, 59),
        )
        run_id = f"manual__{_iso(requested)}" if manual else f"scheduled__{_iso(started)}"
        report_dir = s.run_report_dir(name, ds, run_id)
        zone = self.settings.landing_location(name)
        landed: list[dict[str, Any]] = [
            {
                "file": (file := f"{name}-{ds}-{j:03d}.csv"),
                "path": f"{zone}/processed/ds={ds}/{started:%Y%m%dT%H%M%S}000000Z-{file}",
                "ds": ds,
                "run_id": run_id,
                "bytes": self.rng.randint(40_000, 400_000),
                "taken_at": _iso(requested + timedelta(seconds=2 + j)),
            }
            for j in range(files)
        ]
        ledger_lines.extend(landed)
        trigger: dict[str, Any] = {"kind": "schedule_or_manual"}
        if landed and not manual:
            trigger = {
                "kind": "landing",
                "dataset": name,
                "files": [e["path"] for e in landed],
            }
        request = RunRequest(
            dataset=name,
            ds=ds,
            input_path=f"{zone}/processed/ds={ds}" if landed else self.spec.source_path,
            epochs=3 if manual else None,
            workers=2,
            force_deploy=False,
            dag_id="aimass_retrain",
            run_id=run_id,
            run_key=f"aimass_retrain/{run_id}",
            clean_dir=str(s.clean_partition(name, ds)),
            quarantine_dir=str(s.quarantine_partition(name, ds)),
            report_dir=str(report_dir),
            clean_summary=str(report_dir / "clean_summary.json"),
            run_dir=str(s.runs_dir / name / safe_name(run_id)),
            landed_files=[str(e["path"]) for e in landed],
            trigger=trigger,
            requested_at=_iso(requested),
        )
        return request, landed

    def _reasons(self) -> list[tuple[str, str, str]]:
        """(kind, full reason, sample raw line) of the spec's quarantine reasons."""
        spec = self.spec
        row = ",".join(_sample_value(c, t) for c, t in spec.schema)
        found = [
            ("malformed: wrong field count", "malformed: wrong field count", row + ",,extra"),
            (
                f"null label {spec.label_name}: {spec.label_expression}",
                f"null label {spec.label_name}: {spec.label_expression}",
                row.rsplit(",", 1)[0] + ",",
            ),
        ]
        found += [
            (f"rule {r.name}", f"rule {r.name}", row.replace(",", ",-", 1)) for r in spec.rules
        ]
        return found

    def _checks(self, request: Any, i: int) -> Any:
        from aimass.platform.records import CleanResult, DataChecks, QualityResult

        rng = self.rng
        rows_in = rng.randint(18_000, 24_000)
        reasons: dict[str, int] = {}
        samples: dict[str, list[dict[str, str]]] = {}
        for n, (kind, reason, raw) in enumerate(self._reasons()):
            count = rng.randint(0, 120 // (n + 1))
            if count:
                reasons[kind] = count
                samples[kind] = [
                    {"raw": raw.replace(",", f",{j}", 1) if j else raw, "reason": reason}
                    for j in range(min(3, count))
                ]
        reasons = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        samples = {k: samples[k] for k in reasons}
        quarantined = sum(reasons.values())
        exact, key = rng.randint(0, 60), rng.randint(0, 30)
        clean_rows = rows_in - quarantined - exact - key
        holdout = clean_rows * self.spec.holdout_percent // 100
        clean = CleanResult(
            dataset=self.dataset,
            ds=request.ds,
            input=request.input_path,
            format=self.spec.source_format,
            rows_in=rows_in,
            rows_clean=clean_rows,
            rows_quarantined=quarantined,
            rows_duplicate=exact + key,
            rows_train=clean_rows - holdout,
            rows_holdout=holdout,
            quarantine_reasons=reasons,
            quarantine_samples=samples,
            duplicates={"exact": exact, "key": key},
        )
        columns = [c for c, _ in self.spec.schema][:12]
        warn = i % 9 == 5
        results = [
            {
                "expectation": "expect_column_values_to_not_be_null"
                if n % 2 == 0
                else "expect_column_values_to_be_between",
                "column": column,
                "severity": "critical" if n % 2 == 0 else "warning",
                "source": "spec.quality",
                "success": not (warn and n == 1),
                "observed": {"unexpected_percent": 1.4 if (warn and n == 1) else 0.0},
            }
            for n, column in enumerate(columns)
        ]
        quality = QualityResult(
            success=True,
            expectations=len(results),
            passed=sum(1 for r in results if r["success"]),
            warnings=[f"{r['column']}: {r['expectation']}" for r in results if not r["success"]],
            data_docs=str(Path(request.report_dir) / "data_docs" / "index.html"),
            results=results,
        )
        return DataChecks(clean=clean, quality=quality)

    def _metrics(self, skill: float, offset: float = 0.0) -> dict[str, float]:
        return {
            m: round(METRIC_CURVES[m][0] + METRIC_CURVES[m][1] * (skill + offset), 4)
            for m in self.spec.metrics
            if m in METRIC_CURVES
        }

    def _slices(self, skill: float) -> list[Any]:
        from aimass.evaluation.metrics import SliceMetrics

        out = []
        for column in self.spec.slices:
            for j, value in enumerate(SLICE_VALUES.get(column, ["a", "b"])):
                metrics = self._metrics(skill, -0.05 * j)
                if j == 2 and "auc" in metrics:
                    del metrics["auc"]  # one class only in this slice: AUC is undefined
                out.append(SliceMetrics(column, value, SLICE_ROWS[j % len(SLICE_ROWS)], metrics))
        return out

    def _train(
        self, request: Any, k: int, versions: int, state: _ServingState, in_progress: bool
    ) -> dict[str, Any]:
        from aimass.evaluation.gate import decide, force
        from aimass.evaluation.report import approval_markdown, json_safe
        from aimass.platform.records import Deployment, DriftResult, GateDecision, TrainingResult

        rng, spec = self.rng, self.spec
        plan = self._plan(k, versions)
        report_dir = Path(request.report_dir)
        run_uuid = uuid.UUID(int=rng.getrandbits(128)).hex
        url = f"http://127.0.0.1:5000/#/experiments/1/runs/{run_uuid}"
        training = TrainingResult(
            mlflow_run_id=run_uuid,
            experiment_id="1",
            mlflow_run_url=url,
            registry_version=str(k),
            saved_model_dir=f"{request.run_dir}/export/saved_model",
            workers=request.workers,
            hparams_source="tuned (aimass_tune)" if k % 4 else "spec defaults",
            train_seconds=round(rng.uniform(80, 240), 1),
        )
        training.write(request.records_dir)
        champion = state.champion or None
        if champion is None:
            drift = DriftResult(status="skipped", reason="no champion yet")
        else:
            status = ("ok", "ok", "warning", "critical")[k % 4]
            features = list(spec.numeric_features)
            drift = DriftResult(
                status=status,
                action="flag" if status == "critical" else "none",
                critical_features=features[:1] if status == "critical" else [],
                warning_features=features[1:3] if status != "ok" else [],
                rows_reference=rng.randint(15_000, 20_000),
                rows_current=rng.randint(15_000, 20_000),
                report_json=str(report_dir / "drift_report.json"),
                report_html=str(report_dir / "drift_report.html"),
                champion_version=champion,
            )
        drift.write(request.records_dir)

        skill = 0.3 + 0.6 * k / versions + rng.uniform(-0.01, 0.01)
        if plan != "passed":
            skill = state.skill - SKILL_DROP
        candidate = self._metrics(skill)
        theirs = None if champion is None else self._metrics(state.skill)
        decision = decide(
            spec.gate,
            candidate,
            theirs,
            metrics=spec.metrics,
            candidate_slices=self._slices(skill),
            champion_slices=None if champion is None else self._slices(state.skill),
        )
        if plan == "forced":
            decision = force(
                decision, reason="holiday traffic; the old model is worse on it", user="ops"
            )
        assert decision.verdict == plan, (k, plan, decision.verdict, decision.reasons)
        out = {
            **decision.to_dict(),
            "dataset": self.dataset,
            "ds": request.ds,
            "run_id": request.run_id,
            "champion_version": champion,
            "candidate_version": str(k),
            "task": spec.task,
            "primary_metric": spec.primary_metric,
            "threshold": 0.5 if spec.task == "binary" else None,
            "mlflow_run_url": url,
            "report_json": str(report_dir / "gate_decision.json"),
            "report_html": str(report_dir / "gate_report.html"),
        }
        out["approval_md"] = approval_markdown(out)
        gate = GateDecision.of(json_safe(out))
        gate.write(request.records_dir)
        records: dict[str, Any] = {"training": training, "drift": drift, "gate": gate}
        if in_progress:
            state.canary = state.next_serving
            state.deployed_pending = (str(k), state.canary)
            return records
        if gate.deploy:
            serving = state.deploy(str(k), skill)
            deployment = Deployment.of(
                {
                    "serving_version": serving,
                    "previous_version": state.previous,
                    "registry_version": str(k),
                    "previous_champion": champion,
                    "infra_validation": {
                        "seconds": round(rng.uniform(3, 9), 2),
                        "output": "probabilities",
                    },
                    "canary": None
                    if state.previous is None
                    else {
                        "passed": True,
                        "checks": ["ok error rate 0.0000 <= 0.0", "ok p99 ratio 1.12 <= 3.0"],
                        "canary": {"p99_ms": 6.1, "error_rate": 0.0},
                        "stable": {"p99_ms": 5.4, "error_rate": 0.0},
                        "prediction_psi": 0.004,
                        "mean_shift": 0.01,
                    },
                    "output": "probabilities",
                    "rest_instance": {"fare": 12.45, "trip_miles": 2.1},
                }
            )
            deployment.write(request.records_dir)
            records["deployment"] = deployment
        return records

    def _summary(self, request: Any, checks: Any, records: dict[str, Any]) -> Any:
        from aimass.platform.records import Lineage, RunSummary

        training = records.get("training")
        gate = records.get("gate")
        deployment = records.get("deployment")
        if deployment is not None:
            outcome = "deployed"
        elif gate is not None:
            outcome = "rejected" if not gate.deploy else "not deployed"
        else:
            outcome = "stopped"
        requested = datetime.fromisoformat(request.requested_at)
        summary = RunSummary(
            dataset=self.dataset,
            ds=request.ds,
            run_id=request.run_id,
            dag_id=request.dag_id,
            outcome=outcome,
            trigger=request.trigger,
            clean=checks.clean,
            quality=checks.quality,
            drift=records.get("drift"),
            model=training,
            gate=None
            if gate is None
            else {
                "passed": gate.passed,
                "candidate": gate.candidate,
                "champion": gate.champion,
                "champion_version": gate.champion_version,
                "verdict": gate.verdict,
                "checks": [c["message"] for c in gate.checks],
                "reasons": gate.reasons,
                "forced": gate.forced,
            },
            deployment=deployment,
            lineage=Lineage.of_run(request, training, deployment),
            links={"data_docs": checks.quality.data_docs},
            requested_at=request.requested_at,
            finished_at=_iso(requested + timedelta(minutes=25 if training else 6)),
        )
        summary.write(request.records_dir)
        return summary

    def _rollback(self, request: Any, state: _ServingState) -> None:
        from aimass.platform.records import ROLLBACKS_DIR, RollbackRecord

        at = datetime.fromisoformat(request.requested_at) + timedelta(hours=3)
        target, current = state.previous, state.stable
        assert target is not None and current is not None
        registry = state.rollback()
        record = RollbackRecord(
            dataset=self.dataset,
            version=target,
            stable=current,
            reason=f"p99 latency doubled after serving version {current} went live (INC-{1000 + current})",
            who="oncall",
            serving_version=target,
            rolled_back_from=current,
            registry_version=registry,
            previous_champion=state.registry_of(current),
            seconds=round(self.rng.uniform(0.8, 2.5), 2),
            marker={"registry_version": registry, "ds": request.ds},
            at=_iso(at),
        )
        folder = self.settings.reports_dir / self.dataset / ROLLBACKS_DIR
        record.write(folder, f"{at:%Y%m%dT%H%M%S}-v{target}")

    # the other stores ------------------------------------------------------------------

    def _write_ledger(self, lines: list[dict[str, Any]]) -> None:
        from aimass.data.landing import LocalZone, zone_for

        zone = zone_for(self.settings, self.dataset)
        assert isinstance(zone, LocalZone), "seed_history writes a local landing zone"
        path = Path(zone.ledger_location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            for entry in lines:
                out.write(json.dumps(entry, sort_keys=True) + "\n")

    def _backlog(self, n: int) -> list[str]:
        from aimass.data.landing import CLAIMED

        folder = Path(self.settings.landing_location(self.dataset)) / CLAIMED
        folder.mkdir(parents=True, exist_ok=True)
        names = [
            f"{self.now - timedelta(minutes=10 * (n - j)):%Y%m%dT%H%M%S}000000Z-{self.dataset}-late-{j}.csv"
            for j in range(n)
        ]
        for name in names:
            (folder / name).write_text("header\n", encoding="utf-8")
        return names

    def _write_serving(self, state: _ServingState) -> None:
        from aimass.serving.config import model_config, server_config, write_config
        from aimass.serving.labels import current_config

        before = current_config(self.settings.serving_config)
        others = [m for m in before.model_config_list.config if m.name != self.dataset]
        mine = model_config(
            self.dataset,
            self.settings.serving_base / self.dataset,
            state.loaded(),
            state.labels(),
        )
        write_config(self.settings.serving_config, server_config([*others, mine]))

    def _alerts(self, n: int, runs: list[RunInfo]) -> list[AlertInfo]:
        from aimass.platform.alert_store import AlertStore, store_path
        from aimass.platform.alerts import KINDS

        store = AlertStore(store_path(self.settings))
        hours = ALERT_DAYS * 24
        infos = []
        for j in reversed(range(n)):  # oldest first: the store reads newest first
            ts = self.now - timedelta(hours=j * hours // n, minutes=30)
            kind = KINDS[(j * 7 + j // 5) % len(KINDS)]
            dataset: str | None = self.dataset if j % 4 else OTHER_DATASET
            if kind == "generic" and j % 3 == 0:
                dataset = None
            run = runs[-1 - (j % len(runs))]
            details: dict[str, Any] = {"dataset": dataset} if dataset else {"note": "platform"}
            if kind == "candidate_rejected":
                details["failed_checks"] = ["[FAIL] no_auc_regression: auc 0.9500 vs bar 0.9600"]
            store.append(
                {
                    "id": uuid.UUID(int=self.rng.getrandbits(128)).hex,
                    "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "kind": kind,
                    "title": f"{dataset or 'platform'}: {kind.replace('_', ' ')} #{n - j}",
                    "dag_id": None if kind == "generic" else "aimass_retrain",
                    "run_id": None if kind == "generic" else run.run_id,
                    "details": details,
                    "delivery": {
                        "log": {"status": "sent"},
                        "store": {"status": "sent", "path": str(store.path)},
                    },
                }
            )
            infos.append(AlertInfo(ts, kind, dataset))
        return infos

    def _monitor(self, state: _ServingState) -> tuple[str, str, list[str]]:
        from aimass.data.drift.findings import CRITICAL, OK, WARNING, DriftReport, FeatureDrift

        spec = self.spec
        features = []
        for j, name in enumerate([*spec.numeric_features, *spec.categorical_features]):
            psi = round(0.02 + 0.31 * (j == 0) + 0.09 * (j == 1) + 0.004 * j, 4)
            severity = (
                CRITICAL
                if psi >= spec.drift.psi_critical
                else (WARNING if psi >= spec.drift.psi_warning else OK)
            )
            buckets = tuple(
                (
                    f"b{b}",
                    round(0.1 + 0.01 * (b - 5), 4),
                    round(0.1 + (0.02 if j == 0 else 0.005) * (5 - b), 4),
                )
                for b in range(10)
            )
            features.append(
                FeatureDrift(
                    feature=name,
                    kind="numeric" if name in spec.numeric_features else "categorical",
                    psi=psi,
                    severity=severity,
                    null_share_reference=0.0,
                    null_share_current=0.001 * j,
                    buckets=buckets,
                    reasons=(f"psi {psi} >= {spec.drift.psi_critical}",)
                    if severity == CRITICAL
                    else (),
                )
            )
        report = DriftReport(
            status=CRITICAL if any(f.severity == CRITICAL for f in features) else OK,
            action="retrain",
            features=tuple(features),
            nulls=(),
            schema_changes=(),
            thresholds=spec.drift,
            rows_reference=18_000,
            rows_current=4_211,
            reference=f"champion v{state.champion} reference profile",
            current=f"served requests to {self.dataset}",
        )
        name = f"{self.now - timedelta(minutes=20):%Y%m%dT%H%M%SZ}"
        folder = self.settings.reports_dir / self.dataset / "monitor" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "drift_report.json").write_text(json.dumps(report.to_dict(), indent=2), "utf-8")
        (folder / "drift_report.html").write_text("<html><body>drift</body></html>", "utf-8")
        self.reports.append(f"{self.dataset}/monitor/{name}/drift_report.html")
        return name, report.status, [f.feature for f in features]

    def _report_files(self, last: RunInfo, state: _ServingState) -> None:
        """The newest run's Data Docs and the newest gate report, as real files."""
        reports = self.settings.reports_dir
        from aimass.platform.settings import safe_name

        run_dir = reports / self.dataset / f"ds={last.ds}" / safe_name(last.run_id)
        docs = run_dir / "data_docs" / "index.html"
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text("<html><body>Data Docs</body></html>", "utf-8")
        self.reports.append(docs.relative_to(reports).as_posix())
        (run_dir / "gate_report.html").write_text("<html><body>gate</body></html>", "utf-8")
        self.reports.append((run_dir / "gate_report.html").relative_to(reports).as_posix())


@dataclass
class _ServingState:
    """The labels as the rollouts and rollbacks leave them."""

    stable: int | None = None
    previous: int | None = None
    canary: int | None = None
    champion: str = ""
    skill: float = 0.0
    deployed: dict[str, int] = field(default_factory=dict)
    skills: dict[str, float] = field(default_factory=dict)
    rollbacks: int = 0
    deployed_pending: tuple[str, int] | None = None

    @property
    def next_serving(self) -> int:
        return max(self.deployed.values(), default=0) + 1

    def deploy(self, registry: str, skill: float) -> int:
        serving = self.next_serving
        self.deployed[registry] = serving
        self.skills[registry] = skill
        self.previous, self.stable = self.stable, serving
        self.champion, self.skill = registry, skill
        return serving

    def registry_of(self, serving: int) -> str:
        return next(r for r, s in self.deployed.items() if s == serving)

    def rollback(self) -> str:
        assert self.previous is not None and self.stable is not None
        self.stable, self.previous = self.previous, self.stable
        self.champion = self.registry_of(self.stable)
        self.skill = self.skills[self.champion]
        self.rollbacks += 1
        return self.champion

    def labels(self) -> dict[str, int]:
        found = {"stable": self.stable, "previous": self.previous, "canary": self.canary}
        return {k: v for k, v in found.items() if v is not None}

    def loaded(self) -> list[int]:
        return sorted(set(self.labels().values()))


def _spread(total: int, buckets: int) -> list[int]:
    """``total`` items over ``buckets`` as evenly as whole numbers allow."""
    return [(i + 1) * total // buckets - i * total // buckets for i in range(buckets)]


def _multiples(n: int) -> range:
    return range(n, 10**6, n)


def _sample_value(column: str, dtype: str) -> str:
    if dtype == "string":
        return {"payment_type": "Credit Card", "company": "Flash Cab"}.get(column, "x")
    if dtype == "long":
        return "7"
    return "41.88" if "latitude" in column else "-87.63" if "longitude" in column else "12.5"


# ------------------------------------------------------------------------------- auth

AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
USERS = {"admin": "admin", "viewer": "viewer"}  # user -> role
JWT_SECRET = "aimass-console-tests-" + "s" * 43


@dataclass
class AuthKit:
    """Airflow's auth for the console: a migrated DB and the simple auth manager."""

    home: Path
    manager: Any

    def token(self, user: str) -> str:
        """A valid JWT of ``user`` (``admin`` or ``viewer``), as Airflow's login issues."""
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        if user not in USERS:
            raise KeyError(f"no user {user!r}; use one of {sorted(USERS)}")
        return str(
            self.manager.generate_jwt(SimpleAuthManagerUser(username=user, role=USERS[user]))
        )

    def forged_token(self, user: str = "admin") -> str:
        """``user``'s claims, well formed, but signed with a secret Airflow does not hold."""
        import jwt

        real = self.token(user)
        header = jwt.get_unverified_header(real)
        claims = jwt.decode(real, options={"verify_signature": False})
        return str(
            jwt.encode(
                claims, "not-the-secret-" + "x" * 50, algorithm=header["alg"], headers=header
            )
        )

    def expired_token(self, user: str = "admin") -> str:
        """A JWT of ``user`` signed with Airflow's secret, expired an hour ago."""
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        return str(
            self.manager.generate_jwt(
                SimpleAuthManagerUser(username=user, role=USERS[user]),
                expiration_time_in_seconds=-3600,
            )
        )

    @staticmethod
    def garbage_token() -> str:
        return "not.a.jwt"

    def headers(self, user: str | None) -> dict[str, str]:
        return {} if user is None else {"Authorization": f"Bearer {self.token(user)}"}


def airflow_env(home: Path) -> dict[str, str]:
    """The Airflow settings the console's auth needs, for a throwaway home."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(REPO_ROOT / "airflow.cfg"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _db_url(home),
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    }


@contextmanager
def airflow_auth(home: Path) -> Iterator[AuthKit]:
    """Airflow pointed at a fresh metadata DB under ``home`` (migrated in a subprocess,
    15-35 s) with its simple auth manager set up in this process; on exit the environment is
    put back (and Airflow's ORM too, when it was pointed elsewhere before).

    Airflow reads its config when first imported. When another test module imported it
    already, its ORM and auth manager are rebuilt here on the new settings.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        imported = "airflow.settings" in sys.modules
        from airflow import settings as airflow_settings

        moved = imported and airflow_settings.SQL_ALCHEMY_CONN != _db_url(home)
        if moved:
            _reconfigure_airflow()
        else:
            _reset_auth()
        from airflow.api_fastapi.app import create_auth_manager

        manager = create_auth_manager()
        manager.init()
        yield AuthKit(home, manager)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if "airflow.settings" in sys.modules:
            _reconfigure_airflow()


def _db_url(home: Path) -> str:
    return f"sqlite:///{home}/airflow.db"


def _reset_auth() -> None:
    """Forget the auth manager and its cached JWT signer and validator (they hold the secret)."""
    from airflow.api_fastapi.app import purge_cached_app
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    purge_cached_app()
    for cached in (BaseAuthManager._get_token_signer, BaseAuthManager._get_token_validator):
        getattr(cached, "__func__", cached).cache_clear()


def _reconfigure_airflow() -> None:
    """Airflow's ORM and auth on the settings the environment names now."""
    from airflow import settings as airflow_settings

    airflow_settings.configure_vars()
    airflow_settings.reconfigure_orm()
    _reset_auth()


def console_settings(var_dir: Path, **overrides: Any) -> Settings:
    """Settings on ``var_dir`` (created), with the Airflow API and the model server on ports
    where nothing listens (so their lookups fail at once); ``overrides`` replace fields."""
    import dataclasses
    import socket

    def closed_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    var_dir.mkdir(parents=True, exist_ok=True)
    saved = os.environ.get("AIMASS_VAR_DIR")
    os.environ["AIMASS_VAR_DIR"] = str(var_dir)
    try:
        base = Settings.from_env()
    finally:
        if saved is None:
            os.environ.pop("AIMASS_VAR_DIR", None)
        else:
            os.environ["AIMASS_VAR_DIR"] = saved
    fields = {
        "airflow_port": closed_port(),
        "serving_rest_port": closed_port(),
        "mlflow_tracking_uri": "http://127.0.0.1:5000",
        **overrides,
    }
    return dataclasses.replace(base, **fields)


# ------------------------------------------------------------------------------- pages

VOID_TAGS = frozenset("area base br col embed hr img input link meta source track wbr".split())


@dataclass
class Node:
    """An element of a parsed page: tag, attributes, children and text, in document order."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        """The text inside, whitespace collapsed."""
        parts: list[str] = []
        stack: list[Node | str] = [self]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                parts.append(item)
            else:
                stack.extend(reversed(item.children))
        return " ".join("".join(parts).split())

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Node]:
        """Descendants with ``tag`` and ``attrs`` (``data_run="x"`` is ``data-run="x"``;
        ``True`` only asks for the attribute; ``class_`` matches one class)."""
        wanted = {name.rstrip("_").replace("_", "-"): value for name, value in attrs.items()}
        found: list[Node] = []
        stack = [c for c in reversed(self.children) if isinstance(c, Node)]
        while stack:
            node = stack.pop()
            if (tag is None or node.tag == tag) and all(
                _matches(node, name, value) for name, value in wanted.items()
            ):
                found.append(node)
            stack.extend(c for c in reversed(node.children) if isinstance(c, Node))
        return found

    def find(self, tag: str | None = None, **attrs: str | bool) -> Node:
        """The first match; AssertionError when there is none."""
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag or '*'} {attrs}> in the page"
        return found[0]


def _matches(node: Node, name: str, value: str | bool) -> bool:
    if name not in node.attrs:
        return False
    if value is True:
        return True
    if name == "class":
        return str(value) in node.attrs["class"].split()
    return node.attrs[name] == value


def parse_html(text: str) -> Node:
    """A page as a tree of :class:`Node` (stdlib ``html.parser``; forgiving of stray end tags)."""
    from html.parser import HTMLParser

    root = Node("#document", {})
    stack = [root]

    class _Builder(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            node = Node(tag, {k: v or "" for k, v in attrs})
            stack[-1].children.append(node)
            if tag not in VOID_TAGS:
                stack.append(node)

        def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

        def handle_endtag(self, tag: str) -> None:
            for depth in range(len(stack) - 1, 0, -1):
                if stack[depth].tag == tag:
                    del stack[depth:]
                    return

        def handle_data(self, data: str) -> None:
            stack[-1].children.append(data)

    builder = _Builder(convert_charrefs=True)
    builder.feed(text)
    builder.close()
    return root
