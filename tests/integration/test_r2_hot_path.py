"""The R2 hook's hot path (obstore): built from the r2_default connection, what it sends on the wire, reads back.

Its faults (retries, timeouts, dropped connections, bad credentials, a cut batch) are test_faults_r2.py's,
run through this very path.
"""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from export_hooks.r2 import R2Hook, R2ReadError, R2WriteError
from include.statistics_export.protocols import finish_writes
from local_stack.services import Endpoints, connection_env, s3_client

FORBIDDEN_HEADER_PREFIXES = ("x-amz-checksum-", "x-amz-sdk-checksum", "x-amz-acl", "x-amz-tagging", "x-amz-server-side")


def use_r2(monkeypatch, endpoint: str, bucket: str, **extra) -> None:
    """Point r2_default at ``endpoint``/``bucket`` with the local key pair, plus more extra."""
    env = connection_env(Endpoints("postgresql://unused/unused", endpoint, bucket, "http://unused/{shop}"))
    r2 = json.loads(env["AIRFLOW_CONN_R2_DEFAULT"])
    r2["extra"].update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_R2_DEFAULT", json.dumps(r2))


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_the_client_is_built_from_the_connection_and_allows_http_only_for_an_http_endpoint(monkeypatch, scheme):
    config_kwargs = {"retries": {"mode": "standard", "max_attempts": 4}, "read_timeout": 7, "connect_timeout": 3}
    use_r2(monkeypatch, f"{scheme}://acct.r2.example.test", "stats", region_name="auto", config_kwargs=config_kwargs)

    store = R2Hook(max_pool_connections=12, max_in_flight=96).store

    assert store.config["bucket"] == "stats" and store.config["region"] == "auto"
    assert store.config["endpoint"] == f"{scheme}://acct.r2.example.test"
    assert store.config["access_key_id"] == "local-access-key-id"
    assert "checksum_algorithm" not in store.config  # no checksum header R2 could reject
    assert store.retry_config["max_retries"] == 4  # botocore's max_attempts counts the retries
    options = store.client_options
    assert (options["read_timeout"], options["connect_timeout"]) == ("7s", "3s")  # obstore reports them as text
    assert options["pool_max_idle_per_host"] == "96"  # a connection kept for each write in flight
    assert options.get("allow_http", "false") == ("true" if scheme == "http" else "false")
    assert "local-secret-access-key" not in repr(store)


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_put_sends_its_content_type_signed_and_no_checksum_acl_tagging_or_encryption_header(monkeypatch):
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        use_r2(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", "stats")
        R2Hook().put_object("statistic-exports/s/1/2/20261121.csv", b"a,b\n1,2\n", "text/csv; charset=utf-8")
    finally:
        server.shutdown()
        server.server_close()

    [(path, headers, body)] = _Recorder.seen
    assert path == "/stats/statistic-exports/s/1/2/20261121.csv" and body == b"a,b\n1,2\n"
    assert headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=local-access-key-id/")
    assert [name for name in headers if name.startswith(FORBIDDEN_HEADER_PREFIXES)] == []


class _Gathering(BaseHTTPRequestHandler):
    """Holds each PUT until ``limit`` are waiting at once or the ``total`` expected have come (or 10 s pass),
    recording the most in flight."""

    protocol_version = "HTTP/1.1"
    limit = total = 0
    in_flight = peak = 0
    keys: list = []
    changed = threading.Condition()

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        with cls.changed:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
            cls.keys.append(self.path)
            cls.changed.notify_all()
            cls.changed.wait_for(lambda: cls.in_flight >= cls.limit or len(cls.keys) == cls.total, timeout=10)
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        with cls.changed:
            cls.in_flight -= 1


def test_writes_started_from_one_thread_are_in_flight_together_up_to_the_hooks_limit(monkeypatch):
    # 40 writes started from this one thread: each request waits at the server until 5 are there, so 5 in flight
    # at once is reached only if no write holds a thread, and more than 5 only if the limit leaks.
    _Gathering.limit, _Gathering.total, _Gathering.in_flight, _Gathering.peak, _Gathering.keys = 5, 40, 0, 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gathering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        use_r2(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", "stats")
        hook = R2Hook(max_in_flight=5)
        hook.start_puts([(f"k/{n:02d}", b"x", "text/plain") for n in range(40)]).result()
    finally:
        server.shutdown()
        server.server_close()

    assert sorted(_Gathering.keys) == [f"/stats/k/{n:02d}" for n in range(40)]
    assert _Gathering.peak == 5


def test_writes_awaited_on_two_event_loops_share_the_hooks_one_bound(monkeypatch):
    # The image copies await the hook's writes on the downloads' loop while the files' writes wait on the writes'
    # loop: together they keep the hook's limit in flight, 5, and no more.
    _Gathering.limit, _Gathering.total, _Gathering.in_flight, _Gathering.peak, _Gathering.keys = 5, 40, 0, 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gathering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        use_r2(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", "stats")
        hook = R2Hook(max_in_flight=5)
        files = hook.start_puts([(f"files/{n:02d}", b"x", "text/plain") for n in range(20)])

        async def images() -> None:
            await asyncio.gather(*(hook.put_object_async(f"images/{n:02d}", b"x", "image/jpeg") for n in range(20)))

        asyncio.run(images())
        files.result()
    finally:
        server.shutdown()
        server.server_close()

    assert len(_Gathering.keys) == 40
    assert _Gathering.peak == 5


def test_a_failed_write_is_raised_once_every_write_started_has_ended(monkeypatch, s3_endpoint, bucket):
    use_r2(monkeypatch, s3_endpoint, "no-such-bucket", config_kwargs={"retries": {"max_attempts": 0}})
    hook = R2Hook()
    started = [
        hook.start_puts([(f"k/{n}", b"x", "text/plain") for n in range(3)]),
        hook.start_puts([("l/0", b"x", "text/plain")]),
    ]

    with pytest.raises(R2WriteError, match=r"^Writing 'k/0' to R2 bucket 'no-such-bucket' .*NoSuchBucket"):
        finish_writes(started)
    assert all(write.done() for write in started)


def test_objects_written_read_back_and_a_missing_one_is_named(monkeypatch, s3_endpoint, bucket):
    use_r2(monkeypatch, s3_endpoint, bucket)
    hook = R2Hook()
    hook.put_object("a/b.json", b'{"x": 1}', "application/json")

    assert hook.open_object("a/b.json").read() == b'{"x": 1}'
    head = s3_client(s3_endpoint).head_object(Bucket=bucket, Key="a/b.json")
    assert head["ContentType"] == "application/json"
    with pytest.raises(FileNotFoundError, match="'a/missing.json'"):
        hook.open_object("a/missing.json")


def test_listings_are_by_folder_with_etags_and_start_after(monkeypatch, s3_endpoint, bucket):
    use_r2(monkeypatch, s3_endpoint, bucket)
    hook = R2Hook()
    for key in ("runs/20261120.json", "runs/20261121.json", "runs/20261122.json", "runsx/other.json"):
        hook.put_object(key, key.encode(), "application/json")
    s3 = s3_client(s3_endpoint)

    assert sorted(hook.keys_under("runs/")) == ["runs/20261120.json", "runs/20261121.json", "runs/20261122.json"]
    listed = hook.etags_under("runs/", start_after="runs/20261120.json")
    assert listed == {key: s3.head_object(Bucket=bucket, Key=key)["ETag"] for key in listed}
    assert sorted(listed) == ["runs/20261121.json", "runs/20261122.json"]
    with pytest.raises(ValueError, match="must be a folder ending with '/', got 'runs'"):
        list(hook.keys_under("runs"))


def test_listing_a_bucket_that_does_not_exist_is_a_read_error_naming_it(monkeypatch, s3_endpoint, bucket):
    use_r2(monkeypatch, s3_endpoint, "no-such-bucket", config_kwargs={"retries": {"max_attempts": 0}})
    with pytest.raises(R2ReadError, match=r"^Reading 'runs/' from R2 bucket 'no-such-bucket' .*NoSuchBucket"):
        list(R2Hook().keys_under("runs/"))
