"""Report files of the runs (Data Docs, drift and gate reports), served to logged-in users."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response

from aimass.console.context import state
from aimass.console.security import can_read

router = APIRouter(dependencies=[can_read])

STYLESHEET = "console.css"


@router.get("/files/{path:path}")
def report_file(request: Request, path: str) -> FileResponse:
    """A file under the reports folder; paths that leave it are a 404."""
    try:
        found = state(request).read.report_file(path)
    except FileNotFoundError:
        raise HTTPException(404, f"no report file {path!r}") from None
    return FileResponse(found)


@router.get("/static/console.css")
def stylesheet() -> Response:
    from importlib.resources import files

    css = (files("aimass.console") / "static" / STYLESHEET).read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=300"})
