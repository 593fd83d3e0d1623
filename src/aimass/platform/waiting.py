"""Waiting for something to become true, on tenacity: one poll loop for the whole platform."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float,
    on_timeout: Callable[[], NoReturn],
) -> T:
    """Call ``check`` every ``interval_s`` until it returns something other than None.

    An exception from ``check`` ends the wait at once (it means "this will not get better");
    after ``timeout_s`` seconds ``on_timeout`` raises the error that says what was waited for.
    """

    def timed_out(_: RetryCallState) -> NoReturn:
        on_timeout()

    retrying = Retrying(
        retry=retry_if_result(lambda result: result is None),
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry_error_callback=timed_out,
        reraise=True,
    )
    result = retrying(check)
    assert result is not None  # retry_if_result only lets a value through
    return result
