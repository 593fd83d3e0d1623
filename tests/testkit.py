"""Helpers shared by the test suites (imported by name: tests/ is on sys.path via pyproject)."""

from __future__ import annotations

import csv
import io
import socket
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aimass.data.sample_data import raw_dir
from aimass.data.spec import DatasetSpec
from aimass.platform.settings import REPO_ROOT

SAMPLE_CSV = raw_dir(REPO_ROOT / "var") / "data.csv"
TAXI_SPEC = REPO_ROOT / "conf" / "datasets" / "chicago_taxi.yaml"
PENGUINS_CSV = raw_dir(REPO_ROOT / "var", "palmer_penguins") / "penguins.csv"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Credentials and config that boto3 could otherwise find on this machine (or ask the EC2
# metadata endpoint for, which is not on loopback).
_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@contextmanager
def moto_s3(base: Path) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, with the AWS environment pointed at it and only at it.

    Yields the endpoint URL (also in ``AIMASS_S3_ENDPOINT_URL``), on a server that holds no
    buckets yet; ``base`` is a scratch
    folder standing in for the AWS config files.
    """
    import pytest
    from moto.server import ThreadedMotoServer

    from aimass.platform import s3io

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in _AWS_ENV:
                mp.delenv(name, raising=False)
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(base / "no-credentials"))
            mp.setenv("AWS_CONFIG_FILE", str(base / "no-config"))
            mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
            mp.setenv("NO_PROXY", "127.0.0.1")
            mp.setenv("no_proxy", "127.0.0.1")
            mp.setenv(s3io.ENDPOINT_ENV, endpoint)
            # moto keeps its buckets per process, not per server: start from none
            reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
            urllib.request.urlopen(reset, timeout=10).close()
            yield endpoint
    finally:
        server.stop()


def save_tiny_model(path: Path, bias: float, *, extra_input: str | None = None) -> Path:
    """A small SavedModel with the platform's serving contract, fast to save and to load.

    Inputs ``fare`` float32, ``company`` string, ``trip_start_hour`` int64 (all shape [None]);
    output ``probabilities`` = sigmoid(0.1 fare + 0.01 hour + [company == "Flash Cab"] + bias),
    so tests can tell versions apart by their bias. ``extra_input`` adds a float32 input the
    model takes but ignores (a model version with one feature more).
    """
    import tensorflow as tf

    if extra_input is not None:

        class Wider(tf.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bias = tf.Variable(bias, dtype=tf.float32)

            @tf.function(
                input_signature=[
                    {
                        "fare": tf.TensorSpec([None], tf.float32, name="fare"),
                        "company": tf.TensorSpec([None], tf.string, name="company"),
                        "trip_start_hour": tf.TensorSpec([None], tf.int64, name="trip_start_hour"),
                        extra_input: tf.TensorSpec([None], tf.float32, name=extra_input),
                    }
                ]
            )
            def serve(self, inputs):  # type: ignore[no-untyped-def]
                logit = (
                    0.1 * inputs["fare"]
                    + 0.01 * tf.cast(inputs["trip_start_hour"], tf.float32)
                    + tf.where(inputs["company"] == "Flash Cab", 1.0, 0.0)
                    + self.bias
                    + 0.0 * inputs[extra_input]
                )
                return {"probabilities": tf.sigmoid(logit)}

        wider = Wider()
        tf.saved_model.save(wider, str(path), signatures={"serving_default": wider.serve})
        return path

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = tf.Variable(bias, dtype=tf.float32)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None], tf.string),
                tf.TensorSpec([None], tf.int64),
            ]
        )
        def serve(self, fare, company, trip_start_hour):  # type: ignore[no-untyped-def]
            logit = (
                0.1 * fare
                + 0.01 * tf.cast(trip_start_hour, tf.float32)
                + tf.where(company == "Flash Cab", 1.0, 0.0)
                + self.bias
            )
            return {"probabilities": tf.sigmoid(logit)}

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


# -- the clean job without Spark --------------------------------------------------------------
#
# ``clean_table`` repeats jobs/clean/transforms.py row by row for the test suites, which
# want clean partitions in milliseconds: tests/integration/test_testkit_partition.py runs
# the real job on the same raw rows and checks that both write the same partition.

_ARROW = {"double": pa.float64(), "long": pa.int64(), "string": pa.string()}
_DUCKDB_TYPES = {"double": "DOUBLE", "long": "BIGINT", "string": "VARCHAR"}
_LONG_LIMIT = float(2**63)

# XXH64 (https://github.com/Cyan4973/xxHash) as Spark's ``xxhash64`` computes it, over numpy
# arrays of unsigned 64-bit ints (which wrap around as the algorithm wants).
_P1, _P2, _P3, _P4, _P5 = (
    np.uint64(p)
    for p in (
        0x9E3779B185EBCA87,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0x85EBCA77C2B2AE63,
        0x27D4EB2F165667C5,
    )
)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _xxh_round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    return _rotl(acc + lane * _P2, 31) * _P1


def _lanes(data: np.ndarray, start: int, width: int) -> np.ndarray:
    """Little-endian ``width``-byte words at byte ``start`` of each row, as uint64."""
    dtype = "<u8" if width == 8 else "<u4"
    return np.ascontiguousarray(data[:, start : start + width]).view(dtype)[:, 0].astype(np.uint64)


def xxh64(data: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """XXH64 of each row of ``data`` (uint8, one message of equal length per row) with the
    row's seed (uint64)."""
    n = data.shape[1]
    i = 0
    with np.errstate(over="ignore"):
        if n >= 32:
            v = [seeds + _P1 + _P2, seeds + _P2, seeds.copy(), seeds - _P1]
            while i + 32 <= n:
                v = [_xxh_round(v[k], _lanes(data, i + 8 * k, 8)) for k in range(4)]
                i += 32
            h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
            for lane in v:
                h = (h ^ _xxh_round(np.zeros_like(lane), lane)) * _P1 + _P4
        else:
            h = seeds + _P5
        h = h + np.uint64(n)
        while i + 8 <= n:
            h = _rotl(h ^ _xxh_round(np.zeros_like(h), _lanes(data, i, 8)), 27) * _P1 + _P4
            i += 8
        if i + 4 <= n:
            h = _rotl(h ^ (_lanes(data, i, 4) * _P1), 23) * _P2 + _P3
            i += 4
        while i < n:
            h = _rotl(h ^ (data[:, i].astype(np.uint64) * _P5), 11) * _P1
            i += 1
        h = (h ^ (h >> np.uint64(33))) * _P2
        h = (h ^ (h >> np.uint64(29))) * _P3
        return h ^ (h >> np.uint64(32))


def spark_xxhash64(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """Spark's ``xxhash64(*columns)`` of each row of ``table`` (int64 columns, as Spark's).

    Seed 42, each column's hash the seed of the next; a null leaves the hash as it is. A
    long or double hashes its 8 bytes (-0.0 as 0.0, every NaN as Java's canonical one), a
    string its UTF-8 bytes.
    """
    rows = table.num_rows
    h = np.full(rows, 42, dtype=np.uint64)
    for name in columns:
        column = table.column(name).combine_chunks()
        valid = ~np.asarray(column.is_null(), dtype=bool)
        if pa.types.is_string(column.type):
            values = column.to_pylist()
            encoded = [b"" if v is None else v.encode("utf-8") for v in values]
            lengths = np.array([len(e) for e in encoded])
            hashed = h.copy()
            for length in np.unique(lengths):
                at = np.flatnonzero(lengths == length)
                data = np.frombuffer(b"".join(encoded[j] for j in at), dtype=np.uint8)
                hashed[at] = xxh64(data.reshape(len(at), int(length)), h[at])
        else:
            numbers = np.asarray(column.fill_null(0))
            if pa.types.is_floating(column.type):
                numbers = np.where(numbers == 0.0, 0.0, numbers)  # -0.0 -> 0.0, NaN stays
                numbers[np.isnan(numbers)] = np.nan
            data = numbers.astype(numbers.dtype.newbyteorder("<")).view(np.uint8)
            hashed = xxh64(data.reshape(rows, 8), h)
        h = np.where(valid, hashed, h)
    return h.view(np.int64)


def _typed(text: str, dtype: str) -> object:
    """A trimmed, non-null field as ``dtype``, as the job's ``_typed`` casts it.

    Raises:
        ValueError: the field is not a ``dtype`` (the job quarantines the row).
    """
    if dtype == "string":
        return text
    if "_" in text:  # Python reads 1_000 as a number, Spark does not
        raise ValueError(text)
    if dtype == "double":
        return float(text)
    try:
        return int(text)
    except ValueError:
        value = float(text)  # a long may be written as an integral decimal ("8.0")
        if value != int(value) or abs(value) >= _LONG_LIMIT:
            raise ValueError(text) from None
        return int(value)


def _read_typed(csv_path: Path, spec: DatasetSpec) -> pa.Table:
    """The CSV's well-formed rows, typed as the spec says (the job's ``parse_rows``).

    Fields are trimmed of spaces; empty ones and the spec's null values are nulls. Rows the
    job quarantines as malformed (wrong field count, bad encoding, unparseable value) are
    left out.
    """
    text = csv_path.read_text(encoding="utf-8", errors="replace")
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    if spec.header:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
        assert header == list(spec.columns), f"{csv_path}: header {header} is not the spec's"
    nulls = {"", *spec.null_values}
    kept: list[list[object]] = []
    for row in rows:
        if len(row) != len(spec.schema) or "\ufffd" in "".join(row):
            continue
        try:
            fields = [f.strip(" ") for f in row]
            kept.append(
                [
                    None if f in nulls else _typed(f, t)
                    for f, (_, t) in zip(fields, spec.schema, strict=True)
                ]
            )
        except ValueError:
            continue
    columns = list(zip(*kept, strict=True)) if kept else [() for _ in spec.schema]
    return pa.table(
        {c: pa.array(list(v), _ARROW[t]) for (c, t), v in zip(spec.schema, columns, strict=True)}
    )


def _sql(expression: str) -> str:
    """A spec expression (Spark SQL) as DuckDB reads it: `quoted` names in double quotes."""
    return expression.replace("`", '"')


def clean_table(csv_path: Path, spec: DatasetSpec) -> pa.Table:
    """The clean partition the job writes for ``csv_path``, computed without Spark.

    The steps of jobs/clean/transforms.py in the job's order: parse (``_read_typed``),
    derived columns, rules and the label (SQL expressions, evaluated with DuckDB: the shipped
    specs' expressions are plain SQL both engines read the same way), ``split`` from Spark's
    ``xxhash64`` of the schema columns, then duplicates dropped (exact, then by
    ``spec.dedupe_key``, the first copy in file order kept). Rows come in file order.
    """
    import duckdb

    con = duckdb.connect()
    table = _read_typed(csv_path, spec)
    for d in spec.derived:
        con.register("frame", table)
        sql = f"SELECT CAST(({_sql(d.expression)}) AS {_DUCKDB_TYPES[d.dtype]}) FROM frame"
        table = table.append_column(
            pa.field(d.name, _ARROW[d.dtype]), con.sql(sql).to_arrow_table().column(0)
        )
    con.register("frame", table)
    rules = " AND ".join(f"COALESCE(({_sql(r.expression)}), TRUE)" for r in spec.rules) or "TRUE"
    label = _sql(spec.label_expression)
    if spec.label_classes:
        label = f"CAST(({label}) AS VARCHAR)"
    elif spec.is_classification:
        label = f"CAST(({label}) AS INTEGER)"
    else:
        label = f"CAST(({label}) AS DOUBLE)"
    checked = con.execute(f"SELECT ({rules}) AS ok, {label} AS label FROM frame").fetchall()
    con.close()
    classes = {c: i for i, c in enumerate(spec.label_classes)}
    exact_seen: set[tuple[object, ...]] = set()
    key_seen: set[tuple[object, ...]] = set()
    keep: list[int] = []
    labels: list[object] = []
    key = [spec.columns.index(c) for c in spec.dedupe_key]
    rows = zip(*(table.column(c).to_pylist() for c in spec.columns), strict=True)
    for i, (row, (ok, value)) in enumerate(zip(rows, checked, strict=True)):
        if not ok or value is None or (spec.label_classes and value not in classes):
            continue
        if row in exact_seen:
            continue
        exact_seen.add(row)
        if key:
            row_key = tuple(row[j] for j in key)
            if row_key in key_seen:
                continue
            key_seen.add(row_key)
        keep.append(i)
        labels.append(classes[value] if spec.label_classes else value)
    clean = table.select(list(spec.clean_columns)).take(pa.array(keep, pa.int64()))
    label_type = pa.int32() if spec.is_classification else pa.float64()
    clean = clean.append_column(pa.field(spec.label_name, label_type), pa.array(labels, label_type))
    # numpy's % takes the divisor's sign, as Spark's pmod does
    buckets = spark_xxhash64(clean, spec.columns) % 100
    split = np.where(buckets < spec.holdout_percent, "holdout", "train")
    return clean.append_column(
        pa.field("split", pa.string(), nullable=False), pa.array(split, pa.string())
    )


def write_partition(
    csv_path: Path, out: Path, spec: DatasetSpec, *, files: int = 3, label: bool = True
) -> Path:
    """Write ``csv_path`` as the clean partition the Spark job writes (``clean_table``).

    Spread over ``files`` Parquet files plus ``_SUCCESS``; ``label=False`` leaves the label
    column out (a partition the job never writes, for the tests of that error).
    """
    table = clean_table(csv_path, spec)
    if not label:
        table = table.drop_columns([spec.label_name])
    out.mkdir(parents=True, exist_ok=True)
    step = max(1, -(-table.num_rows // files))
    for i in range(files):
        pq.write_table(table.slice(i * step, step), out / f"part-{i:05d}.parquet")
    (out / "_SUCCESS").write_text("")
    return out


def write_penguin_partition(out: Path, spec: DatasetSpec) -> Path:
    """The penguins sample as the clean partition for ``spec`` (multiclass or regression)."""
    return write_partition(PENGUINS_CSV, out, spec, files=1)
