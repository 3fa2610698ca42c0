"""The bench's latency proxy (bench/latency_proxy.py) in front of a real S3 server: what the R2 hook writes
through it arrives whole, listings and reads come back, and it counts the requests and the most in flight."""

import json

from bench.latency_proxy import AsyncLatencyProxy
from export_hooks.r2 import R2Hook
from local_stack.services import Endpoints, connection_env, s3_client


def test_writes_reads_and_listings_pass_through_the_proxy_which_counts_them(monkeypatch, s3_endpoint, bucket):
    proxy = AsyncLatencyProxy(s3_endpoint, 0.3)
    try:
        env = connection_env(Endpoints("postgresql://unused/unused", proxy.address, bucket, "http://unused/{shop}"))
        monkeypatch.setenv("AIRFLOW_CONN_R2_DEFAULT", env["AIRFLOW_CONN_R2_DEFAULT"])
        hook = R2Hook(max_in_flight=8)
        bodies = {f"p/{n:02d}.json": json.dumps({"n": n, "pad": "x" * 70_000 * (n % 3)}).encode() for n in range(24)}
        hook.start_puts([(key, body, "application/json") for key, body in bodies.items()]).result()

        assert proxy.count("PUT") == 24
        assert proxy.peak() == 8  # every write waited 0.3 s at the proxy, 8 at a time from one thread
        assert sorted(hook.keys_under("p/")) == sorted(bodies)
        assert hook.open_object("p/05.json").read() == bodies["p/05.json"]
        direct = s3_client(s3_endpoint)
        assert {key: direct.get_object(Bucket=bucket, Key=key)["Body"].read() for key in bodies} == bodies
        assert proxy.count("GET") == 2 and proxy.in_flight == 0
    finally:
        proxy.stop()
