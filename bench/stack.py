"""The bench's servers, each in its own process so the export's GIL does not slow them (nor theirs the export).

A served object lives in a child process; the parent calls its methods over a pipe (``RemoteService.call``).
The store is SeaweedFS (``weed mini``, a Go process of its own) or, with ``--store moto``, moto as before;
with a store latency, the bench's asyncio latency proxy (``bench.latency_proxy``) sits in front of it adding that
latency to every request.
"""

from __future__ import annotations

import multiprocessing
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterator

from bench.latency_proxy import AsyncLatencyProxy as LatencyProxy

SPAWN = multiprocessing.get_context("spawn")


def _serve(factory: Callable[..., Any], args: tuple, conn) -> None:
    """Run in the child: start the object, send its address, answer method calls until told to stop."""
    import bench  # noqa: F401 - Airflow's env, as in the parent

    service = factory(*args)
    conn.send(service.address)
    while True:
        method, call_args = conn.recv()
        if method is None:
            break
        try:
            conn.send((True, getattr(service, method)(*call_args)))
        except Exception as exc:  # noqa: BLE001 - the parent raises it with the message
            conn.send((False, f"{type(exc).__name__}: {exc}"))
    service.stop()
    conn.send((True, None))


class RemoteService:
    """A server object run in a child process; ``call`` runs one of its methods there."""

    def __init__(self, factory: Callable[..., Any], *args: Any) -> None:
        self._conn, child = SPAWN.Pipe()
        self._process = SPAWN.Process(target=_serve, args=(factory, args, child), daemon=True)
        self._process.start()
        self.address = self._conn.recv()

    @property
    def pid(self) -> int | None:
        """The child process's id (for its CPU figures)."""
        return self._process.pid

    def call(self, method: str, *args: Any) -> Any:
        """Run ``method(*args)`` on the served object and return its result."""
        self._conn.send((method, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(value)
        return value

    def stop(self) -> None:
        """Stop the object and wait for its process to end."""
        if self._process.is_alive():
            self._conn.send((None, ()))
            self._conn.recv()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class SandboxService:
    """The Shopify sandbox with its world, throttling per the shops' plans (restore rate, bucket size)."""

    def __init__(self, shops, latency: float) -> None:
        from shopify_sandbox import ShopifySandbox

        self.sandbox = ShopifySandbox(shops, latency_seconds=latency).start()
        self.address = self.sandbox.endpoint_template

    def stats(self, domain: str) -> dict[str, Any]:
        """Return the shop's counters, without the (long) list of queries received."""
        stats = self.sandbox.stats(domain)
        stats.pop("queries", None)
        return stats

    def reset_stats(self) -> None:
        self.sandbox.reset_stats()

    def refill(self, domain: str) -> None:
        self.sandbox.refill(domain)

    def revoke(self, domain: str) -> None:
        self.sandbox.revoke_token(domain)

    def bulk_behaviour(self, domain: str, polls: int) -> None:
        self.sandbox.bulk_behaviour(domain, polls=polls)

    def stop(self) -> None:
        self.sandbox.stop()


class MotoService:
    """A moto S3 server on a free loopback port."""

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.address = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Stack:
    """The running servers: the sandbox, the store, and the latency proxy in front of it (None: no latency)."""

    sandbox: RemoteService
    store: str
    store_address: str
    proxy: RemoteService | None
    moto_pid: int | None = None

    @property
    def store_endpoint(self) -> str:
        """Where the clients write: the proxy when there is one, else the store itself."""
        return self.proxy.address if self.proxy else self.store_address


STORES = ("seaweedfs", "moto")


@contextmanager
def running_stack(shops, shopify_latency: float, store_latency: float, store: str = "seaweedfs") -> Iterator[Stack]:
    """Start the sandbox, the store and (with a store latency) the proxy in their own processes; stop all at the end."""
    from local_stack.services import seaweedfs_server

    with ExitStack() as stack:
        sandbox = RemoteService(SandboxService, shops, shopify_latency)
        stack.callback(sandbox.stop)
        moto_pid = None
        if store == "seaweedfs":
            address = stack.enter_context(seaweedfs_server())
        elif store == "moto":
            moto = RemoteService(MotoService)
            stack.callback(moto.stop)
            address, moto_pid = moto.address, moto.pid
        else:
            raise ValueError(f"unknown store {store!r}: one of {STORES}")
        proxy = None
        if store_latency > 0:
            proxy = RemoteService(LatencyProxy, address, store_latency)
            stack.callback(proxy.stop)
        yield Stack(sandbox, store, address, proxy, moto_pid)


def in_flight_peak(stack: Stack) -> Callable[[], int | None]:
    """Start watching the most store requests in flight at once (the latency proxy counts them); return what
    reads it since then (None without a proxy: nothing counts them)."""
    if stack.proxy is None:
        return lambda: None
    proxy = stack.proxy
    proxy.call("reset_peak")
    return lambda: proxy.call("peak")


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    """Return CPU seconds (user + system) so far of the store and the sandbox processes, and of the machine.

    ``machine_busy`` is every core's non-idle time (other users of the machine included); ``machine_total``
    every core's time, idle included.
    """
    import psutil

    def used(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    if stack.moto_pid:
        store = used(psutil.Process(stack.moto_pid))
    else:  # weed, a child of this process
        store = sum(used(child) for child in psutil.Process().children(recursive=True) if child.name() == "weed")
    machine = psutil.cpu_times()
    return {
        "store": store,
        "sandbox": used(psutil.Process(stack.sandbox.pid)),
        "machine_busy": machine.user + machine.nice + machine.system + machine.irq + machine.softirq + machine.steal,
        "machine_total": sum(machine),
    }


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The store's and the sandbox's CPU seconds between two snapshots, and how busy the machine's cores were."""
    total = after["machine_total"] - before["machine_total"]
    busy = (after["machine_busy"] - before["machine_busy"]) / total if total else 0.0
    return {
        "store": round(after["store"] - before["store"], 2),
        "sandbox": round(after["sandbox"] - before["sandbox"], 2),
        "busy": round(busy, 3),
    }


def cores_floor(cpu: dict[str, float], worker_cpu_seconds: float) -> float:
    """Return the least seconds an export can take on this machine's cores given the CPU spent during it: the
    store's, the sandbox's (``cpu``, from :func:`cpu_delta`) and the batch workers' shared out over every core,
    whatever the order of the work (the planning process's own CPU and PostgreSQL's left out: a lower bound)."""
    return (cpu["store"] + cpu["sandbox"] + worker_cpu_seconds) / (os.cpu_count() or 1)


# The run id the bench exports under: it claims its day first, as the DAG's claim_export_day does.
BENCH_RUN = "bench"


def bench_writer(day: date) -> Any:
    """Claim ``day`` for the bench's run (taking it over from any run) and return the writer."""
    from include.statistics_export import tasks
    from include.statistics_export.day_claims import DayWriter

    writer = DayWriter(day, BENCH_RUN)
    tasks.claim_export_day(writer, lambda other: False)
    return writer
