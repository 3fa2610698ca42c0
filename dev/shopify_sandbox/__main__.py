"""Serve a saved sandbox world: `python -m shopify_sandbox --port 8765 --world world.json`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import ShopifySandbox
from .world import load_world


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGTERM or SIGINT, printing the base URL once ready."""
    parser = argparse.ArgumentParser(prog="python -m shopify_sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--world", required=True, help='JSON file {"shops": [SandboxShop.to_dict(), ...]}')
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--token-lifetime", type=float, default=3600.0, help="seconds an expiring access token lasts (Shopify: 3600)"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = ShopifySandbox(
        load_world(args.world),
        host=args.host,
        port=args.port,
        latency_seconds=args.latency,
        token_lifetime_seconds=args.token_lifetime,
    ).start()
    # One line, flushed, so a parent process can wait for readiness and read the URL.
    print(sandbox.base_url, flush=True)
    try:
        stop.wait()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
