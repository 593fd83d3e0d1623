"""Model inputs and features, their dtypes and missing-value fills, from a dataset spec.

The model takes raw columns (``model_inputs``: what a client sends, the serving signature)
and computes its features from them (``features``: the raw columns the spec lists as
features, as they are, and the derived features, by ``models.tabular.derive``). This
module is the single place that maps spec types to tensor dtypes, so the input pipeline,
the model builder and the serving signature agree. It imports no TensorFlow: dtypes are
named by string (``tf.as_dtype`` accepts them).

Missing values on the wire (docs/architecture.md, "Train"): NaN for float,
-1 for long, "" for string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError

NUMERIC = "numeric"
CATEGORICAL = "categorical"
RAW = "raw"  # a model input that only derived features read

# spec type -> (tf dtype name, numpy dtype, fill for missing values)
_TYPES: dict[str, tuple[str, Any, Any]] = {
    "double": ("float32", np.float32, np.float32("nan")),
    "long": ("int64", np.int64, -1),
    "string": ("string", object, ""),
}


@dataclass(frozen=True)
class Feature:
    """One model input: its column name, spec type and role."""

    name: str
    spec_dtype: str
    kind: str

    @property
    def tf_dtype(self) -> str:
        """TensorFlow dtype name (``float32``, ``int64`` or ``string``)."""
        return _TYPES[self.spec_dtype][0]

    @property
    def np_dtype(self) -> Any:
        """NumPy dtype of the arrays fed to the model (strings are ``object`` arrays of ``str``)."""
        return _TYPES[self.spec_dtype][1]

    @property
    def fill(self) -> Any:
        """The value that stands for "missing" in this feature's arrays."""
        return _TYPES[self.spec_dtype][2]


def features(spec: DatasetSpec) -> tuple[Feature, ...]:
    """Model inputs in spec order: numeric features first, then categorical ones."""
    out: list[Feature] = []
    for kind, names in ((NUMERIC, spec.numeric_features), (CATEGORICAL, spec.categorical_features)):
        for name in names:
            dtype = spec.dtype(name)
            if dtype not in _TYPES:
                raise ConfigError(
                    f"feature '{name}' has type '{dtype}'; use one of {', '.join(_TYPES)} in the spec schema"
                )
            out.append(Feature(name=name, spec_dtype=dtype, kind=kind))
    return tuple(out)


def feature_names(spec: DatasetSpec) -> tuple[str, ...]:
    return tuple(f.name for f in features(spec))


def model_inputs(spec: DatasetSpec) -> tuple[Feature, ...]:
    """The raw columns the model takes, in schema order (``DatasetSpec.model_inputs``).

    Each has its feature's kind when the spec lists it as a feature, else ``RAW``.
    """
    kinds = {f.name: f.kind for f in features(spec)}
    return tuple(
        Feature(name=name, spec_dtype=spec.dtype(name), kind=kinds.get(name, RAW))
        for name in spec.model_inputs
    )


def input_names(spec: DatasetSpec) -> tuple[str, ...]:
    return tuple(f.name for f in model_inputs(spec))


def tf_dtypes(spec: DatasetSpec) -> dict[str, str]:
    """Model input name -> TensorFlow dtype name, the serving signature's inputs."""
    return {f.name: f.tf_dtype for f in model_inputs(spec)}


def is_missing(feature: Feature, values: np.ndarray) -> np.ndarray:
    """Boolean mask of the entries that hold the missing-value fill."""
    if feature.spec_dtype == "double":
        return np.isnan(values)
    return values == feature.fill
