"""Alerts through Airflow's own machinery: a notifier when a day's run fails, a Deadline Alert when a day is late.

- :func:`notify_failed_day` is the DAG's ``on_failure_callback`` (run by the dag-processor, or in process by
  ``airflow dags test``): it names the day, the run and the failed shops with their reasons, read from the
  day's report in the bucket (``keys.report_key``); without a report (the run failed before writing it) it
  says so and names the failed task.
- :func:`export_deadline` is the DAG's ``deadline``: day D's run must have succeeded by D+1 00:00 UTC plus
  ``STATISTICS_EXPORT_DEADLINE_HOURS`` (6: D+1 06:00), measured from the run's logical date (D 00:00 for a
  scheduled run). When it passes, the scheduler queues :func:`day_missed_deadline` on the executor. Not under
  ``airflow dags test``, which evaluates no deadline (and, in 3.3.2, fails a successful run that has one).

The channels are two optional connections, either or both; with neither, nothing is sent and nothing fails:

- ``statistics_alerts_smtp`` (conn_type ``smtp``, the smtp provider's ``SmtpNotifier``): host, port, login and
  password of the mail server; extra ``to`` (the recipients, a list or comma-separated) and ``from_email``,
  and the provider's own keys (``disable_tls``, ``disable_ssl``, ``timeout``, ``retry_limit``);
- ``statistics_alerts_slack`` (conn_type ``slackwebhook``, the slack provider's ``SlackWebhookNotifier``): the
  incoming webhook's URL in the password.

A message carries no secret: ids, the day, task ids, counts, and the report's reasons, which the export
already keeps free of tokens and keys. Nothing in it is rendered as a template (a reason may hold braces).
"""

from __future__ import annotations

import html
import json
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.sdk.exceptions import AirflowNotFoundException

from export_hooks.r2 import R2Hook
from include.statistics_export.keys import RUNS_PREFIX, report_key
from include.statistics_export.settings import Settings
from include.statistics_export.utc import as_utc, export_day

log = logging.getLogger(__name__)

SMTP_CONN_ID = "statistics_alerts_smtp"
SLACK_CONN_ID = "statistics_alerts_slack"
DEADLINE_NAME = "day exported"
# A report line per failed shop is enough to act on; a fleet-wide failure is summed up after this many.
LISTED_SHOPS = 50
REASON_CHARS = 300


class AlertNotSent(RuntimeError):
    """A configured channel refused or could not take the alert (the other channels were still tried)."""


@dataclass(frozen=True)
class Alert:
    """One message: a subject line and a plain-text body."""

    subject: str
    text: str


@dataclass(frozen=True)
class RunFacts:
    """What an alert says of a run, from either context Airflow hands a callback."""

    run_id: str
    run_type: str
    state: str
    logical_date: datetime | None
    run_after: datetime | None
    start_date: datetime | None
    conf: dict[str, Any]

    @property
    def day(self) -> date:
        """The day the run exports, as resolve_export_day computes it: the date param, else the logical date."""
        return export_day(self.conf.get("date"), self.logical_date, self.run_after)


@dataclass(frozen=True)
class StoredReport:
    """The day's report as the bucket holds it, with when it was written."""

    document: dict[str, Any]
    written_at: datetime | None


# -- reading the context -----------------------------------------------------------------------------------


def _field(source: Any, name: str) -> Any:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value:
        try:
            return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _text(value: Any) -> str:
    """Return an enum's value or anything else as text ('' for None)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def run_facts(context: Mapping[str, Any]) -> RunFacts:
    """Return the run of a callback's context: a DAG callback's (``dag_run`` an object) or a deadline's (a dict)."""
    dag_run = context.get("dag_run") or {}
    conf = _field(dag_run, "conf")
    return RunFacts(
        run_id=_text(_field(dag_run, "run_id") or _field(dag_run, "dag_run_id") or context.get("run_id")),
        run_type=_text(_field(dag_run, "run_type")),
        state=_text(_field(dag_run, "state")),
        logical_date=_instant(_field(dag_run, "logical_date") or context.get("logical_date")),
        run_after=_instant(_field(dag_run, "run_after")),
        start_date=_instant(_field(dag_run, "start_date")),
        conf=dict(conf) if isinstance(conf, Mapping) else {},
    )


def failed_task_ids(context: Mapping[str, Any]) -> list[str]:
    """Return the failed task the context names (the run's last failed task instance), if any."""
    ti = context.get("ti") or context.get("task_instance")
    task_id = _field(ti, "task_id") if ti is not None else None
    if not task_id:
        return []
    map_index = _field(ti, "map_index")
    return [f"{task_id}[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else str(task_id)]


# -- the day's report ----------------------------------------------------------------------------------------


def read_stored_report(day: date) -> StoredReport | None:
    """Return the day's report from the bucket (r2_default), or None when there is none."""
    store, key = R2Hook(), report_key(day)
    written = store.modified_under(RUNS_PREFIX).get(key)
    if written is None:
        return None
    try:
        with closing(store.open_object(key)) as body:
            document = json.load(body)
    except FileNotFoundError:
        return None
    return StoredReport(document if isinstance(document, dict) else {}, _instant(written))


def _report_of_run(day: date, run: RunFacts, absent: str) -> tuple[StoredReport | None, str]:
    """Return this run's report of the day (None when absent, unreadable or older than the run) and why not
    (``absent`` ends the sentence for a missing report)."""
    try:
        stored = read_stored_report(day)
    except Exception as exc:  # noqa: BLE001 - an alert must go out even when the bucket does not answer
        return None, f"The day's report could not be read from the bucket ({type(exc).__name__})."
    if stored is None:
        return None, f"No report of the day is in the bucket ({report_key(day)}): {absent}."
    if run.start_date and stored.written_at and stored.written_at < run.start_date:
        return None, (
            f"The day's report in the bucket ({report_key(day)}) was written at {_when(stored.written_at)}, "
            "before this run started, by an earlier run: this run failed before writing its own."
        )
    return stored, ""


def _when(value: datetime) -> str:
    return f"{as_utc(value):%Y-%m-%d %H:%M} UTC"


def _shop_lines(document: Mapping[str, Any]) -> list[str]:
    failed = {str(k): " ".join(str(v).split()) for k, v in dict(document.get("failedShops") or {}).items()}
    lines = [f"- {shop}: {reason[:REASON_CHARS]}" for shop, reason in sorted(failed.items())[:LISTED_SHOPS]]
    if len(failed) > LISTED_SHOPS:
        lines.append(f"- ... and {len(failed) - LISTED_SHOPS} more (the report lists them all)")
    return lines


def _report_lines(day: date, document: Mapping[str, Any]) -> list[str]:
    failed = dict(document.get("failedShops") or {})
    lines = [f"Failed shops ({len(failed)}):", *_shop_lines(document)] if failed else ["No shop is marked failed."]
    unfinished = dict(document.get("failedTasks") or {})
    lines += [
        f"Did not finish: {task}: {' '.join(str(why).split())[:REASON_CHARS]}"
        for task, why in sorted(unfinished.items())
    ]
    lines.append(
        f"Report {report_key(day)}: {document.get('shops', 0)} shop(s), {document.get('variants', 0)} variant(s), "
        f"{document.get('files', 0)} file(s)."
    )
    return lines


# -- the messages ----------------------------------------------------------------------------------------------


def failed_day_alert(
    run: RunFacts, stored: StoredReport | None, missing_why: str, failed_tasks: Iterable[str], dag_id: str = ""
) -> Alert:
    """Return the message of a failed run of a day."""
    day = run.day
    failed = dict((stored.document if stored else {}).get("failedShops") or {})
    what = f"{len(failed)} shop(s) failed" if failed else "the run failed"
    lines = [
        f"The statistics export of {day.isoformat()} failed.",
        f"Run: {run.run_id}" + (f" ({dag_id})" if dag_id else ""),
    ]
    if stored is not None:
        lines += _report_lines(day, stored.document)
    else:
        lines.append(missing_why)
    tasks = list(failed_tasks)
    if tasks:
        lines.append("Failed task: " + ", ".join(tasks))
    lines.append("Retry: clear the run's failed tasks, or trigger the day again with the date param.")
    return Alert(subject=f"Statistics export {day.isoformat()}: {what}", text="\n".join(lines))


def missed_deadline_alert(
    run: RunFacts, deadline_time: datetime | None, stored: StoredReport | None, missing_why: str
) -> Alert:
    """Return the message of a day not exported by its deadline."""
    day = run.day
    by = _when(deadline_time) if deadline_time else "its deadline"
    lines = [
        f"The statistics export of {day.isoformat()} has not succeeded by {by}.",
        f"Run: {run.run_id}, {run.state or 'state unknown'}.",
    ]
    lines += _report_lines(day, stored.document) if stored is not None else [missing_why]
    return Alert(subject=f"Statistics export {day.isoformat()}: not exported by {by}", text="\n".join(lines))


# -- the channels ----------------------------------------------------------------------------------------------


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


def _slack_escaped(text: str) -> str:
    """Escape the three characters Slack reads as markup (its message formatting rules)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _send_slack(alert: Alert, conn: Any, context: Mapping[str, Any]) -> None:
    text = f"*{_slack_escaped(alert.subject)}*\n{_slack_escaped(alert.text)}"
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


# -- what Airflow calls ------------------------------------------------------------------------------------------


def notify_failed_day(context: Mapping[str, Any]) -> None:
    """The DAG's on_failure_callback: tell the configured channels which day failed, and which shops and why."""
    run = run_facts(context)
    stored, missing_why = _report_of_run(run.day, run, "the run failed before writing it")
    dag = context.get("dag")
    alert = failed_day_alert(run, stored, missing_why, failed_task_ids(context), str(_field(dag, "dag_id") or ""))
    send(alert, context)


def day_missed_deadline(context: Mapping[str, Any] | None = None, **_: Any) -> None:
    """The Deadline Alert's callback (run on the executor): tell the channels the day is not exported in time.

    Not sent for a backfill run (an operator asked for those past days) nor when the day's report shows the
    day exported after all (by another run of the day).
    """
    context = context or {}
    run = run_facts(context)
    if run.run_type == "backfill":
        log.info("Run %s is a backfill of %s: no deadline alert", run.run_id, run.day)
        return
    deadline = context.get("deadline") or {}
    absent = "the run has not written it yet" if run.state in ("running", "queued") else "no run has written it"
    stored, missing_why = _report_of_run(run.day, replace(run, start_date=None), absent)
    if stored is not None and stored.document.get("ok") and not stored.document.get("failedShops"):
        log.info("Day %s is exported (its report is ok): no deadline alert for run %s", run.day, run.run_id)
        return
    send(missed_deadline_alert(run, _instant(_field(deadline, "deadline_time")), stored, missing_why), context)


def export_deadline(settings: Settings, argv: Sequence[str] | None = None) -> DeadlineAlert | None:
    """Return the DAG's Deadline Alert: day D's run must have succeeded by D+1 00:00 UTC + deadline_hours.

    None when the DAG is parsed by ``airflow dags test`` (``argv``, by default ``sys.argv``): that command runs
    no scheduler loop, so it never evaluates a deadline, and Airflow 3.3.2's ``dags test`` crashes at the end
    of a successful run of a DAG that has one (apache/airflow#73428: its in-memory DAG holds the encoded
    alerts where ``DagRun.update_state`` expects the ids of their ``deadline_alert`` rows). Drop this once a
    release carries the fix (apache/airflow#73430).
    """
    if under_dags_test(sys.argv if argv is None else argv):
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=deadline_interval(settings),
        callback=SyncCallback(day_missed_deadline),
        name=DEADLINE_NAME,
    )


def under_dags_test(argv: Sequence[str]) -> bool:
    """Tell whether a command line is ``airflow dags test ...`` (or ``python -m airflow dags test ...``)."""
    return list(argv[1:3]) == ["dags", "test"]


def deadline_interval(settings: Settings) -> timedelta:
    """Return how long after a run's logical date (D 00:00) day D must be exported: a day plus the hours."""
    return timedelta(days=1, hours=settings.deadline_hours)
