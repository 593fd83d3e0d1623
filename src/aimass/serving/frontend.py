"""What the gRPC and REST front ends share: one request's accounting, predict, status, metadata.

`Frontend.predict` is the one path every Predict takes: resolve the version, check the inputs
against its signature (`aimass.serving.tensors.check_inputs`), run it (through the batcher
when batching is on), and only then hand the request to the request log, so the log holds
validated requests only.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from aimass.serving.batching import Batcher
from aimass.serving.limits import ServerLimits
from aimass.serving.manager import ModelManager
from aimass.serving.metrics import ServerMetrics
from aimass.serving.request_log import RequestLog
from aimass.serving.servables import LoadedModel, ServableError, short
from aimass.serving.tensors import check_inputs

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class Call:
    """One request being answered, and what its metrics are labelled with."""

    __slots__ = ("api", "method", "model", "label", "version", "started")

    def __init__(self, api: str, method: str, spec: model_pb2.ModelSpec | None = None) -> None:
        self.api = api
        self.method = method
        self.model = spec.name if spec is not None else ""
        labelled = spec is not None and spec.WhichOneof("version_choice") == "version_label"
        self.label = spec.version_label if labelled and spec is not None else ""
        self.version = ""  # set once the request resolved a version
        self.started = time.perf_counter()


class Frontend:
    """What the gRPC and REST front ends share: the models, the batcher and the metrics."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: ServerMetrics | None = None,
        batcher: Batcher | None = None,
        request_log: RequestLog | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.manager = manager
        self.metrics = metrics or ServerMetrics(
            version_states=manager.version_states, version_labels=manager.version_labels
        )
        self.batcher = batcher
        self.request_log = request_log
        self.limits = limits or ServerLimits()

    def predict(
        self,
        spec: model_pb2.ModelSpec,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        call: Call,
        resolved: tuple[int, LoadedModel] | None = None,
        *,
        deadline: float | None = None,
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Run the signature of the version `spec` names (or `resolved`, when the caller already
        resolved it), through the batcher when batching is on.

        Args:
            deadline: ``time.monotonic()`` after which nobody waits for the answer (a gRPC
                deadline): a request still queued for a batch then is not run.

        Raises:
            ServableError: what `check_inputs` refuses, NOT_FOUND for an unknown version,
                DEADLINE_EXCEEDED, or the model's own error.
        """
        version, loaded = resolved or self.manager.resolve(spec)
        call.version = str(version)
        sig = loaded.signature(signature)
        check_inputs(sig, inputs, output_filter, max_rows=self.limits.max_request_rows)
        batcher = self.batcher
        if batcher is None:
            outputs = loaded.run(sig, inputs, output_filter)
        else:
            wanted = tuple(output_filter)
            key = (spec.name, version, id(loaded), sig.name, wanted)  # `fn` keeps `loaded` alive
            fn = functools.partial(loaded.run, sig, output_filter=wanted)
            labels = (spec.name, call.version)
            outputs = batcher.run(key, inputs, fn, labels=labels, deadline=deadline)
        if self.request_log is not None:  # sampled, in memory: the flush thread writes
            self.request_log.record(spec.name, version, inputs)
        return version, outputs

    def observe_batch(
        self, labels: tuple[str, ...], rows: int, requests: int, waits: list[float]
    ) -> None:
        model, version = labels
        self.metrics.observe_batch(
            model=model, version=version, rows=rows, requests=requests, waits=waits
        )

    def finish(self, call: Call, code: grpc.StatusCode) -> None:
        """Record an answered request (before the answer is sent, so a scrape after it sees it)."""
        model, label = self.manager.metric_names(call.model, call.label)
        self.metrics.observe_request(
            api=call.api,
            method=call.method,
            model=model,
            version=call.version,
            label=label,
            code=code.name,
            seconds=time.perf_counter() - call.started,
        )

    def answer_grpc(self, context: grpc.ServicerContext, call: Call, run: Callable[[], _T]) -> _T:
        """`run()`'s answer, or its error as the call's status; counted either way."""
        code = grpc.StatusCode.OK
        try:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise ServableError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the request's deadline passed before the server could start it; "
                    "it was not run",
                )
            return run()
        except ServableError as exc:
            code = exc.code
            context.abort(exc.code, exc.message)
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            logger.exception("gRPC %s failed", call.method)
            context.abort(grpc.StatusCode.INTERNAL, short(exc))
        finally:
            self.finish(call, code)
        raise AssertionError("unreachable")  # context.abort always raises


def metadata_response(
    manager: ModelManager, spec: model_pb2.ModelSpec, call: Call | None = None
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    version, loaded = manager.resolve(spec)
    if call is not None:
        call.version = str(version)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = spec.name
    response.model_spec.version.value = version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in loaded.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature)
    response.metadata["signature_def"].Pack(signature_map)
    return response


def status_response(
    manager: ModelManager, spec: model_pb2.ModelSpec, call: Call | None = None
) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    servables = manager.status(spec)
    if call is not None and spec.WhichOneof("version_choice") and servables:
        call.version = str(servables[0].version)  # the one version asked for
    for servable in servables:
        entry = response.model_version_status.add()
        entry.version = servable.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(servable.state)
        entry.status.error_code = servable.error_code.value[0]
        entry.status.error_message = servable.error_message
    return response
