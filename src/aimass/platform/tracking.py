"""MLflow: one experiment per dataset, a run per training, a registry model per dataset.

The registry is the source of truth for which model is in production: the alias
``champion`` names the version that the serving label ``stable`` points at, and
``previous`` the one before it, so rollback is an alias move.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
RUN_KEY_TAG = "aimass.run_key"
SERVING_VERSION_TAG = "aimass.serving_version"
# A compressed variant's version: its run key (not RUN_KEY_TAG, which names the candidate of a
# run), its variant and the candidate version it was made from.
VARIANT_KEY_TAG = "aimass.variant_key"
VARIANT_TAG = "aimass.variant"
COMPRESSED_FROM_TAG = "aimass.compressed_from"
MODEL_ARTIFACT = "saved_model"
# The training data profile each version keeps, that drift checks compare new data with.
REFERENCE_ARTIFACT = "reference"
REFERENCE_PROFILE = "profile.json"


def client(settings: Settings) -> Any:
    """An MlflowClient on the configured tracking and registry store."""
    import mlflow
    from mlflow import MlflowClient

    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri
    )


def experiment_id(settings: Settings, dataset: str) -> str:
    """The experiment ``aimass/<dataset>``, created on first use."""
    mlc = client(settings)
    name = f"aimass/{dataset}"
    exp = mlc.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    # A local store keeps artifacts under the var dir (not ./mlruns in whatever the cwd is);
    # an MLflow server decides for itself (proxied artifacts, S3, ...).
    location = None
    if not settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        location = settings.mlflow_artifacts.as_uri()
    return str(mlc.create_experiment(name, artifact_location=location))


def ensure_registered_model(settings: Settings, name: str) -> None:
    from mlflow.exceptions import MlflowException

    mlc = client(settings)
    try:
        mlc.get_registered_model(name)
    except MlflowException:
        mlc.create_registered_model(
            name,
            description=f"AI Mass model for dataset '{name}'; alias '{CHAMPION}' is in production.",
        )


def versions_for_run_key(settings: Settings, name: str, run_key: str) -> list[Any]:
    mlc = client(settings)
    return [
        v for v in mlc.search_model_versions(f"name='{name}'") if v.tags.get(RUN_KEY_TAG) == run_key
    ]


def register_version(
    settings: Settings, name: str, *, run_id: str, run_key: str, tags: dict[str, str]
) -> str:
    """Register the run's SavedModel as a new version, or return the one this run key already made."""
    existing = versions_for_run_key(settings, name, run_key)
    if existing:
        version = str(max(int(v.version) for v in existing))
        log.info(
            "registry: %s version %s already registered for %s; reusing it", name, version, run_key
        )
        return version
    ensure_registered_model(settings, name)
    mlc = client(settings)
    run = mlc.get_run(run_id)
    source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT}"
    mv = mlc.create_model_version(
        name, source=source, run_id=run_id, tags={**tags, RUN_KEY_TAG: run_key}
    )
    log.info(
        "registry: registered %s version %s from run %s (%s)", name, mv.version, run_id, source
    )
    return str(mv.version)


def register_variant(
    settings: Settings,
    name: str,
    *,
    run_id: str,
    artifact_path: str,
    variant_key: str,
    tags: dict[str, str],
) -> str:
    """Register the SavedModel at ``artifact_path`` of run ``run_id`` (the candidate's training
    run, so the version keeps its reference profile and metrics) as a new version, or return
    the version this ``variant_key`` (run key and variant) already made (a retried task)."""
    mlc = client(settings)
    existing = [
        v
        for v in mlc.search_model_versions(f"name='{name}'")
        if v.tags.get(VARIANT_KEY_TAG) == variant_key
    ]
    if existing:
        return str(max(int(v.version) for v in existing))
    ensure_registered_model(settings, name)
    source = f"{mlc.get_run(run_id).info.artifact_uri}/{artifact_path}"
    mv = mlc.create_model_version(
        name, source=source, run_id=run_id, tags={**tags, VARIANT_KEY_TAG: variant_key}
    )
    log.info(
        "registry: registered %s version %s (%s) from %s", name, mv.version, variant_key, source
    )
    return str(mv.version)


def version_by_alias(settings: Settings, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client(settings).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def download_version(settings: Settings, version: Any, dst: Path | None = None) -> Path:
    """Fetch a registered version's SavedModel to a local folder and return its path."""
    import mlflow

    client(settings)
    dst = dst or Path(tempfile.mkdtemp(prefix=f"aimass-{version.name}-v{version.version}-"))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(dst)))


def promote(settings: Settings, name: str, version: str) -> str | None:
    """Point ``champion`` at ``version``; the old champion becomes ``previous``. Returns the old one."""
    mlc = client(settings)
    old = version_by_alias(settings, name, CHAMPION)
    old_version = str(old.version) if old is not None else None
    if old_version is not None and old_version != str(version):
        mlc.set_registered_model_alias(name, PREVIOUS, old_version)
    mlc.set_registered_model_alias(name, CHAMPION, str(version))
    log.info(
        "registry: %s alias %s -> version %s (previous: %s)", name, CHAMPION, version, old_version
    )
    return old_version


def run_url(settings: Settings, experiment: str, run_id: str) -> str:
    """A link to the run in the MLflow UI."""
    return f"http://{settings.host}:{settings.mlflow_port}/#/experiments/{experiment}/runs/{run_id}"


def download_reference_profile(settings: Settings, version: Any, dst: Path) -> Path:
    """Download the reference profile that ``version``'s training run logged, into ``dst``.

    Raises:
        Exception: MLflow's own, when the run has no profile (an older version).
    """
    import mlflow

    client(settings)
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=version.run_id,
            artifact_path=f"{REFERENCE_ARTIFACT}/{REFERENCE_PROFILE}",
            dst_path=str(dst),
        )
    )


def tag_version(settings: Settings, name: str, version: str, tags: dict[str, str]) -> None:
    """Set ``tags`` on registry version ``version`` of ``name``."""
    mlc = client(settings)
    for key, value in tags.items():
        mlc.set_model_version_tag(name, str(version), key, value)


class RunLog:
    """What a stage logs to its active MLflow run (see :func:`start_run`, :func:`resume_run`)."""

    def __init__(self, run_id: str, experiment: str) -> None:
        self.run_id = run_id
        self.experiment_id = experiment

    def tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    def params(self, params: dict[str, Any]) -> None:
        import mlflow

        mlflow.log_params(params)

    def metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics(metrics, step=step)

    def history(self, history: dict[str, list[float]], prefix: str) -> None:
        """Per-epoch values as ``<prefix><metric>`` with the epoch as the step."""
        import mlflow

        for metric, values in history.items():
            for epoch, value in enumerate(values):
                mlflow.log_metric(f"{prefix}{metric}", float(value), step=epoch)

    def file(self, path: Path | str, artifact_path: str) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def record(self, record: Any, artifact_path: str = "records") -> None:
        """A stage record (``aimass.platform.records``) as ``<artifact_path>/<kind>.json``."""
        import mlflow

        mlflow.log_dict(record.dump(), f"{artifact_path}/{record.kind}.json")

    def folder(self, path: Path | str, artifact_path: str) -> None:
        import mlflow

        mlflow.log_artifacts(str(path), artifact_path=artifact_path)


@contextmanager
def start_run(
    settings: Settings,
    dataset: str,
    *,
    name: str | None,
    tags: dict[str, str] | None = None,
    nested: bool = False,
    run_id: str | None = None,
) -> Iterator[RunLog]:
    """A new run in the dataset's experiment (or the existing ``run_id`` resumed), active
    inside the block."""
    import mlflow

    exp = experiment_id(settings, dataset)
    client(settings)
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else exp,
        run_name=None if run_id else name,
        nested=nested,
        tags=None if run_id else tags,
    ) as run:
        yield RunLog(run.info.run_id, exp)


def latest_run(settings: Settings, dataset: str, tags: dict[str, str]) -> Any | None:
    """The dataset's most recently finished run that has every tag in ``tags``, if any."""
    mlc = client(settings)
    exp = mlc.get_experiment_by_name(f"aimass/{dataset}")
    if exp is None:
        return None
    runs = mlc.search_runs(
        [exp.experiment_id],
        filter_string=" and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()),
        order_by=["attributes.end_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


@contextmanager
def resume_run(settings: Settings, run_id: str) -> Iterator[RunLog]:
    """An existing run, active again inside the block (a later stage adds to it)."""
    import mlflow

    client(settings)
    with mlflow.start_run(run_id=run_id) as run:
        yield RunLog(run.info.run_id, str(run.info.experiment_id))


def git_commit(root: Path) -> str:
    """The checkout's short commit, tagged on every training run ("unknown" outside git)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
