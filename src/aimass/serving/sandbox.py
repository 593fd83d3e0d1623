"""A throwaway model server: its own process, free loopback ports and a temporary folder.

Infra validation (:func:`aimass.serving.staging.infra_validate`) loads a staged SavedModel in
one before anything of production moves, and the compression stage
(:mod:`aimass.serving.latency`) times a candidate and its variants side by side in one. Both
start it with :func:`sandbox_server`, wait with :func:`wait_until` and read its log with
:meth:`Sandbox.tail`; the server is stopped and the folder removed when the block ends.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from aimass.serving.client import ServingClient

# TensorFlow's start-up chatter (absl/C++ lines) says nothing about the model.
_NOISE = ("WARNING: All log messages", "I0000", "W0000", "E0000")


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    client: ServingClient
    command: list[str]
    log_path: Path

    def tail(self, lines: int = 12) -> str:
        """The last lines of the server's log, TensorFlow's start-up noise left out."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join([line for line in text if not line.startswith(_NOISE)][-lines:])


@contextmanager
def sandbox_server(root: Path, server_args: Sequence[str]) -> Iterator[Sandbox]:
    """``python -m aimass.serving.server`` with ``server_args`` on two free loopback ports,
    logging to ``root/server.log``; stopped (SIGTERM, then SIGKILL) and ``root`` removed on
    exit."""
    from aimass.platform.ports import free_ports

    grpc_port, rest_port = free_ports(2)
    log_path = root / "server.log"
    command = [
        sys.executable,
        "-m",
        "aimass.serving.server",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        *server_args,
        "--file_system_poll_wait_seconds=0",
    ]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    client = ServingClient(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}")
    try:
        yield Sandbox(proc, client, command, log_path)
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    poll_s: float,
    on_timeout: Callable[[], NoReturn],
) -> None:
    """Call ``ready`` every ``poll_s`` until it is true; ``on_timeout`` raises after
    ``timeout_s``. An exception from ``ready`` ends the wait as raised."""
    Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(poll_s),
        retry=retry_if_result(lambda ok: not ok),
        retry_error_callback=lambda _: on_timeout(),
    )(ready)
