"""One shop's GraphQL request pipeline: parse, validate, cost, throttle, execute, refund."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, parse, validate

from .catalog import CatalogIndex
from .cost import MAX_QUERY_COST, actual_cost, is_mutation, requested_cost
from .faults import ImageFault, RequestFault, null_first_product
from .resolvers import QueryRootView, RequestContext, sandbox_schema
from .throttle import CostBucket
from .tokens import TOKEN_LIFETIME, ShopTokens
from .world import SandboxShop

BAD_BODY = {"errors": {"query": "Required parameter missing or invalid"}}

# graphql-core validation messages mapped to the codes Shopify's graphql-ruby answers with.
_VALIDATION_CODES = [
    (re.compile(r"^Cannot query field"), "undefinedField"),
    (re.compile(r"^Unknown argument"), "argumentNotAccepted"),
    (re.compile(r"argument .* is required, but it was not provided"), "missingRequiredArguments"),
    (re.compile(r"^Unknown type"), "undefinedType"),
    (re.compile(r"^Variable .* is never used"), "variableNotUsed"),
    (re.compile(r"^Variable .* is not defined"), "undefinedVariable"),
    (re.compile(r"must have a selection of subfields|must not have a selection"), "selectionMismatch"),
    (re.compile(r"cannot be spread here"), "cannotSpreadFragment"),
    (re.compile(r"^Unknown fragment"), "undefinedFragment"),
    (re.compile(r"cannot represent|^Expected value of type|^Enum .* has no value"), "argumentLiteralsIncompatible"),
    (re.compile(r"^Schema is not configured"), "missingOperationType"),
]


@lru_cache(maxsize=256)
def checked_document(query: str) -> tuple[DocumentNode | GraphQLError, tuple[GraphQLError, ...]]:
    """Parse and validate a query once per text: a fleet's thousands of shops send the same few documents."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return exc, ()
    return document, tuple(validate(sandbox_schema(), document))


@lru_cache(maxsize=1024)
def _requested_cost_of(query: str, operation_name: str | None, variables_json: str) -> int:
    """Requested cost of a checked document and its variables (as canonical JSON), computed once per pair.

    The cost depends on the document and the variables only, never on the shop: a fleet's shops asking the
    same page sizes share one costing. Errors (bad paging, bad variables) are not cached, only raised.
    """
    document, _ = checked_document(query)
    assert isinstance(document, DocumentNode)  # callers pass only documents that parsed and validated
    return requested_cost(document, json.loads(variables_json), sandbox_schema(), operation_name)


def error_body(error: GraphQLError, code: str) -> dict[str, Any]:
    """Format a GraphQLError as Shopify does, with `extensions.code`."""
    formatted = error.formatted
    out: dict[str, Any] = {"message": formatted["message"]}
    if formatted.get("locations"):
        out["locations"] = formatted["locations"]
    if formatted.get("path"):
        out["path"] = formatted["path"]
    out["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
    return out


def validation_code(error: GraphQLError) -> str:
    """Return Shopify's code for a validation error message."""
    for pattern, code in _VALIDATION_CODES:
        if pattern.search(error.message):
            return code
    return "GRAPHQL_VALIDATION_FAILED"


@dataclass
class ShopStats:
    """Counters a test or benchmark reads back through `ShopifySandbox.stats`."""

    requests: int = 0
    throttled: int = 0
    cost_charged: int = 0
    max_requested_cost: int = 0
    bulk_operations: int = 0
    cdn_requests: int = 0
    token_requests: int = 0  # answered by the token endpoint, refused ones included
    refreshes: int = 0  # new pairs issued by a refresh (a retry answered with the same pair is not one)
    exchanges: int = 0  # non-expiring tokens exchanged for an expiring pair
    queries: list[str] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        """Return a copy as a plain dict."""
        return {
            "requests": self.requests,
            "throttled": self.throttled,
            "cost_charged": self.cost_charged,
            "max_requested_cost": self.max_requested_cost,
            "bulk_operations": self.bulk_operations,
            "cdn_requests": self.cdn_requests,
            "token_requests": self.token_requests,
            "refreshes": self.refreshes,
            "exchanges": self.exchanges,
            "queries": list(self.queries),
        }


class ShopState:
    """A shop with its bucket, stats and the faults tests have queued for it."""

    def __init__(self, shop: SandboxShop, token_lifetime: float = TOKEN_LIFETIME):
        self.shop = shop
        self.tokens = ShopTokens(shop, token_lifetime)
        self.bucket = CostBucket(shop.bucket_size, shop.restore_rate)
        self.stats = ShopStats()
        self.revoked = False
        # Set: after this many more GraphQL requests, the shop's access tokens stop being accepted (their hour
        # ends mid-run).
        self.expire_tokens_after: int | None = None
        self.token_failures: list[int] = []  # HTTP statuses the next token requests answer, in order
        self.failures: list[RequestFault | None] = []  # one per request, in order (None: no fault)
        self.forced_throttles: list[bool] = []  # one per valid query: drain the bucket first?
        self.image_faults: dict[int, ImageFault] = {}
        self.max_query_cost = MAX_QUERY_COST
        self.lock = threading.Lock()

    def take_failure(self) -> RequestFault | None:
        """Pop the next queued request fault, if any."""
        with self.lock:
            return self.failures.pop(0) if self.failures else None

    def count_toward_expiry(self) -> None:
        """Count one GraphQL request toward ``expire_tokens_after``; end the tokens' hour when it is reached."""
        with self.lock:
            if self.expire_tokens_after is None:
                return
            self.expire_tokens_after -= 1
            due = self.expire_tokens_after <= 0
            if due:
                self.expire_tokens_after = None
        if due:
            self.tokens.expire_access_tokens()

    def take_forced_throttle(self) -> bool:
        """Consume one queued THROTTLED answer, if any, emptying the bucket when it was queued so."""
        with self.lock:
            if not self.forced_throttles:
                return False
            drain = self.forced_throttles.pop(0)
        if drain:
            self.bucket.drain()
        return True

    def sync_plan(self) -> None:
        """Follow edits of the shop's bucket_size/restore_rate made after it was added."""
        if (self.bucket.bucket_size, self.bucket.restore_rate) != (self.shop.bucket_size, self.shop.restore_rate):
            self.bucket.reconfigure(self.shop.bucket_size, self.shop.restore_rate)


def _cost_extension(requested: int, actual: int | None, bucket: CostBucket) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": bucket.status(),
        }
    }


def run_graphql(
    state: ShopState,
    catalog: CatalogIndex,
    raw_body: bytes,
    base_url: str,
    *,
    api_version: str = "2026-07",
    bulk: Any = None,
    partial_code: str | None = None,
) -> tuple[int, dict]:
    """Answer one authenticated GraphQL POST for a shop: returns (HTTP status, JSON body)."""
    try:
        body = json.loads(raw_body or b"null")
    except ValueError:
        return 400, BAD_BODY
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return 400, BAD_BODY
    query = body["query"]
    variables = body.get("variables") or {}
    if isinstance(variables, str):  # some clients send variables as a JSON string
        try:
            variables = json.loads(variables) or {}
        except ValueError:
            return 400, BAD_BODY
    if not isinstance(variables, dict):
        return 400, BAD_BODY
    operation_name = body.get("operationName") or None
    with state.lock:
        state.stats.queries.append(query)

    schema = sandbox_schema()
    document, errors = checked_document(query)
    if isinstance(document, GraphQLError):
        return 200, {"errors": [error_body(document, "PARSE_ERROR")]}
    if errors:
        return 200, {"errors": [error_body(e, validation_code(e)) for e in errors]}
    try:
        variables_json = json.dumps(variables, sort_keys=True, separators=(",", ":"))
        requested = _requested_cost_of(query, operation_name, variables_json)
    except GraphQLError as exc:
        return 200, {"errors": [error_body(exc, "BAD_REQUEST")]}

    with state.lock:
        state.stats.max_requested_cost = max(state.stats.max_requested_cost, requested)
    max_cost = state.max_query_cost
    if requested > max_cost:
        message = f"Query cost is {requested}, which exceeds the single query max cost limit ({max_cost})."
        return 200, {
            "errors": [
                {
                    "message": message,
                    "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": max_cost},
                }
            ]
        }

    state.sync_plan()
    if state.take_forced_throttle() or not state.bucket.try_charge(requested):
        with state.lock:
            state.stats.throttled += 1
        return 200, {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": _cost_extension(requested, None, state.bucket),
        }

    ctx = RequestContext(
        shop=state.shop, lookup=catalog.lookup(state.shop), base_url=base_url, api_version=api_version, bulk=bulk
    )
    try:
        actual, result = actual_cost(
            document, variables, schema, operation_name, root_value=QueryRootView(ctx), context_value=ctx
        )
    except Exception:
        state.bucket.refund(requested)  # an internal failure must not eat the client's points
        raise
    # Mutations cost a flat 10 points each, whatever their payload returns.
    actual = requested if is_mutation(document, operation_name) else min(actual, requested)
    state.bucket.refund(requested - actual)
    with state.lock:
        state.stats.cost_charged += actual
    payload: dict[str, Any] = {}
    errors = [e.formatted for e in result.errors or ()]
    data = result.data
    if partial_code is not None:
        data, error = null_first_product(data, partial_code)
        errors += [error] if error else []
    if errors:
        payload["errors"] = errors
    payload["data"] = data
    payload["extensions"] = _cost_extension(requested, actual, state.bucket)
    return 200, payload
