"""Helpers shared by the test suites (imported by name: tests/ is on sys.path via pyproject)."""

from __future__ import annotations

import socket
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aimass.data.sample_data import raw_dir
from aimass.data.spec import DatasetSpec
from aimass.platform.settings import REPO_ROOT

SAMPLE_CSV = raw_dir(REPO_ROOT / "var") / "data.csv"
TAXI_SPEC = REPO_ROOT / "conf" / "datasets" / "chicago_taxi.yaml"
PENGUINS_CSV = raw_dir(REPO_ROOT / "var", "palmer_penguins") / "penguins.csv"

_PANDAS = {"double": "float64", "long": "Int64", "string": "string"}
_ARROW = {"double": pa.float64(), "long": pa.int64(), "string": pa.string()}


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


_DUCKDB_TYPES = {"double": "DOUBLE", "long": "BIGINT", "string": "VARCHAR"}


def with_derived(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """``frame`` plus the spec's derived columns, evaluated with DuckDB (the shipped specs'
    expressions are plain SQL both engines read the same way; the clean job uses Spark)."""
    if not spec.derived:
        return frame
    import duckdb

    con = duckdb.connect()
    con.register("frame", frame)
    columns = ", ".join(
        f'CAST(({d.expression}) AS {_DUCKDB_TYPES[d.dtype]}) AS "{d.name}"' for d in spec.derived
    )
    out = con.execute(f"SELECT {columns} FROM frame").df()
    con.close()
    for d in spec.derived:
        frame[d.name] = out[d.name].to_numpy()
    return frame


def write_partition(
    csv: Path, out: Path, spec: DatasetSpec, *, files: int = 3, label: bool = True
) -> Path:
    """Write ``csv`` as a clean partition shaped like the Spark job's output, without Spark.

    Typed schema columns, the label (tips > 20% of fare; rows without fare or tips are
    dropped, as the clean job quarantines them) unless ``label`` is False, and ``split``
    from a hash of the raw line, spread over ``files`` Parquet files.
    """
    frame = pd.read_csv(
        csv, dtype={c: _PANDAS[t] for c, t in spec.schema}, keep_default_na=False, na_values=[""]
    )
    lines = csv.read_text(encoding="utf-8").splitlines()[1:]
    buckets = np.array([zlib.crc32(line.encode()) % 100 for line in lines])
    frame["split"] = np.where(buckets < spec.holdout_percent, "holdout", "train")
    frame = frame[frame["fare"].notna() & frame["tips"].notna()].reset_index(drop=True)
    frame = with_derived(frame, spec)
    fields = [(c, _ARROW[spec.dtype(c)]) for c in spec.clean_columns]
    if label:
        frame[spec.label_name] = (frame["tips"] > 0.2 * frame["fare"]).astype("int32")
        fields.append((spec.label_name, pa.int32()))
    table = pa.Table.from_pandas(
        frame, schema=pa.schema([*fields, ("split", pa.string())]), preserve_index=False
    )
    out.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), out / f"part-{i:05d}.parquet")
    (out / "_SUCCESS").write_text("")
    return out


def write_penguin_partition(out: Path, spec: DatasetSpec) -> Path:
    """The penguins sample as a clean partition for ``spec`` (multiclass or regression), no Spark.

    Rows without a label are dropped (the clean job quarantines them); the label is the
    class index for multiclass and the value for regression; ``split`` hashes the line.
    """
    frame = pd.read_csv(
        PENGUINS_CSV,
        dtype={c: _PANDAS[t] for c, t in spec.schema},
        keep_default_na=False,
        na_values=["", *spec.null_values],
    )
    lines = PENGUINS_CSV.read_text(encoding="utf-8").splitlines()[1:]
    buckets = np.array([zlib.crc32(line.encode()) % 100 for line in lines])
    frame["split"] = np.where(buckets < spec.holdout_percent, "holdout", "train")
    assert spec.label_column is not None
    frame = frame[frame[spec.label_column].notna()].reset_index(drop=True)
    frame = with_derived(frame, spec)
    fields = [(c, _ARROW[spec.dtype(c)]) for c in spec.clean_columns]
    if spec.label_classes:
        index = {c: i for i, c in enumerate(spec.label_classes)}
        frame[spec.label_name] = frame[spec.label_column].map(index).astype("int32")
        fields.append((spec.label_name, pa.int32()))
    else:
        frame[spec.label_name] = frame[spec.label_column].astype("float64")
        fields.append((spec.label_name, pa.float64()))
    table = pa.Table.from_pandas(
        frame, schema=pa.schema([*fields, ("split", pa.string())]), preserve_index=False
    )
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "part-00000.parquet")
    return out
