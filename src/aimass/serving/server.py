"""A local TF-Serving-compatible model server (the embedded default; see docs/architecture.md §2).

It implements the part of TensorFlow Serving's API that AI Mass uses, with TF Serving's own
protos, flags, base path layout and `models.config`, so the rollout client works unchanged
against the official image:

- gRPC ``PredictionService`` (Predict, GetModelMetadata) and ``ModelService`` (GetModelStatus,
  HandleReloadConfigRequest): `aimass.serving.grpc_api`;
- REST ``GET /v1/models/<m>[/versions/<v>|/labels/<l>][/metadata]`` and
  ``POST /v1/models/<m>[/versions/<v>|/labels/<l>]:predict`` (``instances`` and ``inputs``):
  `aimass.serving.rest_api`;
- Prometheus metrics at ``GET /monitoring/prometheus/metrics`` on the REST port (TF Serving's
  path; see `aimass.serving.metrics` for the families);
- optional server-side batching of Predict (``--enable_batching``,
  ``--batching_parameters_file``; see `aimass.serving.batching`).

Models are loaded, labelled and unloaded by `aimass.serving.manager.ModelManager`. What a
request, a connection and all of them together may cost is bounded (`aimass.serving.limits`,
flags documented in docs/serving.md), callers' mistakes are refused with a message saying what
to fix, and reloads over gRPC are confined to a serving root, a port of their own, or off. Run
the server as ``python -m aimass.serving.server --model_config_file models.config --port 8500
--rest_api_port 8501``, or in-process with `ModelServer`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path

import grpc
from tensorflow_serving.config import model_server_config_pb2

from aimass.platform.errors import ConfigError, ServingError
from aimass.platform.settings import Settings
from aimass.serving.batching import Batcher, BatchingOptions, read_batching_parameters
from aimass.serving.config import read_config, single_model_config
from aimass.serving.frontend import Frontend
from aimass.serving.grpc_api import ControlPlane, start_grpc_server
from aimass.serving.http_server import RestServer
from aimass.serving.limits import ServerLimits, add_limit_flags, limits_from_args
from aimass.serving.manager import ModelManager, default_base_root
from aimass.serving.request_log import RequestLog
from aimass.serving.rest_api import RestApi
from aimass.serving.servables import ServableError
from aimass.serving.tensors import fill_tensor_proto, tensor_to_ndarray

# Names other modules and tests import from here.
__all__ = [
    "Batcher",
    "BatchingOptions",
    "ModelServer",
    "ServableError",
    "ServerLimits",
    "fill_tensor_proto",
    "main",
    "parse_args",
    "read_batching_parameters",
    "single_model_config",
    "tensor_to_ndarray",
]

logger = logging.getLogger(__name__)


class ModelServer:
    """The model server in-process: `start()` loads the config and binds the ports, `stop()` ends it.

    Args:
        config: the initial config; read from `config_file` when omitted.
        config_file: a text-format `models.config`, re-read when it changes.
        host: interface to bind (loopback by default).
        grpc_port: gRPC port; 0 picks a free one (see `grpc_port` after `start()`).
        rest_port: REST port; 0 picks a free one, None disables REST.
        poll_seconds: how often to re-read the config file and rescan base paths; 0 disables.
        max_workers: gRPC threads (requests answered at once over gRPC).
        batching: server-side batching of Predict requests; None (the default) runs each
            request on its own, as TF Serving without ``--enable_batching``.
        request_log: records a sample of the Predict requests' features under its directory
            (``aimass.serving.request_log.RequestLog``); None (the default) records nothing.
        limits: what a request and a connection may cost (`ServerLimits`' defaults when None).
        control_plane: whether HandleReloadConfigRequest is served at all.
        control_host, control_port: serve it on its own gRPC address instead of the main port
            (which then refuses it); None keeps it on the main port, as TF Serving.
        model_base_root: a reload's base paths must resolve under this folder; None: the
            folder holding the initial config's base paths, else ``Settings.serving_base``.

    Metrics are served on the REST port at ``GET /monitoring/prometheus/metrics``.
    """

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig | None = None,
        *,
        config_file: str | Path | None = None,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        rest_port: int | None = 0,
        poll_seconds: float = 2.0,
        max_workers: int = 8,
        batching: BatchingOptions | None = None,
        request_log: RequestLog | None = None,
        limits: ServerLimits | None = None,
        control_plane: bool = True,
        control_host: str | None = None,
        control_port: int | None = None,
        model_base_root: str | Path | None = None,
    ) -> None:
        if config is None and config_file is None:
            raise ConfigError("ModelServer needs a config or a config_file; pass one of them")
        self.limits = limits or ServerLimits()
        self.manager = ModelManager()
        self.frontend = Frontend(self.manager, request_log=request_log, limits=self.limits)
        self.request_log = request_log
        self.metrics = self.frontend.metrics
        self.batching = batching
        self._initial = config
        self._config_file = Path(config_file) if config_file is not None else None
        self._config_text: bytes | None = None
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self._poll_seconds = poll_seconds
        self._max_workers = max_workers
        self.control_plane = control_plane
        self.control_host = control_host or host
        self.control_port = control_port
        self.model_base_root = Path(model_base_root) if model_base_root is not None else None
        self._grpc: grpc.Server | None = None
        self._control: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._rest_pool: futures.ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def start(self) -> ModelServer:
        """Load the initial config (every model needs an AVAILABLE version), then open the ports.

        Raises:
            ConfigError: the config file is missing or invalid.
            ServingError: the config is rejected, a model has no loadable version, or a port
                cannot be bound.
        """
        config = self._initial if self._initial is not None else self._read_config_file()
        try:
            self.manager.apply(config)
        except ServableError as exc:
            raise ServingError(f"model server config rejected: {exc.message}") from exc
        failed = self.manager.unavailable(config)
        if failed:
            raise ServingError(
                f"{len(failed)} model(s) did not become available: {', '.join(failed)}; "
                "check the base paths and the SavedModels (python -m aimass.serving.server logs "
                "the load errors)"
            )
        if self.model_base_root is None:
            self.model_base_root = default_base_root(config) or Settings.from_env().serving_base
        if self.batching is not None:
            self.frontend.batcher = Batcher(self.batching, observe=self.frontend.observe_batch)
            logger.info("batching Predict requests: %s", self.batching)
        if self.request_log is not None:
            self.request_log.start()
        self._start_grpc()
        if self.rest_port is not None:
            self._rest_pool = futures.ThreadPoolExecutor(
                self.limits.rest_max_concurrent_requests, thread_name_prefix="rest"
            )
            api = RestApi(self.frontend, self.limits, self._rest_pool)
            self._rest = RestServer(api.app, self.host, self.rest_port, self.limits).start()
            self.rest_port = self._rest.port
        if self._poll_seconds > 0:
            self._spawn("model-server-poll", self._poll_loop)
        logger.info(
            "model server up: gRPC on %s, REST on %s, control plane %s",
            self.grpc_target,
            self.rest_url if self.rest_port is not None else "(disabled)",
            self._control_description(),
        )
        return self

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving (in-flight requests get `grace` seconds) and unload every model."""
        self._stopping.set()
        if self._rest is not None:
            self._rest.stop(grace)
            self._rest = None
        for server in (self._grpc, self._control):
            if server is not None:
                server.stop(grace).wait()
        self._grpc = self._control = None
        if self._rest_pool is not None:
            self._rest_pool.shutdown(wait=False, cancel_futures=True)
            self._rest_pool = None
        if self.frontend.batcher is not None:
            self.frontend.batcher.stop()
            self.frontend.batcher = None
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self.request_log is not None:
            self.request_log.stop()  # persists the last requests
        self.manager.unload_all()
        logger.info("model server stopped")

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read_config_file(self) -> model_server_config_pb2.ModelServerConfig:
        assert self._config_file is not None
        config = read_config(self._config_file)
        self._config_text = self._config_file.read_bytes()
        return config

    def _start_grpc(self) -> None:
        root = self.model_base_root
        separate = self.control_plane and self.control_port is not None
        refusal = "the control plane is off (--control_plane=off); edit the models.config file"
        if separate:  # bound first, so the main port's refusal names the port it got
            self._control, self.control_port = start_grpc_server(
                self.frontend,
                f"{self.control_host}:{self.control_port}",
                limits=self.limits,
                max_workers=2,
                control=ControlPlane(True, root),
                predictions=False,
                flag="--control_port",
            )
            refusal = (
                f"HandleReloadConfigRequest is served on the control port "
                f"{self.control_host}:{self.control_port} (--control_port), not here"
            )
        main = ControlPlane(self.control_plane and not separate, root, refusal)
        self._grpc, self.grpc_port = start_grpc_server(
            self.frontend,
            f"{self.host}:{self.grpc_port}",
            limits=self.limits,
            max_workers=self._max_workers,
            control=main,
        )

    def _control_description(self) -> str:
        if not self.control_plane:
            return "off"
        where = (
            f"{self.control_host}:{self.control_port}"
            if self.control_port is not None
            else "the gRPC port"
        )
        return f"on {where}, base paths under {self.model_base_root}"

    def _spawn(self, name: str, target: Callable[[], object]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self._poll_once()
            except Exception:
                logger.exception("model server poll failed; retrying in %.1f s", self._poll_seconds)

    def _poll_once(self) -> None:
        if self._config_file is not None:
            text: bytes | None
            try:
                text = self._config_file.read_bytes()
            except FileNotFoundError:
                text = self._config_text  # a rewrite in progress; keep the current config
            if text is not None and text != self._config_text:
                self._config_text = text
                logger.info("config file %s changed; applying it", self._config_file)
                try:
                    self.manager.apply(read_config(self._config_file))
                except (ServableError, ConfigError) as exc:
                    logger.error("ignoring the new %s: %s", self._config_file, exc)
        self.manager.sync()


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aimass.serving.server",
        description="Local TF-Serving-compatible model server (flags as tensorflow_model_server).",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0 picks a free one)")
    parser.add_argument(
        "--rest_api_port", type=int, default=0, help="REST port; 0 disables REST, as in TF Serving"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--model_config_file", help="text-format ModelServerConfig (models.config)")
    parser.add_argument("--model_name", default="default", help="single model mode: its name")
    parser.add_argument(
        "--model_base_path",
        help="single model mode: folder of integer versions (serves the latest)",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=2.0,
        help="seconds between base path rescans (and config file re-reads); 0 disables",
    )
    parser.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=None,
        help="seconds between config file re-reads (defaults to --file_system_poll_wait_seconds)",
    )
    parser.add_argument(
        "--grpc_max_threads", type=int, default=8, help="gRPC threads answering requests"
    )
    parser.add_argument(
        "--enable_batching",
        action="store_true",
        help="batch concurrent Predict requests for the same model version and signature",
    )
    parser.add_argument(
        "--batching_parameters_file",
        help="text-format BatchingParameters (max_batch_size, batch_timeout_micros, "
        "max_enqueued_batches, num_batch_threads); needs --enable_batching",
    )
    parser.add_argument(
        "--request_log_dir",
        help="record a sample of Predict requests' features as <dir>/<model>/recent.parquet "
        "(off when omitted)",
    )
    parser.add_argument(
        "--request_log_sample",
        type=float,
        default=None,
        help="share 0..1 of requests recorded (default AIMASS_REQUEST_LOG_SAMPLE, 0.1)",
    )
    parser.add_argument(
        "--request_log_rows",
        type=int,
        default=None,
        help="recent rows kept per model (default AIMASS_REQUEST_LOG_ROWS, 10000)",
    )
    parser.add_argument(
        "--request_log_flush_seconds",
        type=float,
        default=30.0,
        help="seconds between writes of the recorded requests",
    )
    parser.add_argument(
        "--request_log_max_bytes",
        type=int,
        default=RequestLog.DEFAULT_MAX_BYTES,
        help="memory the recorded requests may hold, all models together (oldest dropped)",
    )
    control = parser.add_argument_group("control plane (HandleReloadConfigRequest)")
    control.add_argument(
        "--control_plane",
        choices=("on", "off"),
        default="on",
        help="off: reloads only through the models.config file",
    )
    control.add_argument(
        "--control_port",
        type=int,
        default=None,
        help="serve reloads on this gRPC port only (the main port refuses them); "
        "default: the main port, as TF Serving",
    )
    control.add_argument("--control_host", default=None, help="interface of --control_port")
    control.add_argument(
        "--model_base_root",
        default=None,
        help="a reload's base paths must lie under this folder (default: the folder of the "
        "config's base paths, else the platform's serving folder)",
    )
    add_limit_flags(parser)
    args = parser.parse_args(argv)
    if bool(args.model_config_file) == bool(args.model_base_path):
        parser.error("pass exactly one of --model_config_file or --model_base_path")
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching_parameters_file needs --enable_batching")
    if args.grpc_max_threads < 1:
        parser.error(f"--grpc_max_threads={args.grpc_max_threads}; use at least 1")
    if args.control_port is not None and args.control_port == args.port != 0:
        parser.error("--control_port must differ from --port (or be left out)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    poll = args.file_system_poll_wait_seconds
    if args.model_config_file and args.model_config_file_poll_wait_seconds is not None:
        poll = args.model_config_file_poll_wait_seconds or poll
    batching = None
    request_log = None
    try:
        limits = limits_from_args(args)
        if args.enable_batching:
            batching = (
                read_batching_parameters(args.batching_parameters_file)
                if args.batching_parameters_file
                else BatchingOptions()
            )
        if args.request_log_dir:
            settings = Settings.from_env()
            request_log = RequestLog(
                args.request_log_dir,
                sample=settings.request_log_sample
                if args.request_log_sample is None
                else args.request_log_sample,
                max_rows=settings.request_log_rows
                if args.request_log_rows is None
                else args.request_log_rows,
                flush_seconds=args.request_log_flush_seconds,
                max_bytes=args.request_log_max_bytes,
            )
    except ConfigError as exc:
        logger.error("%s", exc)
        return 1
    server = ModelServer(
        single_model_config(args.model_name, args.model_base_path)
        if args.model_base_path
        else None,
        config_file=args.model_config_file,
        host=args.host,
        grpc_port=args.port,
        rest_port=args.rest_api_port or None,
        poll_seconds=poll,
        max_workers=args.grpc_max_threads,
        batching=batching,
        request_log=request_log,
        limits=limits,
        control_plane=args.control_plane == "on",
        control_host=args.control_host,
        control_port=args.control_port,
        model_base_root=args.model_base_root,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except (ServingError, ConfigError) as exc:
        logger.error("%s", exc)
        server.stop(grace=0)
        return 1
    while not stop.wait(0.5):
        pass
    logger.info("signal received; shutting down")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
