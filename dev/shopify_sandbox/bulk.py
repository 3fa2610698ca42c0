"""Bulk query operations as Shopify runs them: validated, run over the whole catalogue, served as JSONL.

Time is replaced by polls so tests never sleep: an operation stays CREATED/RUNNING until it has been
polled `polls` times (per-shop `bulk_behaviour`), then ends with the configured outcome.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

from graphql import execute

from .bulk_rules import BulkQueryError, check_bulk_query, jsonl_bytes, to_jsonl_objects
from .catalog import gid, parse_gid
from .resolvers import QueryRootView, RequestContext, sandbox_schema
from .world import format_datetime

OUTCOMES = ("COMPLETED", "FAILED", "TIMEOUT", "ACCESS_DENIED", "CANCELED", "EXPIRED")
_FAILURE_CODES = {"FAILED": "INTERNAL_SERVER_ERROR", "TIMEOUT": "TIMEOUT", "ACCESS_DENIED": "ACCESS_DENIED"}
_ACTIVE = ("CREATED", "RUNNING", "CANCELING")
# Concurrent bulk queries per shop: one before 2026-01, five since.
_CONCURRENCY_SINCE_2026_01 = 5
FILE_CHUNK = 64 * 1024


@dataclass(frozen=True)
class BulkBehaviour:
    """How a shop's next bulk operations end: after how many polls, how, with how many partial lines."""

    polls: int = 1
    outcome: str = "COMPLETED"
    partial_lines: int | None = None
    max_concurrent: int | None = None  # None: Shopify's limit for the API version

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
        if self.polls < 1 or (self.max_concurrent is not None and self.max_concurrent < 1):
            raise ValueError("polls and max_concurrent must be at least 1")


@dataclass
class BulkOperation:
    """One bulk query operation and its (already computed) result."""

    id: int
    domain: str
    query: str
    behaviour: BulkBehaviour
    body: bytes
    line_ends: list[int]  # byte offset after each line, to cut partial files
    root_count: int
    created_at: datetime
    status: str = "CREATED"
    polls: int = 0
    error_code: str | None = None
    completed_at: datetime | None = None
    cancel_requested: bool = False
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> content served

    @property
    def gid(self) -> str:
        """Return the operation's global ID."""
        return gid("BulkOperation", self.id)

    @property
    def object_count(self) -> int:
        """Return the number of lines in the result."""
        return len(self.line_ends)


class BulkOperationView:
    """Resolves BulkOperation."""

    typename = "BulkOperation"

    def __init__(self, op: BulkOperation, base_url: str):
        self.op = op
        self.base_url = base_url

    id = property(lambda self: self.op.gid)
    status = property(lambda self: self.op.status)
    errorCode = property(lambda self: self.op.error_code)
    query = property(lambda self: self.op.query)
    type = property(lambda self: "QUERY")
    createdAt = property(lambda self: format_datetime(self.op.created_at))
    completedAt = property(lambda self: format_datetime(self.op.completed_at) if self.op.completed_at else None)

    @property
    def objectCount(self) -> str:  # noqa: N802
        """Resolve `objectCount`: a running count, all lines once finished, partial lines once failed."""
        op = self.op
        if op.status in ("CREATED", "RUNNING", "CANCELING"):
            return str(op.object_count * op.polls // op.behaviour.polls)
        if "partial.jsonl" in op.files:
            return str(op.files["partial.jsonl"].count(b"\n"))
        return str(op.object_count if op.status in ("COMPLETED", "EXPIRED") else 0)

    @property
    def rootObjectCount(self) -> str:  # noqa: N802
        """Resolve `rootObjectCount`."""
        return str(self.op.root_count if self.op.status in ("COMPLETED", "EXPIRED") else 0)

    @property
    def fileSize(self) -> str | None:  # noqa: N802
        """Resolve `fileSize`: the result file's bytes, once completed with any object."""
        return str(len(self.op.body)) if self.op.status == "COMPLETED" and self.op.body else None

    @property
    def url(self) -> str | None:
        """Resolve `url`: null until completed, when empty, and once expired."""
        return self._file_url("result.jsonl") if self.op.status == "COMPLETED" else None

    @property
    def partialDataUrl(self) -> str | None:  # noqa: N802
        """Resolve `partialDataUrl`: the lines written before a failure or cancelation."""
        return self._file_url("partial.jsonl") if self.op.status in ("FAILED", "CANCELED") else None

    def _file_url(self, name: str) -> str | None:
        if name not in self.op.files:
            return None
        return f"{self.base_url}/bulk/{self.op.domain}/{self.op.id}-{name}"


class BulkOperations:
    """Every shop's bulk operations, their behaviours, and the files they produced."""

    def __init__(self, sandbox: Any):
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._ops: dict[int, BulkOperation] = {}
        self._behaviours: dict[str, BulkBehaviour] = {}
        self._next_id = 4_000_000_001

    def configure(self, domain: str, **behaviour: Any) -> None:
        """Set how the shop's next bulk operations behave (see BulkBehaviour)."""
        self._behaviours[domain] = BulkBehaviour(**behaviour)

    # -- mutations and polls -------------------------------------------------------------------------

    def run_query(self, ctx: RequestContext, query: str, group_objects: bool) -> dict[str, Any]:
        """Start a bulk query: a payload with the operation, or userErrors."""
        domain = ctx.shop.domain
        behaviour = self._behaviours.get(domain, BulkBehaviour())
        try:
            document = check_bulk_query(query, sandbox_schema())
        except BulkQueryError as exc:
            return _user_error(str(exc), "INVALID")
        limit = behaviour.max_concurrent or (1 if ctx.api_version < "2026-01" else _CONCURRENCY_SINCE_2026_01)
        with self._lock:
            running = [op for op in self._ops.values() if op.domain == domain and op.status in _ACTIVE]
            if len(running) >= limit:
                if limit == 1:
                    message = f"A bulk query operation for this app and shop is already in progress: {running[0].gid}."
                    return _user_error(message, "OPERATION_IN_PROGRESS")
                return _user_error(
                    f"Bulk operations limit reached ({limit} running). Try again later.", "LIMIT_REACHED"
                )
            op_id = self._next_id
            self._next_id += 1
            # Reserve the slot before running the query, so concurrent starts see it.
            op = BulkOperation(op_id, domain, query, behaviour, b"", [], 0, datetime.now(timezone.utc))
            self._ops[op_id] = op
        state = self.sandbox._require(domain)
        with state.lock:
            state.stats.bulk_operations += 1
        try:
            objects, roots = self._run(ctx, document)
        except Exception:  # noqa: BLE001 - Shopify reports a broken run on the operation, not the mutation
            with self._lock:
                op.status, op.error_code, op.completed_at = (
                    "FAILED",
                    "INTERNAL_SERVER_ERROR",
                    datetime.now(timezone.utc),
                )
            return {"bulkOperation": BulkOperationView(op, ctx.base_url), "userErrors": []}
        if not group_objects:
            _shuffle(objects, f"{domain}/{op_id}")
        lines = [jsonl_bytes([o]) for o in objects]
        ends, total = [], 0
        for line in lines:
            total += len(line)
            ends.append(total)
        op.body, op.line_ends, op.root_count = b"".join(lines), ends, roots
        return {"bulkOperation": BulkOperationView(op, ctx.base_url), "userErrors": []}

    def poll(self, ctx: RequestContext, operation_gid: str) -> BulkOperationView | None:
        """Answer `bulkOperation(id:)`, advancing the operation by one poll."""
        op = self._find(ctx, operation_gid)
        if op is None:
            return None
        with self._lock:
            if op.status in _ACTIVE:
                op.polls += 1
                if op.cancel_requested:
                    self._finish(op, "CANCELED")
                elif op.polls >= op.behaviour.polls:
                    self._finish(op, op.behaviour.outcome)
                else:
                    op.status = "RUNNING"
        return BulkOperationView(op, ctx.base_url)

    def cancel(self, ctx: RequestContext, operation_gid: str) -> dict[str, Any]:
        """Answer `bulkOperationCancel(id:)`: CANCELING now, CANCELED at the next poll."""
        op = self._find(ctx, operation_gid)
        if op is None:
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
            }
        with self._lock:
            if op.status not in ("CREATED", "RUNNING"):
                message = f"A bulk operation cannot be canceled when it is {op.status.lower()}"
                return {
                    "bulkOperation": BulkOperationView(op, ctx.base_url),
                    "userErrors": [{"field": ["id"], "message": message}],
                }
            op.status, op.cancel_requested = "CANCELING", True
        return {"bulkOperation": BulkOperationView(op, ctx.base_url), "userErrors": []}

    # -- files -----------------------------------------------------------------------------------------

    def result_file(self, domain: str, filename: str) -> tuple[int, Iterator[bytes]] | None:
        """Return (size, chunks) of a result or partial file, or None when absent or expired."""
        op_id, _, name = filename.partition("-")
        with self._lock:
            op = self._ops.get(int(op_id)) if op_id.isdigit() else None
            content = op.files.get(name) if op is not None and op.domain == domain else None
        if content is None:
            return None
        return len(content), (content[i : i + FILE_CHUNK] for i in range(0, len(content), FILE_CHUNK))

    # -- internals ---------------------------------------------------------------------------------------

    def _find(self, ctx: RequestContext, operation_gid: str) -> BulkOperation | None:
        parsed = parse_gid(operation_gid)
        if parsed is None or parsed[0] != "BulkOperation":
            return None
        with self._lock:
            op = self._ops.get(parsed[1])
        return op if op is not None and op.domain == ctx.shop.domain else None

    def _run(self, ctx: RequestContext, document: Any) -> tuple[list[dict[str, Any]], int]:
        unpaged = RequestContext(
            shop=ctx.shop, lookup=ctx.lookup, base_url=ctx.base_url, api_version=ctx.api_version, unpaged=True
        )
        result = execute(sandbox_schema(), document, root_value=QueryRootView(unpaged), context_value=unpaged)
        if result.errors:
            raise result.errors[0]
        return to_jsonl_objects(result.data)

    def _finish(self, op: BulkOperation, outcome: str) -> None:
        """Move an operation to its final status (called with the lock held)."""
        op.completed_at = datetime.now(timezone.utc)
        partial = op.behaviour.partial_lines
        if outcome == "COMPLETED" or outcome == "EXPIRED":
            op.status = outcome
            if outcome == "COMPLETED" and op.body:
                op.files["result.jsonl"] = op.body
            return
        op.status = "CANCELED" if outcome == "CANCELED" else "FAILED"
        op.error_code = _FAILURE_CODES.get(outcome)
        if partial:
            cut = op.line_ends[min(partial, op.object_count) - 1] if op.object_count else 0
            op.files["partial.jsonl"] = op.body[:cut]


def _user_error(message: str, code: str) -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [{"field": ["query"], "message": message, "code": code}]}


def _shuffle(objects: list[dict[str, Any]], seed: str) -> None:
    """Shuffle lines deterministically, never leaving them grouped, so order-assuming clients break."""
    if len(objects) < 2:
        return
    grouped = list(objects)
    random.Random(seed).shuffle(objects)
    if objects == grouped:
        objects.reverse()
