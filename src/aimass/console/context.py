"""What every console page shares: the read model, the traffic sampler and the page frame."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import Request

from aimass.console.actions import AirflowAsUser
from aimass.console.live import MetricsSampler
from aimass.console.readmodel import ReadModel
from aimass.console.security import csrf_token, user_token
from aimass.platform.settings import Settings
from aimass.platform.templates import environment
from aimass.serving.metrics import METRICS_PATH

log = logging.getLogger(__name__)

PAGES = (
    ("overview", "Overview", ""),
    ("models", "Models", "models"),
    ("live", "Live serving", "live"),
    ("data", "Data", "data"),
    ("alerts", "Alerts", "alerts"),
)


class ConsoleState:
    """One per app: settings, the read model and the sampler of the model server's metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.read = ReadModel(settings)
        self.sampler = MetricsSampler(settings.serving_rest_url + METRICS_PATH)
        self._http: httpx.AsyncClient | None = None
        self.templates = environment(
            "aimass.console",
            "templates",
            filters={"when": when, "num": num, "pct": pct, "ago": ago},
        )

    def warm(self) -> None:
        """Read every dataset's records and ledger once, so pages start from warm caches, and
        start sampling the model server's traffic, so the live page has a history to show."""
        self.sampler.start()
        for dataset in self.read.datasets():
            self.read.versions(dataset)
            self.read.rollbacks(dataset)
            self.read.ledger(dataset)
        log.info("AI Mass console ready: records of %s read", ", ".join(self.read.datasets()))

    def airflow(self, request: Request) -> AirflowAsUser:
        """Airflow's REST API as the caller, over one connection pool per app."""
        if self._http is None:
            self._http = httpx.AsyncClient()
        return AirflowAsUser(self.airflow_url, user_token(request), client=self._http)

    @property
    def airflow_url(self) -> str:
        """Airflow's own API, which the actions call as the user (same server, loopback)."""
        return f"http://{self.settings.host}:{self.settings.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        uri = self.settings.mlflow_tracking_uri
        if uri.startswith("http"):
            return uri.rstrip("/")
        return f"http://{self.settings.host}:{self.settings.mlflow_port}"


def state(request: Request) -> ConsoleState:
    console: ConsoleState = request.app.state.console
    return console


def render(request: Request, template: str, **context: Any) -> str:
    """A page in the console's frame; ``page`` names the tab to highlight."""
    console = state(request)
    base = request.scope.get("root_path", "").rstrip("/")
    try:
        csrf = csrf_token(user_token(request))
    except Exception:
        csrf = ""
    context.setdefault("page", "")
    context.setdefault("dataset", "")
    return console.templates.get_template(template).render(
        base=base,
        pages=PAGES,
        datasets=console.read.datasets(),
        csrf=csrf,
        now=datetime.now(UTC),
        mlflow=console.mlflow_url,
        **context,
    )


def render_error(request: Request, status: int, message: str) -> str:
    return render(request, "error.html", status=status, message=message, user="")


def when(value: Any) -> str:
    """An ISO time (or datetime) as ``2026-12-07 03:54 UTC``."""
    if not value:
        return "–"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: Any) -> str:
    """How long ago an ISO time was, coarsely (``5 min ago``)."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - moment).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if abs(seconds) >= size:
            return (
                f"{seconds / size:.0f} {unit} ago"
                if seconds > 0
                else f"in {-seconds / size:.0f} {unit}"
            )
    return "just now"


def num(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def pct(value: Any, digits: int = 1) -> str:
    try:
        return f"{100 * float(value):.{digits}f} %"
    except (TypeError, ValueError):
        return "–"
