"""The model server's request log: a bounded sample of what it is asked, for the drift monitor.

:class:`RequestLog` samples Predict requests (a share of them, ``AIMASS_REQUEST_LOG_SAMPLE``),
keeps the last N rows per model in memory (a ring buffer) and a background thread persists each
model's buffer atomically as ``<dir>/<model>/recent.parquet``: one column per request input, plus
``request_time`` (UTC) and ``model_version``. Disk I/O happens in the flush thread only.

The server records a request only once it was validated and answered, so what the drift
monitor reads is what the model scored. Whatever a caller sends, the log's memory stays
bounded: each string value is cut to ``max_string_chars``, a request with more than
``max_columns`` inputs is not recorded, columns are copies (a recorded request never keeps
the request's own arrays alive) and, beyond ``max_bytes`` for all models together, the oldest
recorded requests are dropped.

Only numpy is imported at module level: the server imports this module.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aimass.platform.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa


logger = logging.getLogger(__name__)

RECENT_FILE = "recent.parquet"
TIME_COLUMN = "request_time"
VERSION_COLUMN = "model_version"


def recent_requests_path(requests_dir: Path, model: str) -> Path:
    """Where the request log keeps ``model``'s recent requests."""
    return Path(requests_dir) / model / RECENT_FILE


@dataclass
class _Chunk:
    """One sampled request: its columns (1-D arrays of equal length), time and version."""

    columns: dict[str, np.ndarray]
    rows: int
    at: float
    version: str
    nbytes: int


@dataclass
class _ModelBuffer:
    chunks: deque[_Chunk] = field(default_factory=deque)
    rows: int = 0
    nbytes: int = 0
    dirty: bool = False

    def drop_oldest(self) -> int:
        """Drop the oldest request; the bytes freed."""
        chunk = self.chunks.popleft()
        self.rows -= chunk.rows
        self.nbytes -= chunk.nbytes
        return chunk.nbytes


_CHUNK_OVERHEAD = 512  # bytes of bookkeeping per recorded request (dicts, arrays, the chunk)
_STRING_OVERHEAD = 40  # bytes of a bytes object beyond its characters


def _column(value: np.ndarray, max_chars: int) -> tuple[np.ndarray, int] | None:
    """A request input as a copy with one value per row (strings cut to `max_chars`) and its
    bytes, or None when it is not a per-row scalar."""
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    elif value.ndim != 1:
        return None
    if value.dtype != object:
        column = np.array(value, copy=True)
        return column, column.nbytes
    cut = [v[:max_chars] if isinstance(v, bytes | str) else v for v in value]
    column = np.array(cut, dtype=object)
    return column, sum(len(v) + _STRING_OVERHEAD if isinstance(v, bytes | str) else 8 for v in cut)


class RequestLog:
    """Sampled, bounded log of the features the model server was asked to score.

    Args:
        directory: where ``<model>/recent.parquet`` files are written.
        sample: share of requests recorded (0..1); a recorded request keeps all its rows.
        max_rows: rows kept per model; older ones are dropped first.
        flush_seconds: how often the background thread persists changed buffers.
        max_bytes: memory the recorded requests may hold, all models together; the oldest
            requests are dropped first.
        max_string_chars: each recorded string value is cut to this many characters.
        max_columns: requests with more inputs are not recorded.
        seed: seeds the sampling (tests); None draws from the OS.
    """

    DEFAULT_MAX_BYTES = 64 * 1024 * 1024

    def __init__(
        self,
        directory: str | Path,
        *,
        sample: float = 0.1,
        max_rows: int = 10_000,
        flush_seconds: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_string_chars: int = 256,
        max_columns: int = 1000,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ConfigError(f"request log sample={sample}; use a share 0..1, e.g. 0.1")
        if max_rows < 1:
            raise ConfigError(f"request log max_rows={max_rows}; keep at least 1 row per model")
        if flush_seconds <= 0:
            raise ConfigError(f"request log flush_seconds={flush_seconds}; use more than 0")
        for name, value in (
            ("max_bytes", max_bytes),
            ("max_string_chars", max_string_chars),
            ("max_columns", max_columns),
        ):
            if value < 1:
                raise ConfigError(f"request log {name}={value}; use at least 1")
        self.directory = Path(directory)
        self.sample = sample
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        self.max_bytes = max_bytes
        self.max_string_chars = max_string_chars
        self.max_columns = max_columns
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._buffers: dict[str, _ModelBuffer] = {}
        self._nbytes = 0  # held by every buffer together
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, model: str, version: int | str, inputs: Mapping[str, np.ndarray]) -> bool:
        """Maybe keep a bounded copy of one validated request's inputs (no conversion, no I/O).

        Returns whether the request was recorded.
        """
        if self.sample <= 0.0 or (self.sample < 1.0 and self._random.random() >= self.sample):
            return False
        if len(inputs) > self.max_columns:
            return False
        columns: dict[str, np.ndarray] = {}
        nbytes, rows = _CHUNK_OVERHEAD, -1
        for name, value in inputs.items():
            value = np.asarray(value)
            if value.ndim not in (1, 2):
                continue  # not one value per row (e.g. a sequence input): not profiled
            if rows not in (-1, len(value)):
                return False  # inputs of different lengths: not a table
            rows = len(value)
            found = _column(value[-self.max_rows :], self.max_string_chars)  # the tail only
            if found is None:
                continue
            columns[name], size = found
            nbytes += size + len(name)
        rows = min(rows, self.max_rows)
        if rows <= 0 or not columns:
            return False
        chunk = _Chunk(columns, rows, time.time(), str(version), nbytes)
        with self._lock:
            buffer = self._buffers.setdefault(model, _ModelBuffer())
            buffer.chunks.append(chunk)
            buffer.rows += rows
            buffer.nbytes += nbytes
            self._nbytes += nbytes
            # Drop whole old chunks while the rest still fill the buffer.
            while buffer.rows - buffer.chunks[0].rows >= self.max_rows:
                self._nbytes -= buffer.drop_oldest()
            while self._nbytes > self.max_bytes:
                largest = max(self._buffers.values(), key=lambda b: b.nbytes)
                self._nbytes -= largest.drop_oldest()
            buffer.dirty = True
        return True

    def rows(self, model: str) -> int:
        """Rows held for ``model`` (at most ``max_rows`` are written)."""
        with self._lock:
            buffer = self._buffers.get(model)
            return min(buffer.rows, self.max_rows) if buffer else 0

    def nbytes(self) -> int:
        """Memory held by the recorded requests, all models together (at most ``max_bytes``)."""
        with self._lock:
            return self._nbytes

    def start(self) -> RequestLog:
        """Persist changed buffers every ``flush_seconds`` in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="model-server-request-log", daemon=True
            )
            self._thread.start()
            logger.info(
                "recording %.0f%% of Predict requests (last %d rows per model) under %s",
                100 * self.sample,
                self.max_rows,
                self.directory,
            )
        return self

    def stop(self) -> None:
        """Stop the flush thread and persist what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # a full disk must not stop serving; say so and try again later
                logger.exception("request log: flush to %s failed", self.directory)

    def flush(self) -> list[Path]:
        """Write every changed model's buffer; returns the files written."""
        with self._lock:
            todo = {
                model: list(buffer.chunks)
                for model, buffer in self._buffers.items()
                if buffer.dirty and buffer.chunks
            }
            for model in todo:
                self._buffers[model].dirty = False
        written = []
        for model, chunks in todo.items():
            table = self._table(model, chunks)
            if table is not None:
                written.append(_write_atomic(table, recent_requests_path(self.directory, model)))
        return written

    def _table(self, model: str, chunks: list[_Chunk]) -> pa.Table | None:
        import pyarrow as pa

        tables = []
        for chunk in chunks:
            data: dict[str, Any] = {}
            for name, values in chunk.columns.items():
                if values.dtype == object:  # TF strings arrive as bytes
                    values = np.array(
                        [
                            v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                            for v in values
                        ],
                        dtype=object,
                    )
                data[name] = values
            stamp = datetime.fromtimestamp(chunk.at, UTC)
            data[TIME_COLUMN] = pa.array([stamp] * chunk.rows, pa.timestamp("us", tz="UTC"))
            data[VERSION_COLUMN] = pa.array([chunk.version] * chunk.rows, pa.string())
            try:
                tables.append(pa.table(data))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                logger.warning("request log: a request to %s is not tabular: %s", model, exc)
        if not tables:
            return None
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Versions with other input types: keep the requests shaped like the newest one.
            last = tables[-1].schema
            table = pa.concat_tables([t for t in tables if t.schema.equals(last)])
        if table.num_rows > self.max_rows:
            table = table.slice(table.num_rows - self.max_rows)
        return table


def _write_atomic(table: pa.Table, path: Path) -> Path:
    """Write Parquet to a temporary file beside ``path``, then rename it over ``path``."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
