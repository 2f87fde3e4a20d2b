"""PII and secret redaction for every text that reaches the tokenizer (Dagster-free).

``redact(text) -> (text, counts)`` replaces findings with StarCoder's typed placeholders and leaves every other byte
as it was (clean text comes back as the same object); ``residual_secrets(text)`` lists what this scanner still
detects (``[]`` after ``redact``; the asset check adds an independent set, residual.py); ``UsernameMapper``
(people.py) pseudonymizes PR/issue authors, @-mentions and commit trailers per thread.

- ``<EMAIL>``: addresses, except reserved domains (example.com/net/org, ``*.example|test|invalid|localhost``), ``git@``
  remotes, URL user-info (see ``<PASSWORD>``), file-like names (``icon@2x.png``, ``user@1000.service``) and mixed-case
  "TLDs" (``m.Path@m.Version``).
- ``<IP>``: candidates validated with ``ipaddress`` that are globally routable. Kept (judgment call): documentation,
  loopback, unspecified, private, link-local, CGNAT, multicast and reserved ranges (they locate nobody, and code is
  full of them), public resolvers (8.8.8.8, 1.1.1.1, …), IPv6 network prefixes, and dotted quads that read as
  versions, sections or OIDs: all octets single-digit (``1.2.3.4``, as BigCode's ``filter_versions``), after
  "section|RFC|version|OID|edition", or all < 32 with no address word on the line (``4.2.11.2``, ``2.5.4.10``). IPv6
  must start in 2000::/3, so ``a[::2]``, MACs, ``fe80`` tables or ``12:34:56`` are never candidates.
- ``<KEY>``: GitHub tokens (``gh[pousr]_``, ``github_pat_``), AWS key ids and a 40-char secret within 3 lines of one,
  whole private key blocks (PEM of any label, truncated ones too; PuTTY and SSH2 blocks), valid JWTs, ``Bearer``
  tokens, and the provider formats and key positions of credentials.py (Google, GitLab, Bitbucket, Stripe, Square,
  Braintree, Slack, Discord, Telegram, OpenAI, Anthropic, Hugging Face, npm, PyPI, RubyGems, NuGet, SendGrid,
  Twilio; ``Authorization: Basic|Bearer``, Azure ``AccountKey=`` and SAS ``sig=``).
- ``<PASSWORD>``: by position, whatever its entropy (credentials.py): the password of ``scheme://user:pw@host``, of a
  Go MySQL DSN ``user:pw@tcp(…)`` and of ``password=`` in key=value DSNs, unless an obvious placeholder
  (``${PASSWORD}``, ``<password>``, ``%s``, ``*****``, the word ``password``). By policy: the value of
  ``password|secret|token|api_key|credential…`` assignments (``=``, ``:=``, ``:``, ``=>``, comparisons; quoted or not)
  if it looks like a secret: 9–256 chars, no whitespace, no template, env reference or placeholder word, 2+
  character classes, Shannon entropy > 3.0 bits/char, not sequential, and if unquoted not code (number, call,
  selector, identifier made of words). ``password = ""``, ``password := os.Getenv("PW")``, ``secret = nil`` stay.
  UUIDs are redacted only as such a value (a token), never elsewhere (ids).

Detector choice: spans come from this module's and credentials.py's regexes, each behind a cheap gate (a substring
or a literal-led regex whose hits anchor small search windows: Go source is ~99% clean). detect-secrets is not used
for spans (as run by its scanner it does 0.7 MB/s on the Go stdlib, and its plugins report values, not spans:
PrivateKeyDetector reports the header only, GitHubTokenDetector misses ``github_pat_``), only for its sequential and
template string heuristics; its plugins are the residual check's independent second set (residual.py). Measured on
the Go standard library (one core): ~21-25 MB/s (was ~31-37 with a third of the families), 1.92% of its files
changed (1.85% before; nearly all by author e-mails in copyright headers; see test_redact.py).
"""

from __future__ import annotations

import base64
import bisect
import ipaddress
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

from detect_secrets.filters.heuristic import is_sequential_string, is_templated_secret

from gocoder_assets.categorized_records.credentials import FORMAT_KINDS, FORMAT_RULES, POSITION_RULES, is_placeholder
from gocoder_assets.categorized_records.people import UsernameMapper as UsernameMapper  # categorize.py's import

EMAIL, IP, KEY, PASSWORD = "EMAIL", "IP", "KEY", "PASSWORD"
PLACEHOLDERS = {name: f"<{name}>" for name in (EMAIL, IP, KEY, PASSWORD)}
ENTROPY_THRESHOLD = 3.0  # bits per character an assignment value must exceed (so it has 9+ characters)
_A = re.ASCII

_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----(?:(?s:.{0,20000}?)-----END \1PRIVATE KEY\2-----"
    r"|(?:\r?\n[ \t]*(?:[A-Za-z][\w-]*: [^\r\n]*|[A-Za-z0-9+/=]{16,}))*)",
    _A,
)
_JWT = re.compile(r"(?<![\w-])eyJ[\w-]{8,}\.ey[\w-]{8,}\.[\w-]*", _A)
_GITHUB = re.compile(r"(?<!\w)(?:gh[pousr]_\w{36,251}|github_pat_\w{22,251})(?!\w)", _A)
_AWS_ID = re.compile(r"(?<![A-Za-z0-9/+])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9/+=])")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_KEYWORDS = (
    r"passw(?:or)?d|passphrase|pwd|secret|api[_-]?key|access[_-]?key|auth[_-]?key|priv(?:ate)?[_-]?key"
    r"|client[_-]?key|token|credentials?"
)
_ASSIGN = re.compile(
    rf"(?:{_KEYWORDS})[\w-]*[\"'\]]{{0,2}}[ \t]*(?::=|==|!=|=>|=|:)[ \t]*(?:\[\]byte\(|@)?"
    r"(?:([\"'`])(?P<q>[^\"'`\s\\]{8,256})\1|(?P<u>[^\s\"'`,;:(){}\[\]<>\\*]{8,256})(?=[ \t\r]*(?:$|#|//)))"
    r"|\bbearer[ \t]+(?P<b>[\w.~+/-]{8,256}=*)",
    re.I | re.M | _A,
)
# Lowercase needles for the keyword scans; ``key`` counts only after one of the prefixes (api_key, dbKey, …).
_NEEDLES = ("pass", "pwd", "secret", "contrase", "key", "token", "credential", "bearer")
_KEY_PREFIX = re.compile(r"(?:api|auth|priv|private|client|access|service|account|db|database)[_-]?$")
_GH_GATE, _AWS_GATE = re.compile("gh[pousr]_|github_pat_"), re.compile("A(?:KIA|SIA|BIA|CCA|3T)")
_POSITION_KINDS = {"url_password": PASSWORD, "dsn_password": PASSWORD}  # the other position rules hold keys
# fmt: off
_PLACEHOLDER_WORDS = ("example", "changeme", "change_me", "password", "passwd", "secret", "xxxx", "****", "....",
                      "your", "dummy", "placeholder", "redacted", "sample", "fake", "insert", "replace", "foobar")
# Unquoted values that are code: number literals, anything with call/index/literal/label punctuation.
_CODE_REF = re.compile(r"[-+]?(?:\d[\d_]*(?:\.\d+)?|0[xXbBoO][\da-fA-F_]+)|.*[(\[{,;:].*")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[a-z]{2,24}|[A-Z]{2,24})(?![\w-])",  # a mixed-case "TLD" is code: m.Path@m.Version
    _A,
)
_RESERVED_TLDS = {"example", "test", "invalid", "localhost", "local", "tld"}
_FILE_SUFFIXES = {"go", "png", "jpg", "jpeg", "gif", "svg", "webp", "js", "ts", "txt", "json", "yaml", "yml", "html",
                  "css", "mod", "sum", "service", "socket", "slice", "scope", "target", "mount", "timer"}
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w)(?!\.\w)")
_IPV4_GATE = re.compile(r"\.\d{1,3}\.\d{1,3}\.")
_IPV6 = re.compile(
    r"(?<![\w:.])[23][0-9a-fA-F]{3}(?:(?::[0-9a-fA-F]{0,4}){1,5}:(?:\d{1,3}\.){3}\d{1,3}|(?::[0-9a-fA-F]{0,4}){2,7})"
    r"(?![\w:])(?!\.\d)",
    _A,
)
_IPV6_GATE = re.compile(r":[0-9a-fA-F]{0,4}:")
_NOT_IP_BEFORE = re.compile(r"(?i)(?:section|sect\.|§|rfc ?\d+,?|version|ver\.|oid|edition|,v)\W{0,3}$")
_ADDRESS_WORD = re.compile(
    r"(?i:\b(?:ip|ipv4|addr|address|host|hostname|server|dns|proxy|dial|listen|route|gateway|subnet|cidr|inet|ping"
    r"|peer|endpoint|remote)\b)|(?<![A-Z])IP(?![A-Z])|Addr|Host|Server|DNS|Proxy|Dial|Listen|Remote"
)
_PUBLIC_RESOLVERS = {ipaddress.ip_address(a) for a in (
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222", "208.67.220.220",
    "2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111", "2606:4700:4700::1001", "2620:fe::fe")}
# fmt: on

Span = tuple[int, int, str, str]  # start, end, kind, placeholder name


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def secret_like(value: str, quoted: bool) -> bool:
    """The policy for assignment / URL-password values (see the module docstring)."""
    if value[:1] in ("$", "%", "<", "") or any(t in value for t in ("${", "{{", "<", ">", "%s", "%v", "://")):
        return False
    plain = unquote(value)  # URL-encoded passwords are judged decoded: pa%40ssword is p@ssword
    if not 9 <= len(plain) <= 256 or any(c.isspace() for c in plain) or is_templated_secret(plain):
        return False
    low = plain.lower()
    if any(w in low for w in _PLACEHOLDER_WORDS) or is_sequential_string(plain) or not re.search("[A-Za-z]", plain):
        return False
    classes = [any(f(c) for c in plain) for f in (str.islower, str.isupper, str.isdigit)]
    if sum(classes) + (not plain.isalnum()) < 2 or entropy(plain) <= ENTROPY_THRESHOLD:
        return False
    if not quoted:  # identifiers and selectors are code unless a part is gibberish (ya29.A0ARrdaM8xk2Jq9LzQ)
        if re.fullmatch(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*", value, _A):
            return any(_gibberish(part) for part in value.split("."))
        return not _CODE_REF.fullmatch(value)
    return True


def _gibberish(word: str) -> bool:
    """A random-looking identifier: 16+ characters, digits among letters, and frequent class switches (testKey2048
    or MarshalPKCS1PrivateKey are words, not random)."""
    if len(word) < 16 or not any(c.isdigit() for c in word) or word.isdigit():
        return False
    classes = [0 if c.islower() else 1 if c.isupper() else 2 if c.isdigit() else 3 for c in word]
    return sum(a != b for a, b in itertools.pairwise(classes)) >= 0.3 * (len(word) - 1)


def _keep_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str, start: int, end: int) -> bool:
    if not addr.is_global or addr.is_multicast or addr in _PUBLIC_RESOLVERS:
        return True
    if addr.version == 6:
        return int(addr) & (2**64 - 1) == 0  # a network prefix, not a host
    before = text[max(0, start - 7) : start].lower()
    if re.search(r"[\da-f:]:$", before) and not before.endswith("::ffff:"):  # the tail of an IPv6 literal
        return True
    octets = [int(o) for o in str(addr).split(".")]
    line_start, line_end = _lines_around(text, start, end, 0)
    return (
        max(octets) < 10
        or bool(_NOT_IP_BEFORE.search(text, max(line_start, start - 40), start))
        or (max(octets) < 32 and not _ADDRESS_WORD.search(text, line_start, line_end))
    )


def _keep_email(m: re.Match[str], text: str) -> bool:
    local, domain = m.group().lower().rsplit("@", 1)
    token_start = max(text.rfind(c, max(0, m.start() - 300), m.start()) for c in " \t\n\"'`(<[")
    labels = domain.split(".")
    return (
        labels[-1] in _RESERVED_TLDS
        or labels[-2:] in (["example", "com"], ["example", "net"], ["example", "org"])
        or (len(labels) == 2 and labels[-1] in _FILE_SUFFIXES)  # icon@2x.png, but not x@mail.com.py
        or local == "git"
        or local.endswith(".git")
        or "://" in text[token_start + 1 : m.start()]  # URL user-info, judged as a password
    )


def _lines_around(text: str, start: int, end: int, n: int) -> tuple[int, int]:
    """Offsets of the lines holding text[start:end], widened by n lines each side (newlines excluded)."""
    lo, hi = text.rfind("\n", 0, start), text.find("\n", end)
    for _ in range(n):
        lo = text.rfind("\n", 0, lo) if lo > 0 else -1
        hi = text.find("\n", hi + 1) if hi >= 0 else -1
    return lo + 1, len(text) if hi < 0 else hi


def _keyword_regions(text: str, low: str) -> list[tuple[int, int]]:
    """Regions (start, end) around keyword needles: the needle's line, or a window of it when the line is long
    (minified text), overlapping regions merged."""
    found: list[tuple[int, int]] = []
    for needle in _NEEDLES:
        i, ls, le = low.find(needle), 0, -1
        while i >= 0:
            if needle != "key" or _KEY_PREFIX.search(low, max(0, i - 9), i):
                if i > le:  # a new line (long lines hold many needles: find their bounds once)
                    ls, le = _lines_around(text, i, i, 0)
                s, e = ls, le
                if e - s > 2000:
                    s, e = max(s, i - 400), min(e, i + 400)
                found.append((s, e))
            i = low.find(needle, i + 1)
    merged: list[tuple[int, int]] = []
    for s, e in sorted(found):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _valid_jwt(token: str) -> bool:
    """Header and payload decode to JSON objects (base64url, padding optional): ``eyJ`` prose is not a token."""
    try:
        return all(isinstance(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))), dict)
                   for part in token.split(".")[:2])  # fmt: skip
    except ValueError:
        return False


def _gate_hits(text: str, low: str, gates: tuple[str | re.Pattern[str], ...], memo: dict) -> list[int]:
    """Sorted offsets of every occurrence of the gates: substrings (lowercase ones looked up in ``low``) or
    literal-led regexes (one pass for a family of prefixes); ``memo`` shares a gate between rules."""
    hits: list[int] = []
    for g in gates:
        if g not in memo:
            if isinstance(g, re.Pattern):
                memo[g] = [m.start() for m in g.finditer(text)]
            else:
                hay, found = low if g.islower() else text, []
                i = hay.find(g)
                while i >= 0:
                    found.append(i)
                    i = hay.find(g, i + 1)
                memo[g] = found
        hits += memo[g]
    return sorted(hits) if len(gates) > 1 else hits


def _around(text: str, anchors: Iterable[int], regex: re.Pattern[str], back: int, fwd: int) -> Iterator[re.Match]:
    """Matches of ``regex`` in the windows [anchor - back, anchor + fwd) (merged), for patterns whose every match
    holds an anchor: the regex runs over a few hundred bytes per anchor instead of the whole text."""
    lo = hi = -1
    for p in [*anchors, None]:
        if p is not None and p - back <= hi:
            hi = min(len(text), p + fwd)
            continue
        if hi > lo:
            yield from regex.finditer(text, lo, hi)
        if p is not None:
            lo, hi = max(0, p - back), min(len(text), p + fwd)


def _scan(text: str) -> list[Span]:
    """All redaction spans, non-overlapping (earlier rules win), sorted; empty for clean text."""
    spans: list[Span] = []
    low = text.lower()
    if len(low) != len(text):  # İ is the one character that lowers to two: keep offsets aligned with text
        low = text.replace("\u0130", "i").lower()
    gates: dict[str | re.Pattern[str], bool] = {}

    def has(g: str | re.Pattern[str]) -> bool:  # memoized: a gate shared by two rules is scanned once
        if g not in gates:
            gates[g] = bool(g.search(text)) if isinstance(g, re.Pattern) else g in (low if g.islower() else text)
        return gates[g]

    def add(start: int, end: int, kind: str, placeholder: str) -> None:  # spans stay sorted and disjoint
        i = bisect.bisect_right(spans, (start, end))
        if start < end and (i == 0 or spans[i - 1][1] <= start) and (i == len(spans) or end <= spans[i][0]):
            spans.insert(i, (start, end, kind, placeholder))

    if "PRIVATE KEY" in text:
        for m in _PEM.finditer(text):
            if re.search(r"[A-Za-z0-9+/]{32,}", m.group()):
                add(m.start(), m.end(), "private_key", KEY)
    if has("eyJ"):
        for m in _JWT.finditer(text):
            if _valid_jwt(m.group()):
                add(m.start(), m.end(), "jwt", KEY)
    if has(_GH_GATE):
        for m in _GITHUB.finditer(text):
            add(m.start(), m.end(), "github_token", KEY)
    if has(_AWS_GATE):
        for m in _AWS_ID.finditer(text):
            add(m.start(), m.end(), "aws_access_key_id", KEY)
            for s in _AWS_SECRET.finditer(text, *_lines_around(text, m.start(), m.end(), 3)):
                v = s.group()
                if re.search("[a-z]", v) and re.search("[A-Z]", v) and entropy(v) >= 4.0:
                    add(s.start(), s.end(), "aws_secret_key", KEY)
    hit_memo: dict[str | re.Pattern[str], list[int]] = {}
    for rule in (*FORMAT_RULES, *POSITION_RULES):
        for m in _around(text, _gate_hits(text, low, rule.gates, hit_memo), rule.regex, rule.back, rule.fwd):
            value = m.group(rule.group)
            if rule.kind in FORMAT_KINDS or not is_placeholder(value):
                add(m.start(rule.group), m.end(rule.group), rule.kind, _POSITION_KINDS.get(rule.kind, KEY))
    for s, e in _keyword_regions(text, low):
        for m in _ASSIGN.finditer(text, s, e):
            group = "q" if m.group("q") else "u" if m.group("u") else "b"
            if secret_like(m.group(group), quoted=group != "u"):
                kind, name = ("bearer_token", KEY) if group == "b" else ("password_assignment", PASSWORD)
                add(m.start(group), m.end(group), kind, name)
    if has("@"):
        ats = (m.start() for m in re.finditer("@", text))
        for m in _around(text, ats, _EMAIL, 70, 260):
            if not _keep_email(m, text):  # a JSON/Go-escaped ``\u003cname@…`` keeps its escape
                escaped = m.group()[:5].lower() == "u003c" and text[m.start() - 1 : m.start()] == "\\"
                add(m.start() + 5 * escaped, m.end(), "email", EMAIL)
    for regex, gate, back, cls in (
        (_IPV6, _IPV6_GATE, 40, ipaddress.IPv6Address),
        (_IPV4, _IPV4_GATE, 4, ipaddress.IPv4Address),
    ):
        for m in _around(text, (g.start() for g in gate.finditer(text)), regex, back, 48):
            try:
                addr = cls(m.group())
            except ValueError:
                continue
            if not _keep_ip(addr, text, m.start(), m.end()):
                add(m.start(), m.end(), "ip", IP)
    return spans


def redact(text: str) -> tuple[str, Counter[str]]:
    """Replace PII and secrets with typed placeholders; counts by placeholder name (``EMAIL``, ``IP``, ``KEY``,
    ``PASSWORD``: bare, since markdown metadata would swallow ``<EMAIL>``). Text with nothing to redact is returned
    unchanged (the same object)."""
    counts: Counter[str] = Counter()
    for _ in range(4):  # a replacement can expose a second value to a first-match-per-line detector
        spans = _scan(text)
        if not spans:
            break
        parts, pos = [], 0
        for start, end, _kind, name in spans:
            parts += [text[pos:start], PLACEHOLDERS[name]]
            counts[name] += 1
            pos = end
        text = "".join([*parts, text[pos:]])
    return text, counts


def residual_secrets(text: str) -> list[str]:
    """Kinds of PII/secrets still detectable in ``text``, one per finding in text order; ``[]`` after ``redact``."""
    return [kind for _s, _e, kind, _p in _scan(text)]
