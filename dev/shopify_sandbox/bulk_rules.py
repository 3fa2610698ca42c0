"""Shopify's rules for the query of a bulk operation, and the JSONL its result becomes."""

from __future__ import annotations

import json
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    parse,
    validate,
)

from .cost import is_connection_type

MAX_CONNECTIONS = 5
MAX_NESTED_CONNECTIONS = 2  # levels below the top-level connection
_CONNECTION_KEYS = {"edges", "nodes", "pageInfo"}


class BulkQueryError(ValueError):
    """The bulk query breaks GraphQL or Shopify's bulk rules; the message is the userError's."""


def check_bulk_query(query: str, schema: GraphQLSchema) -> DocumentNode:
    """Parse and validate a bulk query against the schema and Shopify's bulk rules; raises BulkQueryError."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        raise BulkQueryError(f"Invalid bulk query: {exc.message}") from None
    errors = validate(schema, document)
    if errors:
        raise BulkQueryError(f"Invalid bulk query: {errors[0].message}")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        raise BulkQueryError("Invalid bulk query: bulkOperationRunQuery takes exactly one query operation")
    if operations[0].variable_definitions:
        raise BulkQueryError("Invalid bulk query: bulk queries do not accept variables")
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walker = _RuleWalker(schema, fragments)
    walker.walk(operations[0].selection_set, schema.query_type, depth=0, top_level=True)
    if walker.connections == 0:
        raise BulkQueryError("Bulk queries must contain at least one connection.")
    if walker.connections > MAX_CONNECTIONS:
        raise BulkQueryError(
            f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections, found {walker.connections}."
        )
    return document


class _RuleWalker:
    """Counts connections and their nesting, following fragments, refusing top-level node/nodes."""

    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode]):
        self.schema = schema
        self.fragments = fragments
        self.connections = 0

    def walk(self, selection_set: SelectionSetNode, parent: Any, depth: int, top_level: bool = False) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self._field(selection, parent, depth, top_level)
            elif isinstance(selection, InlineFragmentNode):
                cond = selection.type_condition
                self.walk(selection.selection_set, self.schema.get_type(cond.name.value) if cond else parent, depth)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                self.walk(fragment.selection_set, self.schema.get_type(fragment.type_condition.name.value), depth)

    def _field(self, node: FieldNode, parent: Any, depth: int, top_level: bool) -> None:
        name = node.name.value
        if top_level and name in ("node", "nodes"):
            raise BulkQueryError(f"Bulk queries cannot contain a top level `{name}` field.")
        field = getattr(parent, "fields", {}).get(name)
        if field is None or node.selection_set is None:
            return
        named = get_named_type(field.type)
        if is_connection_type(named):
            self.connections += 1
            if depth > MAX_NESTED_CONNECTIONS:
                raise BulkQueryError(
                    f"Bulk queries cannot contain connections with a nesting depth greater than "
                    f"{MAX_NESTED_CONNECTIONS}: `{name}` is nested {depth} levels deep."
                )
            depth += 1
        self.walk(node.selection_set, named, depth)


def _is_connection(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= _CONNECTION_KEYS


def _items(connection: dict[str, Any]) -> list[dict[str, Any]]:
    if "nodes" in connection:
        return [n for n in connection["nodes"] if n is not None]
    return [e["node"] for e in connection.get("edges") or [] if e and e.get("node") is not None]


def to_jsonl_objects(data: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Flatten a bulk query's result into JSONL objects, parents before children; returns (objects, roots)."""
    objects: list[dict[str, Any]] = []
    roots = 0

    def emit(obj: dict[str, Any], parent_id: str | None) -> None:
        line = {k: v for k, v in obj.items() if not _is_connection(v)}
        if parent_id is not None:
            line["__parentId"] = parent_id
        objects.append(line)
        for value in obj.values():
            if _is_connection(value):
                for child in _items(value):
                    emit(child, obj.get("id"))

    for value in (data or {}).values():
        top = _items(value) if _is_connection(value) else [value] if isinstance(value, dict) else []
        for obj in top:
            roots += 1
            emit(obj, None)
    return objects, roots


def jsonl_bytes(objects: list[dict[str, Any]]) -> bytes:
    """Serialize objects as JSON Lines (compact, one per line, newline-terminated)."""
    return b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in objects)
