"""Airflow's REST API, called in process as the signed-in user: a run, its task instances, and clearing
exactly one shop's failed task instances (with their downstream) in it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx

from include.statistics_export.utc import export_day

DAG_ID = "product_statistics_export"
FAILED_STATES = ("failed", "upstream_failed")
UNFINISHED_RUN_STATES = ("queued", "running")


class RetryRefused(Exception):
    """A retry that must not happen; the message says why, for the operator."""

    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message)
        self.status_code = status_code


def names_shop(label: str | None, domain: str) -> bool:
    """Tell whether a task instance's label (``domain``, ``domain · batch k/n``, or a list of packed shops'
    domains) names this shop's domain as a whole word (``a.myshopify.com`` is not in ``aa.myshopify.com``)."""
    if not label or not domain:
        return False
    return re.search(rf"(?<![\w.-]){re.escape(domain)}(?![\w.-])", label, flags=re.IGNORECASE) is not None


def shop_failed_pairs(task_instances: list[dict[str, Any]], domain: str) -> list[list[Any]]:
    """Return the ``[task_id, map_index]`` of the run's failed task instances whose label names the shop."""
    return [
        [ti["task_id"], ti["map_index"]]
        for ti in task_instances
        if ti.get("state") in FAILED_STATES and names_shop(ti.get("rendered_map_index"), domain)
    ]


def clear_body(run_id: str, pairs: list[list[Any]]) -> dict[str, Any]:
    """Return the clearTaskInstances body: these task instances and their downstream, for real."""
    return {
        "dry_run": False,
        "dag_run_id": run_id,
        "task_ids": pairs,
        "include_downstream": True,
        "include_upstream": False,
        "only_failed": False,
        "reset_dag_runs": True,
    }


@dataclass(frozen=True)
class RunInfo:
    """What the page shows of a run."""

    run_id: str
    state: str
    day: date


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def run_info(run: dict[str, Any]) -> RunInfo:
    """Return a run's id, state and the day it exports (the same rule the DAG applies)."""
    conf = run.get("conf") or {}
    day = export_day(conf.get("date"), _instant(run.get("logical_date")), _instant(run.get("run_after")))
    return RunInfo(str(run["dag_run_id"]), str(run.get("state") or ""), day)


class AirflowApi:
    """The REST API (``/api/v2``) of the api-server serving this request, as the user who made it."""

    def __init__(self, transport: httpx.AsyncBaseTransport, token: str, root_path: str = "") -> None:
        self.transport = transport
        self.token = token
        self.root_path = root_path.rstrip("/")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(transport=self.transport, base_url="http://airflow", timeout=60) as client:
            response = await client.request(method, f"{self.root_path}/api/v2{path}", headers=headers, **kwargs)
        if response.status_code in (401, 403):
            raise RetryRefused("Airflow refused this for your user: you need edit access to its task instances", 403)
        if response.status_code == 404:
            raise RetryRefused("Airflow does not know this run", 404)
        if response.status_code >= 400:
            raise RetryRefused(f"Airflow answered HTTP {response.status_code}: {response.text[:300]}", 502)
        return response.json()

    async def run(self, run_id: str) -> RunInfo:
        """Return one run of the DAG."""
        return run_info(await self._call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}"))

    async def run_of_day(self, day: date) -> RunInfo | None:
        """Return the latest run whose logical date is the day, or None."""
        stamp = f"{day.isoformat()}T00:00:00Z"
        params = {"logical_date_gte": stamp, "logical_date_lte": stamp, "limit": 100}
        runs = (await self._call("GET", f"/dags/{DAG_ID}/dagRuns", params=params)).get("dag_runs") or []
        return run_info(runs[-1]) if runs else None

    async def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        """Return every task instance of a run, mapped ones included, page by page."""
        found: list[dict[str, Any]] = []
        while True:
            params = {"limit": 1000, "offset": len(found)}
            page = await self._call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params=params)
            found += page.get("task_instances") or []
            if not page.get("task_instances") or len(found) >= int(page.get("total_entries") or 0):
                return found

    async def retry_shop(self, run_id: str, day: date, shop_id: str, domain: str) -> list[list[Any]]:
        """Clear the shop's failed task instances of the run, and their downstream; return what was asked.

        Refused when the run is not that day's, is still queued or running, or has no failed task of the shop.
        """
        run = await self.run(run_id)
        if run.day != day:
            raise RetryRefused(f"Run {run_id} exports {run.day}, not {day}")
        if run.state in UNFINISHED_RUN_STATES:
            raise RetryRefused(f"Run {run_id} is still {run.state}: retry once it has finished")
        pairs = shop_failed_pairs(await self.task_instances(run_id), domain)
        if not pairs:
            raise RetryRefused(f"Shop {shop_id} ({domain}) has no failed task in run {run_id}: nothing to retry")
        await self._call("POST", f"/dags/{DAG_ID}/clearTaskInstances", json=clear_body(run_id, pairs))
        return pairs
