"""Blob sizes of the snapshot from GitHub's git trees API, so blobs over the size cap are never fetched.

A blob-less clone cannot tell a blob's size without fetching it (``ls-tree -l`` and ``cat-file
--batch-check`` fetch it or fail, and blobs asked for by id ignore ``--filter=blob:limit``), yet a
file over ``MAX_FILE_BYTES`` is only ever recorded as a ``too_large`` skip. GitHub knows the sizes:
one ``GET /repos/{owner}/{repo}/git/trees/{commit}?recursive=1`` lists every blob with its ``size``.
That one request per snapshot commit goes through the partition's archive like every other page
(a killed run resumes, ``replay`` needs none, an unchanged head commit costs nothing again).

GitHub truncates the listing of huge trees (over 100,000 entries or 7 MB: ``truncated: true``);
the blobs it leaves out simply have no known size and are fetched and measured as before. A tree
GitHub will not list (404/409/422, e.g. an empty or just-deleted repository) is archived as an
empty, truncated listing, so the collection goes on exactly as without this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from githubkit import GitHub
from githubkit.exception import RequestFailed

from gocoder_assets.sources.github.archive import ApiArchive

_NO_LISTING = (404, 409, 422)  # no tree to list: fall back to fetching and measuring, not an error


@dataclasses.dataclass(frozen=True)
class TreeSizes:
    """Blob id -> size in bytes for the blobs GitHub listed; ``truncated``: some blobs are not listed."""

    sizes: dict[str, int]
    truncated: bool


def tree_sizes(gh: GitHub | None, archive: ApiArchive, owner: str, name: str, sha: str) -> TreeSizes:
    """The sizes of the blobs at commit ``sha``, from the archive or one REST request.

    Only blob ids and sizes (and paths, for audit) are archived: the listing's urls, modes and
    subtrees are most of its bytes and nothing reads them."""

    def fetch(_cursor: str | None, _size: int) -> dict[str, Any]:
        if gh is None:
            raise RuntimeError("replay mode must not call the API")
        try:
            data = gh.rest.git.get_tree(owner, name, sha, recursive="1").json()
        except RequestFailed as e:
            if e.response.status_code not in _NO_LISTING:
                raise
            return {"sha": None, "status": e.response.status_code, "tree": [], "truncated": True}
        blobs = [
            {"path": e["path"], "sha": e["sha"], "size": e["size"]}
            for e in data.get("tree") or []
            if e.get("type") == "blob" and isinstance(e.get("size"), int)
        ]
        return {"sha": data.get("sha"), "tree": blobs, "truncated": bool(data.get("truncated"))}

    (data,) = archive.pages(f"tree {sha}", fetch, (), 1)
    return TreeSizes({e["sha"]: e["size"] for e in data["tree"]}, bool(data["truncated"]))
