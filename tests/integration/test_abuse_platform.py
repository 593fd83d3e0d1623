"""The abuse corpus, platform part: run parameters and MLflow calls that must be refused.

Run parameters go through ``prepare_run``, the stage the retraining DAG's first task calls:
each bad value ends in a ``ConfigError`` that names it and says why, and leaves the var dir
exactly as it was. The MLflow cases run against a real ``mlflow server --app-name basic-auth``
started by the stack's own code (``aimass.stack.services``) on a free loopback port:
anonymous callers get 401 and a read-only user 403 on everything that decides what serves
(creating a model, registering a version, moving or deleting ``champion``, deleting the
model), and the registry is unchanged afterwards; the platform's service user can do all of
it, and people can still log in to the UI.
"""

from __future__ import annotations

import base64
import json
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from testkit import free_port

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.stack import mlflow_auth, services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RUN_DATE = datetime(2026, 11, 25, 2, 0)
MODEL = "chicago_taxi"
READER = ("reader", "reader-password-123")


# --- run parameters ---------------------------------------------------------------------


def _snapshot(var: Path) -> dict[str, tuple[bool, int, int, int]]:
    """Every path under ``var`` with its kind, size, mtime and mode."""
    out = {}
    for path in sorted(var.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(var))] = (path.is_dir(), st.st_size, st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture
def installed(settings: Settings) -> Settings:
    """A var dir as an install has it: raw data, secrets, databases, a served model, logs."""
    raw = settings.var_dir / "data" / "raw" / "chicago_taxi"
    raw.mkdir(parents=True)
    (raw / "data.csv").write_text("header\n", encoding="utf-8")
    services.airflow_env(settings)  # the Airflow secrets and passwords files
    mlflow_auth.credentials(settings)  # MLflow's secrets file
    for relative in (
        "airflow/airflow.db",
        "mlflow/mlflow.db",
        "mlflow/basic_auth.db",
        "serving/models/chicago_taxi/1/saved_model.pb",
        "serving/models.config",
        "logs/mlflow.log",
        "run/mlflow.pid",
    ):
        path = settings.var_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("state\n", encoding="utf-8")
    return settings


def _prepare(params: dict[str, Any]) -> None:
    from aimass.stages.retrain import prepare_run

    prepare_run(
        params,
        dag_id="aimass_retrain",
        run_id="manual__abuse",
        run_date=RUN_DATE,
        landed=None,
        drifted=None,
    )


def _link(var: Path, name: str, target: Path) -> str:
    link = var / "data" / "raw" / "chicago_taxi" / name
    link.symlink_to(target)
    return str(link)


def _folder_with_a_link(var: Path) -> dict[str, str]:
    _link(var, "keys.csv", var / "mlflow" / "aimass-secrets.json")
    return {"input_path": str(var / "data" / "raw" / "chicago_taxi")}


# (id, params as a function of the var dir, the message the refusal must carry)
PARAM_CASES = [
    (
        "airflow-secrets-file",
        lambda var: {"input_path": str(var / "airflow" / "aimass-secrets.json")},
        r"points into a secrets file .*may not read platform state",
    ),
    (
        "airflow-users-passwords",
        lambda var: {"input_path": str(var / "airflow" / "simple_auth_manager_passwords.json")},
        r"points into Airflow's home \(its database, task logs and secrets\)",
    ),
    (
        "airflow-db",
        lambda var: {"input_path": str(var / "airflow" / "airflow.db")},
        "points into Airflow's home",
    ),
    (
        "mlflow-secrets-file",
        lambda var: {"input_path": str(var / "mlflow" / "aimass-secrets.json")},
        "points into a secrets file",
    ),
    (
        "mlflow-users-db",
        lambda var: {"input_path": str(var / "mlflow" / "basic_auth.db")},
        "points into MLflow's store",
    ),
    (
        "mlflow-store-folder",
        lambda var: {"input_path": str(var / "mlflow")},
        "points into MLflow's store",
    ),
    (
        "serving-base",
        lambda var: {"input_path": str(var / "serving" / "models" / "chicago_taxi")},
        "points into the model server's base path",
    ),
    (
        "dot-dot-traversal",
        lambda var: {
            "input_path": f"{var}/data/raw/chicago_taxi/../../../airflow/aimass-secrets.json"
        },
        "points into a secrets file",
    ),
    (
        "link-into-airflow-home",
        lambda var: {"input_path": _link(var, "trips.csv", var / "airflow" / "airflow.db")},
        "points into Airflow's home",
    ),
    (
        "link-escaping-the-roots",
        lambda var: {"input_path": _link(var, "hosts.csv", Path("/etc/hosts"))},
        "outside the allowed data roots",
    ),
    (
        "folder-holding-a-link-to-secrets",
        _folder_with_a_link,
        "keys.csv' points into a secrets file",
    ),
    ("absolute-path-elsewhere", lambda var: {"input_path": "/etc/passwd"}, "outside the allowed"),
    ("absurd-epochs", lambda var: {"epochs": 10**9}, "epochs=1000000000 is out of range"),
    ("absurd-workers", lambda var: {"workers": 10_000}, "workers=10000 is out of range"),
    ("negative-workers", lambda var: {"workers": -1}, "workers=-1 is out of range"),
    (
        "unknown-dataset",
        lambda var: {"dataset": "nope"},
        "param dataset='nope': there is no spec .*; known datasets: chicago_taxi",
    ),
    ("dataset-as-a-path", lambda var: {"dataset": "../../etc/passwd"}, "not a path"),
]


@pytest.mark.parametrize(
    ("make_params", "message"),
    [pytest.param(make, message, id=case) for case, make, message in PARAM_CASES],
)
def test_bad_run_params_are_refused_and_change_nothing(
    installed: Settings, make_params: Any, message: str
) -> None:
    var = installed.var_dir
    params = make_params(var)
    before = _snapshot(var)
    with pytest.raises(ConfigError, match=message):
        _prepare(params)
    assert _snapshot(var) == before
    assert not installed.reports_dir.exists() and not installed.lake_dir.exists()


# --- MLflow -----------------------------------------------------------------------------


class Rest:
    """MLflow's REST API as one identity (None: anonymous)."""

    def __init__(self, url: str, login: tuple[str, str] | None) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        if login:
            token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def __call__(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, str]:
        url = f"{self.url}{path}"
        if method == "GET" and body:
            url, body = f"{url}?{urllib.parse.urlencode(body)}", None
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, text = self(method, path, body)
        assert status == 200, f"{method} {path}: {status} {text}"
        return dict(json.loads(text or "{}"))


@pytest.fixture(scope="module")
def mlflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack's MLflow (basic-auth app, service user provisioned) on a free port, with a
    registered model of two versions whose alias ``champion`` names version 1."""
    var = tmp_path_factory.mktemp("abuse") / "var"
    mp = pytest.MonkeyPatch()
    mp.setenv("AIMASS_VAR_DIR", str(var))
    mp.setenv("AIMASS_MLFLOW_PORT", str(free_port()))
    mp.delenv("AIMASS_MLFLOW_TRACKING_URI", raising=False)
    for name in mlflow_auth.ENV_OVERRIDES.values():
        mp.delenv(name, raising=False)
    settings = Settings.from_env()
    try:
        services.start(settings, ["mlflow"])
        services.wait_ready(settings, ["mlflow"], timeout_s=300)
        creds = mlflow_auth.credentials(settings)
        url = f"http://{settings.host}:{settings.mlflow_port}"
        admin = Rest(url, (mlflow_auth.ADMIN_USER, creds["admin_password"]))
        admin.ok(
            "POST", "/api/2.0/mlflow/users/create", {"username": READER[0], "password": READER[1]}
        )
        service = Rest(url, (mlflow_auth.SERVICE_USER, creds["service_password"]))
        exp = service.ok("POST", "/api/2.0/mlflow/experiments/create", {"name": f"aimass/{MODEL}"})
        run = service.ok(
            "POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp["experiment_id"]}
        )
        info = run["run"]["info"]
        source = f"{info['artifact_uri']}/saved_model"
        service.ok("POST", "/api/2.0/mlflow/registered-models/create", {"name": MODEL})
        for _ in range(2):
            service.ok(
                "POST",
                "/api/2.0/mlflow/model-versions/create",
                {"name": MODEL, "source": source, "run_id": info["run_id"]},
            )
        service.ok(
            "POST",
            "/api/2.0/mlflow/registered-models/alias",
            {"name": MODEL, "alias": "champion", "version": "1"},
        )
        yield {
            "settings": settings,
            "url": url,
            "admin": admin,
            "service": service,
            "source": source,
            "run_id": info["run_id"],
            "creds": creds,
        }
    finally:
        services.stop(settings, ["mlflow"])
        mp.undo()


def _registry(service: Rest) -> tuple[str, list[str], list[str]]:
    """What decides what serves: the champion's version, the model's versions, all models."""
    alias = service.ok(
        "GET", "/api/2.0/mlflow/registered-models/alias", {"name": MODEL, "alias": "champion"}
    )
    versions = service.ok(
        "GET", "/api/2.0/mlflow/model-versions/search", {"filter": f"name='{MODEL}'"}
    )
    models = service.ok("GET", "/api/2.0/mlflow/registered-models/search", {"max_results": 100})
    return (
        alias["model_version"]["version"],
        sorted(v["version"] for v in versions.get("model_versions", [])),
        sorted(m["name"] for m in models.get("registered_models", [])),
    )


REGISTRY = "/api/2.0/mlflow/registered-models"


def _operations(stack: dict[str, Any], model: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The writes that decide what serves, on ``model``: method, path, body."""
    version = {"name": model, "source": stack["source"], "run_id": stack["run_id"]}
    return {
        "create registered model": ("POST", f"{REGISTRY}/create", {"name": f"{model}_2"}),
        "create model version": ("POST", "/api/2.0/mlflow/model-versions/create", version),
        "set alias champion": (
            "POST",
            f"{REGISTRY}/alias",
            {"name": model, "alias": "champion", "version": "2"},
        ),
        "delete alias champion": (
            "DELETE",
            f"{REGISTRY}/alias",
            {"name": model, "alias": "champion"},
        ),
        "delete model": ("DELETE", f"{REGISTRY}/delete", {"name": model}),
    }


OPERATIONS = [
    "create registered model",
    "create model version",
    "set alias champion",
    "delete alias champion",
    "delete model",
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("who", "status", "message"),
    [("anonymous", 401, "You are not authenticated"), ("reader", 403, "Permission denied")],
)
def test_registry_writes_need_the_platform_user(
    mlflow_stack: dict[str, Any], operation: str, who: str, status: int, message: str
) -> None:
    login = READER if who == "reader" else None
    caller = Rest(mlflow_stack["url"], login)
    before = _registry(mlflow_stack["service"])
    assert before[0] == "1"
    method, path, body = _operations(mlflow_stack, MODEL)[operation]
    got, text = caller(method, path, body)
    assert (got, message in text) == (status, True), f"{who} {operation}: {got} {text}"
    assert _registry(mlflow_stack["service"]) == before


def test_a_reader_still_reads_the_registry(mlflow_stack: dict[str, Any]) -> None:
    reader = Rest(mlflow_stack["url"], READER)
    alias = reader.ok(
        "GET", "/api/2.0/mlflow/registered-models/alias", {"name": MODEL, "alias": "champion"}
    )
    assert alias["model_version"]["version"] == "1"


def test_the_service_user_does_all_of_it(mlflow_stack: dict[str, Any]) -> None:
    service: Rest = mlflow_stack["service"]
    model = "aimass_service_check"
    service.ok("POST", f"{REGISTRY}/create", {"name": model})
    operations = _operations(mlflow_stack, model)
    for name in OPERATIONS:
        method, path, body = operations[name]
        if name == "set alias champion":
            body = {**body, "version": "1"}
        status, text = service(method, path, body)
        assert status == 200, f"service user, {name}: {status} {text}"
    service.ok("DELETE", f"{REGISTRY}/delete", {"name": f"{model}_2"})
    assert _registry(service)[2] == [MODEL]
    # and it moves champion on the dataset's model and back, as deploy and rollback do
    for version in ("2", "1"):
        service.ok(
            "POST", f"{REGISTRY}/alias", {"name": MODEL, "alias": "champion", "version": version}
        )
    assert _registry(service)[0] == "1"


def test_people_log_in_to_the_ui_and_anonymous_cannot(mlflow_stack: dict[str, Any]) -> None:
    url = mlflow_stack["url"]
    assert mlflow_stack["admin"]("GET", "/")[0] == 200
    assert Rest(url, READER)("GET", "/")[0] == 200
    assert Rest(url, None)("GET", "/")[0] == 401
    assert Rest(url, (mlflow_auth.ADMIN_USER, "guess"))("GET", "/")[0] == 401


def test_the_users_live_in_private_files_and_no_password_is_shown(
    mlflow_stack: dict[str, Any],
) -> None:
    settings: Settings = mlflow_stack["settings"]
    mlflow_dir = settings.mlflow_dir
    assert stat.S_IMODE(mlflow_dir.stat().st_mode) == 0o700
    for name in ("mlflow.db", "basic_auth.db", "basic_auth.ini", "aimass-secrets.json"):
        assert stat.S_IMODE((mlflow_dir / name).stat().st_mode) == 0o600, name
    passwords = [mlflow_stack["creds"][k] for k in ("admin_password", "service_password")]
    pid = services.pid_of(settings, "mlflow")
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    log = (settings.logs_dir / "mlflow.log").read_text(errors="replace")
    config = mlflow_auth.config_path(settings).read_text()
    for secret in passwords:
        assert secret not in argv and secret not in log and secret not in config
    assert "--app-name\0basic-auth" in argv
    # Airflow's components (and so every task) log in as the service user.
    env = services.airflow_env(settings)
    assert env["MLFLOW_TRACKING_USERNAME"] == mlflow_auth.SERVICE_USER
    assert env["MLFLOW_TRACKING_PASSWORD"] == mlflow_stack["creds"]["service_password"]
