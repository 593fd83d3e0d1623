"""The small sections of a dataset spec: rules, derived columns, quality, training, drift.

Each is a frozen dataclass that checks its own values when it is built, so a bad value is
reported with the section's field name before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from aimass.platform.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    name: str
    expression: str


@dataclass(frozen=True)
class Derived:
    """A column the clean job computes from the schema columns (``derived`` in the spec)."""

    name: str
    expression: str
    dtype: str


@dataclass(frozen=True)
class Range:
    column: str
    min: float | None
    max: float | None
    mostly: float = 1.0


@dataclass(frozen=True)
class QualitySpec:
    min_rows: int = 1
    not_null: tuple[str, ...] = ()
    ranges: tuple[Range, ...] = ()


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 1e-3
    hidden_units: tuple[int, ...] = (64, 32)
    max_vocab: int = 200
    # Share of units dropped after each hidden layer while training (0 = no dropout layer).
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"training.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"training.batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"training.learning_rate must be in (0, 1), got {self.learning_rate}")
        if not self.hidden_units or any(u < 1 for u in self.hidden_units):
            raise ConfigError(
                f"training.hidden_units must be positive integers, got {list(self.hidden_units)}"
            )
        if self.max_vocab < 1:
            raise ConfigError(f"training.max_vocab must be >= 1, got {self.max_vocab}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"training.dropout must be in [0, 1), got {self.dropout}")


DRIFT_ACTIONS = ("fail", "flag")


@dataclass(frozen=True)
class DriftSpec:
    """How far the new batch may move from the champion's reference before it matters.

    PSI (population stability index) per feature: below ``psi_warning`` is stable, from
    ``psi_warning`` a warning, from ``psi_critical`` critical. ``null_share_change`` is the
    largest allowed absolute change of a column's share of nulls. On a critical finding the
    run fails (``on_critical: fail``) or goes on with the drift flagged (``flag``).
    """

    psi_warning: float = 0.1
    psi_critical: float = 0.25
    null_share_change: float = 0.1
    bins: int = 10
    on_critical: str = "flag"

    def __post_init__(self) -> None:
        if not 0 < self.psi_warning < self.psi_critical:
            raise ConfigError(
                f"drift.psi_warning ({self.psi_warning}) must be > 0 and below drift.psi_critical ({self.psi_critical})"
            )
        if not 0 < self.null_share_change <= 1:
            raise ConfigError(
                f"drift.null_share_change must be in (0, 1], got {self.null_share_change}"
            )
        if not 2 <= self.bins <= 100:
            raise ConfigError(f"drift.bins must be 2..100, got {self.bins}")
        if self.on_critical not in DRIFT_ACTIONS:
            raise ConfigError(
                f"drift.on_critical '{self.on_critical}' is not one of {DRIFT_ACTIONS}"
            )


SPLIT_KINDS = ("hash", "time", "group")
CASES = ("lower", "upper")


@dataclass(frozen=True)
class SplitSpec:
    """How the clean job assigns rows to ``train`` or ``holdout`` (``split`` in the spec).

    - ``hash``: a hash of the whole row; ``holdout_percent`` % of rows, stable across reruns.
      For rows that are independent of each other.
    - ``time``: the holdout is the latest ``holdout_percent`` % of the batch by ``column``
      (a date string or a long of Unix seconds), or with ``cutoff`` every row at or after it.
      For time-ordered data, where a model is used on days it has not seen.
    - ``group``: a hash of the ``key`` columns, so every row of a key falls on one side.
      For repeated rows of one entity (a customer, a station).
    """

    by: str = "hash"
    column: str | None = None
    cutoff: str | None = None
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.by not in SPLIT_KINDS:
            raise ConfigError(f"split.by '{self.by}' is not one of {SPLIT_KINDS}")
        if self.by == "time" and not self.column:
            raise ConfigError(
                "split.by: time needs split.column, a date or timestamp column (e.g. column: date)"
            )
        if self.by == "group" and not self.key:
            raise ConfigError("split.by: group needs split.key, the columns that name a group")
        if self.by != "time" and (self.column or self.cutoff):
            raise ConfigError("split.column and split.cutoff are for split.by: time")
        if self.by != "group" and self.key:
            raise ConfigError("split.key is for split.by: group")
