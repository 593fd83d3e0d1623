"""The feature language compiled to TensorFlow ops, and value normalization, inside the model.

The SavedModel takes the raw columns a client has (``DatasetSpec.model_inputs``), written
as the source file writes them, and computes what the clean job computed before training:

- :class:`Normalize` trims spaces and tabs around a string (``source.trim``), turns the null
  tokens (``source.null_values``, and the empty string) into the missing value ``""`` and
  folds the case ``source.case`` asks for, as ``jobs.clean.transforms.normalized`` does;
- :class:`Derive` computes one derived feature from the columns it reads, walking the same
  tree (:mod:`aimass.data.spec.expr`) as the Spark compiler (``jobs/clean/derive.py``).

A value here is a pair ``(tensor, valid)`` of shape ``[batch]``: SQL's null is ``valid ==
False``. Inputs come with the wire's missing values (NaN for double, -1 for long, "" for
string) and a derived feature leaves with them, so the encoders downstream see one encoding
of "missing" whether a feature was derived or sent. Date parts use the civil-calendar
arithmetic of the Spark twin, and ``tests/integration/test_derived_parity.py`` checks that
both give equal values on every shipped spec's sample data.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras

from aimass.data.spec import DatasetSpec, calendar, expr
from aimass.data.spec.expr import BOOL, DOUBLE, LONG, STRING

# What ``source.trim`` strips around a field (jobs/clean/transforms.py TRIM_CHARACTERS).
_TRIM = r"^[ \t]+|[ \t]+$"
_TF_TYPES = {DOUBLE: tf.float64, LONG: tf.int64, STRING: tf.string, BOOL: tf.bool}

Value = tuple[tf.Tensor, tf.Tensor]


@tf_keras.saving.register_keras_serializable(package="aimass")
class Normalize(tf_keras.layers.Layer):
    """A raw string column as the clean job reads it: trimmed, null tokens as "", one case."""

    def __init__(
        self,
        trim: bool = True,
        null_values: list[str] | tuple[str, ...] = (),
        case: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trim = bool(trim)
        self.null_values = [str(v) for v in null_values]
        self.case = case

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        value = tf.strings.regex_replace(inputs, _TRIM, "") if self.trim else inputs
        missing = tf.equal(value, "")
        for token in self.null_values:
            missing = tf.logical_or(missing, tf.equal(value, token))
        if self.case == "lower":
            value = tf.strings.lower(value, encoding="utf-8")
        elif self.case == "upper":
            value = tf.strings.upper(value, encoding="utf-8")
        return tf.where(missing, tf.constant("", tf.string), value)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "trim": self.trim,
            "null_values": list(self.null_values),
            "case": self.case,
        }


def _floordiv(a: tf.Tensor, b: int) -> tf.Tensor:
    return tf.math.floordiv(a, tf.constant(b, tf.int64))


def _select(cond: tf.Tensor, a: tf.Tensor | int, b: tf.Tensor | int) -> tf.Tensor:
    def tensor(x: tf.Tensor | int) -> tf.Tensor:
        return tf.fill(tf.shape(cond), tf.constant(x, tf.int64)) if isinstance(x, int) else x

    return tf.where(cond, tensor(a), tensor(b))


def days_from_civil(y: tf.Tensor, m: tf.Tensor, d: tf.Tensor) -> tf.Tensor:
    """Days since 1970-01-01 of a proleptic Gregorian date (``aimass.data.spec.calendar``)."""
    return calendar.days_from_civil(y, m, d, floordiv=_floordiv, select=_select)


def civil_from_days(days: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(year, month, day) of a day number since 1970-01-01."""
    return calendar.civil_from_days(days, floordiv=_floordiv, select=_select)


def _string_parts(s: tf.Tensor, valid: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """year..minute of date strings, and where they are valid (matched and in range)."""
    ok = tf.logical_and(valid, tf.strings.regex_full_match(s, expr.DATE_PATTERN))
    safe = tf.where(ok, s, tf.constant("1970-01-01", tf.string))

    def group(i: int) -> tf.Tensor:
        text = tf.strings.regex_replace(safe, expr.DATE_PATTERN, f"\\{i}")
        text = tf.where(tf.equal(text, ""), tf.constant("0", tf.string), text)
        return tf.strings.to_number(text, out_type=tf.int64)

    parts = {
        name: group(i + 1) for i, name in enumerate(("year", "month", "day", "hour", "minute"))
    }
    for name, (lo, hi) in expr.PART_RANGES.items():
        ok = tf.logical_and(ok, tf.logical_and(parts[name] >= lo, parts[name] <= hi))
    return parts, ok


def _date_part(fn: str, value: Value, kind: str) -> Value:
    x, valid = value
    if kind == STRING:
        parts, valid = _string_parts(x, valid)
        days = days_from_civil(parts["year"], parts["month"], parts["day"])
    else:
        seconds = tf.where(valid, x, tf.zeros_like(x))
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
        return parts[fn], valid
    if fn == "dayofweek":  # 1970-01-01 was a Thursday (5 with Sunday = 1)
        return tf.math.floormod(days + 4, tf.constant(7, tf.int64)) + 1, valid
    one = tf.ones_like(days)
    return days - days_from_civil(parts["year"], one, one) + 1, valid


def _cast(value: Value, kind: str, target: str) -> Value:
    """``value`` of expression type ``kind`` as ``target``, as Spark's cast does."""
    x, valid = value
    if kind == target:
        return value
    if target == STRING:  # only longs are cast to strings (expr.castable)
        return tf.strings.as_string(x), valid
    if kind == STRING:
        raise expr.ExpressionError(f"a string cannot be used as {target}")
    return tf.cast(x, _TF_TYPES[target]), valid


def _and(a: Value, b: Value) -> Value:
    (x, vx), (y, vy) = a, b
    false_x, false_y = tf.logical_and(vx, ~x), tf.logical_and(vy, ~y)
    is_false = tf.logical_or(false_x, false_y)
    return tf.logical_and(~is_false, tf.logical_and(x, y)), tf.logical_or(
        is_false, tf.logical_and(vx, vy)
    )


def _or(a: Value, b: Value) -> Value:
    (x, vx), (y, vy) = a, b
    is_true = tf.logical_or(tf.logical_and(vx, x), tf.logical_and(vy, y))
    return is_true, tf.logical_or(is_true, tf.logical_and(vx, vy))


class TensorCompiler:
    """Compile feature-language trees to TF ops over ``values`` (column -> Value)."""

    def __init__(self, types: dict[str, str], values: dict[str, Value], like: tf.Tensor) -> None:
        self.types = types
        self.values = values
        self.like = like  # any [batch] tensor: literals are broadcast to its shape

    def compile(self, node: expr.Node) -> Value:
        kind = expr.infer(node, self.types)
        if isinstance(node, expr.Col):
            return self.values[node.name]
        if isinstance(node, expr.Lit):
            return self._lit(node, kind)
        if isinstance(node, expr.Unary):
            x, valid = self.compile(node.operand)
            if node.op == "not":
                return ~x, valid
            return -x, valid
        if isinstance(node, expr.Binary):
            return self._binary(node, kind)
        if isinstance(node, expr.Case):
            return self._case(node, kind)
        return self._call(node, kind)

    def _fill(self, value: Any, dtype: tf.DType) -> tf.Tensor:
        return tf.fill(tf.shape(self.like), tf.constant(value, dtype))

    def _lit(self, node: expr.Lit, kind: str) -> Value:
        if node.type == "null":
            return self._fill(0.0, tf.float64), self._fill(False, tf.bool)
        return self._fill(node.value, _TF_TYPES[kind]), self._fill(True, tf.bool)

    def _null(self, kind: str) -> Value:
        zero: Any = "" if kind == STRING else False if kind == BOOL else 0
        return self._fill(zero, _TF_TYPES[kind]), self._fill(False, tf.bool)

    def _as(self, node: expr.Node, kind: str) -> Value:
        found = expr.infer(node, self.types)
        if found == "null":
            return self._null(kind)
        return _cast(self.compile(node), found, kind)

    def _binary(self, node: expr.Binary, kind: str) -> Value:
        op = node.op
        if op in ("and", "or"):
            a, b = self._as(node.left, BOOL), self._as(node.right, BOOL)
            return _and(a, b) if op == "and" else _or(a, b)
        left, right = expr.infer(node.left, self.types), expr.infer(node.right, self.types)
        if op in expr.ARITHMETIC:
            target = LONG if kind == LONG else DOUBLE
            (x, vx), (y, vy) = self._as(node.left, target), self._as(node.right, target)
            valid = tf.logical_and(vx, vy)
            if op in ("/", "%"):
                nonzero = tf.not_equal(y, tf.zeros_like(y))
                valid = tf.logical_and(valid, nonzero)
                y = tf.where(nonzero, y, tf.ones_like(y))
                out = tf.truncatemod(x, y) if op == "%" else x / y
            else:
                out = x + y if op == "+" else x - y if op == "-" else x * y
            return out, valid
        target = STRING if STRING in (left, right) else DOUBLE
        (x, vx), (y, vy) = self._as(node.left, target), self._as(node.right, target)
        compare = {
            "=": tf.equal,
            "!=": tf.not_equal,
            "<": tf.less,
            "<=": tf.less_equal,
            ">": tf.greater,
            ">=": tf.greater_equal,
        }[op]
        return compare(x, y), tf.logical_and(vx, vy)

    def _case(self, node: expr.Case, kind: str) -> Value:
        out, valid = self._null(kind) if node.otherwise is None else self._as(node.otherwise, kind)
        for cond, branch in reversed(node.whens):  # the first true WHEN wins
            c, vc = self._as(cond, BOOL)
            taken = tf.logical_and(vc, c)
            x, vx = self._as(branch, kind)
            out, valid = tf.where(taken, x, out), tf.where(taken, vx, valid)
        return out, valid

    def _call(self, node: expr.Call, kind: str) -> Value:
        fn = node.fn
        if fn in expr.DATE_PARTS:
            arg = node.args[0]
            return _date_part(fn, self.compile(arg), expr.infer(arg, self.types))
        if fn in ("concat", "lower", "upper"):
            args = [self._as(a, STRING) for a in node.args]
            valid = args[0][1]
            for _, v in args[1:]:
                valid = tf.logical_and(valid, v)
            if fn == "concat":
                return tf.strings.join([x for x, _ in args]), valid
            change = tf.strings.lower if fn == "lower" else tf.strings.upper
            return change(args[0][0], encoding="utf-8"), valid
        if fn == "coalesce":
            out, valid = self._null(kind)
            for arg in reversed(node.args):
                x, vx = self._as(arg, kind)
                out, valid = tf.where(vx, x, out), tf.logical_or(vx, valid)
            return out, valid
        if fn == "abs":
            x, valid = self._as(node.args[0], kind)
            return tf.abs(x), valid
        if fn == "clip":
            (x, valid), (lo, _), (hi, _) = (self._as(a, kind) for a in node.args)
            return tf.where(x < lo, lo, tf.where(x > hi, hi, x)), valid
        x, valid = self._as(node.args[0], DOUBLE)  # log, sqrt
        if fn == "log":
            ok = x > 0
            return tf.math.log(tf.where(ok, x, tf.ones_like(x))), tf.logical_and(valid, ok)
        ok = x >= 0
        return tf.sqrt(tf.where(ok, x, tf.zeros_like(x))), tf.logical_and(valid, ok)


def wire_value(tensor: tf.Tensor, kind: str) -> Value:
    """A model input with the wire's missing values as a (tensor, valid) pair of ``kind``."""
    if kind == DOUBLE:
        x = tf.cast(tensor, tf.float64)
        valid = ~tf.math.is_nan(x)
        return tf.where(valid, x, tf.zeros_like(x)), valid
    if kind == LONG:
        x = tf.cast(tensor, tf.int64)
        return x, tf.not_equal(x, -1)
    return tensor, tf.not_equal(tensor, "")


def to_wire(value: Value, declared: str) -> tf.Tensor:
    """A (tensor, valid) pair of spec type ``declared`` with the wire's missing values."""
    x, valid = value
    if declared == DOUBLE:
        return tf.where(valid, tf.cast(x, tf.float32), tf.constant(float("nan"), tf.float32))
    if declared == LONG:
        return tf.where(valid, x, tf.constant(-1, tf.int64))
    return tf.where(valid, x, tf.constant("", tf.string))


@tf_keras.saving.register_keras_serializable(package="aimass")
class Derive(tf_keras.layers.Layer):
    """One derived feature, from the (normalized) columns it reads, as the clean job derives it.

    Args:
        column: the derived column's name (``derived.<column>`` in the spec).
        expression: its feature-language expression.
        declared: its spec type (double, long or string); the output has the wire dtype and
            missing value of that type.
        types: spec type of every column the expression reads.
    """

    def __init__(
        self, column: str, expression: str, declared: str, types: dict[str, str], **kwargs: Any
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._autocast = False  # the inputs keep their dtypes under mixed precision
        self.column = column
        self.expression = expression
        self.declared = declared
        self.types = dict(types)
        self.compiled = expr.check(column, expression, declared, self.types)

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        values = {name: wire_value(inputs[name], self.types[name]) for name in self.compiled.reads}
        like = inputs[self.compiled.reads[0]] if self.compiled.reads else None
        if like is None:
            raise expr.ExpressionError(f"derived.{self.column} reads no column")
        compiler = TensorCompiler(self.types, values, like)
        found = expr.infer(self.compiled.tree, self.types)
        if found == "null":
            return to_wire(compiler._null(self.declared), self.declared)
        value = _cast(compiler.compile(self.compiled.tree), found, self.declared)
        return to_wire(value, self.declared)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "column": self.column,
            "expression": self.expression,
            "declared": self.declared,
            "types": dict(self.types),
        }


def prepare(spec: DatasetSpec, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Every feature of ``spec`` computed from its raw model inputs, with the wire's fills.

    String inputs are normalized (:class:`Normalize`), then each derived feature (and each
    derived column one reads) is computed in spec order (:class:`Derive`). Works on Keras
    symbolic inputs (the model) and on eager tensors alike.
    """
    case = dict(spec.case)
    values: dict[str, tf.Tensor] = {}
    for name, tensor in inputs.items():
        if spec.dtype(name) == STRING:
            tensor = Normalize(
                spec.trim, spec.null_values, case.get(name), name=f"{name}_normalize"
            )(tensor)
        values[name] = tensor
    for compiled in spec.feature_expressions():
        types = {col: spec.dtype(col) for col in compiled.reads}
        layer = Derive(
            compiled.name,
            next(d.expression for d in spec.derived if d.name == compiled.name),
            compiled.declared,
            types,
            name=f"{compiled.name}_derive",
        )
        values[compiled.name] = layer({col: values[col] for col in compiled.reads})
    return {name: values[name] for name in spec.features}
