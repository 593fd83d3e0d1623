"""The evaluation gate: absolute bars plus no-regression against the champion, explained."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aimass.spec import GateSpec


@dataclass(frozen=True)
class Check:
    """One bar the candidate was held to."""

    name: str
    metric: str
    value: float
    bar: float
    passed: bool
    champion: float | None = None

    @property
    def message(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        champ = f", champion {self.champion:.4f}" if self.champion is not None else ""
        return (
            f"[{verdict}] {self.name}: {self.metric} {self.value:.4f} vs bar {self.bar:.4f}{champ}"
        )


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: tuple[Check, ...]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """One line per failed check (empty when the candidate passed)."""
        return [c.message for c in self.checks if not c.passed]

    def summary(self) -> str:
        head = "PASSED" if self.passed else "REJECTED"
        against = (
            "against the champion"
            if self.champion is not None
            else "(no champion yet: absolute bars only)"
        )
        return f"gate {head} {against}\n" + "\n".join(c.message for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checks"] = [{**asdict(c), "message": c.message} for c in self.checks]
        out["reasons"] = self.reasons
        return out


def decide(
    gate: GateSpec,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    *,
    metrics: dict[str, bool],
    min_auc: float | None = None,
) -> GateDecision:
    """Hold the candidate's holdout metrics to the spec's bars and to the champion's.

    Args:
        gate: bars from the dataset spec (``min``, ``max``, ``max_regression`` by metric).
        candidate: the candidate's holdout metrics (``evaluation.evaluate``).
        champion: the champion's metrics on the *same* holdout, or None when there is none yet.
        metrics: the task's metrics, name -> larger is better (``DatasetSpec.metrics``).
        min_auc: a per-run override of ``gate.min.auc`` (a DAG param; classification only).

    Raises:
        KeyError: a bar names a metric the candidate (or champion) was not scored on.
    """
    minimums = gate.bars("min")
    overrides: dict[str, Any] = {}
    if min_auc is not None:
        if "auc" not in metrics:
            raise KeyError("min_auc applies to classification; this task has no 'auc' metric")
        minimums["auc"] = min_auc
        overrides["min_auc"] = min_auc

    def value(source: dict[str, float], metric: str, whose: str) -> float:
        if metric not in source:
            raise KeyError(f"{whose} metrics lack '{metric}'; got {sorted(source)}")
        return float(source[metric])

    checks: list[Check] = []
    for metric, bar in minimums.items():
        got = value(candidate, metric, "candidate")
        checks.append(Check(f"min_{metric}", metric, got, float(bar), got >= bar))
    for metric, bar in gate.bars("max").items():
        got = value(candidate, metric, "candidate")
        checks.append(Check(f"max_{metric}", metric, got, float(bar), got <= bar))
    if champion is not None:
        for metric, allowed in gate.bars("max_regression").items():
            got = value(candidate, metric, "candidate")
            theirs = value(champion, metric, "champion")
            if metrics.get(metric, True):
                bar, passed = theirs - allowed, got >= theirs - allowed
            else:
                bar, passed = theirs + allowed, got <= theirs + allowed
            checks.append(
                Check(f"no_{metric}_regression", metric, got, bar, passed, champion=theirs)
            )
    return GateDecision(
        passed=all(c.passed for c in checks),
        checks=tuple(checks),
        candidate=dict(candidate),
        champion=dict(champion) if champion is not None else None,
        overrides=overrides,
    )
