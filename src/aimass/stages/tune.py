"""The ``aimass_tune`` DAG's stages: check the params, then run the hyperparameter search."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aimass.training.tuning import SearchRequest, search

log = logging.getLogger(__name__)


def prepare_tuning(params: dict[str, Any], *, run_id: str) -> dict[str, Any]:
    """Validate a search's params and lay out its folder; the context the search task reads."""
    import re

    from aimass.platform.settings import Settings
    from aimass.stages.validation import validate_tune_params

    settings = Settings.from_env()
    p = validate_tune_params(params, settings)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    ctx = {
        **p.to_dict(),
        "run_id": run_id,
        "work_dir": str(settings.runs_dir / p.dataset / "tuning" / safe),
    }
    log.info(
        "search %s: %s search of %d trials x %d epochs on %s (%d workers)",
        run_id,
        p.algorithm,
        p.max_trials,
        p.epochs,
        p.clean_dir,
        p.workers,
    )
    return ctx


def run_search(ctx: dict[str, Any]) -> dict[str, Any]:
    """The search task: ``search`` with the context ``prepare_tuning`` made."""
    from aimass.data.spec import load_spec
    from aimass.platform.settings import Settings

    settings = Settings.from_env()
    request = SearchRequest(
        spec=load_spec(ctx["dataset"], settings.conf_dir),
        clean_dir=Path(ctx["clean_dir"]),
        work_dir=Path(ctx["work_dir"]),
        algorithm=ctx["algorithm"],
        max_trials=int(ctx["max_trials"]),
        epochs=int(ctx["epochs"]),
        workers=int(ctx["workers"]),
        mixed_precision=bool(ctx.get("mixed_precision", False)),
        run_name=f"tune {ctx['dataset']} ({ctx['algorithm']}, ds={ctx['ds']})",
    )
    return search(settings, request)
