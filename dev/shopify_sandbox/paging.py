"""Relay-style cursor pagination and the `products(query:)` search filter."""

from __future__ import annotations

import base64
import binascii
import json
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from graphql import GraphQLError

MAX_PAGE_SIZE = 250


@dataclass
class Page:
    """One page of a connection: the items with their cursors and the page flags."""

    items: list[Any]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool

    # The connection's GraphQL fields, read by graphql-core's default resolver.
    @property
    def nodes(self) -> list[Any]:
        """Resolve a connection's `nodes`."""
        return self.items

    @property
    def edges(self) -> list[dict[str, Any]]:
        """Resolve a connection's `edges`."""
        return [{"cursor": c, "node": n} for c, n in zip(self.cursors, self.items)]

    @property
    def pageInfo(self) -> dict[str, Any]:  # noqa: N802 - GraphQL field name
        """Resolve a connection's `pageInfo`."""
        return {
            "hasNextPage": self.has_next_page,
            "hasPreviousPage": self.has_previous_page,
            "startCursor": self.cursors[0] if self.cursors else None,
            "endCursor": self.cursors[-1] if self.cursors else None,
        }


def encode_cursor(sort_value: Any, item_id: int) -> str:
    """Make an opaque cursor the way Shopify does: base64 of the last id and sort value."""
    raw = json.dumps({"last_id": item_id, "last_value": sort_value}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    """Decode a cursor into its (sort value, id) pair, raising a GraphQLError when malformed."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return payload["last_value"], int(payload["last_id"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise GraphQLError("Invalid cursor for current pagination sort.") from exc


def sort_items(items: Sequence[Any], sort_key: Callable[[Any], Any]) -> tuple[list[Any], list[tuple[Any, int]]]:
    """Return items in ascending (sort_key, id) order and those keys, ready for `paginate`."""
    # The position breaks ties so items themselves are never compared.
    keyed = sorted(((sort_key(it), it.id), i, it) for i, it in enumerate(items))
    return [it for _, _, it in keyed], [k for k, _, _ in keyed]


def paginate(
    items: Sequence[Any],
    sort_key: Callable[[Any], Any] | None = None,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    presorted: tuple[list[Any], list[tuple[Any, int]]] | None = None,
) -> Page:
    """Slice `items` (each with an integer `.id`) by Relay arguments over the order (sort_key, id)."""
    # Sort ascending once; `reverse` is handled by mapping positions, so cursors stay
    # valid when a client flips direction and survive deletions between pages.
    ascending, keys = presorted if presorted is not None else sort_items(items, sort_key)
    n = len(ascending)
    lo, hi = 0, n
    try:
        if after is not None:
            mark = decode_cursor(after)
            lo = max(lo, n - bisect_left(keys, mark) if reverse else bisect_right(keys, mark))
        if before is not None:
            mark = decode_cursor(before)
            hi = min(hi, n - bisect_right(keys, mark) if reverse else bisect_left(keys, mark))
    except TypeError as exc:  # a cursor made under another sortKey compares str with int
        raise GraphQLError("Invalid cursor for current pagination sort.") from exc
    hi = max(lo, hi)
    start, end = lo, hi
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    ordered_positions = range(start, end)

    def at(position: int) -> int:
        return n - 1 - position if reverse else position

    chosen = [at(p) for p in ordered_positions]
    return Page(
        items=[ascending[i] for i in chosen],
        cursors=[encode_cursor(keys[i][0], keys[i][1]) for i in chosen],
        has_next_page=end < n,
        has_previous_page=start > 0,
    )


def check_page_args(field_name: str, args: dict[str, Any]) -> int:
    """Return the page size asked by first/last, raising Shopify's errors when absent or too big."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    sizes = [v for v in (first, last) if v is not None]
    for size in sizes:
        if size < 0:
            raise GraphQLError(f"Argument 'first' or 'last' on Field '{field_name}' must be a non-negative integer.")
        if size > MAX_PAGE_SIZE:
            raise GraphQLError(
                f"The connection field '{field_name}' requested {size} records, "
                f"exceeding the maximum of {MAX_PAGE_SIZE}."
            )
    return max(sizes)


# --- products(query:) -------------------------------------------------------------

_TERM = re.compile(r"(-?)([a-z_]+):(>=|<=|>|<)?('[^']*'|\"[^\"]*\"|\S+)")


def _compare(left: Any, op: str, right: Any) -> bool:
    return {
        "": left == right,
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
    }[op]


def _term_matches(product: Any, name: str, op: str, raw: str) -> bool | None:
    """Evaluate one `field:value` term; None means the term is not understood (ignored)."""
    value = raw.strip("'\"")
    try:
        if name == "id":
            return _compare(product.id, op, int(value))
        if name in ("created_at", "updated_at"):
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=product.created_at.tzinfo)
            ours = product.created_at if name == "created_at" else product.effective_updated_at
            return _compare(ours, op, when)
    except ValueError:
        return False
    if name == "status":
        return product.status.lower() in {v.strip().lower() for v in value.split(",")}
    if name == "vendor":
        return product.vendor.lower() == value.lower()
    return None


def product_filter(query: str | None) -> Callable[[Any], bool]:
    """Build a predicate for Shopify search syntax: id/status/vendor/created_at/updated_at terms, AND/OR."""
    if not query or not query.strip():
        return lambda product: True
    # OR binds loosest, as in Shopify's search syntax; unknown terms match everything.
    disjuncts = []
    for part in re.split(r"\s+OR\s+", query.strip()):
        terms = [(m.group(1) == "-", m.group(2), m.group(3) or "", m.group(4)) for m in _TERM.finditer(part)]
        disjuncts.append(terms)

    def matches(product: Any) -> bool:
        for terms in disjuncts:
            ok = True
            for negated, name, op, raw in terms:
                result = _term_matches(product, name, op, raw)
                if result is None:
                    continue
                if result == negated:
                    ok = False
                    break
            if ok:
                return True
        return False

    return matches
