"""The pods and Service of a training run on Kubernetes: their manifests, and reading their state.

One pod per TensorFlow worker and a headless Service. Rendering is pure (plain dicts, no client):
the unit tests check it, and ``aimass.training.kubernetes`` sends what it renders. Every worker's
``TF_CONFIG`` lists the workers by their stable DNS names
``<job>-worker-<i>.<job>.<namespace>.svc:<port>``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.training.run import (
    ENTRY_MODULE,
    tf_config,
)

TF_PORT = 2222  # the port TensorFlow's own Kubernetes examples use for gRPC between workers
CONTAINER_NAME = "worker"
VOLUME_NAME = "aimass-var"
APP_LABEL = "app.kubernetes.io/name"
APP_NAME = "aimass"
JOB_LABEL = "aimass/job"
INDEX_LABEL = "aimass/worker-index"
# Pod hostnames are DNS-1123 labels (63 characters): "<job>-worker-<index>" must fit for up to
# 1000 workers, and the job (the Service name, a DNS-1035 label) must start with a letter.
DNS_LABEL_MAX = 63
WORKER_INFIX = "-worker-"
JOB_NAME_MAX = DNS_LABEL_MAX - len(WORKER_INFIX) - 3
_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Container states after which a pending pod will not start without someone fixing the spec.
FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImageNeverPull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
DELETE_GRACE_S = 5
POLL_S = 2.0
START_TIMEOUT_S = 900.0  # image pull and scheduling; a bigger cluster may need to scale up first
LEFTOVER_TIMEOUT_S = 120.0
LIST_ATTEMPTS = 5  # consecutive failed status checks (API server hiccups) before giving up


def job_name(run_id: str, max_len: int = JOB_NAME_MAX) -> str:
    """A job name for ``run_id`` that is a valid DNS-1035 label of at most ``max_len`` characters.

    Lowercase letters, digits and ``-``, starting with a letter. An id that had to be changed
    (or shortened) gets an 8-character hash of the original, so two ids that sanitize alike
    (``run_1`` and ``run.1``) still name different jobs.
    """
    if max_len < 16:
        raise ConfigError(f"max_len={max_len}; use at least 16 characters for a job name")
    name = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")
    if not name[:1].isalpha():
        name = f"aimass-{name}".rstrip("-")
    if name == run_id and len(name) <= max_len:
        return name
    digest = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:8]
    return f"{name[: max_len - len(digest) - 1].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class K8sTrainJob:
    """Everything the manifests of one training run are rendered from.

    ``args`` are the worker's arguments after ``python -m models.tabular.train``; ``env`` is
    added to every pod (``TF_CONFIG`` is set per pod on top of it).
    """

    name: str
    namespace: str
    image: str
    workers: int
    args: tuple[str, ...]
    pvc: str
    mount_path: str
    cpu: str = "2"
    memory: str = "4Gi"
    gpus: int = 0
    service_account: str = ""
    image_pull_policy: str = "IfNotPresent"
    port: int = TF_PORT
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _JOB_NAME.match(self.name) or len(self.name) > JOB_NAME_MAX:
            raise ConfigError(
                f"job name {self.name!r} is not a DNS-1035 label of at most {JOB_NAME_MAX} "
                "characters; make one with job_name(run_id)"
            )
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers}; use 1 or more worker pods")
        if len(self.pod_name(self.workers - 1)) > DNS_LABEL_MAX:
            raise ConfigError(
                f"workers={self.workers} makes pod names longer than {DNS_LABEL_MAX} characters; "
                "use fewer workers or a shorter job name"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"port={self.port} is out of range; use 1..65535")
        if not self.mount_path.startswith("/"):
            raise ConfigError(f"mount_path={self.mount_path!r}; use an absolute path")

    @property
    def service_name(self) -> str:
        return self.name

    def pod_name(self, index: int) -> str:
        return f"{self.name}{WORKER_INFIX}{index}"

    @property
    def pod_names(self) -> list[str]:
        return [self.pod_name(i) for i in range(self.workers)]

    @property
    def hosts(self) -> list[str]:
        """Every worker's ``host:port`` as the others reach it: ``<pod>.<service>.<namespace>.svc``."""
        return [
            f"{pod}.{self.service_name}.{self.namespace}.svc:{self.port}" for pod in self.pod_names
        ]

    @property
    def selector(self) -> dict[str, str]:
        """The labels every object of this job carries (and the Service selects pods by)."""
        return {APP_LABEL: APP_NAME, JOB_LABEL: self.name}

    @property
    def label_selector(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.selector.items())


def render_service(job: K8sTrainJob) -> dict[str, Any]:
    """The headless Service that gives each worker pod its DNS name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": job.service_name, "namespace": job.namespace, "labels": job.selector},
        "spec": {
            "clusterIP": "None",
            "selector": job.selector,
            # Workers look each other up while starting, before any of them is ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "tf", "port": job.port, "targetPort": job.port, "protocol": "TCP"}],
        },
    }


def render_worker_pods(job: K8sTrainJob) -> list[dict[str, Any]]:
    """One pod manifest per worker, in index order (worker 0 is the chief)."""
    hosts = job.hosts
    limits: dict[str, str] = {"cpu": job.cpu, "memory": job.memory}
    if job.gpus:
        limits["nvidia.com/gpu"] = str(job.gpus)
    pods = []
    for index, pod in enumerate(job.pod_names):
        env = {
            **job.env,
            "TF_USE_LEGACY_KERAS": "1",
            "PYTHONUNBUFFERED": "1",
            "TF_CONFIG": tf_config(hosts, index),
        }
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        spec: dict[str, Any] = {
            "hostname": pod,
            "subdomain": job.service_name,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": CONTAINER_NAME,
                    "image": job.image,
                    "imagePullPolicy": job.image_pull_policy,
                    "command": ["python", "-m", ENTRY_MODULE],
                    "args": list(job.args),
                    "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                    "ports": [{"name": "tf", "containerPort": job.port, "protocol": "TCP"}],
                    "resources": {
                        "requests": {"cpu": job.cpu, "memory": job.memory},
                        "limits": limits,
                    },
                    "volumeMounts": [{"name": VOLUME_NAME, "mountPath": job.mount_path}],
                }
            ],
            "volumes": [{"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": job.pvc}}],
        }
        if job.service_account:
            spec["serviceAccountName"] = job.service_account
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod,
                    "namespace": job.namespace,
                    "labels": {**job.selector, INDEX_LABEL: str(index)},
                },
                "spec": spec,
            }
        )
    return pods


def pod_env(settings: Settings) -> dict[str, str]:
    """The ``AIMASS_*`` settings the worker pods get: this process's, less its install root.

    The image sets its own ``AIMASS_ROOT``; ``AIMASS_VAR_DIR`` is where the claim is mounted.
    """
    env = settings.env()
    env.pop("AIMASS_ROOT", None)
    return env


def attr(obj: Any, *path: str) -> Any:
    """``obj.a.b.c`` for ``path`` ("a", "b", "c"), or None where a step is missing."""
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def worker_state(pod: Any) -> Any:
    for status in attr(pod, "status", "container_statuses") or []:
        if getattr(status, "name", None) == CONTAINER_NAME:
            return status.state
    return None


def iter_lines(response: Any) -> Iterator[str]:
    """The lines of a streamed HTTP response (``urllib3`` style ``stream()``), decoded as UTF-8."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", errors="replace").rstrip("\r")
    if buffer:
        yield buffer.decode("utf-8", errors="replace").rstrip("\r")


def status_code(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None
