"""The launcher interface: ``launch()`` trains with the launcher the settings name.

``AIMASS_TRAIN_LAUNCHER=local`` (default) runs the workers as processes on this machine
(``aimass.training.local``); ``kubernetes`` runs them as pods (``aimass.training.kubernetes``).
Both take the same arguments and return the same ``TrainResult``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError

if TYPE_CHECKING:
    from aimass.platform.settings import Settings

from aimass.training.run import AUTO, TrainResult, resolve_workers


def launch(
    settings: Settings,
    spec: DatasetSpec | str | Path,
    *,
    data: Path,
    run_dir: Path,
    workers: int | str = AUTO,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    timeout_s: float | None = None,
    mixed_precision: bool = False,
) -> TrainResult:
    """Train with the launcher ``settings.train_launcher`` names (``AIMASS_TRAIN_LAUNCHER``).

    ``local``: ``train()`` (worker processes on this machine); ``kubernetes``:
    ``aimass.training.kubernetes.train_on_kubernetes`` (one pod per worker). Same arguments and result.
    ``workers``: a positive integer, or ``auto`` (``aimass.training.run.resolve_workers``: one
    per GPU, else one per 4 cores, at least 1; logged with the reason).
    """
    workers = resolve_workers(workers, launcher=settings.train_launcher)
    if settings.train_launcher == "kubernetes":
        from aimass.training.kubernetes import (
            train_on_kubernetes,  # pods: heavy client, loaded on use
        )

        return train_on_kubernetes(
            settings,
            spec,
            data=data,
            run_dir=run_dir,
            workers=workers,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            timeout_s=timeout_s,
            mixed_precision=mixed_precision,
        )
    if settings.train_launcher != "local":
        raise ConfigError(
            f"AIMASS_TRAIN_LAUNCHER={settings.train_launcher!r}; use 'local' or 'kubernetes'"
        )
    from aimass.training.local import train

    return train(
        spec,
        data=data,
        run_dir=run_dir,
        workers=workers,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        timeout_s=timeout_s,
        mixed_precision=mixed_precision,
    )
