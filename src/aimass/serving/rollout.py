"""Put a SavedModel into service safely, and take it out again: rollout and rollback.

The model server and the official TF Serving read the same layout
(``<base>/<model>/<version>/``) and the same ``models.config``; this module only talks to
the server through :class:`aimass.serving.client.ServingClient`, so the rollout is the
same against either.

A rollout (:func:`rollout`):

1. **stages** the SavedModel in a hidden folder beside the versions, with its lineage
   marker and TF Serving warm-up requests (``assets.extra/tf_serving_warmup_requests``)
   built from holdout rows, so the first request after a load is not slow;
2. **infra-validates** the staged copy in a sandbox model server (its own process and
   ports): a SavedModel that fails to load or to answer the warm-up rows is rejected here
   and production never sees it;
3. **publishes** it as the next integer version with one rename (a half-copied SavedModel
   can load and then fail on requests, so the server never sees a partial folder);
4. **loads** it beside ``stable`` (labels unchanged), then labels it ``canary`` (a label
   may only point at a loaded version) and runs the **canary analysis**: the same holdout
   rows to ``canary`` and ``stable``, comparing error rate, p99 latency and the
   distribution of predictions against :class:`CanaryPolicy`'s bars;
5. **promotes**: ``stable`` moves to the candidate and ``previous`` to the old stable,
   which stays loaded for an instant rollback; versions beyond ``keep_versions`` unload.

Any failure puts the previous config back: ``stable`` keeps pointing at the version that
was serving before. :func:`rollback` moves ``stable`` back to ``previous`` (or a given
version) the same way, load first, then the label.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aimass.platform.errors import ServingError
from aimass.platform.settings import Settings
from aimass.serving.config import (
    ModelServerConfig,
    find_model,
    list_versions,
    model_config,
    next_version,
    read_config,
    server_config,
    write_config,
)

log = logging.getLogger(__name__)

STABLE = "stable"
CANARY = "canary"
PREVIOUS = "previous"
MARKER = "aimass_version.json"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_KEEP_VERSIONS = 2


def serving_config_path(settings: Settings) -> Path:
    return settings.serving_config


def _current_config(path: Path) -> ModelServerConfig:
    return read_config(path) if path.exists() else server_config([])


def _with_model(config: ModelServerConfig, model: Any) -> ModelServerConfig:
    """``config`` with ``model``'s entry added or replaced."""
    others = [entry for entry in config.model_config_list.config if entry.name != model.name]
    return server_config([*others, model])


def _apply(client: Any, path: Path, config: ModelServerConfig) -> None:
    """Persist the config (a restarted server comes back the same) and tell the server."""
    write_config(path, config)
    client.reload_config(config)


def _serve(
    client: Any,
    path: Path,
    before: ModelServerConfig,
    name: str,
    base: Path,
    versions: list[int],
    labels: dict[str, int],
) -> None:
    """Apply ``before`` with ``name`` serving exactly ``versions`` under ``labels``."""
    _apply(client, path, _with_model(before, model_config(name, base, versions, labels)))


def _restore(client: Any, path: Path, before: ModelServerConfig) -> None:
    """Put the config back after a failure; a failed restore is logged, not raised."""
    try:
        _apply(client, path, before)
    except Exception:  # the original error matters more
        log.exception("restoring the previous serving config failed")


def existing_version(base: Path, registry_version: str) -> int | None:
    """The serving version already made from this registry version (a retried deploy reuses it)."""
    for version in list_versions(base):
        marker = base / str(version) / MARKER
        if marker.exists() and json.loads(marker.read_text())["registry_version"] == str(
            registry_version
        ):
            return version
    return None


def stage_version(
    saved_model_dir: Path,
    base: Path,
    registry_version: str,
    lineage: dict[str, str] | None = None,
    warmup: dict[str, np.ndarray] | None = None,
    *,
    model_name: str = "",
) -> Path:
    """Copy a SavedModel into a hidden staging folder under ``base`` and return it.

    The copy gets the lineage marker (``MARKER``: the registry version, MLflow run, data
    partition, so a served version leads back to how it was made even without the registry)
    and, from ``warmup`` rows, TF Serving warm-up requests unless it ships its own. The
    server ignores hidden folders; :func:`publish_version` renames the folder into place.

    Raises:
        ServingError: ``saved_model_dir`` is not a SavedModel.
    """
    if not (saved_model_dir / "saved_model.pb").exists():
        raise ServingError(
            f"{saved_model_dir} is not a SavedModel (no saved_model.pb); re-run train_model"
        )
    base.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".incoming-", dir=base))
    try:
        shutil.copytree(saved_model_dir, staged, dirs_exist_ok=True)
        marker = {**(lineage or {}), "registry_version": str(registry_version)}
        (staged / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True))
        if warmup is not None and not (staged / WARMUP_FILE).exists():
            count = write_warmup_requests(staged / WARMUP_FILE, model_name or base.name, warmup)
            log.info("wrote %d warm-up requests into %s", count, staged / WARMUP_FILE)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def publish_version(staged: Path, base: Path) -> int:
    """Rename a staged folder to the next integer version under ``base``; that version."""
    version = next_version(base)
    staged.rename(base / str(version))
    log.info("published %s as %s", staged.name, base / str(version))
    return version


def copy_version(
    saved_model_dir: Path,
    base: Path,
    registry_version: str,
    lineage: dict[str, str] | None = None,
) -> int:
    """Stage and publish in one go (no warm-up, no validation): the next version number."""
    return publish_version(stage_version(saved_model_dir, base, registry_version, lineage), base)


def write_warmup_requests(
    path: Path, model_name: str, rows: dict[str, np.ndarray], *, max_requests: int = 8
) -> int:
    """Write TF Serving warm-up records (PredictionLog with a PredictRequest) for ``rows``.

    One request per row (batch 1, the common live shape) for the first rows, and one with
    all of them (a larger batch), so both shapes are traced before the first live request.
    Returns the number of records.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    n = len(next(iter(rows.values())))
    if n == 0:
        return 0
    batches = [slice(i, i + 1) for i in range(min(n, max_requests - 1))] + [slice(0, n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for rows_slice in batches:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            for key, values in rows.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(values)[rows_slice]))
            record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(record.SerializeToString())
    return len(batches)


def _json_rows(sample: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    n = len(next(iter(sample.values())))
    rows = []
    for i in range(n):
        row = {}
        for name, values in sample.items():
            raw = values[i]
            # float32 -> the shortest decimal that round-trips (12.45, not 12.449999809265137)
            value = (
                float(str(raw))
                if isinstance(raw, np.floating)
                else raw.item()
                if hasattr(raw, "item")
                else raw
            )
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if isinstance(value, float) and math.isnan(value):
                value = None
            row[name] = value
        rows.append(row)
    return rows


def smoke(
    client: Any, model: str, sample: dict[str, np.ndarray], **selector: Any
) -> dict[str, Any]:
    """One gRPC Predict and one REST predict; both must answer one finite output per row.

    The output is ``probabilities`` (classification: each in [0, 1], and a multiclass row
    sums to 1) or ``predictions`` (regression).
    """
    grpc_out = client.predict_grpc(model, sample, **selector)
    keys = [k for k in ("probabilities", "predictions") if k in grpc_out]
    if not keys:
        raise ServingError(
            f"{model} {selector}: gRPC predict returned outputs {sorted(grpc_out)}, neither "
            "'probabilities' nor 'predictions'; is this an AI Mass SavedModel?"
        )
    key = keys[0]
    grpc_values = np.asarray(grpc_out[key], dtype=np.float64)
    rows = [r for r in _json_rows(sample) if None not in r.values()] or _json_rows(sample)[:1]
    rest_out = client.predict_rest(
        model,
        [{k: (v if v is not None else float("nan")) for k, v in r.items()} for r in rows],
        **selector,
    )
    rest_values = np.asarray(rest_out, dtype=np.float64)
    for where, values in (("gRPC", grpc_values), ("REST", rest_values)):
        ok = values.size > 0 and bool(np.all(np.isfinite(values)))
        if ok and key == "probabilities":
            ok = bool(np.all((values >= 0) & (values <= 1)))
            if values.ndim == 2:
                ok = ok and bool(np.allclose(values.sum(axis=1), 1.0, atol=1e-3))
        if not ok:
            raise ServingError(
                f"{model} {selector}: {where} predict returned {values!r}, not valid {key}"
            )
    return {
        "output": key,
        f"grpc_{key}": grpc_values.round(4).tolist(),
        f"rest_{key}": rest_values.round(4).tolist(),
        "rest_instance": rows[0],
    }


class CandidateRejected(ServingError):
    """The candidate itself failed (infra validation or canary): retrying will not help."""


@dataclass(frozen=True)
class CanaryPolicy:
    """The bars a canary must clear against ``stable`` on the same replayed rows.

    ``requests`` holdout rows are sent one per request, alternating canary and stable.
    The canary fails on an error rate above ``max_error_rate``, on a p99 latency above
    ``max_p99_ratio`` times stable's (latencies under ``p99_floor_ms`` never fail: loopback
    noise), or when its predictions moved from stable's on the same rows by more than
    ``max_mean_shift`` (:func:`prediction_shift`: a model that answers, but answers
    nonsense, e.g. a constant). The PSI of the two prediction distributions is reported;
    it fails the canary only above ``max_prediction_psi`` (off by default: two sound
    models often differ in how confident they are, which is the gate's business, and PSI
    measured that as 1.5 between two good taxi models).
    """

    requests: int = 200
    max_error_rate: float = 0.0
    max_p99_ratio: float = 3.0
    p99_floor_ms: float = 25.0
    max_mean_shift: float = 0.2
    max_prediction_psi: float = float("inf")

    @classmethod
    def from_env(cls) -> CanaryPolicy:
        """Defaults, overridden by ``AIMASS_CANARY_<FIELD>`` (e.g. AIMASS_CANARY_REQUESTS=500)."""
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            raw = os.environ.get(f"AIMASS_CANARY_{name.upper()}")
            if raw is None:
                continue
            try:
                values[name] = type(default)(raw)
            except ValueError:
                raise ServingError(
                    f"AIMASS_CANARY_{name.upper()}={raw!r} is not a {type(default).__name__}"
                ) from None
        return cls(**values)


@dataclass
class CanaryReport:
    """What the canary analysis measured and decided."""

    passed: bool
    checks: list[str] = field(default_factory=list)
    canary: dict[str, float] = field(default_factory=dict)
    stable: dict[str, float] = field(default_factory=dict)
    prediction_psi: float = 0.0
    mean_shift: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(sample: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[index : index + 1] for k, v in sample.items()}


def _output(answer: dict[str, np.ndarray]) -> np.ndarray:
    key = "probabilities" if "probabilities" in answer else "predictions"
    return np.asarray(answer[key], dtype=np.float64)


def _is_probability(answer: dict[str, np.ndarray]) -> bool:
    return "probabilities" in answer


def prediction_psi(
    expected: np.ndarray, actual: np.ndarray, *, probabilities: bool, bins: int = 10
) -> float:
    """Population stability index of ``actual`` against ``expected`` predictions.

    Probabilities use ``bins`` equal-width bins on [0, 1]: quantile bins would split the
    mass of near-identical scores most models give (say, every cash trip near 0) at
    arbitrary points and blow the index up between two sound models. Regression outputs use
    quantile bins of ``expected``. Multiclass rows (2-D) are compared by predicted class.
    """
    if expected.ndim == 2:
        classes = expected.shape[1]
        e = np.bincount(expected.argmax(axis=1), minlength=classes).astype(float)
        a = np.bincount(actual.argmax(axis=1), minlength=classes).astype(float)
    else:
        if probabilities:
            edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        else:
            edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
        e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
        a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    e = np.clip(e / max(e.sum(), 1), 1e-4, None)
    a = np.clip(a / max(a.sum(), 1), 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def prediction_shift(expected: np.ndarray, actual: np.ndarray, *, probabilities: bool) -> float:
    """How far ``actual`` predictions moved from ``expected`` ones on the same rows, on average.

    Probabilities: the change of the mean probability (of class 1; for multiclass the
    largest change over the classes), so 0.2 means 20 points. Regression: the change of
    the mean in units of ``expected``'s standard deviation.
    """
    if expected.ndim == 2:
        return float(np.max(np.abs(actual.mean(axis=0) - expected.mean(axis=0))))
    shift = float(abs(actual.mean() - expected.mean()))
    if probabilities:
        return shift
    return shift / max(float(expected.std()), 1e-9)


def _input_names(client: Any, model_name: str, label: str) -> set[str] | None:
    """The inputs of the labelled version's serving signature (None if the server won't say)."""
    try:
        signatures = client.metadata_grpc(model_name, label=label)
        return set(signatures.signature_def["serving_default"].inputs.keys())
    except (ServingError, KeyError, AttributeError, TypeError):
        return None


def canary_analysis(
    client: Any, model_name: str, rows: dict[str, np.ndarray], policy: CanaryPolicy
) -> CanaryReport:
    """Replay ``rows`` (one per request) to ``canary`` and ``stable`` and compare them.

    Each version gets the columns its own signature takes: a candidate may add a feature
    the stable model never had. When stable needs a column the rows lack, it is not
    queried and the comparisons with it are reported as not made.
    """
    n = min(policy.requests, len(next(iter(rows.values()))))
    wanted = {label: _input_names(client, model_name, label) for label in (CANARY, STABLE)}
    lacking = sorted((wanted[STABLE] or set()) - set(rows))
    labels = (CANARY,) if lacking else (CANARY, STABLE)
    if lacking:
        log.warning("canary: stable takes inputs %s the rows lack; not comparing", lacking)

    def request(label: str, i: int) -> dict[str, np.ndarray]:
        names = wanted[label]
        row = _rows(rows, i)
        return row if names is None else {k: v for k, v in row.items() if k in names}

    latency: dict[str, list[float]] = {CANARY: [], STABLE: []}
    errors = {CANARY: 0, STABLE: 0}
    probabilities = True
    outputs: dict[str, list[np.ndarray]] = {CANARY: [], STABLE: []}
    for i in range(n):
        order = labels if i % 2 == 0 else labels[::-1]
        for label in order:
            started = time.perf_counter()
            try:
                answer = client.predict_grpc(model_name, request(label, i), label=label)
            except ServingError as exc:
                errors[label] += 1
                log.warning("canary analysis: %s request %d failed: %s", label, i, exc)
                continue
            latency[label].append((time.perf_counter() - started) * 1000)
            outputs[label].append(_output(answer)[0])
            probabilities = _is_probability(answer)

    def stats(label: str) -> dict[str, float]:
        ms = np.asarray(latency[label] or [float("inf")])
        return {
            "requests": float(n),
            "errors": float(errors[label]),
            "error_rate": errors[label] / max(n, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
        }

    canary, stable = stats(CANARY), stats(STABLE)
    checks: list[str] = []
    passed = True

    def check(ok: bool, line: str) -> None:
        nonlocal passed
        passed = passed and ok
        checks.append(f"{'PASS' if ok else 'FAIL'} {line}")

    check(
        canary["error_rate"] <= policy.max_error_rate,
        f"error rate: canary {canary['error_rate']:.3f} (stable {stable['error_rate']:.3f}), "
        f"bar <= {policy.max_error_rate}",
    )
    p99_bar = max(
        policy.max_p99_ratio * stable["p99_ms"] if math.isfinite(stable["p99_ms"]) else 0.0,
        policy.p99_floor_ms,
    )
    check(
        canary["p99_ms"] <= p99_bar,
        f"p99 latency: canary {canary['p99_ms']:.1f} ms (stable {stable['p99_ms']:.1f} ms), "
        f"bar <= {p99_bar:.1f} ms",
    )
    psi = shift = float("inf")
    if outputs[CANARY] and outputs[STABLE]:
        before, after = np.stack(outputs[STABLE]), np.stack(outputs[CANARY])
        shift = prediction_shift(before, after, probabilities=probabilities)
        psi = prediction_psi(before, after, probabilities=probabilities)
    unit = "" if probabilities else " stable std"
    if lacking:
        checks.append(
            f"PASS prediction shift: not compared, stable takes inputs {lacking} that the "
            "candidate's rows lack"
        )
    else:
        check(
            shift <= policy.max_mean_shift,
            f"prediction shift: mean moved {shift:.3f}{unit} from stable's on the same {n} rows, "
            f"bar <= {policy.max_mean_shift} (PSI {psi:.3f}"
            + (
                f", bar <= {policy.max_prediction_psi})"
                if math.isfinite(policy.max_prediction_psi)
                else ", reported)"
            ),
        )
    if math.isfinite(policy.max_prediction_psi) and not lacking:
        check(
            psi <= policy.max_prediction_psi,
            f"prediction distribution: PSI {psi:.3f}, bar <= {policy.max_prediction_psi}",
        )
    report = CanaryReport(passed, checks, canary, stable, round(psi, 4), round(shift, 4))
    for line in checks:
        (log.info if line.startswith("PASS") else log.error)("canary %s: %s", model_name, line)
    return report


def infra_validate(
    staged: Path,
    model_name: str,
    sample: dict[str, np.ndarray],
    *,
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    """Load ``staged`` in a sandbox model server (own process and ports) and query it.

    The sandbox serves the staged folder as version 1 of ``model_name``; it must load it
    (replaying its warm-up requests) and answer ``sample`` over gRPC and REST with valid
    outputs. Nothing of production is touched: a SavedModel that crashes the loader takes
    down the sandbox process only.

    Raises:
        ServingError: the SavedModel did not load or answer; the sandbox log tail is included.
    """
    from aimass.platform.ports import free_ports
    from aimass.serving.client import ServingClient

    sandbox = Path(tempfile.mkdtemp(prefix=f"aimass-infra-{model_name}-"))
    (sandbox / model_name).mkdir()
    (sandbox / model_name / "1").symlink_to(staged.resolve(), target_is_directory=True)
    grpc_port, rest_port = free_ports(2)
    log_path = sandbox / "server.log"
    command = [
        sys.executable,
        "-m",
        "aimass.serving.server",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={model_name}",
        f"--model_base_path={sandbox / model_name}",
        "--file_system_poll_wait_seconds=0",
    ]
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    client = ServingClient(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}")

    def tail() -> str:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        # TensorFlow's start-up chatter (absl/C++ lines) says nothing about the model.
        noise = ("WARNING: All log messages", "I0000", "W0000", "E0000")
        return "\n".join([line for line in lines if not line.startswith(noise)][-12:])

    try:
        deadline = started + timeout_s
        while True:
            if proc.poll() is not None:
                raise CandidateRejected(
                    f"infra validation: the sandbox server could not load {staged} "
                    f"(exit code {proc.returncode}); the SavedModel is rejected. Sandbox log:\n{tail()}"
                )
            try:
                states = client.model_status(model_name, 1)
            except ServingError:
                states = []
            if states and states[0].get("state") == "AVAILABLE":
                break
            if time.monotonic() > deadline:
                raise CandidateRejected(
                    f"infra validation: {staged} was not AVAILABLE in the sandbox after "
                    f"{timeout_s:.0f} s; the SavedModel is rejected. Sandbox log:\n{tail()}"
                )
            time.sleep(0.3)
        try:
            answer = smoke(client, model_name, sample, version=1)
        except ServingError as exc:
            raise CandidateRejected(
                f"infra validation: {staged} loaded but did not answer: {exc}; rejected"
            ) from exc
        seconds = round(time.monotonic() - started, 1)
        log.info(
            "infra validation of %s passed in %.1f s (sandbox %s)", model_name, seconds, command
        )
        return {"seconds": seconds, "output": answer["output"]}
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(sandbox, ignore_errors=True)


def _labels(entry: Any) -> dict[str, int]:
    return {} if entry is None else {k: int(v) for k, v in entry.version_labels.items()}


def _versions(entry: Any) -> list[int]:
    return (
        []
        if entry is None
        else sorted(int(v) for v in entry.model_version_policy.specific.versions)
    )


def _kept(version: int, stable: int | None, loaded: list[int], keep: int) -> list[int]:
    """The new stable, the old one (rollback target), then the newest others, ``keep`` in all."""
    order = [version, *([stable] if stable is not None else [])]
    order += [v for v in sorted(loaded, reverse=True) if v not in order]
    return sorted(order[: max(keep, 1)])


def rollout(
    settings: Settings,
    client: Any,
    *,
    model_name: str,
    saved_model_dir: Path,
    registry_version: str,
    sample: dict[str, np.ndarray],
    canary_rows: dict[str, np.ndarray] | None = None,
    load_timeout_s: float = 120.0,
    lineage: dict[str, str] | None = None,
    policy: CanaryPolicy | None = None,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
    infra_validation: bool = True,
) -> dict[str, Any]:
    """Deploy ``saved_model_dir`` as the next version of ``model_name`` and label it ``stable``.

    See the module docstring for the steps. ``sample`` (a few holdout rows) is used for the
    warm-up requests, infra validation and the smoke tests; ``canary_rows`` (more holdout
    rows; default ``sample``) for the canary analysis. A retried rollout of the same
    registry version reuses the version it published.

    Returns:
        ``serving_version``, ``previous_version``, ``infra_validation``, ``canary`` (the
        report, None for a first deploy) and the smoke answers.

    Raises:
        ServingError: the candidate was rejected or the rollout failed; ``stable`` is unchanged.
    """
    policy = policy or CanaryPolicy.from_env()
    path = serving_config_path(settings)
    base = settings.serving_base / model_name
    before = _current_config(path)
    current = find_model(before, model_name)
    labels = _labels(current)
    stable = labels.get(STABLE)
    loaded = _versions(current)

    infra: dict[str, Any] | None = None
    version = existing_version(base, registry_version)
    if version is None:
        staged = stage_version(
            saved_model_dir, base, registry_version, lineage, sample, model_name=model_name
        )
        try:
            if infra_validation:
                infra = infra_validate(staged, model_name, sample, timeout_s=load_timeout_s)
            version = publish_version(staged, base)
        except BaseException as exc:
            shutil.rmtree(staged, ignore_errors=True)
            if isinstance(exc, ServingError):
                kind = CandidateRejected if isinstance(exc, CandidateRejected) else ServingError
                raise kind(f"{exc}\nProduction is untouched: 'stable' stays at {stable}") from exc
            raise
    if stable == version:
        log.info("%s version %d is already stable; nothing to roll out", model_name, version)
        return {
            "serving_version": version,
            "previous_version": labels.get(PREVIOUS),
            "infra_validation": infra,
            "canary": None,
            **smoke(client, model_name, sample, label=STABLE),
        }
    canary: CanaryReport | None = None
    try:
        # 1. load the candidate beside what is served; labels unchanged
        keep_labels = {k: v for k, v in labels.items() if k != CANARY and v in loaded}
        _serve(client, path, before, model_name, base, sorted({*loaded, version}), keep_labels)
        client.wait_available(model_name, version, timeout_s=load_timeout_s)
        log.info("%s version %d loaded; smoke-testing it by version", model_name, version)
        smoke(client, model_name, sample, version=version)
        if stable is not None:
            # 2. label it canary (it is loaded now) and compare it with stable
            labelled = {**keep_labels, CANARY: version}
            _serve(client, path, before, model_name, base, sorted({*loaded, version}), labelled)
            canary = canary_analysis(client, model_name, canary_rows or sample, policy)
            if not canary.passed:
                failed = [c for c in canary.checks if c.startswith("FAIL")]
                raise CandidateRejected(f"canary analysis failed: {'; '.join(failed)}")
        # 3. promote: stable -> candidate, previous -> old stable; older versions unload
        keep = _kept(version, stable, loaded, keep_versions)
        new_labels = {STABLE: version, **({PREVIOUS: stable} if stable in keep else {})}
        _serve(client, path, before, model_name, base, keep, new_labels)
        result = smoke(client, model_name, sample, label=STABLE)
    except Exception as exc:
        log.error(
            "rollout of %s version %d failed (%s); restoring the previous config",
            model_name,
            version,
            exc,
        )
        _restore(client, path, before)
        kind = CandidateRejected if isinstance(exc, CandidateRejected) else ServingError
        raise kind(
            f"rollout of {model_name} version {version} failed: {exc}; 'stable' stays at {stable}"
        ) from exc
    log.info("%s: label %s -> version %d (previous %s)", model_name, STABLE, version, stable)
    return {
        "serving_version": version,
        "previous_version": stable,
        "infra_validation": infra,
        "canary": None if canary is None else canary.to_dict(),
        **result,
    }


def read_marker(base: Path, version: int) -> dict[str, Any]:
    """The lineage marker of a served version ({} for a version made outside AI Mass)."""
    marker = base / str(version) / MARKER
    return dict(json.loads(marker.read_text())) if marker.exists() else {}


def rollback(
    settings: Settings,
    client: Any,
    *,
    model_name: str,
    sample: dict[str, np.ndarray] | None = None,
    version: int | None = None,
    load_timeout_s: float = 120.0,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
) -> dict[str, Any]:
    """Move ``stable`` back to ``version`` (default: the ``previous`` label), no retraining.

    Load first (it usually is still loaded, so this takes a second), then move the labels:
    ``stable`` to the target and ``previous`` to the version rolled back from, so a second
    rollback rolls forward again. Any failure restores the config.

    Raises:
        ServingError: no such version, nothing to roll back to, or the target did not load.
    """
    path = serving_config_path(settings)
    base = settings.serving_base / model_name
    before = _current_config(path)
    current = find_model(before, model_name)
    labels = _labels(current)
    stable = labels.get(STABLE)
    if stable is None:
        raise ServingError(f"{model_name} has no 'stable' version yet; nothing to roll back")
    target = version if version is not None else labels.get(PREVIOUS)
    on_disk = list_versions(base)
    if target is None:
        raise ServingError(
            f"{model_name} has no 'previous' version to roll back to (stable is {stable}); "
            f"pass a version, one of {[v for v in on_disk if v != stable]}"
        )
    if target == stable:
        raise ServingError(f"{model_name} version {target} is already stable; pick another")
    if target not in on_disk:
        raise ServingError(
            f"{model_name} has no version {target} under {base} (versions: {on_disk}); "
            "pick one of those"
        )
    loaded = _versions(current)
    started = time.monotonic()
    try:
        unchanged = {k: v for k, v in labels.items() if k not in (CANARY, PREVIOUS)}
        _serve(client, path, before, model_name, base, sorted({*loaded, target}), unchanged)
        client.wait_available(model_name, target, timeout_s=load_timeout_s)
        keep = _kept(target, stable, loaded, keep_versions)
        _serve(client, path, before, model_name, base, keep, {STABLE: target, PREVIOUS: stable})
        answer = smoke(client, model_name, sample, label=STABLE) if sample else None
    except Exception as exc:
        _restore(client, path, before)
        raise ServingError(
            f"rollback of {model_name} to version {target} failed: {exc}; 'stable' stays at {stable}"
        ) from exc
    seconds = round(time.monotonic() - started, 2)
    log.info("%s: rolled back, stable %d -> %d in %.2f s", model_name, stable, target, seconds)
    return {
        "serving_version": target,
        "rolled_back_from": stable,
        "seconds": seconds,
        "marker": read_marker(base, target),
        "smoke": answer,
    }
