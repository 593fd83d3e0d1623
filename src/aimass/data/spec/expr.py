"""The feature expression language: derived features that compile to Spark and to TensorFlow.

A derived column that the model uses as a feature is computed twice: by the clean job (a
Spark column, written to the lake) and inside the SavedModel (TensorFlow ops), so a client
sends raw columns only. Both compilers (``jobs/clean/derive.py``, ``models/tabular/derive.py``)
walk the tree this module parses, so the two cannot disagree on what an expression means.

The language (docs/datasets.md, "Derived features"):

- column names, numbers (``3600``, ``0.2``), strings (``'cash'``), ``true``/``false``/``null``;
- ``+ - * / %``, unary ``-``; ``/`` always gives a double, and ``/`` or ``%`` by zero is null;
- ``= != <> < <= > >=`` (strings compare with ``=``/``!=`` only), ``AND OR NOT`` with SQL's
  three-valued logic;
- ``CASE WHEN c THEN x [WHEN ...] [ELSE y] END`` and ``if(c, x, y)`` (no ELSE is null);
- ``abs(x)``, ``log(x)`` (natural, null for x <= 0), ``sqrt(x)`` (null for x < 0),
  ``clip(x, lo, hi)`` (number bounds), ``coalesce(a, b, ...)``;
- ``year month day hour minute dayofweek dayofyear`` of a date or timestamp column: a
  string ``YYYY-MM-DD[ HH:MM[:SS[.fff]]]`` (``/`` may separate the date's parts, ``T`` the
  date and time) or a long of
  Unix seconds (UTC). ``dayofweek`` counts Sunday as 1, as Spark does. A string that does
  not match, or a month/day/hour/minute out of range, gives null;
- ``concat(a, b, ...)`` of strings and longs, ``lower(s)``, ``upper(s)``.

Nulls propagate: any null operand gives null (except ``AND``/``OR``, ``coalesce`` and
``CASE``). Every construct outside this list is refused with its name, so the spec check can
say what to rewrite. Rules and the label expression are never served; they stay Spark SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from aimass.platform.errors import ConfigError

# Expression types: the spec's column types plus bool (comparisons, AND/OR/NOT).
DOUBLE, LONG, STRING, BOOL = "double", "long", "string", "bool"
NUMBER = (DOUBLE, LONG)

# A date or timestamp string both compilers accept; groups: year, month, day, hour, minute.
DATE_PATTERN = r"^(\d{4})[-/](\d{2})[-/](\d{2})(?:[ T](\d{2}):(\d{2})(?::\d{2}(?:\.\d*)?)?)?$"
DATE_PARTS = ("year", "month", "day", "hour", "minute", "dayofweek", "dayofyear")
# Upper bounds of each captured part (1-based lower bound for month/day, 0 for hour/minute).
PART_RANGES = {"month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59)}
SECONDS_PER_DAY = 86400

MATH = ("abs", "log", "sqrt", "clip", "coalesce", "if")
STRINGS = ("concat", "lower", "upper")
FUNCTIONS = (*MATH, *DATE_PARTS, *STRINGS)
ARITHMETIC = ("+", "-", "*", "/", "%")
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")


class ExpressionError(ConfigError):
    """An expression outside the feature language, or one whose types do not fit."""


# -- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    name: str


@dataclass(frozen=True)
class Lit:
    value: float | int | str | bool | None
    type: str  # DOUBLE, LONG, STRING, BOOL or "null"


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # ARITHMETIC, COMPARISONS, "and", "or"
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Case:
    whens: tuple[tuple[Node, Node], ...]
    otherwise: Node | None


Node = Col | Lit | Unary | Binary | Call | Case


def columns(node: Node) -> Iterator[str]:
    """The column names ``node`` reads, in order of appearance (repeats included)."""
    if isinstance(node, Col):
        yield node.name
    elif isinstance(node, Unary):
        yield from columns(node.operand)
    elif isinstance(node, Binary):
        yield from columns(node.left)
        yield from columns(node.right)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from columns(arg)
    elif isinstance(node, Case):
        for cond, value in node.whens:
            yield from columns(cond)
            yield from columns(value)
        if node.otherwise is not None:
            yield from columns(node.otherwise)


# -- parsing ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<string>'(?:[^']|'')*')"
    r"|(?P<name>`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><>|!=|<=|>=|==|\|\||[-+*/%(),=<>]))"
)
_KEYWORDS = {"and", "or", "not", "case", "when", "then", "else", "end", "true", "false", "null"}
# Words of Spark SQL that people reach for; refused by name so the message can point at them.
_SQL_ONLY = {"between", "in", "like", "rlike", "is", "cast", "distinct", "over", "select"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, string, name, keyword, op, end
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            bad = text[pos:].lstrip()[:1]
            raise ExpressionError(f"character {bad!r} at position {pos} is not in the language")
        kind = m.lastgroup or "op"
        value, start = m.group(kind), m.start(kind)
        if kind == "name" and not value.startswith("`") and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        out.append(_Tok(kind, value, start))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    """Precedence climbing: OR < AND < NOT < comparison < + - < * / % < unary minus."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, text: str) -> bool:
        tok = self.peek()
        if tok.kind == kind and tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, kind: str, text: str) -> None:
        if not self.accept(kind, text):
            tok = self.peek()
            found = tok.text or "the end"
            raise ExpressionError(f"expected '{text}' at position {tok.pos}, found '{found}'")

    def parse(self) -> Node:
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise ExpressionError(self._unsupported(tok))
        return node

    def _unsupported(self, tok: _Tok) -> str:
        word = tok.text.lower()
        if word in _SQL_ONLY:
            return (
                f"'{word.upper()}' (position {tok.pos}) is Spark SQL, not the feature language; "
                "write it with comparisons, AND/OR and CASE WHEN"
            )
        if tok.text == "||":
            return "'||' is not in the language; use concat(a, b)"
        return f"unexpected '{tok.text}' at position {tok.pos}"

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("keyword", "or"):
            node = Binary("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("keyword", "and"):
            node = Binary("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.accept("keyword", "not"):
            return Unary("not", self.not_())
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            self.take()
            op = {"==": "=", "<>": "!="}.get(tok.text, tok.text)
            node = Binary(op, node, self.additive())
        elif tok.kind == "name" and tok.text.lower() in _SQL_ONLY:
            raise ExpressionError(self._unsupported(tok))
        return node

    def additive(self) -> Node:
        node = self.term()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            node = Binary(self.take().text, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/", "%"):
            node = Binary(self.take().text, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept("op", "-"):
            operand = self.unary()
            if isinstance(operand, Lit) and operand.type in NUMBER:
                return Lit(-operand.value, operand.type)  # type: ignore[operator]
            return Unary("-", operand)
        if self.accept("op", "+"):
            return self.unary()
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            if re.fullmatch(r"\d+", tok.text):
                return Lit(int(tok.text), LONG)
            return Lit(float(tok.text), DOUBLE)
        if tok.kind == "string":
            return Lit(tok.text[1:-1].replace("''", "'"), STRING)
        if tok.kind == "keyword":
            if tok.text in ("true", "false"):
                return Lit(tok.text == "true", BOOL)
            if tok.text == "null":
                return Lit(None, "null")
            if tok.text == "case":
                return self.case()
        if tok.kind == "op" and tok.text == "(":
            node = self.or_()
            self.expect("op", ")")
            return node
        if tok.kind == "name":
            name = tok.text.strip("`")
            if not tok.text.startswith("`") and self.peek().text == "(":
                return self.call(name.lower(), tok)
            if name.lower() in _SQL_ONLY:
                raise ExpressionError(self._unsupported(tok))
            return Col(name)
        if tok.kind == "end":
            raise ExpressionError("the expression ends too early")
        raise ExpressionError(self._unsupported(tok))

    def call(self, fn: str, tok: _Tok) -> Node:
        if fn not in FUNCTIONS:
            raise ExpressionError(
                f"function {fn}() (position {tok.pos}) is not in the language; it has "
                f"{', '.join(f + '()' for f in FUNCTIONS)}"
            )
        self.expect("op", "(")
        args: list[Node] = []
        if not self.accept("op", ")"):
            args.append(self.or_())
            while self.accept("op", ","):
                args.append(self.or_())
            self.expect("op", ")")
        if fn == "if":
            if len(args) != 3:
                raise ExpressionError("if() takes (condition, value, otherwise)")
            return Case(((args[0], args[1]),), args[2])
        return Call(fn, tuple(args))

    def case(self) -> Node:
        whens: list[tuple[Node, Node]] = []
        while self.accept("keyword", "when"):
            cond = self.or_()
            self.expect("keyword", "then")
            whens.append((cond, self.or_()))
        if not whens:
            raise ExpressionError("CASE needs at least one WHEN ... THEN ...")
        otherwise = self.or_() if self.accept("keyword", "else") else None
        self.expect("keyword", "end")
        return Case(tuple(whens), otherwise)


def parse(text: str) -> Node:
    """Parse ``text`` into a tree; raise :class:`ExpressionError` naming what is not allowed."""
    if not text or not text.strip():
        raise ExpressionError("the expression is empty")
    return _Parser(text).parse()


# -- types -----------------------------------------------------------------------------------


def _fit(types: list[str], where: str) -> str:
    """The common type of CASE branches or coalesce arguments (null fits anything)."""
    known = [t for t in types if t != "null"]
    if not known:
        return "null"
    if all(t == LONG for t in known):
        return LONG
    if all(t in NUMBER for t in known):
        return DOUBLE
    if all(t == known[0] for t in known):
        return known[0]
    raise ExpressionError(f"{where} mixes types {sorted(set(known))}; give every branch one type")


def infer(node: Node, types: Mapping[str, str]) -> str:
    """The type of ``node`` given column types; raise :class:`ExpressionError` on a misfit."""
    if isinstance(node, Col):
        if node.name not in types:
            raise ExpressionError(
                f"column '{node.name}' is not in the schema (or an earlier derived column)"
            )
        return types[node.name]
    if isinstance(node, Lit):
        return node.type
    if isinstance(node, Unary):
        inner = infer(node.operand, types)
        if node.op == "-":
            _numbers([inner], "unary -")
            return inner if inner != "null" else DOUBLE
        _bools([inner], "NOT")
        return BOOL
    if isinstance(node, Binary):
        left, right = infer(node.left, types), infer(node.right, types)
        if node.op in ("and", "or"):
            _bools([left, right], node.op.upper())
            return BOOL
        if node.op in ARITHMETIC:
            _numbers([left, right], f"'{node.op}'")
            if node.op != "/" and left in (LONG, "null") and right in (LONG, "null"):
                return LONG
            return DOUBLE
        if STRING in (left, right):
            if node.op not in ("=", "!=") or {left, right} - {STRING, "null"}:
                raise ExpressionError(
                    f"'{node.op}' between {left} and {right}: strings compare only with = "
                    "and != to strings"
                )
            return BOOL
        _numbers([left, right], f"'{node.op}'")
        return BOOL
    if isinstance(node, Case):
        for cond, _ in node.whens:
            _bools([infer(cond, types)], "WHEN")
        branches = [infer(v, types) for _, v in node.whens]
        if node.otherwise is not None:
            branches.append(infer(node.otherwise, types))
        out = _fit(branches, "CASE")
        return DOUBLE if out == "null" else out
    return _infer_call(node, types)


def _infer_call(node: Call, types: Mapping[str, str]) -> str:
    fn, args = node.fn, [infer(a, types) for a in node.args]
    arity = {"abs": 1, "log": 1, "sqrt": 1, "clip": 3, "lower": 1, "upper": 1}
    arity.update(dict.fromkeys(DATE_PARTS, 1))
    if fn in arity and len(args) != arity[fn]:
        raise ExpressionError(f"{fn}() takes {arity[fn]} argument(s), got {len(args)}")
    if fn in ("coalesce", "concat") and len(args) < 2:
        raise ExpressionError(f"{fn}() takes two or more arguments")
    if fn in ("abs", "log", "sqrt"):
        _numbers(args, f"{fn}()")
        return LONG if fn == "abs" and args[0] == LONG else DOUBLE
    if fn == "clip":
        _numbers(args, "clip()")
        if not all(isinstance(a, Lit) and a.type in NUMBER for a in node.args[1:]):
            raise ExpressionError("clip(x, lo, hi) takes number bounds, e.g. clip(fare, 0, 200)")
        return LONG if all(a == LONG for a in args) else DOUBLE
    if fn == "coalesce":
        out = _fit(args, "coalesce()")
        return DOUBLE if out == "null" else out
    if fn in DATE_PARTS:
        if args[0] not in (STRING, LONG):
            raise ExpressionError(
                f"{fn}() reads a date string (YYYY-MM-DD[ HH:MM[:SS]]) or a long of Unix "
                f"seconds; got {args[0]}"
            )
        return LONG
    if fn == "concat":
        if any(a not in (STRING, LONG, "null") for a in args):
            raise ExpressionError(
                f"concat() joins strings and longs; got {args} (a double has no one way to print)"
            )
        return STRING
    if args[0] not in (STRING, "null"):
        raise ExpressionError(f"{fn}() takes a string, got {args[0]}")
    return STRING


def _numbers(found: list[str], where: str) -> None:
    bad = [t for t in found if t not in (*NUMBER, "null")]
    if bad:
        raise ExpressionError(f"{where} takes numbers, got {bad[0]}")


def _bools(found: list[str], where: str) -> None:
    bad = [t for t in found if t not in (BOOL, "null")]
    if bad:
        raise ExpressionError(f"{where} takes a condition (a comparison), got {bad[0]}")


def castable(found: str, declared: str) -> bool:
    """Whether an expression of type ``found`` may be stored as spec type ``declared``."""
    if declared == STRING:
        return found in (STRING, LONG, "null")
    return found in (*NUMBER, BOOL, "null")


@dataclass(frozen=True)
class Compiled:
    """A derived column in the feature language: its tree, type and the columns it reads."""

    name: str
    tree: Node
    type: str
    declared: str
    reads: tuple[str, ...]


def check(name: str, text: str, declared: str, types: Mapping[str, str]) -> Compiled:
    """Parse and type ``text`` as derived column ``name`` of spec type ``declared``."""
    try:
        tree = parse(text)
        found = infer(tree, types)
    except ExpressionError as exc:
        raise ExpressionError(f"derived.{name}: {exc} (in {text!r})") from None
    if not castable(found, declared):
        raise ExpressionError(
            f"derived.{name}: the expression gives {found} but the type is {declared}; "
            "change type or the expression"
        )
    return Compiled(name, tree, found, declared, tuple(dict.fromkeys(columns(tree))))


def cutoff_seconds(cutoff: str) -> int:
    """Unix seconds of a ``split.cutoff``: Unix seconds, or a date string (to the minute)."""
    if re.fullmatch(r"-?\d+", cutoff.strip()):
        return int(cutoff)
    m = re.match(DATE_PATTERN, cutoff.strip())
    if m is None:
        raise ConfigError(
            f"split.cutoff {cutoff!r} is not a date (YYYY-MM-DD[ HH:MM]) or Unix seconds"
        )
    y, mo, d = (int(g) for g in m.groups()[:3])
    hour, minute = (int(g or 0) for g in m.groups()[3:5])
    import datetime as dt

    when = dt.datetime(y, mo, d, hour, minute, tzinfo=dt.UTC)
    return int(when.timestamp())
