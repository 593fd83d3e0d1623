"""Kubernetes training launcher without a cluster: rendered manifests, settings, and the run path
against an in-memory CoreV1Api stand-in (creation order, log streaming, failures, cleanup)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from testkit import TAXI_SPEC

from aimass.platform.errors import ConfigError, StageError
from aimass.platform.settings import Settings
from aimass.training import kubernetes as k8s_launcher
from aimass.training import launcher as launchers
from aimass.training import local, run
from aimass.training.kubernetes import K8sLauncher, train_on_kubernetes
from aimass.training.pods import (
    JOB_NAME_MAX,
    K8sTrainJob,
    job_name,
    pod_env,
    render_service,
    render_worker_pods,
)
from aimass.training.run import LOG_TAIL_LINES

pytestmark = pytest.mark.unit

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ARGS = (
    "--spec=/var/aimass/runs/t/r/spec.yaml",
    "--data=/var/aimass/lake/clean/t/ds=1",
    "--epochs=2",
)


def make_job(workers: int = 3, **overrides: Any) -> K8sTrainJob:
    values: dict[str, Any] = {
        "name": "taxi-run",
        "namespace": "ml",
        "image": "registry.example.com/aimass:1.0",
        "workers": workers,
        "args": ARGS,
        "pvc": "aimass-var",
        "mount_path": "/var/aimass",
        "cpu": "3",
        "memory": "6Gi",
        "env": {"AIMASS_VAR_DIR": "/var/aimass"},
        **overrides,
    }
    return K8sTrainJob(**values)


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["spec"]["containers"]
    return only


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(pod)["env"]}


# --- rendering ------------------------------------------------------------------------------


def test_three_workers_share_one_cluster_of_dns_names_and_each_has_its_index() -> None:
    pods = render_worker_pods(make_job(3))
    expected = [f"taxi-run-worker-{i}.taxi-run.ml.svc:2222" for i in range(3)]
    assert [p["metadata"]["name"] for p in pods] == [f"taxi-run-worker-{i}" for i in range(3)]
    for index, pod in enumerate(pods):
        config = json.loads(env_of(pod)["TF_CONFIG"])
        assert config == {
            "cluster": {"worker": expected},
            "task": {"type": "worker", "index": index},
        }
        # <hostname>.<subdomain>.<namespace>.svc is the pod's DNS record under the headless service.
        assert pod["spec"]["hostname"] == f"taxi-run-worker-{index}"
        assert pod["spec"]["subdomain"] == "taxi-run"
        assert expected[index].startswith(
            f"{pod['spec']['hostname']}.{pod['spec']['subdomain']}.{pod['metadata']['namespace']}.svc:"
        )


def test_one_worker_is_a_cluster_of_one_chief() -> None:
    (pod,) = render_worker_pods(make_job(1))
    assert json.loads(env_of(pod)["TF_CONFIG"]) == {
        "cluster": {"worker": ["taxi-run-worker-0.taxi-run.ml.svc:2222"]},
        "task": {"type": "worker", "index": 0},
    }


def test_headless_service_selects_exactly_the_job_pods() -> None:
    job = make_job(2)
    service = render_service(job)
    assert service["apiVersion"] == "v1" and service["kind"] == "Service"
    assert service["metadata"] == {
        "name": "taxi-run",
        "namespace": "ml",
        "labels": {"app.kubernetes.io/name": "aimass", "aimass/job": "taxi-run"},
    }
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [
        {"name": "tf", "port": 2222, "targetPort": 2222, "protocol": "TCP"}
    ]
    for pod in render_worker_pods(job):
        labels = pod["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
    other = render_service(make_job(2, name="other-run"))
    assert other["spec"]["selector"]["aimass/job"] == "other-run"


def test_pod_runs_the_worker_module_with_the_launcher_args_and_env() -> None:
    pods = render_worker_pods(make_job(2))
    for index, pod in enumerate(pods):
        assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
        assert pod["metadata"]["namespace"] == "ml"
        assert pod["metadata"]["labels"] == {
            "app.kubernetes.io/name": "aimass",
            "aimass/job": "taxi-run",
            "aimass/worker-index": str(index),
        }
        assert "ownerReferences" not in pod["metadata"]
        assert pod["spec"]["restartPolicy"] == "Never"
        c = container(pod)
        assert c["image"] == "registry.example.com/aimass:1.0"
        assert c["imagePullPolicy"] == "IfNotPresent"
        assert c["command"] == ["python", "-m", "models.tabular.train"]
        assert c["args"] == list(ARGS)
        assert c["ports"] == [{"name": "tf", "containerPort": 2222, "protocol": "TCP"}]
        env = env_of(pod)
        assert env["TF_USE_LEGACY_KERAS"] == "1"
        assert env["AIMASS_VAR_DIR"] == "/var/aimass"
        assert env["PYTHONUNBUFFERED"] == "1"
        assert run.PARENT_PID_ENV not in env  # a pid means nothing across pods
        assert "serviceAccountName" not in pod["spec"]


def test_pvc_is_mounted_where_the_var_dir_is() -> None:
    (pod,) = render_worker_pods(make_job(1, pvc="shared-lake", mount_path="/data/aimass"))
    assert pod["spec"]["volumes"] == [
        {"name": "aimass-var", "persistentVolumeClaim": {"claimName": "shared-lake"}}
    ]
    assert container(pod)["volumeMounts"] == [{"name": "aimass-var", "mountPath": "/data/aimass"}]


def test_resources_without_and_with_gpus() -> None:
    (cpu_pod,) = render_worker_pods(make_job(1))
    assert container(cpu_pod)["resources"] == {
        "requests": {"cpu": "3", "memory": "6Gi"},
        "limits": {"cpu": "3", "memory": "6Gi"},
    }
    (gpu_pod,) = render_worker_pods(make_job(1, gpus=2))
    assert container(gpu_pod)["resources"] == {
        "requests": {"cpu": "3", "memory": "6Gi"},
        "limits": {"cpu": "3", "memory": "6Gi", "nvidia.com/gpu": "2"},
    }


def test_service_account_and_pull_policy_come_from_the_job() -> None:
    (pod,) = render_worker_pods(
        make_job(1, service_account="aimass-trainer", image_pull_policy="Always")
    )
    assert pod["spec"]["serviceAccountName"] == "aimass-trainer"
    assert container(pod)["imagePullPolicy"] == "Always"


def test_manifests_are_valid_for_the_official_client_models() -> None:
    """The kubernetes client's models forbid unknown fields: a typo in a key fails here."""
    from kubernetes import client

    api_client = client.ApiClient()
    job = make_job(2, gpus=1, service_account="trainer")
    for pod in render_worker_pods(job):
        model = client.V1Pod.model_validate(pod)
        assert api_client.sanitize_for_serialization(model) == pod
    service = render_service(job)
    assert (
        api_client.sanitize_for_serialization(client.V1Service.model_validate(service)) == service
    )


# --- names ----------------------------------------------------------------------------------


def test_clean_run_id_is_kept() -> None:
    assert job_name("taxi-2026-11-01") == "taxi-2026-11-01"


@pytest.mark.parametrize(
    "run_id",
    [
        "chicago_taxi-manual__2026-11-01T02:00:00+00:00",
        "Scheduled__2026-11-01T02:00:00.123456+00:00",
        "2026-11-01",  # starts with a digit
        "--x--",
        "",
        "ÉTÉ/run 1",
        "a" * 300,
        "x" + "-" * 100 + "y",
    ],
)
def test_odd_run_ids_become_valid_dns_labels(run_id: str) -> None:
    name = job_name(run_id)
    assert DNS_LABEL.match(name), name
    assert 1 <= len(name) <= JOB_NAME_MAX
    assert job_name(run_id) == name  # the same run gets the same name (retries find leftovers)
    job = make_job(1000, name=name)  # and every pod name stays a DNS label of <= 63 characters
    assert all(len(p) <= 63 and DNS_LABEL.match(p) for p in job.pod_names)
    assert len(job.pod_name(999)) <= 63


def test_ids_that_sanitize_alike_get_different_names() -> None:
    names = {job_name("run_1"), job_name("run.1"), job_name("RUN-1"), job_name("run-1")}
    assert len(names) == 4
    assert job_name("run-1") == "run-1"
    assert job_name("run_1").startswith("run-1-")


def test_long_id_is_cut_with_a_hash_so_long_ids_stay_distinct() -> None:
    a, b = job_name("x" * 100 + "a"), job_name("x" * 100 + "b")
    assert a != b and len(a) == len(b) == JOB_NAME_MAX


def test_job_refuses_bad_names_and_sizes() -> None:
    with pytest.raises(ConfigError, match="DNS-1035"):
        make_job(1, name="Taxi_Run")
    with pytest.raises(ConfigError, match="DNS-1035"):
        make_job(1, name="1run")
    with pytest.raises(ConfigError, match="workers=0"):
        make_job(0)
    with pytest.raises(ConfigError, match="longer than 63"):
        make_job(1001, name="a" * JOB_NAME_MAX)
    with pytest.raises(ConfigError, match="absolute"):
        make_job(1, mount_path="var/aimass")


# --- settings -------------------------------------------------------------------------------

K8S_ENV = [
    "AIMASS_TRAIN_LAUNCHER",
    "AIMASS_K8S_NAMESPACE",
    "AIMASS_K8S_IMAGE",
    "AIMASS_K8S_SERVICE_ACCOUNT",
    "AIMASS_K8S_PVC",
    "AIMASS_K8S_CPU",
    "AIMASS_K8S_MEMORY",
    "AIMASS_K8S_GPUS",
    "AIMASS_K8S_IMAGE_PULL_POLICY",
]


@pytest.fixture
def k8s_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in K8S_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path / "var"))
    return monkeypatch


def test_local_launcher_is_the_default(k8s_env: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert settings.train_launcher == "local"
    assert settings.k8s_image == "" and settings.k8s_gpus == 0


def test_kubernetes_settings_are_read_from_the_environment(k8s_env: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AIMASS_TRAIN_LAUNCHER": "Kubernetes",
        "AIMASS_K8S_NAMESPACE": "ml-train",
        "AIMASS_K8S_IMAGE": "registry.example.com/aimass:1.0",
        "AIMASS_K8S_SERVICE_ACCOUNT": "aimass-trainer",
        "AIMASS_K8S_PVC": "aimass-var",
        "AIMASS_K8S_CPU": "500m",
        "AIMASS_K8S_MEMORY": "8Gi",
        "AIMASS_K8S_GPUS": "1",
        "AIMASS_K8S_IMAGE_PULL_POLICY": "Always",
    }.items():
        k8s_env.setenv(name, value)
    s = Settings.from_env()
    assert (s.train_launcher, s.k8s_namespace, s.k8s_image) == (
        "kubernetes",
        "ml-train",
        "registry.example.com/aimass:1.0",
    )
    assert (s.k8s_service_account, s.k8s_pvc, s.k8s_cpu, s.k8s_memory, s.k8s_gpus) == (
        "aimass-trainer",
        "aimass-var",
        "500m",
        "8Gi",
        1,
    )
    assert s.k8s_image_pull_policy == "Always"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AIMASS_TRAIN_LAUNCHER": "slurm"}, "AIMASS_TRAIN_LAUNCHER='slurm'"),
        ({"AIMASS_TRAIN_LAUNCHER": "kubernetes", "AIMASS_K8S_PVC": "v"}, "needs AIMASS_K8S_IMAGE"),
        ({"AIMASS_TRAIN_LAUNCHER": "kubernetes", "AIMASS_K8S_IMAGE": "i"}, "needs AIMASS_K8S_PVC"),
        ({"AIMASS_K8S_NAMESPACE": "ML_Team"}, "AIMASS_K8S_NAMESPACE='ML_Team'"),
        ({"AIMASS_K8S_PVC": "My Claim"}, "AIMASS_K8S_PVC='My Claim'"),
        ({"AIMASS_K8S_SERVICE_ACCOUNT": "Trainer!"}, "AIMASS_K8S_SERVICE_ACCOUNT='Trainer!'"),
        ({"AIMASS_K8S_CPU": "two"}, "AIMASS_K8S_CPU='two' is not a Kubernetes quantity"),
        ({"AIMASS_K8S_MEMORY": "4 GB"}, "AIMASS_K8S_MEMORY='4 GB'"),
        ({"AIMASS_K8S_GPUS": "one"}, "AIMASS_K8S_GPUS='one' is not a whole number"),
        ({"AIMASS_K8S_GPUS": "-1"}, "AIMASS_K8S_GPUS=-1"),
        ({"AIMASS_K8S_IMAGE_PULL_POLICY": "always"}, "AIMASS_K8S_IMAGE_PULL_POLICY='always'"),
    ],
)
def test_bad_kubernetes_settings_fail_with_the_variable_named(
    k8s_env: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    complete = {
        "AIMASS_TRAIN_LAUNCHER": "kubernetes",
        "AIMASS_K8S_IMAGE": "registry.example.com/aimass:1.0",
        "AIMASS_K8S_PVC": "aimass-var",
    }
    if "AIMASS_TRAIN_LAUNCHER" in env:
        complete = {}
    for name, value in {**complete, **env}.items():
        k8s_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert message in str(info.value)


def test_kubernetes_fields_are_not_checked_for_the_local_launcher(
    k8s_env: pytest.MonkeyPatch,
) -> None:
    k8s_env.setenv("AIMASS_K8S_CPU", "two")
    assert Settings.from_env().k8s_cpu == "two"


def test_pods_get_the_settings_but_not_this_install_root(tmp_path: Path) -> None:
    settings = Settings(root=Path("/home/dev/aimass"), var_dir=tmp_path / "var")
    env = pod_env(settings)
    assert "AIMASS_ROOT" not in env
    assert env["AIMASS_VAR_DIR"] == str(tmp_path / "var")
    assert env["AIMASS_MLFLOW_TRACKING_URI"] == settings.mlflow_tracking_uri


# --- running against an in-memory API ---------------------------------------------------------


class FakeApiError(Exception):
    """What kubernetes.client.ApiException looks like to the launcher: an HTTP ``status``."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"({status}) {reason}")
        self.status = status


class FakeLogResponse:
    """A streamed log response: ``stream()`` yields raw chunks as urllib3 does."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.released = False

    def stream(self, amt: int | None = None, decode_content: bool | None = None) -> Iterator[bytes]:
        yield from self.chunks

    def release_conn(self) -> None:
        self.released = True


class FakeCoreV1Api:
    """The CoreV1Api calls the launcher makes, over in-memory pods that advance on every list.

    ``exits`` maps a worker index to its container exit code (None: it keeps running). Each
    ``list_namespaced_pod`` moves every pod one step: Pending -> Running -> Succeeded/Failed.
    """

    def __init__(
        self,
        exits: dict[int, int | None],
        logs: dict[int, list[bytes]] | None = None,
        *,
        on_list: Any = None,
        on_success: Any = None,
        waiting_reason: str | None = None,
    ) -> None:
        self.exits = exits
        self.logs = logs or {}
        self.on_list = on_list
        self.on_success = on_success
        self.waiting_reason = waiting_reason
        self.calls: list[tuple[str, str]] = []
        self.pods: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.created_pods: list[dict[str, Any]] = []
        self.responses: list[FakeLogResponse] = []
        self.lists = 0
        self.refuse_pods: int | None = None
        self.fail_follow = False
        self.tail_text = ""

    # create
    def create_namespaced_service(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        self.calls.append(("create_service", name))
        assert body["metadata"]["namespace"] == namespace
        if name in self.services:
            raise FakeApiError(409, "AlreadyExists")
        self.services[name] = body

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        self.calls.append(("create_pod", name))
        assert body["metadata"]["namespace"] == namespace
        if self.refuse_pods is not None:
            raise FakeApiError(self.refuse_pods, "Forbidden")
        if name in self.pods:
            raise FakeApiError(409, "AlreadyExists")
        self.created_pods.append(body)
        self.pods[name] = {"body": body, "phase": "Pending"}

    # read
    def list_namespaced_pod(self, namespace: str, label_selector: str) -> SimpleNamespace:
        self.lists += 1
        if self.on_list is not None:
            self.on_list(self)
        wanted = dict(pair.split("=", 1) for pair in label_selector.split(","))
        items = []
        for name, pod in list(self.pods.items()):
            labels = pod["body"]["metadata"]["labels"]
            if (
                pod["body"]["metadata"]["namespace"] != namespace
                or not wanted.items() <= labels.items()
            ):
                continue
            self._advance(name, pod)
            items.append(self._view(name, pod))
        return SimpleNamespace(items=items)

    def _index(self, name: str) -> int:
        return int(name.rsplit("-", 1)[1])

    def _advance(self, name: str, pod: dict[str, Any]) -> None:
        code = self.exits.get(self._index(name))
        if pod["phase"] == "Pending" and not self.waiting_reason:
            pod["phase"] = "Running"
        elif pod["phase"] == "Running" and code is not None:
            pod["phase"] = "Succeeded" if code == 0 else "Failed"
            if code == 0 and self.on_success is not None:
                self.on_success(self._index(name))

    def _view(self, name: str, pod: dict[str, Any]) -> SimpleNamespace:
        code = self.exits.get(self._index(name))
        terminated = waiting = None
        if pod["phase"] in ("Succeeded", "Failed"):
            terminated = SimpleNamespace(exit_code=code, reason="Error" if code else "Completed")
        elif pod["phase"] == "Pending" and self.waiting_reason:
            waiting = SimpleNamespace(reason=self.waiting_reason, message="back-off pulling image")
        state = SimpleNamespace(terminated=terminated, waiting=waiting, running=None)
        return SimpleNamespace(
            metadata=SimpleNamespace(name=name, labels=pod["body"]["metadata"]["labels"]),
            status=SimpleNamespace(
                phase=pod["phase"],
                container_statuses=[SimpleNamespace(name="worker", state=state)],
                conditions=[],
                reason=None,
                message=None,
            ),
        )

    def read_namespaced_pod_log(
        self,
        name: str,
        namespace: str,
        container: str,
        follow: bool = False,
        _preload_content: bool = True,
        tail_lines: int | None = None,
    ) -> Any:
        assert container == "worker"
        if not follow:
            self.calls.append(("read_log_tail", name))
            return self.tail_text
        self.calls.append(("follow_log", name))
        assert _preload_content is False  # a stream, not one string at the end
        if self.fail_follow:
            raise FakeApiError(400, "container is terminated")
        response = FakeLogResponse(self.logs.get(self._index(name), []))
        self.responses.append(response)
        return response

    # delete
    def delete_namespaced_pod(
        self, name: str, namespace: str, grace_period_seconds: int | None = None
    ) -> None:
        self.calls.append(("delete_pod", name))
        if self.pods.pop(name, None) is None:
            raise FakeApiError(404, "NotFound")

    def delete_namespaced_service(self, name: str, namespace: str) -> None:
        self.calls.append(("delete_service", name))
        if self.services.pop(name, None) is None:
            raise FakeApiError(404, "NotFound")

    def kinds(self, prefix: str) -> list[str]:
        return [name for kind, name in self.calls if kind.startswith(prefix)]


def launcher(api: FakeCoreV1Api, **kwargs: Any) -> K8sLauncher:
    return K8sLauncher(api, poll_s=0, **kwargs)


def test_run_creates_service_then_pods_in_order_streams_logs_and_deletes_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = make_job(3)
    api = FakeCoreV1Api(
        {0: 0, 1: 0, 2: 0},
        logs={
            0: [b"epoch 1/2 loss 0.5\nepo", b"ch 2/2 loss 0.4\n", b"saved export/\n"],
            1: [b"worker 1 ready\n"],
            2: [b"w\xc3\xa9ird bytes \xff end"],  # no final newline, an invalid byte
        },
    )
    with caplog.at_level(logging.INFO, logger="aimass.training.kubernetes"):
        launcher(api).run(job)

    creates = [(k, n) for k, n in api.calls if k.startswith("create")]
    assert creates == [
        ("create_service", "taxi-run"),
        ("create_pod", "taxi-run-worker-0"),
        ("create_pod", "taxi-run-worker-1"),
        ("create_pod", "taxi-run-worker-2"),
    ]
    assert api.created_pods == render_worker_pods(job)
    messages = [r.getMessage() for r in caplog.records]
    assert "[worker 0] epoch 1/2 loss 0.5" in messages
    assert "[worker 0] epoch 2/2 loss 0.4" in messages  # a line split across chunks, joined
    assert "[worker 0] saved export/" in messages
    assert "[worker 1] worker 1 ready" in messages
    assert "[worker 2] w\u00e9ird bytes \ufffd end" in messages
    assert sorted(api.kinds("follow_log")) == job.pod_names
    assert all(r.released for r in api.responses)
    # Everything is deleted at the end, after the last create.
    last_create = max(i for i, (k, _) in enumerate(api.calls) if k.startswith("create"))
    deletes = [(k, n) for k, n in api.calls[last_create:] if k.startswith("delete")]
    assert sorted(deletes) == [("delete_pod", p) for p in job.pod_names] + [
        ("delete_service", "taxi-run")
    ]
    assert api.pods == {} and api.services == {}


def test_failed_worker_raises_with_pod_exit_code_and_log_tail_and_all_are_deleted() -> None:
    job = make_job(3)
    lines = [f"line {i}" for i in range(30)] + ["ValueError: column fare is missing"]
    api = FakeCoreV1Api(
        {0: None, 1: 3, 2: None},  # 0 and 2 would run forever
        logs={1: ["\n".join(lines).encode() + b"\n"]},
    )
    with pytest.raises(StageError) as info:
        launcher(api).run(job)
    message = str(info.value)
    assert (
        "training pod taxi-run-worker-1 (worker 1) in namespace ml failed with exit code 3"
        in message
    )
    assert "ValueError: column fare is missing" in message
    assert f"Last {LOG_TAIL_LINES} lines of worker 1" in message
    assert "line 29" in message and "line 5\n" not in message
    assert api.pods == {} and api.services == {}
    assert sorted(api.kinds("delete_pod")) == job.pod_names


def test_failure_without_streamed_output_reads_the_log_tail() -> None:
    api = FakeCoreV1Api({0: 137})
    api.fail_follow = True
    api.tail_text = "loading data\nKilled\n"
    with pytest.raises(StageError, match="exit code 137") as info:
        launcher(api).run(make_job(1))
    assert "Last 2 lines of worker 0:\nloading data\nKilled" in str(info.value)
    assert ("read_log_tail", "taxi-run-worker-0") in api.calls
    assert api.pods == {}


def test_keyboard_interrupt_still_deletes_pods_and_service() -> None:
    def interrupt(api: FakeCoreV1Api) -> None:
        if api.lists == 3:
            raise KeyboardInterrupt

    api = FakeCoreV1Api({0: None, 1: None}, on_list=interrupt)
    with pytest.raises(KeyboardInterrupt):
        launcher(api).run(make_job(2))
    assert len(api.created_pods) == 2
    assert api.pods == {} and api.services == {}


def test_sigterm_deletes_pods_before_the_previous_handler_runs_and_restores_it() -> None:
    def terminate(api: FakeCoreV1Api) -> None:
        if api.lists == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    api = FakeCoreV1Api({0: None, 1: None}, on_list=terminate)
    seen_by_previous: list[dict[str, Any]] = []

    def previous(signum: int, frame: Any) -> None:  # e.g. Airflow's, which may end the process
        seen_by_previous.append(dict(api.pods))

    original = signal.signal(signal.SIGTERM, previous)
    try:
        with pytest.raises(StageError, match="SIGTERM"):
            launcher(api).run(make_job(2))
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, original)
    assert len(api.created_pods) == 2
    assert seen_by_previous == [{}]  # called once, after the pods were deleted
    assert api.pods == {} and api.services == {}
    assert len(api.kinds("delete_service")) == 2  # a leftover check before, one cleanup after


def test_image_that_cannot_be_pulled_fails_fast_naming_pod_and_image() -> None:
    api = FakeCoreV1Api({0: 0}, waiting_reason="ImagePullBackOff")
    with pytest.raises(StageError) as info:
        launcher(api).run(make_job(1))
    assert "training pod taxi-run-worker-0 cannot start: ImagePullBackOff" in str(info.value)
    assert "registry.example.com/aimass:1.0" in str(info.value)
    assert api.pods == {} and api.services == {}


def test_pending_too_long_fails_with_the_resources_asked_for() -> None:
    api = FakeCoreV1Api({0: 0}, waiting_reason="ContainerCreating")
    with pytest.raises(StageError, match="did not start within 0 s") as info:
        launcher(api, start_timeout_s=0).run(make_job(1, gpus=1))
    assert "3 CPU, 6Gi memory and 1 GPU(s)" in str(info.value)
    assert api.pods == {}


def test_timeout_stops_the_run_and_deletes_everything() -> None:
    api = FakeCoreV1Api({0: None})
    with pytest.raises(StageError, match="did not finish within timeout_s=0.01"):
        launcher(api).run(make_job(1), timeout_s=0.01)
    assert api.pods == {} and api.services == {}


def test_refused_create_is_a_stage_error_and_what_was_created_is_deleted() -> None:
    api = FakeCoreV1Api({0: 0})
    api.refuse_pods = 403
    with pytest.raises(StageError, match=r"refused to create .* \(HTTP 403\)"):
        launcher(api).run(make_job(2))
    assert api.services == {}
    assert ("delete_service", "taxi-run") in api.calls[-3:]


def test_vanished_pod_is_a_stage_error() -> None:
    def evict(api: FakeCoreV1Api) -> None:
        if api.lists == 3:
            api.pods.pop("taxi-run-worker-1")

    api = FakeCoreV1Api({0: None, 1: None}, on_list=evict)
    with pytest.raises(StageError, match="taxi-run-worker-1 in namespace ml disappeared"):
        launcher(api).run(make_job(2))
    assert api.pods == {} and api.services == {}


def test_transient_list_errors_are_retried_then_reported() -> None:
    def flaky(api: FakeCoreV1Api) -> None:
        if api.lists in (3, 4):
            raise FakeApiError(503, "Service Unavailable")

    api = FakeCoreV1Api({0: 0}, on_list=flaky)
    launcher(api).run(make_job(1))  # two failures in a row are ridden out
    assert api.pods == {}

    def down(api: FakeCoreV1Api) -> None:
        if api.lists >= 3:
            raise FakeApiError(503, "Service Unavailable")

    api = FakeCoreV1Api({0: None}, on_list=down)
    with pytest.raises(StageError, match=r"could not read the status .* \(5 tries\)"):
        launcher(api).run(make_job(1))
    assert api.pods == {} and api.services == {}


def test_leftovers_of_an_earlier_attempt_are_deleted_first_and_others_kept() -> None:
    api = FakeCoreV1Api({0: 0})
    stale = render_worker_pods(make_job(1))[0]
    foreign = render_worker_pods(make_job(1, name="other-run"))[0]
    api.pods = {
        stale["metadata"]["name"]: {"body": stale, "phase": "Running"},
        foreign["metadata"]["name"]: {"body": foreign, "phase": "Running"},
    }
    api.services = {"taxi-run": render_service(make_job(1))}
    launcher(api).run(make_job(1))
    first_create = api.calls.index(("create_service", "taxi-run"))
    assert ("delete_pod", "taxi-run-worker-0") in api.calls[:first_create]
    assert ("delete_service", "taxi-run") in api.calls[:first_create]
    assert list(api.pods) == ["other-run-worker-0"]


def test_cleanup_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeCoreV1Api({0: 0})

    def forbidden(name: str, namespace: str) -> None:
        if api.services:  # the check before creating passes (404); the cleanup is refused
            raise FakeApiError(403, "Forbidden")
        raise FakeApiError(404, "NotFound")

    api.delete_namespaced_service = forbidden  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="aimass.training.kubernetes"):
        launcher(api).run(make_job(1))
    assert "could not delete service/taxi-run in namespace ml: (403) Forbidden" in caplog.text
    assert "kubectl -n ml delete service/taxi-run" in caplog.text
    assert api.pods == {}  # the pods went anyway


# --- train_on_kubernetes and the dispatch -----------------------------------------------------


@pytest.fixture
def k8s_settings(tmp_path: Path) -> Settings:
    return Settings(
        root=tmp_path / "repo",
        var_dir=(tmp_path / "var").resolve(),
        train_launcher="kubernetes",
        k8s_namespace="ml",
        k8s_image="registry.example.com/aimass:1.0",
        k8s_pvc="aimass-var",
        k8s_gpus=1,
    )


def test_train_on_kubernetes_writes_the_spec_runs_pods_and_reads_the_chief_metrics(
    k8s_settings: Settings,
) -> None:
    data = k8s_settings.clean_partition("chicago_taxi", "2026-11-01")
    data.mkdir(parents=True)
    run_dir = k8s_settings.runs_dir / "chicago_taxi" / "manual__2026-11-01T02_00_00"
    metrics = {"history": {"loss": [0.6, 0.5]}, "params": {"epochs": 2}, "holdout": {"auc": 0.9}}

    def chief_writes_metrics(index: int) -> None:
        if index == 0:
            (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")

    api = FakeCoreV1Api({0: 0, 1: 0}, on_success=chief_writes_metrics)
    result = train_on_kubernetes(
        k8s_settings,
        TAXI_SPEC,
        data=data,
        run_dir=run_dir,
        workers=2,
        epochs=2,
        launcher=launcher(api),
    )
    assert result.workers == 2
    assert result.history == {"loss": [0.6, 0.5]} and result.holdout == {"auc": 0.9}
    assert result.saved_model_dir == run_dir / "export"
    assert (run_dir / "spec.yaml").read_text(encoding="utf-8").startswith("name: chicago_taxi")

    pod = api.created_pods[0]
    name = pod["metadata"]["name"]
    assert DNS_LABEL.match(name) and name.startswith("chicago-taxi-manual-2026-11-01t02-00-00-")
    assert container(pod)["args"][:4] == [
        f"--spec={run_dir / 'spec.yaml'}",
        f"--data={data}",
        f"--run-dir={run_dir}",
        "--epochs=2",
    ]
    assert container(pod)["volumeMounts"][0]["mountPath"] == str(k8s_settings.var_dir)
    assert container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert env_of(pod)["AIMASS_VAR_DIR"] == str(k8s_settings.var_dir)
    assert api.pods == {}


def test_train_on_kubernetes_refuses_paths_the_pods_cannot_see(
    k8s_settings: Settings, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "ds=1"
    outside.mkdir(parents=True)
    api = FakeCoreV1Api({0: 0})
    with pytest.raises(ConfigError, match="outside the var dir"):
        train_on_kubernetes(
            k8s_settings,
            TAXI_SPEC,
            data=outside,
            run_dir=k8s_settings.runs_dir / "t" / "r",
            launcher=launcher(api),
        )
    assert api.calls == []


def test_train_on_kubernetes_without_chief_metrics_is_a_stage_error(
    k8s_settings: Settings,
) -> None:
    data = k8s_settings.clean_partition("chicago_taxi", "2026-11-01")
    data.mkdir(parents=True)
    with pytest.raises(StageError, match="chief wrote no"):
        train_on_kubernetes(
            k8s_settings,
            TAXI_SPEC,
            data=data,
            run_dir=k8s_settings.runs_dir / "t" / "r",
            launcher=launcher(FakeCoreV1Api({0: 0})),
        )


@pytest.mark.parametrize("launcher_name", ["local", "kubernetes"])
def test_launch_picks_the_configured_launcher(
    monkeypatch: pytest.MonkeyPatch, k8s_settings: Settings, launcher_name: str
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_local(spec: Any, **kwargs: Any) -> str:
        calls.append(("local", kwargs))
        return "local result"

    def fake_k8s(settings: Settings, spec: Any, **kwargs: Any) -> str:
        assert settings.train_launcher == "kubernetes"
        calls.append(("kubernetes", kwargs))
        return "k8s result"

    monkeypatch.setattr(local, "train", fake_local)
    monkeypatch.setattr(k8s_launcher, "train_on_kubernetes", fake_k8s)
    settings = (
        k8s_settings
        if launcher_name == "kubernetes"
        else Settings(root=k8s_settings.root, var_dir=k8s_settings.var_dir)
    )
    result = launchers.launch(
        settings,
        TAXI_SPEC,
        data=Path("d"),
        run_dir=Path("r"),
        workers=3,
        epochs=4,
        mixed_precision=True,
    )
    assert result == ("k8s result" if launcher_name == "kubernetes" else "local result")
    assert calls == [
        (
            launcher_name,
            {
                "data": Path("d"),
                "run_dir": Path("r"),
                "workers": 3,
                "epochs": 4,
                "batch_size": None,
                "learning_rate": None,
                "timeout_s": None,
                "mixed_precision": True,
            },
        )
    ]


def test_default_api_without_any_cluster_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="no cluster is configured"):
        k8s_launcher.default_api()


def test_mixed_precision_reaches_the_worker_command_only_when_asked(tmp_path: Path) -> None:
    def args(**kwargs: Any) -> list[str]:
        request = run.prepare_run(
            TAXI_SPEC,
            data=tmp_path,
            run_dir=tmp_path / "run",
            workers=2,
            epochs=1,
            batch_size=None,
            learning_rate=None,
            timeout_s=None,
            **kwargs,
        )
        return request.worker_args

    assert "--mixed-precision" in args(mixed_precision=True)
    assert "--mixed-precision" not in args()
