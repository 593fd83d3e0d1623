"""The scoring function Spark's Python workers run (``jobs.score.predict.score_table``): which
rows are scored, which leave with a reason, and what the prediction columns hold.

The model here is a plain function over the input arrays, so a test can make it fail on
chosen rows; the SavedModel path is tested in tests/integration/test_batch_scoring.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.settings import REPO_ROOT
from jobs.score.predict import NON_FINITE, REASON, score_table


def _spec(name: str) -> DatasetSpec:
    return load_spec(name, REPO_ROOT / "conf")


def _table(spec: DatasetSpec, fares: list[float | None], reasons: list[str | None]) -> pa.Table:
    """Rows with every model input (fare varies), a key, a row_id and the given reasons."""
    n = len(fares)
    columns: dict[str, Any] = {"row_id": pa.array(range(n), pa.int64())}
    for name in spec.model_inputs:
        dtype = spec.dtype(name)
        if name == "fare":
            columns[name] = pa.array(fares, pa.float64())
        elif dtype == "string":
            columns[name] = pa.array(["Cash"] * n)
        elif dtype == "long":
            columns[name] = pa.array([1] * n, pa.int64())
        else:
            columns[name] = pa.array([1.5] * n, pa.float64())
    columns[REASON] = pa.array(reasons, pa.string())
    return pa.table(columns)


def _log_fare(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """A 'model' that refuses a negative fare and scores log(fare) (-inf at 0)."""
    fare = feeds["fare"]
    if (fare < 0).any():
        raise ValueError("negative fare")
    with np.errstate(divide="ignore"):
        return np.log(fare).astype(np.float32)


def test_rows_are_scored_rejected_by_input_by_the_model_or_for_a_non_finite_score() -> None:
    spec = _spec("chicago_taxi")
    table = _table(
        spec,
        fares=[2.0, None, -1.0, 0.0, 4.0],
        reasons=[None, "unparseable double in fare: 'x'", None, None, None],
    )
    out = score_table(table, spec, _log_fare, keep=["row_id"])
    assert out.column_names == ["row_id", "probability", REASON]
    reasons = out.column(REASON).to_pylist()
    assert reasons[0] is None and reasons[4] is None
    assert reasons[1] == "unparseable double in fare: 'x'"  # never reached the model
    assert reasons[2] == "model failed: ValueError: negative fare"  # found row by row
    assert reasons[3] == NON_FINITE
    probability = out.column("probability").to_pylist()
    assert probability[0] == pytest.approx(np.log(2.0)) and probability[4] == pytest.approx(
        np.log(4.0)
    )
    assert probability[1:4] == [None, None, None]  # no number for a row not scored


def test_a_batch_of_rejected_rows_never_calls_the_model() -> None:
    spec = _spec("chicago_taxi")

    def refuse(_: dict[str, np.ndarray]) -> np.ndarray:
        raise AssertionError("the model was called")

    out = score_table(_table(spec, [1.0, 2.0], ["bad", "worse"]), spec, refuse, keep=["row_id"])
    assert out.column(REASON).to_pylist() == ["bad", "worse"]


def test_multiclass_rows_get_their_probabilities_and_the_class_of_the_largest() -> None:
    spec = _spec("palmer_penguins")
    n = 3
    columns: dict[str, Any] = {"row_id": pa.array(range(n), pa.int64())}
    for name in spec.model_inputs:
        kind = spec.dtype(name)
        columns[name] = pa.array(["x"] * n) if kind == "string" else pa.array([1.0] * n)
    columns[REASON] = pa.array([None, "bad", None], pa.string())
    probs = np.array([[0.1, 0.7, 0.2], [0.2, 0.2, 0.6]], dtype=np.float32)
    out = score_table(pa.table(columns), spec, lambda feeds: probs, keep=["row_id"])
    assert out.column("predicted_class").to_pylist() == ["Chinstrap", None, "Gentoo"]
    got = out.column("probabilities").to_pylist()
    assert got[1] is None
    np.testing.assert_allclose(got[0], probs[0], atol=1e-7)
    np.testing.assert_allclose(got[2], probs[1], atol=1e-7)
