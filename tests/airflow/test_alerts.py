"""The alerts, received for real on loopback: a local SMTP server (aiosmtpd) and a local HTTP receiver standing in
for a Slack incoming webhook, reached through the connections statistics_alerts_smtp and statistics_alerts_slack.

- a failed day through `airflow dags test` (the DAG's on_failure_callback, run in process): the day, the run and
  each failed shop with its reason, read from the day's report, and no token, R2 secret or webhook secret;
- a run that failed before its report, and no channel configured at all (the callback itself, in process);
- the Deadline Alert under the real scheduler, dag-processor and api-server (LocalExecutor): a day whose deadline
  (STATISTICS_EXPORT_DEADLINE_HOURS=0: D+1 00:00) has passed fires at once, the executor runs the callback,
  and the dag-processor runs the failed day's notifier beside it.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from helpers import DAY, NOON_ON_DAY, add_event, product, register_shop
from include.statistics_export.alert_messages import Alert
from include.statistics_export.keys import report_key
from include.statistics_export.tasks import alert_channels, alerts
from local_stack.airflow_stack import airflow_stack, metadata_database, wait_until
from local_stack.services import S3_SECRET, Endpoints, create_bucket, free_port, scratch_database
from shopify_sandbox import ShopifySandbox

# The mail server asks for a login over plain SMTP: loopback only, so aiosmtpd's warning about it is not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

REVOKED_TOKEN = "shpat_secret_revoked_alerts_5d1e"
WEBHOOK_SECRET = f"XXwebhookSECRET{uuid.uuid4().hex[:8]}"
SMTP_LOGIN = "alerts"
SMTP_PASSWORD = f"smtpPASSWORD{uuid.uuid4().hex[:8]}"
RECIPIENT = "data-team@example.test"
SENDER = "statistics-export@example.test"
TOKEN_PREFIX = "shpat_"


@dataclass
class Inbox:
    """What a loopback receiver got: mails (SMTP) or request bodies (webhook), in order."""

    items: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item) -> None:
        with self.lock:
            self.items.append(item)

    def all(self) -> list:
        with self.lock:
            return list(self.items)

    def wait_for(self, matches: Callable, timeout: float, what: str):
        """Wait until an item matches; return it, or fail naming what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [item for item in self.all() if matches(item)]
            if found:
                return found[0]
            time.sleep(0.5)
        raise AssertionError(f"no {what} within {timeout:.0f}s; received: {self.all()!r}"[:4000])


def _check_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    """Accept the alert connection's login and password only."""
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_LOGIN.encode()
    return AuthResult(success=ok and auth_data.password == SMTP_PASSWORD.encode())


class _Mailbox:
    """An aiosmtpd handler keeping every accepted message."""

    def __init__(self, inbox: Inbox):
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.inbox.add({"rcpt": list(envelope.rcpt_tos), "from": envelope.mail_from, "message": message})
        return "250 Message accepted"


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1 (no TLS: loopback) asking for the connection's login, its inbox and port."""
    inbox = Inbox()
    controller = Controller(
        _Mailbox(inbox),
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=_check_login,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@contextmanager
def webhook_receiver() -> Iterator[tuple[Inbox, int]]:
    """An HTTP server on 127.0.0.1 answering every POST as Slack's incoming webhooks do (200 "ok")."""
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            inbox.add({"path": self.path, "content_type": self.headers.get("Content-Type"), "body": body})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook_inbox() -> Iterator[tuple[Inbox, int]]:
    with webhook_receiver() as received:
        yield received


def alert_connections(smtp_port: int, webhook_port: int) -> dict[str, str]:
    """The two alert connections as Airflow reads them from the environment (AIRFLOW_CONN_...)."""
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": smtp_port,
        "login": SMTP_LOGIN,
        "password": SMTP_PASSWORD,
        "extra": {
            "from_email": SENDER,
            "to": RECIPIENT,
            "disable_tls": True,
            "disable_ssl": True,
            "timeout": 10,
            "retry_limit": 0,
        },
    }
    slack = {
        "conn_type": "slackwebhook",
        "password": f"http://127.0.0.1:{webhook_port}/services/T0/B0/{WEBHOOK_SECRET}",
    }
    return {
        "AIRFLOW_CONN_STATISTICS_ALERTS_SMTP": json.dumps(smtp),
        "AIRFLOW_CONN_STATISTICS_ALERTS_SLACK": json.dumps(slack),
    }


def mail_text(item: dict) -> str:
    """Return a received mail's subject and body as the reader sees them (the HTML's <pre> as text)."""
    message: EmailMessage = item["message"]
    parts = [message["Subject"] or ""]
    for part in message.walk():
        if part.get_content_type() == "text/html":
            body = part.get_content().strip()
            assert body.startswith("<pre>") and body.endswith("</pre>"), body
            parts.append(html.unescape(body.removeprefix("<pre>").removesuffix("</pre>")))
    return "\n".join(parts)


def webhook_text(item: dict) -> str:
    """Return a received webhook POST's message text as Slack shows it (its three escapes undone)."""
    text = json.loads(item["body"])["text"]
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def assert_no_secret(text: str, *tokens: str) -> None:
    for secret in (*tokens, S3_SECRET, WEBHOOK_SECRET, SMTP_PASSWORD):
        assert secret not in text
    assert TOKEN_PREFIX not in text


def failing_world(db, sandbox) -> None:
    """Two shops: alpha exports, revoked's token is refused (the shop fails, and with it the run)."""
    register_shop(db, sandbox, "shop_alpha", [product(1, variants=2)])
    revoked = register_shop(db, sandbox, "shop_revoked", [product(20)], token=REVOKED_TOKEN)
    sandbox.revoke_token(revoked.domain)
    add_event(db, "shop_alpha", "1001", "IMPRESSION", NOON_ON_DAY)


# -- the failed day, through `airflow dags test` --------------------------------------------------------------


@pytest.mark.airflow
def test_a_failed_day_mails_and_posts_the_day_the_run_and_each_failed_shop_with_its_reason(
    db, sandbox, run_airflow, s3, endpoints, airflow_home, smtp_inbox, webhook_inbox
):
    failing_world(db, sandbox)
    (mails, smtp_port), (posts, webhook_port) = smtp_inbox, webhook_inbox
    result = run_airflow(
        "dags",
        "test",
        "product_statistics_export",
        DAY.isoformat(),
        extra_env=alert_connections(smtp_port, webhook_port),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "1 shop(s) failed" in output, output[-3000:]
    report = json.loads(s3.get_object(Bucket=endpoints.bucket, Key=report_key(DAY))["Body"].read())
    reason = report["failedShops"]["shop_revoked"]
    assert "rejected the access token" in reason
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1").fetchone()

    mail = mails.wait_for(lambda m: True, 30, "mail")
    assert mail["rcpt"] == [RECIPIENT] and mail["from"] == SENDER
    text = mail_text(mail)
    print("received mail:\n" + text)
    post = posts.wait_for(lambda p: True, 30, "webhook POST")
    assert post["path"] == f"/services/T0/B0/{WEBHOOK_SECRET}"
    posted = webhook_text(post)
    print("received webhook text:\n" + posted)

    for received in (text, posted):
        assert "Statistics export 2026-11-21: 1 shop(s) failed" in received
        assert f"Run: {run_id} (product_statistics_export)" in received
        assert f"- shop_revoked: {' '.join(reason.split())}" in received
        assert "shop_alpha" not in received  # it exported: not a failed shop
        assert "Report statistic-exports/_runs/20261121.json: 2 shop(s)" in received
        assert_no_secret(received, REVOKED_TOKEN, sandbox.shop("shop-alpha.myshopify.com").access_token)
    assert len(mails.all()) == 1 and len(posts.all()) == 1


# -- a day whose tasks did not finish is a failed day, through `airflow dags test` ------------------------------


def asset_events(airflow_home, bucket: str) -> list[str]:
    """The extras of every statistic-exports asset event this test's bucket's runs fired."""
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        return [extra for (extra,) in conn.execute("SELECT extra FROM asset_event") if bucket in extra]


def stored_report(s3, bucket: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=report_key(DAY))["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def try_numbers(airflow_home, task_id: str) -> list[tuple[int, str]]:
    """(try number, state) of a task's instances in the latest run of this Airflow home."""
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        return conn.execute(
            "SELECT try_number, state FROM task_instance WHERE task_id = ? "
            "AND run_id = (SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1)",
            (task_id,),
        ).fetchall()


def mail_only_and_quick_retries(smtp_port: int) -> dict[str, str]:
    """The mail alert connection alone, and a task's retries a second apart (its two retries spent quickly)."""
    smtp = alert_connections(smtp_port, free_port())["AIRFLOW_CONN_STATISTICS_ALERTS_SMTP"]
    return {"AIRFLOW_CONN_STATISTICS_ALERTS_SMTP": smtp, "STATISTICS_EXPORT_RETRY_DELAY_SECONDS": "1"}


@pytest.mark.airflow
def test_listing_the_shops_failing_on_every_try_fails_the_day_alerts_and_reports_nothing_ok(
    db, sandbox, run_airflow, s3, endpoints, airflow_home, smtp_inbox
):
    register_shop(db, sandbox, "shop_alpha", [product(1, variants=2)])
    with db.cursor() as cur:  # the app's table of shops is gone at 00:00, for every try of the task
        cur.execute('ALTER TABLE "ShopCredential" RENAME TO "ShopCredentialAway"')
    db.commit()
    mails, smtp_port = smtp_inbox
    env = mail_only_and_quick_retries(smtp_port)

    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat(), extra_env=env)
    output = result.stdout + result.stderr

    assert result.returncode != 0, output[-3000:]
    assert try_numbers(airflow_home, "list_active_shops") == [(3, "failed")]  # its two retries spent
    assert "list_active_shops did not finish, so the day's shops are unknown" in output
    assert stored_report(s3, endpoints.bucket) is None and asset_events(airflow_home, endpoints.bucket) == []
    text = mail_text(mails.wait_for(lambda m: True, 30, "mail"))
    assert "Statistics export 2026-11-21: the run failed" in text and "No report of the day is in the bucket" in text


@pytest.mark.airflow
def test_a_reconciliation_that_never_finishes_fails_the_day_and_the_report_says_so(
    db, sandbox, run_airflow, s3, endpoints, airflow_home, smtp_inbox
):
    register_shop(db, sandbox, "shop_alpha", [product(1, variants=2)])
    add_event(db, "shop_alpha", "1001", "IMPRESSION", NOON_ON_DAY)
    # The batch's rows are committed, and with them the rows' table goes away: the reconciliation's every try
    # fails (as a statement timing out would), after the shop exported.
    with db.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION hide_statistics() RETURNS trigger LANGUAGE plpgsql AS "
            '$$ BEGIN ALTER TABLE "VariantDailyStatistics" RENAME TO "VariantDailyStatisticsAway"; RETURN NULL; END $$'
        )
        cur.execute(
            'CREATE TRIGGER hide_statistics AFTER INSERT ON "StatisticsExport" '
            "FOR EACH STATEMENT EXECUTE FUNCTION hide_statistics()"
        )
    db.commit()
    mails, smtp_port = smtp_inbox
    env = mail_only_and_quick_retries(smtp_port)

    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat(), extra_env=env)
    output = result.stdout + result.stderr

    assert result.returncode != 0, output[-3000:]
    assert try_numbers(airflow_home, "reconcile") == [(3, "failed")]
    report = stored_report(s3, endpoints.bucket)
    assert report["ok"] is False and report["failedShops"] == {} and report["variants"] == 2
    assert report["failedTasks"] == {"reconcile": "the day's files, rows, events and catalog were not checked"}
    assert asset_events(airflow_home, endpoints.bucket) == []
    text = mail_text(mails.wait_for(lambda m: True, 30, "mail"))
    assert "Did not finish: reconcile: the day's files, rows, events and catalog were not checked" in text


@pytest.mark.airflow
def test_a_catalog_needing_more_batches_than_a_mapped_task_holds_is_cut_into_larger_ones_and_exported_whole(
    db, sandbox, run_airflow, s3, endpoints, airflow_home
):
    # 1,030 one-variant products at one variant a batch: 1,030 batches, over Airflow's default max_map_length of
    # 1,024 and over the 16 this test sets (the budget follows Airflow's setting).
    # A Plus shop's restore rate: the test waits on the cut, not on Shopify's cost bucket.
    catalog = [product(n, variants=1, images=0) for n in range(1, 1031)]
    register_shop(db, sandbox, "shop_huge", catalog, restore_rate=10_000)
    env = {
        "STATISTICS_EXPORT_BATCH_VARIANTS": "1",
        "STATISTICS_EXPORT_BULK_THRESHOLD": "5000",  # listed page by page (the bulk cut is bounded the same way)
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "16",
    }
    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat(), extra_env=env)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-3000:]
    batches = try_numbers(airflow_home, "export_product_batch")
    assert 1 < len(batches) <= 16 and {state for _, state in batches} == {"success"}
    report = stored_report(s3, endpoints.bucket)
    assert (
        report["ok"] is True
        and report["variants"] == 1030
        and report["perShop"]["shop_huge"]["batches"] == len(batches)
    )
    assert report["reconciliation"]["shop_huge"]["ok"] is True
    assert len(asset_events(airflow_home, endpoints.bucket)) == 1


# -- the notifier itself, in process ----------------------------------------------------------------------------


def failed_context(day: date, task_id: str = "list_active_shops", started: datetime | None = None) -> dict:
    """A DAG failure callback's context as Airflow builds it, reduced to what the notifier reads."""
    logical_date = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    run = SimpleNamespace(
        run_id=f"scheduled__{(logical_date + timedelta(days=1)).isoformat()}",
        run_type="scheduled",
        state="failed",
        logical_date=logical_date,
        run_after=logical_date + timedelta(days=1),
        start_date=started or datetime.now(timezone.utc) - timedelta(minutes=5),
        conf={},
    )
    ti = SimpleNamespace(task_id=task_id, map_index=-1)
    return {"dag_run": run, "run_id": run.run_id, "ti": ti, "reason": "task_failure"}


def test_a_run_that_failed_before_its_report_says_so_and_names_the_failed_task(
    connections, monkeypatch, smtp_inbox, webhook_inbox
):
    (mails, smtp_port), (posts, webhook_port) = smtp_inbox, webhook_inbox
    for name, value in alert_connections(smtp_port, webhook_port).items():
        monkeypatch.setenv(name, value)

    alerts.notify_failed_day(failed_context(DAY))

    for received in (
        mail_text(mails.wait_for(lambda m: True, 10, "mail")),
        webhook_text(posts.wait_for(lambda p: True, 10, "POST")),
    ):
        assert "Statistics export 2026-11-21: the run failed" in received
        assert "No report of the day is in the bucket (statistic-exports/_runs/20261121.json)" in received
        assert "Failed task: list_active_shops" in received
        assert_no_secret(received)


def test_an_earlier_runs_report_is_not_taken_for_this_runs(connections, s3, monkeypatch, webhook_inbox):
    posts, webhook_port = webhook_inbox
    monkeypatch.setenv(
        "AIRFLOW_CONN_STATISTICS_ALERTS_SLACK",
        alert_connections(0, webhook_port)["AIRFLOW_CONN_STATISTICS_ALERTS_SLACK"],
    )
    earlier = {"date": DAY.isoformat(), "ok": False, "shops": 1, "failedShops": {"shop_old": "an old reason"}}
    s3.put_object(Bucket=connections.bucket, Key=report_key(DAY), Body=json.dumps(earlier).encode())

    # This run started after the report was written: it failed before writing its own.
    alerts.notify_failed_day(
        failed_context(DAY, "plan_fleet", started=datetime.now(timezone.utc) + timedelta(minutes=1))
    )
    later = webhook_text(posts.wait_for(lambda p: True, 10, "POST"))
    assert "before this run started, by an earlier run: this run failed before writing its own" in later
    assert "shop_old" not in later and "Failed task: plan_fleet" in later

    # A run that started before the report was written: the report is its own, its failed shops are named.
    alerts.notify_failed_day(failed_context(DAY, "report"))
    own = webhook_text(posts.wait_for(lambda p: "shop_old" in webhook_text(p), 10, "second POST"))
    assert "Statistics export 2026-11-21: 1 shop(s) failed" in own and "- shop_old: an old reason" in own


def test_without_an_alert_connection_nothing_is_sent_and_nothing_fails(connections, monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_STATISTICS_ALERTS_SMTP", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_STATISTICS_ALERTS_SLACK", raising=False)
    caplog.set_level("INFO", logger=alert_channels.__name__)
    alerts.notify_failed_day(failed_context(DAY))
    assert alert_channels.send(Alert("subject", "text")) == []
    assert "no channel configured" in caplog.text


def test_a_channel_that_refuses_fails_the_callback_after_the_other_channel_got_it(
    connections, monkeypatch, webhook_inbox
):
    posts, webhook_port = webhook_inbox
    # The mail server's port is closed: the mail fails, the webhook still gets the alert, then the callback fails.
    for name, value in alert_connections(free_port(), webhook_port).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(alert_channels.AlertNotSent, match="statistics_alerts_smtp"):
        alert_channels.send(Alert("Statistics export 2026-11-21: test", "body"))
    assert "Statistics export 2026-11-21: test" in webhook_text(posts.wait_for(lambda p: True, 10, "POST"))


# -- the Deadline Alert, under the real scheduler -------------------------------------------------------------


@pytest.mark.scheduler
def test_a_day_past_its_deadline_is_alerted_by_the_scheduler_and_its_failure_by_the_dag_processor(
    pg_server_url, s3_endpoint, tmp_path, smtp_inbox, webhook_inbox
):
    (mails, smtp_port), (posts, webhook_port) = smtp_inbox, webhook_inbox
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    day = yesterday.isoformat()
    with scratch_database(pg_server_url, prefix="alerts") as app_db_url, ShopifySandbox() as sandbox:
        bucket = f"alerts-{uuid.uuid4().hex[:12]}"
        create_bucket(s3_endpoint, bucket)
        with psycopg.connect(app_db_url) as db:
            failing_world(db, sandbox)
        endpoints = Endpoints(app_db_url, s3_endpoint, bucket, sandbox.endpoint_template)
        # The DAG starts yesterday: unpausing it creates yesterday's scheduled run (logical date yesterday
        # 00:00). With 0 hours its deadline is today 00:00, already past: the scheduler's next loop misses it.
        extra_env = {
            "STATISTICS_EXPORT_START_DATE": day,
            "STATISTICS_EXPORT_DEADLINE_HOURS": "0",
            **alert_connections(smtp_port, webhook_port),
        }
        with (
            metadata_database(pg_server_url) as metadata_url,
            airflow_stack(
                endpoints, tmp_path / "airflow-home", metadata_url, "LocalExecutor", extra_env=extra_env
            ) as stack,
        ):
            stack.unpause()
            (run,) = wait_until(lambda: stack.dag_runs(), 120, "the catchup run")
            assert run["logical_date"].startswith(day) and run["run_type"] == "scheduled"
            try:
                late_mail = mails.wait_for(lambda m: "not exported by" in mail_text(m), 240, "deadline mail")
                late_post = posts.wait_for(lambda p: "not exported by" in webhook_text(p), 60, "deadline POST")
                finished = stack.wait_for_run(run["dag_run_id"], 300)
                failed_mail = mails.wait_for(lambda m: "shop(s) failed" in mail_text(m), 120, "failed-day mail")
                failed_post = posts.wait_for(lambda p: "shop(s) failed" in webhook_text(p), 60, "failed-day POST")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{stack.log_tails(80)}") from None
    assert finished["state"] == "failed"
    deadline = f"{datetime.now(timezone.utc).date().isoformat()} 00:00 UTC"
    for received in (mail_text(late_mail), webhook_text(late_post)):
        print("received deadline alert:\n" + received)
        assert f"Statistics export {day}: not exported by {deadline}" in received
        assert f"Run: {run['dag_run_id']}, " in received
        assert_no_secret(received, REVOKED_TOKEN)
    for received in (mail_text(failed_mail), webhook_text(failed_post)):
        print("received failed-day alert:\n" + received)
        assert f"Statistics export {day}: 1 shop(s) failed" in received
        assert f"Run: {run['dag_run_id']} (product_statistics_export)" in received
        assert "- shop_revoked: " in received and "rejected the access token" in received
        assert_no_secret(received, REVOKED_TOKEN)
