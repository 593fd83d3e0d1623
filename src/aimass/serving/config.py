"""The model server's `models.config`: a text-format `ModelServerConfig`, as TF Serving reads it.

The layout under a model's base path is TF Serving's: ``<base>/<model>/<version>/saved_model.pb``
with integer version folders. The config pins versions with a ``specific`` version policy and
names them with ``version_labels`` (``stable``, ``canary``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config.model_server_config_pb2 import ModelConfig, ModelServerConfig

from aimass.platform.errors import ConfigError

SAVED_MODEL_FILE = "saved_model.pb"


def model_config(
    name: str,
    base_path: str | Path,
    versions: list[int],
    labels: Mapping[str, int] | None = None,
) -> ModelConfig:
    """A `ModelConfig` serving exactly `versions` of `name`, with `labels` pointing at some of them.

    Raises:
        ConfigError: the name is empty, no version is given, a version is not a positive
            integer, or a label points at a version that is not in `versions`.
    """
    if not name or "/" in name or ":" in name:
        raise ConfigError(
            f"model name {name!r} is invalid; use a non-empty name without '/' or ':'"
        )
    if not versions:
        raise ConfigError(
            f"model {name!r} has no versions to serve; pass at least one version number"
        )
    for version in versions:
        if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
            raise ConfigError(
                f"model {name!r}: version {version!r} is not a positive integer; "
                "versions are the integer folder names under the base path"
            )
    labels = dict(labels or {})
    for label, version in labels.items():
        if version not in versions:
            raise ConfigError(
                f"model {name!r}: label {label!r} points at version {version}, which is not "
                f"served (versions {sorted(versions)}); add the version or move the label"
            )
    config = ModelConfig(
        name=name, base_path=_base_path_str(base_path), model_platform="tensorflow"
    )
    config.model_version_policy.specific.versions.extend(sorted(set(versions)))
    for label, version in sorted(labels.items()):
        config.version_labels[label] = version
    return config


def server_config(models: Iterable[ModelConfig]) -> ModelServerConfig:
    """A `ModelServerConfig` listing `models` (names must be unique)."""
    config = ModelServerConfig()
    # An explicit (possibly empty) model_config_list, as TF Serving expects in models.config.
    config.model_config_list.SetInParent()
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise ConfigError(f"model {model.name!r} is listed twice; keep one entry per model")
        seen.add(model.name)
        config.model_config_list.config.append(model)
    return config


def find_model(config: ModelServerConfig, name: str) -> ModelConfig | None:
    """The entry for `name` in `config`, or None."""
    for model in config.model_config_list.config:
        if model.name == name:
            return model
    return None


def read_config(path: str | Path) -> ModelServerConfig:
    """Parse a text-format `models.config`.

    Raises:
        ConfigError: the file is missing or is not a valid text-format `ModelServerConfig`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"model server config {path} does not exist; write one with aimass.serving.config.write_config"
        ) from None
    try:
        return text_format.Parse(text, ModelServerConfig())
    except text_format.ParseError as exc:
        raise ConfigError(
            f"model server config {path} is not a text-format ModelServerConfig: {exc}; "
            "fix the file or rewrite it with aimass.serving.config.write_config"
        ) from exc


def format_config(config: ModelServerConfig) -> str:
    """The text format of `config`, as written to `models.config`."""
    return text_format.MessageToString(config)


def write_config(path: str | Path, config: ModelServerConfig) -> Path:
    """Write `config` to `path` atomically (a temporary sibling renamed into place).

    A server polling the file therefore never reads a half-written config.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(format_config(config))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def list_versions(base_path: str | Path) -> list[int]:
    """The versions under a model's base path: integer folders holding a saved_model.pb, ascending."""
    base = Path(base_path)
    if not base.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in base.iterdir()
        if _is_version_name(entry.name) and (entry / SAVED_MODEL_FILE).is_file()
    )


def next_version(base_path: str | Path) -> int:
    """The next free version number under `base_path` (1 for a new model).

    Counts every integer folder, also one without a saved_model.pb (a failed or
    unfinished copy), so a number is never reused.
    """
    base = Path(base_path)
    if not base.is_dir():
        return 1
    numbers = [int(entry.name) for entry in base.iterdir() if _is_version_name(entry.name)]
    return max(numbers, default=0) + 1


def _is_version_name(name: str) -> bool:
    return name.isdigit() and name.isascii() and int(name) > 0


def _base_path_str(base_path: str | Path) -> str:
    text = str(base_path)
    if "://" in text:
        return text
    # TF Serving requires absolute base paths (relative ones need model_config_list_root_dir).
    return str(Path(text).expanduser().resolve())


def single_model_config(name: str, base_path: str | Path) -> ModelServerConfig:
    """The config ``--model_name/--model_base_path`` stand for: one model, latest version."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(Path(base_path).expanduser().resolve())
    model.model_platform = "tensorflow"
    model.model_version_policy.latest.num_versions = 1
    return config
