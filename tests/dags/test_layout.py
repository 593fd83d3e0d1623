"""The code's layout reads like the architecture: no import cycle, no upward import, small files.

The rule itself (layers, forbidden crossings) lives in ``tests/importgraph.py`` and is stated in
docs/architecture.md, section 3.
"""

from __future__ import annotations

import importgraph
import pytest

pytestmark = pytest.mark.dags

MAX_LINES = 500


@pytest.fixture(scope="module")
def edges() -> list[importgraph.Edge]:
    return importgraph._package_parent_edges(list(importgraph.edges()))


def test_the_graph_sees_imports_inside_functions(edges: list[importgraph.Edge]) -> None:
    # stages.retrain imports the launcher inside train_model only: the graph must still see it.
    assert any(
        e.importer == "aimass.stages.retrain" and e.imported == "aimass.training.launcher"
        for e in edges
    )


def test_there_is_no_import_cycle(edges: list[importgraph.Edge]) -> None:
    assert importgraph.cycles(edges) == []


def test_no_module_imports_a_higher_layer_or_a_forbidden_center(
    edges: list[importgraph.Edge],
) -> None:
    assert importgraph.upward(edges) == []


def test_the_rule_catches_an_upward_import_and_a_cycle() -> None:
    """The checks themselves fail on what they are meant to catch."""
    up = importgraph.Edge("aimass.data.monitor", "aimass.stages.retrain", "x.py", 1)
    cross = importgraph.Edge("aimass.serving.server", "aimass.data.monitor", "y.py", 2)
    problems = importgraph.upward([up, cross])
    assert len(problems) == 2 and "stages and entry points" in problems[0]
    assert "serving does not import data's monitor code" in problems[1]
    loop = [
        importgraph.Edge("aimass.training.local", "aimass.training.kubernetes", "a.py", 1),
        importgraph.Edge("aimass.training.kubernetes", "aimass.training.local", "b.py", 1),
    ]
    assert importgraph.cycles(loop) == [["aimass.training.kubernetes", "aimass.training.local"]]


def test_every_module_is_in_a_layer() -> None:
    unplaced = [m for m in importgraph.modules() if importgraph.layer_of(m) is None]
    assert unplaced == []


def test_no_source_file_is_over_the_limit() -> None:
    too_big = {}
    for folder in ("src", "dags", "jobs", "models", "plugins"):
        for path in (importgraph.ROOT / folder).rglob("*.py"):
            rel = str(path.relative_to(importgraph.ROOT))
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                too_big[rel] = lines
    assert too_big == {}, f"split these by concern (at most {MAX_LINES} lines each)"
