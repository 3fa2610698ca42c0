"""The wall and CPU seconds of a batch's phases, for the bench and the logs (``run`` owns one per export)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseClock:
    """Wall and CPU seconds of a batch's phases.

    CPU is the process's (``time.process_time``: every thread, user plus system): an export task is a
    process of its own, so a phase's CPU includes the pool threads working for it.
    """

    def __init__(self) -> None:
        self.phases: dict[str, list[float]] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.monotonic(), time.process_time()
        try:
            yield
        finally:
            spent = self.phases.setdefault(name, [0.0, 0.0])
            spent[0] = round(spent[0] + time.monotonic() - wall, 4)
            spent[1] = round(spent[1] + time.process_time() - cpu, 4)

    def spent(self) -> dict[str, list[float]]:
        """Return the phases so far as a copy: a result keeps them while the clock may go on."""
        return {name: list(seconds) for name, seconds in self.phases.items()}
