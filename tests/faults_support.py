"""The fault tests' world: one shop exported undisturbed as the reference, and a proxy in front of R2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest.mock import patch
from urllib.parse import urlsplit

import psycopg
import pytest

from helpers import NOON_ON_DAY as NOON
from helpers import add_event, bucket_objects, product, register_shop, run_shop
from include.statistics_export.formats import RenderedFiles
from local_stack.fault_proxy import FaultProxy
from local_stack.services import Endpoints, connection_env, create_bucket, image_hosts_env, s3_client, scratch_database

REPO = Path(__file__).resolve().parents[1]
SHOP = "shop_a"
DOMAIN = "shop-a.myshopify.com"  # its myshopify domain, where the sandbox serves it
PUBLIC_BASE_URL = "https://files.example.test"  # the same object URLs whichever endpoint wrote them
TABLES = ("ProductImageBackup", "VariantDailyStatistics", "StatisticsExport")
# Moments, not content: they differ between any two runs and are left out of the comparison.
TIMESTAMP_COLUMNS = {"exportedAt", "backedUpAt", "contentHash"}


def catalog():
    """Four products: own and shared media, a product without images; 8 variants, 4 images, 21 objects (with the Parquet part)."""
    return [
        product(1, variants=2, images=2, own_media={2: [102]}),
        product(2, variants=1, images=1),
        product(3, variants=3, images=0),
        product(4, variants=2, images=1),
    ]


def seed(db, sandbox) -> None:
    """Register the shop and a day of events in one app database."""
    register_shop(db, sandbox, SHOP, catalog())
    add_event(db, SHOP, "1001", "IMPRESSION", NOON, event_id="e1")
    add_event(db, SHOP, "gid://shopify/ProductVariant/1001", "ADD_TO_CART", NOON, event_id="e2")
    add_event(db, SHOP, "2001", "IMPRESSION", NOON, event_id="e3")
    add_event(db, SHOP, "2001", "PURCHASE", NOON, Decimal("19.90"), event_id="e4")
    add_event(db, SHOP, "4002", "IMPRESSION", NOON, event_id="e5")


@dataclass(frozen=True)
class Snapshot:
    """A bucket and the output tables, with the moments of the run left out."""

    objects: dict[str, bytes]
    rows: dict[str, list[dict[str, Any]]]


def _without_moments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: None if k in TIMESTAMP_COLUMNS else _without_moments(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_moments(v) for v in value]
    return value


def snapshot(s3, bucket: str, db_url: str) -> Snapshot:
    """Read every object and every output row; check each export row's hash against the files in the bucket."""
    raw = bucket_objects(s3, bucket)
    objects = {
        key: json.dumps(_without_moments(json.loads(body)), sort_keys=True).encode() if key.endswith(".json") else body
        for key, body in raw.items()
    }
    rows: dict[str, list[dict[str, Any]]] = {}
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f'SELECT * FROM "{table}" ORDER BY id')
            names = [column.name for column in cur.description]
            records = [dict(zip(names, record)) for record in cur.fetchall()]
            if table == "StatisticsExport":
                for record in records:
                    files = RenderedFiles(raw[record["csvR2Key"]], raw[record["jsonR2Key"]])
                    assert record["contentHash"] == files.content_hash, f"stale hash for {record['csvR2Key']}"
            rows[table] = [_without_moments(record) for record in records]
    return Snapshot(objects, rows)


def database_name(db_url: str) -> str:
    """Return the database a URL points at."""
    return urlsplit(db_url).path.lstrip("/")


def output_table_locks(db_url: str, mode: str = "RowExclusiveLock") -> list[tuple[int, str, bool]]:
    """Return (pid, table, granted) for every lock of ``mode`` other sessions hold or await on the output tables."""
    # pg_class is per database: the lookup must run in the test's own database.
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT l.pid, c.relname, l.granted FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND c.relname = ANY(%s) AND l.mode = %s AND l.pid <> pg_backend_pid()",
            (list(TABLES), mode),
        ).fetchall()


def row_counts(db_url: str) -> dict[str, int]:
    """Count the rows of each output table, on a connection of its own."""
    with psycopg.connect(db_url) as conn:
        return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in TABLES}


@dataclass
class FaultWorld:
    """The shop, its undisturbed export (``expected``) and the connections of the run under test."""

    app_db_url: str
    bucket: str
    proxy: FaultProxy
    s3: Any
    expected: Snapshot
    env: dict[str, str] = field(default_factory=dict)

    def run(self, **connect_options: Any) -> list:
        """Export the shop through the tasks, as a run (or its retry) would; ``connect_options`` become the
        app_db connection's extra, which the postgres provider passes to the driver."""
        if not connect_options:
            return run_shop(SHOP)
        app_db = json.loads(self.env["AIRFLOW_CONN_APP_DB"])
        app_db["extra"] = {**app_db.get("extra", {}), **connect_options}
        with patch.dict(os.environ, {"AIRFLOW_CONN_APP_DB": json.dumps(app_db)}):
            return run_shop(SHOP)

    def state(self) -> Snapshot:
        """Return the bucket and tables of the run under test."""
        return snapshot(self.s3, self.bucket, self.app_db_url)

    def keys(self) -> set[str]:
        """Return the keys in the bucket under test."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", ())}


def r2_env(endpoints: Endpoints, **extra: Any) -> dict[str, str]:
    """Return the three connections, the R2 one with more extra (e.g. config_kwargs), and the image origins
    the sandbox's CDN needs."""
    env = {**connection_env(endpoints), **image_hosts_env(endpoints)}
    r2 = json.loads(env["AIRFLOW_CONN_R2_DEFAULT"])
    r2["extra"].update(extra)
    env["AIRFLOW_CONN_R2_DEFAULT"] = json.dumps(r2)
    return env


def use_connections(monkeypatch, env: dict[str, str]) -> None:
    """Point this process's hooks (and child processes started later) at these connections."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# A small client timeout and few attempts keep the retry tests within seconds (max_attempts counts retries:
# 3 tries in all).
FAST_RETRIES = {"retries": {"mode": "standard", "max_attempts": 2}, "connect_timeout": 2, "read_timeout": 1}


@pytest.fixture(name="world")
def world_fixture(pg_server_url, app_db_url, s3_endpoint, bucket, sandbox, monkeypatch) -> FaultWorld:
    """Export the shop undisturbed into a reference database and bucket, then aim R2 at a fault proxy."""
    s3 = s3_client(s3_endpoint)
    reference_bucket = f"ref-{uuid.uuid4().hex[:12]}"
    create_bucket(s3_endpoint, reference_bucket)
    with scratch_database(pg_server_url, prefix="reference") as reference_url:
        with psycopg.connect(reference_url) as reference_db:
            seed(reference_db, sandbox)
        reference = Endpoints(reference_url, s3_endpoint, reference_bucket, sandbox.endpoint_template, PUBLIC_BASE_URL)
        use_connections(monkeypatch, {**connection_env(reference), **image_hosts_env(reference)})
        run_shop(SHOP)
        expected = snapshot(s3, reference_bucket, reference_url)
    # 8 variants x 2 files, 4 images, and the shop's day as one Parquet part.
    assert len(expected.objects) == 21 and len(expected.rows["StatisticsExport"]) == 8
    with psycopg.connect(app_db_url) as db:
        seed(db, sandbox)
    with FaultProxy(s3_endpoint) as proxy:
        endpoints = Endpoints(app_db_url, proxy.endpoint, bucket, sandbox.endpoint_template, PUBLIC_BASE_URL)
        env = r2_env(endpoints, config_kwargs=FAST_RETRIES)
        use_connections(monkeypatch, env)
        yield FaultWorld(app_db_url, bucket, proxy, s3, expected, env)


_WORKER = """
import json, os, sys
from helpers import run_shop  # the slow part (Airflow and the hooks), done before the go
order = json.loads(sys.stdin.readline())
os.environ.update(order["env"])
run_shop(order["shop"])
"""


def start_worker() -> subprocess.Popen:
    """Start a worker process that imports the export's code, then waits for :func:`order_export`."""
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER],
        env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def order_export(worker: subprocess.Popen, world: FaultWorld) -> None:
    """Make the worker export the shop with the world's connections, as a task process would."""
    worker.stdin.write(json.dumps({"env": world.env, "shop": SHOP}) + "\n")
    worker.stdin.flush()
