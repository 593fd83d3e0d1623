"""The production profile's S3-compatible store: moto's server, kept across restarts.

moto holds its buckets in memory. Run as ``python -m aimass.stack.s3store``, it appends
every write it accepted (PUT, POST, DELETE answered 2xx: bucket, object, multipart part) to
``<var>/cluster/s3/journal.jsonl``, and replays the journal into the application when it
starts again, before it says it is ready. So MLflow's artifacts outlive a restart of the
store or of the whole profile. It has no authentication (moto takes any key): it is bound to
loopback only, like every listener of the profile; on a real cluster S3 itself, or MinIO
(docker/), takes its place through the same boto3 path.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("aimass.s3store")

WRITES = ("PUT", "POST", "DELETE")
# Headers a replay needs (routing, chunked encoding, checksums, metadata); Content-Length is
# recomputed. The signature (no secret in it) is kept: moto treats a request without one
# as anonymous, and refuses an anonymous delete.
_SKIP = {"CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTP_EXPECT"}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def ready_marker(journal: Path) -> Path:
    """Exists while the store runs with its journal replayed."""
    return journal.with_name(journal.name + ".ready")


def _body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    return b""


class Journal:
    """WSGI middleware: every accepted write is appended (and flushed) before it is answered."""

    def __init__(self, app: WSGIApp, path: Path) -> None:
        self.app = app
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ["REQUEST_METHOD"]
        if method not in WRITES or environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)
        body = _body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        status: list[str] = []

        def capture(code: str, headers: list[Any], exc_info: Any = None) -> Any:
            status.append(code)
            return (
                start_response(code, headers, exc_info)
                if exc_info
                else start_response(code, headers)
            )

        result = list(self.app(environ, capture))
        if status and status[0][:1] == "2":
            entry: dict[str, Any] = {
                "method": method,
                "path": environ.get("PATH_INFO", ""),
                "query": environ.get("QUERY_STRING", ""),
                "headers": {
                    k: v
                    for k, v in environ.items()
                    if (k.startswith("HTTP_") or k == "CONTENT_TYPE") and k not in _SKIP
                },
                "body": base64.b64encode(body).decode("ascii"),
            }
            if upload := _upload_id(b"".join(result)):  # a multipart upload begins
                entry["upload_id"] = upload
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return result


def _upload_id(body: bytes) -> str | None:
    """The UploadId of a CreateMultipartUpload answer."""
    start = body.find(b"<UploadId>")
    if start < 0:
        return None
    end = body.find(b"</UploadId>", start)
    return body[start + len(b"<UploadId>") : end].decode("ascii") if end > 0 else None


def replay(app: WSGIApp, journal: Path) -> int:
    """Apply the journal's writes to ``app`` in order; returns how many were accepted.

    A multipart upload gets a new id when its start is replayed: its parts and completion
    are replayed under the new id. A write the store refuses now is logged and skipped.
    """
    from werkzeug.test import EnvironBuilder

    count = 0
    uploads: dict[str, str] = {}
    with journal.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            entry = json.loads(line)
            query = entry["query"]
            for old, new in uploads.items():
                query = query.replace(f"uploadId={old}", f"uploadId={new}")
            builder = EnvironBuilder(
                path=entry["path"],
                method=entry["method"],
                query_string=query,
                data=base64.b64decode(entry["body"]),
            )
            environ = builder.get_environ()
            builder.close()
            environ.update(entry["headers"])
            status: list[str] = []
            try:
                body = b"".join(
                    app(environ, lambda code, headers, exc_info=None, st=status: st.append(code))
                )
            except Exception:  # one bad entry must not keep the store down
                log.exception(
                    "journal line %d (%s %s) failed", number, entry["method"], entry["path"]
                )
                continue
            if not status or status[0][:1] != "2":
                log.warning(
                    "journal line %d: %s %s answered %s",
                    number,
                    entry["method"],
                    entry["path"],
                    status,
                )
                continue
            if "upload_id" in entry and (new_id := _upload_id(body)):
                uploads[entry["upload_id"]] = new_id
            count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    journal: Path = args.journal
    journal.parent.mkdir(parents=True, exist_ok=True)
    marker = ready_marker(journal)
    marker.unlink(missing_ok=True)
    app = DomainDispatcherApplication(create_backend_app)
    if journal.exists():
        started = time.monotonic()
        count = replay(app, journal)
        log.info("replayed %d writes from %s in %.1fs", count, journal, time.monotonic() - started)
    server = make_server(
        args.host, args.port, Journal(app, journal), True, request_handler=MotoRequestHandler
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        marker.unlink(missing_ok=True)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    marker.touch()
    log.info("S3 store on http://%s:%d, journal %s", args.host, args.port, journal)
    try:
        server.serve_forever()
    finally:
        marker.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
