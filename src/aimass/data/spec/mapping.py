"""A dataset spec to and from its YAML mapping (``conf/datasets/<name>.yaml``).

:class:`~aimass.data.spec.dataset.DatasetSpec` checks the fields; this module only reads
the sections of the mapping into them, and writes them back.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aimass.data.spec.base import BINARY, DTYPES
from aimass.data.spec.compression import CompressionSpec
from aimass.data.spec.gate import GateSpec
from aimass.data.spec.sections import (
    Derived,
    DriftSpec,
    QualitySpec,
    Range,
    Rule,
    SplitSpec,
    TrainingSpec,
)
from aimass.data.spec.tuning import TuningSpec
from aimass.platform.errors import ConfigError


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise ConfigError(f"{where}: missing required field '{key}'")
    return mapping[key]


def spec_to_dict(self: Any) -> dict[str, Any]:
    """The YAML mapping that :func:`spec_from_dict` turns back into ``self`` (workers read it)."""
    return {
        "name": self.name,
        "description": self.description,
        "source": {
            "format": self.source_format,
            "path": self.source_path,
            "header": self.header,
            "null_values": list(self.null_values),
            "delimiter": self.delimiter,
            "quote": self.quote,
            "trim": self.trim,
            "case": dict(self.case),
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
        "derived": {d.name: {"expression": d.expression, "type": d.dtype} for d in self.derived},
        "rules": [{"name": r.name, "expression": r.expression} for r in self.rules],
        "dedupe_key": list(self.dedupe_key),
        "slices": list(self.slices),
        "split": {
            "by": self.split.by,
            "holdout_percent": self.holdout_percent,
            **({"column": self.split.column} if self.split.column else {}),
            **({"cutoff": self.split.cutoff} if self.split.cutoff else {}),
            **({"key": list(self.split.key)} if self.split.key else {}),
        },
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
        "compression": self.compression.to_dict(),
    }


def spec_from_dict(cls: Any, raw: dict[str, Any], origin: str = "<dict>") -> Any:
    """Build ``cls`` (a :class:`DatasetSpec`) from its YAML mapping, naming what is wrong."""
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
        Range(column=col, min=r.get("min"), max=r.get("max"), mostly=float(r.get("mostly", 1.0)))
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
        isinstance(v, dict) and v.get("expression") and v.get("type") for v in derived_raw.values()
    ):
        raise ConfigError(
            f"{where}: derived must map column names to {{expression: <Spark SQL>, type: "
            f"<{'|'.join(DTYPES)}>}}, e.g. speed: {{expression: 'miles / hours', type: double}}"
        )
    split_raw = raw.get("split") or {}
    if not isinstance(split_raw, dict):
        raise ConfigError(f"{where}: split must be a mapping, got {split_raw!r}")
    case_raw = source.get("case") or {}
    if not isinstance(case_raw, dict):
        raise ConfigError(
            f"{where}: source.case must map string columns to lower or upper, got {case_raw!r}"
        )
    key_raw = split_raw.get("key") or ()
    gate_raw = raw.get("gate")
    if gate_raw is not None and not isinstance(gate_raw, dict):
        raise ConfigError(f"{where}: gate must be a mapping, got {gate_raw!r}")
    try:
        return cls(
            name=str(_require(raw, "name", where)),
            description=str(raw.get("description", "")),
            source_format=str(source.get("format", "csv")),
            source_path=str(source.get("path") or ""),
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
            holdout_percent=int(split_raw.get("holdout_percent", 20)),
            split=SplitSpec(
                by=str(split_raw.get("by", "hash")),
                column=None if split_raw.get("column") is None else str(split_raw["column"]),
                cutoff=None if split_raw.get("cutoff") is None else str(split_raw["cutoff"]),
                key=tuple(str(k) for k in ([key_raw] if isinstance(key_raw, str) else key_raw)),
            ),
            delimiter=str(source.get("delimiter", ",")),
            quote=str(source.get("quote", '"')),
            trim=bool(source.get("trim", True)),
            case=tuple((str(c), str(m)) for c, m in case_raw.items()),
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
            compression=CompressionSpec()
            if raw.get("compression") is None
            else CompressionSpec.from_dict(raw["compression"], where),
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
