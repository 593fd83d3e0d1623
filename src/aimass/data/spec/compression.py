"""The ``compression`` section of a dataset spec: which compressed variants of a candidate
the retrain DAG builds, and the bars one must clear to be deployed instead of the candidate.

A variant is deployed only when, on the same holdout as the candidate, no gated metric (every
metric the ``gate`` section or ``max_metric_loss`` names) is worse than the candidate's by
more than its ``max_metric_loss`` (0 when unlisted), it still clears the gate's absolute
bars, and it is at least ``min_size_gain`` smaller (gzip of the SavedModel folder) or
``min_latency_gain`` faster (model-server latency at batch 1 and 64) than the candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aimass.platform.errors import ConfigError

VARIANT_KINDS = ("pruned", "float16", "int8", "distilled")
COMPRESSION_FIELDS = (
    "enabled",
    "variants",
    "max_metric_loss",
    "min_size_gain",
    "min_latency_gain",
    "sparsity",
    "fine_tune_epochs",
    "hidden_units",
    "distill_epochs",
    "max_rows",
    "latency_requests",
)
_EXAMPLE = (
    "e.g. compression: {enabled: true, variants: [pruned, float16, int8, distilled], "
    "max_metric_loss: {auc: 0.005}, min_size_gain: 0.2, min_latency_gain: 0.2}"
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class CompressionSpec:
    """Variants to build and the bars that decide whether one is deployed (see module doc).

    Without a ``compression`` section a spec builds no variants (``enabled: false``).
    ``max_metric_loss``: largest allowed worsening per metric against the candidate, in the
    metric's unit (a drop where larger is better, a rise for rmse, log_loss, ...).
    ``min_size_gain``/``min_latency_gain``: shares, e.g. 0.2 = at least 20 % smaller/faster.
    ``sparsity``/``fine_tune_epochs``: the pruned variant; ``hidden_units``/``distill_epochs``
    (None: ``training.epochs``): the distilled student; ``max_rows``: training rows the
    fine-tune and distillation use at most; ``latency_requests``: timed requests per batch size.
    """

    enabled: bool = False
    variants: tuple[str, ...] = VARIANT_KINDS
    max_metric_loss: tuple[tuple[str, float], ...] = ()
    min_size_gain: float = 0.2
    min_latency_gain: float = 0.2
    sparsity: float = 0.5
    fine_tune_epochs: int = 2
    hidden_units: tuple[int, ...] = (8,)
    distill_epochs: int | None = None
    max_rows: int = 50_000
    latency_requests: int = 20

    def __post_init__(self) -> None:
        where = "compression"
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"{where}.enabled must be true or false, got {self.enabled!r}")
        unknown = [v for v in self.variants if v not in VARIANT_KINDS]
        if unknown or not self.variants or len(set(self.variants)) != len(self.variants):
            raise ConfigError(
                f"{where}.variants must list some of {list(VARIANT_KINDS)} once each, got "
                f"{list(self.variants)}; or set enabled: false to build none"
            )
        for metric, value in self.max_metric_loss:
            if not _number(value) or value < 0:
                raise ConfigError(
                    f"{where}.max_metric_loss.{metric} must be a number >= 0 (the allowed "
                    f"worsening against the candidate, in the metric's unit), got {value!r}"
                )
        for name in ("min_size_gain", "min_latency_gain"):
            value = getattr(self, name)
            if not _number(value) or not 0 <= value < 1:
                raise ConfigError(
                    f"{where}.{name} must be a share in [0, 1) (0.2: at least 20 % better), "
                    f"got {value!r}"
                )
        if not _number(self.sparsity) or not 0 < self.sparsity < 1:
            raise ConfigError(
                f"{where}.sparsity must be a share in (0, 1) (0.5: half the dense weights "
                f"zeroed), got {self.sparsity!r}"
            )
        if not self.hidden_units or not all(_whole(u, 1) for u in self.hidden_units):
            raise ConfigError(
                f"{where}.hidden_units must be a list of layer sizes >= 1 for the distilled "
                f"student, e.g. [8], got {list(self.hidden_units)!r}"
            )
        for name, low in (("fine_tune_epochs", 1), ("max_rows", 100), ("latency_requests", 1)):
            if not _whole(getattr(self, name), low):
                raise ConfigError(
                    f"{where}.{name} must be a whole number >= {low}, got {getattr(self, name)!r}"
                )
        if self.distill_epochs is not None and not _whole(self.distill_epochs, 1):
            raise ConfigError(
                f"{where}.distill_epochs must be a whole number >= 1 or left out (then "
                f"training.epochs), got {self.distill_epochs!r}"
            )

    def losses(self) -> dict[str, float]:
        return {metric: float(value) for metric, value in self.max_metric_loss}

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> CompressionSpec:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: compression must be a mapping, got {raw!r}; {_EXAMPLE}")
        unknown = sorted(set(raw) - set(COMPRESSION_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where}: compression has unknown fields {unknown}; use "
                f"{', '.join(COMPRESSION_FIELDS)} ({_EXAMPLE})"
            )
        losses = raw.get("max_metric_loss") or {}
        if not isinstance(losses, dict):
            raise ConfigError(
                f"{where}: compression.max_metric_loss must map metric names to numbers, got "
                f"{losses!r}; {_EXAMPLE}"
            )
        variants = raw.get("variants", list(VARIANT_KINDS))
        units = raw.get("hidden_units", [8])
        if not isinstance(variants, list | tuple) or not isinstance(units, list | tuple):
            raise ConfigError(
                f"{where}: compression.variants and compression.hidden_units must be lists; "
                + _EXAMPLE
            )
        known = {k: raw[k] for k in COMPRESSION_FIELDS if k in raw}
        known.update(
            variants=tuple(str(v) for v in variants),
            hidden_units=tuple(units),
            max_metric_loss=tuple(sorted((str(k), v) for k, v in losses.items())),
        )
        try:
            return cls(**known)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "variants": list(self.variants),
            "max_metric_loss": self.losses(),
            "min_size_gain": self.min_size_gain,
            "min_latency_gain": self.min_latency_gain,
            "sparsity": self.sparsity,
            "fine_tune_epochs": self.fine_tune_epochs,
            "hidden_units": list(self.hidden_units),
            "distill_epochs": self.distill_epochs,
            "max_rows": self.max_rows,
            "latency_requests": self.latency_requests,
        }
