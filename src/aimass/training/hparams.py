"""Which hyperparameters a training run uses: the spec's, a search's best, or the run's own."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError
from aimass.training.tuning import apply_hparams, tuned_hparams

if TYPE_CHECKING:
    from aimass.platform.settings import Settings

log = logging.getLogger(__name__)


def resolve_hparams(
    settings: Settings,
    spec: DatasetSpec,
    *,
    use_tuned: bool = True,
    learning_rate: float | None = None,
    batch_size: int | None = None,
) -> tuple[DatasetSpec, str]:
    """The spec to train with: its ``training`` < the latest search's best < the run's params.

    A search's values are used unless ``use_tuned`` is off; ``learning_rate`` and
    ``batch_size`` win over both. Returns the spec with the chosen values and a line saying
    where they came from (logged and tagged in MLflow).
    """
    source = "spec"
    if use_tuned:
        found = tuned_hparams(settings, spec.name)
        if found is not None:
            tuned, tuning_run = found
            try:
                spec = apply_hparams(spec, tuned)
                source = f"tuned by MLflow run {tuning_run}: {json.dumps(tuned, sort_keys=True)}"
            except ConfigError as exc:
                log.warning(
                    "train: ignoring the best values of tuning run %s (%s); using the spec's",
                    tuning_run,
                    exc,
                )
        else:
            log.info("train: no finished hyperparameter search for %s; using the spec's", spec.name)
    else:
        log.info("train: use_tuned_hparams is off; using the spec's hyperparameters")
    overrides = {
        k: v
        for k, v in (("learning_rate", learning_rate), ("batch_size", batch_size))
        if v is not None
    }
    if overrides:
        spec = apply_hparams(spec, overrides)
        source += f"; run params override {json.dumps(overrides, sort_keys=True)}"
    t = spec.training
    log.info(
        "train: learning_rate=%g batch_size=%d hidden_units=%s dropout=%g (%s)",
        t.learning_rate,
        t.batch_size,
        list(t.hidden_units),
        t.dropout,
        source,
    )
    return spec, source
