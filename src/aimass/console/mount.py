"""The console as the Airflow plugin mounts it: built on its first request.

Airflow imports plugins in every process that needs their macros (task runners, the
scheduler), and building the console pulls in the API server's security modules. The plugin
therefore hands Airflow this small ASGI app, which imports and builds the real one only in
the API server: when :class:`WarmConsole` (a root middleware, built as the API server starts)
warms it, or at the latest on the first request routed to it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class ConsoleMount:
    """An ASGI app that builds :func:`aimass.console.app.create_app` on first use."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                from aimass.console.app import create_app

                self._app = create_app()
        return self._app

    def warm_in_background(self) -> None:
        """Build the app and read every dataset's records in a daemon thread, so that the
        first page after the API server starts does not parse the whole history."""

        def warm() -> None:
            try:
                self._build().state.console.warm()
            except Exception:  # a cold first page is slower, not broken
                log.exception("warming the AI Mass console failed")

        threading.Thread(target=warm, name="aimass-console-warm", daemon=True).start()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return  # a mounted app gets no lifespan events; nothing to start or stop
        app = self._app or self._build()
        await app(scope, receive, send)


class WarmConsole:
    """A pass-through root middleware whose only job is its construction.

    Starlette builds the root app's middleware when the API server starts serving, which
    happens in the API server alone: that is when the console is built and its records read.
    """

    def __init__(self, app: Any, console: ConsoleMount) -> None:
        self.app = app
        console.warm_in_background()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
