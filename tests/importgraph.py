"""The import graph of AI Mass's code, inside functions included, and its layer rule.

Used by ``tests/dags/test_layout.py`` and handy from a shell::

    .venv/bin/python tests/importgraph.py      # prints cycles and upward imports
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Where each top folder's modules get their dotted names.
SOURCES = {
    "src/aimass": "aimass",
    "jobs": "jobs",
    "models": "models",
    "dags": "dags",
    "plugins": "plugins",
}

# Layers, lowest first. A module may import its own layer or any lower one, never a higher one.
# The four centers share one layer; what may cross between them is in CENTER_RULES.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # The package root is lowest: a new package nobody placed lands here, so its imports of
    # anything above show up as upward imports until it is given its layer.
    ("platform", ("aimass.platform", "aimass")),
    ("shared data layout", ("aimass.data.spec", "aimass.data.lake")),
    ("model and job code", ("models", "jobs")),
    (
        "centers",
        ("aimass.data", "aimass.training", "aimass.evaluation", "aimass.serving"),
    ),
    ("stages and entry points", ("aimass.stages", "aimass.stack", "aimass.cli", "aimass.console")),
    ("wiring", ("dags", "plugins")),
]

# Imports between centers that the design forbids (importer prefix, imported prefix).
FORBIDDEN: list[tuple[str, str, str]] = [
    ("aimass.serving", "aimass.data.monitor", "serving does not import data's monitor code"),
    ("aimass.training", "aimass.serving", "training does not import serving"),
    ("aimass.data", "aimass.training", "the data center does not import training"),
    ("aimass.data", "aimass.evaluation", "the data center does not import evaluation"),
]


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``imported`` at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int


def modules() -> dict[str, Path]:
    """Every first-party module's dotted name and its file."""
    found: dict[str, Path] = {}
    for folder, package in SOURCES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts]) if parts else package] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a module or a name in one) refers to."""
    while name:
        if name in known:
            return name
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return None


def edges(known: dict[str, Path] | None = None) -> Iterator[Edge]:
    """Every first-party import, at module level or inside a function or class."""
    known = known if known is not None else modules()
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    anchor = anchor if is_pkg else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for target in targets:
                resolved = _resolve(target, known)
                if resolved and resolved != module:
                    yield Edge(module, resolved, str(path.relative_to(ROOT)), node.lineno)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the most specific prefix that names ``module``."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


def upward(all_edges: list[Edge]) -> list[str]:
    """Imports that climb a layer, or cross between centers against FORBIDDEN."""
    problems = []
    for e in all_edges:
        lo, hi = layer_of(e.importer), layer_of(e.imported)
        if lo is None or hi is None:
            problems.append(f"{e.path}:{e.line}: {e.importer} -> {e.imported}: module in no layer")
        elif hi > lo:
            problems.append(
                f"{e.path}:{e.line}: {e.importer} ({LAYERS[lo][0]}) imports "
                f"{e.imported} ({LAYERS[hi][0]})"
            )
        for importer, imported, why in FORBIDDEN:
            if e.importer.startswith(importer) and e.imported.startswith(imported):
                problems.append(f"{e.path}:{e.line}: {e.importer} -> {e.imported}: {why}")
    return problems


def cycles(all_edges: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in all_edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _package_parent_edges(all_edges: list[Edge]) -> list[Edge]:
    """Drop ``pkg.mod -> pkg`` edges to a package's own ``__init__`` (they are not cycles of code)."""
    return [e for e in all_edges if not e.importer.startswith(e.imported + ".")]


def main() -> int:
    all_edges = _package_parent_edges(list(edges()))
    found = cycles(all_edges)
    for group in found:
        print("cycle:", " <-> ".join(group))
    problems = upward(all_edges)
    for line in problems:
        print(line)
    print(f"{len(all_edges)} imports, {len(found)} cycles, {len(problems)} layer problems")
    return 1 if found or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
