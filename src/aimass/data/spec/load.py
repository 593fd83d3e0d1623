"""Finding a dataset spec by name under ``conf/datasets`` (or by path) and reading its YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from aimass.data.spec.dataset import DatasetSpec
from aimass.platform.errors import ConfigError


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
