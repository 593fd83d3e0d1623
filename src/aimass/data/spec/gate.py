"""The ``gate`` section of a dataset spec: the bars a candidate model must clear."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aimass.data.spec.base import REGRESSION
from aimass.platform.errors import ConfigError

Bars = tuple[tuple[str, float], ...]
# The bar sections of a spec's ``gate``, each mapping metric names to numbers.
GATE_BARS = ("min", "max", "max_regression", "max_slice_regression")
GATE_FIELDS = (*GATE_BARS, "min_slice_rows", "threshold")
DEFAULT_MIN_SLICE_ROWS = 30
_GATE_EXAMPLE = (
    "e.g. gate: {min: {auc: 0.6}, max_regression: {auc: 0.01}, "
    "max_slice_regression: {auc: 0.05}, min_slice_rows: 30}"
)


@dataclass(frozen=True)
class GateSpec:
    """The bars a candidate must clear, by holdout metric (see ``METRICS`` for the names).

    ``min``: lowest allowed value; ``max``: highest allowed value (both overall);
    ``max_regression``: the largest allowed worsening against the champion on the same
    holdout, overall (absolute, in the metric's unit: a drop for metrics where larger is
    better, a rise otherwise); ``max_slice_regression``: the same, within each value of
    each of the spec's ``slices`` columns that has at least ``min_slice_rows`` holdout rows
    (smaller slices are reported, not gated). ``threshold``: the binary decision
    threshold for accuracy, precision and recall (None: 0.5). Bars are stored as sorted
    ``(metric, value)`` pairs so the spec stays hashable; ``bars()`` gives dicts.
    """

    min: Bars = ()
    max: Bars = ()
    max_regression: Bars = ()
    max_slice_regression: Bars = ()
    min_slice_rows: int = DEFAULT_MIN_SLICE_ROWS
    threshold: float | None = None

    def __post_init__(self) -> None:
        for kind in GATE_BARS:
            for metric, value in getattr(self, kind):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ConfigError(
                        f"gate.{kind}.{metric} must be a number, got {value!r}; write e.g. "
                        f"{kind}: {{{metric}: 0.05}}"
                    )
                if not math.isfinite(value):
                    raise ConfigError(
                        f"gate.{kind}.{metric} must be a finite number, got {value}; "
                        "remove the bar instead of disabling it with .inf/.nan"
                    )
                if kind in ("max_regression", "max_slice_regression") and value < 0:
                    raise ConfigError(
                        f"gate.{kind}.{metric} must be >= 0 (the allowed worsening), got "
                        f"{value}; use 0 to allow no worsening at all"
                    )
        lows, highs = self.bars("min"), self.bars("max")
        for metric in sorted(set(lows) & set(highs)):
            if lows[metric] > highs[metric]:
                raise ConfigError(
                    f"gate.min.{metric} ({lows[metric]}) is above gate.max.{metric} "
                    f"({highs[metric]}), so no model can pass; lower the min or raise the max"
                )
        if (
            isinstance(self.min_slice_rows, bool)
            or not isinstance(self.min_slice_rows, int)
            or self.min_slice_rows < 1
        ):
            raise ConfigError(
                f"gate.min_slice_rows must be a whole number >= 1, got {self.min_slice_rows!r}; "
                f"slices with fewer holdout rows are reported, not gated (default "
                f"{DEFAULT_MIN_SLICE_ROWS})"
            )
        if self.threshold is not None and (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not 0 < self.threshold < 1
        ):
            raise ConfigError(
                f"gate.threshold must be a number in (0, 1), got {self.threshold!r}; it is the "
                "probability from which a binary prediction counts as positive (default 0.5)"
            )

    def bars(self, kind: str) -> dict[str, float]:
        return dict(getattr(self, kind))

    @property
    def decision_threshold(self) -> float:
        """The binary decision threshold: ``threshold``, or 0.5 when the spec sets none."""
        return 0.5 if self.threshold is None else float(self.threshold)

    @staticmethod
    def default(task: str) -> GateSpec:
        """Bars when a spec has no ``gate``: better than chance, no real regression."""
        if task == REGRESSION:
            return GateSpec(min=(("r2", 0.0),), max_regression=(("r2", 0.02),))
        return GateSpec(min=(("auc", 0.5),), max_regression=(("auc", 0.01),))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> GateSpec:
        unknown = sorted(set(raw) - set(GATE_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where}: gate has unknown fields {unknown}; use {', '.join(GATE_FIELDS)} "
                f"(the bar sections map metric names to numbers; {_GATE_EXAMPLE})"
            )
        parts: dict[str, Bars] = {}
        for kind in GATE_BARS:
            section = raw.get(kind) or {}
            if not isinstance(section, dict):
                raise ConfigError(
                    f"{where}: gate.{kind} must map metric names to numbers, got {section!r}; "
                    + _GATE_EXAMPLE
                )
            parts[kind] = tuple(sorted((str(k), v) for k, v in section.items()))
        min_slice_rows = raw.get("min_slice_rows")
        try:
            return cls(
                **parts,
                min_slice_rows=DEFAULT_MIN_SLICE_ROWS if min_slice_rows is None else min_slice_rows,
                threshold=raw.get("threshold"),
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {kind: self.bars(kind) for kind in GATE_BARS}
        out["min_slice_rows"] = self.min_slice_rows
        out["threshold"] = self.threshold
        return out
