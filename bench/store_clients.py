"""`python -m bench.store_clients`: CPU per PUT of boto3 and of obstore (the R2 hook's hot path), on SeaweedFS.

The clients are the R2 hook's own, built from one ``r2_default`` connection: boto3 is ``R2Hook().client``
(S3Hook's), obstore is ``R2Hook().put_object`` from ``--threads`` threads, and obstore_async is the export's
way, ``R2Hook().start_puts`` from one thread with ``--in-flight`` writes in flight. Each writes ``--puts`` objects
of ``--size`` bytes to a SeaweedFS server (``weed mini``, its own process) directly or, with
``--store-latency``, through the latency proxy the bench uses (so, with many in flight, this measures the
proxy's cap). The client's CPU is this process's (``time.process_time``: every thread, user plus system); the
server's and the proxy's are not in it. Prints one JSON line per client, then one with all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Callable

BUCKET = "store-clients"


def measure(put: Callable[[str, bytes], None], puts: int, size: int, threads: int, prefix: str) -> dict:
    """PUT ``puts`` objects of ``size`` bytes from ``threads`` threads; return PUTs/s and CPU ms per PUT."""
    body = os.urandom(size)
    put(f"{prefix}/warm-up", body)  # the first connection and the client's setup, outside the timing
    wall, cpu = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: put(f"{prefix}/{n:07d}", body), range(puts)))
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return {
        "puts": puts,
        "size": size,
        "threads": threads,
        "seconds": round(wall, 3),
        "puts_per_second": round(puts / wall, 1),
        "client_cpu_ms_per_put": round(1000 * cpu / puts, 3),
    }


def measure_in_flight(hook, puts: int, size: int, prefix: str) -> dict:
    """Start ``puts`` writes of ``size`` bytes from this one thread (the hook keeps its in-flight limit), then wait
    for all; return PUTs/s and CPU ms per PUT."""
    body = os.urandom(size)
    hook.put_object(f"{prefix}/warm-up", body, "text/csv")
    wall, cpu = time.monotonic(), time.process_time()
    hook.start_puts([(f"{prefix}/{n:07d}", body, "text/csv") for n in range(puts)]).result()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return {
        "puts": puts,
        "size": size,
        "in_flight": hook.max_in_flight,
        "seconds": round(wall, 3),
        "puts_per_second": round(puts / wall, 1),
        "client_cpu_ms_per_put": round(1000 * cpu / puts, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store_clients", description=__doc__)
    p.add_argument("--puts", type=int, default=4000, help="PUTs per client (default 4,000)")
    p.add_argument("--size", type=int, default=600, help="bytes per object (default 600: a variant's CSV or JSON)")
    p.add_argument("--threads", type=int, default=16, help="threads writing at once (default 16)")
    p.add_argument("--in-flight", type=int, default=64, help="writes in flight of obstore_async (default 64)")
    p.add_argument("--store-latency", type=float, default=0.0, help="seconds a proxy adds per request (default 0)")
    args = p.parse_args(argv)

    from bench.stack import LatencyProxy, RemoteService
    from local_stack.services import Endpoints, connection_env, create_bucket, seaweedfs_server

    with ExitStack() as stack:
        store = stack.enter_context(seaweedfs_server())
        create_bucket(store, BUCKET)
        endpoint = store
        if args.store_latency > 0:
            proxy = RemoteService(LatencyProxy, store, args.store_latency)
            stack.callback(proxy.stop)
            endpoint = proxy.address
        os.environ.update(connection_env(Endpoints("postgresql://unused/unused", endpoint, BUCKET, "http://unused")))
        from export_hooks.r2 import R2Hook

        boto = R2Hook(max_pool_connections=args.threads)
        lean = R2Hook(max_pool_connections=args.threads)

        def boto_put(key: str, body: bytes) -> None:
            boto.client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="text/csv")

        def lean_put(key: str, body: bytes) -> None:
            lean.put_object(key, body, "text/csv")

        results = {}
        for name, put in (("boto3", boto_put), ("obstore", lean_put)):
            results[name] = {"client": name, "store": "seaweedfs", "store_latency": args.store_latency}
            results[name].update(measure(put, args.puts, args.size, args.threads, name))
            print(json.dumps(results[name]), flush=True)
        name = "obstore_async"
        results[name] = {"client": name, "store": "seaweedfs", "store_latency": args.store_latency}
        results[name].update(measure_in_flight(R2Hook(max_in_flight=args.in_flight), args.puts, args.size, name))
        print(json.dumps(results[name]), flush=True)
    print(
        json.dumps(
            {
                "boto3_cpu_ms_per_put": results["boto3"]["client_cpu_ms_per_put"],
                "obstore_cpu_ms_per_put": results["obstore"]["client_cpu_ms_per_put"],
                "boto3_puts_per_second": results["boto3"]["puts_per_second"],
                "obstore_puts_per_second": results["obstore"]["puts_per_second"],
                "obstore_async_cpu_ms_per_put": results["obstore_async"]["client_cpu_ms_per_put"],
                "obstore_async_puts_per_second": results["obstore_async"]["puts_per_second"],
                "in_flight": args.in_flight,
                "size": args.size,
                "threads": args.threads,
                "store": "seaweedfs",
                "store_latency": args.store_latency,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
