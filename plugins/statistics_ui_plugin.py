"""The "Statistics exports" page in Airflow's UI: a FastAPI app on the api-server, shown through external views.

The app itself (plugins/statistics_ui/) is imported on its first request only, so the scheduler, the
dag-processor and the workers, which load plugins too, never import the web stack.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/statistics-exports"
ROOT_APP_KEY = "statistics_ui.root_app"


def api_root_path() -> str:
    """Return the path of ``[api] base_url`` without its trailing slash ("" when the UI is served at /)."""
    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


class RootAppInScope:
    """Root middleware: leave the api-server's own app in the request scope, so the page can call Airflow's
    REST API in process, through the same routes, authentication and permissions as any client."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            scope.setdefault(ROOT_APP_KEY, scope.get("app"))
        await self.app(scope, receive, send)


class LazyStatisticsApp:
    """The page's FastAPI app, built on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            from statistics_ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class StatisticsExportsPlugin(AirflowPlugin):
    """Adds the Statistics exports page (nav, category Browse) and a tab on product_statistics_export runs."""

    name = "statistics_exports"
    fastapi_apps = [{"app": LazyStatisticsApp(), "url_prefix": URL_PREFIX, "name": "Statistics exports"}]
    fastapi_root_middlewares = [{"middleware": RootAppInScope, "args": [], "kwargs": {}, "name": "statistics_ui"}]
    external_views = [
        {
            "name": "Statistics exports",
            "href": f"{api_root_path()}{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "statistics-exports",
        },
        {
            "name": "Statistics export",
            "href": f"{api_root_path()}{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "statistics-exports-run",
        },
    ]
