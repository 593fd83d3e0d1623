"""Staging and infra validation: a SavedModel made ready to serve before production sees it.

The first steps of a rollout (:mod:`aimass.serving.rollout`): the SavedModel is copied into
a hidden folder beside the served versions with its lineage marker and TF Serving warm-up
requests, loaded and queried in a sandbox model server of its own (:func:`infra_validate`),
and only then renamed into place as the next integer version (:func:`publish_version`).
:func:`smoke` is the one-request check used here and after every label move.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from aimass.platform.errors import ServingError
from aimass.serving.config import list_versions, next_version

log = logging.getLogger(__name__)

MARKER = "aimass_version.json"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
# How often infra validation asks the sandbox whether the staged version is AVAILABLE.
SANDBOX_POLL_S = 0.3


class CandidateRejected(ServingError):
    """The candidate itself failed (infra validation or canary): retrying will not help."""


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


def read_marker(base: Path, version: int) -> dict[str, Any]:
    """The lineage marker of a served version ({} for a version made outside AI Mass)."""
    marker = base / str(version) / MARKER
    return dict(json.loads(marker.read_text())) if marker.exists() else {}


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
    from aimass.serving.sandbox import sandbox_server, wait_until

    sandbox = Path(tempfile.mkdtemp(prefix=f"aimass-infra-{model_name}-"))
    (sandbox / model_name).mkdir()
    (sandbox / model_name / "1").symlink_to(staged.resolve(), target_is_directory=True)
    started = time.monotonic()
    args = [f"--model_name={model_name}", f"--model_base_path={sandbox / model_name}"]
    with sandbox_server(sandbox, args) as box:

        def available() -> bool:
            """One look at the sandbox; a server that exited rejects the candidate at once."""
            if box.proc.poll() is not None:
                raise CandidateRejected(
                    f"infra validation: the sandbox server could not load {staged} (exit "
                    f"code {box.proc.returncode}); the SavedModel is rejected. Sandbox log:\n"
                    f"{box.tail()}"
                )
            try:
                states = box.client.model_status(model_name, 1)
            except ServingError:  # the sandbox is still importing TensorFlow
                return False
            return bool(states) and states[0].get("state") == "AVAILABLE"

        def not_available() -> NoReturn:
            raise CandidateRejected(
                f"infra validation: {staged} was not AVAILABLE in the sandbox after "
                f"{timeout_s:.0f} s; the SavedModel is rejected. Sandbox log:\n{box.tail()}"
            )

        # A CandidateRejected from available() is not retried: it ends the wait as raised.
        wait_until(available, timeout_s=timeout_s, poll_s=SANDBOX_POLL_S, on_timeout=not_available)
        try:
            answer = smoke(box.client, model_name, sample, version=1)
        except ServingError as exc:
            raise CandidateRejected(
                f"infra validation: {staged} loaded but did not answer: {exc}; rejected"
            ) from exc
        seconds = round(time.monotonic() - started, 1)
        log.info(
            "infra validation of %s passed in %.1f s (sandbox %s)", model_name, seconds, box.command
        )
        return {"seconds": seconds, "output": answer["output"]}
