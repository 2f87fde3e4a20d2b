"""The residual secret scan behind the blocking ``categorized_records_secrets_residual`` check (Dagster-free).

Re-running the redactor's own scanner on its output can only ever say ``[]``: a format it does not know is missed
twice. So the check adds a second detector set that shares no rule with the redactor: the plugins of Yelp's
detect-secrets (maintained rule set, a separate project with its own regexes and validity checks; the redactor since
issue #8 part 3 uses none of them for spans, only detect-secrets' sequential/template string heuristics inside its
value policy). A token shape one set lacks or gets wrong (a prefix typo, an alphabet too narrow, a length bound) is
then still caught by the other: detect-secrets knows Mailchimp, IBM Cloud, SoftLayer, Cloudant and Artifactory
credentials, which the redactor does not, and runs every plugin over the whole text with no gate.

What is shared is the *policy* of what counts as a secret, so the check does not block on values the redactor keeps
on purpose: typed placeholders, obvious stand-ins (``credentials.is_placeholder``), keyword values that fail
``redact.secret_like`` (short, low entropy, code references), private key headers with no key material after them,
and token-rule hits that are single-case words (no digit, one case: constants and base64 slices). detect-secrets'
high-entropy-string plugins (test vectors and hashes are everywhere in code) and its public IP plugin (PII is the
redactor's own re-scan) are left out. Cost: ~1 MB/s (every plugin over the whole text), acceptable for a check.
"""

from __future__ import annotations

import re

from detect_secrets.plugins import keyword as _kw
from detect_secrets.plugins.base import BasePlugin

from gocoder_assets.categorized_records.credentials import is_placeholder
from gocoder_assets.categorized_records.redact import PLACEHOLDERS, residual_secrets, secret_like

_KEYWORD = _kw.KeywordDetector()
# The text is Go, YAML, markdown or prose: detect-secrets' Go, config and quoted-value keyword regexes all apply.
_KEYWORD_REGEXES = {**_kw.GOLANG_DENYLIST_REGEX_TO_GROUP, **_kw.CONFIG_DENYLIST_REGEX_TO_GROUP,
                    **_kw.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP}  # fmt: skip
_EXCLUDED = ("Base64 High Entropy String", "Hex High Entropy String", "Public IP (ipv4)", "Secret Keyword")
_LINE_GATE = re.compile("|".join(map(re.escape, ("pass", "pwd", "secret", "key", "token", "auth", "contra"))), re.I)
_WORD_PRONE = ("Artifactory Credentials", "AWS Access Key")  # rules that match words (others report prefix groups)
_KEY_MATERIAL = re.compile(r"[A-Za-z0-9+/]{32,}")


def _plugins() -> list[BasePlugin]:
    """One instance of every detect-secrets plugin but the excluded ones, found through detect-secrets' own
    registry, so plugins added by a detect-secrets upgrade join the check without a code change."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class  # noqa: PLC0415

    classes = get_mapping_from_secret_type_to_class()
    return [cls() for name, cls in sorted(classes.items()) if name not in _EXCLUDED]


_PLUGINS = _plugins()


def _kept_on_purpose(value: str, secret_type: str, text: str) -> bool:
    """Values the redactor's policy keeps (see the module docstring)."""
    if any(p in value for p in PLACEHOLDERS.values()) or is_placeholder(value):
        return True
    if secret_type == "Private Key":  # the plugin reports the header: look for key material after it
        at = text.find(value)
        return not _KEY_MATERIAL.search(text, at, at + len(value) + 400)
    if secret_type not in _WORD_PRONE:
        return False
    # A token has digits or mixed case; one that is a single-case word is a constant (Artifactory's ``AP…`` rule on
    # ``APCALIGNMAX``) or a slice of base64 (AWS's ``ABIA…`` rule inside a certificate), both seen in the Go stdlib.
    word = value.strip().strip("\"'=:")
    return word.isalpha() and (word.isupper() or word.islower())


def independent_secrets(text: str) -> list[str]:
    """detect-secrets' findings in ``text`` as ``detect-secrets: <type>``, one per distinct value."""
    found: list[str] = []
    for plugin in _PLUGINS:
        for value in dict.fromkeys(plugin.analyze_string(text)):
            if not _kept_on_purpose(value, plugin.secret_type, text):
                found.append(f"detect-secrets: {plugin.secret_type}")
    for line in text.splitlines():
        if _LINE_GATE.search(line):
            for value in _KEYWORD.analyze_string(line, _KEYWORD_REGEXES):
                quoted = any(f"{q}{value}{q}" in line for q in "\"'`")
                if not _kept_on_purpose(value, "Secret Keyword", text) and secret_like(value, quoted=quoted):
                    found.append("detect-secrets: Secret Keyword")
    return found


def residual_findings(text: str) -> list[str]:
    """Everything either detector set still finds: the redactor's re-scan (PII included) and detect-secrets."""
    return residual_secrets(text) + independent_secrets(text)
