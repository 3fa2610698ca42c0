"""An event loop of this process in a thread of its own, for hooks whose requests wait without a thread each.

A loop starts at its first use. A forked child (a Celery prefork worker, Airflow's task runner) holds the
parent's loop object but not its thread, and would wait on it forever: after a fork, every loop is forgotten and
the child starts its own at its first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_every: weakref.WeakSet[BackgroundLoop] = weakref.WeakSet()


class BackgroundLoop:
    """One event loop, made by ``new_loop`` and run in a daemon thread named ``name``, started at its first use."""

    def __init__(self, name: str, new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop):
        self.name = name
        self._new_loop = new_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        _every.add(self)

    def loop(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, starting it (and its thread) at the first call."""
        with self._lock:
            if self._loop is None:
                self._loop = self._new_loop()
                threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True).start()
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coroutine`` on the loop and return at once: a future of its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop())

    def _forget(self) -> None:
        self._loop, self._lock = None, threading.Lock()


class SharedGate:
    """At most ``limit`` holders at once, whichever event loop of the process each awaits on (an asyncio.Semaphore
    waits on one loop only): one bound over a hook's requests from several loops. Slots go in arrival order."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a gate's limit must be at least 1, got {limit}")
        self._free = limit
        self._lock = threading.Lock()
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            with self._lock:
                waiting = granted in self._waiting
                if waiting:
                    self._waiting.remove(granted)
            if not waiting:  # the slot was handed over meanwhile: pass it on
                self._release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        with self._lock:
            if not self._waiting:
                self._free += 1
                return
            granted = self._waiting.popleft()
        granted.get_loop().call_soon_threadsafe(_grant, granted)


def _grant(granted: asyncio.Future[None]) -> None:
    if not granted.done():
        granted.set_result(None)


def _forget_every_loop() -> None:
    for background in list(_every):
        background._forget()


os.register_at_fork(after_in_child=_forget_every_loop)
