"""Dataset specs: YAML in conf/datasets loaded into frozen, validated dataclasses."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aimass.platform.errors import ConfigError

DTYPES = ("string", "long", "double")
SOURCE_FORMATS = ("csv", "parquet")
TASKS = ("binary", "multiclass", "regression")
BINARY, MULTICLASS, REGRESSION = TASKS
# Holdout metrics by task and whether larger is better (the gate's bars name these).
CLASSIFICATION_METRICS = {
    "auc": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "ece": False,
}
REGRESSION_METRICS = {"rmse": False, "mae": False, "r2": True}
METRICS = {
    BINARY: CLASSIFICATION_METRICS,
    MULTICLASS: CLASSIFICATION_METRICS,
    REGRESSION: REGRESSION_METRICS,
}
# The metric a summary leads with.
PRIMARY_METRIC = {BINARY: "auc", MULTICLASS: "accuracy", REGRESSION: "rmse"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise ConfigError(f"{where}: missing required field '{key}'")
    return mapping[key]


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


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset looks like and how AI Mass cleans, checks and learns from it."""

    name: str
    description: str
    source_format: str
    source_path: str
    header: bool
    schema: tuple[tuple[str, str], ...]
    label_name: str
    label_expression: str
    task: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    # Columns that identify a record: rows repeating a key are duplicates (the first is kept).
    dedupe_key: tuple[str, ...] = ()
    # Columns whose values define evaluation slices.
    slices: tuple[str, ...] = ()
    holdout_percent: int = 20
    quality: QualitySpec = field(default_factory=QualitySpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    gate: GateSpec = field(default_factory=GateSpec)
    drift: DriftSpec = field(default_factory=DriftSpec)
    tuning: TuningSpec = field(default_factory=TuningSpec)
    # The schema column the label is read from (``label.column``), when it is not an expression.
    label_column: str | None = None
    # Multiclass: the class values in model output order; rows with other values are quarantined.
    label_classes: tuple[str, ...] = ()
    # Field values that mean "missing" besides the empty string (e.g. "NA").
    null_values: tuple[str, ...] = ()
    # Columns computed by the clean job (Spark SQL over the schema columns), written to the
    # clean partition after the schema columns; rules, label and features may use them.
    derived: tuple[Derived, ...] = ()

    def __post_init__(self) -> None:
        where = f"dataset spec '{self.name}'"
        if not _NAME.match(self.name):
            raise ConfigError(
                f"{where}: name must be lower_snake_case (it names lake folders and models)"
            )
        if self.source_format not in SOURCE_FORMATS:
            raise ConfigError(
                f"{where}: source.format '{self.source_format}' is not supported; use one of {SOURCE_FORMATS}"
            )
        columns = [c for c, _ in self.schema]
        if len(set(columns)) != len(columns):
            raise ConfigError(f"{where}: schema has duplicate columns")
        for col, dtype in self.schema:
            if dtype not in DTYPES:
                raise ConfigError(
                    f"{where}: schema.{col} has type '{dtype}'; use one of {', '.join(DTYPES)}"
                )
        for d in self.derived:
            if not _NAME.match(d.name):
                raise ConfigError(f"{where}: derived column '{d.name}' must be lower_snake_case")
            if d.name in columns or d.name == self.label_name:
                raise ConfigError(
                    f"{where}: derived column '{d.name}' clashes with a schema column or the "
                    "label; pick another name"
                )
            if d.dtype not in DTYPES:
                raise ConfigError(
                    f"{where}: derived.{d.name} has type '{d.dtype}'; use one of {', '.join(DTYPES)}"
                )
        if len({d.name for d in self.derived}) != len(self.derived):
            raise ConfigError(f"{where}: derived has duplicate column names")
        clean_columns = [*columns, *(d.name for d in self.derived)]
        if self.task not in TASKS:
            raise ConfigError(
                f"{where}: label.task '{self.task}' is not supported; use one of {TASKS}"
            )
        if self.label_name in columns:
            raise ConfigError(
                f"{where}: label.name '{self.label_name}' clashes with a schema column; pick another name"
            )
        if self.label_column is not None:
            if self.label_column not in columns:
                raise ConfigError(
                    f"{where}: label.column '{self.label_column}' is not in the schema; add it "
                    "to schema or fix the name"
                )
            if self.label_column in (*self.numeric_features, *self.categorical_features):
                raise ConfigError(
                    f"{where}: label.column '{self.label_column}' is also listed as a feature; "
                    "remove it from features (the model must not see its own label)"
                )
        if self.task == MULTICLASS:
            if len(set(self.label_classes)) < 2 or len(set(self.label_classes)) != len(
                self.label_classes
            ):
                raise ConfigError(
                    f"{where}: a multiclass label needs label.classes, two or more distinct "
                    f"values in model output order; got {list(self.label_classes)}"
                )
        elif self.label_classes:
            raise ConfigError(
                f"{where}: label.classes is only for task multiclass (task is '{self.task}'); "
                "remove it or set label.task: multiclass"
            )
        allowed = METRICS[self.task]
        for kind in GATE_BARS:
            for metric in self.gate.bars(kind):
                if metric not in allowed:
                    raise ConfigError(
                        f"{where}: gate.{kind}.{metric} is not a {self.task} metric; use one "
                        f"of {sorted(allowed)}"
                    )
        if self.gate.max_slice_regression and not self.slices:
            raise ConfigError(
                f"{where}: gate.max_slice_regression needs slice columns; list them in "
                "slices (e.g. slices: [payment_type]) or remove gate.max_slice_regression"
            )
        if self.gate.threshold is not None and self.task != BINARY:
            raise ConfigError(
                f"{where}: gate.threshold is the decision threshold of a binary label, but "
                f"label.task is '{self.task}' (multiclass predicts the arg-max class); remove it"
            )
        if self.tuning.objective and self.tuning.objective not in allowed:
            raise ConfigError(
                f"{where}: tuning.objective '{self.tuning.objective}' is not a {self.task} "
                f"metric; use one of {sorted(allowed)}"
            )
        for feat in (*self.numeric_features, *self.categorical_features):
            if feat not in clean_columns:
                raise ConfigError(
                    f"{where}: feature '{feat}' is not in the schema or derived; add it there or remove it from features"
                )
        for feat in self.numeric_features:
            if self.dtype(feat) == "string":
                raise ConfigError(
                    f"{where}: numeric feature '{feat}' has type string; list it under features.categorical"
                )
        if not (self.numeric_features or self.categorical_features):
            raise ConfigError(
                f"{where}: features lists no columns; add features.numeric or features.categorical"
            )
        for col in self.dedupe_key:
            if col not in columns:
                raise ConfigError(
                    f"{where}: '{col}' (in dedupe_key) is not in the schema; add it to schema or remove it"
                )
        for col in self.slices:
            if col not in clean_columns:
                raise ConfigError(
                    f"{where}: '{col}' (in slices) is not in the schema or derived; add it there or remove it"
                )
        if not 1 <= self.holdout_percent <= 50:
            raise ConfigError(
                f"{where}: split.holdout_percent must be 1..50, got {self.holdout_percent}"
            )
        for col in (*self.quality.not_null, *(r.column for r in self.quality.ranges)):
            if col not in clean_columns and col != self.label_name:
                raise ConfigError(f"{where}: quality refers to unknown column '{col}'")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.schema)

    @property
    def clean_columns(self) -> tuple[str, ...]:
        """The schema columns, then the derived ones: the data columns of the clean partition."""
        return (*self.columns, *(d.name for d in self.derived))

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric_features, *self.categorical_features)

    def dtype(self, column: str) -> str:
        """Spec type of a schema or derived column."""
        types = dict(self.schema)
        types.update((d.name, d.dtype) for d in self.derived)
        return types[column]

    @property
    def is_classification(self) -> bool:
        return self.task in (BINARY, MULTICLASS)

    @property
    def num_classes(self) -> int:
        """Classes of the label: 2 for binary, ``len(label_classes)`` for multiclass, 1 else."""
        if self.task == MULTICLASS:
            return len(self.label_classes)
        return 2 if self.task == BINARY else 1

    @property
    def metrics(self) -> dict[str, bool]:
        """The holdout metrics for this spec's task, metric -> larger is better."""
        return METRICS[self.task]

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self.task]

    @property
    def tuning_objective(self) -> str:
        """The validation metric a hyperparameter search optimizes."""
        return self.tuning.objective or TUNING_OBJECTIVE[self.task]

    def resolved_source_path(self, var_dir: Path) -> str:
        return self.source_path.replace("{var_dir}", str(var_dir))

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping that :meth:`from_dict` turns back into this spec (workers read it)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": {
                "format": self.source_format,
                "path": self.source_path,
                "header": self.header,
                "null_values": list(self.null_values),
            },
            "schema": dict(self.schema),
            "label": {
                "name": self.label_name,
                "task": self.task,
                **(
                    {"column": self.label_column}
                    if self.label_column is not None
                    else {"expression": self.label_expression}
                ),
                **({"classes": list(self.label_classes)} if self.label_classes else {}),
            },
            "features": {
                "numeric": list(self.numeric_features),
                "categorical": list(self.categorical_features),
            },
            "derived": {
                d.name: {"expression": d.expression, "type": d.dtype} for d in self.derived
            },
            "rules": [{"name": r.name, "expression": r.expression} for r in self.rules],
            "dedupe_key": list(self.dedupe_key),
            "slices": list(self.slices),
            "split": {"holdout_percent": self.holdout_percent},
            "quality": {
                "min_rows": self.quality.min_rows,
                "not_null": list(self.quality.not_null),
                "ranges": {
                    r.column: {"min": r.min, "max": r.max, "mostly": r.mostly}
                    for r in self.quality.ranges
                },
            },
            "training": {**asdict(self.training), "hidden_units": list(self.training.hidden_units)},
            "gate": self.gate.to_dict(),
            "drift": asdict(self.drift),
            "tuning": self.tuning.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "<dict>") -> DatasetSpec:
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: a dataset spec must be a YAML mapping")
        where = f"{origin}"
        source = _require(raw, "source", where)
        label = _require(raw, "label", where)
        features = _require(raw, "features", where)
        schema_raw = _require(raw, "schema", where)
        if not isinstance(schema_raw, dict) or not schema_raw:
            raise ConfigError(f"{where}: schema must map column names to types")
        quality_raw = raw.get("quality") or {}
        ranges = tuple(
            Range(
                column=col, min=r.get("min"), max=r.get("max"), mostly=float(r.get("mostly", 1.0))
            )
            for col, r in (quality_raw.get("ranges") or {}).items()
        )
        task = str(label.get("task", BINARY))
        column = label.get("column")
        if (column is None) == (label.get("expression") is None):
            raise ConfigError(
                f"{where}: label needs exactly one of 'column' (a schema column used as it is) "
                "or 'expression' (Spark SQL over the schema columns, e.g. \"tips > 0.2 * fare\")"
            )
        expression = f"`{column}`" if column is not None else str(label["expression"])
        classes = label.get("classes") or ()
        if not isinstance(classes, list | tuple):
            raise ConfigError(f"{where}: label.classes must be a list, got {classes!r}")
        null_values = source.get("null_values") or ()
        if not isinstance(null_values, list | tuple):
            raise ConfigError(
                f"{where}: source.null_values must be a list of strings, got {null_values!r}"
            )
        derived_raw = raw.get("derived") or {}
        if not isinstance(derived_raw, dict) or not all(
            isinstance(v, dict) and v.get("expression") and v.get("type")
            for v in derived_raw.values()
        ):
            raise ConfigError(
                f"{where}: derived must map column names to {{expression: <Spark SQL>, type: "
                f"<{'|'.join(DTYPES)}>}}, e.g. speed: {{expression: 'miles / hours', type: double}}"
            )
        gate_raw = raw.get("gate")
        if gate_raw is not None and not isinstance(gate_raw, dict):
            raise ConfigError(f"{where}: gate must be a mapping, got {gate_raw!r}")
        try:
            return cls(
                name=str(_require(raw, "name", where)),
                description=str(raw.get("description", "")),
                source_format=str(source.get("format", "csv")),
                source_path=str(_require(source, "path", f"{where}: source")),
                header=bool(source.get("header", True)),
                schema=tuple((str(c), str(t)) for c, t in schema_raw.items()),
                label_name=str(_require(label, "name", f"{where}: label")),
                label_expression=expression,
                task=task,
                numeric_features=tuple(features.get("numeric") or ()),
                categorical_features=tuple(features.get("categorical") or ()),
                rules=tuple(
                    Rule(name=r["name"], expression=r["expression"]) for r in raw.get("rules") or ()
                ),
                dedupe_key=tuple(raw.get("dedupe_key") or ()),
                slices=tuple(raw.get("slices") or ()),
                holdout_percent=int((raw.get("split") or {}).get("holdout_percent", 20)),
                quality=QualitySpec(
                    min_rows=int(quality_raw.get("min_rows", 1)),
                    not_null=tuple(quality_raw.get("not_null") or ()),
                    ranges=ranges,
                ),
                training=TrainingSpec(**_with_tuples(raw.get("training") or {})),
                gate=GateSpec.default(task)
                if gate_raw is None
                else GateSpec.from_dict(gate_raw, where),
                drift=DriftSpec(**(raw.get("drift") or {})),
                tuning=TuningSpec()
                if raw.get("tuning") is None
                else TuningSpec.from_dict(raw["tuning"], where),
                label_column=None if column is None else str(column),
                label_classes=tuple(str(c) for c in classes),
                null_values=tuple(str(v) for v in null_values),
                derived=tuple(
                    Derived(name=str(n), expression=str(d["expression"]), dtype=str(d["type"]))
                    for n, d in derived_raw.items()
                ),
            )
        except TypeError as exc:  # unknown keys in training/gate/drift
            raise ConfigError(
                f"{where}: {exc}; check the field names against conf/datasets/chicago_taxi.yaml"
            ) from exc


def _with_tuples(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def load_spec(name_or_path: str | Path, conf_dir: Path | None = None) -> DatasetSpec:
    """Load a spec by name (conf/datasets/<name>.yaml) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        from aimass.platform.settings import Settings

        conf_dir = conf_dir or Settings.from_env().conf_dir
        path = conf_dir / "datasets" / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.exists() else []
        raise ConfigError(
            f"dataset spec '{name_or_path}' not found at {path}; known specs: {known or 'none'}"
        )
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return DatasetSpec.from_dict(raw, origin=str(path))
