"""TF Serving's gRPC services: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus, HandleReloadConfigRequest)."""

from __future__ import annotations

import logging

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from aimass.serving.frontend import Call, Frontend, metadata_response, status_response
from aimass.serving.servables import DEFAULT_SIGNATURE, ServableError, short
from aimass.serving.tensors import fill_tensor_proto, tensor_to_ndarray

logger = logging.getLogger(__name__)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService.Predict and GetModelMetadata (Classify/Regress answer UNIMPLEMENTED)."""

    def __init__(self, frontend: Frontend) -> None:
        self._frontend = frontend

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        call = Call("grpc", "predict", request.model_spec)
        return self._frontend.answer_grpc(context, call, lambda: self._predict(request, call))

    def _predict(
        self, request: predict_pb2.PredictRequest, call: Call
    ) -> predict_pb2.PredictResponse:
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        try:
            inputs = {key: tensor_to_ndarray(value) for key, value in request.inputs.items()}
        except Exception as exc:
            raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, short(exc)) from exc
        version, outputs = self._frontend.predict(
            request.model_spec, signature, inputs, list(request.output_filter), call
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
    """ModelService.GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, frontend: Frontend) -> None:
        self._frontend = frontend
        self._manager = frontend.manager

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
            names = [model.name for model in request.config.model_config_list.config]
            logger.info("reload requested over gRPC for models %s", names)
            try:
                self._manager.apply(request.config)
            except ServableError as exc:
                logger.error("ReloadConfig failed: %s", exc.message)
                raise
            return model_management_pb2.ReloadConfigResponse()

        return self._frontend.answer_grpc(context, Call("grpc", "reload"), run)
