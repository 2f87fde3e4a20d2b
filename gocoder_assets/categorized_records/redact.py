"""PII and secret redaction for every text that reaches the tokenizer (Dagster-free).

``redact(text) -> (text, counts)`` replaces findings with StarCoder's typed placeholders and leaves every other byte
as it was (clean text comes back as the same object); ``residual_secrets(text)`` lists what is still detectable (the
asset check's re-scan: ``[]`` after ``redact``); ``UsernameMapper`` pseudonymizes PR/issue authors per thread.

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
  whole private key blocks (truncated ones too), valid JWTs, ``Bearer`` tokens, and what detect-secrets' token plugins
  report (Slack, Stripe, OpenAI, SendGrid, npm, PyPI, Square, Twilio, Discord).
- ``<PASSWORD>``: the value of ``password|secret|token|api_key|credential…`` assignments (``=``, ``:=``, ``:``, ``=>``,
  comparisons; quoted or not) and URL passwords, if it looks like a secret: 9–256 chars, no whitespace, no template,
  env reference or placeholder word, 2+ character classes, Shannon entropy > 3.0 bits/char, not sequential, and if
  unquoted not code (number, call, selector, identifier made of words). ``password = ""``, ``password :=
  os.Getenv("PW")``, ``secret = nil`` stay. UUIDs are redacted only as such a value (a token), never elsewhere (ids).

Detector choice, measured on the Go standard library (71 MB of .go, one core): detect-secrets run as its scanner runs
(ten plugins over every line) does 0.7 MB/s (KeywordDetector alone 1.6), and its plugins report values, not spans:
PrivateKeyDetector reports the header only, JwtTokenDetector's lazy regex drops the signature, GitHubTokenDetector
misses ``github_pat_`` and longer tokens, GitLabTokenDetector reports the prefix group only (left out); there is no
e-mail or IPv6 detector. So spans come from this module's regexes, each behind a cheap gate (a substring, or a
literal-led regex whose hits anchor small search windows: Go source is ~99% clean), and detect-secrets is the second
net: its token plugins over the whole text behind gates, KeywordDetector (Go + config + quoted regex sets) over the
few lines naming its keywords, BasicAuthDetector's regex over URLs; values they report that pass the same policy are
replaced too, and its JWT, sequential-string and template checks are reused. The result: ~30 MB/s on the Go stdlib,
1.9% of its files changed (nearly all by author e-mails in copyright headers; see test_redact.py).
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

from detect_secrets.filters.heuristic import is_sequential_string, is_templated_secret
from detect_secrets.plugins import (
    aws,
    basic_auth,
    discord,
    github_token,
    jwt,
    npm,
    openai,
    pypi_token,
    sendgrid,
    slack,
    square_oauth,
    stripe,
    twilio,
)
from detect_secrets.plugins import keyword as _kw

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
_KW_REGEXES = {**_kw.GOLANG_DENYLIST_REGEX_TO_GROUP, **_kw.CONFIG_DENYLIST_REGEX_TO_GROUP,
               **_kw.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP}
_KEYWORD_DETECTOR = _kw.KeywordDetector()
_BASIC_AUTH = basic_auth.BasicAuthDetector.denylist[0]  # ://user:(password)@
# detect-secrets token plugins whose reports are whole secrets, each behind a gate: substrings (lowercase ones are
# looked up in the lowercased text) or a literal-led regex.
_GH_GATE, _AWS_GATE = re.compile("gh[pousr]_|github_pat_"), re.compile("A(?:KIA|SIA|BIA|CCA|3T)")
_TOKEN_PLUGINS = (
    (github_token.GitHubTokenDetector(), (_GH_GATE,)),
    (aws.AWSKeyDetector(), (_AWS_GATE, "aws")),
    (jwt.JwtTokenDetector(), ("eyJ",)),
    (slack.SlackDetector(), ("xox", "hooks.slack")),
    (stripe.StripeDetector(), ("k_live_",)),
    (openai.OpenAIDetector(), ("T3BlbkFJ",)),
    (sendgrid.SendGridDetector(), ("SG.",)),
    (npm.NpmDetector(), ("_authToken",)),
    (pypi_token.PypiTokenDetector(), ("pypi-",)),
    (square_oauth.SquareOAuthDetector(), ("sq0csp-",)),
    (twilio.TwilioKeyDetector(), ()),
    (discord.DiscordBotTokenDetector(), (re.compile(r"\.[\w-]{6}\.[\w-]{27}", _A),)),
)
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

Span = tuple[int, int, str, str]  # start, end, kind, placeholder name


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def _secret_like(value: str, quoted: bool) -> bool:
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


def _keyword_regions(text: str, low: str) -> list[tuple[int, int, bool]]:
    """Regions (start, end, names a detect-secrets keyword) around keyword needles: the needle's line, or a window of
    it when the line is long (minified text), overlapping regions merged."""
    found: list[tuple[int, int, bool]] = []
    for needle in _NEEDLES:
        i, ls, le = low.find(needle), 0, -1
        while i >= 0:
            if needle != "key" or _KEY_PREFIX.search(low, max(0, i - 9), i):
                if i > le:  # a new line (long lines hold many needles: find their bounds once)
                    ls, le = _lines_around(text, i, i, 0)
                s, e = ls, le
                if e - s > 2000:
                    s, e = max(s, i - 400), min(e, i + 400)
                found.append((s, e, needle in ("pass", "pwd", "secret", "contrase", "key")))
            i = low.find(needle, i + 1)
    merged: list[tuple[int, int, bool]] = []
    for s, e, ds in sorted(found):
        if merged and s <= merged[-1][1]:
            ps, pe, pds = merged[-1]
            merged[-1] = (ps, max(pe, e), pds or ds)
        else:
            merged.append((s, e, ds))
    return merged


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

    def add_value(value: str, lo: int, hi: int, kind: str, placeholder: str) -> None:
        i = text.find(value, lo, hi)
        while i >= 0:
            j = i + len(value)
            if not (text[i - 1 : i].isalnum() or text[j : j + 1].isalnum()):  # not inside a longer blob
                add(i, j, kind, placeholder)
            i = text.find(value, j, hi)

    if "PRIVATE KEY" in text:
        for m in _PEM.finditer(text):
            if re.search(r"[A-Za-z0-9+/]{32,}", m.group()):
                add(m.start(), m.end(), "private_key", KEY)
    if has("eyJ"):
        for m in _JWT.finditer(text):
            if jwt.JwtTokenDetector.is_formally_valid(m.group()):
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
    for plugin, gate in _TOKEN_PLUGINS:
        if not gate or any(has(g) for g in gate):
            for value in dict.fromkeys(plugin.analyze_string(text)):  # deterministic order
                if len(value) >= 16:
                    add_value(value, 0, len(text), f"detect-secrets: {plugin.secret_type}", KEY)
    for s, e, ds_keyword in _keyword_regions(text, low):
        for m in _ASSIGN.finditer(text, s, e):
            group = "q" if m.group("q") else "u" if m.group("u") else "b"
            if _secret_like(m.group(group), quoted=group != "u"):
                kind, name = ("bearer_token", KEY) if group == "b" else ("password_assignment", PASSWORD)
                add(m.start(group), m.end(group), kind, name)
        if ds_keyword:
            line = text[s:e]
            for value in _KEYWORD_DETECTOR.analyze_string(line, _KW_REGEXES):
                if _secret_like(value, quoted=any(f"{q}{value}{q}" in line for q in "\"'`")):
                    add_value(value, s, e, "detect-secrets: Secret Keyword", PASSWORD)
    if has("@"):
        if has("://"):
            for m in _BASIC_AUTH.finditer(text):
                if _secret_like(m.group(1), quoted=True):
                    add(m.start(1), m.end(1), "detect-secrets: Basic Auth Credentials", PASSWORD)
        ats = (m.start() for m in re.finditer("@", text))
        for m in _around(text, ats, _EMAIL, 70, 260):
            if not _keep_email(m, text):  # a JSON/Go-escaped ``\u003cname@…`` keeps its escape
                escaped = m.group()[:5].lower() == "u003c" and text[m.start() - 1 : m.start()] == "\\"
                add(m.start() + 5 * escaped, m.end(), "email", EMAIL)
    for regex, gate, back, cls in ((_IPV6, _IPV6_GATE, 40, ipaddress.IPv6Address),
                                   (_IPV4, _IPV4_GATE, 4, ipaddress.IPv4Address)):
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


class UsernameMapper:
    """Per-thread pseudonyms (StarCoder2): each distinct author login becomes ``username_0``, ``username_1``, … in
    order of first appearance (GitHub logins are case-insensitive), and ``@login`` mentions of known logins in
    bodies become ``@username_N``. Mentions of logins that never authored in the thread are left as they are."""

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
        if "@" not in text or not self._names:
            return text

        def sub(m: re.Match[str]) -> str:
            return "@" + self._names[m.group(1).lower()] if m.group(1).lower() in self._names else m.group()

        return self._MENTION.sub(sub, text)
