"""The whole dataset spec: its sections put together, checked across sections, as a mapping.

:class:`DatasetSpec` checks what no single section can (features against the schema, gate
bars against the task's metrics, ...); ``from_dict`` and ``to_dict`` convert it from and to
the YAML mapping of ``conf/datasets/<name>.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aimass.data.spec.base import (
    BINARY,
    DTYPES,
    METRICS,
    MULTICLASS,
    PRIMARY_METRIC,
    SOURCE_FORMATS,
    TASKS,
)
from aimass.data.spec.gate import GATE_BARS, GateSpec
from aimass.data.spec.sections import (
    Derived,
    DriftSpec,
    QualitySpec,
    Range,
    Rule,
    TrainingSpec,
)
from aimass.data.spec.tuning import TUNING_OBJECTIVE, TuningSpec
from aimass.platform.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise ConfigError(f"{where}: missing required field '{key}'")
    return mapping[key]


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
