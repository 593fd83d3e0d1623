"""Airflow's HTTP and SMTP provider hooks, run on an alert connection that is already read.

:mod:`aimass.platform.alert_delivery` delivers alerts through these hooks. The connection
was read once, from ``AIRFLOW_CONN_<ID>`` or Airflow's lookup
(:func:`aimass.platform.alerts.get_connection`), so the hooks take it as given instead of
looking it up again. This module imports the providers (a few seconds on a cold start), so
it is imported only when an alert is delivered, never by a DAG file at parse time.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any, cast

from airflow.providers.common.compat.sdk import AirflowException
from airflow.providers.http.hooks.http import HttpHook
from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.sdk import Connection
from requests.auth import HTTPBasicAuth

# What an SMTP delivery raises when it fails: smtplib's errors, socket errors, and the
# hook's own when it cannot connect at all.
SMTP_ERRORS: tuple[type[Exception], ...] = (smtplib.SMTPException, OSError, AirflowException)


def _utf8_basic_auth(login: str | None = None, password: str | None = None) -> Any:
    """Basic auth with the credentials in UTF-8 (RFC 7617); requests would send Latin-1.

    HttpHook calls it without arguments for a connection without a login: no auth then.
    """
    if not login:
        return None
    return HTTPBasicAuth(login.encode("utf-8"), (password or "").encode("utf-8"))


class WebhookHook(HttpHook):
    """:class:`HttpHook` for one POST to ``connection``, whose host is the URL's base."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(method="POST", http_conn_id=connection.conn_id, auth_type=_utf8_basic_auth)
        self._connection = connection

    def get_connection(self, conn_id: str) -> Connection:  # type: ignore[override]
        """The connection given, not a second lookup (which the CLI has no Airflow for)."""
        return self._connection


class AlertSmtpHook(SmtpHook):
    """:class:`SmtpHook` on ``connection`` that sends a message it did not build.

    ``SmtpHook.send_email_smtp`` builds its own HTML message and drops the list of refused
    recipients that the delivery status reports, so only the hook's session is used: the
    connection (SSL or not, STARTTLS, timeout) and the login.
    """

    def __init__(self, connection: Connection, *, timeout_s: float) -> None:
        super().__init__(smtp_conn_id=connection.conn_id)
        self._connection = connection
        self._timeout_s = timeout_s

    def get_connection(self, conn_id: str) -> Connection:  # type: ignore[override]
        """The connection given, not a second lookup (which the CLI has no Airflow for)."""
        return self._connection

    @property
    def timeout(self) -> float:  # type: ignore[override]
        # The hook reads an int from the extra; smtplib takes fractions of a second as well.
        return self._timeout_s

    def send(
        self, msg: EmailMessage, sender: str, recipients: list[str]
    ) -> dict[str, tuple[int, bytes]]:
        """Open the session, send ``msg``, QUIT; the recipients the server refused.

        Raises:
            one of :data:`SMTP_ERRORS`: connecting, STARTTLS, the login or the send failed.
        """
        try:
            try:
                self.get_conn()
            except AirflowException as exc:
                # The hook's "Unable to connect to smtp server" hides why; smtplib's error
                # it replaced says it (e.g. "Connection unexpectedly closed: timed out").
                if isinstance(exc.__context__, smtplib.SMTPException):
                    raise exc.__context__ from None
                raise
            # smtplib's own exit: QUIT, then close, as a `with smtplib.SMTP(...)` block does.
            with cast(smtplib.SMTP, self._smtp_client) as client:
                return client.send_message(msg, from_addr=sender, to_addrs=recipients)
        finally:
            # A session that failed half-way (STARTTLS, login) is closed here.
            client_left: Any = self._smtp_client
            self._smtp_client = None
            if client_left is not None:
                client_left.close()
