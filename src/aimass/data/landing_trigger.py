"""The landing-zone watcher: an Airflow event trigger that claims landed files, one event each.

It runs in the triggerer as the ``AssetWatcher`` of a dataset's landing Asset (see
``dags/aimass_retrain.py``) and never stops: every ``poke_interval`` seconds it scans the
dataset's landing zone (a folder, or an ``s3://`` prefix), checks each file whose size and
version have been stable for ``settle_seconds`` against the dataset's spec (its format told by
content, ``aimass.data.landing_check``: a file it will not take goes to ``rejected/`` with a
reason and an alert), claims the others (a move into ``.claimed/``) and yields one
``TriggerEvent`` per claimed file; Airflow turns each into an asset event that schedules
``aimass_retrain``. When it starts (also after a triggerer restart) it first announces the
files still in ``.claimed/``, whose event may have been lost with the old process; the run
that takes them makes a second announcement harmless (``aimass.data.landing.take``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from aimass.data import landing, landing_check
from aimass.platform.errors import ConfigError, StageError


class LandingZoneTrigger(BaseEventTrigger):
    """Claim files landing at ``location`` (a folder or an ``s3://`` prefix) for ``dataset``;
    one event per file."""

    def __init__(
        self,
        location: str = "",
        dataset: str = "",
        poke_interval: float = 5.0,
        settle_seconds: float = 2.0,
        directory: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        # ``directory``: the name before S3 zones; triggers stored by an older install in
        # Airflow's database still carry it, and one that fails to inflate is not retried.
        self.location = location or directory
        self.dataset = dataset
        if not self.location or not dataset:
            raise ValueError("LandingZoneTrigger needs a location and a dataset")
        self.poke_interval = poke_interval
        self.settle_seconds = settle_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "location": self.location,
                "dataset": self.dataset,
                "poke_interval": self.poke_interval,
                "settle_seconds": self.settle_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        zone = landing.zone_at(self.location, self.dataset)
        if isinstance(zone, landing.LocalZone):
            await asyncio.to_thread(zone.folder.mkdir, parents=True, exist_ok=True)
        for claimed in await asyncio.to_thread(zone.pending):
            self.log.info("announcing %s again (claimed before a restart)", claimed)
            yield TriggerEvent(await asyncio.to_thread(zone.payload, claimed, replay=True))
        seen: dict[str, landing.Watch] = {}
        while True:
            try:
                events = await asyncio.to_thread(self._scan, zone, seen)
            except (ConfigError, StageError) as exc:
                # An S3 zone that is unreachable or denied: say so and keep watching, since
                # the watcher is the only one that would notice the zone coming back. A
                # file claimed before the error is announced when the triggerer restarts.
                self.log.error("cannot watch %s: %s", self.location, exc)
                events = []
            for payload in events:
                yield TriggerEvent(payload)
            await asyncio.sleep(self.poke_interval)

    def _scan(self, zone: landing.Zone, seen: dict[str, landing.Watch]) -> list[dict[str, Any]]:
        """Claim the files that settled since the last scan and that the spec's format fits
        (the others are moved aside with a reason); their event payloads."""
        from aimass.data.spec import load_spec

        payloads: list[dict[str, Any]] = []
        ready = zone.settled(seen, settle_s=self.settle_seconds)
        if not ready:
            return payloads
        try:
            spec = load_spec(self.dataset)  # read again: the spec may have changed
        except ConfigError as exc:
            # Not the files' fault: they stay, and are looked at again on the next scan.
            self.log.error("cannot check %s against spec %s: %s", ready, self.dataset, exc)
            return payloads
        for name in ready:
            if not landing_check.admit(zone, spec, name):
                seen.pop(name, None)
                continue
            claimed = zone.claim(name)
            seen.pop(name, None)
            if claimed is None:
                continue
            self.log.info("%s landed for %s; claimed as %s", name, self.dataset, claimed)
            payloads.append(zone.payload(claimed))
        return payloads
