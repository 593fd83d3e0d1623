"""The model server's request log: a bounded sample of what it is asked, for the drift monitor.

:class:`RequestLog` samples Predict requests (a share of them, ``AIMASS_REQUEST_LOG_SAMPLE``),
keeps the last N rows per model in memory (a ring buffer) and a background thread persists each
model's buffer atomically as ``<dir>/<model>/recent.parquet``: one column per request input, plus
``request_time`` (UTC) and ``model_version``. The request thread only appends references to
arrays it already holds; conversion and disk I/O happen in the flush thread.

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


@dataclass
class _ModelBuffer:
    chunks: deque[_Chunk] = field(default_factory=deque)
    rows: int = 0
    dirty: bool = False


def _column(value: np.ndarray) -> np.ndarray | None:
    """A request input as one value per row, or None when it is not a per-row scalar."""
    if value.ndim == 1:
        return value
    if value.ndim == 2 and value.shape[1] == 1:
        return value[:, 0]
    return None


class RequestLog:
    """Sampled, bounded log of the features the model server was asked to score.

    Args:
        directory: where ``<model>/recent.parquet`` files are written.
        sample: share of requests recorded (0..1); a recorded request keeps all its rows.
        max_rows: rows kept per model; older ones are dropped first.
        flush_seconds: how often the background thread persists changed buffers.
        seed: seeds the sampling (tests); None draws from the OS.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        sample: float = 0.1,
        max_rows: int = 10_000,
        flush_seconds: float = 30.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ConfigError(f"request log sample={sample}; use a share 0..1, e.g. 0.1")
        if max_rows < 1:
            raise ConfigError(f"request log max_rows={max_rows}; keep at least 1 row per model")
        if flush_seconds <= 0:
            raise ConfigError(f"request log flush_seconds={flush_seconds}; use more than 0")
        self.directory = Path(directory)
        self.sample = sample
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._buffers: dict[str, _ModelBuffer] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, model: str, version: int | str, inputs: Mapping[str, np.ndarray]) -> bool:
        """Maybe keep one request's inputs (hot path: no copies, no conversion, no I/O).

        Returns whether the request was recorded.
        """
        if self.sample <= 0.0 or (self.sample < 1.0 and self._random.random() >= self.sample):
            return False
        columns: dict[str, np.ndarray] = {}
        rows = -1
        for name, value in inputs.items():
            column = _column(np.asarray(value))
            if column is None:
                continue  # not one value per row (e.g. a sequence input): not profiled
            if rows not in (-1, len(column)):
                return False  # inputs of different lengths: not a table
            rows = len(column)
            columns[name] = column
        if rows <= 0:
            return False
        if rows > self.max_rows:  # rare: copy the tail so the whole request is not kept alive
            columns = {k: v[-self.max_rows :].copy() for k, v in columns.items()}
            rows = self.max_rows
        chunk = _Chunk(columns=columns, rows=rows, at=time.time(), version=str(version))
        with self._lock:
            buffer = self._buffers.setdefault(model, _ModelBuffer())
            buffer.chunks.append(chunk)
            buffer.rows += rows
            # Drop whole old chunks while the rest still fill the buffer.
            while buffer.rows - buffer.chunks[0].rows >= self.max_rows:
                buffer.rows -= buffer.chunks.popleft().rows
            buffer.dirty = True
        return True

    def rows(self, model: str) -> int:
        """Rows held for ``model`` (at most ``max_rows`` are written)."""
        with self._lock:
            buffer = self._buffers.get(model)
            return min(buffer.rows, self.max_rows) if buffer else 0

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
