"""GraphQL nodes → raw records (``change`` and ``issue``), with bots filtered out.

Pure functions over archived response data, so a parser change is re-applied to old archives
with zero API calls (replay mode).
"""

from __future__ import annotations

from typing import Any

from gocoder_assets.sources.base import RawRecord, is_bot_login

# GitHub Apps are "Bot" actors with "[bot]" logins; older bots are user accounts named like bots.
GHOST = "ghost"  # what GitHub shows for deleted accounts (author null)


def author(node: dict[str, Any]) -> str:
    actor = node.get("author") or {}
    return actor.get("login") or GHOST


def is_bot(node: dict[str, Any]) -> bool:
    actor = node.get("author") or {}
    return actor.get("__typename") == "Bot" or is_bot_login(actor.get("login"))


def _comments(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"author": author(c), "body": c.get("body") or "", "created_at": c["createdAt"]} for c in nodes if not is_bot(c)
    ]


def change_record(pr: dict[str, Any], files: list[dict[str, Any]]) -> RawRecord:
    """A PR as a ``change`` record (base.py's fields plus state, merge date, base, reviews, threads)."""
    threads = []
    for t in pr["reviewThreads"]["nodes"]:
        comments = t["comments"]["nodes"]
        kept = _comments(comments)
        if kept:
            threads.append(
                {
                    "path": t.get("path"),
                    "line": t.get("line"),
                    "diff_hunk": comments[0].get("diffHunk") if comments else None,
                    "comments": kept,
                }
            )
    reviews = [
        {"author": author(r), "state": r["state"], "body": r.get("body") or "", "created_at": r["createdAt"]}
        for r in pr["reviews"]["nodes"]
        if not is_bot(r)
    ]
    return {
        "kind": "change",
        "number": pr["number"],
        "sha": pr["headRefOid"],
        "title": pr["title"],
        "body": pr.get("body") or "",
        "author": author(pr),
        "created_at": pr["createdAt"],
        "comments": _comments(pr["comments"]["nodes"]),
        "files": files,
        "state": pr["state"],
        "merged_at": pr.get("mergedAt"),
        "base_sha": pr.get("baseRefOid"),
        "reviews": reviews,
        "review_threads": threads,
    }


def issue_record(issue: dict[str, Any]) -> RawRecord:
    return {
        "kind": "issue",
        "number": issue["number"],
        "title": issue["title"],
        "body": issue.get("body") or "",
        "author": author(issue),
        "created_at": issue["createdAt"],
        "comments": _comments(issue["comments"]["nodes"]),
    }
