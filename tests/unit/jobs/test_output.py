"""Atomic writes of the clean job (jobs/clean/output.py): hidden staging, rename into place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.clean.output import (
    discard_staging,
    replace_dir,
    staging_dir,
    temp_sibling,
    write_json_atomic,
)

pytestmark = pytest.mark.unit


def test_temp_sibling_is_hidden_beside_its_target_and_fresh_each_time(tmp_path: Path) -> None:
    target = tmp_path / "clean" / "ds=2024-01-01"

    first, second = temp_sibling(target, "old"), temp_sibling(target, "old")

    assert first.parent == second.parent == target.parent
    assert first.name.startswith(".ds=2024-01-01.old-")
    assert first != second


def test_staging_dir_keeps_the_leaf_name_under_a_hidden_parent(tmp_path: Path) -> None:
    target = tmp_path / "clean" / "ds=2024-01-01"

    staged = staging_dir(target)

    assert staged.name == target.name
    assert staged.parent.parent == target.parent
    assert staged.parent.name.startswith(".ds=2024-01-01.staging-")


def test_replace_dir_moves_into_a_new_target_and_creates_its_parent(tmp_path: Path) -> None:
    staged = staging_dir(tmp_path / "x" / "part")
    staged.mkdir(parents=True)
    (staged / "a.parquet").write_text("new")
    target = tmp_path / "lake" / "clean" / "part"

    replace_dir(staged, target)

    assert (target / "a.parquet").read_text() == "new"
    assert not staged.exists()


def test_replace_dir_replaces_a_previous_target_and_leaves_no_hidden_folder(
    tmp_path: Path,
) -> None:
    target = tmp_path / "part"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    staged = staging_dir(target)
    staged.mkdir(parents=True)
    (staged / "new.parquet").write_text("new")

    replace_dir(staged, target)
    discard_staging(staged)

    assert sorted(p.name for p in target.iterdir()) == ["new.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part"]


def test_discard_staging_removes_the_hidden_parent_and_tolerates_none(tmp_path: Path) -> None:
    staged = staging_dir(tmp_path / "part")
    (staged / "sub").mkdir(parents=True)

    discard_staging(staged)
    discard_staging(staged)  # already gone: a cleanup in a finally must not raise

    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic_keeps_key_order_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "clean_summary.json"
    path.parent.mkdir()
    path.write_text("{}")

    write_json_atomic(path, {"z": 1, "a": [1, 2]})

    text = path.read_text(encoding="utf-8")
    assert list(json.loads(text)) == ["z", "a"]
    assert text.endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["clean_summary.json"]
