"""Does a piece of GitHub discussion text contain code? A small regex detector for the NAT / MIX split.

Issue and PR titles, bodies and comments are markdown written by people. NAT is such text *without* code,
MIX is text *with* code, so the categorizer asks `code_reasons(text)` which named rules fired (datatrove
style: a filter gives a reason, never a bare bool). The rules, in `CODE_RULES` order:

- ``code_block``: a fenced block (``` or ~~~, any indentation, closed or running to the end of the text) with
  non-blank content, or an indented block (tab / 4+ spaces, after a blank line, 2+ lines, most of them
  code-like). Nested markdown lists are indented too, so list-item lines end an indented block and a block whose
  lines read like prose (a list item's continuation paragraph) is not code.
- ``inline_code``: a backtick span (1 to 3 backticks, closed by the same run on the same line) with non-blank
  content. Apostrophes are not backticks, and one stray backtick has nothing to close it.
- ``go_line``: Go source written as plain lines, outside any code markup: one strong line (a func signature,
  ``:=``, ``err != nil``, a package / import clause, a keyword line ending in ``{``, ``defer`` / ``go`` with a
  call) or two weak ones (``return nil, err``, ``fmt.Println(x)``, ``x = y``, ``i++``, a lone ``}``, ``// note``,
  ``var`` / ``const`` / ``type`` / ``case``). Weak lines parse as Go expressions, so prose that merely starts with
  a keyword ("return to this later", "type of error", "go to settings") is not Go.
- ``code_reference``: code named in prose: a call or selector (``http.ListenAndServe()``, ``Close()``,
  ``errors.Is``, ``(*Client).Do``), a Go file (``pkg/server/handler.go``, ``handler.go:123``, ``go.mod``) or a
  Go stack trace (``goroutine 1 [running]:``, ``panic: ...``, ``+0x1d``). URLs and e-mail addresses are removed
  first: a link to ``.../a.go`` is a link, not code in the text. Sentence ends ("works. Then"), version numbers
  and ``bare(s)`` words have no identifier-dot-Identifier or empty-call shape. Lines counted by ``go_line``
  (when it fires) are not searched again, so a Go line is not also a "reference".

Everything is linear in the text: regexes are anchored at token starts by lookbehinds, have no nested
ambiguous repetition, and the Go-line rules only look at lines of at most `MAX_GO_LINE` characters.
"""

from __future__ import annotations

import re

CODE_RULES: tuple[str, ...] = ("code_block", "inline_code", "go_line", "code_reference")
MAX_GO_LINE = 300  # Go lines are short; longer lines are prose (or minified junk) and are not parsed as Go

# Markdown code markup.
_QUOTE = re.compile(r"^[ \t]{0,3}(?:>[ \t]?)+")  # "> " reply quotes: quoted code is still code
_FENCE = re.compile(r"^[ \t]*(?:(`{3,})[^`]*|(~{3,}).*)$")  # a backtick info string has no backtick (CommonMark)
_INDENT = re.compile(r" {0,3}\t| {4}")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_CODE_LIKE = re.compile(r"[{};]\s*$|^\s*[)}\]]|:=|[!=]=|&&|\|\||//|\w\([^()]*\)|\.go:\d+|^\s*goroutine \d+ \[")
_INLINE = re.compile(r"(?<!`)(`{1,3})(?!`)([^\n]+?)(?<!`)\1(?!`)")

# Go lines. A line is first "flattened": strings become "", bracket contents are dropped ((a, b) -> ()), so the
# shapes below never have to parse nesting.
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_COMMENT = re.compile(r"\s+//.*$")
_BRACKETS = re.compile(r"\([^()]*\)|\{[^{}]*\}|\[[^\[\]]*\]")
_TOK = r'(?:""|(?:[-!&*<^]|\[\])*\w+(?:\.\w+|\(\)|\{\}|\[\])*)'  # x, &T{}, <-ch, a.b().c, []byte(), ""
_SEP = r"(?:,|&&|\|\||[<>=!]=|[-+*/%|^<>])"
_EXPR = _TOK + r"(?:\s*" + _SEP + r"\s*" + _TOK + r")*"  # tokens joined by operators, never by a bare space
_CALL = r"(?:[-!&*<^]|\[\])*\w+(?:\.\w+|\(\)|\{\}|\[\])*\(\)"
_BUILTIN = r"(?:bool|byte|rune|string|error|any|u?int(?:8|16|32|64|ptr)?|float(?:32|64)|complex(?:64|128))\b"
_TYPE_HEAD = r"(?:\*|\[\w*\])*(?:map\[\]\S*|chan\s+\S+|func\(\)\S*|struct\{\}|interface\{\}|\w+\.\w+"
_TYPE = _TYPE_HEAD + r")"  # a named type's underlying type: no builtins, so "type of error" is not Go
_VAR_TYPE = _TYPE_HEAD + r"|" + _BUILTIN + r")"
_STRONG_RAW = re.compile(
    r"(?<![:\w])\w+(?:\s*,\s*\w+)*\s*:=\s*\S"  # x := foo(), v, ok := m[k]
    r"|\berr\s*[!=]=\s*nil\b"
    r"|^(?:\}\s*)?(?:if|else|for|switch|select|func|go|defer|type|var|const|struct|interface|return|case)\b.*\{$"
    r"|^[\w.]+\(.*\bfunc\b.*\{$"  # t.Run("x", func(t *testing.T) {
    r"|^type\s+\w+(?:\[[^\]\n]*\])?\s+(?:struct|interface)\s*\{"
)
_STRONG_FLAT = re.compile(
    r"func\s*(?:\(\)\s*)?\w*(?:\[\])?\(\)\s*(?:(?:[*.\w]|\[\])+|\(\))?\s*(?:\{\s*\}?)?"  # func (s *S) F() error {
    r"|(?:defer|go)\s+" + _CALL + r"|package\s+\w+|import\s+(?:[\w.]+\s+)?\"\"|import\s*\("
)
_WEAK = re.compile(
    r"return(?:\s+" + _EXPR + r")?|" + _CALL + r"|" + _TOK + r"(?:\+\+|--)|[)}\]]+[,;]?|//.*|default:"
    r"|" + _TOK + r"(?:\s*,\s*" + _TOK + r")*\s*[-+*/%|^&]?=\s*" + _EXPR + r"|case\s+" + _EXPR + r":"
    r"|(?:var|const)\s+\w+(?:\s*,\s*\w+)*(?:\s+" + _VAR_TYPE + r"(?:\s*=\s*" + _EXPR + r")?|\s*=\s*" + _EXPR + r")"
    r"|type\s+\w+(?:\[\])?\s+=?\s*" + _TYPE
)

# Code references in prose.
_LINK = re.compile(r"\b(?:https?|ftp|file)://\S+|\bwww\.\S+|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IDENT = r"[A-Za-z_]\w*"
_REFERENCE = re.compile(
    r"(?<![\w.@/:\-])(?:"
    r"/?(?:[\w.\-]+/)*[\w.\-]*\w\.go(?![\w\-])(?!\.\w)"  # pkg/server/handler.go, handler.go:123; not pkg.go.dev
    r"|go\.(?:mod|sum|work)\b(?!\.\w)"
    r"|" + _IDENT + r"(?:\." + _IDENT + r")+\([^()\n]{0,80}\)"  # http.ListenAndServe(), os.Open(name)
    r"|" + _IDENT + r"\(\)"  # Close(); "file(s)" has an argument, so it is not a call
    r"|[a-z][a-z0-9_]*\.[A-Z]\w*(?![\w@/\-])(?!\.\w)"  # errors.Is, http.Client: package.Exported
    r"|\(\*"
    + _IDENT
    + r"(?:\."
    + _IDENT
    + r")*\)\."
    + _IDENT  # (*Client).Do
    + r")|^[ \t]*goroutine \d+ \[[^\]\n]+\]:|^[ \t]*(?:panic|fatal error): \S|\+0x[0-9a-f]+\b",
    re.MULTILINE,
)


def _indented(line: str) -> bool:
    return bool(_INDENT.match(line)) and bool(line.strip())


def _fence_closes(line: str, mark: str) -> bool:
    s = line.strip()
    return len(s) >= len(mark) and s == mark[0] * len(s)


def _code_like(line: str) -> bool:
    return len(line) <= MAX_GO_LINE and bool(_CODE_LIKE.search(line))


def _split_blocks(lines: list[str]) -> tuple[bool, list[str]]:
    """Whether there is a code block, and the lines outside code blocks (one pass, each line looked at once)."""
    found, prose, i, after_blank = False, [], 0, True
    while i < len(lines):
        line = lines[i]
        if fence := _FENCE.match(line):
            mark = fence.group(1) or fence.group(2)
            j = i + 1
            while j < len(lines) and not _fence_closes(lines[j], mark):
                j += 1
            found = found or any(body.strip() for body in lines[i + 1 : j])
            i, after_blank = j + 1, True
            continue
        if after_blank and _indented(line) and not _LIST_ITEM.match(line):
            j = i
            while j < len(lines) and (
                not lines[j].strip()
                or (_indented(lines[j]) and not _LIST_ITEM.match(lines[j]) and not _FENCE.match(lines[j]))
            ):
                j += 1
            body = [b for b in lines[i:j] if b.strip()]
            if len(body) >= 2 and 2 * sum(map(_code_like, body)) > len(body):
                found = True
            else:
                prose.extend(lines[i:j])
            i, after_blank = j, not lines[j - 1].strip()
            continue
        prose.append(line)
        i, after_blank = i + 1, not line.strip()
    return found, prose


def _flatten(line: str) -> str:
    line = _COMMENT.sub("", _STRING.sub('""', line)).rstrip().rstrip(";").rstrip()
    while (flat := _BRACKETS.sub(lambda m: m.group(0)[0] + m.group(0)[-1], line)) != line:
        line = flat
    return line


def _go_kind(line: str) -> int:
    """2 for a line that is Go by itself, 1 for a line that looks like Go, 0 for prose."""
    s = line.strip()
    if not s or len(s) > MAX_GO_LINE:
        return 0
    if _STRONG_RAW.search(s):
        return 2
    flat = _flatten(s)
    if _STRONG_FLAT.fullmatch(flat):
        return 2
    return 1 if _WEAK.fullmatch(flat) else 0


def code_reasons(text: str) -> list[str]:
    """The rules of `CODE_RULES` that fire on `text`, in that order, each at most once."""
    block, prose = _split_blocks([_QUOTE.sub("", line) for line in text.splitlines()])
    inline, lines = False, []
    for line in prose:
        if "`" in line:
            inline = inline or any(m.group(2).strip() for m in _INLINE.finditer(line))
            line = _INLINE.sub(" ", line)
        lines.append(line)
    kinds = [_go_kind(line) for line in lines]
    go = 2 in kinds or kinds.count(1) >= 2
    rest = "\n".join(line for line, kind in zip(lines, kinds, strict=True) if not (go and kind))
    reference = bool(_REFERENCE.search(_LINK.sub(" ", rest)))
    return [rule for rule, fired in zip(CODE_RULES, (block, inline, go, reference), strict=True) if fired]


def has_code(text: str) -> bool:
    """Whether any rule fires: the text is MIX material rather than NAT."""
    return bool(code_reasons(text))
