"""What one request, one connection and all of them together may cost the model server.

`ServerLimits` holds every limit with its default; `add_limit_flags` and `limits_from_args`
make them server flags (documented in docs/serving.md). Each limit answers with its own status
and a message naming the flag, so an operator who meets one knows what to raise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from aimass.platform.errors import ConfigError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """Limits of the model server's front ends.

    Attributes:
        max_request_rows: rows (REST instances, the first dimension over gRPC) per request;
            more is REST 413 / gRPC RESOURCE_EXHAUSTED.
        rest_max_body_bytes: REST request body; more is 413, refused from its Content-Length
            before the body is read.
        rest_max_json_depth: nesting of a REST JSON body; deeper is 400, found before parsing.
        rest_max_header_bytes: REST request line and headers; more is 431.
        rest_header_timeout_s: time for the request line and headers to arrive; then 408.
        rest_body_timeout_s: time for the whole body to arrive once the headers are in; then 408.
        rest_keepalive_timeout_s: an idle kept-alive connection is closed after this long.
        rest_max_concurrent_requests: REST requests being answered at once (body read);
            more is 503 with ``Retry-After``.
        rest_max_inflight_body_bytes: body bytes held by requests still being read, all
            together; more is 503 with ``Retry-After``.
        rest_max_connections: open REST connections; a new one beyond is answered 503 and closed.
        grpc_max_receive_bytes: a gRPC request message; more is RESOURCE_EXHAUSTED (gRPC's
            ``grpc.max_receive_message_length``).
        grpc_max_concurrent_rpcs: gRPC calls being answered or queued; more is
            RESOURCE_EXHAUSTED.
        retry_after_s: the ``Retry-After`` sent with a 503.
    """

    max_request_rows: int = 10_000
    rest_max_body_bytes: int = 4 * MIB
    rest_max_json_depth: int = 32
    rest_max_header_bytes: int = 64 * 1024
    rest_header_timeout_s: float = 10.0
    rest_body_timeout_s: float = 30.0
    rest_keepalive_timeout_s: float = 30.0
    rest_max_concurrent_requests: int = 32
    rest_max_inflight_body_bytes: int = 64 * MIB
    rest_max_connections: int = 1024
    grpc_max_receive_bytes: int = 4 * MIB
    grpc_max_concurrent_rpcs: int = 256
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                flag = _FLAGS.get(spec.name, spec.name)
                raise ConfigError(f"{flag}={value!r}; use a number above 0")
        if self.rest_max_inflight_body_bytes < self.rest_max_body_bytes:
            raise ConfigError(
                f"--rest_max_inflight_body_bytes={self.rest_max_inflight_body_bytes} is below "
                f"--rest_max_body_bytes={self.rest_max_body_bytes}; one body must fit"
            )


# field -> (flag, help); the defaults come from ServerLimits.
_HELP = {
    "max_request_rows": (
        "--max_request_rows",
        "rows per Predict request (REST instances, gRPC first dimension); more: 413 / "
        "RESOURCE_EXHAUSTED",
    ),
    "rest_max_body_bytes": ("--rest_max_body_bytes", "REST request body bytes; more: 413"),
    "rest_max_json_depth": ("--rest_max_json_depth", "nesting of a REST JSON body; more: 400"),
    "rest_max_header_bytes": (
        "--rest_max_header_bytes",
        "REST request line and header bytes; more: 431",
    ),
    "rest_header_timeout_s": (
        "--rest_header_timeout_seconds",
        "seconds for a REST request's headers to arrive; then 408",
    ),
    "rest_body_timeout_s": (
        "--rest_body_timeout_seconds",
        "seconds for a REST request's whole body to arrive after its headers; then 408",
    ),
    "rest_keepalive_timeout_s": (
        "--rest_keepalive_timeout_seconds",
        "seconds an idle kept-alive REST connection stays open",
    ),
    "rest_max_concurrent_requests": (
        "--rest_max_concurrent_requests",
        "REST requests answered at once; more: 503 with Retry-After",
    ),
    "rest_max_inflight_body_bytes": (
        "--rest_max_inflight_body_bytes",
        "body bytes of REST requests still arriving, together; more: 503 with Retry-After",
    ),
    "rest_max_connections": (
        "--rest_max_connections",
        "open REST connections; a new one beyond is answered 503 and closed",
    ),
    "grpc_max_receive_bytes": (
        "--grpc_max_receive_message_bytes",
        "bytes of one gRPC request message; more: RESOURCE_EXHAUSTED",
    ),
    "grpc_max_concurrent_rpcs": (
        "--grpc_max_concurrent_rpcs",
        "gRPC calls answered or queued at once; more: RESOURCE_EXHAUSTED",
    ),
}
_FLAGS = {name: flag for name, (flag, _) in _HELP.items()}


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """The limits as flags (``--rest_max_body_bytes`` …), defaulting to `ServerLimits`."""
    group = parser.add_argument_group("limits (see docs/serving.md)")
    defaults = ServerLimits()
    for name, (flag, text) in _HELP.items():
        default = getattr(defaults, name)
        metavar = "SECONDS" if flag.endswith("_seconds") else "BYTES" if "bytes" in flag else "N"
        group.add_argument(
            flag,
            dest=f"limit_{name}",
            type=type(default),
            default=default,
            metavar=metavar,
            help=f"{text} (default {default})",
        )


def limits_from_args(args: argparse.Namespace) -> ServerLimits:
    """`ServerLimits` from the flags `add_limit_flags` added.

    Raises:
        ConfigError: a limit is not above 0, or the bodies in flight cannot hold one body.
    """
    return ServerLimits(**{name: getattr(args, f"limit_{name}") for name in _HELP})
