"""Civil-calendar arithmetic for the feature language, written once for both compilers.

Date parts of the feature language are integer arithmetic on day numbers (H. Hinnant's
``days_from_civil``/``civil_from_days``), not a date library: Spark columns and TensorFlow
tensors both support ``+ - * <= >``, so the same function computes a Spark column in the
clean job (``jobs/clean/derive.py``) and a tensor inside the SavedModel
(``models/tabular/derive.py``). Each compiler passes the two operations that differ:
``floordiv(a, n)`` (floor division by a positive constant) and ``select(cond, a, b)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FloorDiv = Callable[[Any, int], Any]
Select = Callable[[Any, Any, Any], Any]


def days_from_civil(y: Any, m: Any, d: Any, *, floordiv: FloorDiv, select: Select) -> Any:
    """Days since 1970-01-01 of a proleptic Gregorian year, month and day."""
    y = y - select(m <= 2, 1, 0)
    era = floordiv(y, 400)
    yoe = y - era * 400
    mp = select(m > 2, m - 3, m + 9)
    doy = floordiv(153 * mp + 2, 5) + d - 1
    doe = yoe * 365 + floordiv(yoe, 4) - floordiv(yoe, 100) + doy
    return era * 146097 + doe - 719468


def civil_from_days(days: Any, *, floordiv: FloorDiv, select: Select) -> tuple[Any, Any, Any]:
    """(year, month, day) of a day number since 1970-01-01."""
    z = days + 719468
    era = floordiv(z, 146097)
    doe = z - era * 146097
    yoe = floordiv(doe - floordiv(doe, 1460) + floordiv(doe, 36524) - floordiv(doe, 146096), 365)
    doy = doe - (365 * yoe + floordiv(yoe, 4) - floordiv(yoe, 100))
    mp = floordiv(5 * doy + 2, 153)
    d = doy - floordiv(153 * mp + 2, 5) + 1
    m = select(mp < 10, mp + 3, mp - 9)
    y = yoe + era * 400 + select(m <= 2, 1, 0)
    return y, m, d
