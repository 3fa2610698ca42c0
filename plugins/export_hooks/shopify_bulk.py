"""Shopify bulk operations through a ShopifyHook: start one, poll it, and stream its JSONL result."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from export_hooks import shopify_queries as q
from export_hooks.shopify import ShopifyError, ShopifyHook

log = logging.getLogger(__name__)

# Finished, one way or another: Shopify will not change these any more.
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})


class BulkOperationInProgress(ShopifyError):
    """Shopify refused a bulk query because the shop already runs as many as it allows."""


class BulkOperationFailed(ShopifyError):
    """A bulk operation ended without a usable result (FAILED, CANCELED or EXPIRED)."""

    def __init__(self, message: str, operation: BulkOperation):
        super().__init__(message)
        self.operation = operation


@dataclass(frozen=True)
class BulkOperation:
    """What Shopify says about one bulk operation."""

    id: str
    status: str
    error_code: str | None = None
    object_count: int = 0
    url: str | None = None
    partial_data_url: str | None = None

    @property
    def finished(self) -> bool:
        """Tell whether the operation has stopped (successfully or not)."""
        return self.status in FINISHED

    @property
    def outcome(self) -> str:
        """Return the status, with the error code when there is one (``FAILED/TIMEOUT``)."""
        return f"{self.status}/{self.error_code}" if self.error_code else self.status


def products_count(hook: ShopifyHook) -> int:
    """Return how many products the shop has (uncapped)."""
    return int(hook.execute(q.PRODUCTS_COUNT_QUERY)["productsCount"]["count"])


def start_bulk_query(hook: ShopifyHook, query: str) -> BulkOperation:
    """Start a bulk query and return the operation Shopify created."""
    payload = hook.execute(q.BULK_RUN_MUTATION, {"query": query})["bulkOperationRunQuery"]
    errors = payload.get("userErrors") or []
    if errors:
        messages = "; ".join(str(e.get("message")) for e in errors)
        if any(e.get("code") in ("OPERATION_IN_PROGRESS", "LIMIT_REACHED") for e in errors):
            raise BulkOperationInProgress(f"Shop {hook.shop_domain}: a bulk query is already running ({messages})")
        raise ShopifyError(f"Shop {hook.shop_domain}: Shopify refused the bulk query: {messages}")
    operation = payload["bulkOperation"]
    log.info("Shop %s: bulk operation %s started", hook.shop_domain, operation["id"])
    return BulkOperation(id=operation["id"], status=operation["status"])


def bulk_operation(hook: ShopifyHook, operation_id: str) -> BulkOperation:
    """Return the current state of one bulk operation."""
    node = hook.execute(q.BULK_OPERATION_QUERY, {"id": operation_id})["bulkOperation"]
    if node is None:
        raise ShopifyError(f"Shop {hook.shop_domain}: Shopify does not know bulk operation {operation_id}")
    return BulkOperation(
        id=node["id"],
        status=node["status"],
        error_code=node.get("errorCode"),
        object_count=int(node.get("objectCount") or 0),
        url=node.get("url"),
        partial_data_url=node.get("partialDataUrl"),
    )


def completed_url(hook: ShopifyHook, operation: BulkOperation) -> str | None:
    """Return the result URL of a completed operation (None when it found nothing); raise if it failed."""
    if operation.status == "COMPLETED":
        return operation.url
    raise BulkOperationFailed(
        f"Shop {hook.shop_domain}: bulk operation {operation.id} ended {operation.outcome} "
        f"after {operation.object_count} objects",
        operation,
    )


def iter_bulk_result(url: str, *, timeout: float = 60.0, chunk_size: int = 1 << 16) -> Iterator[dict[str, Any]]:
    """Yield the objects of a bulk result, one JSONL line at a time, never holding the file in memory.

    The URL is signed by Shopify: no access token is sent with it.
    """
    for attempt in Retrying(
        retry=retry_if_exception_type((requests.ConnectionError, requests.Timeout)),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.5, max=10),
        reraise=True,
    ):
        with attempt, requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ShopifyError(f"The bulk result download answered HTTP {response.status_code}")
            for number, line in enumerate(response.iter_lines(chunk_size=chunk_size), start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        raise ShopifyError(f"Line {number} of the bulk result is not JSON") from None
            return
