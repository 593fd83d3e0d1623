"""The console's FastAPI app, mounted by the Airflow plugin on the API server at ``/aimass``.

Routes are grouped by resource, one module each under :mod:`aimass.console.routes`; every one
depends on an auth dependency of :mod:`aimass.console.security`, and
``tests/integration/test_console_app.py`` walks the route table to prove that none is
anonymous. Pages are server-rendered HTML with SVG charts and no JavaScript, so the
content-security policy forbids scripts outright.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from aimass.console.context import ConsoleState
from aimass.console.routes import actions, alerts, data, live, models, overview, reports, runs
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

URL_PREFIX = "/aimass"
SECURITY_HEADERS = {
    # No scripts at all; styles and images from the console itself; framed only by Airflow.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            # Report files (Data Docs, drift reports) carry their own inline styles/scripts.
            path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
            if name == "Content-Security-Policy" and path.startswith("/files/"):
                value = "default-src 'self' 'unsafe-inline' data:; frame-ancestors 'self'"
            response.headers.setdefault(name, value)
        return response


def create_app(settings: Settings | None = None) -> FastAPI:
    """The console app for ``settings`` (from the environment when not given)."""
    app = FastAPI(
        title="AI Mass console",
        description="Models, versions, gate decisions, live serving and data, per dataset.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.console = ConsoleState(settings or Settings.from_env())
    for module in (overview, models, live, data, alerts, runs, actions, reports):
        app.include_router(module.router)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    return app


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Errors as a short page for people, JSON for API clients."""
    if "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    from aimass.console.context import render_error

    return HTMLResponse(render_error(request, exc.status_code, str(exc.detail)), exc.status_code)
