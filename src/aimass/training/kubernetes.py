"""Training launcher on Kubernetes: one pod per TensorFlow worker plus a headless Service.

The same contract as the local launcher (``aimass.training.launcher.train``), with pods in place of
processes: every worker runs ``python -m models.tabular.train`` with the same arguments and its
own ``TF_CONFIG``, whose cluster lists every worker by its stable DNS name
``<job>-worker-<i>.<job>.<namespace>.svc:<port>`` (each pod sets ``hostname`` and ``subdomain``,
the headless Service ``<job>`` publishes the records, also before the pods are ready). Worker 0
is the chief and writes ``<run_dir>/export/`` and ``<run_dir>/metrics.json``.

The workers read the clean partition and write the run dir through a ReadWriteMany
PersistentVolumeClaim mounted at the var dir (``Settings.var_dir``), where this process must see
the same files: the launcher writes ``<run_dir>/spec.yaml`` before the pods start and reads
``metrics.json`` after they succeed.

Rendering is pure (``render_service``, ``render_worker_pods`` return plain manifests) and is what
the unit tests check. ``K8sLauncher`` runs a rendered job through the official ``kubernetes``
client (or any object with the same ``CoreV1Api`` methods): it streams each pod's log into this
module's logger prefixed ``[worker i]``, raises ``StageError`` naming the first failed pod with
its exit code and last log lines, and deletes its pods and Service whatever happens (success,
failure, timeout, KeyboardInterrupt, SIGTERM). ``kubernetes`` is imported only when a launcher
talks to a cluster, so DAG parsing stays cheap.
"""

from __future__ import annotations

import collections
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError, StageError
from aimass.platform.settings import Settings
from aimass.training.pods import (
    CONTAINER_NAME,
    DELETE_GRACE_S,
    FATAL_WAITING_REASONS,
    LEFTOVER_TIMEOUT_S,
    LIST_ATTEMPTS,
    POLL_S,
    START_TIMEOUT_S,
    K8sTrainJob,
    attr,
    iter_lines,
    job_name,
    pod_env,
    render_service,
    render_worker_pods,
    status_code,
    worker_state,
)
from aimass.training.run import (
    LOG_TAIL_LINES,
    TrainResult,
    prepare_run,
    read_result,
)

logger = logging.getLogger(__name__)


@contextmanager
def _sigterm_runs(stop: Callable[[], None]) -> Iterator[None]:
    """While active, SIGTERM calls ``stop``, then acts as before (or raises StageError)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        stop()
        if callable(previous):
            previous(signum, frame)
        raise StageError("training was stopped by SIGTERM; its worker pods were deleted")

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_api() -> Any:
    """A ``CoreV1Api`` for this pod's service account, or else the current kubeconfig context."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise ConfigError(
                "AIMASS_TRAIN_LAUNCHER=kubernetes but no cluster is configured: run inside a pod "
                f"with a service account, or set KUBECONFIG / ~/.kube/config ({exc})"
            ) from exc
    return client.CoreV1Api()


class K8sLauncher:
    """Runs a ``K8sTrainJob``: Service and pods in, logs out, pods and Service always deleted.

    Args:
        api: a ``kubernetes.client.CoreV1Api`` (or an object with the same methods); None
            builds one with ``default_api()`` on first use.
        poll_s: seconds between status checks.
        start_timeout_s: fail when a pod is still Pending after this long (scheduling, image pull).
        leftover_timeout_s: how long to wait for pods of an earlier attempt to go away.
    """

    def __init__(
        self,
        api: Any | None = None,
        *,
        poll_s: float = POLL_S,
        start_timeout_s: float = START_TIMEOUT_S,
        leftover_timeout_s: float = LEFTOVER_TIMEOUT_S,
    ) -> None:
        self._api = api
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s
        self.leftover_timeout_s = leftover_timeout_s

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = default_api()
        return self._api

    def run(self, job: K8sTrainJob, *, timeout_s: float | None = None) -> None:
        """Create the Service and worker pods, stream their logs and wait for all to succeed.

        Raises:
            StageError: a pod failed (its name, exit code and last log lines), could not start,
                vanished, or ``timeout_s`` passed; or the API refused a request.
        """
        self._remove_leftovers(job)
        tails = [collections.deque[str](maxlen=LOG_TAIL_LINES) for _ in range(job.workers)]
        pumps: dict[int, threading.Thread] = {}
        deleted = threading.Event()

        def cleanup() -> None:
            if not deleted.is_set():
                deleted.set()
                self.delete(job)

        with ExitStack() as stack:
            stack.callback(cleanup)  # every way out, KeyboardInterrupt included
            stack.enter_context(_sigterm_runs(cleanup))
            self._create(job)
            started = time.monotonic()
            deadline = None if timeout_s is None else started + timeout_s
            reported_pending: set[str] = set()
            list_failures = 0
            while True:
                try:
                    pods = self._pods(job)
                except StageError:  # from the SIGTERM handler, not the API
                    raise
                except Exception as exc:
                    list_failures += 1
                    if list_failures >= LIST_ATTEMPTS:
                        raise StageError(
                            f"could not read the status of the training pods of {job.name} in "
                            f"namespace {job.namespace} ({list_failures} tries): {exc}. Check "
                            "the API server is reachable and this service account may list pods."
                        ) from exc
                    logger.warning("could not list the pods of %s (will retry): %s", job.name, exc)
                    time.sleep(self.poll_s)
                    continue
                list_failures = 0
                phases: dict[int, str] = {}
                for index, name in enumerate(job.pod_names):
                    pod = pods.get(name)
                    if pod is None:
                        raise StageError(
                            f"training pod {name} in namespace {job.namespace} disappeared "
                            "(deleted or evicted); the other workers were deleted. Rerun the task."
                        )
                    phase = str(attr(pod, "status", "phase") or "Pending")
                    phases[index] = phase
                    if phase in ("Running", "Succeeded", "Failed") and index not in pumps:
                        pumps[index] = self._start_pump(job, index, tails[index])
                    if phase == "Pending":
                        self._check_pending(job, name, pod, started, reported_pending)
                for index, phase in phases.items():
                    if phase == "Failed":
                        self._raise_failed(job, index, pods[job.pod_name(index)], pumps, tails)
                if all(phase == "Succeeded" for phase in phases.values()):
                    for pump in pumps.values():
                        pump.join(timeout=5)
                    return
                if deadline is not None and time.monotonic() > deadline:
                    raise StageError(
                        f"training did not finish within timeout_s={timeout_s} s; its "
                        f"{job.workers} pod(s) were deleted. Raise timeout_s, or lower epochs "
                        "or the data size."
                    )
                time.sleep(self.poll_s)

    def delete(self, job: K8sTrainJob) -> None:
        """Delete the job's pods and Service; ones already gone are fine, other errors are logged."""
        calls: list[tuple[str, Callable[..., Any]]] = [
            (f"pod/{name}", self._delete_pod(name, job.namespace)) for name in job.pod_names
        ]
        calls.append(
            (
                f"service/{job.service_name}",
                lambda: self.api.delete_namespaced_service(
                    name=job.service_name, namespace=job.namespace
                ),
            )
        )
        failed = []
        for what, call in calls:
            try:
                call()
            except Exception as exc:
                if status_code(exc) == 404:
                    continue
                failed.append(what)
                logger.error("could not delete %s in namespace %s: %s", what, job.namespace, exc)
        if failed:
            logger.error(
                "left behind in namespace %s: %s; delete them with: kubectl -n %s delete %s "
                "(the next attempt of this run also deletes them before it starts)",
                job.namespace,
                ", ".join(failed),
                job.namespace,
                " ".join(failed),
            )
        else:
            logger.info("deleted the %d pod(s) and the service of %s", job.workers, job.name)

    def _delete_pod(self, name: str, namespace: str) -> Callable[[], Any]:
        return lambda: self.api.delete_namespaced_pod(
            name=name, namespace=namespace, grace_period_seconds=DELETE_GRACE_S
        )

    def _create(self, job: K8sTrainJob) -> None:
        try:
            self.api.create_namespaced_service(namespace=job.namespace, body=render_service(job))
            for pod in render_worker_pods(job):
                self.api.create_namespaced_pod(namespace=job.namespace, body=pod)
                logger.info(
                    "created pod %s (image %s) in namespace %s",
                    pod["metadata"]["name"],
                    job.image,
                    job.namespace,
                )
        except Exception as exc:
            if status_code(exc) is None:
                raise
            raise StageError(
                f"the Kubernetes API refused to create the training job {job.name} in namespace "
                f"{job.namespace} (HTTP {status_code(exc)}): {exc}. Check the namespace exists and "
                "that this service account may create pods and services there."
            ) from exc

    def _pods(self, job: K8sTrainJob) -> dict[str, Any]:
        found = self.api.list_namespaced_pod(
            namespace=job.namespace, label_selector=job.label_selector
        )
        return {pod.metadata.name: pod for pod in found.items}

    def _remove_leftovers(self, job: K8sTrainJob) -> None:
        """Delete what an earlier attempt of the same run left (a killed launcher) and wait for it."""
        if not self._pods(job):
            try:  # a Service alone would make creating this one fail
                self.api.delete_namespaced_service(name=job.service_name, namespace=job.namespace)
            except Exception as exc:
                if status_code(exc) != 404:
                    raise StageError(
                        f"could not delete service {job.service_name} left by an earlier attempt "
                        f"in namespace {job.namespace}: {exc}. Check this service account may "
                        "delete services there."
                    ) from exc
            return
        logger.warning("deleting pods left by an earlier attempt of %s", job.name)
        self.delete(job)
        deadline = time.monotonic() + self.leftover_timeout_s
        while self._pods(job):
            if time.monotonic() > deadline:
                raise StageError(
                    f"pods of an earlier attempt of {job.name} in namespace {job.namespace} are "
                    f"still there after {self.leftover_timeout_s:.0f} s; delete them with "
                    f"kubectl -n {job.namespace} delete pod -l {job.label_selector} and rerun"
                )
            time.sleep(self.poll_s)

    def _start_pump(
        self, job: K8sTrainJob, index: int, tail: collections.deque[str]
    ) -> threading.Thread:
        pump = threading.Thread(
            target=self._pump,
            args=(job, index, tail),
            name=f"log-{job.pod_name(index)}",
            daemon=True,
        )
        pump.start()
        return pump

    def _pump(self, job: K8sTrainJob, index: int, tail: collections.deque[str]) -> None:
        name = job.pod_name(index)
        try:
            response = self.api.read_namespaced_pod_log(
                name=name,
                namespace=job.namespace,
                container=CONTAINER_NAME,
                follow=True,
                _preload_content=False,
            )
            try:
                for line in iter_lines(response):
                    tail.append(line)
                    logger.info("[worker %d] %s", index, line)
            finally:
                response.release_conn()
        except Exception as exc:  # the pod's outcome is judged from its status, not its log
            logger.warning("[worker %d] log stream of pod %s ended: %s", index, name, exc)

    def _check_pending(
        self, job: K8sTrainJob, name: str, pod: Any, started: float, reported: set[str]
    ) -> None:
        waiting = attr(worker_state(pod), "waiting")
        reason = str(attr(waiting, "reason") or "")
        if reason in FATAL_WAITING_REASONS:
            raise StageError(
                f"training pod {name} cannot start: {reason}: {attr(waiting, 'message') or ''}. "
                f"Check AIMASS_K8S_IMAGE={job.image!r} (and the registry's pull secret) and the "
                "pod spec; the job's pods were deleted."
            )
        unscheduled = [
            c
            for c in attr(pod, "status", "conditions") or []
            if c.type == "PodScheduled" and c.status == "False"
        ]
        if unscheduled and name not in reported:
            reported.add(name)
            logger.warning("pod %s is not scheduled yet: %s", name, unscheduled[0].message)
        if time.monotonic() - started > self.start_timeout_s:
            why = unscheduled[0].message if unscheduled else reason or "still Pending"
            raise StageError(
                f"training pod {name} did not start within {self.start_timeout_s:.0f} s ({why}); "
                f"check the cluster has room for {job.cpu} CPU, {job.memory} memory"
                f"{f' and {job.gpus} GPU(s)' if job.gpus else ''} per worker and that claim "
                f"{job.pvc} is bound"
            )

    def _raise_failed(
        self,
        job: K8sTrainJob,
        index: int,
        pod: Any,
        pumps: Mapping[int, threading.Thread],
        tails: Sequence[collections.deque[str]],
    ) -> None:
        name = job.pod_name(index)
        terminated = attr(worker_state(pod), "terminated")
        code = attr(terminated, "exit_code")
        reason = attr(terminated, "reason") or attr(pod, "status", "reason") or ""
        if index in pumps:
            pumps[index].join(timeout=5)  # the stream ends with the container
        lines = list(tails[index]) or self._log_tail(job, name)
        last = "\n".join(lines) or "(no output)"
        message = attr(pod, "status", "message")
        raise StageError(
            f"training pod {name} (worker {index}) in namespace {job.namespace} failed with exit "
            f"code {code if code is not None else 'unknown'}"
            f"{f' ({reason})' if reason else ''}{f': {message}' if message else ''}; "
            "the other workers were deleted.\n"
            f"Last {len(lines)} lines of worker {index}:\n{last}\n"
            "Fix the error above (full worker logs are in this log, prefixed [worker i]) and rerun."
        )

    def _log_tail(self, job: K8sTrainJob, name: str) -> list[str]:
        try:
            text = self.api.read_namespaced_pod_log(
                name=name,
                namespace=job.namespace,
                container=CONTAINER_NAME,
                tail_lines=LOG_TAIL_LINES,
            )
        except StageError:
            raise
        except Exception as exc:
            logger.warning("could not read the log of pod %s: %s", name, exc)
            return []
        return str(text or "").splitlines()[-LOG_TAIL_LINES:]


def train_on_kubernetes(
    settings: Settings,
    spec: DatasetSpec | str | Path,
    *,
    data: Path,
    run_dir: Path,
    workers: int = 1,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    timeout_s: float | None = None,
    mixed_precision: bool = False,
    name: str | None = None,
    launcher: K8sLauncher | None = None,
) -> TrainResult:
    """Train like ``aimass.training.launcher.train``, with one pod per worker on the configured cluster.

    Args:
        settings: ``k8s_*`` fields give the image, namespace, claim and resources; the claim
            is mounted at ``settings.var_dir``, which must hold ``data`` and ``run_dir``.
        spec, data, run_dir, workers, epochs, batch_size, learning_rate, timeout_s,
            mixed_precision: as in ``aimass.training.launcher.train`` (set ``AIMASS_K8S_GPUS`` to
            give each pod a GPU).
        name: the job name (default: made from ``run_dir``'s dataset and run folders).
        launcher: the ``K8sLauncher`` to run with (default: one on the configured cluster).

    Returns:
        A ``TrainResult`` read from the chief's ``metrics.json``.

    Raises:
        ConfigError: a bad argument, or a path outside the mounted var dir.
        StageError: a pod failed, could not start, or the run timed out.
    """
    if not settings.k8s_image or not settings.k8s_pvc:
        raise ConfigError(
            "training on Kubernetes needs AIMASS_K8S_IMAGE and AIMASS_K8S_PVC; "
            "set them with AIMASS_TRAIN_LAUNCHER=kubernetes"
        )
    mount = Path(settings.var_dir).resolve()
    for what, path in (
        ("training data", Path(data).resolve()),
        ("run dir", Path(run_dir).resolve()),
    ):
        if not path.is_relative_to(mount):
            raise ConfigError(
                f"{what} {path} is outside the var dir {mount}, the only folder the worker pods "
                f"see (claim {settings.k8s_pvc} mounted there); keep the lake and runs under "
                "AIMASS_VAR_DIR"
            )
    request = prepare_run(
        spec,
        data=Path(data).resolve(),
        run_dir=Path(run_dir).resolve(),
        workers=workers,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        timeout_s=timeout_s,
        mixed_precision=mixed_precision,
    )
    data, run_dir = request.data, request.run_dir

    job = K8sTrainJob(
        name=name or job_name(f"{run_dir.parent.name}-{run_dir.name}"),
        namespace=settings.k8s_namespace,
        image=settings.k8s_image,
        workers=workers,
        args=tuple(request.worker_args),
        pvc=settings.k8s_pvc,
        mount_path=str(mount),
        cpu=settings.k8s_cpu,
        memory=settings.k8s_memory,
        gpus=settings.k8s_gpus,
        service_account=settings.k8s_service_account,
        image_pull_policy=settings.k8s_image_pull_policy,
        env=pod_env(settings),
    )
    logger.info(
        "training %s on %s with %d pod(s) of %s in namespace %s: %s -> %s",
        request.spec.name,
        data,
        workers,
        job.image,
        job.namespace,
        job.hosts,
        run_dir,
    )
    started = time.monotonic()
    (launcher or K8sLauncher()).run(job, timeout_s=timeout_s)
    logger.info("training finished in %.1f s", time.monotonic() - started)

    return read_result(
        request,
        workers,
        missing_hint=f"see the [worker 0] log, and check claim {settings.k8s_pvc} is the one "
        f"mounted at {mount} here",
    )
