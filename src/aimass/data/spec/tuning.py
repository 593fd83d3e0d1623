"""The ``tuning`` section of a dataset spec: the hyperparameter search and its space."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aimass.data.spec.base import BINARY, MULTICLASS, REGRESSION
from aimass.data.spec.sections import TrainingSpec
from aimass.platform.errors import ConfigError

# Training hyperparameters a search may tune (the fields of TrainingSpec but epochs).
TUNABLE = ("learning_rate", "batch_size", "hidden_units", "dropout", "max_vocab")
_INT_HPARAMS = ("batch_size", "max_vocab")
TUNING_ALGORITHMS = ("bayesian", "random")
# What a search optimizes unless the spec's tuning.objective says otherwise.
TUNING_OBJECTIVE = {BINARY: "auc", MULTICLASS: "log_loss", REGRESSION: "rmse"}


@dataclass(frozen=True)
class HParam:
    """One dimension of a search space: a range (``min``..``max``) or a list of ``values``.

    ``hidden_units`` is always a list of layer-size lists, e.g. ``[[64, 32], [128]]``.
    """

    name: str
    min: float | None = None
    max: float | None = None
    sampling: str = "linear"  # or "log" (ranges only)
    values: tuple[Any, ...] = ()

    @property
    def is_choice(self) -> bool:
        return bool(self.values)

    def check(self) -> None:
        where = f"tuning.space.{self.name}"
        if self.name not in TUNABLE:
            raise ConfigError(
                f"{where}: '{self.name}' cannot be tuned; use some of {list(TUNABLE)} "
                "(epochs are tuning.epochs per trial)"
            )
        if self.is_choice:
            if self.min is not None or self.max is not None:
                raise ConfigError(f"{where}: give either values or min/max, not both")
            if len(set(map(str, self.values))) != len(self.values):
                raise ConfigError(f"{where}: values has duplicates: {list(self.values)}")
            for value in self.values:
                # Each choice must make a valid TrainingSpec on its own.
                _training_with(self.name, value, where)
            return
        if self.name == "hidden_units":
            raise ConfigError(
                f"{where}: list the layer sizes to try, e.g. values: [[64, 32], [128, 64], [32]]"
            )
        if self.min is None or self.max is None or not self.min < self.max:
            raise ConfigError(
                f"{where}: needs min < max (got min={self.min}, max={self.max}) or a values list"
            )
        if self.sampling not in ("linear", "log"):
            raise ConfigError(f"{where}: sampling '{self.sampling}' is not 'linear' or 'log'")
        if self.sampling == "log" and self.min <= 0:
            raise ConfigError(f"{where}: log sampling needs min > 0, got {self.min}")
        for bound in (self.min, self.max):
            _training_with(self.name, bound, where)
        if self.name in _INT_HPARAMS and not (
            float(self.min).is_integer() and float(self.max).is_integer()
        ):
            raise ConfigError(f"{where}: {self.name} is a whole number; use integer min and max")

    def to_dict(self) -> dict[str, Any]:
        if self.is_choice:
            return {"values": [list(v) if isinstance(v, tuple) else v for v in self.values]}
        return {"min": self.min, "max": self.max, "sampling": self.sampling}


def _training_with(name: str, value: Any, where: str) -> TrainingSpec:
    if name == "hidden_units":
        if not isinstance(value, list | tuple) or not all(
            isinstance(u, int) and not isinstance(u, bool) for u in value
        ):
            raise ConfigError(f"{where}: each value must be a list of layer sizes, got {value!r}")
        value = tuple(value)
    elif name in _INT_HPARAMS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {value!r} is not a whole number")
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {value!r} is not a number")
    try:
        return TrainingSpec(**{name: value})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def default_space() -> tuple[HParam, ...]:
    """The search space of a spec without ``tuning.space``."""
    return (
        HParam("learning_rate", min=1e-4, max=1e-2, sampling="log"),
        HParam("hidden_units", values=((64, 32), (128, 64), (32,))),
        HParam("dropout", min=0.0, max=0.3),
    )


@dataclass(frozen=True)
class TuningSpec:
    """How ``aimass_tune`` searches hyperparameters (Keras Tuner oracles).

    Every trial is a real training run (``epochs`` epochs, the run's workers) on the train
    split less ``validation_percent`` of it, scored on that validation share with the
    gate's metric code; the holdout the gate uses is never seen by the search.
    """

    algorithm: str = "bayesian"
    max_trials: int = 8
    epochs: int = 3
    objective: str = ""  # "" = TUNING_OBJECTIVE of the task
    validation_percent: int = 20
    space: tuple[HParam, ...] = field(default_factory=default_space)

    def __post_init__(self) -> None:
        if self.algorithm not in TUNING_ALGORITHMS:
            raise ConfigError(
                f"tuning.algorithm '{self.algorithm}' is unknown; use one of {TUNING_ALGORITHMS}"
            )
        if not 1 <= self.max_trials <= 100:
            raise ConfigError(f"tuning.max_trials must be 1..100, got {self.max_trials}")
        if not 1 <= self.epochs <= 200:
            raise ConfigError(f"tuning.epochs must be 1..200, got {self.epochs}")
        if not 5 <= self.validation_percent <= 50:
            raise ConfigError(
                f"tuning.validation_percent must be 5..50, got {self.validation_percent}"
            )
        if not self.space:
            raise ConfigError("tuning.space is empty; list at least one of " + str(list(TUNABLE)))
        names = [h.name for h in self.space]
        if len(set(names)) != len(names):
            raise ConfigError(f"tuning.space names a hyperparameter twice: {names}")
        for hp in self.space:
            hp.check()

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "max_trials": self.max_trials,
            "epochs": self.epochs,
            "objective": self.objective,
            "validation_percent": self.validation_percent,
            "space": {h.name: h.to_dict() for h in self.space},
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> TuningSpec:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: tuning must be a mapping, got {raw!r}")
        known = {"algorithm", "max_trials", "epochs", "objective", "validation_percent", "space"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: tuning has unknown fields {unknown}; use {sorted(known)}")
        space_raw = raw.get("space")
        space = default_space()
        if space_raw is not None:
            if not isinstance(space_raw, dict):
                raise ConfigError(
                    f"{where}: tuning.space must map names to {{min, max[, sampling]}} or "
                    "{values: [...]}, e.g. learning_rate: {min: 0.0001, max: 0.01, sampling: log}"
                )
            space = tuple(_hparam(str(n), d, where) for n, d in space_raw.items())
        try:
            return cls(
                algorithm=str(raw.get("algorithm", "bayesian")),
                max_trials=int(raw.get("max_trials", 8)),
                epochs=int(raw.get("epochs", 3)),
                objective=str(raw.get("objective") or ""),
                validation_percent=int(raw.get("validation_percent", 20)),
                space=space,
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _hparam(name: str, raw: Any, where: str) -> HParam:
    fields = {"min", "max", "sampling", "values"}
    if not isinstance(raw, dict) or not raw or set(raw) - fields:
        raise ConfigError(
            f"{where}: tuning.space.{name} must be {{min, max[, sampling: log]}} or "
            f"{{values: [...]}}, got {raw!r}"
        )
    values = raw.get("values") or ()
    if not isinstance(values, list | tuple):
        raise ConfigError(f"{where}: tuning.space.{name}.values must be a list, got {values!r}")
    return HParam(
        name=name,
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        sampling=str(raw.get("sampling", "linear")),
        values=tuple(tuple(v) if isinstance(v, list) else v for v in values),
    )
