"""The feature language compiled to Spark columns (the TensorFlow twin: models/tabular/derive.py).

Both compilers walk the same tree (:mod:`aimass.data.spec.expr`) and spell out the same
arithmetic, so a derived feature written to the lake equals the one the SavedModel computes
from raw columns: date parts are computed from the digits of the string or from Unix
seconds with the civil-calendar arithmetic of ``aimass.data.spec.calendar``, not with Spark's date functions, whose
parsing rules TensorFlow has no twin for. ``tests/integration/test_derived_parity.py``
computes every derived feature of every shipped spec both ways and compares them.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from aimass.data.spec import calendar, expr
from aimass.data.spec.expr import BOOL, DOUBLE, LONG, STRING


def _lit(node: expr.Lit) -> Column:
    if node.type == "null":
        return F.lit(None)
    if node.type == DOUBLE:
        return F.lit(float(node.value)).cast("double")  # type: ignore[arg-type]
    if node.type == LONG:
        return F.lit(int(node.value)).cast("long")  # type: ignore[arg-type]
    return F.lit(node.value)


def _floordiv(a: Column, b: int) -> Column:
    """``floor(a / b)`` as a long for a long ``a`` and a positive constant ``b``."""
    return F.floor(a.cast("double") / F.lit(float(b))).cast("long")


def _select(cond: Column, a: Column | int, b: Column | int) -> Column:
    return F.when(cond, a).otherwise(b)


def days_from_civil(y: Column, m: Column, d: Column) -> Column:
    """Days since 1970-01-01 of a proleptic Gregorian date (``aimass.data.spec.calendar``)."""
    return calendar.days_from_civil(y, m, d, floordiv=_floordiv, select=_select)


def civil_from_days(days: Column) -> tuple[Column, Column, Column]:
    """(year, month, day) of a day number since 1970-01-01."""
    return calendar.civil_from_days(days, floordiv=_floordiv, select=_select)


def _string_parts(s: Column) -> dict[str, Column]:
    """year..minute of a date string; null where it does not match or is out of range."""
    ok = s.rlike(expr.DATE_PATTERN)

    def group(i: int) -> Column:
        text = F.regexp_extract(s, expr.DATE_PATTERN, i)
        return F.when(ok & (text != ""), text.try_cast("long"))

    parts = {"year": group(1), "month": group(2), "day": group(3)}
    parts["hour"] = F.when(ok, F.coalesce(group(4), F.lit(0).cast("long")))
    parts["minute"] = F.when(ok, F.coalesce(group(5), F.lit(0).cast("long")))
    valid = F.lit(True)
    for name, (lo, hi) in expr.PART_RANGES.items():
        valid = valid & parts[name].between(lo, hi)
    return {name: F.when(valid, part) for name, part in parts.items()}


def _date_part(fn: str, value: Column, kind: str) -> Column:
    if kind == STRING:
        parts = _string_parts(value)
        days = days_from_civil(parts["year"], parts["month"], parts["day"])
    else:
        seconds = value.cast("long")
        days = _floordiv(seconds, expr.SECONDS_PER_DAY)
        of_day = seconds - days * expr.SECONDS_PER_DAY
        y, m, d = civil_from_days(days)
        parts = {
            "year": y,
            "month": m,
            "day": d,
            "hour": _floordiv(of_day, 3600),
            "minute": _floordiv(of_day, 60) - _floordiv(of_day, 3600) * 60,
        }
    if fn in parts:
        return parts[fn].cast("long")
    if fn == "dayofweek":  # 1970-01-01 was a Thursday (5 with Sunday = 1)
        return (F.pmod(days + 4, F.lit(7)) + 1).cast("long")
    jan1 = days_from_civil(parts["year"], F.lit(1).cast("long"), F.lit(1).cast("long"))
    return (days - jan1 + 1).cast("long")


def time_seconds(value: Column, kind: str) -> Column:
    """Unix seconds of a date string (to the minute) or of a long of Unix seconds."""
    if kind != STRING:
        return value.cast("long")
    parts = _string_parts(value)
    days = days_from_civil(parts["year"], parts["month"], parts["day"])
    return days * expr.SECONDS_PER_DAY + parts["hour"] * 3600 + parts["minute"] * 60


class SparkCompiler:
    """Compile feature-language trees to Spark columns over ``types`` (column -> type)."""

    def __init__(self, types: dict[str, str]) -> None:
        self.types = dict(types)

    def column(self, compiled: expr.Compiled) -> Column:
        """The derived column cast to its declared type."""
        value = self.compile(compiled.tree)
        return value.cast({DOUBLE: "double", LONG: "long", STRING: "string"}[compiled.declared])

    def compile(self, node: expr.Node) -> Column:
        kind = expr.infer(node, self.types)
        if isinstance(node, expr.Col):
            return F.col(node.name)
        if isinstance(node, expr.Lit):
            return _lit(node)
        if isinstance(node, expr.Unary):
            inner = self.compile(node.operand)
            return -inner if node.op == "-" else ~inner
        if isinstance(node, expr.Binary):
            return self._binary(node, kind)
        if isinstance(node, expr.Case):
            out: Column | None = None
            for cond, value in node.whens:
                branch = self._as(value, kind)
                test = self.compile(cond)
                out = F.when(test, branch) if out is None else out.when(test, branch)
            assert out is not None
            if node.otherwise is not None:
                out = out.otherwise(self._as(node.otherwise, kind))
            return out
        return self._call(node, kind)

    def _as(self, node: expr.Node, kind: str) -> Column:
        value = self.compile(node)
        if kind in (DOUBLE, LONG, STRING):
            return value.cast({DOUBLE: "double", LONG: "long", STRING: "string"}[kind])
        return value

    def _binary(self, node: expr.Binary, kind: str) -> Column:
        a, b = self.compile(node.left), self.compile(node.right)
        op = node.op
        if op == "and":
            return a & b
        if op == "or":
            return a | b
        if op in ("+", "-", "*"):
            target = "long" if kind == LONG else "double"
            a, b = a.cast(target), b.cast(target)
            return a + b if op == "+" else a - b if op == "-" else a * b
        if op == "/":
            return F.when(b != 0, a.cast("double") / b.cast("double"))
        if op == "%":
            target = "long" if kind == LONG else "double"
            return F.when(b != 0, a.cast(target) % b.cast(target))
        left, right = expr.infer(node.left, self.types), expr.infer(node.right, self.types)
        if STRING not in (left, right):
            a, b = a.cast("double"), b.cast("double")
        return {
            "=": lambda: a == b,
            "!=": lambda: a != b,
            "<": lambda: a < b,
            "<=": lambda: a <= b,
            ">": lambda: a > b,
            ">=": lambda: a >= b,
        }[op]()

    def _call(self, node: expr.Call, kind: str) -> Column:
        fn = node.fn
        args = [self.compile(a) for a in node.args]
        if fn == "abs":
            return F.abs(args[0])
        if fn == "log":
            x = args[0].cast("double")
            return F.when(x > 0, F.log(x))
        if fn == "sqrt":
            x = args[0].cast("double")
            return F.when(x >= 0, F.sqrt(x))
        if fn == "clip":
            target = "long" if kind == LONG else "double"
            x, lo, hi = (a.cast(target) for a in args)
            return F.when(x < lo, lo).when(x > hi, hi).otherwise(x)
        if fn == "coalesce":
            return F.coalesce(*(self._as(a, kind) for a in node.args))
        if fn in expr.DATE_PARTS:
            return _date_part(fn, args[0], expr.infer(node.args[0], self.types))
        if fn == "concat":
            return F.concat(*(a.cast("string") for a in args))
        if fn == "lower":
            return F.lower(args[0])
        return F.upper(args[0])


def derived_columns(
    spec_types: dict[str, str], compiled: tuple[expr.Compiled, ...]
) -> dict[str, Column]:
    """name -> Spark column for each feature-language derived column (in order)."""
    compiler = SparkCompiler(spec_types)
    return {c.name: compiler.column(c) for c in compiled}


__all__ = [
    "BOOL",
    "SparkCompiler",
    "civil_from_days",
    "days_from_civil",
    "derived_columns",
    "time_seconds",
]
