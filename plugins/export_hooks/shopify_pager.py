"""The one pager of the Shopify hook: every paged read goes through it, pages of a connection by cursor and
chunks of ids alike, and it alone answers MAX_COST_EXCEEDED by halving the read's page sizes.

A read states only its document, its page sizes (variables that set how much one answer holds), where its
nodes are in an answer, and what the smallest page holds (named when even that costs too much); the caller
gives the other variables. The sizes a read shrank to are kept for the hook's life, so the next page of the
same document (the next product's variant pages, say) starts small instead of paying the refusal again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from export_hooks.shopify_protocol import ShopifyQueryCostError

log = logging.getLogger(__name__)

# Runs one document with its variables and returns its data (ShopifyTransport.execute).
Execute = Callable[[str, dict[str, Any]], dict[str, Any]]
# The page size variable of a read of nodes by id: how many ids one answer holds.
IDS = "ids"


@dataclass(frozen=True)
class PagedRead:
    """One paged read of the Admin API.

    :param document: the GraphQL document (its operation takes ``$after`` when it pages by cursor).
    :param sizes: the variables setting how much one answer holds, at their largest (the costs in
        shopify_queries.py are computed at these); ``ids`` is the number of ids per answer of a read by id.
    :param select: picks the connection (``{pageInfo, nodes}``) out of an answer's data; for a read by id,
        ``{nodes}``.
    :param smallest: what a page holds at its smallest, for the error when even that costs too much.
    """

    document: str
    sizes: dict[str, int]
    select: Callable[[dict[str, Any]], dict[str, Any]]
    smallest: str


class Pager:
    """Page the reads of one shop: cursors, page sizes and their halving on MAX_COST_EXCEEDED."""

    def __init__(self, execute: Execute, shop_domain: str):
        self._execute = execute
        self.shop_domain = shop_domain
        self._sizes: dict[str, dict[str, int]] = {}

    def sizes(self, read: PagedRead) -> dict[str, int]:
        """Return the read's page sizes now (its largest until Shopify refused a page as too costly)."""
        return dict(self._sizes.get(read.document, read.sizes))

    def pages(self, read: PagedRead, variables: dict[str, Any], after: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield the data of each page of the read, from the one after the cursor ``after`` to the last."""
        while True:
            data, _ = self._answer(read, lambda sizes: {**variables, **sizes, "after": after})
            yield data
            page_info = read.select(data)["pageInfo"]
            if not page_info["hasNextPage"]:
                return
            after = page_info["endCursor"]

    def nodes(self, read: PagedRead, variables: dict[str, Any], after: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield every node of the read, from the one after the cursor ``after``, a page per request."""
        for data in self.pages(read, variables, after):
            yield from read.select(data)["nodes"]

    def rest_of(
        self, first_page: dict[str, Any], read: PagedRead, variables: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Yield a connection's nodes from its page already fetched (inside another answer), then the read's pages."""
        yield from first_page["nodes"]
        if first_page["pageInfo"]["hasNextPage"]:
            yield from self.nodes(read, variables, after=first_page["pageInfo"]["endCursor"])

    def by_ids(self, read: PagedRead, ids: Sequence[str], variables: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
        """Yield the node of each id in order (None for one Shopify no longer has), ``sizes['ids']`` per request."""
        start = 0
        while start < len(ids):
            data, sent = self._answer(
                read, lambda sizes: {**variables, **sizes, IDS: list(ids[start : start + sizes[IDS]])}
            )
            start += len(sent[IDS])
            yield from read.select(data)["nodes"]

    def _answer(
        self, read: PagedRead, variables_at: Callable[[dict[str, int]], dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return one answer of the read and the variables it was asked with, at the read's page sizes: halved
        while Shopify finds the page too costly, until even the smallest page is (ShopifyQueryCostError)."""
        while True:
            variables = variables_at(self.sizes(read))
            try:
                return self._execute(read.document, variables), variables
            except ShopifyQueryCostError as refused:
                self._halve(read, refused)

    def _halve(self, read: PagedRead, refused: ShopifyQueryCostError) -> None:
        sizes = self.sizes(read)
        if all(size == 1 for size in sizes.values()):
            raise ShopifyQueryCostError(
                f"Shop {self.shop_domain}: even one {read.smallest} exceeds the query cost limit"
            ) from refused
        self._sizes[read.document] = {name: max(1, size // 2) for name, size in sizes.items()}
        log.warning(
            "Shop %s: query cost limit exceeded; pages now of %s",
            self.shop_domain,
            ", ".join(f"{name} {size}" for name, size in self._sizes[read.document].items()),
        )
