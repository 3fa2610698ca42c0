"""Shopify's calculated query cost: requested (before running) and actual (after running).

Rules (from Shopify's rate-limit documentation, as summarised in shared/shopify/README.md):
scalars and enums cost 0, objects 1, a connection 2 + first (or last) x the cost of one
node, a list of objects sized by an `ids` argument len(ids) x the cost of one item, and an
abstract type the fields common to it plus the most expensive type-specific fragment.
"""

from __future__ import annotations

from typing import Any, Iterable

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    default_field_resolver,
    get_named_type,
    get_nullable_type,
    is_abstract_type,
    is_list_type,
    is_object_type,
)
from graphql.execution.values import (
    VariableValues,
    get_argument_values,
    get_directive_values,
    get_variable_values,
)
from graphql.utilities import get_operation_ast

from .paging import MAX_PAGE_SIZE, Page, check_page_args

MAX_QUERY_COST = 1000
CONNECTION_BASE_COST = 2
MUTATION_COST = 10


def is_connection_type(type_: Any) -> bool:
    """Return True for Relay connection object types (`...Connection` with edges and pageInfo)."""
    return (
        isinstance(type_, GraphQLObjectType)
        and type_.name.endswith("Connection")
        and "edges" in type_.fields
        and "pageInfo" in type_.fields
    )


def is_edge_type(type_: Any) -> bool:
    """Return True for Relay edge object types (`...Edge` with node and cursor)."""
    return (
        isinstance(type_, GraphQLObjectType)
        and type_.name.endswith("Edge")
        and "node" in type_.fields
        and "cursor" in type_.fields
    )


class _CostWalker:
    """Walks an operation computing its requested cost, raising GraphQLError on bad pagination."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: VariableValues):
        self.schema = schema
        self.variables = variables
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    # -- selection collection ------------------------------------------------------

    def _included(self, node: Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include and include.get("if") is False)

    def _applies(self, condition: str | None, runtime: GraphQLNamedType) -> bool:
        if condition is None or condition == runtime.name:
            return True
        cond_type = self.schema.get_type(condition)
        return cond_type is not None and is_abstract_type(cond_type) and self.schema.is_sub_type(cond_type, runtime)

    def _collect(self, sets: Iterable[SelectionSetNode], runtime: GraphQLNamedType) -> dict[str, list[FieldNode]]:
        """Group the fields that apply to `runtime` by response key, following fragments."""
        fields: dict[str, list[FieldNode]] = {}
        seen: set[str] = set()

        def walk(selection_set: SelectionSetNode) -> None:
            for sel in selection_set.selections:
                if not self._included(sel):
                    continue
                if isinstance(sel, FieldNode):
                    key = sel.alias.value if sel.alias else sel.name.value
                    fields.setdefault(key, []).append(sel)
                elif isinstance(sel, InlineFragmentNode):
                    cond = sel.type_condition.name.value if sel.type_condition else None
                    if self._applies(cond, runtime):
                        walk(sel.selection_set)
                elif isinstance(sel, FragmentSpreadNode):
                    frag = self.fragments.get(sel.name.value)
                    if frag and sel.name.value not in seen and self._applies(frag.type_condition.name.value, runtime):
                        seen.add(sel.name.value)
                        walk(frag.selection_set)

        for selection_set in sets:
            if selection_set is not None:
                walk(selection_set)
        return fields

    def _conditions(self, sets: Iterable[SelectionSetNode]) -> set[str]:
        """Return every type condition used by fragments in these selection sets (not nested fields)."""
        names: set[str] = set()
        seen: set[str] = set()

        def walk(selection_set: SelectionSetNode) -> None:
            for sel in selection_set.selections:
                if isinstance(sel, InlineFragmentNode):
                    if sel.type_condition:
                        names.add(sel.type_condition.name.value)
                    walk(sel.selection_set)
                elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                    seen.add(sel.name.value)
                    frag = self.fragments.get(sel.name.value)
                    if frag:
                        names.add(frag.type_condition.name.value)
                        walk(frag.selection_set)

        for selection_set in sets:
            if selection_set is not None:
                walk(selection_set)
        return names

    # -- costing ------------------------------------------------------------------------

    def selection_cost(self, sets: list[SelectionSetNode], parent: GraphQLNamedType) -> int:
        """Cost of the fields selected on `parent`; for abstract types the max over its possible types."""
        if not is_abstract_type(parent):
            return self._fields_cost(self._collect(sets, parent), parent)
        candidates: list[GraphQLNamedType] = [parent]
        for name in sorted(self._conditions(sets)):
            cond_type = self.schema.get_type(name)
            if cond_type is not None and cond_type is not parent and self._overlaps(parent, cond_type):
                candidates.append(cond_type)
        return max(self._fields_cost(self._collect(sets, c), c) for c in candidates)

    def _overlaps(self, parent: GraphQLNamedType, cond: GraphQLNamedType) -> bool:
        if is_object_type(cond):
            return self.schema.is_sub_type(parent, cond)
        if is_abstract_type(cond):
            return any(self.schema.is_sub_type(parent, t) for t in self.schema.get_possible_types(cond))
        return False

    def _fields_cost(self, fields: dict[str, list[FieldNode]], parent: GraphQLNamedType) -> int:
        total = 0
        type_fields = getattr(parent, "fields", {})
        for nodes in fields.values():
            name = nodes[0].name.value
            if name.startswith("__"):
                continue  # introspection and __typename are free
            field_def = type_fields.get(name)
            if field_def is not None:
                total += self._field_cost(field_def, nodes)
        return total

    def _field_cost(self, field_def: GraphQLField, nodes: list[FieldNode]) -> int:
        type_ = get_nullable_type(field_def.type)
        named = get_named_type(type_)
        if not (is_object_type(named) or is_abstract_type(named)):
            return 0
        sub_sets = [n.selection_set for n in nodes if n.selection_set is not None]
        args = get_argument_values(field_def, nodes[0], self.variables)
        if is_connection_type(named):
            try:
                size = check_page_args(nodes[0].name.value, args)
            except GraphQLError as exc:
                raise GraphQLError(exc.message, nodes=nodes[0]) from None
            node_type, node_sets = self._connection_nodes(named, sub_sets)
            return CONNECTION_BASE_COST + size * (1 + self.selection_cost(node_sets, node_type))
        item_cost = 1 + self.selection_cost(sub_sets, named)
        if is_list_type(type_):
            ids = args.get("ids")
            if isinstance(ids, list):
                if len(ids) > MAX_PAGE_SIZE:
                    raise GraphQLError(
                        f"The maximum number of ids is {MAX_PAGE_SIZE}, but {len(ids)} were given.", nodes=nodes[0]
                    )
                return len(ids) * item_cost
        return item_cost

    def _connection_nodes(
        self, conn: GraphQLObjectType, sets: list[SelectionSetNode]
    ) -> tuple[GraphQLNamedType, list[SelectionSetNode]]:
        """Merge the selections under `nodes` and under `edges { node }` so one node is costed once."""
        node_type = get_named_type(conn.fields["nodes"].type if "nodes" in conn.fields else None)
        edge_type = get_named_type(conn.fields["edges"].type)
        if node_type is None:
            node_type = get_named_type(edge_type.fields["node"].type)
        node_sets: list[SelectionSetNode] = []
        for nodes in self._collect(sets, conn).values():
            name = nodes[0].name.value
            if name == "nodes":
                node_sets += [n.selection_set for n in nodes if n.selection_set]
            elif name == "edges":
                edge_sets = [n.selection_set for n in nodes if n.selection_set]
                for inner in self._collect(edge_sets, edge_type).values():
                    if inner[0].name.value == "node":
                        node_sets += [n.selection_set for n in inner if n.selection_set]
        return node_type, node_sets


def _operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        raise GraphQLError(
            "An operation name is required" if operation_name is None else f"No operation named '{operation_name}'"
        )
    return operation


def is_mutation(document_ast: DocumentNode, operation_name: str | None = None) -> bool:
    """Return True when the operation to run is a mutation."""
    operation = get_operation_ast(document_ast, operation_name)
    return operation is not None and operation.operation == OperationType.MUTATION


def requested_cost(
    document_ast: DocumentNode,
    variables: dict[str, Any] | None,
    schema: GraphQLSchema,
    operation_name: str | None = None,
) -> int:
    """Return the requested cost of a validated document and its raw variables; raises GraphQLError."""
    operation = _operation(document_ast, operation_name)
    root = schema.get_root_type(operation.operation)
    if root is None:
        raise GraphQLError(f"Schema is not configured for {operation.operation.value}s.")
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {})
    if isinstance(coerced, list):
        raise coerced[0]
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST * len(operation.selection_set.selections)
    walker = _CostWalker(schema, document_ast, coerced)
    return walker.selection_cost([operation.selection_set], root)


# How ActualCostCounter treats a field, by (parent type, field name): the schema is fixed, so this is
# decided once per field of the schema rather than on each of the ~100 fields a catalog request resolves.
_FREE = 0  # introspection, or a connection's own edges/nodes/pageInfo (the connection counts them)
_LEAF = 1  # scalars and enums: only a Page result (never seen in practice) would count
_OBJECT = 2  # objects and abstract types: 1 per non-null object returned
_FIELD_KINDS: dict[tuple[GraphQLNamedType, str], int] = {}


def _field_kind(parent: GraphQLNamedType, field_name: str, return_type: Any) -> int:
    key = (parent, field_name)
    kind = _FIELD_KINDS.get(key)
    if kind is None:
        if field_name.startswith("__") or parent.name.startswith("__"):
            kind = _FREE
        # Connection internals are covered by the connection's own 2 + nodes returned.
        elif is_connection_type(parent) or is_edge_type(parent):
            kind = _FREE
        else:
            named = get_named_type(return_type)
            kind = _OBJECT if is_object_type(named) or is_abstract_type(named) else _LEAF
        _FIELD_KINDS[key] = kind  # racing threads store the same value
    return kind


class ActualCostCounter:
    """graphql-core field resolver that adds up the same formula with the number of nodes actually returned.

    It resolves every field without a resolver of its own, which is every field of the sandbox's schema (only
    introspection and __typename have theirs, and they are free): a field resolver costs one call per field
    where a middleware would wrap each resolver in another.
    """

    def __init__(self) -> None:
        self.total = 0

    def resolve(self, root: Any, info: Any, **args: Any) -> Any:
        """Resolve the field as graphql-core's default resolver does, then count what it returned."""
        result = default_field_resolver(root, info, **args)
        kind = _field_kind(info.parent_type, info.field_name, info.return_type)
        if kind == _FREE:
            return result
        if isinstance(result, Page):
            self.total += CONNECTION_BASE_COST + len(result.items)
        elif kind == _OBJECT:
            if isinstance(result, list):
                self.total += sum(1 for item in result if item is not None)
            elif result is not None:
                self.total += 1
        return result


def _never_awaitable(_value: Any) -> bool:
    # Every sandbox resolver is synchronous: graphql-core's default check inspects each of the
    # hundreds of values a request resolves for coroutine-ness, which costs more than resolving them.
    return False


def actual_cost(
    document_ast: DocumentNode,
    variables: dict[str, Any] | None,
    schema: GraphQLSchema,
    operation_name: str | None = None,
    root_value: Any = None,
    context_value: Any = None,
) -> tuple[int, Any]:
    """Execute the document and return (actual cost, ExecutionResult), counting nodes actually returned."""
    from graphql import execute  # local import keeps this module's public surface small

    counter = ActualCostCounter()
    result = execute(
        schema,
        document_ast,
        root_value=root_value,
        context_value=context_value,
        variable_values=variables,
        operation_name=operation_name,
        field_resolver=counter.resolve,
        is_awaitable=_never_awaitable,
    )
    return counter.total, result
