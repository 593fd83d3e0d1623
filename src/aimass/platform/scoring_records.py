"""The records of a batch scoring run (``aimass_batch_predict``): what it scores with which
model, and what came out. Written to ``reports/<dataset>/batch_predict/ds=<ds>/<run>/``,
beside the retrain runs' folders and never mixed into them."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from aimass.platform.records import Record

BATCH_PREDICT_DIR = "batch_predict"


class ScoringRequest(Record):
    """A checked scoring run: the rows, the model version and where the outputs go."""

    kind: ClassVar[str] = "scoring_request"
    dataset: str
    ds: str
    # The clean batches of the day, or the file or folder the run was given.
    inputs: list[str]
    input_source: str
    model: str  # what was asked for: an alias or a version number
    model_name: str
    model_version: str
    model_run_id: str = ""
    model_dir: str
    output_dir: str
    report_dir: str
    summary_file: str
    args_file: str
    dag_id: str
    run_id: str
    trigger: dict[str, Any] = Field(default_factory=dict)


class ScoringResult(Record):
    """What a scoring run wrote: counts, the most common reasons, where, and how fast."""

    kind: ClassVar[str] = "scoring_result"
    dataset: str
    ds: str
    model_name: str
    model_version: str
    rows_in: int
    rows_scored: int
    rows_rejected: int
    reasons: dict[str, int] = Field(default_factory=dict)
    output_dir: str
    rejected_dir: str
    seconds: float | None = None
    rows_per_second: float | None = None
    mlflow_run_url: str = ""
