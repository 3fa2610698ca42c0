"""The alerts' channels, Airflow's own notifiers: two optional connections, either or both; with neither, nothing is
sent and nothing fails.

- ``statistics_alerts_smtp`` (conn_type ``smtp``, the smtp provider's ``SmtpNotifier``): host, port, login and
  password of the mail server; extra ``to`` (the recipients, a list or comma-separated) and ``from_email``,
  and the provider's own keys (``disable_tls``, ``disable_ssl``, ``timeout``, ``retry_limit``);
- ``statistics_alerts_slack`` (conn_type ``slackwebhook``, the slack provider's ``SlackWebhookNotifier``): the
  incoming webhook's URL in the password.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from include.statistics_export.alert_messages import Alert

log = logging.getLogger(__name__)

SMTP_CONN_ID = "statistics_alerts_smtp"
SLACK_CONN_ID = "statistics_alerts_slack"


class AlertNotSent(RuntimeError):
    """A configured channel refused or could not take the alert (the other channels were still tried)."""


def _connection(conn_id: str) -> Any | None:
    """Return a connection, or None when it is not defined (that channel is off)."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _mail_addresses(conn: Any) -> tuple[str, list[str]]:
    """Return the sender and the recipients the SMTP connection's extra names (from_email, to)."""
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    to = extra.get("to") or []
    recipients = [str(p).strip() for p in (to.split(",") if isinstance(to, str) else to) if str(p).strip()]
    sender = str(extra.get("from_email") or "").strip()
    if not recipients or not sender:
        raise ValueError(f"Connection {SMTP_CONN_ID!r} needs `to` and `from_email` in its extra")
    return sender, recipients


def _send_mail(alert: Alert, conn: Any, context: Mapping[str, Any]) -> None:
    sender, recipients = _mail_addresses(conn)
    # Every field given: the notifier renders nothing (a DAG callback's context may hold a serialized DAG,
    # which has no template environment).
    # Imported when an alert is sent: every task process imports the task layer, few ever send mail.
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        to=recipients,
        from_email=sender,
        subject=alert.subject,
        html_content=f"<pre>{html.escape(alert.text, quote=False)}</pre>",
        smtp_conn_id=SMTP_CONN_ID,
    )
    notifier.notify(dict(context))  # notify, not __call__: the message is not a template


def slack_escaped(text: str) -> str:
    """Escape the three characters Slack reads as markup (its message formatting rules)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _send_slack(alert: Alert, conn: Any, context: Mapping[str, Any]) -> None:
    text = f"*{slack_escaped(alert.subject)}*\n{slack_escaped(alert.text)}"
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    notifier = SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN_ID, text=text)
    notifier.notify(dict(context))


CHANNELS = ((SMTP_CONN_ID, _send_mail), (SLACK_CONN_ID, _send_slack))


def send(alert: Alert, context: Mapping[str, Any] | None = None) -> list[str]:
    """Send an alert through every configured channel and return their connection ids (none configured: []).

    A channel that fails does not stop the others; the failure is raised afterwards as AlertNotSent, so
    Airflow records the callback as failed.
    """
    sent: list[str] = []
    failed: list[str] = []
    for conn_id, deliver in CHANNELS:
        conn = _connection(conn_id)
        if conn is None:
            continue
        try:
            deliver(alert, conn, context or {})
        except Exception as exc:  # noqa: BLE001 - try every channel, then report them all
            log.error("Alert %r not sent through %s: %s: %s", alert.subject, conn_id, type(exc).__name__, exc)
            failed.append(conn_id)
        else:
            sent.append(conn_id)
    if not sent and not failed:
        log.info("Alert %r: no channel configured (%s, %s), nothing sent", alert.subject, SMTP_CONN_ID, SLACK_CONN_ID)
    else:
        log.info("Alert %r sent through %s", alert.subject, ", ".join(sent) or "no channel")
    if failed:
        raise AlertNotSent(f"Alert {alert.subject!r} not sent through {', '.join(failed)}")
    return sent
