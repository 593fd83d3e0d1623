"""Atomic writes of the clean job's outputs: partitions and the summary JSON.

A partition is written into a hidden sibling folder and renamed into place only once the
run's checks have passed, so a failed run leaves the previous partition as it was and a
rerun replaces its own (docs/architecture.md, section 10). The summary JSON is written to
a hidden temporary file and renamed over the old one, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any


def temp_sibling(target: Path, tag: str) -> Path:
    """A fresh hidden folder name beside ``target``: ``<parent>/.<name>.<tag>-<id>``."""
    # A leading dot keeps Spark and pyarrow readers of the parent folder away from it.
    return target.parent / f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}"


def staging_dir(target: Path) -> Path:
    """``<parent>/.<name>.staging-<id>/<name>``: hidden from readers of the parent, while
    the leaf keeps a normal name so Spark reads it back without hidden-path warnings."""
    return temp_sibling(target, "staging") / target.name


def discard_staging(staged: Path) -> None:
    """Remove what is left of a ``staging_dir`` (its hidden parent), if anything."""
    shutil.rmtree(staged.parent, ignore_errors=True)


def replace_dir(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``, replacing a previous ``target`` (rename, not copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = temp_sibling(target, "old")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path`` (keys in the payload's order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
