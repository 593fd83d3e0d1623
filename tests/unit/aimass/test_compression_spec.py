"""The spec's ``compression`` section: defaults for old specs, the shipped bars, errors that
name the fix."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from testkit import TAXI_SPEC

from aimass.data.spec import CompressionSpec, DatasetSpec, load_spec
from aimass.platform.errors import ConfigError
from aimass.platform.settings import REPO_ROOT

pytestmark = pytest.mark.unit

SHIPPED = sorted(p.stem for p in (REPO_ROOT / "conf" / "datasets").glob("*.yaml"))


def _raw() -> dict[str, Any]:
    return dict(yaml.safe_load(TAXI_SPEC.read_text(encoding="utf-8")))


def _with(compression: object) -> DatasetSpec:
    return DatasetSpec.from_dict({**_raw(), "compression": compression}, origin="test")


def test_a_spec_without_the_section_builds_no_variants() -> None:
    raw = _raw()
    raw.pop("compression", None)
    spec = DatasetSpec.from_dict(raw, origin="old")
    assert spec.compression == CompressionSpec()
    assert spec.compression.enabled is False


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_specs_have_a_loss_bar_on_every_gated_metric(name: str) -> None:
    from aimass.evaluation.compression import gated_metrics

    spec = load_spec(name, REPO_ROOT / "conf")
    comp = spec.compression
    # On where the benchmark found a variant worth deploying (docs/benchmarks.md).
    assert comp.enabled == (name == "chicago_taxi")
    assert comp.variants == ("pruned", "float16", "int8", "distilled")
    assert set(gated_metrics(spec)) <= set(comp.losses()), "a gated metric without a loss bar"
    assert all(0 < loss for loss in comp.losses().values())
    assert 0 < comp.min_size_gain < 1 and 0 < comp.min_latency_gain < 1
    # The spec round-trips through the mapping the workers read.
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"variants": ["tflite"]}, "compression.variants must list some of"),
        ({"variants": []}, "compression.variants must list some of"),
        ({"max_metric_loss": {"auc": -0.1}}, "max_metric_loss.auc must be a number >= 0"),
        ({"max_metric_loss": {"rmse": 1}}, "compression.max_metric_loss.rmse is not a binary"),
        ({"max_metric_loss": [0.1]}, "max_metric_loss must map metric names to numbers"),
        ({"min_size_gain": 20}, "min_size_gain must be a share in [0, 1)"),
        ({"sparsity": 1.0}, "sparsity must be a share in (0, 1)"),
        ({"hidden_units": [0]}, "hidden_units must be a list of layer sizes >= 1"),
        ({"fine_tune_epochs": 0}, "fine_tune_epochs must be a whole number >= 1"),
        ({"distill_epochs": 1.5}, "distill_epochs must be a whole number >= 1 or left out"),
        ({"enabled": "yes"}, "compression.enabled must be true or false"),
        ({"bars": {}}, "compression has unknown fields ['bars']"),
        ("on", "compression must be a mapping"),
    ],
)
def test_a_bad_section_names_the_fix(section: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _with(section)
    assert message in str(info.value)
    assert "test" in str(info.value) or "chicago_taxi" in str(info.value)  # which spec
