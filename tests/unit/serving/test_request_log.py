"""The request log's bounds (aimass.serving.request_log): strings, columns and memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from aimass.platform.errors import ConfigError
from aimass.serving.request_log import RequestLog, recent_requests_path

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


def test_thousands_of_requests_with_1mb_strings_stay_under_the_memory_bound(
    tmp_path: Path,
) -> None:
    bound = 2 * MIB
    log = RequestLog(tmp_path, sample=1.0, max_rows=1_000_000, max_bytes=bound)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(3000):
            huge = (b"%d" % i) * (MIB // 4)  # a fresh 1 MB string per request
            inputs = {
                "company": np.array([huge, huge[:10]], dtype=object),
                "fare": np.array([1.0, float(i)], dtype=np.float32),
            }
            assert log.record("taxi", 1, inputs)
            del huge, inputs
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert log.nbytes() <= bound
    # What the log really holds (Python's own accounting) stays near its bound, far below the
    # 3 GB the requests carried.
    assert held < bound + MIB, f"{held / MIB:.1f} MiB held"
    assert 0 < log.rows("taxi") < 6000  # the oldest requests were dropped

    [written] = log.flush()
    table = pq.read_table(written)
    companies = table.column("company").to_pylist()
    assert max(len(value) for value in companies) == 256
    assert table.column("fare").to_pylist()[-1] == 2999.0  # the newest request is kept


def test_recorded_columns_are_copies_of_the_request(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, sample=1.0)
    fare = np.array([[1.0], [2.0]], dtype=np.float32)  # a [rows, 1] input counts as a column
    log.record("taxi", 3, {"fare": fare, "company": np.array([b"a", b"b"], dtype=object)})
    fare[:] = 99.0
    table = pq.read_table(log.flush()[0])
    assert table.column("fare").to_pylist() == [1.0, 2.0]
    assert table.column("model_version").to_pylist() == ["3", "3"]


def test_requests_with_too_many_inputs_are_not_recorded(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, sample=1.0, max_columns=3)
    wide = {f"f{i}": np.zeros(2, np.float32) for i in range(4)}
    assert not log.record("taxi", 1, wide)
    assert log.record("taxi", 1, {"f0": np.zeros(2, np.float32)})
    assert log.rows("taxi") == 2


def test_the_memory_bound_is_shared_by_all_models(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, sample=1.0, max_rows=1_000_000, max_bytes=64 * 1024)
    for i in range(500):
        log.record(f"model{i % 5}", 1, {"fare": np.zeros(64, np.float32)})
    assert log.nbytes() <= 64 * 1024
    assert all(log.rows(f"model{i}") > 0 for i in range(5))  # the largest buffer shrinks first


@pytest.mark.parametrize("name", ["max_bytes", "max_string_chars", "max_columns"])
def test_bounds_must_be_positive(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RequestLog(tmp_path, **{name: 0})


def test_the_recent_file_path(tmp_path: Path) -> None:
    assert recent_requests_path(tmp_path, "taxi") == tmp_path / "taxi" / "recent.parquet"
