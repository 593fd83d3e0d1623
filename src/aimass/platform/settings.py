"""Platform settings: where things live and where services listen.

Defaults suit one machine (`make demo`); every value can be overridden with an
``AIMASS_*`` environment variable, which is how Airflow tasks, Spark jobs and
training workers started by the platform all see the same settings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from aimass.platform.errors import ConfigError
from aimass.platform.s3io import is_s3_uri, parse_s3_uri

REPO_ROOT = Path(__file__).resolve().parents[3]


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a port number; set it to an integer 1..65535"
        ) from None
    if not 0 < port < 65536:
        raise ConfigError(f"{name}={port} is out of range; set it to an integer 1..65535")
    return port


TRAIN_LAUNCHERS = ("local", "kubernetes")
DEFAULT_RETRAIN_SCHEDULE = "0 2 * * *"
DEFAULT_MONITOR_SCHEDULE = "0 * * * *"
_SCHEDULE_OFF = ("", "none", "off", "manual")
K8S_PULL_POLICIES = ("IfNotPresent", "Always", "Never")
# A Kubernetes resource quantity as written in manifests: 2, 500m, 1.5, 4Gi, 512M.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")


def _schedule(raw: str) -> str:
    value = " ".join(raw.split())
    return "" if value.lower() in _SCHEDULE_OFF else value


def _count(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to 0 or more") from None


def _share(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to a share 0..1") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value} is out of range; set it to a share 0..1, e.g. 0.1")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; set it to true or false")


def safe_name(run_id: str) -> str:
    """``run_id`` as a file or folder name (Airflow run ids hold ``:`` and ``+``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


@dataclass(frozen=True)
class Settings:
    root: Path
    var_dir: Path
    host: str = "127.0.0.1"
    airflow_port: int = 8080
    mlflow_port: int = 5000
    serving_grpc_port: int = 8500
    serving_rest_port: int = 8501
    mlflow_tracking_uri: str = ""
    # Where the model server is reached; the host itself by default, a service name in docker/.
    serving_host: str = ""
    # Training launcher: "local" worker processes, or "kubernetes" pods (aimass.training.kubernetes).
    train_launcher: str = "local"
    # Cron (UTC) of the nightly retraining; "" = manual and event runs only.
    retrain_schedule: str = DEFAULT_RETRAIN_SCHEDULE
    k8s_namespace: str = "default"
    k8s_image: str = ""
    k8s_service_account: str = ""  # "" = the namespace's default service account
    k8s_pvc: str = ""  # ReadWriteMany claim holding the var dir (lake, runs), mounted at var_dir
    k8s_cpu: str = "2"  # per worker pod, requests = limits
    k8s_memory: str = "4Gi"
    k8s_gpus: int = 0  # nvidia.com/gpu limit per worker pod
    k8s_image_pull_policy: str = "IfNotPresent"
    # A person approves each deployment in the Airflow UI (aimass_retrain's approval step).
    require_approval: bool = False
    # aimass_batch_predict also runs on every validated clean batch (AIMASS_BATCH_PREDICT_ON_CLEAN).
    batch_predict_on_clean: bool = False
    # Versions of a model kept loaded: the stable one, the previous (instant rollback), ...
    serving_keep_versions: int = 2
    # Airflow connection (http webhook or smtp) alerts also go to; "" = log and store only.
    alert_conn_id: str = ""
    # Share of served Predict requests whose features the model server records (0 = none).
    request_log_sample: float = 0.1
    # Rows of recent requests kept per model (a ring buffer persisted as Parquet).
    request_log_rows: int = 10_000
    # After each run, remove the dataset's clean batches that are superseded and that no
    # trained version learnt from (aimass.data.lake.prune); off keeps every batch.
    lake_prune: bool = True
    # Cron (UTC) of aimass_monitor (served requests vs the champion's reference); "" = off.
    monitor_schedule: str = DEFAULT_MONITOR_SCHEDULE
    # Where files land, one sub-folder (or sub-prefix) per dataset: "" = <var>/landing, else
    # another folder or an s3://bucket/prefix (aimass.data.landing).
    landing_root: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.request_log_sample <= 1.0:
            raise ConfigError(
                f"AIMASS_REQUEST_LOG_SAMPLE={self.request_log_sample}; use a share 0..1 of "
                "requests to record (0.1 records one request in ten, 0 none)"
            )
        if not 1 <= self.request_log_rows <= 10_000_000:
            raise ConfigError(
                f"AIMASS_REQUEST_LOG_ROWS={self.request_log_rows}; keep 1..10000000 recent rows "
                "per model (10000 is the default)"
            )
        if self.monitor_schedule and len(self.monitor_schedule.split()) != 5:
            raise ConfigError(
                f"AIMASS_MONITOR_SCHEDULE={self.monitor_schedule!r} is not a 5-field cron "
                "expression (UTC), e.g. '0 * * * *' for hourly; use 'none' to turn it off"
            )
        if is_s3_uri(self.landing_root):
            try:
                parse_s3_uri(self.landing_root)
            except ConfigError as exc:
                raise ConfigError(f"AIMASS_LANDING_ROOT: {exc}") from exc
        elif "://" in self.landing_root:
            raise ConfigError(
                f"AIMASS_LANDING_ROOT={self.landing_root!r}; use a local folder or an "
                "s3://bucket/prefix (empty: <var>/landing)"
            )
        if not 1 <= self.serving_keep_versions <= 20:
            raise ConfigError(
                f"AIMASS_SERVING_KEEP_VERSIONS={self.serving_keep_versions}; keep 1..20 versions "
                "loaded (2 keeps the previous one for an instant rollback)"
            )
        if self.alert_conn_id and not _CONN_ID.match(self.alert_conn_id):
            raise ConfigError(
                f"AIMASS_ALERT_CONN_ID={self.alert_conn_id!r} is not a connection id; use "
                "letters, digits, '_', '-' and '.' (the id of an http or smtp Airflow connection), "
                "or leave it empty to keep alerts in the log and the alerts store"
            )
        if self.retrain_schedule and len(self.retrain_schedule.split()) != 5:
            raise ConfigError(
                f"AIMASS_RETRAIN_SCHEDULE={self.retrain_schedule!r} is not a 5-field cron "
                "expression (minute hour day month weekday, UTC), e.g. '0 2 * * *'; use 'none' "
                "for manual runs only"
            )
        if self.train_launcher not in TRAIN_LAUNCHERS:
            raise ConfigError(
                f"AIMASS_TRAIN_LAUNCHER={self.train_launcher!r}; use one of {list(TRAIN_LAUNCHERS)}"
            )
        if self.train_launcher == "kubernetes":
            self._check_kubernetes()

    def _check_kubernetes(self) -> None:
        """The K8s fields the kubernetes launcher needs, each named with its fix when wrong."""
        if not self.k8s_image.strip():
            raise ConfigError(
                "AIMASS_TRAIN_LAUNCHER=kubernetes needs AIMASS_K8S_IMAGE: an image built from "
                "docker/Dockerfile (the project installed), e.g. registry.example.com/aimass:1.0"
            )
        if not self.k8s_pvc.strip():
            raise ConfigError(
                "AIMASS_TRAIN_LAUNCHER=kubernetes needs AIMASS_K8S_PVC: a ReadWriteMany "
                f"PersistentVolumeClaim holding the var dir, mounted at {self.var_dir} in the "
                "worker pods and in this process (workers read the lake and write the run dir there)"
            )
        if not _DNS_SUBDOMAIN.match(self.k8s_pvc):
            raise ConfigError(
                f"AIMASS_K8S_PVC={self.k8s_pvc!r} is not a valid claim name; use lowercase "
                "letters, digits, '-' and '.'"
            )
        if not _DNS_LABEL.match(self.k8s_namespace):
            raise ConfigError(
                f"AIMASS_K8S_NAMESPACE={self.k8s_namespace!r} is not a valid namespace; use "
                "lowercase letters, digits and '-' (at most 63, starting and ending alphanumeric)"
            )
        if self.k8s_service_account and not _DNS_SUBDOMAIN.match(self.k8s_service_account):
            raise ConfigError(
                f"AIMASS_K8S_SERVICE_ACCOUNT={self.k8s_service_account!r} is not a valid name; "
                "use lowercase letters, digits, '-' and '.', or leave it empty for the default"
            )
        for name, value in (
            ("AIMASS_K8S_CPU", self.k8s_cpu),
            ("AIMASS_K8S_MEMORY", self.k8s_memory),
        ):
            if not _QUANTITY.match(value):
                raise ConfigError(
                    f"{name}={value!r} is not a Kubernetes quantity; write it like 2, 500m, 4Gi"
                )
        if self.k8s_gpus < 0:
            raise ConfigError(
                f"AIMASS_K8S_GPUS={self.k8s_gpus}; use 0 (CPU only) or more GPUs per worker"
            )
        if self.k8s_image_pull_policy not in K8S_PULL_POLICIES:
            raise ConfigError(
                f"AIMASS_K8S_IMAGE_PULL_POLICY={self.k8s_image_pull_policy!r}; "
                f"use one of {list(K8S_PULL_POLICIES)}"
            )

    @classmethod
    def from_env(cls) -> Settings:
        root = Path(os.environ.get("AIMASS_ROOT", REPO_ROOT)).resolve()
        var_dir = Path(os.environ.get("AIMASS_VAR_DIR", root / "var")).resolve()
        return cls(
            root=root,
            var_dir=var_dir,
            host=os.environ.get("AIMASS_HOST", "127.0.0.1"),
            airflow_port=_port("AIMASS_AIRFLOW_PORT", 8080),
            mlflow_port=_port("AIMASS_MLFLOW_PORT", 5000),
            serving_grpc_port=_port("AIMASS_SERVING_GRPC_PORT", 8500),
            serving_rest_port=_port("AIMASS_SERVING_REST_PORT", 8501),
            serving_host=os.environ.get(
                "AIMASS_SERVING_HOST", os.environ.get("AIMASS_HOST", "127.0.0.1")
            ),
            mlflow_tracking_uri=os.environ.get(
                "AIMASS_MLFLOW_TRACKING_URI", f"sqlite:///{var_dir / 'mlflow' / 'mlflow.db'}"
            ),
            train_launcher=os.environ.get("AIMASS_TRAIN_LAUNCHER", "local").strip().lower(),
            retrain_schedule=_schedule(
                os.environ.get("AIMASS_RETRAIN_SCHEDULE", DEFAULT_RETRAIN_SCHEDULE)
            ),
            k8s_namespace=os.environ.get("AIMASS_K8S_NAMESPACE", "default"),
            k8s_image=os.environ.get("AIMASS_K8S_IMAGE", ""),
            k8s_service_account=os.environ.get("AIMASS_K8S_SERVICE_ACCOUNT", ""),
            k8s_pvc=os.environ.get("AIMASS_K8S_PVC", ""),
            k8s_cpu=os.environ.get("AIMASS_K8S_CPU", "2"),
            k8s_memory=os.environ.get("AIMASS_K8S_MEMORY", "4Gi"),
            k8s_gpus=_count("AIMASS_K8S_GPUS", 0),
            k8s_image_pull_policy=os.environ.get("AIMASS_K8S_IMAGE_PULL_POLICY", "IfNotPresent"),
            require_approval=_flag("AIMASS_REQUIRE_APPROVAL", False),
            batch_predict_on_clean=_flag("AIMASS_BATCH_PREDICT_ON_CLEAN", False),
            serving_keep_versions=_count("AIMASS_SERVING_KEEP_VERSIONS", 2),
            alert_conn_id=os.environ.get("AIMASS_ALERT_CONN_ID", "").strip(),
            request_log_sample=_share("AIMASS_REQUEST_LOG_SAMPLE", 0.1),
            request_log_rows=_count("AIMASS_REQUEST_LOG_ROWS", 10_000),
            lake_prune=_flag("AIMASS_LAKE_PRUNE", True),
            monitor_schedule=_schedule(
                os.environ.get("AIMASS_MONITOR_SCHEDULE", DEFAULT_MONITOR_SCHEDULE)
            ),
            landing_root=os.environ.get("AIMASS_LANDING_ROOT", "").strip(),
        )

    def env(self) -> dict[str, str]:
        """The environment that hands these settings to child processes."""
        return {
            "AIMASS_ROOT": str(self.root),
            "AIMASS_VAR_DIR": str(self.var_dir),
            "AIMASS_HOST": self.host,
            "AIMASS_AIRFLOW_PORT": str(self.airflow_port),
            "AIMASS_MLFLOW_PORT": str(self.mlflow_port),
            "AIMASS_SERVING_GRPC_PORT": str(self.serving_grpc_port),
            "AIMASS_SERVING_REST_PORT": str(self.serving_rest_port),
            "AIMASS_MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "AIMASS_SERVING_HOST": self.serving_host or self.host,
        }

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def lake_dir(self) -> Path:
        return self.var_dir / "lake"

    @property
    def reports_dir(self) -> Path:
        return self.var_dir / "reports"

    @property
    def runs_dir(self) -> Path:
        """Training working directories (checkpoints, exported candidates)."""
        return self.var_dir / "runs"

    @property
    def serving_base(self) -> Path:
        """TF Serving model base path: <base>/<model>/<version>/saved_model.pb."""
        return self.var_dir / "serving" / "models"

    @property
    def serving_config(self) -> Path:
        """The model server's models.config (text-format ModelServerConfig)."""
        return self.serving_base.parent / "models.config"

    def landing_uri(self, dataset: str) -> str:
        """The landing zone of ``dataset`` as an asset URI (``file://`` for a folder)."""
        location = self.landing_location(dataset)
        return location.rstrip("/") if "://" in location else f"file://{location}"

    def landing_location(self, dataset: str) -> str:
        """Where ``dataset``'s files land: a folder, or an ``s3://`` prefix ending in ``/``."""
        if is_s3_uri(self.landing_root):
            return f"{self.landing_root.rstrip('/')}/{dataset}/"
        root = (
            Path(self.landing_root).expanduser() if self.landing_root else self.var_dir / "landing"
        )
        return str(root.resolve() / dataset)

    def dataset_names(self) -> list[str]:
        """The dataset specs in ``conf/datasets`` (the trigger forms' choices); cheap enough
        for DAG parsing. ``["chicago_taxi"]`` when the folder has none."""
        return sorted(p.stem for p in (self.conf_dir / "datasets").glob("*.yaml")) or [
            "chicago_taxi"
        ]

    @property
    def requests_dir(self) -> Path:
        """Recent served requests: <dir>/<model>/recent.parquet (the model server's request log)."""
        return self.serving_base.parent / "requests"

    @property
    def airflow_home(self) -> Path:
        """Airflow's home in the embedded stack: its database, task logs and secrets."""
        return self.var_dir / "airflow"

    @property
    def mlflow_dir(self) -> Path:
        """MLflow's store in the embedded stack: its databases, users, artifacts and secrets."""
        return self.var_dir / "mlflow"

    @property
    def airflow_secrets(self) -> Path:
        """Airflow's generated secrets (JWT, API and Fernet keys, users' passwords), 0600."""
        return self.airflow_home / "aimass-secrets.json"

    @property
    def mlflow_secrets(self) -> Path:
        """MLflow's generated secrets (admin and service passwords, Flask key), 0600."""
        return self.mlflow_dir / "aimass-secrets.json"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.var_dir / "logs"

    def clean_partition(self, dataset: str, ds: str) -> Path:
        return self.lake_dir / "clean" / dataset / f"ds={ds}"

    def quarantine_partition(self, dataset: str, ds: str) -> Path:
        return self.lake_dir / "quarantine" / dataset / f"ds={ds}"

    def clean_batch(self, dataset: str, ds: str, run_id: str) -> Path:
        """Where one run writes the rows it cleaned: a batch of the day, never rewritten by
        another run (``aimass.data.lake``)."""
        return self.clean_partition(dataset, ds) / f"batch={safe_name(run_id)}"

    def quarantine_batch(self, dataset: str, ds: str, run_id: str) -> Path:
        return self.quarantine_partition(dataset, ds) / f"batch={safe_name(run_id)}"

    def predictions_partition(self, dataset: str, ds: str) -> Path:
        """A day's batch predictions (``aimass_batch_predict``), rejected rows in ``_rejected/``."""
        return self.lake_dir / "predictions" / dataset / f"ds={ds}"

    def report_dir(self, dataset: str, ds: str) -> Path:
        """The reports of a day's runs of ``dataset``, one folder per run inside."""
        return self.reports_dir / dataset / f"ds={ds}"

    def run_report_dir(self, dataset: str, ds: str, run_id: str) -> Path:
        """One run's reports and records: a second run of the same day keeps its own."""
        return self.report_dir(dataset, ds) / safe_name(run_id)

    @property
    def serving_grpc_target(self) -> str:
        return f"{self.serving_host or self.host}:{self.serving_grpc_port}"

    @property
    def serving_rest_url(self) -> str:
        return f"http://{self.serving_host or self.host}:{self.serving_rest_port}"
