"""TF Serving's gRPC services: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus, HandleReloadConfigRequest), and the gRPC servers that carry them.

HandleReloadConfigRequest changes what the server serves, so it is the control plane: a
`ControlPlane` says whether a port takes it and under which folder its base paths must lie.
TF Serving's own gRPC has no authentication either; see docs/serving.md for how the control
plane is kept apart (its own loopback port, or off).
"""

from __future__ import annotations

import logging
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from aimass.platform.errors import ServingError
from aimass.serving.frontend import Call, Frontend, metadata_response, status_response
from aimass.serving.limits import ServerLimits
from aimass.serving.manager import outside_root
from aimass.serving.servables import DEFAULT_SIGNATURE, ServableError, invalid, short
from aimass.serving.tensors import fill_tensor_proto, tensor_to_ndarray

logger = logging.getLogger(__name__)

_MAX_SEND_BYTES = 512 * 1024 * 1024  # answers are the server's own; only requests are bounded


@dataclass(frozen=True)
class ControlPlane:
    """Whether a gRPC port takes HandleReloadConfigRequest, and the folder base paths must be in.

    Attributes:
        enabled: this port applies reloads; otherwise it answers PERMISSION_DENIED with `refusal`.
        base_root: every base path of a reloaded config must resolve under this folder.
        refusal: what a refused caller is told (where the control plane is, or that it is off).
    """

    enabled: bool
    base_root: Path | None = None
    refusal: str = ""


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService.Predict and GetModelMetadata (Classify/Regress answer UNIMPLEMENTED)."""

    def __init__(self, frontend: Frontend) -> None:
        self._frontend = frontend

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        call = Call("grpc", "predict", request.model_spec)
        return self._frontend.answer_grpc(
            context, call, lambda: self._predict(request, call, context.time_remaining())
        )

    def _predict(
        self, request: predict_pb2.PredictRequest, call: Call, remaining: float | None
    ) -> predict_pb2.PredictResponse:
        deadline = None if remaining is None else time.monotonic() + remaining
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        budget = self._frontend.limits.grpc_max_receive_bytes  # values, all inputs together
        inputs: dict[str, np.ndarray] = {}
        for key, value in request.inputs.items():
            try:
                inputs[key] = array = tensor_to_ndarray(value, max_values=budget)
            except ServableError as exc:
                raise invalid(f"input '{key}': {exc.message}") from exc
            except Exception as exc:
                raise invalid(f"input '{key}' is not a valid TensorProto: {short(exc)}") from exc
            budget -= array.size
        version, outputs = self._frontend.predict(
            request.model_spec,
            signature,
            inputs,
            request.output_filter,
            call,
            deadline=deadline,
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature
        for key, value in outputs.items():
            fill_tensor_proto(response.outputs[key], value)
        return response

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        call = Call("grpc", "metadata", request.model_spec)
        return self._frontend.answer_grpc(context, call, lambda: self._metadata(request, call))

    def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: Call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for name in request.metadata_field:
            if name != "signature_def":
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {name} is not supported"
                )
        return metadata_response(self._frontend.manager, request.model_spec, call)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService.GetModelStatus and HandleReloadConfigRequest (as `control` allows)."""

    def __init__(self, frontend: Frontend, control: ControlPlane) -> None:
        self._frontend = frontend
        self._manager = frontend.manager
        self._control = control

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        call = Call("grpc", "status", request.model_spec)

        def run() -> get_model_status_pb2.GetModelStatusResponse:
            if not request.HasField("model_spec"):
                raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
            return status_response(self._manager, request.model_spec, call)

        return self._frontend.answer_grpc(context, call, run)

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        def run() -> model_management_pb2.ReloadConfigResponse:
            control = self._control
            peer = context.peer()
            if not control.enabled:
                logger.warning("refused a reload from %s: %s", peer, control.refusal)
                raise ServableError(grpc.StatusCode.PERMISSION_DENIED, control.refusal)
            names = [model.name for model in request.config.model_config_list.config]
            outside = (
                [] if control.base_root is None else outside_root(request.config, control.base_root)
            )
            if outside:
                logger.warning("refused a reload from %s: base paths %s", peer, outside)
                listed = ", ".join(f"{name}: {path}" for name, path in outside)
                raise ServableError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"base paths outside the serving root {control.base_root} "
                    f"(--model_base_root): {listed}; publish models under that folder",
                )
            logger.info("reload requested over gRPC by %s for models %s", peer, names)
            try:
                self._manager.apply(request.config)
            except ServableError as exc:
                logger.error("ReloadConfig failed: %s", exc.message)
                raise
            return model_management_pb2.ReloadConfigResponse()

        return self._frontend.answer_grpc(context, Call("grpc", "reload"), run)


def start_grpc_server(
    frontend: Frontend,
    address: str,
    *,
    limits: ServerLimits,
    max_workers: int,
    control: ControlPlane,
    predictions: bool = True,
    flag: str = "--port",
) -> tuple[grpc.Server, int]:
    """A started gRPC server on `address` (``host:port``, port 0 picks one); (server, port).

    It carries ModelService with `control`, and PredictionService when `predictions`.
    Requests over ``limits.grpc_max_receive_bytes`` and calls beyond
    ``limits.grpc_max_concurrent_rpcs`` are refused by gRPC itself (RESOURCE_EXHAUSTED).

    Raises:
        ServingError: the address cannot be bound (`flag` names the option to change).
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", limits.grpc_max_receive_bytes),
            ("grpc.max_send_message_length", _MAX_SEND_BYTES),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=limits.grpc_max_concurrent_rpcs,
    )
    if predictions:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(frontend), server
        )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(frontend, control), server
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ServingError(f"cannot bind gRPC to {address} ({exc}); pick a free {flag}") from exc
    if port == 0:
        raise ServingError(f"cannot bind gRPC to {address}; pick a free {flag}")
    server.start()
    return server, port
