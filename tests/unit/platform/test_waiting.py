"""poll_until: the one wait loop (Airflow runs, services starting, DAGs being parsed)."""

from __future__ import annotations

from typing import NoReturn

import pytest

from aimass.platform.errors import StageError
from aimass.platform.waiting import poll_until

pytestmark = pytest.mark.unit


def _never() -> NoReturn:
    raise StageError("still waiting")


def test_returns_the_first_answer_that_is_not_none() -> None:
    answers = iter([None, None, "done"])
    assert poll_until(lambda: next(answers), timeout_s=5, interval_s=0, on_timeout=_never) == (
        "done"
    )


def test_times_out_with_the_callers_error() -> None:
    with pytest.raises(StageError, match="still waiting"):
        poll_until(lambda: None, timeout_s=0.05, interval_s=0.01, on_timeout=_never)


def test_an_error_of_the_check_ends_the_wait_at_once() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise StageError("the service exited")

    with pytest.raises(StageError, match="the service exited"):
        poll_until(check, timeout_s=5, interval_s=0, on_timeout=_never)
    assert calls == [1]
