"""Shopify's side of the conversation: its errors, the shop-domain rule, the cost bucket's state as
``extensions.cost.throttleStatus`` reports it, and the reading of its answers. The hook (shopify.py) and
its bulk operations (shopify_bulk.py) are built on these."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any

import requests

from export_hooks.errors import ExportError, PermanentError, TransientError

_MYSHOPIFY_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")


class ShopifyError(ExportError):
    """Shopify answered in a way the export cannot use."""


class ShopifyAuthError(ShopifyError, PermanentError):
    """Shopify rejected the shop's access token (401/403): retrying cannot help."""


class ShopifyTokenRejected(ShopifyAuthError):
    """Shopify answered 401 to the token the hook sent (``generation``: which of the hook's tokens it was).

    An expired and a revoked token get the same answer; a hook that can renew its token refreshes it once and
    asks again, so this fails a shop only when there is no refresh token, or the refreshed token is rejected too.
    """

    def __init__(self, message: str, generation: int = 0):
        super().__init__(message)
        self.generation = generation


class ShopifyNonExpiringTokenRejected(ShopifyAuthError):
    """Shopify no longer accepts the shop's non-expiring offline token (public apps, from 2027-01-01)."""


class ShopifyTokenRefused(ShopifyAuthError):
    """Shopify's token endpoint refused a refresh or a token exchange (``error``: its OAuth error code)."""

    def __init__(self, message: str, error: str):
        super().__init__(message)
        self.error = error


class ShopifyQueryCostError(ShopifyError):
    """A query requested more points than Shopify allows for a single query."""


class ShopifyRetryableError(ShopifyError, TransientError):
    """A transient answer (429, 5xx, broken body, internal error); ``wait_seconds`` says how long to back off."""

    def __init__(self, message: str, wait_seconds: float | None = None):
        super().__init__(message)
        self.wait_seconds = wait_seconds


class ShopifyThrottledError(ShopifyRetryableError):
    """Shopify answered THROTTLED: the cost bucket lacks the points this query requested."""


def normalize_shop_domain(domain: str) -> str:
    """Return a myshopify domain in canonical form (lower case, no scheme, no trailing slash)."""
    cleaned = domain.strip().lower()
    cleaned = re.sub(r"^https?://", "", cleaned).rstrip("/")
    if not _MYSHOPIFY_DOMAIN.match(cleaned):
        raise ValueError(f"{domain!r} is not a myshopify domain (the Admin API is only served there)")
    return cleaned


@dataclass
class ThrottleState:
    """What the last response said about the shop's cost bucket."""

    available: float | None = None
    maximum: float | None = None
    restore_rate: float | None = None
    seen_at: float = 0.0

    def seconds_until(self, cost: float) -> float:
        """Return how long to wait until ``cost`` points should be available again."""
        if self.available is None or not self.restore_rate:
            return 0.0
        elapsed = time.monotonic() - self.seen_at
        ceiling = self.maximum or float("inf")
        cost = min(cost, ceiling)  # a bucket never holds more than its maximum: wait for a full one at most
        available = min(ceiling, self.available + elapsed * self.restore_rate)
        if available >= cost:
            return 0.0
        return (cost - available) / self.restore_rate


def backoff_seconds(attempt: int, hinted: float | None, *, base: float, cap: float, max_retry_after: float) -> float:
    """Return how long to wait before the next try: what Shopify asked for when it said (Retry-After, capped),
    else exponential backoff with jitter (``base`` doubling per attempt up to ``cap``)."""
    if hinted:
        return min(float(hinted), max_retry_after) + random.uniform(0, 0.1)
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1)


def retry_after(response: requests.Response) -> float | None:
    """Return the Retry-After header in seconds, when Shopify sent a number."""
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe_error(error: Any) -> str:
    """Return a GraphQL error's message with its code and path, which name the product it concerns."""
    if not isinstance(error, dict):
        return str(error)
    text = str(error.get("message", error))
    code = (error.get("extensions") or {}).get("code")
    if code:
        text += f" [{code}]"
    if error.get("path"):
        text += " at " + ".".join(str(part) for part in error["path"])
    return text


def float_or_none(value: Any) -> float | None:
    """Return a number from throttleStatus as a float (None stays None)."""
    return float(value) if value is not None else None
