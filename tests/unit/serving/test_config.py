"""models.config round trip and version discovery under a model base path."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimass.platform.errors import ConfigError
from aimass.serving.config import (
    find_model,
    list_versions,
    model_config,
    next_version,
    read_config,
    server_config,
    write_config,
)

pytestmark = pytest.mark.unit


def _version_dir(base: Path, name: str, *, saved_model: bool = True) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    if saved_model:
        (folder / "saved_model.pb").write_bytes(b"\x00")
    return folder


def test_config_round_trip_keeps_versions_labels_and_policy(tmp_path: Path) -> None:
    taxi = model_config("taxi", tmp_path / "models" / "taxi", [2, 1], {"stable": 1, "canary": 2})
    other = model_config("other", tmp_path / "models" / "other", [7])
    path = write_config(tmp_path / "conf" / "models.config", server_config([taxi, other]))

    text = path.read_text(encoding="utf-8")
    assert "specific" in text and "version_labels" in text
    loaded = read_config(path)
    entry = find_model(loaded, "taxi")
    assert entry is not None
    assert entry.base_path == str((tmp_path / "models" / "taxi").resolve())
    assert entry.model_platform == "tensorflow"
    assert list(entry.model_version_policy.specific.versions) == [1, 2]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    assert loaded == server_config([taxi, other])
    assert find_model(loaded, "missing") is None


def test_write_config_replaces_atomically_without_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    write_config(path, server_config([model_config("taxi", tmp_path, [1], {"stable": 1})]))
    write_config(path, server_config([model_config("taxi", tmp_path, [1, 2], {"stable": 2})]))

    assert dict(find_model(read_config(path), "taxi").version_labels) == {"stable": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.config"]


def test_model_config_refuses_a_label_on_an_unserved_version(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="label 'stable' points at version 3"):
        model_config("taxi", tmp_path, [1, 2], {"stable": 3})


@pytest.mark.parametrize("versions", [[], [0], [-1], [True]])
def test_model_config_refuses_bad_versions(tmp_path: Path, versions: list[int]) -> None:
    with pytest.raises(ConfigError, match="taxi"):
        model_config("taxi", tmp_path, versions)


def test_duplicate_model_names_are_refused(tmp_path: Path) -> None:
    entry = model_config("taxi", tmp_path, [1])
    with pytest.raises(ConfigError, match="listed twice"):
        server_config([entry, entry])


def test_read_config_names_the_file_when_it_is_not_text_format(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { nam: 'x' } }", encoding="utf-8")
    with pytest.raises(ConfigError, match="models.config"):
        read_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "absent.config")


def test_list_versions_counts_integer_folders_with_a_saved_model(tmp_path: Path) -> None:
    base = tmp_path / "taxi"
    assert list_versions(base) == []
    for name in ("1", "10", "2"):
        _version_dir(base, name)
    _version_dir(base, "3", saved_model=False)  # an unfinished copy
    _version_dir(base, "tmp-4")
    (base / "5").write_text("not a folder", encoding="utf-8")

    assert list_versions(base) == [1, 2, 10]


def test_next_version_never_reuses_a_number(tmp_path: Path) -> None:
    base = tmp_path / "taxi"
    assert next_version(base) == 1
    _version_dir(base, "1")
    assert next_version(base) == 2
    _version_dir(base, "4", saved_model=False)  # a failed copy still holds its number
    _version_dir(base, ".tmp-9")
    assert next_version(base) == 5
