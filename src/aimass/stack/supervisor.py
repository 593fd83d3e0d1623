"""Keeps the production profile's services running: docker/'s ``restart: unless-stopped``.

Started last by ``make up PROFILE=cluster`` and stopped first by ``make stop``, it checks
every service every few seconds and starts again one that died (a zombie counts as dead,
see :func:`aimass.stack.services.pid_of`). Airflow's scheduler, DAG processor and triggerer
exit when their database goes away; once PostgreSQL is back (restarted by this loop too),
they are, and the runs in flight go on. A service that keeps dying is started again at
most every :data:`MAX_BACKOFF_S`, and says so in ``<var>/logs/supervisor.log``.
"""

from __future__ import annotations

import logging
import time

from aimass.platform.settings import Settings
from aimass.stack import services

log = logging.getLogger("aimass.supervisor")

NAME = "supervisor"
INTERVAL_S = 3.0
MAX_BACKOFF_S = 60.0


def check_once(settings: Settings, backoff: dict[str, tuple[float, float]]) -> list[str]:
    """Start what is not running; ``backoff``: name -> (next allowed start, current delay)."""
    started = []
    now = time.monotonic()
    for name in services.service_names(settings):
        if name == NAME or services.pid_of(settings, name) is not None:
            continue
        allowed, delay = backoff.get(name, (0.0, INTERVAL_S))
        if now < allowed:
            continue
        log.warning("%s is not running: starting it again", name)
        try:
            services.start(settings, [name])
        except Exception:  # one service's failure must not stop the others' supervision
            log.exception("could not start %s", name)
        backoff[name] = (now + delay, min(delay * 2, MAX_BACKOFF_S))
        started.append(name)
    for name in list(backoff):
        if name not in started and now > backoff[name][0] + MAX_BACKOFF_S:
            del backoff[name]  # up for a while: a later death starts from a short delay
    return started


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    log.info("supervising %s", ", ".join(n for n in services.service_names(settings) if n != NAME))
    backoff: dict[str, tuple[float, float]] = {}
    while True:
        check_once(settings, backoff)
        time.sleep(INTERVAL_S)


if __name__ == "__main__":
    main()
