"""Shared helpers for benchmarks: machine facts, a table on stdout, JSON under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
            mem_gib = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write(
    name: str, *, ratios: dict[str, float], figures: dict[str, Any], params: dict[str, Any]
) -> Path:
    """Print the ratios and write ``bench/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"ratios": ratios, "figures": figures, "params": params, "machine": machine()}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")
    width = max((len(k) for k in ratios), default=10)
    print(f"\n{name}: ratios (AI Mass over the baseline measured in this run)")
    for key, value in ratios.items():
        print(f"  {key:<{width}}  {value:8.3f}")
    print(f"written to {path}")
    return path
