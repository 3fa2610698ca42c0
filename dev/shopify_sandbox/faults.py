"""Faults a test can queue on the sandbox: broken GraphQL answers and misbehaving CDN files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cost import MAX_QUERY_COST

# Shopify's answer when a resolver fails inside an otherwise good query.
INTERNAL_ERROR_MESSAGE = "Internal error. Looks like something went wrong on our end."

HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>Shopify: something went wrong</title></head>"
    "<body><h1>There was a problem loading this website</h1><p>Please try again.</p></body></html>"
)

# Bodies longer than this are streamed in pieces, so a 21 MB fault never sits in memory whole.
STREAM_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ImageFault:
    """How the CDN misbehaves for one media: a status, an HTML page, a stall and/or an oversized body."""

    status: int | None = None
    html: bool = False
    stall_seconds: float = 0.0
    size_bytes: int | None = None
    chunked: bool = False  # stream the oversized body without Content-Length, so only counting catches it

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"not an HTTP status: {self.status}")
        if self.stall_seconds < 0 or (self.size_bytes is not None and self.size_bytes < 0):
            raise ValueError("stall_seconds and size_bytes must not be negative")
        if self.chunked and self.size_bytes is None:
            raise ValueError("chunked needs size_bytes")


@dataclass(frozen=True)
class RequestFault:
    """One broken answer to the next GraphQL request.

    kind: ``status`` (HTTP status, optional Retry-After), ``html`` (an HTML page with ``status``),
    ``reset`` (the socket is closed with a TCP reset, no response), ``stall`` (wait ``seconds`` then
    answer normally) or ``partial`` (run the query, then null the first product and add an error
    with its ``path`` and ``code``).
    """

    kind: str
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0
    code: str = "INTERNAL_SERVER_ERROR"


def oversized_body(size: int) -> Any:
    """Yield `size` bytes that start like a JPEG, in STREAM_CHUNK pieces."""
    head = b"\xff\xd8\xff\xe0" + b"\x00" * (STREAM_CHUNK - 4)
    filler = b"\x00" * STREAM_CHUNK
    sent = 0
    while sent < size:
        piece = (head if sent == 0 else filler)[: size - sent]
        sent += len(piece)
        yield piece


def null_first_product(data: Any, code: str) -> tuple[Any, dict[str, Any] | None]:
    """Null the first product object in `data` (as a failed resolver would) and return the matching error."""
    path = _first_product_path(data, [])
    if path is None:
        return data, None
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = None
    message = INTERNAL_ERROR_MESSAGE if code == "INTERNAL_SERVER_ERROR" else f"Field failed: {code}"
    return data, {"message": message, "path": path, "extensions": {"code": code}}


def _first_product_path(value: Any, path: list) -> list | None:
    if isinstance(value, dict):
        if str(value.get("id", "")).startswith("gid://shopify/Product/") and path:
            return path
        for key, child in value.items():
            found = _first_product_path(child, [*path, key])
            if found:
                return found
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found = _first_product_path(child, [*path, index])
            if found:
                return found
    return None


class FaultControls:
    """The sandbox's fault-queueing methods (mixed into ShopifySandbox, which provides `_require`)."""

    latency_seconds: float
    bulk: Any

    def _queue(self, domain: str, fault: RequestFault, count: int, after: int) -> None:
        state = self._require(domain)
        with state.lock:
            # None lets a request through untouched, so a fault can hit a later request of a run.
            state.failures.extend([None] * after + [fault] * count)

    def fail_next(
        self, domain: str, status: int = 503, count: int = 1, retry_after: float | None = None, after: int = 0
    ) -> None:
        """Make the next `count` GraphQL requests (after `after` good ones) answer HTTP `status` (5xx or 429).

        `retry_after` adds a Retry-After header. The other `*_next` methods take `after` the same way.
        """
        if not (status == 429 or 500 <= status <= 599):
            raise ValueError("fail_next status must be 429 or 5xx")
        self._queue(domain, RequestFault("status", status=status, retry_after=retry_after), count, after)

    def html_next(self, domain: str, status: int = 200, count: int = 1, after: int = 0) -> None:
        """Make the next `count` GraphQL requests answer an HTML error page (not JSON) with `status`."""
        self._queue(domain, RequestFault("html", status=status), count, after)

    def reset_next(self, domain: str, count: int = 1, after: int = 0) -> None:
        """Make the next `count` GraphQL requests end in a TCP reset, without any response."""
        self._queue(domain, RequestFault("reset"), count, after)

    def stall_next(self, domain: str, seconds: float, count: int = 1, after: int = 0) -> None:
        """Make the next `count` GraphQL requests wait `seconds` before answering (stop() cuts the wait)."""
        self._queue(domain, RequestFault("stall", seconds=float(seconds)), count, after)

    def partial_error_next(
        self, domain: str, code: str = "INTERNAL_SERVER_ERROR", count: int = 1, after: int = 0
    ) -> None:
        """Make the next `count` queries answer data with their first product nulled plus an error at its path."""
        self._queue(domain, RequestFault("partial", code=code), count, after)

    def throttle_next(self, domain: str, count: int = 1, drain: bool = False) -> None:
        """Make the next `count` valid queries answer THROTTLED (nothing charged).

        With `drain`, each empties the bucket first, so throttleStatus reads as during a real storm
        (other workers of the same app spending the points).
        """
        state = self._require(domain)
        with state.lock:
            state.forced_throttles.extend([drain] * count)

    def pending_faults(self, domain: str) -> int:
        """Return how many queued request faults and forced throttles have not been served yet."""
        state = self._require(domain)
        with state.lock:
            return sum(1 for fault in state.failures if fault is not None) + len(state.forced_throttles)

    def set_max_query_cost(self, domain: str, max_cost: int | None) -> None:
        """Lower (or, with None, restore) the single-query cost limit of a shop."""
        self._require(domain).max_query_cost = MAX_QUERY_COST if max_cost is None else int(max_cost)

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by `seconds`."""
        self.latency_seconds = float(seconds)

    def image_fault(
        self,
        domain: str,
        media_id: int,
        status: int | None = None,
        *,
        html: bool = False,
        stall_seconds: float = 0.0,
        size_bytes: int | None = None,
        chunked: bool = False,
    ) -> None:
        """Make the CDN misbehave for a media's image; with no fault given, clear it.

        `status` alone answers that status; `html` answers an HTML page (200 unless `status`);
        `stall_seconds` waits before answering; `size_bytes` streams a body of that size (with a
        true Content-Length, or chunked without one).
        """
        state = self._require(domain)
        fault = ImageFault(status, html, float(stall_seconds), size_bytes, chunked)
        with state.lock:
            if fault == ImageFault():
                state.image_faults.pop(media_id, None)
            else:
                state.image_faults[media_id] = fault

    def foreign_image_url(self, domain: str, media_id: int, url: str | None) -> None:
        """Hand out `url` as a media's image URL instead of the sandbox CDN's (None: the CDN's again)."""
        shop = self._require(domain).shop
        found = [media for product in shop.products for media in product.media if media.id == media_id]
        if not found:
            raise KeyError(f"unknown media {media_id} in {domain!r}")
        for media in found:
            media.url = url

    def bulk_behaviour(
        self,
        domain: str,
        *,
        polls: int = 1,
        outcome: str = "COMPLETED",
        partial_lines: int | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        """Set how the shop's next bulk operations end: after `polls` polls, with `outcome`.

        outcome: COMPLETED, FAILED (errorCode INTERNAL_SERVER_ERROR), TIMEOUT, ACCESS_DENIED, CANCELED or
        EXPIRED; `partial_lines` lines are served at partialDataUrl when it fails or is canceled;
        `max_concurrent` overrides Shopify's per-version limit of running bulk queries.
        """
        self._require(domain)
        self.bulk.configure(
            domain, polls=polls, outcome=outcome, partial_lines=partial_lines, max_concurrent=max_concurrent
        )
