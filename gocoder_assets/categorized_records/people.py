"""Pseudonyms for the people named in discussions (Dagster-free): authors, @-mentions and commit trailers."""

from __future__ import annotations

import re

_A = re.ASCII
# Commit-message trailers that name a person (git's and the kernel's conventions; GitHub's Co-authored-by).
_TRAILERS = ("Signed-off-by", "Co-authored-by", "Reported-by", "Reviewed-by", "Acked-by", "Tested-by", "Suggested-by",
             "Helped-by", "Cc", "Author", "Committer")  # fmt: skip
_TRAILER = re.compile(rf"^([ \t>]*(?:{'|'.join(_TRAILERS)}):[ \t]*)([^<>\r\n]*?)([ \t]*(?:<[^<>\r\n]*>)?[ \t]*)$",
                      re.I | re.M | _A)  # fmt: skip
# ``@word`` that is not a person: Go module queries (go get x@latest, @v1.2.3), doc-comment tags, chat broadcasts.
_NOT_PEOPLE = re.compile(
    r"v\d.*|\d+x?|latest|master|main|head|none|upgrade|patch|here|channel|everyone|param|returns?|throws|see|since"
    r"|deprecated|example|override|todo|types|link|author|version|media|import|keyframes|font-face|supports",
    re.I | _A,
)


class UsernameMapper:
    """Per-thread pseudonyms (StarCoder2): each distinct person becomes ``username_0``, ``username_1``, … in order of
    first appearance (GitHub logins are case-insensitive). ``mention_text`` rewrites every ``@login`` mention (a
    mention names a person whether or not they wrote in the thread) and the name in ``Signed-off-by:`` and other
    person trailers; the trailer's e-mail is left to ``redact`` (``<EMAIL>``)."""

    _MENTION = re.compile(r"(?<![\w.+/@-])@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))(?![\w/-])", _A)

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def name(self, login: str | None) -> str:
        key = (login or "ghost").lower()  # GitHub shows deleted accounts as "ghost"; the API gives no author
        if key not in self._names:
            self._names[key] = f"username_{len(self._names)}"
        return self._names[key]

    def __contains__(self, login: str | None) -> bool:
        return (login or "ghost").lower() in self._names

    def mention_text(self, text: str) -> str:
        """``text`` with mentions and trailer names replaced by pseudonyms (the same object when there are none)."""
        if "@" in text:
            text = self._MENTION.sub(self._mention, text)
        if "-by:" in text or "-By:" in text or re.search(r"(?im)^[ \t>]*(?:cc|author|committer):", text):
            text = _TRAILER.sub(self._trailer, text)
        return text

    def _mention(self, m: re.Match[str]) -> str:
        return m.group() if _NOT_PEOPLE.fullmatch(m.group(1)) else "@" + self.name(m.group(1))

    def _trailer(self, m: re.Match[str]) -> str:
        person = m.group(2).strip()
        if not person or re.fullmatch(r"username_\d+|@username_\d+", person):
            return m.group()
        return m.group(1) + self.name(person.removeprefix("@")) + m.group(3)
