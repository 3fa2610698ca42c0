"""A thread-safe leaky bucket per shop, as Shopify's GraphQL calculated-cost rate limit."""

from __future__ import annotations

import threading
import time
from typing import Callable


class CostBucket:
    """Points available to spend: refills continuously at `restore_rate`/s up to `bucket_size`."""

    def __init__(
        self,
        bucket_size: float = 2000.0,
        restore_rate: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket_size = float(bucket_size)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = float(bucket_size)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        # Called with the lock held; continuous refill keeps the figures exact at any moment.
        now = self._clock()
        self._available = min(self.bucket_size, self._available + (now - self._stamp) * self.restore_rate)
        self._stamp = now

    def try_charge(self, cost: float) -> bool:
        """Take `cost` points if that many are available; return False (charging nothing) otherwise."""
        with self._lock:
            self._refill()
            if self._available < cost:
                return False
            self._available -= cost
            return True

    def refund(self, points: float) -> None:
        """Give back points charged but not used (requested minus actual cost)."""
        if points <= 0:
            return
        with self._lock:
            self._refill()
            self._available = min(self.bucket_size, self._available + points)

    def drain(self) -> None:
        """Empty the bucket, as concurrent clients of the same app spending every point would."""
        with self._lock:
            self._refill()
            self._available = 0.0

    def reconfigure(self, bucket_size: float, restore_rate: float) -> None:
        """Change the plan (bucket size, restore rate), keeping the points currently available."""
        with self._lock:
            self._refill()
            self.bucket_size = float(bucket_size)
            self.restore_rate = float(restore_rate)
            self._available = min(self._available, self.bucket_size)

    def status(self) -> dict[str, float | int]:
        """Return Shopify's `throttleStatus` figures for the current moment."""
        with self._lock:
            self._refill()
            return {
                "maximumAvailable": self.bucket_size,
                # Shopify reports whole points available while the other two are floats.
                "currentlyAvailable": int(self._available),
                "restoreRate": self.restore_rate,
            }
