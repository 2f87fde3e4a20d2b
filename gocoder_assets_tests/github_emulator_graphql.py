"""The emulator's GraphQL half: GitHub's published schema executed by graphql-core over fixture repos.

Cursors are opaque per list (base64 of the list's id and an offset, as GitHub's are), so a cursor
used on another list fails loudly instead of paging from a wrong position. A repository can be made
unavailable: it then answers with GitHub's item-error shape (null data plus ``errors`` entries with
``type`` NOT_FOUND or FORBIDDEN and the ``path`` of the null), beside the rest of the answer.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import graphql

from gocoder_assets_tests.github_emulator_cost import PointBudget
from gocoder_assets_tests.github_emulator_data import Repo

SCHEMA_FILE = Path(__file__).resolve().parents[1] / ".ci/node/node_modules/@octokit/graphql-schema/schema.graphql"
_schema: graphql.GraphQLSchema | None = None


def load_schema() -> graphql.GraphQLSchema:
    """GitHub's published schema (``.ci/setup-github-schema`` installs it); built once per process.

    ``assume_valid_sdl``: the published SDL declares two fields twice (harmless duplicates)."""
    global _schema
    if _schema is None:
        _schema = graphql.build_schema(SCHEMA_FILE.read_text(), assume_valid_sdl=True)
    return _schema


class CursorError(ValueError):
    """A cursor that does not belong to the list it is used on (GitHub answers with a GraphQL error)."""


def _cursor(list_id: str, n: int) -> str:
    """Opaque per list, as GitHub's are: the list's id and an offset, base64-encoded."""
    return base64.b64encode(f"cursor:v2:{list_id}:{n}".encode()).decode()


def _offset(list_id: str, cursor: str) -> int:
    try:
        prefix, _, n = base64.b64decode(cursor).decode().rpartition(":")
    except ValueError:
        prefix, n = "", ""
    if prefix != f"cursor:v2:{list_id}" or not n.isdigit():
        raise CursorError(f"`{cursor}` does not appear to be a valid cursor.")
    return int(n)


def connection(items: list[dict[str, Any]], list_id: str):
    """A connection resolver over ``items``; ``list_id`` names the list (a cursor of another list fails)."""

    def resolve(first: int | None = None, after: str | None = None, **_: Any) -> dict[str, Any]:
        if first is None or not 1 <= first <= 100:
            raise ValueError("You must provide a `first` value between 1 and 100")
        start = _offset(list_id, after) if after else 0
        page = items[start : start + first]
        end = start + len(page)
        return {
            "nodes": page,
            "totalCount": len(items),
            "pageInfo": {
                "hasNextPage": end < len(items),
                "hasPreviousPage": start > 0,
                "startCursor": _cursor(list_id, start + 1) if page else None,
                "endCursor": _cursor(list_id, end) if page else after,
            },
        }

    return resolve


def _actor(login: str | None, bot: bool) -> dict[str, Any] | None:
    """None for a deleted account (GitHub's "ghost": the author field is null)."""
    return None if login is None else {"__typename": "Bot" if bot else "User", "login": login}


def _field_resolver(source: Any, info: graphql.GraphQLResolveInfo, **args: Any) -> Any:
    value = source.get(info.field_name) if isinstance(source, dict) else getattr(source, info.field_name, None)
    return value(**args) if callable(value) else value


class ItemError(Exception):
    """An error GitHub reports on one item (``type`` NOT_FOUND / FORBIDDEN), not on the query."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_MESSAGES = {
    "NOT_FOUND": "Could not resolve to a Repository with the name '{}'.",
    "FORBIDDEN": "Repository access blocked: '{}' is unavailable due to a DMCA takedown.",
}


class Graph:
    """The fixture repositories as GraphQL nodes, plus the root resolvers."""

    def __init__(self, repos: dict[str, Repo]) -> None:
        self.schema = load_schema()
        self.points = PointBudget(self.schema)  # GitHub's cost formula, 5,000 points/h per token
        self.unavailable: dict[str, str] = {}  # full name -> "NOT_FOUND" | "FORBIDDEN"
        self._nodes: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}  # repository node id -> full name
        self._graph = {name: self._repo_node(r) for name, r in repos.items()}
        self._names = {r.node_id: name for name, r in repos.items()}

    def _item_error(self, full_name: str) -> ItemError | None:
        kind = self.unavailable.get(full_name)
        return ItemError(kind, _MESSAGES[kind].format(full_name)) if kind else None

    def _repository(self, owner: str, name: str, **_: Any) -> dict[str, Any] | None:
        full = f"{owner}/{name}"
        if error := self._item_error(full):
            raise error
        return self._graph.get(full)

    def _node(self, node_id: str) -> Any:
        """A node, or (returned, not raised: graphql-core then nulls just that list item) its item error."""
        name = self._names.get(node_id) or self._nodes.get(node_id, {}).get("_repo")
        return (self._item_error(name) if name else None) or self._nodes.get(node_id)

    def _repo_node(self, repo: Repo) -> dict[str, Any]:
        def pr_node(pr: Any) -> dict[str, Any]:
            base = f"{repo.id}_{pr.number}"
            threads = [
                self._index(
                    {
                        "__typename": "PullRequestReviewThread",
                        "id": f"PRRT_{base}_{i}",
                        "path": t.path,
                        "line": t.line,
                        "comments": connection(
                            [
                                {
                                    "author": _actor(c.author, c.bot),
                                    "body": c.body,
                                    "createdAt": c.created_at,
                                    "diffHunk": t.diff_hunk,
                                }
                                for c in t.comments
                            ],
                            f"PRRT_{base}_{i}.comments",
                        ),
                    }
                )
                for i, t in enumerate(pr.threads)
            ]
            return self._index(
                {
                    "__typename": "PullRequest",
                    "_repo": repo.full_name,
                    "id": f"PR_{base}",
                    "number": pr.number,
                    "title": pr.title,
                    "body": pr.body,
                    "state": pr.state,
                    "createdAt": pr.created_at,
                    "updatedAt": pr.updated_at or pr.created_at,
                    "mergedAt": pr.merged_at,
                    "baseRefOid": pr.base_oid,
                    "headRefOid": pr.head_oid,
                    "author": _actor(pr.author, pr.bot),
                    "comments": connection(
                        [
                            {"author": _actor(c.author, c.bot), "body": c.body, "createdAt": c.created_at}
                            for c in pr.comments
                        ],
                        f"PR_{base}.comments",
                    ),
                    "reviews": connection(
                        [
                            {
                                "author": _actor(c.author, c.bot),
                                "body": c.body,
                                "createdAt": c.created_at,
                                "state": state,
                            }
                            for c, state in pr.reviews
                        ],
                        f"PR_{base}.reviews",
                    ),
                    "reviewThreads": connection(threads, f"PR_{base}.reviewThreads"),
                }
            )

        def issue_node(issue: Any) -> dict[str, Any]:
            return self._index(
                {
                    "__typename": "Issue",
                    "_repo": repo.full_name,
                    "id": f"I_{repo.id}_{issue.number}",
                    "number": issue.number,
                    "title": issue.title,
                    "body": issue.body,
                    "createdAt": issue.created_at,
                    "updatedAt": issue.updated_at or issue.created_at,
                    "author": _actor(issue.author, False),
                    "comments": connection(
                        [
                            {"author": _actor(c.author, c.bot), "body": c.body, "createdAt": c.created_at}
                            for c in issue.comments
                        ],
                        f"I_{repo.id}_{issue.number}.comments",
                    ),
                }
            )

        prs = [pr_node(p) for p in repo.prs]
        issues = [issue_node(i) for i in repo.issues]

        def pull_requests(states: list[str] | None = None, orderBy: dict | None = None, **kw: Any) -> dict[str, Any]:
            order = _order(orderBy)
            chosen = [p for p in _ordered(prs, order) if not states or p["state"] in states]
            return connection(chosen, f"{repo.node_id}.pullRequests.{states}.{order}")(**kw)

        def issue_list(orderBy: dict | None = None, **kw: Any) -> dict[str, Any]:
            order = _order(orderBy)
            return connection(_ordered(issues, order), f"{repo.node_id}.issues.{order}")(**kw)

        head = repo.head_oid or None
        return self._index(
            {
                "__typename": "Repository",
                "id": repo.node_id,
                "nameWithOwner": repo.full_name,
                "defaultBranchRef": {"name": repo.default_branch, "target": {"__typename": "Commit", "oid": head}}
                if head
                else None,
                "pullRequests": pull_requests,
                "issues": issue_list,
            }
        )

    def refresh(self, repo: Repo) -> None:
        """Rebuild ``repo``'s nodes after a test changed its data (``add_pr``, ``edit_pr_comment``)."""
        self._graph[repo.full_name] = self._repo_node(repo)

    def _index(self, node: dict[str, Any]) -> dict[str, Any]:
        self._nodes[node["id"]] = node
        return node

    def execute(self, payload: dict[str, Any], token: str = "") -> tuple[dict[str, Any], list[str]]:
        """GitHub's JSON answer, and the messages of the errors that make the query itself invalid.
        Charged first, as GitHub does: ``RateLimited`` (github_emulator_cost) when over the token's budget."""
        rate = self.points.charge(payload, token)
        root = {
            "repository": self._repository,
            "nodes": lambda ids: [self._node(i) for i in ids],
            "node": lambda id: _raise(n) if isinstance(n := self._node(id), ItemError) else n,
            "rateLimit": lambda **_: rate,
        }
        result = graphql.graphql_sync(
            self.schema,
            payload["query"],
            root_value=root,
            variable_values=payload.get("variables"),
            field_resolver=_field_resolver,
        )
        out: dict[str, Any] = {"data": result.data}
        invalid: list[str] = []
        if result.errors:
            out["errors"] = []
            for e in result.errors:
                formatted = dict(e.formatted)
                if isinstance(e.original_error, ItemError):
                    formatted["type"] = e.original_error.kind
                else:
                    invalid.append(e.message)
                out["errors"].append(formatted)
        return out, invalid


def _order(order_by: dict[str, str] | None) -> tuple[str, str]:
    """``orderBy`` as (node field, direction); GitHub's default for these lists is oldest created first."""
    order_by = order_by or {"field": "CREATED_AT", "direction": "ASC"}
    field = {"CREATED_AT": "createdAt", "UPDATED_AT": "updatedAt"}[order_by["field"]]
    return field, order_by["direction"]


def _ordered(nodes: list[dict[str, Any]], order: tuple[str, str]) -> list[dict[str, Any]]:
    field, direction = order
    return sorted(nodes, key=lambda n: (n[field], n["number"]), reverse=direction == "DESC")


def _raise(error: Exception) -> Any:
    raise error
