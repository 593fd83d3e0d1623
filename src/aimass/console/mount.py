"""The console as the Airflow plugin mounts it: built on its first request.

Airflow imports plugins in every process that needs their macros (task runners, the
scheduler), and building the console pulls in the API server's security modules. The plugin
therefore hands Airflow this small ASGI app, which imports and builds the real one only when
the API server routes the first request to it.
"""

from __future__ import annotations

import threading
from typing import Any


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

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return  # a mounted app gets no lifespan events; nothing to start or stop
        app = self._app or self._build()
        await app(scope, receive, send)
