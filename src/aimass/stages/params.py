"""Run parameters: one definition per param, from which the DAGs' trigger forms (Airflow
``Param``s with titles, descriptions, ranges and enums) and the validation before any work
are both made, so a form and its check cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from aimass.evaluation.gate import MIN_FORCE_REASON


@dataclass(frozen=True)
class ParamField:
    """One run parameter: its default, JSON-schema type and bounds, and how the form shows it."""

    name: str
    default: Any
    type: str | tuple[str, ...]
    title: str
    description: str
    # JSON-schema keywords (minimum, maximum, pattern, enum, ...), also what validation checks.
    schema: dict[str, Any] = field(default_factory=dict)
    # The form suggests the dataset specs (known when the DAG is parsed). They are examples,
    # not an enum: a spec saved after the last parse can be triggered at once, and the first
    # task checks the name against conf/datasets (a one-line error listing the known specs).
    lists_datasets: bool = False

    @property
    def minimum(self) -> int:
        return int(self.schema["minimum"])

    @property
    def maximum(self) -> int:
        return int(self.schema["maximum"])

    def param(self, datasets: list[str]) -> Any:
        """The Airflow ``Param`` of this field for a DAG whose dataset choices are ``datasets``."""
        from airflow.sdk import Param

        schema = dict(self.schema)
        if self.lists_datasets:
            schema["examples"] = list(datasets)
        kind = list(self.type) if isinstance(self.type, tuple) else self.type
        return Param(
            self.default, type=kind, title=self.title, description=self.description, **schema
        )


def airflow_params(fields: tuple[ParamField, ...], datasets: list[str]) -> dict[str, Any]:
    """A DAG's ``params``: each field's Airflow ``Param``, in order."""
    return {f.name: f.param(datasets) for f in fields}


DATASET = ParamField(
    "dataset",
    "chicago_taxi",
    "string",
    "Dataset spec",
    "A dataset spec in conf/datasets: its schema, label (binary, multiclass or regression), "
    "checks and gate. Add a YAML file there to add a dataset; it can be triggered as soon "
    "as it is saved.",
    lists_datasets=True,
)
DS = ParamField(
    "ds",
    "",
    "string",
    "Partition date",
    "YYYY-MM-DD of the lake partition to write; empty means the run's date.",
    {"pattern": r"^$|^\d{4}-\d{2}-\d{2}$"},
)
INPUT_PATH = ParamField(
    "input_path",
    "",
    "string",
    "Input file or folder",
    "Raw CSV or Parquet file or folder, or an s3:// object or prefix, to clean; empty means "
    "the newest landed day of the dataset's landing zone (processed/ds=<day>/), else the "
    "spec's source.path. Must be under the var dir or a root listed in AIMASS_DATA_ROOTS "
    "(folders, or s3:// prefixes).",
)
EPOCHS = ParamField(
    "epochs",
    None,
    ("null", "integer"),
    "Epochs",
    "Training epochs; empty means the spec's value.",
    {"minimum": 1, "maximum": 200},
)
# Training workers by default: ``auto`` (aimass.training.run.resolve_workers) is one per GPU,
# else one per 4 cores, at least 1. Empty (null) means auto too: the console's form and
# older confs send no value.
DEFAULT_WORKERS = "auto"
WORKERS = ParamField(
    "workers",
    None,
    ("null", "integer", "string"),
    "Training workers",
    "TensorFlow worker processes (MultiWorkerMirroredStrategy): a number from 1 to 8, or "
    "auto (also when empty): one per GPU, else one per 4 CPU cores, at least 1. The chosen "
    "number and why are logged.",
    {"minimum": 1, "maximum": 8, "pattern": r"^(auto|[1-8])$"},
)
MIN_AUC = ParamField(
    "min_auc",
    None,
    ("null", "number"),
    "Minimum AUC",
    "Override the spec's absolute AUC bar for this run (classification specs only); empty "
    "keeps the spec's gate.",
    {"minimum": 0, "maximum": 1},
)
USE_TUNED_HPARAMS = ParamField(
    "use_tuned_hparams",
    True,
    "boolean",
    "Use tuned hyperparameters",
    "Train with the best values of the dataset's latest aimass_tune search (if any); off "
    "trains with the spec's training section.",
)
LEARNING_RATE = ParamField(
    "learning_rate",
    None,
    ("null", "number"),
    "Learning rate",
    "Adam learning rate for this run; empty means the tuned or spec value.",
    {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
)
BATCH_SIZE = ParamField(
    "batch_size",
    None,
    ("null", "integer"),
    "Batch size per worker",
    "Rows per worker per step (the global batch is this times the workers); empty means the "
    "tuned or spec value.",
    {"minimum": 1, "maximum": 65_536},
)
MIXED_PRECISION = ParamField(
    "mixed_precision",
    False,
    "boolean",
    "Mixed precision",
    "float16 compute with float32 weights where the workers see a GPU; no effect on CPU (logged).",
)
FORCE_DEPLOY = ParamField(
    "force_deploy",
    False,
    "boolean",
    "Force deployment",
    "Deploy the candidate even if the evaluation gate rejects it. Needs a reason below; the "
    "gate decision records it with who triggered the run, and the MLflow run is tagged "
    "aimass.gate=forced.",
)
MAX_FORCE_REASON = 500
FORCE_REASON = ParamField(
    "force_reason",
    "",
    "string",
    "Reason for forcing",
    f"Why the gate may be overridden (at least {MIN_FORCE_REASON} characters, e.g. a ticket "
    "and the cause); required with force_deploy and only allowed with it. Stored with the "
    "gate decision and as the MLflow tag aimass.force_reason.",
    {"maxLength": MAX_FORCE_REASON},
)
RETRAIN_PARAMS = (
    DATASET,
    DS,
    INPUT_PATH,
    EPOCHS,
    WORKERS,
    MIN_AUC,
    USE_TUNED_HPARAMS,
    LEARNING_RATE,
    BATCH_SIZE,
    MIXED_PRECISION,
    FORCE_DEPLOY,
    FORCE_REASON,
)

ALGORITHM = ParamField(
    "algorithm",
    "",
    "string",
    "Search algorithm",
    "Bayesian optimization or random search; empty means the spec's tuning.algorithm.",
    {"enum": ["", "bayesian", "random"]},
)
MAX_TRIALS = ParamField(
    "max_trials",
    None,
    ("null", "integer"),
    "Trials",
    "How many hyperparameter sets to train and score; empty means the spec's tuning.max_trials.",
    {"minimum": 1, "maximum": 100},
)
TUNE_PARAMS = (
    replace(
        DATASET,
        description="The spec in conf/datasets whose tuning section (space, objective) is "
        "searched.",
        schema={},
    ),
    replace(
        DS, description="YYYY-MM-DD of the clean partition to tune on; empty means the newest."
    ),
    ALGORITHM,
    MAX_TRIALS,
    replace(
        EPOCHS,
        title="Epochs per trial",
        description="Training epochs of each trial; empty means the spec's tuning.epochs.",
    ),
    replace(
        WORKERS,
        description="TensorFlow worker processes per trial (MultiWorkerMirroredStrategy).",
    ),
    replace(
        MIXED_PRECISION,
        description="float16 compute where the workers see a GPU; no effect on CPU.",
    ),
)

MIN_ROLLBACK_REASON = 10
ROLLBACK_PARAMS = (
    replace(
        DATASET,
        title="Model (dataset spec)",
        description="Whose model to roll back; models are named after their dataset spec.",
        schema={},
    ),
    ParamField(
        "version",
        None,
        ("null", "integer"),
        "Serving version",
        "The model server version to make stable again; empty means the 'previous' label "
        "(the version that was stable before the current one).",
        {"minimum": 1},
    ),
    ParamField(
        "reason",
        "",
        "string",
        "Reason",
        f"Why you roll back, in a sentence (at least {MIN_ROLLBACK_REASON} characters); "
        "recorded with the rollback in MLflow and in the rollback record.",
    ),
)

MONITOR_PARAMS = (
    ParamField(
        "datasets",
        [],
        "array",
        "Datasets",
        "Dataset specs to check; empty checks every spec whose model has a champion.",
        lists_datasets=True,
    ),
    ParamField(
        "min_rows",
        200,
        "integer",
        "Minimum requests",
        "Recorded requests needed before a dataset is compared; with fewer the check is skipped.",
        {"minimum": 1, "maximum": 10_000_000},
    ),
)

MAX_EPOCHS = EPOCHS.maximum
MAX_WORKERS = WORKERS.maximum
MAX_BATCH_SIZE = BATCH_SIZE.maximum

BATCH_PREDICT_PARAMS = (
    replace(
        DATASET,
        description="The dataset spec whose model scores the rows; models are named after it.",
    ),
    replace(
        DS,
        title="Day to score",
        description="YYYY-MM-DD: the clean partition to score (every batch of that day), and "
        "the day the predictions are written under; empty means the newest clean partition, "
        "or the run's date with an input file.",
    ),
    replace(
        INPUT_PATH,
        title="Rows to score (file or folder)",
        description="A Parquet or CSV (with header) file or folder to score instead of the "
        "clean partition; it needs the columns the model reads, not the label. Must be under "
        "the var dir or a root listed in AIMASS_DATA_ROOTS.",
    ),
    ParamField(
        "model",
        "champion",
        "string",
        "Model version or alias",
        "champion (what serves now), previous, or a registry version number of the dataset's "
        "model.",
        {"pattern": r"^(champion|previous|[1-9][0-9]{0,8})$"},
    ),
)
