"""The landing-zone watcher: an Airflow event trigger that claims landed files, one event each.

It runs in the triggerer as the ``AssetWatcher`` of a dataset's landing Asset (see
``dags/aimass_retrain.py``) and never stops: every ``poke_interval`` seconds it scans
``<var>/landing/<dataset>/``, claims each file whose size and mtime have been stable for
``settle_seconds`` (``aimass.landing.claim``, a rename into ``.claimed/``) and yields one
``TriggerEvent`` per claimed file; Airflow turns each into an asset event that schedules
``aimass_retrain``. When it starts (also after a triggerer restart) it first announces the
files still in ``.claimed/``, whose event may have been lost with the old process; the run
that takes them makes a second announcement harmless (``aimass.landing.take``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from aimass import landing


class LandingZoneTrigger(BaseEventTrigger):
    """Claim files landing in ``directory`` for ``dataset``; one event per file."""

    def __init__(
        self,
        directory: str,
        dataset: str,
        poke_interval: float = 5.0,
        settle_seconds: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.dataset = dataset
        self.poke_interval = poke_interval
        self.settle_seconds = settle_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "directory": self.directory,
                "dataset": self.dataset,
                "poke_interval": self.poke_interval,
                "settle_seconds": self.settle_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        folder = Path(self.directory)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        for claimed in await asyncio.to_thread(sorted, (folder / landing.CLAIMED).glob("*")):
            if claimed.is_file():
                self.log.info("announcing %s again (claimed before a restart)", claimed.name)
                yield TriggerEvent(landing.event_payload(self.dataset, claimed, replay=True))
        seen: dict[str, landing.Watch] = {}
        while True:
            ready = await asyncio.to_thread(
                landing.settled, folder, seen, settle_s=self.settle_seconds
            )
            for path in ready:
                claimed_path = await asyncio.to_thread(landing.claim, path)
                seen.pop(path.name, None)
                if claimed_path is None:
                    continue
                self.log.info("%s landed for %s; claimed %s", path.name, self.dataset, claimed_path)
                yield TriggerEvent(landing.event_payload(self.dataset, claimed_path))
            await asyncio.sleep(self.poke_interval)
