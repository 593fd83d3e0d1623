"""The REST port: uvicorn (httptools, uvloop when installed) in a thread of the server process.

uvicorn bounds idle kept-alive connections, but on its httptools protocol nothing bounds how
long or how large a request's headers may be, and a malformed request gets a plain-text 400.
`GuardedHttpProtocol` adds what the model server needs at the connection level:

- request line and headers must arrive within ``rest_header_timeout_s`` (408, then close),
  and stay under ``rest_max_header_bytes`` (431, then close);
- an unparseable request (``Content-Length: abc``) is answered 400 as TF Serving's JSON error;
- beyond ``rest_max_connections`` open connections, a new one is answered 503 and closed.

Body size and time, JSON limits and back-pressure are the app's (`aimass.serving.rest_api`).
`RestServer` runs ``uvicorn.Server`` on its own event loop in a daemon thread, on a socket
bound before the thread starts (so a busy port is a clean error), and stops it within a grace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from typing import Any

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aimass.platform.errors import ServingError
from aimass.serving.limits import ServerLimits

logger = logging.getLogger(__name__)


def _reply(status: int, message: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 response with TF Serving's JSON error, closing the connection."""
    body = json.dumps({"error": message}).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header deadlines and sizes, JSON 400s and a connection cap."""

    limits = ServerLimits()  # replaced on the subclass `protocol_for` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0  # received while the headers are incomplete
        self._header_size = 0  # of the request line and headers parsed so far

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.rest_max_connections:
            self._refuse(
                503,
                f"too many open connections (--rest_max_connections="
                f"{self.limits.rest_max_connections}); retry after "
                f"{self.limits.retry_after_s} s",
                f"retry-after: {self.limits.retry_after_s}\r\n",
            )
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket here: the request was dispatched as plain HTTP at its headers
        except httptools.HttpParserError as exc:
            if self._header_size > self.limits.rest_max_header_bytes:
                self._headers_too_large()  # raised from on_header(s_complete)
                return
            logger.debug("REST: unparseable request from %s: %s", self.client, exc)
            self._refuse(400, f"invalid HTTP request: {exc}; check the request line and headers")
            return
        if self._awaiting_headers and self._header_bytes > self.limits.rest_max_header_bytes:
            self._headers_too_large()

    def _headers_too_large(self) -> None:
        self._refuse(
            431,
            f"the request line and headers exceed {self.limits.rest_max_header_bytes} bytes "
            "(--rest_max_header_bytes)",
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._header_size = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_header(self, size: int) -> None:
        self._header_size += size
        if self._header_size > self.limits.rest_max_header_bytes:
            raise ValueError("headers too large")  # stops the parser: data_received answers 431

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self.limits.rest_header_timeout_s, self._headers_too_slow
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            self._refuse(
                408,
                f"the request headers did not arrive within "
                f"{self.limits.rest_header_timeout_s:g} s (--rest_header_timeout_seconds)",
            )

    def _refuse(self, status: int, message: str, extra: str = "") -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(_reply(status, message, extra))
            self.transport.close()


def protocol_for(limits: ServerLimits) -> type[GuardedHttpProtocol]:
    """`GuardedHttpProtocol` bound to `limits` (uvicorn instantiates the class per connection)."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


class RestServer:
    """``uvicorn.Server`` serving `app` on ``host:port`` from a daemon thread.

    Args:
        app: the ASGI application.
        host: interface to bind.
        port: 0 picks a free one (see `port` after `start`).
        limits: connection limits and the keep-alive timeout.
    """

    def __init__(self, app: ASGIApp, host: str, port: int, limits: ServerLimits) -> None:
        self.host = host
        self.port = port
        self._config = uvicorn.Config(
            app,
            http=protocol_for(limits),
            loop="auto",  # uvloop when installed
            interface="asgi3",
            lifespan="off",
            ws="none",
            log_config=None,  # the server process configures logging, not uvicorn
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=limits.rest_keepalive_timeout_s,  # type: ignore[arg-type]
            backlog=2048,
        )
        self._server = uvicorn.Server(self._config)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeout_s: float = 30.0) -> RestServer:
        """Bind, start the thread and wait until uvicorn serves.

        Raises:
            ServingError: the port cannot be bound, or uvicorn did not start.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._sock = socket.create_server((self.host, self.port), family=family, backlog=2048)
        except OSError as exc:
            raise ServingError(
                f"cannot bind REST to {self.host}:{self.port} ({exc}); pick a free --rest_api_port"
            ) from exc
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="model-server-rest", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServingError(f"the REST server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        assert self._sock is not None
        sock = self._sock

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[sock])

        with asyncio.Runner(loop_factory=self._config.get_loop_factory()) as runner:
            runner.run(serve())

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, give requests being answered `grace` seconds, then close the rest."""
        if self._thread is None:
            return
        self._config.timeout_graceful_shutdown = max(1, round(grace))
        self._server.should_exit = True
        self._thread.join(grace + 1.0)
        if self._thread.is_alive() and self._loop is not None:
            # Connections still reading a slow body: close them, the loop then ends.
            self._loop.call_soon_threadsafe(self._close_connections)
            self._thread.join(10.0)
        if self._sock is not None:
            self._sock.close()
        self._thread = None

    def _close_connections(self) -> None:
        self._server.force_exit = True
        for connection in list(self._server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()
