"""Alert delivery (aimass.platform.alerts) to a real webhook server and a real SMTP sink on loopback."""

from __future__ import annotations

import base64
import dataclasses
import json
import socketserver
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from testkit import free_port

from aimass.platform.alerts import read_alerts, send_alert
from aimass.platform.settings import Settings

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------- the webhook


class _Hook(ThreadingHTTPServer):
    status = 200
    received: list[dict[str, Any]]


class _HookHandler(BaseHTTPRequestHandler):
    server: _Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(
            {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
        )
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def hook() -> Iterator[_Hook]:
    server = _Hook(("127.0.0.1", 0), _HookHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _with_conn(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, conn_id: str, value: str
) -> Settings:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    return dataclasses.replace(settings, alert_conn_id=conn_id)


def test_a_webhook_gets_a_slack_text_and_the_structured_alert(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, hook: _Hook
) -> None:
    port = hook.server_address[1]
    conf = _with_conn(
        settings,
        monkeypatch,
        "ops_hook",
        f"http://bot:s%3Acret@127.0.0.1:{port}/hooks?endpoint=aimass",
    )
    record = send_alert(
        "rollback",
        "chicago_taxi rolled back: stable 5 -> 4 by ana",
        {"who": "ana", "reason": "complaints"},
        settings=conf,
        dag_id="aimass_rollback",
        run_id="manual__1",
    )
    [got] = hook.received
    assert got["path"] == "/hooks/aimass"
    assert got["headers"]["Content-Type"] == "application/json"
    assert got["headers"]["Authorization"] == "Basic " + base64.b64encode(b"bot:s:cret").decode()
    assert got["json"]["text"] == (
        "rollback: chicago_taxi rolled back: stable 5 -> 4 by ana "
        "(dag_id aimass_rollback, run_id manual__1)"
    )
    alert = got["json"]["alert"]
    assert alert["kind"] == "rollback" and alert["details"] == {
        "who": "ana",
        "reason": "complaints",
    }
    assert alert["id"] == record["id"]
    assert record["delivery"]["webhook"] == {
        "status": "sent",
        "conn_id": "ops_hook",
        "detail": "HTTP 200",
    }
    assert read_alerts(conf)[0]["delivery"]["webhook"]["status"] == "sent"


def test_a_webhook_json_connection_with_headers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, hook: _Hook
) -> None:
    value = json.dumps(
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": hook.server_address[1],
            "schema": "http",
            "extra": {"endpoint": "/in/alerts", "headers": {"X-Team": "ml"}},
        }
    )
    conf = _with_conn(settings, monkeypatch, "json_hook", value)
    record = send_alert("generic", "hello", {}, settings=conf)
    assert record["delivery"]["webhook"]["status"] == "sent"
    [got] = hook.received
    assert got["path"] == "/in/alerts" and got["headers"]["X-Team"] == "ml"
    assert "Authorization" not in got["headers"]


def test_a_webhook_error_is_recorded_not_raised(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    hook: _Hook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook.status = 500
    conf = _with_conn(
        settings, monkeypatch, "bad_hook", f"http://127.0.0.1:{hook.server_address[1]}"
    )
    record = send_alert("generic", "t", {}, settings=conf)
    status = record["delivery"]["webhook"]
    assert status["status"] == "failed" and "HTTP 500" in status["error"]
    assert read_alerts(conf)[0]["delivery"]["webhook"]["status"] == "failed"
    assert "not delivered through webhook" in caplog.text


def test_an_unreachable_webhook_is_recorded_not_raised(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _with_conn(settings, monkeypatch, "gone", f"http://127.0.0.1:{free_port()}/x")
    status = send_alert("generic", "t", {}, settings=conf)["delivery"]["webhook"]
    assert status["status"] == "failed" and "POST http://127.0.0.1:" in status["error"]
    assert "/x" not in status["error"]  # webhook paths are often the secret: never logged


# ---------------------------------------------------------------------------- the mail


class _Sink(socketserver.ThreadingTCPServer):
    """A minimal SMTP server: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT; keeps what it got."""

    daemon_threads = True
    allow_reuse_address = True
    credentials: tuple[str, str] | None = None
    messages: list[dict[str, Any]]


class _SinkHandler(socketserver.StreamRequestHandler):
    server: _Sink

    def _reply(self, text: str) -> None:
        self.wfile.write(text.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        sink = self.server
        current: dict[str, Any] = {"rcpt": [], "auth": None}
        self._reply("220 sink ESMTP")
        while line := self.rfile.readline():
            command = line.decode("utf-8").rstrip("\r\n")
            verb, _, arg = command.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self._reply("250-sink")
                self._reply("250-AUTH PLAIN")
                self._reply("250 8BITMIME")
            elif verb == "HELO":
                self._reply("250 sink")
            elif verb == "AUTH":
                _, _, token = arg.partition(" ")
                _, user, password = base64.b64decode(token).decode().split("\0")
                current["auth"] = (user, password)
                ok = sink.credentials in (None, (user, password))
                self._reply("235 ok" if ok else "535 bad credentials")
            elif verb == "MAIL":
                current["from"] = arg.split(":", 1)[1].strip().strip("<>").split(">")[0]
                self._reply("250 ok")
            elif verb == "RCPT":
                to = arg.split(":", 1)[1].strip().strip("<>")
                if to.startswith("nobody"):
                    self._reply("550 no such user")
                else:
                    current["rcpt"].append(to)
                    self._reply("250 ok")
            elif verb == "DATA":
                self._reply("354 end with .")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                sink.messages.append(
                    {**current, "message": message_from_bytes(data, policy=policy.default)}
                )
                current = {"rcpt": [], "auth": current["auth"]}
                self._reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self._reply("250 ok")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 not implemented")


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink(("127.0.0.1", 0), _SinkHandler)
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_an_smtp_connection_mails_the_alert(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, sink: _Sink
) -> None:
    sink.credentials = ("alerts@example.com", "s3cret/!")
    port = sink.server_address[1]
    uri = (
        f"smtp://{quote('alerts@example.com', safe='')}:{quote('s3cret/!', safe='')}"
        f"@127.0.0.1:{port}?to={quote('ops@example.com, ml@example.com')}"
        f"&from={quote('aimass@example.com')}"
    )
    conf = _with_conn(settings, monkeypatch, "mail", uri)
    record = send_alert(
        "candidate_rejected",
        "chicago_taxi candidate v7 rejected",
        {"failed_checks": ["overall auc 0.61 < bar 0.70"]},
        settings=conf,
        dag_id="aimass_retrain",
        run_id="manual__9",
    )
    assert record["delivery"]["email"]["status"] == "sent", record["delivery"]
    [got] = sink.messages
    assert got["auth"] == ("alerts@example.com", "s3cret/!")
    assert got["from"] == "aimass@example.com"
    assert got["rcpt"] == ["ops@example.com", "ml@example.com"]
    msg = got["message"]
    assert msg["Subject"] == (
        "[aimass] candidate_rejected: chicago_taxi candidate v7 rejected "
        "(dag_id aimass_retrain, run_id manual__9)"
    )
    assert msg["To"] == "ops@example.com, ml@example.com"
    body = msg.get_content()
    assert "overall auc 0.61 < bar 0.70" in body and record["id"] in body


def test_an_email_json_connection_with_a_list_of_recipients(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, sink: _Sink
) -> None:
    value = json.dumps(
        {
            "conn_type": "email",
            "host": "127.0.0.1",
            "port": sink.server_address[1],
            "extra": {"to": ["a@example.com", "nobody@example.com"]},
        }
    )
    conf = _with_conn(settings, monkeypatch, "mail_json", value)
    status = send_alert("generic", "t", {}, settings=conf)["delivery"]["email"]
    assert status == {
        "status": "sent",
        "conn_id": "mail_json",
        "detail": "mailed to 1 of 2 recipients",
    }
    [got] = sink.messages
    assert got["auth"] is None and got["rcpt"] == ["a@example.com"]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("to=ops%40example.com&starttls=true", "STARTTLS extension not supported"),
        ("to=nobody%40example.com", "SMTPRecipientsRefused"),
        ("", "no recipients"),
    ],
)
def test_an_smtp_failure_is_recorded_not_raised(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, sink: _Sink, query: str, error: str
) -> None:
    conf = _with_conn(
        settings, monkeypatch, "mail_bad", f"smtp://127.0.0.1:{sink.server_address[1]}?{query}"
    )
    record = send_alert("generic", "t", {}, settings=conf)
    status = record["delivery"]["email"]
    assert status["status"] == "failed" and error in status["error"], status
    assert read_alerts(conf)[0]["delivery"]["email"]["status"] == "failed"
    assert sink.messages == []


def test_wrong_smtp_credentials_are_recorded_not_raised(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, sink: _Sink
) -> None:
    sink.credentials = ("u", "right")
    conf = _with_conn(
        settings,
        monkeypatch,
        "mail_auth",
        f"smtp://u:wrong@127.0.0.1:{sink.server_address[1]}?to=ops%40example.com",
    )
    status = send_alert("generic", "t", {}, settings=conf)["delivery"]["email"]
    assert status["status"] == "failed" and "535" in status["error"]
    assert "wrong" not in status["error"]
