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


def _forget_every_loop() -> None:
    for background in list(_every):
        background._forget()


os.register_at_fork(after_in_child=_forget_every_loop)
