"""Every GraphQL document the GitHub source sends, in one place so tests validate them all.

The PR page asks for 50 pull requests with their issue comments, reviews and review threads
nested, so 100 PRs with their discussion cost 2 requests (plus rare follow-ups when a nested
connection overflows). Authors carry ``__typename`` so bots (``Bot`` actors) are recognizable
without a name heuristic. Every page also asks for ``rateLimit`` so the remaining budget can
be logged at no extra cost, and its ``cost`` summed into the points a partition used.

PRs and issues are listed by ``UPDATED_AT`` (newest first) and carry ``updatedAt``: a later
collection then pages only until it reaches what the previous one already saw (the high-water
mark), instead of listing the whole repository again.
"""

from __future__ import annotations

_ACTOR = "author { __typename login }"
_PAGE = "pageInfo { hasNextPage endCursor }"
_COMMENT = f"{_ACTOR} body createdAt"
_RATE = "rateLimit { cost remaining resetAt }"

_THREAD_COMMENTS = f"comments(first: $nested) {{ {_PAGE} nodes {{ {_COMMENT} diffHunk }} }}"
_PR_CONNECTIONS = {
    "comments": f"comments(first: $nested) {{ {_PAGE} nodes {{ {_COMMENT} }} }}",
    "reviews": f"reviews(first: $nested) {{ {_PAGE} nodes {{ {_COMMENT} state }} }}",
    "reviewThreads": f"reviewThreads(first: $nested) {{ {_PAGE} nodes {{ id path line {_THREAD_COMMENTS} }} }}",
}

PULL_REQUESTS = f"""
query PullRequests($owner: String!, $name: String!, $first: Int!, $cursor: String, $nested: Int!) {{
  {_RATE}
  repository(owner: $owner, name: $name) {{
    pullRequests(first: $first, after: $cursor, states: [MERGED, CLOSED],
                 orderBy: {{field: UPDATED_AT, direction: DESC}}) {{
      {_PAGE}
      nodes {{
        id number title body state createdAt updatedAt mergedAt baseRefOid headRefOid {_ACTOR}
        {" ".join(_PR_CONNECTIONS.values())}
      }}
    }}
  }}
}}
"""

ISSUES = f"""
query Issues($owner: String!, $name: String!, $first: Int!, $cursor: String, $nested: Int!) {{
  {_RATE}
  repository(owner: $owner, name: $name) {{
    issues(first: $first, after: $cursor, orderBy: {{field: UPDATED_AT, direction: DESC}}) {{
      {_PAGE}
      nodes {{
        id number title body createdAt updatedAt {_ACTOR}
        comments(first: $nested) {{ {_PAGE} nodes {{ {_COMMENT} }} }}
      }}
    }}
  }}
}}
"""

# Default-branch heads of up to 100 repositories (by the node ids the search returned) in one request.
REPOSITORY_HEADS = f"""
query RepositoryHeads($ids: [ID!]!) {{
  {_RATE}
  nodes(ids: $ids) {{
    ... on Repository {{ id nameWithOwner defaultBranchRef {{ name target {{ oid }} }} }}
  }}
}}
"""


def _more(node_type: str, selection: str) -> str:
    """Follow-up query for one overflowing nested connection of one node (githubkit-paginable).

    Only the paged connection (the first in ``selection``) takes ``after: $cursor``: a cursor belongs
    to one list, so the lists nested inside it start at their first page (``first: 20``) and are
    completed by their own follow-ups (``MORE[("PullRequestReviewThread", "comments")]``). ``$first``
    is a variable so a page that times out can be asked for again in a smaller size."""
    paged = "(first: $nested)"
    if not selection.lstrip().split("(", 1)[1].startswith("first: $nested)"):
        raise ValueError(f"the paged connection must come first: {selection[:60]}")
    body = selection.replace(paged, "(first: $first, after: $cursor)", 1).replace("$nested", "20")
    return f"""
query More($id: ID!, $first: Int!, $cursor: String) {{
  {_RATE}
  node(id: $id) {{ ... on {node_type} {{ {body} }} }}
}}
"""


# (node type, connection) -> query that pages through the rest of that connection.
MORE = {
    ("PullRequest", "comments"): _more("PullRequest", _PR_CONNECTIONS["comments"]),
    ("PullRequest", "reviews"): _more("PullRequest", _PR_CONNECTIONS["reviews"]),
    ("PullRequest", "reviewThreads"): _more("PullRequest", _PR_CONNECTIONS["reviewThreads"]),
    ("PullRequestReviewThread", "comments"): _more("PullRequestReviewThread", _THREAD_COMMENTS),
    ("Issue", "comments"): _more("Issue", _PR_CONNECTIONS["comments"]),
}

ALL_QUERIES = {
    "PULL_REQUESTS": PULL_REQUESTS,
    "ISSUES": ISSUES,
    "REPOSITORY_HEADS": REPOSITORY_HEADS,
    **{f"MORE_{t}_{c}": q for (t, c), q in MORE.items()},
}
