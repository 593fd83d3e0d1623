"""Run parameters from a manual trigger or a schedule, validated before any work starts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from aimass.config import Settings
from aimass.errors import ConfigError
from aimass.spec import load_spec

_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_EPOCHS = 200
MAX_WORKERS = 8


@dataclass(frozen=True)
class RunParams:
    dataset: str
    ds: str
    input_path: str
    epochs: int | None
    workers: int
    min_auc: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def allowed_roots(settings: Settings) -> list[Path]:
    """Folders a run may read raw data from: the var dir and any in AIMASS_DATA_ROOTS."""
    import os

    extra = [
        Path(p).resolve() for p in os.environ.get("AIMASS_DATA_ROOTS", "").split(os.pathsep) if p
    ]
    return [settings.var_dir.resolve(), *extra]


def _int(params: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = params.get(key)
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"param {key}={value!r} must be an integer between {lo} and {hi}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(
            f"param {key}={value!r} must be an integer between {lo} and {hi}"
        ) from None
    if not lo <= number <= hi:
        raise ConfigError(
            f"param {key}={number} is out of range; use an integer between {lo} and {hi}"
        )
    return number


def validate_params(
    params: dict[str, Any], settings: Settings, *, run_date: date | datetime
) -> RunParams:
    """Check a run's params (types, ranges, known spec, paths inside allowed roots).

    Raises:
        ConfigError: naming the bad param and what to set instead.
    """
    dataset = str(params.get("dataset") or "chicago_taxi")
    if not re.match(r"^[a-z][a-z0-9_]*$", dataset):
        raise ConfigError(
            f"param dataset={dataset!r} must be the name of a spec in conf/datasets (e.g. chicago_taxi), not a path"
        )
    spec = load_spec(dataset, settings.conf_dir)

    ds = params.get("ds") or ""
    if ds:
        if not _DS.match(str(ds)):
            raise ConfigError(
                f"param ds={ds!r} must be a date like 2026-11-25 (or empty for the run's date)"
            )
        try:
            date.fromisoformat(str(ds))
        except ValueError:
            raise ConfigError(f"param ds={ds!r} is not a real calendar date") from None
    else:
        ds = run_date.date().isoformat() if isinstance(run_date, datetime) else run_date.isoformat()

    raw_input = str(params.get("input_path") or "") or spec.resolved_source_path(settings.var_dir)
    input_path = Path(raw_input).expanduser().resolve()
    roots = allowed_roots(settings)
    if not any(input_path == root or root in input_path.parents for root in roots):
        raise ConfigError(
            f"param input_path={raw_input!r} is outside the allowed data roots {[str(r) for r in roots]}; "
            "put the file under the var dir or add its folder to AIMASS_DATA_ROOTS"
        )
    if not input_path.exists():
        raise ConfigError(
            f"param input_path={raw_input!r} does not exist; point it at a CSV file or a folder of CSVs"
        )

    epochs = _int(params, "epochs", 1, MAX_EPOCHS)
    workers = _int(params, "workers", 1, MAX_WORKERS) or 1

    min_auc = params.get("min_auc")
    if min_auc in (None, ""):
        min_auc = None
    else:
        try:
            min_auc = float(min_auc)
        except (TypeError, ValueError):
            raise ConfigError(
                f"param min_auc={min_auc!r} must be a number between 0 and 1 (or empty)"
            ) from None
        if not 0.0 <= min_auc <= 1.0:
            raise ConfigError(
                f"param min_auc={min_auc} must be between 0 and 1 (or empty for the spec's bar)"
            )
    return RunParams(
        dataset=spec.name,
        ds=str(ds),
        input_path=str(input_path),
        epochs=epochs,
        workers=workers,
        min_auc=min_auc,
    )
