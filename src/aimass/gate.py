"""The evaluation gate: absolute bars plus no-regression against the champion, explained."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aimass.spec import GateSpec

# Metrics where larger is better; the gate only compares those it has bars for.
HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "log_loss": False}


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
    min_auc: float | None = None,
) -> GateDecision:
    """Hold the candidate's holdout metrics to the spec's bars and to the champion's.

    Args:
        gate: bars from the dataset spec.
        candidate: the candidate's metrics on the holdout (``auc``, ``accuracy``, ``log_loss``).
        champion: the champion's metrics on the *same* holdout, or None when there is none yet.
        min_auc: a per-run override of ``gate.min_auc`` (a DAG param).
    """
    for key in ("auc", "accuracy"):
        if key not in candidate:
            raise KeyError(f"candidate metrics lack '{key}'; got {sorted(candidate)}")
    auc_bar = gate.min_auc if min_auc is None else min_auc
    checks = [
        Check("min_auc", "auc", candidate["auc"], auc_bar, candidate["auc"] >= auc_bar),
        Check(
            "min_accuracy",
            "accuracy",
            candidate["accuracy"],
            gate.min_accuracy,
            candidate["accuracy"] >= gate.min_accuracy,
        ),
    ]
    if champion is not None:
        bar = champion["auc"] - gate.max_auc_regression
        checks.append(
            Check(
                "no_auc_regression",
                "auc",
                candidate["auc"],
                bar,
                candidate["auc"] >= bar,
                champion=champion["auc"],
            )
        )
    overrides = {"min_auc": min_auc} if min_auc is not None else {}
    return GateDecision(
        passed=all(c.passed for c in checks),
        checks=tuple(checks),
        candidate=dict(candidate),
        champion=dict(champion) if champion is not None else None,
        overrides=overrides,
    )
