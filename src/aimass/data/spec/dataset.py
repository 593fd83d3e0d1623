"""The whole dataset spec: its sections put together, checked across sections, as a mapping.

:class:`DatasetSpec` checks what no single section can (features against the schema, gate
bars against the task's metrics, ...); ``from_dict`` and ``to_dict`` convert it from and to
the YAML mapping of ``conf/datasets/<name>.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimass.data.spec import expr, mapping
from aimass.data.spec.base import (
    BINARY,
    DTYPES,
    METRICS,
    MULTICLASS,
    PRIMARY_METRIC,
    SOURCE_FORMATS,
    TASKS,
)
from aimass.data.spec.compression import CompressionSpec
from aimass.data.spec.gate import GATE_BARS, GateSpec
from aimass.data.spec.sections import (
    CASES,
    Derived,
    DriftSpec,
    QualitySpec,
    Rule,
    SplitSpec,
    TrainingSpec,
)
from aimass.data.spec.tuning import TUNING_OBJECTIVE, TuningSpec
from aimass.platform.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
    compression: CompressionSpec = field(default_factory=CompressionSpec)
    # The schema column the label is read from (``label.column``), when it is not an expression.
    label_column: str | None = None
    # Multiclass: the class values in model output order; rows with other values are quarantined.
    label_classes: tuple[str, ...] = ()
    # Field values that mean "missing" besides the empty string (e.g. "NA").
    null_values: tuple[str, ...] = ()
    # Columns computed by the clean job (Spark SQL over the schema columns), written to the
    # clean partition after the schema columns; rules, label and features may use them.
    derived: tuple[Derived, ...] = ()
    # How rows are split into train and holdout (``holdout_percent`` says how many).
    split: SplitSpec = field(default_factory=SplitSpec)
    # CSV parsing: field delimiter and quote character.
    delimiter: str = ","
    quote: str = '"'
    # Strip spaces and tabs around every field before null tokens are matched (the clean job
    # and the SavedModel both do it, so a value sent as the file has it scores the same).
    trim: bool = True
    # String columns folded to one case, column -> "lower" | "upper" (clean job and model).
    case: tuple[tuple[str, str], ...] = ()

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
        for metric in self.compression.losses():
            if metric not in allowed:
                raise ConfigError(
                    f"{where}: compression.max_metric_loss.{metric} is not a {self.task} "
                    f"metric; use some of {sorted(allowed)}"
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
        self._check_parsing(where)
        self._check_split(where, clean_columns)
        self.feature_expressions()

    def _check_parsing(self, where: str) -> None:
        for name, value in (("delimiter", self.delimiter), ("quote", self.quote)):
            if len(value) != 1 or value in "\r\n":
                raise ConfigError(
                    f"{where}: source.{name} must be one character (not a line break), got {value!r}"
                )
        if self.delimiter == self.quote:
            raise ConfigError(f"{where}: source.delimiter and source.quote must differ")
        for col, mode in self.case:
            if col not in self.columns or self.dtype(col) != "string":
                raise ConfigError(
                    f"{where}: source.case.{col}: only string schema columns can be folded to a case"
                )
            if mode not in CASES:
                raise ConfigError(f"{where}: source.case.{col} is '{mode}'; use one of {CASES}")

    def _check_split(self, where: str, clean_columns: list[str]) -> None:
        split = self.split
        if split.by == "time":
            col = str(split.column)
            if col not in self.columns or self.dtype(col) not in ("string", "long"):
                raise ConfigError(
                    f"{where}: split.column '{col}' must be a schema column of type string "
                    "(dates as YYYY-MM-DD[ HH:MM[:SS]]) or long (Unix seconds)"
                )
            if split.cutoff is not None and not (
                re.match(expr.DATE_PATTERN, split.cutoff) or re.fullmatch(r"-?\d+", split.cutoff)
            ):
                raise ConfigError(
                    f"{where}: split.cutoff {split.cutoff!r} is not a date (YYYY-MM-DD[ HH:MM[:SS]]) "
                    "or Unix seconds"
                )
        for col in split.key:
            if col not in clean_columns:
                raise ConfigError(
                    f"{where}: '{col}' (in split.key) is not in the schema or derived; add it there or remove it"
                )

    def feature_expressions(self) -> tuple[expr.Compiled, ...]:
        """The derived columns the model computes, in the feature language, in spec order.

        Those are the derived features and the derived columns they read. Each must be in
        the language (:mod:`aimass.data.spec.expr`); other derived columns (used by rules,
        slices or quality only) may be any Spark SQL.

        Raises:
            ExpressionError: a derived feature is outside the language, naming the construct.
        """
        by_name = {d.name: d for d in self.derived}
        needed = {f for f in self.features if f in by_name}
        compiled: dict[str, expr.Compiled] = {}
        types = dict(self.schema)
        for d in reversed(self.derived):  # later derived columns may read earlier ones
            if d.name not in needed:
                continue
            c = expr.check(
                d.name, d.expression, d.dtype, {**types, **{x.name: x.dtype for x in self.derived}}
            )
            compiled[d.name] = c
            needed.update(r for r in c.reads if r in by_name)
        order = [d.name for d in self.derived if d.name in compiled]
        for i, name in enumerate(order):
            later = [r for r in compiled[name].reads if r in by_name and r not in order[:i]]
            if later:
                raise expr.ExpressionError(
                    f"derived.{name} reads {later}, which come later or are not derived features; "
                    "a derived column may read the schema and the derived columns above it"
                )
        return tuple(compiled[n] for n in order)

    @property
    def model_inputs(self) -> tuple[str, ...]:
        """The raw schema columns the model takes (and the serving signature), in schema order.

        The features that are schema columns, and the schema columns the derived features
        read. Clients send these, as they appear in the source.
        """
        needed = {f for f in self.features if f in self.columns}
        for c in self.feature_expressions():
            needed.update(r for r in c.reads if r in self.columns)
        return tuple(c for c in self.columns if c in needed)

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
        return mapping.spec_to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "<dict>") -> DatasetSpec:
        return mapping.spec_from_dict(cls, raw, origin)
