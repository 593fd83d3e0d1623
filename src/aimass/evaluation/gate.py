"""The evaluation gate: absolute bars plus no-regression against the champion, explained.

The candidate is held to the spec's ``gate``:

- ``min`` / ``max``: absolute bars on its overall holdout metrics;
- ``max_regression``: no worse than the champion overall by more than the allowance;
- ``max_slice_regression``: the same within each slice value of the spec's ``slices``
  columns, for slices with at least ``min_slice_rows`` holdout rows; smaller slices (and
  slices where a metric is undefined, like AUC over one class) get a line that is
  reported but not gated.

With no champion only the absolute bars apply. Every check becomes one line (metric,
slice or "overall", value, bar, the champion's value). A run may force a failing
candidate through (``force``): the decision stays "rejected" but is marked forced, with
the reason and who asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from aimass.data.spec import GateSpec
from aimass.evaluation.metrics import SliceMetrics

OVERALL = "overall"
UNKNOWN_USER = "unknown"
# Shortest reason a forced deployment must give (a DAG param; checked in aimass.stages.params).
MIN_FORCE_REASON = 10
PASSED, REJECTED, FORCED = "passed", "rejected", "forced"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class Check:
    """One bar the candidate was held to, overall or within one slice.

    ``gated`` is False for a line that is reported but does not decide (a slice under
    ``min_slice_rows``, or a metric the slice cannot define); ``note`` says why.
    """

    name: str
    metric: str
    value: float | None
    bar: float | None
    passed: bool
    champion: float | None = None
    slice: str = OVERALL
    rows: int | None = None
    gated: bool = True
    note: str = ""

    @property
    def verdict(self) -> str:
        if not self.gated:
            return "skip"
        return "ok" if self.passed else "FAIL"

    @property
    def message(self) -> str:
        champ = f", champion {_num(self.champion)}" if self.champion is not None else ""
        where = self.slice if self.rows is None else f"slice {self.slice}, {self.rows} rows"
        note = f"; {self.note}" if self.note else ""
        return (
            f"[{self.verdict}] {self.name}: {self.metric} {_num(self.value)} vs bar "
            f"{_num(self.bar)}{champ} ({where}{note})"
        )


@dataclass(frozen=True)
class SliceComparison:
    """One slice value's metrics for the candidate and (when there is one) the champion."""

    column: str
    value: str
    rows: int
    candidate: dict[str, float]
    champion: dict[str, float] | None
    gated: bool

    @property
    def key(self) -> str:
        return f"{self.column}={self.value}"


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[Check, ...]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    overrides: dict[str, Any] = field(default_factory=dict)
    slices: tuple[SliceComparison, ...] = ()
    min_slice_rows: int = 0
    forced: bool = False
    force_reason: str | None = None
    forced_by: str | None = None

    @property
    def deploy(self) -> bool:
        """Whether the candidate goes on to deployment: it passed, or a run forced it."""
        return self.passed or self.forced

    @property
    def verdict(self) -> str:
        """``passed``, ``rejected`` or ``forced`` (rejected, deployed anyway): the MLflow tag."""
        if self.passed:
            return PASSED
        return FORCED if self.forced else REJECTED

    @property
    def reasons(self) -> list[str]:
        """One line per failed gated check (empty when the candidate passed)."""
        return [c.message for c in self.checks if c.gated and not c.passed]

    def headline(self) -> str:
        head = "PASSED" if self.passed else "REJECTED"
        against = (
            "against the champion"
            if self.champion is not None
            else "(no champion yet: absolute bars only)"
        )
        line = f"gate {head} {against}"
        if self.forced:
            line += f"; deployment FORCED by {self.forced_by}: {self.force_reason}"
        return line

    def summary(self) -> str:
        return self.headline() + "\n" + "\n".join(c.message for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checks"] = [
            {**asdict(c), "message": c.message, "verdict": c.verdict} for c in self.checks
        ]
        out["slices"] = [{**asdict(s), "key": s.key} for s in self.slices]
        out["reasons"] = self.reasons
        out["deploy"] = self.deploy
        out["verdict"] = self.verdict
        out["headline"] = self.headline()
        return out


def _value(source: dict[str, float], metric: str, whose: str) -> float:
    if metric not in source:
        raise KeyError(f"{whose} metrics lack '{metric}'; got {sorted(source)}")
    return float(source[metric])


def _regression_bar(
    larger_is_better: bool, champion: float, allowed: float, value: float
) -> tuple[float, bool]:
    if larger_is_better:
        return champion - allowed, value >= champion - allowed
    return champion + allowed, value <= champion + allowed


def _compare_slices(
    candidate: Sequence[SliceMetrics],
    champion: Sequence[SliceMetrics] | None,
    min_rows: int,
) -> tuple[SliceComparison, ...]:
    theirs = {s.key: s for s in champion or ()}
    missing = [s.key for s in candidate if champion is not None and s.key not in theirs]
    if missing:
        raise KeyError(
            f"the champion was not scored on slices {missing}; score both models on the same "
            "holdout rows and slice columns"
        )
    return tuple(
        SliceComparison(
            column=s.column,
            value=s.value,
            rows=s.rows,
            candidate=dict(s.metrics),
            champion=dict(theirs[s.key].metrics) if champion is not None else None,
            gated=s.rows >= min_rows,
        )
        for s in candidate
    )


def _slice_checks(
    gate: GateSpec, slices: Sequence[SliceComparison], metrics: dict[str, bool]
) -> list[Check]:
    checks: list[Check] = []
    for metric, allowed in gate.bars("max_slice_regression").items():
        name = f"no_{metric}_regression"
        for s in slices:
            got, theirs = s.candidate.get(metric), (s.champion or {}).get(metric)
            if got is None or theirs is None:
                whose = "either model" if got is None and theirs is None else "one model"
                checks.append(
                    Check(
                        name,
                        metric,
                        got,
                        None,
                        True,
                        champion=theirs,
                        slice=s.key,
                        rows=s.rows,
                        gated=False,
                        note=f"not gated: {metric} is undefined in this slice for {whose}",
                    )
                )
                continue
            bar, passed = _regression_bar(metrics.get(metric, True), theirs, allowed, got)
            note = (
                ""
                if s.gated
                else f"not gated: {s.rows} rows < min_slice_rows {gate.min_slice_rows}"
            )
            checks.append(
                Check(
                    name,
                    metric,
                    got,
                    bar,
                    passed,
                    champion=theirs,
                    slice=s.key,
                    rows=s.rows,
                    gated=s.gated,
                    note=note,
                )
            )
    return checks


def decide(
    gate: GateSpec,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metrics: dict[str, bool],
    min_auc: float | None = None,
    candidate_slices: Sequence[SliceMetrics] = (),
    champion_slices: Sequence[SliceMetrics] | None = None,
) -> GateDecision:
    """Hold the candidate's holdout metrics to the spec's bars and to the champion's.

    Args:
        gate: bars from the dataset spec (see ``GateSpec``).
        candidate: the candidate's overall holdout metrics (``evaluation.evaluate``).
        champion: the champion's metrics on the *same* holdout, or None when there is none yet.
        metrics: the task's metrics, name -> larger is better (``DatasetSpec.metrics``).
        min_auc: a per-run override of ``gate.min.auc`` (a DAG param; classification only).
        candidate_slices: the candidate's per-slice metrics (``evaluation.slice_metrics``).
        champion_slices: the champion's per-slice metrics on the same rows, or None.

    Raises:
        KeyError: a bar names a metric the candidate (or champion) was not scored on, or
            the champion lacks a slice the candidate has.
    """
    minimums = gate.bars("min")
    overrides: dict[str, Any] = {}
    if min_auc is not None:
        if "auc" not in metrics:
            raise KeyError("min_auc applies to classification; this task has no 'auc' metric")
        minimums["auc"] = min_auc
        overrides["min_auc"] = min_auc

    checks: list[Check] = []
    for metric, bar in minimums.items():
        got = _value(candidate, metric, "candidate")
        checks.append(Check(f"min_{metric}", metric, got, float(bar), got >= bar))
    for metric, bar in gate.bars("max").items():
        got = _value(candidate, metric, "candidate")
        checks.append(Check(f"max_{metric}", metric, got, float(bar), got <= bar))
    if (
        champion is not None
        and candidate_slices
        and champion_slices is None
        and gate.max_slice_regression
    ):
        raise KeyError(
            "gate.max_slice_regression needs the champion's per-slice metrics; "
            "pass champion_slices (both models scored on the same holdout slices)"
        )
    slices = _compare_slices(
        candidate_slices,
        champion_slices if champion is not None else None,
        gate.min_slice_rows,
    )
    if champion is not None:
        for metric, allowed in gate.bars("max_regression").items():
            got = _value(candidate, metric, "candidate")
            theirs = _value(champion, metric, "champion")
            bar, passed = _regression_bar(metrics.get(metric, True), theirs, allowed, got)
            checks.append(
                Check(f"no_{metric}_regression", metric, got, bar, passed, champion=theirs)
            )
        checks.extend(_slice_checks(gate, slices, metrics))
    return GateDecision(
        passed=all(c.passed for c in checks if c.gated),
        checks=tuple(checks),
        candidate=dict(candidate),
        champion=dict(champion) if champion is not None else None,
        overrides=overrides,
        slices=slices,
        min_slice_rows=gate.min_slice_rows,
    )


def force(decision: GateDecision, *, reason: str, user: str | None) -> GateDecision:
    """The decision with a run's ``force_deploy`` applied: a failing candidate deploys anyway.

    A candidate that passed needs no forcing and comes back unchanged (the request is
    noted in ``overrides``). ``user`` is who triggered the run (``unknown`` when Airflow
    does not say).

    Raises:
        ValueError: the reason is shorter than ``MIN_FORCE_REASON`` characters.
    """
    reason = reason.strip()
    if len(reason) < MIN_FORCE_REASON:
        raise ValueError(
            f"forcing a deployment needs a reason of at least {MIN_FORCE_REASON} characters; "
            f"got {reason!r}"
        )
    who = (user or "").strip() or UNKNOWN_USER
    overrides = {**decision.overrides, "force_deploy": True, "force_reason": reason}
    if decision.passed:
        return replace(decision, overrides=overrides)
    return replace(decision, overrides=overrides, forced=True, force_reason=reason, forced_by=who)
