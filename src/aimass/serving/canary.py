"""Canary analysis: the candidate, labelled ``canary``, against ``stable`` on the same rows.

Step 4 of a rollout (:mod:`aimass.serving.rollout`): holdout rows are replayed one per
request to both labels, alternating which goes first, and the error rate, p99 latency and
predictions of the two are compared against :class:`CanaryPolicy`'s bars. The result is a
:class:`CanaryReport`; the rollout promotes the candidate only when it passed.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aimass.platform.errors import ServingError
from aimass.serving.labels import CANARY, STABLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CanaryPolicy:
    """The bars a canary must clear against ``stable`` on the same replayed rows.

    ``requests`` holdout rows are sent one per request, alternating canary and stable.
    The canary fails on an error rate above ``max_error_rate``, on a p99 latency above
    ``max_p99_ratio`` times stable's (latencies under ``p99_floor_ms`` never fail: loopback
    noise), or when its predictions moved from stable's on the same rows by more than
    ``max_mean_shift`` (:func:`prediction_shift`: a model that answers, but answers
    nonsense, e.g. a constant). The PSI of the two prediction distributions is reported;
    it fails the canary only above ``max_prediction_psi`` (off by default: two sound
    models often differ in how confident they are, which is the gate's business, and PSI
    measured that as 1.5 between two good taxi models).
    """

    requests: int = 200
    max_error_rate: float = 0.0
    max_p99_ratio: float = 3.0
    p99_floor_ms: float = 25.0
    max_mean_shift: float = 0.2
    max_prediction_psi: float = float("inf")

    @classmethod
    def from_env(cls) -> CanaryPolicy:
        """Defaults, overridden by ``AIMASS_CANARY_<FIELD>`` (e.g. AIMASS_CANARY_REQUESTS=500)."""
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            raw = os.environ.get(f"AIMASS_CANARY_{name.upper()}")
            if raw is None:
                continue
            try:
                values[name] = type(default)(raw)
            except ValueError:
                raise ServingError(
                    f"AIMASS_CANARY_{name.upper()}={raw!r} is not a {type(default).__name__}"
                ) from None
        return cls(**values)


@dataclass
class CanaryReport:
    """What the canary analysis measured and decided."""

    passed: bool
    checks: list[str] = field(default_factory=list)
    canary: dict[str, float] = field(default_factory=dict)
    stable: dict[str, float] = field(default_factory=dict)
    prediction_psi: float = 0.0
    mean_shift: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(sample: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[index : index + 1] for k, v in sample.items()}


def _output(answer: dict[str, np.ndarray]) -> np.ndarray:
    key = "probabilities" if "probabilities" in answer else "predictions"
    return np.asarray(answer[key], dtype=np.float64)


def _is_probability(answer: dict[str, np.ndarray]) -> bool:
    return "probabilities" in answer


def prediction_psi(
    expected: np.ndarray, actual: np.ndarray, *, probabilities: bool, bins: int = 10
) -> float:
    """Population stability index of ``actual`` against ``expected`` predictions.

    Probabilities use ``bins`` equal-width bins on [0, 1]: quantile bins would split the
    mass of near-identical scores most models give (say, every cash trip near 0) at
    arbitrary points and blow the index up between two sound models. Regression outputs use
    quantile bins of ``expected``. Multiclass rows (2-D) are compared by predicted class.
    """
    if expected.ndim == 2:
        classes = expected.shape[1]
        e = np.bincount(expected.argmax(axis=1), minlength=classes).astype(float)
        a = np.bincount(actual.argmax(axis=1), minlength=classes).astype(float)
    else:
        if probabilities:
            edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        else:
            edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
        e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
        a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    e = np.clip(e / max(e.sum(), 1), 1e-4, None)
    a = np.clip(a / max(a.sum(), 1), 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def prediction_shift(expected: np.ndarray, actual: np.ndarray, *, probabilities: bool) -> float:
    """How far ``actual`` predictions moved from ``expected`` ones on the same rows, on average.

    Probabilities: the change of the mean probability (of class 1; for multiclass the
    largest change over the classes), so 0.2 means 20 points. Regression: the change of
    the mean in units of ``expected``'s standard deviation.
    """
    if expected.ndim == 2:
        return float(np.max(np.abs(actual.mean(axis=0) - expected.mean(axis=0))))
    shift = float(abs(actual.mean() - expected.mean()))
    if probabilities:
        return shift
    return shift / max(float(expected.std()), 1e-9)


def _input_names(client: Any, model_name: str, label: str) -> set[str] | None:
    """The inputs of the labelled version's serving signature (None if the server won't say)."""
    try:
        signatures = client.metadata_grpc(model_name, label=label)
        return set(signatures.signature_def["serving_default"].inputs.keys())
    except (ServingError, KeyError, AttributeError, TypeError):
        return None


def canary_analysis(
    client: Any, model_name: str, rows: dict[str, np.ndarray], policy: CanaryPolicy
) -> CanaryReport:
    """Replay ``rows`` (one per request) to ``canary`` and ``stable`` and compare them.

    Each version gets the columns its own signature takes: a candidate may add a feature
    the stable model never had. When stable needs a column the rows lack, it is not
    queried and the comparisons with it are reported as not made.
    """
    n = min(policy.requests, len(next(iter(rows.values()))))
    wanted = {label: _input_names(client, model_name, label) for label in (CANARY, STABLE)}
    lacking = sorted((wanted[STABLE] or set()) - set(rows))
    labels = (CANARY,) if lacking else (CANARY, STABLE)
    if lacking:
        log.warning("canary: stable takes inputs %s the rows lack; not comparing", lacking)

    def request(label: str, i: int) -> dict[str, np.ndarray]:
        names = wanted[label]
        row = _rows(rows, i)
        return row if names is None else {k: v for k, v in row.items() if k in names}

    latency: dict[str, list[float]] = {CANARY: [], STABLE: []}
    errors = {CANARY: 0, STABLE: 0}
    probabilities = True
    outputs: dict[str, list[np.ndarray]] = {CANARY: [], STABLE: []}
    for i in range(n):
        order = labels if i % 2 == 0 else labels[::-1]
        for label in order:
            started = time.perf_counter()
            try:
                answer = client.predict_grpc(model_name, request(label, i), label=label)
            except ServingError as exc:
                errors[label] += 1
                log.warning("canary analysis: %s request %d failed: %s", label, i, exc)
                continue
            latency[label].append((time.perf_counter() - started) * 1000)
            outputs[label].append(_output(answer)[0])
            probabilities = _is_probability(answer)

    def stats(label: str) -> dict[str, float]:
        ms = np.asarray(latency[label] or [float("inf")])
        return {
            "requests": float(n),
            "errors": float(errors[label]),
            "error_rate": errors[label] / max(n, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
        }

    canary, stable = stats(CANARY), stats(STABLE)
    checks: list[str] = []
    passed = True

    def check(ok: bool, line: str) -> None:
        nonlocal passed
        passed = passed and ok
        checks.append(f"{'PASS' if ok else 'FAIL'} {line}")

    check(
        canary["error_rate"] <= policy.max_error_rate,
        f"error rate: canary {canary['error_rate']:.3f} (stable {stable['error_rate']:.3f}), "
        f"bar <= {policy.max_error_rate}",
    )
    p99_bar = max(
        policy.max_p99_ratio * stable["p99_ms"] if math.isfinite(stable["p99_ms"]) else 0.0,
        policy.p99_floor_ms,
    )
    check(
        canary["p99_ms"] <= p99_bar,
        f"p99 latency: canary {canary['p99_ms']:.1f} ms (stable {stable['p99_ms']:.1f} ms), "
        f"bar <= {p99_bar:.1f} ms",
    )
    psi = shift = float("inf")
    if outputs[CANARY] and outputs[STABLE]:
        before, after = np.stack(outputs[STABLE]), np.stack(outputs[CANARY])
        shift = prediction_shift(before, after, probabilities=probabilities)
        psi = prediction_psi(before, after, probabilities=probabilities)
    unit = "" if probabilities else " stable std"
    if lacking:
        checks.append(
            f"PASS prediction shift: not compared, stable takes inputs {lacking} that the "
            "candidate's rows lack"
        )
    else:
        check(
            shift <= policy.max_mean_shift,
            f"prediction shift: mean moved {shift:.3f}{unit} from stable's on the same {n} rows, "
            f"bar <= {policy.max_mean_shift} (PSI {psi:.3f}"
            + (
                f", bar <= {policy.max_prediction_psi})"
                if math.isfinite(policy.max_prediction_psi)
                else ", reported)"
            ),
        )
    if math.isfinite(policy.max_prediction_psi) and not lacking:
        check(
            psi <= policy.max_prediction_psi,
            f"prediction distribution: PSI {psi:.3f}, bar <= {policy.max_prediction_psi}",
        )
    report = CanaryReport(passed, checks, canary, stable, round(psi, 4), round(shift, 4))
    for line in checks:
        (log.info if line.startswith("PASS") else log.error)("canary %s: %s", model_name, line)
    return report
