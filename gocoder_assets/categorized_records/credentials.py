"""Credential formats of the major providers, as span rules for the redactor (Dagster-free, no detect-secrets).

Two kinds of rule, both run by ``redact._scan`` behind a cheap substring gate (Go source is ~99% clean, so a rule
whose gate is absent costs one ``in`` over the text):

- ``FORMAT_RULES``: a token whose *shape* is the secret (a provider prefix and a fixed alphabet/length), redacted
  whole as ``<KEY>`` whatever its entropy. Shapes follow the providers' own documentation of their token formats
  (GitHub "Behind GitHub's new authentication token formats", GitLab "Token overview", Stripe "API keys", Slack
  "Token types", Google "API keys", OpenAI/Anthropic/Hugging Face/npm/PyPI/RubyGems/NuGet key pages).
- ``POSITION_RULES``: a value in a position that only ever holds a credential (the password of ``scheme://user:pw@``,
  of a Go MySQL DSN ``user:pw@tcp(…)``, of ``password=`` in a key=value DSN, ``Authorization: Basic|Bearer``,
  Azure ``AccountKey=`` / ``SharedAccessKey=`` / SAS ``sig=``). These are redacted by position, not entropy, so
  ``postgres://u:p@h`` loses ``p``; only an obvious placeholder (``is_placeholder``) stays.

The residual check deliberately does not use these rules (see residual.py).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_A = re.ASCII


class Rule(NamedTuple):
    """``regex`` runs only in windows ``[g - back, g + fwd)`` around the occurrences ``g`` of its ``gates``
    (lowercase gates: in the lowercased text), so each of its matches must hold a gate within those bounds; the span
    redacted is ``group`` (0: the whole match). Windows keep a rule's cost proportional to its gate's hits, not to
    the text (a URL rule over every file with a URL in its licence header would halve the redactor's speed)."""

    kind: str
    gates: tuple[str | re.Pattern[str], ...]
    regex: re.Pattern[str]
    group: int = 0
    back: int = 0
    fwd: int = 400


def _r(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, _A | flags)


_END = r"(?![\w-])"  # a token ends where its alphabet ends
_GITLAB = ("pat", "dt", "rt", "ptt", "cbt", "oas", "soat", "ft", "imt", "agent", "ffct")  # GitLab's token prefixes
# fmt: off
FORMAT_RULES: tuple[Rule, ...] = (
    Rule("google_api_key", ("AIza",), _r(r"(?<![\w-])AIza[\w-]{35}" + _END)),
    Rule("gcp_private_key_id", ("private_key_id",), _r(r"\"private_key_id\"\s*:\s*\"([0-9a-f]{40})\""), 1, back=1),
    Rule("gitlab_token", (_r(rf"gl(?:{'|'.join(_GITLAB)})-"),),
         _r(rf"(?<![\w-])gl(?:{'|'.join(_GITLAB)})-[\w-]{{20,}}")),
    Rule("gitlab_runner_token", ("GR1348941",), _r(r"(?<![\w-])GR1348941[\w-]{20,}")),
    Rule("bitbucket_app_password", (_r("AT(?:BB|ATT)"),),
         _r(r"(?<![\w-])(?:ATBB[A-Za-z0-9_=.-]{24,}|ATATT3[\w=-]{60,})")),
    Rule("stripe_key", (_r("k_(?:live|test)_"), "whsec_"),
         _r(r"(?<![\w-])(?:[sr]k_(?:live|test)_[0-9A-Za-z]{10,247}|whsec_[0-9A-Za-z]{24,})(?!\w)"), back=1),
    Rule("square_token", ("sq0", "EAAA"), _r(r"(?<![\w-])(?:sq0(?:atp|csp|idp)-[\w-]{22,60}|EAAA[\w-]{60})" + _END)),
    Rule("braintree_access_token", ("access_token$",),
         _r(r"access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}")),
    Rule("slack_token", ("xox", "xapp-"), _r(r"(?<![\w-])(?:xox[abeoprs]-[0-9A-Za-z-]{10,250}|xapp-\d-[\w-]{20,})")),
    Rule("slack_webhook", ("hooks",),
         _r(r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{20,}"), back=8, fwd=300),
    Rule("discord_webhook", ("hooks",),
         _r(r"https?://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{5,30}/[\w-]{30,}"), back=50, fwd=200),
    Rule("telegram_bot_token", (":AA",), _r(r"(?<![\w:])\d{8,10}:AA[\w-]{33}" + _END), back=10),
    Rule("anthropic_key", ("sk-",), _r(r"(?<![\w-])sk-ant-(?:api|admin|sid)\d\d-[\w-]{32,}" + _END)),
    Rule("openai_key", ("sk-",),
         _r(r"(?<![\w-])sk-(?:(?:proj|svcacct|admin|None)-[\w-]{20,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"
            r"|(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[a-z])[A-Za-z0-9]{32,})" + _END)),
    Rule("huggingface_token", ("hf_",),
         _r(r"(?<![\w-])hf_(?=[a-z]*[A-Z])(?=[A-Z]*[a-z])[A-Za-z]{34}" + _END)),
    Rule("npm_token", ("npm_",), _r(r"(?<![\w-])npm_[A-Za-z0-9]{36}" + _END)),
    Rule("npmrc_auth_token", ("_authToken",), _r(r"_authToken\s*=\s*([\w.~+/=-]{20,})"), 1),
    Rule("pypi_token", ("pypi-",), _r(r"(?<![\w-])pypi-AgE[\w-]{50,}")),
    Rule("rubygems_key", ("rubygems_",), _r(r"(?<![\w-])rubygems_[0-9a-f]{48}" + _END)),
    Rule("nuget_key", ("oy2",), _r(r"(?<![\w-])oy2[a-z0-9]{43}" + _END)),
    Rule("sendgrid_key", ("SG.",), _r(r"(?<![\w-])SG\.[\w-]{22}\.[\w-]{43}" + _END)),
    Rule("twilio_api_key", ("SK",), _r(r"(?<![\w-])SK[0-9a-f]{32}" + _END)),
    Rule("putty_private_key", ("PuTTY-User-Key-File-",),
         _r(r"PuTTY-User-Key-File-\d: [^\r\n]*(?:\r?\n[A-Za-z-]+: [^\r\n]*|\r?\n[A-Za-z0-9+/=]{8,})*"), fwd=20000),
    Rule("ssh2_private_key", ("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----",),
         _r(r"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----(?s:.{0,20000}?)(?:---- END SSH2 ENCRYPTED PRIVATE KEY ----"
            r"|\Z)"), fwd=20000),
)

# A password/secret value: up to a delimiter of the syntax around it (URL, DSN, quotes, whitespace).
POSITION_RULES: tuple[Rule, ...] = (
    Rule("url_password", ("://",), _r(r"\b[a-z][a-z0-9+.-]{1,30}://[^\s:/?#@\"'`<>]{0,128}:([^\s/?#@\"'`<>]{1,256})@"
                                      r"(?=[\w\[%{$<-])", re.I), 1, back=40, fwd=420),
    Rule("dsn_password", (_r("@(?:tcp|unix|udp)"),),
         _r(r"(?<![\w/:.-])[\w.$%-]{1,64}:([^\s:/@\"'`]{1,256})@(?:tcp6?|unix|udp)\("), 1, back=330, fwd=8),
    Rule("dsn_password", ("password=", ";pwd="),  # PWD= alone is the working directory's variable
         _r(r"(?:(?:^|[\s;?&\"'`])password|;pwd)=(?![\"'])([^\s;&\"'`\\]{1,256})(?=[\s;&\"'`\\]|$)", re.I | re.M),
         1, back=1, fwd=270),
    Rule("auth_header", ("authorization",),
         _r(r"authorization[\"']?\s*[:=,]\s*[\"']?(?:basic|bearer)\s+([\w.~+/-]{4,}=*)", re.I), 1),
    Rule("azure_storage_key", ("key=",),
         _r(r"(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{20,}={0,2})", re.I), 1, back=13),
    Rule("azure_sas_signature", ("sig=",), _r(r"[?&]sig=([A-Za-z0-9%+/]{20,}(?:=|%3d){0,2})", re.I), 1, back=1),
)

# fmt: on

FORMAT_KINDS = frozenset(rule.kind for rule in FORMAT_RULES)

# Values that stand for a credential without being one: kept even in a credential position.
_PLACEHOLDER_VALUE = _r(
    r"\$\{?[\w.-]+\}?|\$\(\w+\)|\{\{.*\}\}|<[^<>]*>|%[-+ #0-9.]*[sqvdx]|\*+|x+|\.+|_+|#+|\?+|-+"
    r"|(?:my|your|the|some|db|user|admin)?[_-]?(?:password|passwd|pass|pwd|secret|token|key|changeme|redacted"
    r"|placeholder|dummy|example|foo|bar|foobar)",
    re.I,
)


def is_placeholder(value: str) -> bool:
    """An obvious stand-in (``${PASSWORD}``, ``<password>``, ``%s``, ``*****``, ``password``, ``$DB_PASS``) or one of
    the project's own typed placeholders. Deliberately narrow: ``p``, ``pw`` or ``pass1`` are passwords."""
    return bool(_PLACEHOLDER_VALUE.fullmatch(value))
