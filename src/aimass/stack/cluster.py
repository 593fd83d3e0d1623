"""The production profile, started natively: ``make up PROFILE=cluster``.

The same code and DAGs as the embedded default, on the engines a team runs in production:

- **PostgreSQL** (Debian's package) holds Airflow's metadata and Celery's results, MLflow's
  tracking and registry store, and MLflow's users (databases ``airflow``, ``mlflow``,
  ``mlflow_auth``);
- **Redis** (Debian's package) is the Celery broker; **Airflow** runs the CeleryExecutor with
  two Celery workers (``airflow-worker-1``, ``airflow-worker-2``);
- **MLflow** stores artifacts on **S3** through the same boto3 path as AWS: the local
  S3-compatible server the tests use (moto), the endpoint given by ``MLFLOW_S3_ENDPOINT_URL``;
- **Spark**: a standalone master with two workers is the ``spark_default`` connection.

Every listener binds to the configured host (127.0.0.1). PostgreSQL and Redis need a
password, made per install and kept 0600 in ``<var>/cluster/secrets.json``; the S3 server
takes any key (moto has no authentication), so it is only ever bound to loopback.
Passwords reach the services by environment or a 0600 file, never on a command line.

PostgreSQL refuses to run as root: as root its cluster lives under
``/var/lib/postgresql/aimass/<key of the var dir>`` and runs as the ``postgres`` user
(the Debian package's), elsewhere under ``<var>/cluster/postgres`` as the caller.
docker/docker-compose.yml describes the same topology with official images;
tests/unit/aimass/test_docker_stack.py keeps the two equal.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from aimass.platform.errors import ConfigError, StageError
from aimass.platform.settings import Settings
from aimass.platform.sparkcluster import MASTER_CLASS, WORKER_CLASS, spark_class
from aimass.stack import mlflow_auth
from aimass.stack.processes import Service
from aimass.stack.s3store import ready_marker
from aimass.stack.state import SERVICE_UMASK, secrets_file, write_private

log = logging.getLogger(__name__)

PROFILES = ("embedded", "cluster")
STORES = ("postgres", "redis", "s3")
SPARK = ("spark-master", "spark-worker-1", "spark-worker-2")
CELERY_WORKERS = ("airflow-worker-1", "airflow-worker-2")
SUPERVISOR = "supervisor"  # aimass.stack.supervisor: started last, stopped first
DATABASES = ("airflow", "mlflow", "mlflow_auth")
DB_USER = "aimass"
BUCKET = "aimass-mlflow"
# Tasks each Celery worker runs at once: two workers x 2 = 4 slots on a two-core machine.
WORKER_CONCURRENCY = 2
# A task whose worker died (no heartbeat) is failed, then retried, after this long; Airflow's
# default (300 s) suits long tasks on big clusters, a minute suits this profile's.
HEARTBEAT_TIMEOUT_S = 60
INSTALL_HINT = "run `sudo tools/system_packages.sh` (it installs postgresql and redis-server)"


@dataclass(frozen=True)
class Ports:
    """The profile's own listeners (``AIMASS_PG_PORT`` ...), beside the embedded ones."""

    postgres: int = 5433
    redis: int = 6380
    s3: int = 9100
    spark_master: int = 7077
    spark_webui: int = 8090  # the workers' UIs take the next two

    @classmethod
    def from_env(cls) -> Ports:
        from aimass.platform.settings import _port

        return cls(
            postgres=_port("AIMASS_PG_PORT", cls.postgres),
            redis=_port("AIMASS_REDIS_PORT", cls.redis),
            s3=_port("AIMASS_S3_PORT", cls.s3),
            spark_master=_port("AIMASS_SPARK_MASTER_PORT", cls.spark_master),
            spark_webui=_port("AIMASS_SPARK_WEBUI_PORT", cls.spark_webui),
        )

    def env(self) -> dict[str, str]:
        return {
            "AIMASS_PG_PORT": str(self.postgres),
            "AIMASS_REDIS_PORT": str(self.redis),
            "AIMASS_S3_PORT": str(self.s3),
            "AIMASS_SPARK_MASTER_PORT": str(self.spark_master),
            "AIMASS_SPARK_WEBUI_PORT": str(self.spark_webui),
        }


def profile_file(settings: Settings) -> Path:
    return settings.var_dir / "run" / "profile"


def profile(settings: Settings) -> str:
    """``AIMASS_PROFILE`` where set, else the profile this var dir was started with."""
    wanted = os.environ.get("AIMASS_PROFILE", "").strip().lower()
    if not wanted and profile_file(settings).exists():
        wanted = profile_file(settings).read_text(encoding="utf-8").strip()
    wanted = wanted or "embedded"
    if wanted not in PROFILES:
        raise ConfigError(f"AIMASS_PROFILE={wanted!r} is not one of {', '.join(PROFILES)}")
    return wanted


def remember_profile(settings: Settings, name: str) -> None:
    """Later `make stop` / `make status` of this var dir act on what was started."""
    profile_file(settings).parent.mkdir(parents=True, exist_ok=True)
    write_private(profile_file(settings), name + "\n")


def cluster_dir(settings: Settings) -> Path:
    return settings.var_dir / "cluster"


def secrets(settings: Settings) -> dict[str, str]:
    """PostgreSQL's and Redis' passwords and the S3 key, made once per install (0600)."""
    import secrets as token

    folder = cluster_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return secrets_file(
        folder / "secrets.json",
        {
            "postgres_password": lambda: token.token_urlsafe(24),
            "redis_password": lambda: token.token_urlsafe(24),
            "s3_access_key": lambda: "aimass",
            "s3_secret_key": lambda: token.token_urlsafe(24),
        },
    )


def db_uri(settings: Settings, database: str, *, driver: str = "postgresql+psycopg2") -> str:
    ports = Ports.from_env()
    password = secrets(settings)["postgres_password"]
    return f"{driver}://{DB_USER}:{password}@{settings.host}:{ports.postgres}/{database}"


def broker_url(settings: Settings) -> str:
    return (
        f"redis://:{secrets(settings)['redis_password']}@{settings.host}:{Ports.from_env().redis}/0"
    )


def s3_endpoint(settings: Settings) -> str:
    return f"http://{settings.host}:{Ports.from_env().s3}"


def s3_env(settings: Settings) -> dict[str, str]:
    """What boto3 (MLflow's S3 artifact repository among its users) needs to reach the store."""
    sec = secrets(settings)
    return {
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint(settings),
        "AWS_ACCESS_KEY_ID": sec["s3_access_key"],
        "AWS_SECRET_ACCESS_KEY": sec["s3_secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def spark_master_url(settings: Settings) -> str:
    return f"spark://{settings.host}:{Ports.from_env().spark_master}"


def airflow_overrides(settings: Settings) -> dict[str, str]:
    """Airflow's settings that differ from the embedded default's."""
    ports = Ports.from_env()
    return {
        **ports.env(),
        "AIMASS_PROFILE": "cluster",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_uri(settings, "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url(settings),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_uri(settings, "airflow"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
            {"conn_type": "spark", "host": f"spark://{settings.host}", "port": ports.spark_master}
        ),
    }


# -- PostgreSQL -----------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    """A PostgreSQL server program: ``AIMASS_PG_BIN``/name, Debian's newest, else PATH."""
    if given := os.environ.get("AIMASS_PG_BIN"):
        return str(Path(given) / name)
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return found[-1]
    if on_path := shutil.which(name):
        return on_path
    raise ConfigError(f"PostgreSQL's `{name}` was not found: {INSTALL_HINT}")


def pg_user() -> str | None:
    """The user PostgreSQL runs as: ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ConfigError(f"no `postgres` user to run PostgreSQL as: {INSTALL_HINT}") from exc
    return "postgres"


def pg_data_dir(settings: Settings) -> Path:
    if pg_user() is None:
        return cluster_dir(settings) / "postgres"
    key = hashlib.sha256(str(settings.var_dir.resolve()).encode()).hexdigest()[:16]
    return Path("/var/lib/postgresql/aimass") / key


def init_postgres(settings: Settings) -> Path:
    """``initdb`` once: the ``aimass`` superuser with a password (scram), TCP only."""
    data = pg_data_dir(settings)
    if (data / "PG_VERSION").exists():
        return data
    user = pg_user()
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    pwfile = data.parent / f".{data.name}.pw"
    write_private(pwfile, secrets(settings)["postgres_password"] + "\n")
    if user:
        entry = pwd.getpwnam(user)
        for path in (data.parent, data, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    log.info("initialising PostgreSQL's cluster in %s", data)
    try:
        proc = subprocess.run(
            [pg_bin("initdb"), "-D", str(data), "-U", DB_USER, "--pwfile", str(pwfile)]
            + ["--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--no-locale"]
            + ["-E", "UTF8"],
            user=user,
            cwd=data,
            capture_output=True,
            text=True,
            umask=SERVICE_UMASK,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise StageError(f"initdb exited {proc.returncode}: {proc.stderr[-2000:]}")
    return data


def postgres_argv(settings: Settings) -> list[str]:
    return [pg_bin("postgres"), "-D", str(pg_data_dir(settings))] + [
        "-c",
        f"listen_addresses={settings.host}",
        "-p",
        str(Ports.from_env().postgres),
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
    ]


def pg_ready(settings: Settings) -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            db_uri(settings, "postgres", driver="postgresql"), connect_timeout=3
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def create_databases(settings: Settings) -> None:
    import psycopg2

    conn = psycopg2.connect(db_uri(settings, "postgres", driver="postgresql"), connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            have = {row[0] for row in cur.fetchall()}
            for name in DATABASES:
                if name not in have:
                    cur.execute(f'CREATE DATABASE "{name}"')
                    log.info("created PostgreSQL database %s", name)
    finally:
        conn.close()


def purge_postgres(settings: Settings) -> None:
    """Remove the cluster's data (`make distclean`, tests); PostgreSQL must be stopped."""
    shutil.rmtree(pg_data_dir(settings), ignore_errors=True)


# -- Redis and S3 ---------------------------------------------------------------------------


def redis_conf(settings: Settings) -> Path:
    """Redis' config (0600: it holds the password): loopback, a password, an append-only
    file so queued task messages outlive a restart."""
    folder = cluster_dir(settings) / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(
        [
            "# Written by AI Mass (aimass.stack.cluster); changes are overwritten.",
            f"bind {settings.host}",
            f"port {Ports.from_env().redis}",
            "protected-mode yes",
            f"requirepass {secrets(settings)['redis_password']}",
            f"dir {folder}",
            "appendonly yes",
            'save ""',
            "",
        ]
    )
    path = cluster_dir(settings) / "redis.conf"
    write_private(path, text)
    return path


def redis_ready(settings: Settings) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(broker_url(settings), socket_timeout=3).ping())
    except redis.RedisError:
        return False


def s3_client(settings: Settings):  # type: ignore[no-untyped-def]
    """A boto3 S3 client of the profile's store, with its key."""
    import boto3

    env = s3_env(settings)
    return boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def create_bucket(settings: Settings) -> None:
    s3 = s3_client(settings)
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
        log.info("created S3 bucket %s at %s", BUCKET, s3_endpoint(settings))


def s3_journal(settings: Settings) -> Path:
    return cluster_dir(settings) / "s3" / "journal.jsonl"


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=3).close()
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False
    return True


def _binary(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found is None:
        raise ConfigError(f"`{name}` was not found: {INSTALL_HINT}")
    return found


# -- the services ---------------------------------------------------------------------------


def definitions(
    settings: Settings, embedded: dict[str, Service], base_env: dict[str, str]
) -> dict[str, Service]:
    """The embedded services' definitions, changed and added to for this profile
    (``base_env``: the services' common environment)."""
    ports = Ports.from_env()
    host = settings.host
    env = {**base_env, **ports.env(), "AIMASS_PROFILE": "cluster"}
    defs = dict(embedded)
    defs["postgres"] = Service(
        "postgres",
        postgres_argv(settings),
        env,
        ready=lambda: pg_ready(settings),
        user=pg_user(),
        cwd=pg_data_dir(settings),
        stop_signal=signal.SIGINT,  # fast shutdown: SIGTERM would wait for every client
    )
    defs["redis"] = Service(
        "redis",
        [_binary("redis-server"), str(redis_conf(settings))],
        env,
        ready=lambda: redis_ready(settings),
    )
    journal = s3_journal(settings)
    defs["s3"] = Service(
        "s3",
        [sys.executable, "-m", "aimass.stack.s3store", "--host", host]
        + ["--port", str(ports.s3), "--journal", str(journal)],
        env,
        ready=lambda: ready_marker(journal).exists() and _answers(s3_endpoint(settings)),
    )
    spark_dir = cluster_dir(settings) / "spark"
    spark_env = {
        **env,
        "SPARK_LOCAL_IP": host,
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        "SPARK_WORKER_DIR": str(spark_dir / "work"),
    }
    launcher = spark_class()
    defs["spark-master"] = Service(
        "spark-master",
        [launcher, MASTER_CLASS, "--host", host, "--port", str(ports.spark_master)]
        + ["--webui-port", str(ports.spark_webui)],
        spark_env,
        ready_url=f"http://{host}:{ports.spark_webui}/json/",
    )
    for index, name in enumerate(SPARK[1:], start=1):
        defs[name] = Service(
            name,
            [launcher, WORKER_CLASS, "--host", host, "--port", "0"]
            + ["--webui-port", str(ports.spark_webui + index)]
            + ["--cores", "1", "--memory", "1g", "--work-dir", str(spark_dir / name)]
            + [spark_master_url(settings)],
            spark_env,
            ready_url=f"http://{host}:{ports.spark_webui + index}/json/",
        )
    mlflow = embedded["mlflow"]
    argv = _drop_flags(mlflow.argv, ("--backend-store-uri", "--artifacts-destination"))
    mlflow_env = {
        **mlflow.env,
        **ports.env(),
        **s3_env(settings),
        **mlflow_auth.server_env(settings, database_uri=db_uri(settings, "mlflow_auth")),
        # By environment: the database password stays out of the process list.
        "MLFLOW_BACKEND_STORE_URI": db_uri(settings, "mlflow"),
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/artifacts",
    }
    defs["mlflow"] = replace(mlflow, argv=argv, env=mlflow_env)
    airflow = embedded["airflow-scheduler"]
    for index, name in enumerate(CELERY_WORKERS, start=1):
        defs[name] = Service(
            name,
            [airflow.argv[0], "celery", "worker", "--skip-serve-logs"]
            + ["--celery-hostname", f"worker-{index}@{host}"]
            + ["--concurrency", str(WORKER_CONCURRENCY), "--without-gossip"],
            airflow.env,
        )
    # The supervisor builds the definitions again when it restarts a service: it must see
    # the environment `make up` saw, not the settings' defaults (with its own
    # AIMASS_MLFLOW_TRACKING_URI, restarted Celery workers would record to a local SQLite).
    supervisor_env = {**env}
    if "AIMASS_MLFLOW_TRACKING_URI" not in os.environ:
        supervisor_env.pop("AIMASS_MLFLOW_TRACKING_URI", None)
    defs[SUPERVISOR] = Service(
        SUPERVISOR, [sys.executable, "-m", "aimass.stack.supervisor"], supervisor_env
    )
    return defs


def _drop_flags(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in flags:
            skip = True
        else:
            out.append(arg)
    return out
