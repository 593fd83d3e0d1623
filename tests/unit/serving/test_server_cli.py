"""The model server's command line (aimass.serving.server.parse_args / main) and its limit flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.serving.limits import ServerLimits, limits_from_args
from aimass.serving.server import main, parse_args

pytestmark = pytest.mark.unit


def test_the_limits_default_to_server_limits_and_each_has_a_flag() -> None:
    args = parse_args(["--model_config_file", "m.config"])
    assert limits_from_args(args) == ServerLimits()
    assert args.control_plane == "on" and args.control_port is None
    args = parse_args(
        [
            "--model_config_file=m.config",
            "--max_request_rows=50",
            "--rest_max_body_bytes=1000",
            "--rest_max_inflight_body_bytes=5000",
            "--rest_max_json_depth=8",
            "--rest_max_header_bytes=4096",
            "--rest_header_timeout_seconds=1.5",
            "--rest_body_timeout_seconds=2.5",
            "--rest_keepalive_timeout_seconds=3",
            "--rest_max_concurrent_requests=4",
            "--rest_max_connections=9",
            "--grpc_max_receive_message_bytes=2048",
            "--grpc_max_concurrent_rpcs=7",
            "--control_plane=off",
            "--request_log_max_bytes=99",
        ]
    )
    assert limits_from_args(args) == ServerLimits(
        max_request_rows=50,
        rest_max_body_bytes=1000,
        rest_max_inflight_body_bytes=5000,
        rest_max_json_depth=8,
        rest_max_header_bytes=4096,
        rest_header_timeout_s=1.5,
        rest_body_timeout_s=2.5,
        rest_keepalive_timeout_s=3.0,
        rest_max_concurrent_requests=4,
        rest_max_connections=9,
        grpc_max_receive_bytes=2048,
        grpc_max_concurrent_rpcs=7,
    )
    assert args.control_plane == "off" and args.request_log_max_bytes == 99


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rest_max_body_bytes=0"], "--rest_max_body_bytes=0; use a number above 0"),
        (["--rest_body_timeout_seconds=-1"], "--rest_body_timeout_seconds=-1.0"),
        (
            ["--rest_max_body_bytes=10", "--rest_max_inflight_body_bytes=5"],
            "one body must fit",
        ),
    ],
)
def test_a_bad_limit_names_its_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        limits_from_args(parse_args(["--model_config_file=m.config", *argv]))


def test_main_refuses_a_bad_limit_before_starting(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--model_config_file=m.config", "--max_request_rows=0"]) == 1
    assert "--max_request_rows=0" in caplog.text


def test_the_control_port_cannot_be_the_grpc_port() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--model_config_file=m.config", "--port=9000", "--control_port=9000"])


def test_the_stacks_model_server_confines_reloads_to_the_serving_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aimass.stack.services import definitions

    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path))
    settings = Settings.from_env()
    argv = definitions(settings)["model-server"].argv
    args = parse_args(argv[argv.index("aimass.serving.server") + 1 :])
    assert args.model_base_root == str(settings.serving_base)
    assert args.control_plane == "on" and args.port == settings.serving_grpc_port
