"""Dataset specs: YAML in conf/datasets loaded into frozen, validated dataclasses."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aimass.errors import ConfigError

DTYPES = ("string", "long", "double")
SOURCE_FORMATS = ("csv", "parquet")
TASKS = ("binary",)
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


@dataclass(frozen=True)
class GateSpec:
    min_auc: float = 0.5
    min_accuracy: float = 0.0
    max_auc_regression: float = 0.01

    def __post_init__(self) -> None:
        for name in ("min_auc", "min_accuracy"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"gate.{name} must be between 0 and 1, got {value}")
        if not 0.0 <= self.max_auc_regression <= 1.0:
            raise ConfigError(
                f"gate.max_auc_regression must be between 0 and 1, got {self.max_auc_regression}"
            )


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
        if self.task not in TASKS:
            raise ConfigError(
                f"{where}: label.task '{self.task}' is not supported; use one of {TASKS}"
            )
        if self.label_name in columns:
            raise ConfigError(
                f"{where}: label.name '{self.label_name}' clashes with a schema column; pick another name"
            )
        for feat in (*self.numeric_features, *self.categorical_features):
            if feat not in columns:
                raise ConfigError(
                    f"{where}: feature '{feat}' is not in the schema; add it to schema or remove it from features"
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
        for col in (*self.dedupe_key, *self.slices):
            if col not in columns:
                raise ConfigError(
                    f"{where}: '{col}' (in dedupe_key or slices) is not in the schema; add it to schema or remove it"
                )
        if not 1 <= self.holdout_percent <= 50:
            raise ConfigError(
                f"{where}: split.holdout_percent must be 1..50, got {self.holdout_percent}"
            )
        for col in (*self.quality.not_null, *(r.column for r in self.quality.ranges)):
            if col not in columns and col != self.label_name:
                raise ConfigError(f"{where}: quality refers to unknown column '{col}'")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.schema)

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric_features, *self.categorical_features)

    def dtype(self, column: str) -> str:
        return dict(self.schema)[column]

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
            },
            "schema": dict(self.schema),
            "label": {
                "name": self.label_name,
                "expression": self.label_expression,
                "task": self.task,
            },
            "features": {
                "numeric": list(self.numeric_features),
                "categorical": list(self.categorical_features),
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
            "gate": asdict(self.gate),
            "drift": asdict(self.drift),
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
        try:
            return cls(
                name=str(_require(raw, "name", where)),
                description=str(raw.get("description", "")),
                source_format=str(source.get("format", "csv")),
                source_path=str(_require(source, "path", f"{where}: source")),
                header=bool(source.get("header", True)),
                schema=tuple((str(c), str(t)) for c, t in schema_raw.items()),
                label_name=str(_require(label, "name", f"{where}: label")),
                label_expression=str(_require(label, "expression", f"{where}: label")),
                task=str(label.get("task", "binary")),
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
                gate=GateSpec(**(raw.get("gate") or {})),
                drift=DriftSpec(**(raw.get("drift") or {})),
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
        from aimass.config import Settings

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
