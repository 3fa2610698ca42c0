"""The Statistics exports page through Airflow's own api-server app (plugins loaded by Airflow, its auth manager,
its REST API in process), with FastAPI's TestClient, on a real PostgreSQL and a real S3 server over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import uuid
import zipfile
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import sql

from include.statistics_export.keys import export_key, report_key
from include.statistics_export.utc import today
from local_stack.services import S3_SECRET, connection_env, with_user

YESTERDAY = today() - timedelta(days=1)
HOSTILE_SHOP = "shop_<script>alert(1)</script>"
HOSTILE_REASON = '<img src=x onerror="alert(2)"> token rejected & "quoted"'
PREFIX = "/statistics-exports"
ORIGIN = "http://airflow.test"  # the test client's: [api] base_url is not set in this process, so the Host's
GRANTS = Path(__file__).resolve().parents[2] / "docs" / "least_privilege.sql"


@pytest.fixture(scope="module")
def airflow_app(airflow_home):
    """Airflow's api-server app as `airflow api-server` builds it, with SimpleAuthManager and this repo's plugins."""
    patch = pytest.MonkeyPatch()
    patch.setenv(
        "AIRFLOW__CORE__AUTH_MANAGER", "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    )
    patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
    patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", uuid.uuid4().hex * 2)
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    app = create_app()
    yield app
    purge_cached_app()
    patch.undo()


def token(role: str | None, name: str | None = None) -> str:
    """A JWT the api-server accepts, for a SimpleAuthManager user of this role (None: a user without any)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name or str(role), role=role))


@pytest.fixture
def client(airflow_app, connections):
    with TestClient(airflow_app, base_url="http://airflow.test", follow_redirects=False) as test_client:
        yield test_client


def as_user(role: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role)}"}


def posting(role: str | None, origin: str | None = ORIGIN) -> dict[str, str]:
    """Headers of a form POST by a user of ``role``, sent from ``origin`` as a browser would (None: no Origin)."""
    return {**as_user(role), **({"Origin": origin} if origin is not None else {})}


def put_report(s3, bucket: str, day, document: dict) -> None:
    s3.put_object(Bucket=bucket, Key=report_key(day), Body=json.dumps(document).encode())


def failed_day_report(day) -> dict:
    return {
        "date": day.isoformat(),
        "ok": False,
        "shops": 2,
        "variants": 7,
        "files": 14,
        "filesUnchanged": 2,
        "imagesBackedUp": 3,
        "imagesFailed": 1,
        "rejectedEvents": 4,
        "failedShops": {HOSTILE_SHOP: HOSTILE_REASON},
        "perShop": {"shop_alpha": {"variants": 7, "batches": 2, "catalog_read": "pages", "seconds": 1.5}},
        "reconciliation": {"shop_alpha": {"shopId": "shop_alpha", "ok": True}},
    }


@pytest.fixture
def alpha_files(db, s3, connections):
    """shop_alpha's two variant files of yesterday, in the bucket and in its export rows."""
    bodies = {}
    with db.cursor() as cur:
        for variant in ("1001", "1002"):
            keys = {ext: export_key("shop_alpha", "1", variant, YESTERDAY, ext) for ext in ("csv", "json")}
            for ext, key in keys.items():
                bodies[key] = f"{ext} of {variant}\n".encode() * 1000
                s3.put_object(Bucket=connections.bucket, Key=key, Body=bodies[key])
            cur.execute(
                'INSERT INTO "StatisticsExport" (id, shop, "productId", "variantId", date, "csvR2Key", "jsonR2Key", '
                '"csvUrl", "jsonUrl", "metricsSnapshot", "imagesSnapshot", "exportedAt") '
                "VALUES (%s, 'shop_alpha', '1', %s, %s, %s, %s, '', '', '{}', '[]', now())",
                (uuid.uuid4().hex, variant, YESTERDAY, keys["csv"], keys["json"]),
            )
        cur.execute(
            'INSERT INTO "ShopCredential" (id, "shopDomain") VALUES (%s, %s)', ("shop_alpha", "shop-alpha.example")
        )
    db.commit()
    return bodies


ROUTES = [
    ("GET", f"{PREFIX}/", None),
    ("GET", f"{PREFIX}/day/{YESTERDAY}", None),
    ("GET", f"{PREFIX}/runs/another_dag/scheduled__x", None),  # the tab on another DAG's run
    ("GET", f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha/files", None),
    ("GET", f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha/files/1001.csv", None),
    ("GET", f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha.zip", None),
    ("POST", f"{PREFIX}/day/{YESTERDAY}/retry", {"shop_id": "shop_alpha", "run_id": "r"}),
]


@pytest.mark.parametrize(("method", "path", "form"), ROUTES)
def test_every_route_needs_a_signed_in_user_with_access(client, alpha_files, method, path, form):
    assert client.request(method, path, data=form).status_code == 401  # anonymous
    assert client.request(method, path, data=form, cookies={"_token": "forged"}).status_code == 403
    assert client.request(method, path, data=form, headers=as_user(None)).status_code == 403  # no role: no access
    allowed = client.request(method, path, data=form, headers=as_user("viewer"))
    if method == "POST":
        assert allowed.status_code == 403  # a viewer reads the DAG but may not clear its task instances
    else:
        assert allowed.status_code in (200, 307), allowed.text


def test_the_session_cookie_signs_in_like_the_ui_does(client):
    page = client.get(f"{PREFIX}/", cookies={"_token": token("viewer")})
    assert page.status_code == 200 and "Statistics exports" in page.text


def test_overview_shows_each_day_escapes_hostile_values_and_says_no_run(client, s3, connections, db):
    put_report(s3, connections.bucket, YESTERDAY, failed_day_report(YESTERDAY))
    ok_day = YESTERDAY - timedelta(days=1)
    put_report(s3, connections.bucket, ok_day, {**failed_day_report(ok_day), "ok": True, "failedShops": {}})
    with db.cursor() as cur:
        for n, day in enumerate((YESTERDAY, ok_day)):
            cur.execute(
                'INSERT INTO "VariantDailyStatistics" (id, shop, "productId", "variantId", date, impressions, orders, revenue) '
                "VALUES (%s, 'shop_alpha', '1', '1001', %s, %s, %s, %s)",
                (uuid.uuid4().hex, day, 10 + n, 2, Decimal("19.90")),
            )
    db.commit()

    page = client.get(f"{PREFIX}/?days=5", headers=as_user("viewer"))

    assert page.status_code == 200
    html = page.text
    assert html.count('<tr data-day="') == 5
    assert html.count("no run") == 3  # five days, two reports
    assert f'<tr data-day="{YESTERDAY}">' in html and "failed" in html
    assert "<svg" in html and "Fleet impressions, orders and revenue per day" in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert client.get(f"{PREFIX}/?days=366", headers=as_user("viewer")).status_code == 422


def test_a_day_page_escapes_what_the_report_says(client, s3, connections):
    put_report(s3, connections.bucket, YESTERDAY, failed_day_report(YESTERDAY))

    page = client.get(f"{PREFIX}/day/{YESTERDAY}", headers=as_user("viewer"))

    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "<img src=x" not in page.text
    assert "shop_&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; token rejected &amp; &#34;quoted&#34;" in page.text
    assert 'id="day-status"' in page.text and "failed" in page.text
    assert S3_SECRET not in page.text


def test_a_day_page_names_the_paused_shops(client, s3, connections):
    put_report(
        s3, connections.bucket, YESTERDAY, {**failed_day_report(YESTERDAY), "pausedShops": ["shop_<b>", "shop_p"]}
    )

    page = client.get(f"{PREFIX}/day/{YESTERDAY}", headers=as_user("viewer"))

    assert page.status_code == 200 and 'id="paused-shops"' in page.text
    assert 'data-paused="shop_p"' in page.text and "shop_&lt;b&gt;" in page.text and "shop_<b>" not in page.text


def test_a_day_without_a_report_says_no_run(client):
    page = client.get(f"{PREFIX}/day/2020-01-01", headers=as_user("viewer"))
    assert page.status_code == 200 and "no run" in page.text
    assert client.get(f"{PREFIX}/day/not-a-day", headers=as_user("viewer")).status_code == 404


def test_the_overview_loads_when_the_bucket_has_no_reports(client):
    page = client.get(f"{PREFIX}/", headers=as_user("viewer"))
    assert page.status_code == 200 and page.text.count("no run") == 30


def test_a_download_link_answers_with_a_url_signed_at_click_time(client, alpha_files, connections, monkeypatch):
    path = f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha/files/1002.json"
    listed = client.get(f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha/files", headers=as_user("viewer"))
    assert path in listed.text  # the page links to the route, never to a signed URL

    answer = client.get(path, headers=as_user("viewer"))
    assert answer.status_code == 307 and answer.headers["cache-control"] == "no-store"
    url = answer.headers["location"]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    key = export_key("shop_alpha", "1", "1002", YESTERDAY, "json")
    assert parts.path == f"/{connections.bucket}/{key}"
    assert query["X-Amz-Expires"] == ["3600"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Signature"][0] and S3_SECRET not in url
    assert f'filename="{YESTERDAY:%Y%m%d}.json"' in query["response-content-disposition"][0]
    assert requests.get(url, timeout=30).content == alpha_files[key]

    monkeypatch.setenv("STATISTICS_EXPORT_DOWNLOAD_LINK_SECONDS", "604800")
    again = client.get(path, headers=as_user("viewer")).headers["location"]
    assert parse_qs(urlsplit(again).query)["X-Amz-Expires"] == ["604800"]
    assert (
        client.get(f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha/files/9999.csv", headers=as_user("viewer")).status_code
        == 404
    )


def test_the_zip_of_a_shops_day_holds_every_file_byte_for_byte(client, alpha_files):
    answer = client.get(f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha.zip", headers=as_user("viewer"))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert {name: archive.read(name) for name in archive.namelist()} == {
        "/".join(key.split("/")[2:]): body for key, body in alpha_files.items()
    }


def test_retry_goes_to_airflows_rest_api_as_the_user_and_names_what_it_refuses(client, alpha_files):
    # The run does not exist in this metadata database: Airflow's REST API, called in process with the user's
    # token (or it would answer 401), says so, and the page says it.
    answer = client.post(
        f"{PREFIX}/day/{YESTERDAY}/retry", data={"shop_id": "shop_alpha", "run_id": "nope"}, headers=posting("admin")
    )
    assert answer.status_code == 404 and "Airflow does not know this run" in answer.text
    unknown = client.post(
        f"{PREFIX}/day/{YESTERDAY}/retry", data={"shop_id": "shop_zzz", "run_id": "nope"}, headers=posting("admin")
    )
    assert unknown.status_code == 404 and "not in the app" in unknown.text
    assert client.get(f"{PREFIX}/day/{YESTERDAY}/retry", headers=as_user("admin")).status_code == 405  # POST only


@pytest.mark.parametrize(
    ("origin", "refusal"),
    [
        (None, "no Origin header"),
        ("null", "Origin: null"),
        ("", "no Origin header"),
        ("https://evil.example", "Cross-origin request refused"),
        ("https://airflow.test", "Cross-origin request refused"),  # another scheme is another origin
        ("http://airflow.test:8080", "Cross-origin request refused"),  # and another port
        ("http://airflow.test.evil.example", "Cross-origin request refused"),
    ],
)
def test_a_retry_without_the_pages_own_origin_is_refused(client, alpha_files, origin, refusal):
    answer = client.post(
        f"{PREFIX}/day/{YESTERDAY}/retry",
        data={"shop_id": "shop_alpha", "run_id": "nope"},
        headers=posting("admin", origin),
    )
    assert answer.status_code == 403 and refusal in answer.json()["detail"], answer.text


def test_a_retry_must_come_from_the_base_urls_origin_when_it_is_set(client, alpha_files, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://Airflow.Example.com:443/team/airflow/")
    form = {"shop_id": "shop_alpha", "run_id": "nope"}
    own_host = client.post(f"{PREFIX}/day/{YESTERDAY}/retry", data=form, headers=posting("admin"))
    assert own_host.status_code == 403 and "'https://airflow.example.com'" in own_host.json()["detail"]
    right = client.post(
        f"{PREFIX}/day/{YESTERDAY}/retry", data=form, headers=posting("admin", "https://airflow.example.com")
    )
    assert right.status_code == 404 and "Airflow does not know this run" in right.text  # it went on to Airflow
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:8080")
    assert (
        client.post(
            f"{PREFIX}/day/{YESTERDAY}/retry", data=form, headers=posting("admin", "http://localhost:8080")
        ).status_code
        == 404
    )


def test_behind_a_tls_proxy_retry_works_once_airflow_trusts_the_proxy_and_the_page_says_how_until_then(
    airflow_app, alpha_files
):
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    retry, form = f"{PREFIX}/day/{YESTERDAY}/retry", {"shop_id": "shop_alpha", "run_id": "nope"}
    # The browser opened https://airflow.test; the ingress ended TLS and reached the api-server over http.
    through_proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    how = "set [api] base_url to the address users open, or start the api-server with --proxy-headers"
    with TestClient(airflow_app, base_url="http://airflow.test", follow_redirects=False) as untrusting:
        refused = untrusting.post(
            retry, data=form, headers={**posting("admin", "https://airflow.test"), **through_proxy}
        )
        assert refused.status_code == 403 and how in refused.json()["detail"], refused.text
        page = untrusting.get(f"{PREFIX}/day/{YESTERDAY}", headers={**as_user("viewer"), **through_proxy})
        assert page.status_code == 200 and 'id="proxy-hint"' in page.text and how in page.text
        direct = untrusting.get(f"{PREFIX}/day/{YESTERDAY}", headers=as_user("viewer"))
        assert 'id="proxy-hint"' not in direct.text  # no proxy, nothing to say
    # `airflow api-server --proxy-headers`: uvicorn's middleware, trusting the proxy (FORWARDED_ALLOW_IPS).
    trusting = ProxyHeadersMiddleware(airflow_app, trusted_hosts="*")
    with TestClient(trusting, base_url="http://airflow.test", follow_redirects=False) as behind:
        answer = behind.post(retry, data=form, headers={**posting("admin", "https://airflow.test"), **through_proxy})
        assert answer.status_code == 404 and "Airflow does not know this run" in answer.text  # it went on to Airflow
        page = behind.get(f"{PREFIX}/day/{YESTERDAY}", headers={**as_user("viewer"), **through_proxy})
        assert page.status_code == 200 and 'id="proxy-hint"' not in page.text


def test_the_day_page_shows_no_notice_text_from_the_address(client, s3, connections):
    put_report(s3, connections.bucket, YESTERDAY, failed_day_report(YESTERDAY))
    hostile = "<script>alert(3)</script> your session expired, sign in at https://evil.example"
    page = client.get(f"{PREFIX}/day/{YESTERDAY}", params={"notice": hostile}, headers=as_user("viewer"))
    assert page.status_code == 200
    assert "alert(3)" not in page.text and "evil.example" not in page.text and 'class="notice"' not in page.text

    retried = client.get(f"{PREFIX}/day/{YESTERDAY}", params={"retried": "shop_alpha"}, headers=as_user("viewer"))
    assert retried.status_code == 200
    assert (
        '<p class="notice">Retrying shop_alpha: its failed tasks and everything after them were cleared.</p>'
        in retried.text
    )
    refused = client.get(f"{PREFIX}/day/{YESTERDAY}", params={"retried": hostile}, headers=as_user("viewer"))
    assert refused.status_code == 404 and "alert(3)" not in refused.text


def test_the_page_works_under_a_path_prefix(airflow_app, connections):
    from statistics_ui_plugin import RootAppInScope

    from statistics_ui.app import create_app

    outer = FastAPI(root_path="/team/airflow")
    outer.mount(PREFIX, create_app())
    outer.add_middleware(RootAppInScope)
    with TestClient(outer, root_path="/team/airflow") as prefixed:
        page = prefixed.get(f"/team/airflow{PREFIX}/?days=2", headers=as_user("viewer"))
    assert page.status_code == 200, page.text
    assert f'href="/team/airflow{PREFIX}/day/{YESTERDAY}"' in page.text
    assert f'href="/team/airflow{PREFIX}/"' in page.text


def test_the_plugin_views_carry_the_base_url_path(monkeypatch):
    from statistics_ui_plugin import api_root_path

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://example.com/team/airflow/")
    assert api_root_path() == "/team/airflow"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:8080")
    assert api_root_path() == ""


# The clear call: what the page sends to POST /api/v2/dags/{dag_id}/clearTaskInstances, seen by a recording
# transport answering as Airflow would (the real call runs in tests/airflow/test_statistics_ui_browser.py).


class RecordingAirflow(httpx.AsyncBaseTransport):
    def __init__(self, run_state: str, task_instances: list[dict]) -> None:
        self.run_state, self.tis, self.sent = run_state, task_instances, []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        path = request.url.path
        if path.endswith("/clearTaskInstances"):
            return httpx.Response(200, json={"task_instances": [], "total_entries": 0})
        if path.endswith("/taskInstances"):
            return httpx.Response(200, json={"task_instances": self.tis, "total_entries": len(self.tis)})
        run = {
            "dag_run_id": "scheduled__x",
            "state": self.run_state,
            "logical_date": f"{YESTERDAY}T00:00:00Z",
            "conf": {},
        }
        return httpx.Response(200, json=run)


TASK_INSTANCES = [
    {"task_id": "shop.start_catalog_read", "map_index": 0, "state": "success", "rendered_map_index": "a.myshopify.com"},
    {"task_id": "shop.start_catalog_read", "map_index": 1, "state": "failed", "rendered_map_index": "b.myshopify.com"},
    {"task_id": "shop.start_catalog_read", "map_index": 2, "state": "failed", "rendered_map_index": "bb.myshopify.com"},
    {
        "task_id": "export_product_batch",
        "map_index": 4,
        "state": "failed",
        "rendered_map_index": "b.myshopify.com · batch 2/3",
    },
    {
        "task_id": "export_product_batch",
        "map_index": 5,
        "state": "failed",
        "rendered_map_index": "a.myshopify.com, b.myshopify.com",
    },
    {"task_id": "report", "map_index": -1, "state": "failed", "rendered_map_index": None},
]


def test_retry_clears_exactly_the_shops_failed_task_instances_with_downstream():
    from statistics_ui.airflow_api import AirflowApi

    airflow = RecordingAirflow("failed", TASK_INSTANCES)
    api = AirflowApi(airflow, "the-users-token", "/team/airflow")
    pairs = asyncio.run(api.retry_shop("scheduled__x", YESTERDAY, "shop_b", "b.myshopify.com"))

    clear = airflow.sent[-1]
    assert (clear.method, clear.url.path) == (
        "POST",
        "/team/airflow/api/v2/dags/product_statistics_export/clearTaskInstances",
    )
    assert clear.headers["authorization"] == "Bearer the-users-token"
    assert json.loads(clear.content) == {
        "dry_run": False,
        "dag_run_id": "scheduled__x",
        "task_ids": [["shop.start_catalog_read", 1], ["export_product_batch", 4], ["export_product_batch", 5]],
        "include_downstream": True,
        "include_upstream": False,
        "only_failed": False,
        "reset_dag_runs": True,
    }
    assert pairs == json.loads(clear.content)["task_ids"]


@pytest.mark.parametrize(
    ("state", "shop_domain", "refusal"),
    [
        ("running", "b.myshopify.com", "still running"),
        ("queued", "b.myshopify.com", "still queued"),
        ("failed", "a.myshopify.com", "no failed task"),
    ],
)
def test_retry_refuses_a_running_run_or_a_shop_that_did_not_fail(state, shop_domain, refusal):
    from statistics_ui.airflow_api import AirflowApi, RetryRefused

    airflow = RecordingAirflow(state, [ti for ti in TASK_INSTANCES if ti["map_index"] != 5])
    with pytest.raises(RetryRefused, match=refusal):
        asyncio.run(AirflowApi(airflow, "t").retry_shop("scheduled__x", YESTERDAY, "shop", shop_domain))
    assert not [r for r in airflow.sent if r.method == "POST"]


def test_the_report_cache_serves_a_rewritten_report_and_forgets_nothing_else(connections, s3):
    from export_hooks.r2 import R2Hook
    from include.statistics_export.page.run_reports import ReportCache

    cache, store = ReportCache(threads=4), R2Hook()
    older = YESTERDAY - timedelta(days=2)
    put_report(s3, connections.bucket, YESTERDAY, failed_day_report(YESTERDAY))
    put_report(s3, connections.bucket, older, {**failed_day_report(older), "ok": True, "failedShops": {}})
    first = cache.reports(store, [YESTERDAY, older, YESTERDAY - timedelta(days=1)])
    assert (first[YESTERDAY].ok, first[older].ok, first[YESTERDAY - timedelta(days=1)]) == (False, True, None)

    # A retry's run rewrites the day's report: the next page load shows the new one (its ETag changed).
    put_report(s3, connections.bucket, YESTERDAY, {**failed_day_report(YESTERDAY), "ok": True, "failedShops": {}})
    second = cache.reports(store, [YESTERDAY, older])
    assert second[YESTERDAY].ok is True and second[YESTERDAY].failed_shops == 0
    assert second[older] is first[older]  # unchanged: served from the cache, not fetched again


def test_a_retry_from_the_pages_origin_clears_the_shop_and_says_so_in_the_pages_words(airflow_app, db, connections):
    from statistics_ui_plugin import RootAppInScope

    from statistics_ui import app as page
    from statistics_ui.airflow_api import AirflowApi

    with db.cursor() as cur:
        cur.execute('INSERT INTO "ShopCredential" (id, "shopDomain") VALUES (%s, %s)', ("shop_b", "b.myshopify.com"))
    db.commit()
    airflow = RecordingAirflow("failed", TASK_INSTANCES)
    sub = page.create_app()
    sub.dependency_overrides[page.airflow_api] = lambda: AirflowApi(airflow, "the-users-token")
    outer = FastAPI()
    outer.mount(PREFIX, sub)
    outer.add_middleware(RootAppInScope)
    with TestClient(outer, base_url="http://airflow.test", follow_redirects=False) as browser:
        answer = browser.post(
            f"{PREFIX}/day/{YESTERDAY}/retry",
            data={"shop_id": "shop_b", "run_id": "scheduled__x"},
            headers=posting("admin"),
        )
        assert answer.status_code == 303, answer.text
        target = answer.headers["location"]
        assert target == f"{PREFIX}/day/{YESTERDAY}?run_id=scheduled__x&retried=shop_b"
        assert [r.url.path.rsplit("/", 1)[-1] for r in airflow.sent if r.method == "POST"] == ["clearTaskInstances"]
        shown = browser.get(target, headers=as_user("admin"))
    assert shown.status_code == 200
    assert "Retrying shop_b: its failed tasks and everything after them were cleared." in shown.text


# The page as its own least-privilege role (docs/least_privilege.sql's page role, run with psql as the README
# says) and its own read-only R2 key, with the export's connections broken: nothing of the page uses them.


def psql_binary() -> str:
    """Return a psql: the PATH's, else the one the embedded server's package ships."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        import pgserver
    except ImportError:
        pytest.skip("no psql on PATH and no pgserver")
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    if not bundled.exists():
        pytest.skip("no psql on PATH or in pgserver")
    return str(bundled)


@pytest.fixture
def page_connections(pg_server_url, app_db_url, connections, monkeypatch):
    """statistics_page_db as a new role granted by `psql -v page_role=<role> -f docs/least_privilege.sql`,
    r2_page with its own key id, and app_db and r2_default pointing nowhere."""
    role = f"page_ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        granted = subprocess.run(
            [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"page_role={role}", "-f", str(GRANTS)]
            + ["-d", app_db_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert granted.returncode == 0, granted.stderr
        page = connection_env(replace(connections, app_db_url=with_user(app_db_url, role), s3_key_id="page-read-key"))
        monkeypatch.setenv("AIRFLOW_CONN_STATISTICS_PAGE_DB", page["AIRFLOW_CONN_APP_DB"])
        monkeypatch.setenv("AIRFLOW_CONN_R2_PAGE", page["AIRFLOW_CONN_R2_DEFAULT"])
        nowhere = connection_env(
            replace(connections, app_db_url=f"{app_db_url}_gone", s3_endpoint="http://127.0.0.1:9")
        )
        monkeypatch.setenv("AIRFLOW_CONN_APP_DB", nowhere["AIRFLOW_CONN_APP_DB"])
        monkeypatch.setenv("AIRFLOW_CONN_R2_DEFAULT", nowhere["AIRFLOW_CONN_R2_DEFAULT"])
        yield role
    finally:
        with psycopg.connect(app_db_url, autocommit=True) as owner:
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_every_route_works_with_the_pages_own_role_and_read_only_key(
    alpha_files, page_connections, s3, connections, client, db
):
    put_report(s3, connections.bucket, YESTERDAY, failed_day_report(YESTERDAY))
    viewer = as_user("viewer")
    overview = client.get(f"{PREFIX}/?days=3", headers=viewer)
    assert overview.status_code == 200 and f'<tr data-day="{YESTERDAY}">' in overview.text
    day = client.get(f"{PREFIX}/day/{YESTERDAY}", headers=viewer)
    assert day.status_code == 200 and "shop-alpha.example" in day.text  # the domain, read as the page role
    assert "1001.csv" in client.get(f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha/files", headers=viewer).text
    link = client.get(f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha/files/1001.csv", headers=viewer)
    assert link.status_code == 307
    credential = parse_qs(urlsplit(link.headers["location"]).query)["X-Amz-Credential"][0]
    assert credential.startswith("page-read-key/")  # signed with r2_page's key, not r2_default's
    archive = client.get(f"{PREFIX}/day/{YESTERDAY}/shops/shop_alpha.zip", headers=viewer)
    assert archive.status_code == 200 and len(zipfile.ZipFile(io.BytesIO(archive.content)).namelist()) == 4
    retry = client.post(
        f"{PREFIX}/day/{YESTERDAY}/retry", data={"shop_id": "shop_alpha", "run_id": "nope"}, headers=posting("admin")
    )
    assert retry.status_code == 404 and "Airflow does not know this run" in retry.text  # the domain was read
    with db.cursor() as cur:
        cur.execute("SELECT has_column_privilege(%s, '\"Session\"', 'accessToken', 'SELECT')", (page_connections,))
        assert cur.fetchone()[0] is False
