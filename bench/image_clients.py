"""`python -m bench.image_clients`: CPU per image download of the export's client and of the other ways.

Issue 32 asked image downloads to wait without a thread each, as the R2 writes do. This measures the ways
against one origin that answers every GET after ``--latency`` seconds (an aiohttp server on uvloop in its own
process, standing in for the CDN), each with at most ``--in-flight`` downloads at once:

- ``export``: the export's own ``ImageCdnHook.start_fetch`` (aiohttp on its loop, the origin rules, retries);
- ``threads``: the previous way's client cost, urllib3 GETs from ``--in-flight`` threads (no origin rules);
- ``aiohttp``, ``aiohttp_uvloop``: plain aiohttp GETs on one loop in its own thread (asyncio's, uvloop's);
- ``aiohttp_trust_env``: the same with ``trust_env=True``, which reads the environment and ~/.netrc again for
  every request (why the export's client reads its proxies once instead).

The CPU is this process's (``time.process_time``: every thread, user plus system); the origin's is not in it.
Prints one JSON line per client and round, then the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_ORIGIN = """
import asyncio, sys
import uvloop
from aiohttp import web
BODY = b"\\xff\\xd8\\xff" + b"x" * int(sys.argv[3])
async def image(request):
    await asyncio.sleep(float(sys.argv[2]))
    return web.Response(body=BODY, content_type="image/jpeg")
app = web.Application()
app.router.add_get("/{name}", image)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the origin on port {port} did not start")


def with_threads(base: str, images: int, in_flight: int) -> Callable[[], None]:
    import urllib3

    pool = urllib3.PoolManager(maxsize=in_flight)
    pool.request("GET", f"{base}/warm-up.jpg")

    def run() -> None:
        with ThreadPoolExecutor(in_flight) as threads:
            list(threads.map(lambda n: pool.request("GET", f"{base}/{n}.jpg").data, range(images)))

    return run


def with_export(base: str, images: int, in_flight: int) -> Callable[[], None]:
    from export_hooks.image_cdn import ImageCdnHook, ImageRules

    hook = ImageCdnHook(ImageRules(frozenset({base}), 10**8, 30), in_flight)
    hook.start_fetch(f"{base}/warm-up.jpg").result()

    def run() -> None:
        for future in [hook.start_fetch(f"{base}/{n}.jpg") for n in range(images)]:
            future.result()

    return run


def with_aiohttp(base: str, images: int, in_flight: int, uvloop: bool, trust_env: bool = False) -> Callable[[], None]:
    import aiohttp

    if uvloop:
        import uvloop as uv

        loop = uv.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=in_flight), trust_env=trust_env
        ), asyncio.Semaphore(in_flight)

    session, gate = asyncio.run_coroutine_threadsafe(start(), loop).result()

    async def fetch(url: str) -> bytes:
        async with gate, session.get(url, allow_redirects=False) as response:
            return await response.read()

    asyncio.run_coroutine_threadsafe(fetch(f"{base}/warm-up.jpg"), loop).result()

    def run() -> None:
        futures = [asyncio.run_coroutine_threadsafe(fetch(f"{base}/{n}.jpg"), loop) for n in range(images)]
        for future in futures:
            future.result()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image_clients", description=__doc__)
    parser.add_argument("--images", type=int, default=3000, help="downloads per client and round")
    parser.add_argument("--in-flight", type=int, default=16, help="threads, or downloads in flight")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the origin waits before answering")
    parser.add_argument("--size", type=int, default=4000, help="bytes of each image")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    origin = subprocess.Popen([sys.executable, "-c", _ORIGIN, str(port), str(args.latency), str(args.size)])
    try:
        wait_for(port)
        base = f"http://127.0.0.1:{port}"
        clients = {
            "export": with_export(base, args.images, args.in_flight),
            "threads": with_threads(base, args.images, args.in_flight),
            "aiohttp": with_aiohttp(base, args.images, args.in_flight, uvloop=False),
            "aiohttp_uvloop": with_aiohttp(base, args.images, args.in_flight, uvloop=True),
            "aiohttp_trust_env": with_aiohttp(base, args.images, args.in_flight, uvloop=False, trust_env=True),
        }
        seen: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):  # the clients alternate, round by round
            for name, run in clients.items():
                wall, cpu = time.monotonic(), time.process_time()
                run()
                wall, cpu = time.monotonic() - wall, time.process_time() - cpu
                figures = {"seconds": round(wall, 3), "cpu_ms_per_image": round(1000 * cpu / args.images, 3)}
                seen[name].append(figures)
                print(json.dumps({"client": name, "in_flight": args.in_flight, **figures}), flush=True)
        medians = {
            name: {key: statistics.median(f[key] for f in runs) for key in ("seconds", "cpu_ms_per_image")}
            for name, runs in seen.items()
        }
        print(json.dumps({"images": args.images, "in_flight": args.in_flight, "latency": args.latency, **medians}))
    finally:
        origin.terminate()
        origin.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
