"""GitHub's GraphQL point cost, computed before execution as github.com does, and a per-token budget.

Why: a collector that is cheap against an emulator charging 1 point a query can still exhaust the real
5,000 points/h. GitHub's published formula ("Rate limits and node limits for the GraphQL API"):
assume every connection returns its full ``first``/``last``; the requests needed to fulfil one
connection are the product of the sizes of the connections *above* it (one request for a top-level
connection, 100 for ``issues(first: 50)`` under ``repositories(first: 100)``, 5,000 for
``labels(first: 60)`` under both); add them over the query's unique connections, divide by 100, round to
the nearest whole number; minimum 1. Its own worked example (1 + 100 + 5,000 = 5,101 -> 51) is a test.

A connection is a field whose type is a ``…Connection`` object of the schema; ``nodes(ids:)`` is a
plain list but, like a connection, multiplies what is nested in it (by the number of ids). Fields are
keyed by their response path, so a selection merged from several fragments counts once and aliased
copies count each. A query that does not parse or names unknown fields costs 1 (GitHub rejects it).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import graphql
from graphql import language as ast
from graphql.utilities import value_from_ast_untyped

LIMIT = 5000  # points per hour per token
MAX_PAGE = 100  # a connection without first/last: GitHub rejects it; counted at the largest page


def _operation(document: ast.DocumentNode, name: str | None) -> ast.OperationDefinitionNode | None:
    ops = [d for d in document.definitions if isinstance(d, ast.OperationDefinitionNode)]
    return next((o for o in ops if name is None or (o.name and o.name.value == name)), None)


def _variables(op: ast.OperationDefinitionNode, given: dict[str, Any] | None) -> dict[str, Any]:
    """The request's variables over the operation's declared defaults."""
    out = {
        d.variable.name.value: value_from_ast_untyped(d.default_value)
        for d in op.variable_definitions or ()
        if d.default_value is not None
    }
    return {**out, **{k: v for k, v in (given or {}).items() if v is not None}}


class _Walk:
    """Requests per connection, keyed by response path (a path twice, from merged fragments, counts once)."""

    def __init__(self, schema: graphql.GraphQLSchema, document: ast.DocumentNode, variables: dict[str, Any]) -> None:
        self.schema, self.variables = schema, variables
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, ast.FragmentDefinitionNode)}
        self.requests: dict[tuple[str, ...], int] = {}

    def _arg(self, field: ast.FieldNode, name: str) -> Any:
        node = next((a.value for a in field.arguments or () if a.name.value == name), None)
        return None if node is None else value_from_ast_untyped(node, self.variables)

    def selections(self, parent: Any, sel: ast.SelectionSetNode | None, path: tuple[str, ...], mult: int) -> None:
        for s in sel.selections if sel else ():
            if isinstance(s, ast.FieldNode):
                self.field(parent, s, path, mult)
            elif isinstance(s, ast.InlineFragmentNode):
                cond = self.schema.get_type(s.type_condition.name.value) if s.type_condition else parent
                self.selections(cond, s.selection_set, path, mult)
            elif isinstance(s, ast.FragmentSpreadNode) and (frag := self.fragments.get(s.name.value)):
                self.selections(self.schema.get_type(frag.type_condition.name.value), frag.selection_set, path, mult)

    def field(self, parent: Any, f: ast.FieldNode, path: tuple[str, ...], mult: int) -> None:
        defn = getattr(parent, "fields", {}).get(f.name.value)
        if defn is None:  # __typename, or a field GitHub would reject anyway
            return
        here = (*path, f.alias.value if f.alias else f.name.value)
        named = graphql.get_named_type(defn.type)
        inner = mult
        if named.name.endswith("Connection") and isinstance(named, graphql.GraphQLObjectType):
            self.requests[here] = mult  # this connection's requests: the product of the sizes above it
            size = self._arg(f, "first") or self._arg(f, "last") or MAX_PAGE
            inner = mult * int(size)
        elif parent is self.schema.query_type and f.name.value == "nodes":
            inner = mult * max(1, len(self._arg(f, "ids") or ()))
        self.selections(named, f.selection_set, here, inner)


def connection_requests(
    schema: graphql.GraphQLSchema,
    query: str | ast.DocumentNode,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> dict[tuple[str, ...], int]:
    """Requests needed per connection (response path -> count) under GitHub's formula."""
    document = graphql.parse(query) if isinstance(query, str) else query
    op = _operation(document, operation_name)
    if op is None:
        return {}
    walk = _Walk(schema, document, _variables(op, variables))
    root = {"query": schema.query_type, "mutation": schema.mutation_type}.get(op.operation.value)
    walk.selections(root, op.selection_set, (), 1)
    return walk.requests


def query_cost(
    schema: graphql.GraphQLSchema,
    query: str | ast.DocumentNode,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> int:
    """Points GitHub charges for this query: sum of requests / 100, rounded half up, at least 1."""
    try:
        total = sum(connection_requests(schema, query, variables, operation_name).values())
    except (graphql.GraphQLError, TypeError, ValueError):
        return 1  # unparseable or ill-typed: execution reports the error; GitHub charges the minimum
    return max(1, math.floor(total / 100 + 0.5))


class RateLimited(Exception):
    """The query's cost is over what the token has left until ``reset`` (epoch seconds)."""

    def __init__(self, cost: int, remaining: int, reset: int) -> None:
        super().__init__(f"API rate limit exceeded: cost {cost}, remaining {remaining}")
        self.cost, self.remaining, self.reset = cost, remaining, reset


@dataclass
class _Window:
    remaining: int
    reset: int  # epoch seconds, as GitHub's x-ratelimit-reset


class PointBudget:
    """GitHub's GraphQL budget: ``limit`` points per token per ``window`` seconds (tests shrink both).

    ``charge`` refuses, without charging, a query that would take ``remaining`` below 0, as GitHub does;
    ``used`` totals every point charged, over all tokens. Thread-safe (the emulator serves in threads)."""

    def __init__(self, schema: graphql.GraphQLSchema, limit: int = LIMIT, window: float = 3600.0) -> None:
        self.schema, self.limit, self.window = schema, limit, window
        self.used = 0
        self._lock = threading.Lock()
        self._tokens: dict[str, _Window] = {}

    def _current(self, token: str, now: float) -> _Window:
        w = self._tokens.get(token)
        if w is None or now >= w.reset:
            w = self._tokens[token] = _Window(self.limit, math.ceil(now + self.window))
        return w

    def window_of(self, token: str) -> tuple[int, int]:
        """(points left, reset in epoch seconds) for ``token``: its x-ratelimit headers."""
        with self._lock:
            w = self._current(token, time.time())
            return w.remaining, w.reset

    def charge(self, payload: dict[str, Any], token: str) -> dict[str, Any]:
        """The ``rateLimit`` object for this query after charging it; raises ``RateLimited`` when over."""
        cost = query_cost(self.schema, payload.get("query", ""), payload.get("variables"), payload.get("operationName"))
        with self._lock:
            w = self._current(token, time.time())
            if w.remaining - cost < 0:
                raise RateLimited(cost, w.remaining, w.reset)
            w.remaining -= cost
            self.used += cost
            remaining, reset = w.remaining, w.reset
        return {
            "cost": cost,
            "remaining": remaining,
            "limit": self.limit,
            "used": self.limit - remaining,
            "nodeCount": 0,
            "resetAt": dt.datetime.fromtimestamp(reset, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
