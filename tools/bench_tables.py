"""Write the benchmark tables of docs/benchmarks.md from bench/results/*.json.

Run with ``make bench-docs`` (or ``.venv/bin/python tools/bench_tables.py``). Every benchmark
script ``bench/bench_<name>.py`` writes ``bench/results/<name>.json`` (``bench/_results.py``)::

    {"ratios": {...}, "figures": {...}, "params": {...}, "machine": {...}}

This script rewrites the part of docs/benchmarks.md between ``<!-- bench-tables:start -->``
and ``<!-- bench-tables:end -->``: one table per benchmark with its ratios, their targets
and whether each target is met, the command and the time that produced it, the machine and
the run's scalar parameters. A benchmark without a results file here keeps the table the
document already holds for it (measured on another machine or day, which its own lines
say), else gets "not run yet: make bench-<name>". Everything outside the markers stays as
it is.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- bench-tables:start -->"
END = "<!-- bench-tables:end -->"

# Targets the scripts state in their docstrings and messages but do not all record in
# ``params``; a ``params["targets"]`` entry with an operator ("<= 1.5") overrides these.
DEFAULT_TARGETS: dict[str, dict[str, str]] = {
    "clean": {
        "spark_over_duckdb_warm_1m": "<= 3",
        "spark_over_duckdb_warm_5m": "<= 3",
        "spark_cold_over_duckdb_1m": "<= 5",
        "spark_cold_over_duckdb_5m": "<= 5",
        "spark_warm_10m_over_1m": "<= 11",
    },
    "console": {"worst_p99_over_target": "<= 1", "worst_first_after_warmup_over_target": "<= 1"},
    "rollout": {"p99_during_rollout_over_steady": "<= 3", "failed_requests": "<= 0"},
    "serve": {"grpc_p50_b1_over_inprocess": "<= 1.5", "throughput_batch64_over_batch1": ">= 3"},
    "train": {"lake_over_memory_examples_per_s": ">= 0.9"},
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
}
_SHOWN_OP = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "=": "="}
_TARGET = re.compile(r"^\s*(<=|>=|<|>|=)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")
# A parameter is listed when its value is a number, a short string or a short list.
_MAX_PARAM_CHARS = 40


@dataclass(frozen=True)
class Target:
    op: str
    value: float

    def met(self, ratio: float) -> bool:
        return _OPS[self.op](ratio, self.value)

    def __str__(self) -> str:
        return f"{_SHOWN_OP[self.op]} {_number(self.value)}"


def parse_target(text: str) -> Target | None:
    """``"<= 1.5"`` -> Target("<=", 1.5); None for text without an operator and a number."""
    match = _TARGET.match(str(text))
    return Target(match[1], float(match[2])) if match else None


def targets_for(name: str, params: Mapping[str, Any]) -> dict[str, Target]:
    """The targets of benchmark ``name``: the defaults, then those its run recorded."""
    found = {k: t for k, v in DEFAULT_TARGETS.get(name, {}).items() if (t := parse_target(v))}
    recorded = params.get("targets")
    if isinstance(recorded, Mapping):
        for key, value in recorded.items():
            target = parse_target(str(value))
            if target is not None:
                found[str(key)] = target
    return found


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.4g}"


def benchmark_names(bench_dir: Path, results_dir: Path) -> list[str]:
    """Every benchmark script's name and every results file's name, sorted."""
    scripts = {p.stem.removeprefix("bench_") for p in bench_dir.glob("bench_*.py")}
    results = {p.stem for p in results_dir.glob("*.json")} if results_dir.is_dir() else set()
    return sorted(scripts | results)


def _command(name: str, bench_dir: Path, payload: Mapping[str, Any]) -> str:
    """What wrote the results: the recorded command, else the script (and its make target)."""
    if payload.get("command"):
        return f"`{payload['command']}`"
    if (bench_dir / f"bench_{name}.py").exists():
        return f"`bench/bench_{name}.py` (`make bench-{name}`)"
    return f"a benchmark script run with `--name {name}`"


def _when(path: Path, payload: Mapping[str, Any]) -> str:
    for key in ("written_at", "finished_at"):
        if payload.get(key):
            return str(payload[key])
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _machine(machine: Mapping[str, Any]) -> str:
    parts = []
    if machine.get("cpus") is not None:
        parts.append(f"{machine['cpus']} CPUs")
    if machine.get("memory_gib") is not None:
        parts.append(f"{machine['memory_gib']} GiB memory")
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    if machine.get("platform"):
        parts.append(str(machine["platform"]))
    return ", ".join(parts) or "not recorded"


def _short(value: Any) -> str | None:
    if isinstance(value, bool | int | float):
        return _number(value)
    if isinstance(value, str | list):
        text = value if isinstance(value, str) else json.dumps(value)
        return text if text and len(text) <= _MAX_PARAM_CHARS else None
    return None


def _params(params: Mapping[str, Any]) -> str:
    shown = [f"`{k}={v}`" for k, raw in sorted(params.items()) if (v := _short(raw)) is not None]
    return ", ".join(shown) or "none recorded"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_benchmark(name: str, path: Path | None, bench_dir: Path) -> str:
    """The Markdown of one benchmark: a heading, where the figures come from, the table."""
    heading = f"### {name}\n\n"
    if path is None:
        return heading + f"not run yet: make bench-{name}\n"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return heading + f"unreadable results file `{path.name}` ({exc}); run make bench-{name}\n"
    ratios: Mapping[str, Any] = payload.get("ratios") or {}
    params: Mapping[str, Any] = payload.get("params") or {}
    figures: Mapping[str, Any] = payload.get("figures") or {}
    targets = targets_for(name, params)
    lines = [
        f"From `bench/results/{path.name}`, written by {_command(name, bench_dir, payload)} "
        f"on {_when(path, payload)}.",
        "",
        f"Machine: {_machine(payload.get('machine') or {})}.",
        "",
        f"Parameters: {_params(params)}.",
        "",
        "| ratio | value | target | met |",
        "|---|---|---|---|",
    ]
    for key, value in ratios.items():
        target = targets.get(key)
        met = ""
        if target is not None and isinstance(value, int | float):
            met = "yes" if target.met(float(value)) else "**no**"
        shown = "" if target is None else str(target)
        lines.append(f"| `{_cell(key)}` | {_cell(_number(value))} | {shown} | {met} |")
    for key in sorted(set(targets) - set(ratios)):
        lines.append(f"| `{_cell(key)}` | not measured | {targets[key]} | |")
    scalars = {k: v for k, v in figures.items() if isinstance(v, int | float | bool)}
    if scalars:
        lines += ["", "| figure | value |", "|---|---|"]
        lines += [f"| `{_cell(k)}` | {_number(v)} |" for k, v in sorted(scalars.items())]
    return heading + "\n".join(lines) + "\n"


def render(results_dir: Path, bench_dir: Path, previous: Mapping[str, str] | None = None) -> str:
    """The generated section: every benchmark, run or not. ``previous``: the tables the
    document holds now, by benchmark, kept for a benchmark with no results file here."""
    parts = [
        "<!-- Generated by tools/bench_tables.py (make bench-docs) from bench/results/*.json; "
        "edits here are overwritten. -->\n"
    ]
    for name in benchmark_names(bench_dir, results_dir):
        path = results_dir / f"{name}.json"
        kept = (previous or {}).get(name)
        if not path.is_file() and kept and "not run yet" not in kept:
            parts.append(kept)
            continue
        parts.append(render_benchmark(name, path if path.is_file() else None, bench_dir))
    return "\n".join(parts)


def current_tables(doc: Path) -> dict[str, str]:
    """The generated tables ``doc`` holds now, by benchmark (``### <name>`` to the next)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return {}
    tables: dict[str, str] = {}
    for chunk in re.split(r"^(?=### )", text[start + len(START) : end], flags=re.M):
        if chunk.startswith("### "):
            name = chunk.split("\n", 1)[0].removeprefix("### ").strip()
            tables[name] = chunk.rstrip() + "\n"
    return tables


def rewrite(doc: Path, section: str) -> bool:
    """Put ``section`` between the markers of ``doc``; True when the file changed.

    Raises:
        SystemExit: the markers are missing or out of order.
    """
    text = doc.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(
            f"{doc}: no '{START}' ... '{END}' pair; add both marker lines where the "
            "benchmark tables belong"
        )
    head = text[: start + len(START)]
    new = f"{head}\n{section.rstrip()}\n\n{text[end:]}"
    if new == text:
        return False
    doc.write_text(new, encoding="utf-8")
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--bench", type=Path, default=ROOT / "bench", help="folder of bench_*.py")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    changed = rewrite(args.doc, render(args.results, args.bench, current_tables(args.doc)))
    print(f"{args.doc}: {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
