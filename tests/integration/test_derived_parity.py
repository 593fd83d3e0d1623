"""What the model computes equals what the clean job computed: derived features and normalization.

The clean job (Spark, ``jobs/clean``) and the SavedModel (TensorFlow, ``models/tabular/derive``)
compile the same feature-language tree and normalize strings the same way. These tests run
both on the same values and compare, for every shipped spec's sample data and for a battery
of expressions over awkward values, and check that a row sent as the source file writes it
scores like the cleaned row.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aimass.data.spec import DatasetSpec, expr, load_spec
from aimass.platform.settings import Settings

pytestmark = pytest.mark.integration

tf = pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "datasets"
SHIPPED = sorted(p.stem for p in CONF.glob("*.yaml"))
ROWS = 2000


def _spec(name: str) -> DatasetSpec:
    return load_spec(name, ROOT / "conf")


def _source_rows(spec: DatasetSpec) -> list[dict[str, str]]:
    """The first rows of the spec's sample file, fields exactly as the file writes them."""
    from aimass.data.sample_data import fetch_sample

    var_dir = Settings.from_env().var_dir
    fetch_sample(var_dir)
    path = Path(spec.resolved_source_path(var_dir))
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=spec.delimiter, quotechar=spec.quote)
        header = next(reader) if spec.header else list(spec.columns)
        return [dict(zip(header, row, strict=True)) for row in itertools.islice(reader, ROWS)]


def _spark_clean(spark: Any, spec: DatasetSpec, rows: list[dict[str, str]]) -> pa.Table:
    """The rows as the clean job types and derives them (its own functions), in row order."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from jobs.clean.transforms import _typed, add_derived, normalized

    schema = T.StructType(
        [T.StructField("_i", T.LongType())]
        + [T.StructField(c, T.StringType(), True) for c in spec.columns]
    )
    data = [(i, *(row.get(c) for c in spec.columns)) for i, row in enumerate(rows)]
    df = spark.createDataFrame(data, schema)  # type: ignore[attr-defined]
    typed = df.select(
        "_i", *(_typed(normalized(F.col(c), spec, c), t).alias(c) for c, t in spec.schema)
    )
    return add_derived(typed, spec=spec).orderBy("_i").toArrow()


def _wire(spec: DatasetSpec, table: pa.Table, names: list[str]) -> dict[str, np.ndarray]:
    """Columns of a cleaned table as the model's wire arrays (NaN / -1 / "" for missing)."""
    from models.tabular.features import Feature
    from models.tabular.inputs import _feature_array

    return {n: _feature_array(Feature(n, spec.dtype(n), "raw"), table.column(n)) for n in names}


def _as_sent(spec: DatasetSpec, rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """The model inputs as a client sends them from the file: strings untouched, numbers parsed.

    Every other string gets spaces and a tab around it, as files padded for alignment
    have them, so the test fails if the model does not trim.
    """
    out: dict[str, np.ndarray] = {}
    nulls = {"", *spec.null_values}
    for name in spec.model_inputs:
        kind = spec.dtype(name)
        values = [row.get(name, "") for row in rows]
        if kind == "string":
            padded = [v if i % 2 else f"  {v}\t" for i, v in enumerate(values)]
            out[name] = np.array(padded, dtype=object)
            continue
        parsed = []
        for v in values:
            text = v.strip(" \t")
            missing = text in nulls
            if kind == "double":
                parsed.append(np.nan if missing else float(text))
            else:
                parsed.append(-1 if missing else int(float(text)))
        out[name] = np.array(parsed, dtype=np.float32 if kind == "double" else np.int64)
    return out


def _tf_features(spec: DatasetSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's features computed from raw arrays by its own preprocessing."""
    import tf_keras

    from models.tabular.derive import prepare
    from models.tabular.features import model_inputs

    inputs = {
        f.name: tf_keras.Input(shape=(), dtype=f.tf_dtype, name=f.name) for f in model_inputs(spec)
    }
    model = tf_keras.Model(inputs, prepare(spec, inputs))
    out = model({k: tf.constant(arrays[k]) for k in inputs})
    return {
        k: np.char.decode(v.numpy().astype(bytes), "utf-8") if v.dtype == tf.string else v.numpy()
        for k, v in out.items()
    }


def _assert_equal(name: str, spark_values: np.ndarray, tf_values: np.ndarray) -> None:
    if spark_values.dtype.kind == "f":
        # Doubles travel as float32 on the wire, so derived doubles agree to float32 precision.
        np.testing.assert_allclose(
            tf_values.astype(np.float64), spark_values, rtol=2e-6, atol=1e-9, err_msg=name
        )
    else:
        assert tf_values.astype(str).tolist() == spark_values.astype(str).tolist(), name


@pytest.mark.parametrize("name", SHIPPED)
def test_every_feature_of_every_shipped_spec_is_the_same_in_spark_and_in_the_model(
    spark: Any, name: str
) -> None:
    spec = _spec(name)
    rows = _source_rows(spec)
    cleaned = _spark_clean(spark, spec, rows)
    # Spark's features from the raw file vs the model's from the cleaned raw columns (what
    # training feeds) and from the file's values as a client sends them.
    want = _wire(spec, cleaned, list(spec.features))
    for arrays in (_wire(spec, cleaned, list(spec.model_inputs)), _as_sent(spec, rows)):
        got = _tf_features(spec, arrays)
        assert set(got) == set(spec.features)
        for feature in spec.features:
            _assert_equal(f"{name}.{feature}", want[feature], got[feature])
    derived = [c.name for c in spec.feature_expressions()]
    for feature in derived:  # the derived values are not all missing: the test compares data
        values = want[feature]
        present = ~np.isnan(values) if values.dtype.kind == "f" else values != -1
        assert present.mean() > 0.5, f"{name}.{feature} is mostly missing in the sample"


def test_the_shipped_specs_derive_features_in_the_model() -> None:
    derived = {n: [c.name for c in _spec(n).feature_expressions()] for n in SHIPPED}
    assert derived["chicago_taxi"] == ["trip_speed_mph"]
    assert sum(map(len, derived.values())) >= 2, derived


@pytest.mark.parametrize("name", SHIPPED)
def test_a_row_sent_as_the_file_writes_it_scores_like_the_cleaned_row(
    spark: Any, name: str
) -> None:
    from models.tabular.model import build_model

    spec = _spec(name)
    rows = _source_rows(spec)[:500]
    cleaned = _wire(spec, _spark_clean(spark, spec, rows), list(spec.model_inputs))
    tf.keras.utils.set_random_seed(7)
    model = build_model(spec, adapt_data=cleaned, adapt_labels=np.zeros(len(rows)) + 1.0)
    want = model.predict(cleaned, verbose=0)
    got = model.predict(_as_sent(spec, rows), verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.std(want) > 0  # the scores depend on the rows, so a skew would show


# -- the language over awkward values ---------------------------------------------------------

TYPES = {"a": "double", "b": "double", "n": "long", "m": "long", "s": "string", "d": "string"}
TYPES["t"] = "long"
VALUES: list[dict[str, Any]] = [
    {"a": 1.5, "b": 2.0, "n": 7, "m": 2, "s": "Cash", "d": "2024-02-29 23:59", "t": 0},
    {"a": -3.25, "b": 0.0, "n": -7, "m": 0, "s": "card", "d": "2023-02-29", "t": 951782400},
    {"a": None, "b": 4.0, "n": None, "m": 3, "s": None, "d": "1999-12-31T07:08:09.5", "t": None},
    {"a": 0.0, "b": None, "n": 0, "m": None, "s": "x", "d": "2024-13-01", "t": -86401},
    {"a": 1e6, "b": -0.5, "n": 12345, "m": -4, "s": "Cash", "d": "1900-03-01", "t": 4102444800},
    {"a": 2.0, "b": 2.0, "n": 9, "m": 9, "s": "W", "d": "not a date", "t": 1709251199},
    {"a": 7.0, "b": 3.0, "n": -9, "m": 4, "s": "y", "d": "2000-02-29 24:00", "t": 1},
    {"a": -0.0, "b": 1.0, "n": 1, "m": 1, "s": "z", "d": None, "t": 86399},
    {"a": 3.0, "b": 3.0, "n": 5, "m": -3, "s": "c", "d": "1970-01-01", "t": -1000000000},
    {"a": 4.0, "b": 0.25, "n": 3, "m": 8, "s": "Cash", "d": "2012/12/31", "t": 1356912000},
]
EXPRESSIONS = [
    "a + b",
    "a - n * 2",
    "n * m - 3",
    "a / b",
    "n / m",
    "n % m",
    "a % b",
    "-a",
    "abs(a - 10)",
    "abs(n - 3)",
    "log(a)",
    "sqrt(b)",
    "clip(a, 0, 100)",
    "clip(n, -5, 5)",
    "coalesce(a, b, 0.5)",
    "coalesce(n, m)",
    "if(a > b, a, b)",
    "CASE WHEN a > 1 AND b > 1 THEN 1 WHEN a IS_NOT_HERE THEN 2 END",
    "CASE WHEN a > 1 OR b > 1 THEN n ELSE m END",
    "CASE WHEN NOT (a >= b) THEN 'low' WHEN s = 'Cash' THEN s END",
    "if(s != 'Cash', 1, 0)",
    "if(a = b AND n <> m, 1.0, 0.0)",
    "if((a > 0 AND b > 0) OR n < 0, 1, 0)",
    "if(a > 0 AND null, 1, 0)",
    "year(d)",
    "month(d)",
    "day(d)",
    "hour(d)",
    "minute(d)",
    "dayofweek(d)",
    "dayofyear(d)",
    "year(t)",
    "month(t)",
    "day(t)",
    "hour(t)",
    "minute(t)",
    "dayofweek(t)",
    "dayofyear(t)",
    "concat(s, '-', n)",
    "lower(s)",
    "upper(concat(s, 'x'))",
    "n + 0.5",
    "(a + n) / (m - 1)",
]
EXPRESSIONS.remove("CASE WHEN a > 1 AND b > 1 THEN 1 WHEN a IS_NOT_HERE THEN 2 END")


def _declared(found: str) -> str:
    return {"bool": "long", "null": "double"}.get(found, found)


def test_every_construct_of_the_language_is_the_same_in_spark_and_in_the_model(spark: Any) -> None:
    from pyspark.sql import types as T

    from jobs.clean.derive import SparkCompiler
    from jobs.clean.transforms import SPARK_TYPES
    from models.tabular.derive import Derive

    schema = T.StructType(
        [T.StructField("_i", T.LongType())]
        + [T.StructField(c, SPARK_TYPES[t], True) for c, t in TYPES.items()]
    )
    df = spark.createDataFrame(  # type: ignore[attr-defined]
        [(i, *(row[c] for c in TYPES)) for i, row in enumerate(VALUES)], schema
    )
    compiled = []
    for i, text in enumerate(EXPRESSIONS):
        found = expr.infer(expr.parse(text), TYPES)
        compiled.append(expr.check(f"e{i}", text, _declared(found), TYPES))
    compiler = SparkCompiler(TYPES)
    out = df.select("_i", *(compiler.column(c).alias(c.name) for c in compiled))
    table = out.orderBy("_i").toArrow()

    raw_table = df.orderBy("_i").toArrow()
    spec_like = _TypesOnly(TYPES)
    arrays = {c: tf.constant(a) for c, a in _wire(spec_like, raw_table, list(TYPES)).items()}  # type: ignore[arg-type]
    for c in compiled:
        layer = Derive(c.name, EXPRESSIONS[int(c.name[1:])], c.declared, TYPES)
        got = layer({k: arrays[k] for k in c.reads}).numpy()
        if got.dtype == object:
            got = np.char.decode(got.astype(bytes), "utf-8")
        want = _wire(spec_like, table, [c.name])[c.name]  # type: ignore[arg-type]
        _assert_equal(f"{c.name} = {EXPRESSIONS[int(c.name[1:])]}", want, got)


class _TypesOnly:
    """Just enough of a spec for ``_wire``: the type of each battery column."""

    def __init__(self, types: dict[str, str]) -> None:
        self.types = types

    def dtype(self, name: str) -> str:
        if name in self.types:
            return self.types[name]
        return _declared(expr.infer(expr.parse(EXPRESSIONS[int(name[1:])]), TYPES))


def test_normalization_is_the_same_in_spark_and_in_the_model(spark: Any) -> None:
    import dataclasses

    from pyspark.sql import functions as F

    from jobs.clean.transforms import normalized
    from models.tabular.derive import Normalize

    spec = dataclasses.replace(
        _spec("palmer_penguins"), null_values=("NA", "?"), case=(("island", "lower"),)
    )
    values = ["  Biscoe", "Dream\t", " \t", "", "NA", " NA ", "?", " ? ", "na", "TORGERSEN", "é É"]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "_i long, island string")  # type: ignore[attr-defined]
    cleaned = [
        r["v"] or ""
        for r in df.orderBy("_i")
        .select(normalized(F.col("island"), spec, "island").alias("v"))
        .collect()
    ]
    layer = Normalize(spec.trim, spec.null_values, "lower")
    got = [v.decode() for v in layer(tf.constant(values)).numpy()]
    assert got == cleaned
    assert cleaned[:5] == ["biscoe", "dream", "", "", ""] and cleaned[-1] == "é é"
