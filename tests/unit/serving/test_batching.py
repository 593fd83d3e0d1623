"""Server-side batching of Predict (aimass.serving.batching.Batcher) with plain numpy functions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from aimass.platform.errors import ConfigError
from aimass.serving.batching import Batcher, BatchingOptions, read_batching_parameters
from aimass.serving.servables import ServableError

pytestmark = pytest.mark.unit

WAIT_S = 20  # generous bound on anything that should happen at once


class Model:
    """``y = 2x + 1`` per row, recording every call; optionally held at a gate."""

    def __init__(self) -> None:
        self.calls: list[dict[str, np.ndarray]] = []
        self.threads: list[int] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            self.calls.append({k: np.array(v) for k, v in inputs.items()})
            self.threads.append(threading.get_ident())
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S)
        if np.any(inputs["x"] < 0):
            raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, "negative x")
        return {"y": inputs["x"] * 2 + 1, "x_again": inputs["x"].copy()}

    def rows_per_call(self) -> list[int]:
        return [len(call["x"]) for call in self.calls]


@pytest.fixture
def model() -> Model:
    return Model()


def make_batcher(**options: Any) -> tuple[Batcher, list[tuple]]:
    observed: list[tuple] = []
    batcher = Batcher(
        BatchingOptions(**{"num_batch_threads": 1, **options}),
        observe=lambda *args: observed.append(args),
    )
    return batcher, observed


@pytest.fixture
def pool() -> Iterator[futures.ThreadPoolExecutor]:
    with futures.ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float32)}


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def hold_first_call(
    batcher: Batcher, model: Model, pool: futures.ThreadPoolExecutor
) -> futures.Future:
    """Occupy the only batch thread with a one-row call held at the model's gate."""
    model.gate = threading.Event()
    first = pool.submit(batcher.run, "k", rows(100.0), model)
    assert model.entered.wait(WAIT_S)
    return first


def test_queued_requests_run_as_one_batch_and_each_gets_its_own_rows(
    model: Model, pool: futures.ThreadPoolExecutor
) -> None:
    batcher, observed = make_batcher(max_batch_size=16)
    try:
        first = hold_first_call(batcher, model, pool)
        requests = [rows(1.0), rows(2.0, 3.0), rows(4.0, 5.0, 6.0)]
        pending = [pool.submit(batcher.run, "k", r, model, ("m", "1")) for r in requests]
        wait_for(lambda: batcher.pending() == 3)
        assert model.gate is not None
        model.gate.set()

        assert first.result(WAIT_S)["y"].tolist() == [201.0]
        for request, future in zip(requests, pending, strict=True):
            answer = future.result(WAIT_S)
            np.testing.assert_array_equal(answer["y"], request["x"] * 2 + 1)
            np.testing.assert_array_equal(answer["x_again"], request["x"])
        assert model.rows_per_call() == [1, 6]
        assert sorted(model.calls[1]["x"].tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        labels, batch_rows, requests_in_batch, waits = observed[-1]
        assert (labels, batch_rows, requests_in_batch, len(waits)) == (("m", "1"), 6, 3, 3)
        assert all(wait >= 0 for wait in waits)
    finally:
        batcher.stop()


def test_a_request_whose_deadline_passes_in_the_queue_is_not_run(
    model: Model, pool: futures.ThreadPoolExecutor
) -> None:
    batcher, observed = make_batcher(max_batch_size=16)
    try:
        first = hold_first_call(batcher, model, pool)
        late = pool.submit(
            batcher.run, "k", rows(7.0), model, ("m", "1"), deadline=time.monotonic() + 0.2
        )
        patient = pool.submit(batcher.run, "k", rows(8.0), model, ("m", "1"))
        with pytest.raises(ServableError, match="deadline passed") as info:
            late.result(WAIT_S)  # answered while its batch is still queued
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert model.gate is not None
        model.gate.set()
        assert first.result(WAIT_S)["y"].tolist() == [201.0]
        assert patient.result(WAIT_S)["y"].tolist() == [17.0]
        assert model.rows_per_call() == [1, 1]  # the late request never reached the model
        assert all(7.0 not in call["x"] for call in model.calls)
        assert observed[-1][1:3] == (1, 1)
    finally:
        batcher.stop()


def test_a_deadline_that_already_passed_when_the_batch_starts_skips_the_request(
    model: Model, pool: futures.ThreadPoolExecutor
) -> None:
    batcher, _ = make_batcher(max_batch_size=16)
    try:
        first = hold_first_call(batcher, model, pool)
        expired = pool.submit(batcher.run, "k", rows(5.0), model, deadline=time.monotonic() - 1.0)
        with pytest.raises(ServableError, match="deadline passed"):
            expired.result(WAIT_S)
        assert model.gate is not None
        model.gate.set()
        first.result(WAIT_S)
        batcher.stop()
        assert model.rows_per_call() == [1]
    finally:
        batcher.stop()


def test_batched_results_equal_unbatched_results_under_concurrency(
    model: Model, pool: futures.ThreadPoolExecutor
) -> None:
    batcher, _ = make_batcher(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2)
    try:
        requests = [rows(*np.arange(i % 3 + 1) + 10 * i) for i in range(200)]
        answers = list(pool.map(lambda r: batcher.run("k", r, model), requests))
        for request, answer in zip(requests, answers, strict=True):
            np.testing.assert_array_equal(answer["y"], request["x"] * 2 + 1)
            np.testing.assert_array_equal(answer["x_again"], request["x"])
        assert sum(model.rows_per_call()) == sum(len(r["x"]) for r in requests)
        assert max(model.rows_per_call()) <= 8
    finally:
        batcher.stop()


def test_a_failing_batch_is_retried_request_by_request(
    model: Model, pool: futures.ThreadPoolExecutor
) -> None:
    batcher, _ = make_batcher(max_batch_size=16)
    try:
        first = hold_first_call(batcher, model, pool)
        good, bad, other = rows(1.0, 2.0), rows(-1.0), rows(3.0)
        pending = [pool.submit(batcher.run, "k", r, model) for r in (good, bad, other)]
        wait_for(lambda: batcher.pending() == 3)
        assert model.gate is not None
        model.gate.set()
        first.result(WAIT_S)

        assert pending[0].result(WAIT_S)["y"].tolist() == [3.0, 5.0]
        with pytest.raises(ServableError, match="negative x") as info:
            pending[1].result(WAIT_S)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert pending[2].result(WAIT_S)["y"].tolist() == [7.0]
        # One merged call that failed, then each request alone.
        calls = model.rows_per_call()
        assert calls[:2] == [1, 4] and sorted(calls[2:]) == [1, 1, 2]
    finally:
        batcher.stop()


def test_outputs_without_the_batch_dimension_are_not_split(
    pool: futures.ThreadPoolExecutor,
) -> None:
    calls: list[int] = []
    gate = threading.Event()

    def total(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        if len(calls) == 1:
            assert gate.wait(WAIT_S)
        return {"sum": np.array(inputs["x"].sum())}

    batcher, _ = make_batcher(max_batch_size=16)
    try:
        first = pool.submit(batcher.run, "k", rows(0.5), total)
        wait_for(lambda: len(calls) == 1)
        pending = [pool.submit(batcher.run, "k", r, total) for r in (rows(1.0, 2.0), rows(5.0))]
        wait_for(lambda: batcher.pending() == 2)
        gate.set()
        assert first.result(WAIT_S)["sum"] == 0.5
        assert [f.result(WAIT_S)["sum"] for f in pending] == [3.0, 5.0]
        assert calls[:2] == [1, 3] and sorted(calls[2:]) == [1, 2]
    finally:
        batcher.stop()


@pytest.mark.parametrize(
    "other",
    [
        {"x": np.array([1.0], dtype=np.float64)},  # another dtype
        {"z": np.array([1.0], dtype=np.float32)},  # another input name
        {"x": np.ones((1, 2), dtype=np.float32)},  # another inner shape
    ],
    ids=["dtype", "input-name", "inner-shape"],
)
def test_requests_that_do_not_match_are_not_merged(
    other: dict[str, np.ndarray], pool: futures.ThreadPoolExecutor
) -> None:
    seen: list[tuple[str, ...]] = []
    gate = threading.Event()

    def echo(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(tuple(sorted(inputs)))
        if len(seen) == 1:
            assert gate.wait(WAIT_S)
        return {key: value * 1 for key, value in inputs.items()}

    batcher, _ = make_batcher(max_batch_size=16, num_batch_threads=1)
    try:
        first = pool.submit(batcher.run, "k", rows(0.0), echo)
        wait_for(lambda: len(seen) == 1)
        same = pool.submit(batcher.run, "k", rows(7.0), echo)
        different = pool.submit(batcher.run, "k", other, echo)
        another_key = pool.submit(batcher.run, "other-model", rows(8.0), echo)
        wait_for(lambda: batcher.pending() == 3)
        gate.set()
        first.result(WAIT_S)
        assert same.result(WAIT_S)["x"].tolist() == [7.0]
        answer = different.result(WAIT_S)
        for key, value in other.items():
            np.testing.assert_array_equal(answer[key], value)
            assert answer[key].dtype == value.dtype
        assert another_key.result(WAIT_S)["x"].tolist() == [8.0]
        assert len(seen) == 4  # nothing was merged
    finally:
        batcher.stop()


@pytest.mark.parametrize(
    "inputs",
    [
        {"x": np.arange(5, dtype=np.float32)},  # more rows than max_batch_size
        {"x": np.array(1.0, dtype=np.float32)},  # a scalar: no batch dimension
        {"x": np.ones(2, np.float32), "w": np.ones(3, np.float32)},  # no common first dim
        {"x": np.zeros(0, np.float32)},  # empty
    ],
    ids=["too-large", "scalar", "ragged", "empty"],
)
def test_requests_that_cannot_be_batched_run_alone_in_the_callers_thread(
    inputs: dict[str, np.ndarray],
) -> None:
    seen: list[int] = []

    def fn(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(threading.get_ident())
        return {"n": np.array(sum(v.size for v in arrays.values()))}

    batcher, observed = make_batcher(max_batch_size=4)
    try:
        answer = batcher.run("k", inputs, fn)
        assert answer["n"] == sum(v.size for v in inputs.values())
        assert seen == [threading.get_ident()]
        assert observed == []
    finally:
        batcher.stop()


def test_a_partial_batch_runs_when_its_timeout_expires(pool: futures.ThreadPoolExecutor) -> None:
    calls: list[int] = []

    def fn(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    # The batch is never full: only the timeout can send it, with both requests in it.
    batcher, _ = make_batcher(max_batch_size=100, batch_timeout_micros=1_500_000)
    try:
        pending = [pool.submit(batcher.run, "k", rows(float(i)), fn) for i in range(2)]
        assert [f.result(WAIT_S)["y"].tolist() for f in pending] == [[0.0], [1.0]]
        assert calls == [2]
    finally:
        batcher.stop()


def test_a_full_batch_runs_without_waiting_for_the_timeout(
    pool: futures.ThreadPoolExecutor,
) -> None:
    calls: list[int] = []

    def fn(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    batcher, _ = make_batcher(max_batch_size=3, batch_timeout_micros=600_000_000)
    try:
        pending = [pool.submit(batcher.run, "k", r, fn) for r in (rows(1.0, 2.0), rows(3.0))]
        # A ten-minute timeout: only a full batch can answer within WAIT_S.
        assert [f.result(WAIT_S)["y"].tolist() for f in pending] == [[1.0, 2.0], [3.0]]
        assert calls == [3]
    finally:
        batcher.stop()


def test_a_full_queue_answers_resource_exhausted(
    model: Model, pool: futures.ThreadPoolExecutor
) -> None:
    batcher, _ = make_batcher(max_batch_size=1, max_enqueued_batches=1)
    try:
        first = hold_first_call(batcher, model, pool)  # running: no longer queued
        queued = pool.submit(batcher.run, "k", rows(1.0), model)
        wait_for(lambda: batcher.pending() == 1)
        with pytest.raises(ServableError, match="queue .* is full") as info:
            batcher.run("k", rows(2.0), model)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        other_queue = pool.submit(batcher.run, "other", rows(2.0), model)  # has its own room
        wait_for(lambda: batcher.pending() == 2)
    finally:
        assert model.gate is not None
        model.gate.set()
        batcher.stop()
    assert first.result(WAIT_S)["y"].tolist() == [201.0]
    assert queued.result(WAIT_S)["y"].tolist() == [3.0]
    assert other_queue.result(WAIT_S)["y"].tolist() == [5.0]


def test_stop_runs_what_is_queued_then_refuses_new_requests(
    model: Model, pool: futures.ThreadPoolExecutor
) -> None:
    batcher, _ = make_batcher(max_batch_size=8, batch_timeout_micros=600_000_000)
    waiting = pool.submit(batcher.run, "k", rows(4.0), model)  # would wait ten minutes
    wait_for(lambda: batcher.pending() == 1)
    batcher.stop()
    assert waiting.result(WAIT_S)["y"].tolist() == [9.0]
    with pytest.raises(ServableError) as info:
        batcher.run("k", rows(1.0), model)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_batching_parameters_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "batching.config"
    path.write_text(
        "# as TF Serving reads it\n"
        "max_batch_size { value: 64 }\n"
        "batch_timeout_micros { value: 2500 }  # µs\n"
        "num_batch_threads { value: 3 } max_enqueued_batches { value: 7 }\n"
        "pad_variable_length_inputs: true\n"
        'thread_pool_name { value: "pool" }\n',
        encoding="utf-8",
    )
    options = read_batching_parameters(path)
    assert options == BatchingOptions(
        max_batch_size=64, batch_timeout_micros=2500, num_batch_threads=3, max_enqueued_batches=7
    )
    assert "pad_variable_length_inputs is not supported" in caplog.text

    defaults = tmp_path / "empty.config"
    defaults.write_text("", encoding="utf-8")
    assert read_batching_parameters(defaults).max_batch_size == BatchingOptions().max_batch_size

    for text, message in (
        ("max_batch_size { value: many }", "use an integer"),
        ("max_batch_size { value: 0 }", "max_batch_size=0"),
        ("batch_size { value: 4 }", "unknown batching field 'batch_size'"),
        ("max_batch_size = 4", "cannot parse"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            read_batching_parameters(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_batching_parameters(tmp_path / "missing.config")


@pytest.mark.parametrize(
    "options",
    [{"max_batch_size": 0}, {"num_batch_threads": 0}, {"batch_timeout_micros": -1}],
)
def test_batching_options_validate_themselves(options: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="batching"):
        BatchingOptions(**options)
