"""Dataset specs: YAML in conf/datasets loaded into frozen, validated dataclasses.

The spec is the shared data layout: models/ and jobs/ import it, so it imports nothing of the
centers. Its modules, each importable on its own:

- ``base``: column types, source formats, tasks and their holdout metrics;
- ``sections``: the small sections (rules, derived columns, split, quality, training, drift);
- ``expr``: the feature language derived features are written in (compiled to Spark and TF);
- ``tuning`` and ``gate``: the hyperparameter search and the bars a candidate must clear;
- ``compression``: the compressed variants of a candidate and the bars one must clear;
- ``dataset``: :class:`DatasetSpec`, the checks across sections and the YAML mapping;
- ``load``: :func:`load_spec`, a spec by name or path.

Callers import every name from ``aimass.data.spec`` itself.
"""

from __future__ import annotations

from aimass.data.spec.base import (
    BINARY,
    CLASSIFICATION_METRICS,
    DTYPES,
    METRICS,
    MULTICLASS,
    PRIMARY_METRIC,
    REGRESSION,
    REGRESSION_METRICS,
    SOURCE_FORMATS,
    TASKS,
)
from aimass.data.spec.compression import COMPRESSION_FIELDS, VARIANT_KINDS, CompressionSpec
from aimass.data.spec.dataset import DatasetSpec
from aimass.data.spec.expr import ExpressionError
from aimass.data.spec.gate import (
    DEFAULT_MIN_SLICE_ROWS,
    GATE_BARS,
    GATE_FIELDS,
    Bars,
    GateSpec,
)
from aimass.data.spec.load import load_spec
from aimass.data.spec.sections import (
    CASES,
    DRIFT_ACTIONS,
    SPLIT_KINDS,
    Derived,
    DriftSpec,
    QualitySpec,
    Range,
    Rule,
    SplitSpec,
    TrainingSpec,
)
from aimass.data.spec.tuning import (
    TUNABLE,
    TUNING_ALGORITHMS,
    TUNING_OBJECTIVE,
    HParam,
    TuningSpec,
    default_space,
)

# Callers have always caught the spec's errors as ``aimass.data.spec.ConfigError``.
from aimass.platform.errors import ConfigError

__all__ = [
    "BINARY",
    "CASES",
    "CLASSIFICATION_METRICS",
    "COMPRESSION_FIELDS",
    "DEFAULT_MIN_SLICE_ROWS",
    "DRIFT_ACTIONS",
    "DTYPES",
    "GATE_BARS",
    "GATE_FIELDS",
    "METRICS",
    "MULTICLASS",
    "PRIMARY_METRIC",
    "REGRESSION",
    "REGRESSION_METRICS",
    "SPLIT_KINDS",
    "SOURCE_FORMATS",
    "TASKS",
    "TUNABLE",
    "TUNING_ALGORITHMS",
    "TUNING_OBJECTIVE",
    "VARIANT_KINDS",
    "Bars",
    "CompressionSpec",
    "ConfigError",
    "DatasetSpec",
    "Derived",
    "DriftSpec",
    "ExpressionError",
    "GateSpec",
    "HParam",
    "QualitySpec",
    "Range",
    "Rule",
    "SplitSpec",
    "TrainingSpec",
    "TuningSpec",
    "default_space",
    "load_spec",
]
