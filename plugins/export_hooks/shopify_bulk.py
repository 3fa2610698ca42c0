"""Shopify bulk operations: what Shopify says of one, its outcomes, and the streaming of its JSONL result.

The hook (shopify.py) starts and polls them (``run_bulk_query``, ``bulk_operation``); this module holds
what needs no token: the operation's record and the result download, whose URL Shopify signed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from export_hooks.errors import PermanentError
from export_hooks.shopify_protocol import ShopifyError
from export_hooks.shopify_retry import BULK_RESULT_ATTEMPTS

# Finished, one way or another: Shopify will not change these any more.
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})


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

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> BulkOperation:
        """Build the record from a ``BulkOperation`` node of the Admin API."""
        return cls(
            id=node["id"],
            status=node["status"],
            error_code=node.get("errorCode"),
            object_count=int(node.get("objectCount") or 0),
            url=node.get("url"),
            partial_data_url=node.get("partialDataUrl"),
        )


class BulkOperationInProgress(ShopifyError):
    """Shopify refused a bulk query because the shop already runs as many as it allows."""


class BulkOperationFailed(ShopifyError):
    """A bulk operation ended without a usable result (FAILED, TIMEOUT, CANCELED or EXPIRED): read by pages."""

    def __init__(self, message: str, operation: BulkOperation):
        super().__init__(message)
        self.operation = operation


class BulkAccessDenied(BulkOperationFailed, PermanentError):
    """A bulk operation ended ACCESS_DENIED: the app lacks a scope the query needs (the shop's configuration)."""


def iter_bulk_result(url: str, *, timeout: float = 60.0, chunk_size: int = 1 << 16) -> Iterator[dict[str, Any]]:
    """Yield the objects of a bulk result, one JSONL line at a time, never holding the file in memory.

    The URL is signed by Shopify: no access token is sent with it.
    """
    for attempt in Retrying(
        retry=retry_if_exception_type((requests.ConnectionError, requests.Timeout)),
        stop=stop_after_attempt(BULK_RESULT_ATTEMPTS),
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
