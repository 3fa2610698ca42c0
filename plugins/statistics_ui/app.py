"""The Statistics exports page: the last days' run reports and fleet charts, a day's shops with Retry and
download links signed at click time. Every route needs a signed-in user with access to the DAG, checked
by the api-server's own dependencies (the ones its REST API uses)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.configuration import conf
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from export_hooks.r2 import R2Hook
from include.statistics_export import settings as export_settings
from include.statistics_export.page.run_reports import DayReport, ReportCache, days_ending, read_report
from include.statistics_export.page.statistics_queries import fleet_days, shop_domains, shop_file, shop_files
from include.statistics_export.page.zip_stream import stream_zip
from include.statistics_export.utc import today
from statistics_ui.airflow_api import DAG_ID, AirflowApi, RetryRefused, RunInfo
from statistics_ui.charts import Series, chart
from statistics_ui.page_connections import page_db, page_store

ROOT_APP_KEY = "statistics_ui.root_app"
MAX_DAYS = 365
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
CAN_READ = Depends(requires_access_dag("GET", param_dag_id=DAG_ID))
CAN_READ_RUNS = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
CAN_RETRY = Depends(requires_access_dag("PUT", DagAccessEntity.TASK_INSTANCE, param_dag_id=DAG_ID))
_SHOP_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_REPORTS = ReportCache()


def base_path(request: Request) -> str:
    """Return this app's path as the browser sees it: ``[api] base_url``'s path, then the mount prefix."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def user_token(request: Request) -> str:
    """Return the credential the request was authenticated with (bearer header, else Airflow's cookie)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")


def airflow_api(request: Request) -> AirflowApi:
    """Return Airflow's REST API, called in process on the api-server's own app as the signed-in user."""
    root = request.scope.get(ROOT_APP_KEY)
    if root is None:
        raise HTTPException(500, "The statistics_ui root middleware is not installed")
    root_path = str(getattr(root, "root_path", "") or "")
    return AirflowApi(httpx.ASGITransport(app=root), user_token(request), root_path)


def report_store() -> R2Hook:
    """Return the bucket the export writes, read through the page's read-only R2 connection (one pooled
    connection per thread the report cache fetches with)."""
    return page_store(max_pool_connections=_REPORTS.threads)


def valid_day(day: str) -> date:
    """Return a YYYY-MM-DD path part as a day, or 404."""
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise HTTPException(404, "Not a day (YYYY-MM-DD)") from None


def valid_shop(shop_id: str) -> str:
    """Return a shop id as the export writes them, or 404 (nothing else reaches a query or a key)."""
    if not _SHOP_ID.fullmatch(shop_id):
        raise HTTPException(404, "Not a shop id")
    return shop_id


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(scheme: str, host: str | None, port: int | None) -> str:
    """Return an origin as browsers serialize it: lower case, the scheme's default port left out."""
    scheme, host = scheme.lower(), (host or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{scheme}://{host}:{port}"


def expected_origin(request: Request) -> str:
    """Return the origin the page is served from: ``[api] base_url``'s, else the request's scheme and Host."""
    base = urlsplit(conf.get("api", "base_url", fallback=None) or "")
    try:
        if base.scheme and base.hostname:
            return origin_of(base.scheme, base.hostname, base.port)
        host = urlsplit(f"//{request.headers.get('host', '')}")
        if host.hostname:
            return origin_of(request.url.scheme, host.hostname, host.port)
    except ValueError:  # a port that is not a number
        pass
    raise HTTPException(403, "Request refused: neither [api] base_url nor the Host header names this server")


def same_origin(request: Request) -> None:
    """Refuse a state-changing request unless its Origin header is the page's own origin.

    Browsers send Origin with every POST; a request without one, or with ``Origin: null`` (a sandboxed frame,
    a redirect across sites, a ``data:`` page), cannot prove where it came from and is refused too. The session
    cookie is SameSite=Lax as well.
    """
    origin = request.headers.get("origin", "").strip()
    if not origin or origin == "null":
        raise HTTPException(
            403,
            "Request refused: a Retry must be sent from the Statistics page itself "
            f"(the request carried {'Origin: null' if origin else 'no Origin header'})",
        )
    expected = expected_origin(request)
    if origin.lower() != expected:  # browsers send exactly scheme://host[:port], the host in lower case
        hint = untrusted_proxy_hint(request)
        raise HTTPException(
            403,
            f"Cross-origin request refused: Origin {origin[:100]!r} is not {expected!r}"
            + (f". {hint}" if hint else ""),
        )


def untrusted_proxy_hint(request: Request) -> str | None:
    """Say how to make Retry work when a proxy forwards another scheme than the one Airflow saw, and Airflow
    neither trusts the proxy nor knows its own address: behind a TLS-terminating ingress every Retry would be
    refused. With ``--proxy-headers`` (and FORWARDED_ALLOW_IPS naming the proxy), uvicorn already makes the
    request's scheme the forwarded one, so no hint is given."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if conf.get("api", "base_url", fallback=None) or not forwarded or forwarded == request.url.scheme:
        return None
    return (
        f"This page reached Airflow over {request.url.scheme} through a proxy that forwards {forwarded}, and Retry "
        "is refused until Airflow knows its own address: set [api] base_url to the address users open, or start "
        "the api-server with --proxy-headers and FORWARDED_ALLOW_IPS naming the proxy"
    )


def overview_context(days: int) -> dict[str, Any]:
    """Read the reports and the fleet's figures of the last ``days`` days (newest first in the table)."""
    listed = days_ending(today() - timedelta(days=1), days)
    reports = _REPORTS.reports(report_store(), listed)
    oldest_first = list(reversed(listed))
    with page_db() as conn:
        fleet = {f.day: f for f in fleet_days(conn, oldest_first[0], oldest_first[-1])}
    variants = [float(r.variants) if (r := reports.get(d)) else 0.0 for d in oldest_first]
    failed = [float(r.failed_shops) if (r := reports.get(d)) else 0.0 for d in oldest_first]
    charts = [
        chart(
            "Variants exported and failed shops per day",
            oldest_first,
            [Series("variants exported", "#2b6cb0", variants), Series("failed shops", "#c53030", failed, bars=True)],
        ),
        chart(
            "Fleet impressions, orders and revenue per day",
            oldest_first,
            [
                Series(
                    "impressions", "#2f855a", [float(fleet[d].impressions) if d in fleet else 0.0 for d in oldest_first]
                ),
                Series("orders", "#b7791f", [float(fleet[d].orders) if d in fleet else 0.0 for d in oldest_first]),
                Series("revenue", "#6b46c1", [float(fleet[d].revenue) if d in fleet else 0.0 for d in oldest_first]),
            ],
        ),
    ]
    return {"rows": [(d, reports.get(d)) for d in listed], "charts": charts, "days": days}


def day_context(day: date) -> dict[str, Any]:
    """Read a day's report and the domains of its shops."""
    report = read_report(report_store(), day)
    domains: dict[str, str] = {}
    if report is not None:
        with page_db() as conn:
            domains = shop_domains(conn, [s.shop_id for s in report.shop_days])
    return {"report": report, "domains": domains}


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a template with the app's base path."""
    context = {"base": base_path(request), "dag_id": DAG_ID, **context}
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def create_app() -> FastAPI:
    """Build the page's app (mounted by the plugin at /statistics-exports)."""
    app = FastAPI(title="Statistics exports", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse, dependencies=[CAN_READ])
    def overview(request: Request, days: int = Query(30, ge=1, le=MAX_DAYS)) -> HTMLResponse:
        return render(request, "overview.html", overview_context(days))

    async def day_page(
        request: Request, day: date, run: RunInfo | None, retried: str | None = None, in_tab: bool = False
    ) -> HTMLResponse:
        context = await run_in_threadpool(day_context, day)
        # The UI sandboxes a run tab's frame (no same-origin): a form posted from it would carry no session
        # cookie, so the tab links to the Browse page for Retry instead of offering a button that cannot work.
        nav_page = f"{base_path(request).rsplit('/', 1)[0]}/plugin/statistics-exports"
        extra = {"day": day, "run": run, "retried": retried, "in_tab": in_tab, "nav_page": nav_page}
        extra["proxy_hint"] = untrusted_proxy_hint(request)
        return render(request, "day.html", {**extra, **context})

    @app.get("/day/{day}", response_class=HTMLResponse, dependencies=[CAN_READ, CAN_READ_RUNS])
    async def day_view(
        request: Request,
        day: str,
        run_id: str | None = None,
        retried: str | None = None,
        api: AirflowApi = Depends(airflow_api),
    ) -> HTMLResponse:
        # The page says what was retried in its own words: only a valid shop id comes from the address.
        exported, retried_shop = valid_day(day), valid_shop(retried) if retried else None
        try:
            run = await (api.run(run_id) if run_id else api.run_of_day(exported))
        except RetryRefused:
            run = None
        return await day_page(request, exported, run, retried_shop)

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[CAN_READ, CAN_READ_RUNS])
    async def run_tab(request: Request, dag_id: str, run_id: str, api: AirflowApi = Depends(airflow_api)) -> Response:
        if dag_id != DAG_ID:
            return render(request, "message.html", {"message": f"This tab shows {DAG_ID} runs only."})
        try:
            run = await api.run(run_id)
        except RetryRefused as refused:
            return render(request, "message.html", {"message": str(refused)}, refused.status_code)
        return await day_page(request, run.day, run, in_tab=True)

    @app.post("/day/{day}/retry", dependencies=[CAN_READ, CAN_RETRY])
    async def retry(
        request: Request,
        day: str,
        shop_id: str = Form(...),
        run_id: str = Form(...),
        api: AirflowApi = Depends(airflow_api),
    ) -> Response:
        same_origin(request)
        exported, shop = valid_day(day), valid_shop(shop_id)

        def domain_of() -> str | None:
            with page_db() as conn:
                return shop_domains(conn, [shop]).get(shop)

        domain = await run_in_threadpool(domain_of)
        try:
            if domain is None:
                raise RetryRefused(f"Shop {shop} is not in the app's database", 404)
            await api.retry_shop(run_id, exported, shop, domain)
        except RetryRefused as refused:
            return render(request, "message.html", {"message": str(refused), "day": exported}, refused.status_code)
        target = f"{base_path(request)}/day/{exported.isoformat()}?run_id={quote(run_id)}&retried={quote(shop)}"
        return RedirectResponse(target, status_code=303)

    @app.get("/day/{day}/shops/{shop_id}/files", response_class=HTMLResponse, dependencies=[CAN_READ])
    def files(request: Request, day: str, shop_id: str) -> HTMLResponse:
        exported, shop = valid_day(day), valid_shop(shop_id)
        with page_db() as conn:
            listed = shop_files(conn, shop, exported)
        return render(request, "files.html", {"day": exported, "shop_id": shop, "files": listed})

    @app.get("/day/{day}/shops/{shop_id}/files/{variant_id}.{extension}", dependencies=[CAN_READ])
    def download(day: str, shop_id: str, variant_id: str, extension: str) -> Response:
        exported, shop = valid_day(day), valid_shop(shop_id)
        if extension not in ("csv", "json"):
            raise HTTPException(404, "Files are csv or json")
        with page_db() as conn:
            found = shop_file(conn, shop, exported, valid_shop(variant_id))
        if found is None:
            raise HTTPException(404, f"No file of variant {variant_id} of {shop} on {exported}")
        key = found.csv_key if extension == "csv" else found.json_key
        seconds = export_settings.load().download_link_seconds
        url = report_store().presigned_get_url(key, seconds, key.rsplit("/", 1)[-1])
        # Signed now, never stored: the link on the page never goes stale.
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})

    @app.get("/day/{day}/shops/{shop_id}.zip", dependencies=[CAN_READ])
    def shop_zip(day: str, shop_id: str) -> StreamingResponse:
        exported, shop = valid_day(day), valid_shop(shop_id)
        with page_db() as conn:
            listed = shop_files(conn, shop, exported)
        if not listed:
            raise HTTPException(404, f"No files of {shop} on {exported}")
        store = report_store()

        def entries() -> Iterator[tuple[str, str]]:
            for f in listed:
                for key in (f.csv_key, f.json_key):
                    yield f"{f.product_id}/{f.variant_id}/{key.rsplit('/', 1)[-1]}", key

        name = f"{shop}-{exported:%Y%m%d}.zip"
        headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
        return StreamingResponse(stream_zip(store, entries()), media_type="application/zip", headers=headers)

    return app


__all__ = ["create_app", "DayReport"]
