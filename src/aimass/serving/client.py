"""`ServingClient`: the only way the platform talks to a model server.

It speaks TF Serving's public API only (gRPC protos from tensorflow-serving-api and the REST
routes), so the same code drives the local server (`aimass.serving.server`) and the official
TensorFlow Serving image.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import quote

import grpc
import numpy as np
import tensorflow as tf
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_delay, wait_fixed
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from aimass.platform.errors import ServingError

logger = logging.getLogger(__name__)

_MAX_MESSAGE_BYTES = 512 * 1024 * 1024
_STATE_NAMES = get_model_status_pb2.ModelVersionStatus.State
# StatusProto.error_code is tensorflow.error.Code, whose numbers are gRPC's status codes.
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class ServingClient:
    """A client for one model server (gRPC target ``host:port``, REST ``http://host:port``).

    Every failure raises `ServingError` naming the model, version or label, the server's
    status and message.
    """

    def __init__(self, grpc_target: str, rest_url: str, *, timeout: float = 10.0) -> None:
        self.grpc_target = grpc_target
        self.rest_url = rest_url.rstrip("/")
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            grpc_target,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                # Reconnect quickly to a server that is (re)starting, instead of gRPC's
                # default backoff that grows to two minutes.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # ---- predictions

    def predict_grpc(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "serving_default",
        output_filter: list[str] | None = None,
        timeout: float = 10,
    ) -> dict[str, np.ndarray]:
        """PredictionService.Predict; inputs and outputs as numpy arrays (strings as bytes)."""
        request = predict_pb2.PredictRequest()
        request.model_spec.CopyFrom(_model_spec(model, version, label))
        request.model_spec.signature_name = signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        request.output_filter.extend(output_filter or [])
        response = self._call(
            "predict", model, version, label, self._predictions.Predict, request, timeout
        )
        return {key: tf.make_ndarray(value) for key, value in response.outputs.items()}

    def predict_rest(
        self,
        model: str,
        instances: list[dict[str, Any]] | list[Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str | None = None,
    ) -> list[Any]:
        """POST ``:predict`` in the row format; returns the ``predictions`` list."""
        body: dict[str, Any] = {"instances": instances}
        if signature:
            body["signature_name"] = signature
        answer = self._rest(
            "POST", f"{_rest_path(model, version, label)}:predict", body, model, version, label
        )
        if "predictions" not in answer:
            raise ServingError(
                f"REST predict on {_target(model, version, label)} at {self.rest_url} returned no "
                f"'predictions': {str(answer)[:300]}"
            )
        return list(answer["predictions"])

    def predict_columns(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
    ) -> Any:
        """POST ``:predict`` in the columnar format; returns ``outputs`` as the server sent it."""
        body = {"inputs": {key: _jsonable(value) for key, value in inputs.items()}}
        answer = self._rest(
            "POST", f"{_rest_path(model, version, label)}:predict", body, model, version, label
        )
        return answer.get("outputs")

    # ---- model management

    def model_status(self, model: str, version: int | None = None) -> list[dict[str, Any]]:
        """GetModelStatus: ``[{"version", "state", "error_code", "error_message"}]``, newest first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.CopyFrom(_model_spec(model, version, None))
        response = self._call(
            "model status", model, version, None, self._models.GetModelStatus, request, self.timeout
        )
        return [
            {
                "version": int(entry.version),
                "state": _STATE_NAMES.Name(entry.state),
                "error_code": _CODE_NAMES.get(
                    entry.status.error_code, str(entry.status.error_code)
                ),
                "error_message": entry.status.error_message,
            }
            for entry in response.model_version_status
        ]

    def reload_config(
        self, config: model_server_config_pb2.ModelServerConfig, *, timeout: float = 300
    ) -> None:
        """ModelService.HandleReloadConfigRequest.

        TF Serving accepts a label only for a version that is already AVAILABLE, and loads new
        versions of existing models asynchronously: load with one reload, `wait_available`,
        then move labels with the next reload.
        """
        models = [m.name for m in config.model_config_list.config]
        request = model_management_pb2.ReloadConfigRequest(config=config)
        response = self._call(
            "reload config",
            ",".join(models) or "(none)",
            None,
            None,
            self._models.HandleReloadConfigRequest,
            request,
            timeout,
        )
        if response.status.error_code != 0:
            code = _CODE_NAMES.get(response.status.error_code, str(response.status.error_code))
            raise ServingError(
                f"reload config for models {models} at {self.grpc_target} failed: {code}: "
                f"{response.status.error_message}"
            )
        logger.info("reloaded config at %s for models %s", self.grpc_target, models)

    def wait_available(
        self, model: str, version: int, timeout_s: float = 60, poll_s: float = 0.5
    ) -> None:
        """Poll GetModelStatus until `version` of `model` is AVAILABLE.

        Raises:
            ServingError: the version failed to load (state END with an error), or it was not
                AVAILABLE after `timeout_s` seconds (the last status is in the message).
        """

        def check() -> tuple[bool, str]:
            """One status call: whether the version is AVAILABLE, and what the server said."""
            try:
                states = self.model_status(model, version)
            except ServingError as exc:
                return False, str(exc)  # server still starting, or the version not seen yet
            state = states[0] if states else {}
            if state.get("state") == "END" and state.get("error_code") != "OK":
                raise ServingError(
                    f"model {model} version {version} failed to load at {self.grpc_target}: "
                    f"{state.get('error_message')}; fix or re-export the SavedModel"
                )
            said = (
                f"state {state.get('state')} {state.get('error_code')} {state.get('error_message')}"
            )
            return state.get("state") == "AVAILABLE", said.strip()

        def timed_out(attempts: RetryCallState) -> NoReturn:
            last = attempts.outcome.result()[1] if attempts.outcome else "no answer yet"
            raise ServingError(
                f"model {model} version {version} was not AVAILABLE at {self.grpc_target} "
                f"after {timeout_s:.0f} s ({last}); check the server log and the version folder"
            )

        # A failed load (the ServingError from check) is not retried: it ends the wait as raised.
        Retrying(
            stop=stop_after_delay(timeout_s),
            wait=wait_fixed(poll_s),
            retry=retry_if_result(lambda checked: not checked[0]),
            retry_error_callback=timed_out,
        )(check)

    def metadata(
        self, model: str, version: int | None = None, *, label: str | None = None
    ) -> dict[str, Any]:
        """GET ``…/metadata``: ``{"model_spec": …, "metadata": {"signature_def": …}}``."""
        return self._rest(
            "GET", f"{_rest_path(model, version, label)}/metadata", None, model, version, label
        )

    def metadata_grpc(
        self, model: str, version: int | None = None, *, label: str | None = None
    ) -> get_model_metadata_pb2.SignatureDefMap:
        """PredictionService.GetModelMetadata's signature_def map."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.CopyFrom(_model_spec(model, version, label))
        response = self._call(
            "metadata",
            model,
            version,
            label,
            self._predictions.GetModelMetadata,
            request,
            self.timeout,
        )
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return signatures

    # ---- transport

    def _call(
        self,
        what: str,
        model: str,
        version: int | None,
        label: str | None,
        method: Any,
        request: Any,
        timeout: float,
    ) -> Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            raise ServingError(
                f"{what} for {_target(model, version, label)} at {self.grpc_target} failed: "
                f"{code}: {exc.details()}"
            ) from exc

    def _rest(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        model: str,
        version: int | None,
        label: str | None,
    ) -> dict[str, Any]:
        url = f"{self.rest_url}{path}"
        data = None
        if body is not None:  # strict JSON: a NaN (a missing float) travels as null
            text = json.dumps(_nan_to_null(body), default=_json_default, allow_nan=False)
            data = text.encode("utf-8")
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(raw).get("error", raw)
            except (ValueError, AttributeError):
                message = raw
            raise ServingError(
                f"REST {method} {path} for {_target(model, version, label)} at {self.rest_url} "
                f"failed: HTTP {exc.code}: {message}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ServingError(
                f"REST {method} {url} for {_target(model, version, label)} failed: {exc}; "
                "is the model server running with --rest_api_port?"
            ) from exc


def _model_spec(model: str, version: int | None, label: str | None) -> model_pb2.ModelSpec:
    if version is not None and label is not None:
        raise ServingError(
            f"model {model}: pass a version ({version}) or a label ({label!r}), not both"
        )
    spec = model_pb2.ModelSpec(name=model)
    if version is not None:
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label
    return spec


def _rest_path(model: str, version: int | None, label: str | None) -> str:
    _model_spec(model, version, label)  # same validation as gRPC
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{quote(label, safe='')}"
    return path


def _target(model: str, version: int | None, label: str | None) -> str:
    if version is not None:
        return f"model {model} version {version}"
    if label is not None:
        return f"model {model} label {label}"
    return f"model {model}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return (
            [_jsonable(item) for item in value.tolist()]
            if value.dtype == object
            else value.tolist()
        )
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _nan_to_null(value: Any) -> Any:
    """`value` with every float NaN (TF Serving's missing float) as None: JSON has no NaN, and
    the server reads null as a missing float."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {key: _nan_to_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_null(item) for item in value]
    if isinstance(value, np.ndarray):
        return _nan_to_null(_jsonable(value))
    if isinstance(value, np.floating):
        return _nan_to_null(float(value))
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return _jsonable(value) if isinstance(value, np.ndarray) else value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
