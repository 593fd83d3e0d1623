"""Run parameters checked before any work: types, ranges (from ``aimass.stages.params``),
a known spec, and paths inside the allowed roots. Errors name the param and what to set."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from aimass.data.spec import DatasetSpec, load_spec
from aimass.evaluation.gate import MIN_FORCE_REASON
from aimass.platform.errors import ConfigError
from aimass.platform.s3io import S3Location, is_s3_uri, parse_s3_uri
from aimass.platform.settings import Settings
from aimass.stages.params import (
    BATCH_SIZE,
    DATASET,
    DEFAULT_WORKERS,
    EPOCHS,
    MAX_FORCE_REASON,
    MAX_TRIALS,
    WORKERS,
    ParamField,
)
from aimass.stages.triggers import check_dataset, resolve_input

_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class RunParams:
    dataset: str
    ds: str
    input_path: str
    epochs: int | None
    workers: int
    min_auc: float | None
    learning_rate: float | None = None
    batch_size: int | None = None
    use_tuned_hparams: bool = True
    mixed_precision: bool = False
    # Deploy even when the gate rejects the candidate; the reason is stored with the decision.
    force_deploy: bool = False
    force_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _data_roots() -> list[str]:
    """The entries of AIMASS_DATA_ROOTS (os.pathsep-separated; ``s3://`` ones kept whole)."""
    import os

    parts = os.environ.get("AIMASS_DATA_ROOTS", "").split(os.pathsep)
    entries: list[str] = []
    for part in parts:
        # On POSIX the separator is ":", which also splits "s3://bucket" into "s3", "//bucket".
        if entries and part.startswith("//") and re.fullmatch(r"[a-z][a-z0-9+.-]*", entries[-1]):
            entries[-1] = f"{entries[-1]}:{part}"
        elif part:
            entries.append(part)
    return entries


def allowed_roots(settings: Settings) -> list[Path]:
    """Folders a run may read raw data from: the var dir, a local landing root
    (AIMASS_LANDING_ROOT) and any in AIMASS_DATA_ROOTS."""
    extra = [Path(p).resolve() for p in _data_roots() if "://" not in p]
    if settings.landing_root and not is_s3_uri(settings.landing_root):
        extra.append(Path(settings.landing_root).expanduser().resolve())
    return [settings.var_dir.resolve(), *extra]


def excluded_paths(settings: Settings) -> list[tuple[Path, str]]:
    """Platform state a run may never read, even under an allowed root, each with what it
    holds: the secrets files, Airflow's home, MLflow's store, the model server's files, and
    the services' logs and pid files. A clean job's quarantine keeps sample raw lines, so
    reading any of these would copy its content into the run's reports."""
    import os

    secrets = "a secrets file (generated passwords and keys)"
    excluded = [
        (settings.airflow_secrets, secrets),
        (settings.mlflow_secrets, secrets),
        (settings.airflow_home, "Airflow's home (its database, task logs and secrets)"),
        (settings.mlflow_dir, "MLflow's store (its databases, users, artifacts and secrets)"),
        (settings.serving_base, "the model server's base path (the served models)"),
        (settings.serving_base.parent, "the model server's config and request log"),
        (settings.logs_dir, "the services' logs"),
        (settings.var_dir / "run", "the services' pid files"),
    ]
    # Where the environment puts them elsewhere (docker/: AIRFLOW_HOME=/opt/airflow).
    for var, why in (
        ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", secrets),
        ("AIRFLOW_HOME", "Airflow's home (its database, task logs and secrets)"),
    ):
        if os.environ.get(var):
            excluded.append((Path(os.environ[var]), why))
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        store = Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///"))
        excluded.append((store, "MLflow's tracking database"))
    return [(path.expanduser().resolve(), why) for path, why in excluded]


def _refuse_excluded(raw_input: str, path: Path, settings: Settings) -> None:
    # The most specific place names the reason (the secrets file, not its folder).
    places = sorted(excluded_paths(settings), key=lambda entry: len(entry[0].parts), reverse=True)
    for place, why in places:
        if path == place or place in path.parents:
            raise ConfigError(
                f"param input_path={raw_input!r} points into {why} at {place}; runs may not "
                "read platform state. Point it at raw data: a file or folder under the var "
                "dir's data/ or landing/, or in AIMASS_DATA_ROOTS"
            )


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def allowed_s3_roots(settings: Settings | None = None) -> list[S3Location]:
    """S3 prefixes a run may read raw data from: the ``s3://`` entries of AIMASS_DATA_ROOTS,
    and an S3 landing root (AIMASS_LANDING_ROOT) when ``settings`` has one.

    Raises:
        ConfigError: an entry is not a valid S3 URI.
    """
    roots = []
    for entry in _data_roots():
        if is_s3_uri(entry):
            try:
                roots.append(parse_s3_uri(entry))
            except ConfigError as exc:
                raise ConfigError(f"AIMASS_DATA_ROOTS entry {entry!r}: {exc}") from exc
    if settings is not None and is_s3_uri(settings.landing_root):
        roots.append(parse_s3_uri(settings.landing_root))
    return roots


def _check_s3_input(raw_input: str, settings: Settings) -> str:
    """Check that an ``s3://`` input lies under an allowed S3 root; the input as given.

    Whether objects exist is checked by the clean job, which lists them before any write.
    """
    try:
        location = parse_s3_uri(raw_input)
    except ConfigError as exc:
        raise ConfigError(f"param input_path: {exc}") from exc
    roots = allowed_s3_roots(settings)
    if not any(root.contains(location) for root in roots):
        allowed = [root.uri for root in roots] or "none"
        raise ConfigError(
            f"param input_path={raw_input!r} is outside the allowed S3 roots ({allowed}); "
            f"add s3://{location.bucket}/ or a prefix of the input to AIMASS_DATA_ROOTS "
            "(entries separated by the OS path separator, like the local folders)"
        )
    return raw_input


def _check_local_input(raw_input: str, settings: Settings) -> Path:
    """Check that a local input exists under an allowed root and outside the platform's state
    (:func:`excluded_paths`), links resolved, a folder's entries too; its resolved path."""
    input_path = Path(raw_input).expanduser().resolve()
    roots = allowed_roots(settings)
    _refuse_excluded(raw_input, input_path, settings)
    if not _inside(input_path, roots):
        raise ConfigError(
            f"param input_path={raw_input!r} is outside the allowed data roots {[str(r) for r in roots]}; "
            "put the file under the var dir or add its folder to AIMASS_DATA_ROOTS"
        )
    if not input_path.exists():
        raise ConfigError(
            f"param input_path={raw_input!r} does not exist; point it at a CSV file or a folder of CSVs"
        )
    if input_path.is_dir():
        # The clean job reads every file in the folder: a link in it must not lead out.
        for entry in sorted(input_path.iterdir()):
            target = entry.resolve()
            shown = f"{raw_input.rstrip('/')}/{entry.name}"
            _refuse_excluded(shown, target, settings)
            if not _inside(target, roots):
                raise ConfigError(
                    f"param input_path={raw_input!r}: {entry.name} links to {target}, outside "
                    f"the allowed data roots {[str(r) for r in roots]}; remove the link or copy "
                    "the file into the folder"
                )
    return input_path


def _int(params: dict[str, Any], field: ParamField) -> int | None:
    key, lo, hi = field.name, field.minimum, field.maximum
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


def _bool(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key)
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"param {key}={value!r} must be true or false")


def _learning_rate(params: dict[str, Any]) -> float | None:
    value = params.get("learning_rate")
    if value in (None, ""):
        return None
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"param learning_rate={value!r} must be a number in (0, 1), e.g. 0.001 (or empty)"
        ) from None
    if isinstance(value, bool) or not 0 < rate < 1:
        raise ConfigError(
            f"param learning_rate={value!r} must be in (0, 1), e.g. 0.001 (or empty for the "
            "tuned or spec value)"
        )
    return rate


def _force(params: dict[str, Any]) -> tuple[bool, str]:
    """``force_deploy`` and its ``force_reason`` (stripped), checked together."""
    force = _bool(params, "force_deploy", False)
    raw = params.get("force_reason")
    if raw is not None and not isinstance(raw, str):
        raise ConfigError(
            f"param force_reason={raw!r} must be text saying why the gate may be overridden"
        )
    reason = (raw or "").strip()
    if force and len(reason) < MIN_FORCE_REASON:
        raise ConfigError(
            f"param force_deploy=true needs force_reason: at least {MIN_FORCE_REASON} "
            f"characters saying why the gate may be overridden (got {reason!r}); it is stored "
            "with the gate decision and tagged in MLflow. Or untick force_deploy"
        )
    if len(reason) > MAX_FORCE_REASON:
        raise ConfigError(
            f"param force_reason is {len(reason)} characters; shorten it to at most "
            f"{MAX_FORCE_REASON} (link to a ticket for the details)"
        )
    if reason and not force:
        raise ConfigError(
            "param force_reason is set but force_deploy is false; tick force_deploy to deploy "
            "even if the gate rejects the candidate, or clear force_reason"
        )
    return force, reason


def _spec(params: dict[str, Any], settings: Settings) -> DatasetSpec:
    """The spec the ``dataset`` param names (default ``chicago_taxi``)."""
    dataset = check_dataset(str(params.get("dataset") or DATASET.default), settings)
    return load_spec(dataset, settings.conf_dir)


def check_datasets(datasets: Any, settings: Settings) -> list[str]:
    """The ``datasets`` param of ``aimass_monitor``: a list of known spec names.

    Raises:
        ConfigError: not a list of names, or one has no spec (the known ones listed).
    """
    if datasets in (None, ""):
        return []
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise ConfigError(f"param datasets={datasets!r} must be a list of dataset spec names")
    return [check_dataset(d, settings) for d in datasets]


def _workers(params: dict[str, Any], settings: Settings) -> int:
    """The ``workers`` param: 1..8, or ``auto``/empty resolved for this machine (logged)."""
    from aimass.training.run import resolve_workers

    value = params.get(WORKERS.name)
    if value in (None, "") or (isinstance(value, str) and value.strip().lower() == "auto"):
        return resolve_workers(DEFAULT_WORKERS, launcher=settings.train_launcher)
    if isinstance(value, str) and not value.strip().isdigit():
        raise ConfigError(
            f"param workers={value!r} must be auto or an integer between {WORKERS.minimum} "
            f"and {WORKERS.maximum}"
        )
    number = _int(params, WORKERS)
    return resolve_workers(number)


def validate_params(
    params: dict[str, Any], settings: Settings, *, run_date: date | datetime
) -> RunParams:
    """Check a run's params (types, ranges, known spec, paths inside allowed roots).

    Raises:
        ConfigError: naming the bad param and what to set instead.
    """
    spec = _spec(params, settings)

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

    raw_input = resolve_input(params, spec, settings).path
    if is_s3_uri(raw_input):
        input_path = _check_s3_input(raw_input, settings)
    else:
        input_path = str(_check_local_input(raw_input, settings))

    epochs = _int(params, EPOCHS)
    workers = _workers(params, settings)
    force_deploy, force_reason = _force(params)

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
        if "auc" not in spec.metrics:
            raise ConfigError(
                f"param min_auc={min_auc} applies to classification, but spec '{spec.name}' "
                f"has a {spec.task} label; leave min_auc empty (the spec's gate sets its bars)"
            )
    return RunParams(
        dataset=spec.name,
        ds=str(ds),
        input_path=str(input_path),
        epochs=epochs,
        workers=workers,
        min_auc=min_auc,
        learning_rate=_learning_rate(params),
        batch_size=_int(params, BATCH_SIZE),
        use_tuned_hparams=_bool(params, "use_tuned_hparams", True),
        mixed_precision=_bool(params, "mixed_precision", False),
        force_deploy=force_deploy,
        force_reason=force_reason,
    )


@dataclass(frozen=True)
class TuneParams:
    dataset: str
    ds: str
    clean_dir: str
    algorithm: str
    max_trials: int
    epochs: int
    workers: int
    mixed_precision: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latest_partition(settings: Settings, dataset: str) -> str:
    """The newest ``ds`` of the dataset's clean partitions (ISO dates sort by time).

    Raises:
        ConfigError: the dataset has no clean partition yet.
    """
    root = settings.lake_dir / "clean" / dataset
    dates = sorted(
        p.name.removeprefix("ds=")
        for p in root.glob("ds=*")
        if p.is_dir() and _DS.match(p.name.removeprefix("ds=")) and any(p.rglob("*.parquet"))
    )
    if not dates:
        raise ConfigError(
            f"dataset {dataset!r} has no clean partition under {root}; run aimass_retrain "
            "for it first (or its clean stage), then tune"
        )
    return dates[-1]


def validate_tune_params(params: dict[str, Any], settings: Settings) -> TuneParams:
    """Check a search's params; fill the spec's ``tuning`` values and the newest partition.

    Raises:
        ConfigError: naming the bad param and what to set instead.
    """
    from aimass.data.spec import TUNING_ALGORITHMS

    spec = _spec(params, settings)
    ds = str(params.get("ds") or "")
    if ds:
        if not _DS.match(ds):
            raise ConfigError(f"param ds={ds!r} must be a date like 2026-11-25 (or empty)")
    else:
        ds = latest_partition(settings, spec.name)
    clean_dir = settings.clean_partition(spec.name, ds)
    if not clean_dir.is_dir():
        raise ConfigError(
            f"param ds={ds!r}: there is no clean partition {clean_dir}; leave ds empty for the "
            f"newest one ({latest_partition(settings, spec.name)})"
        )
    algorithm = str(params.get("algorithm") or spec.tuning.algorithm)
    if algorithm not in TUNING_ALGORITHMS:
        raise ConfigError(
            f"param algorithm={algorithm!r} is unknown; use one of {TUNING_ALGORITHMS} "
            "(or empty for the spec's tuning.algorithm)"
        )
    return TuneParams(
        dataset=spec.name,
        ds=ds,
        clean_dir=str(clean_dir),
        algorithm=algorithm,
        max_trials=_int(params, MAX_TRIALS) or spec.tuning.max_trials,
        epochs=_int(params, EPOCHS) or spec.tuning.epochs,
        workers=_workers(params, settings),
        mixed_precision=_bool(params, "mixed_precision", False),
    )
