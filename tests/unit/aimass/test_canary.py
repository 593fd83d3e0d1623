"""The canary's prediction-shift measure and its bars, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from aimass.platform.errors import ServingError
from aimass.serving.rollout import CanaryPolicy, prediction_psi, prediction_shift

pytestmark = pytest.mark.unit


def _scores(rng: np.random.Generator, n: int = 400) -> np.ndarray:
    """Scores shaped like the taxi model's: most trips near 0 (cash), the rest spread out."""
    low = rng.uniform(0.0005, 0.01, int(n * 0.6))
    high = rng.beta(2, 2, n - low.size)
    return np.concatenate([low, high])


def test_two_sound_models_on_the_same_rows_barely_differ() -> None:
    rng = np.random.default_rng(0)
    stable = _scores(rng)
    # a retrained model: the same picture, every score nudged (tiny ones by a factor)
    candidate = np.clip(stable * rng.uniform(0.5, 2.0, stable.size), 0, 1)
    candidate[stable > 0.05] = np.clip(
        stable[stable > 0.05] + rng.normal(0, 0.03, (stable > 0.05).sum()), 0, 1
    )
    assert prediction_psi(stable, candidate, probabilities=True) < 0.1


def test_a_constant_or_inverted_model_is_a_large_shift() -> None:
    rng = np.random.default_rng(1)
    stable = _scores(rng)
    assert prediction_psi(stable, np.full_like(stable, 0.99), probabilities=True) > 2
    assert prediction_psi(stable, 1 - stable, probabilities=True) > 0.5


def test_multiclass_compares_predicted_classes_and_regression_uses_quantiles() -> None:
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([1, 1, 1], 300)
    assert prediction_psi(probs, probs, probabilities=True) == pytest.approx(0.0)
    all_first = np.tile([0.9, 0.05, 0.05], (300, 1))
    assert prediction_psi(probs, all_first, probabilities=True) > 1
    grams = rng.normal(4200, 800, 300)
    assert prediction_psi(grams, grams + rng.normal(0, 20, 300), probabilities=False) < 0.1
    assert prediction_psi(grams, grams + 2000, probabilities=False) > 1


def test_canary_bars_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CanaryPolicy.from_env() == CanaryPolicy()
    monkeypatch.setenv("AIMASS_CANARY_REQUESTS", "50")
    monkeypatch.setenv("AIMASS_CANARY_MAX_PREDICTION_PSI", "0.25")
    policy = CanaryPolicy.from_env()
    assert (policy.requests, policy.max_prediction_psi) == (50, 0.25)
    monkeypatch.setenv("AIMASS_CANARY_REQUESTS", "many")
    with pytest.raises(ServingError, match="AIMASS_CANARY_REQUESTS='many' is not a int"):
        CanaryPolicy.from_env()


def test_the_mean_shift_tells_a_less_confident_model_from_a_broken_one() -> None:
    """Measured on two sound taxi models: means 0.174 and 0.181, spreads 0.06 and 0.12."""
    rng = np.random.default_rng(3)
    stable = _scores(rng)
    timid = np.clip(0.5 * stable + 0.5 * stable.mean(), 0, 1)  # same mean, half the spread
    assert prediction_shift(stable, timid, probabilities=True) < 0.01
    assert prediction_psi(stable, timid, probabilities=True) > 0.3  # why PSI is only reported
    assert prediction_shift(stable, np.zeros_like(stable), probabilities=True) > 0.2
    probs = rng.dirichlet([1, 1, 1], 300)
    assert prediction_shift(probs, np.tile([1.0, 0.0, 0.0], (300, 1)), probabilities=True) > 0.5
    grams = rng.normal(4200, 800, 300)
    assert prediction_shift(grams, grams + 40, probabilities=False) == pytest.approx(0.05, abs=0.01)
    assert (
        CanaryPolicy().max_prediction_psi == float("inf") and CanaryPolicy().max_mean_shift == 0.2
    )


def test_the_canary_replays_the_newest_recorded_requests(settings: object) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aimass.data.spec import load_spec
    from aimass.serving.replay import recent_request_rows
    from models.tabular.features import model_inputs

    spec = load_spec("chicago_taxi")
    assert recent_request_rows(settings, spec, 5) is None  # type: ignore[arg-type]  # no log
    path = settings.requests_dir / spec.name / "recent.parquet"  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True)
    columns: dict[str, list] = {}
    for f in model_inputs(spec):
        if f.spec_dtype == "string":
            columns[f.name] = [f"v{i}" for i in range(8)]
        elif f.spec_dtype == "long":
            columns[f.name] = list(range(8))
        else:
            columns[f.name] = [float(i) if i else None for i in range(8)]
    pq.write_table(pa.table({**columns, "model_version": [1] * 8}), path)
    rows = recent_request_rows(settings, spec, 5)  # type: ignore[arg-type]
    assert rows is not None and set(rows) == {f.name for f in model_inputs(spec)}
    assert rows["fare"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]  # the newest five
    assert rows["fare"].dtype == np.float32
    pq.write_table(pa.table({"fare": [1.0]}), path)  # a log that lacks features: not replayed
    assert recent_request_rows(settings, spec, 5) is None  # type: ignore[arg-type]
