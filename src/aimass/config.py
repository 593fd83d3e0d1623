"""Platform settings: where things live and where services listen.

Defaults suit one machine (`make demo`); every value can be overridden with an
``AIMASS_*`` environment variable, which is how Airflow tasks, Spark jobs and
training workers started by the platform all see the same settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aimass.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


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

    @property
    def mlflow_artifacts(self) -> Path:
        return self.var_dir / "mlflow" / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.var_dir / "logs"

    def clean_partition(self, dataset: str, ds: str) -> Path:
        return self.lake_dir / "clean" / dataset / f"ds={ds}"

    def quarantine_partition(self, dataset: str, ds: str) -> Path:
        return self.lake_dir / "quarantine" / dataset / f"ds={ds}"

    def report_dir(self, dataset: str, ds: str) -> Path:
        return self.reports_dir / dataset / f"ds={ds}"

    @property
    def serving_grpc_target(self) -> str:
        return f"{self.serving_host or self.host}:{self.serving_grpc_port}"

    @property
    def serving_rest_url(self) -> str:
        return f"http://{self.serving_host or self.host}:{self.serving_rest_port}"
