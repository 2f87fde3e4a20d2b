"""The residual scan's second detector set (residual.py): it catches what the redactor misses, whether the redactor
is broken (patched to a no-op here) or simply does not know a format, and it stays quiet on clean and redacted text.
Values are assembled from seeded random pieces so no literal secret sits in this file."""

from __future__ import annotations

import random
import string

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gocoder_assets.categorized_records import redact as redact_module
from gocoder_assets.categorized_records.checks import secret_findings
from gocoder_assets.categorized_records.redact import redact, residual_secrets
from gocoder_assets.categorized_records.residual import independent_secrets, residual_findings

_RNG = random.Random(31337)


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


GH_TOKEN = "gh" + "p_" + _rand(36)
AWS_ID = "AK" + "IA" + _rand(16, string.ascii_uppercase + "234567")
STRIPE = "sk" + "_live_" + _rand(24)
# A Mailchimp API key: a format only detect-secrets knows, so the redactor leaves it and the check must see it.
MAILCHIMP = _rand(32, "0123456789abcdef") + "-us" + "12"


def test_a_format_only_the_second_set_knows_is_caught():
    text = f'const mc = "{MAILCHIMP}"\n'
    assert redact(text)[0] is text and residual_secrets(text) == []  # the redactor misses it …
    assert residual_findings(text) == ["detect-secrets: Mailchimp Access Key"]  # … the check does not


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f'token := "{GH_TOKEN}"\n', "GitHub Token"),
        (f"aws_access_key_id = {AWS_ID}\n", "AWS Access Key"),
        (f'stripe.Key = "{STRIPE}"\n', "Stripe Access Key"),
        ('db_password = "Xk9#mQ2$vL8pZ4"\n', "Secret Keyword"),
    ],
)
def test_a_broken_redactor_is_caught_by_the_independent_set(monkeypatch, text, kind):
    assert residual_secrets(text) and f"detect-secrets: {kind}" in independent_secrets(text)
    monkeypatch.setattr(redact_module, "_scan", lambda _text: [])  # the redactor and its own re-scan now miss all
    assert redact(text)[0] is text and residual_secrets(text) == []
    assert f"detect-secrets: {kind}" in residual_findings(text)


@pytest.mark.parametrize(
    "text",
    [
        'package main\n\nfunc main() { println("hello") }\n',
        'password := os.Getenv("PW")\ntoken = "<KEY>"\nurl := "postgres://u:<PASSWORD>@h/db"\n',
        'const hdr = "-----BEGIN RSA PRIVATE KEY-----"\npassword: ${DB_PASSWORD}\nsecret := "abcdefghij"\n',
        "mysql://root:<password>@localhost/db and https://user:password@host/x\n",
    ],
)
def test_clean_and_placeholder_text_gives_no_findings(text):
    assert residual_findings(text) == []


def test_redacted_secrets_leave_nothing_for_either_set():
    raw = f'a := "{GH_TOKEN}"\nb := "{STRIPE}"\naws_access_key_id = {AWS_ID}\nc := "postgres://u:p@h/db"\n'
    out, _ = redact(raw)
    assert len(independent_secrets(raw)) >= 3
    assert residual_findings(out) == []


def test_check_helper_reports_records_with_findings(tmp_path):
    path = tmp_path / "part.parquet"
    texts = ["clean text", f'const mc = "{MAILCHIMP}"\n', redact(f"x := {GH_TOKEN}")[0]]
    pq.write_table(pa.table({"record_id": ["r0", "r1", "r2"], "text": texts}), path)
    assert secret_findings(path) == [["r1", "detect-secrets: Mailchimp Access Key"]]


def test_every_planted_corpus_is_clean_for_both_sets_after_redaction():
    """The two sets agree on the redactor's planted corpora: after ``redact`` neither finds anything, so the
    blocking check does not fail on what the redactor handled (a policy mismatch would show up here)."""
    from gocoder_assets_tests.test_credentials import POSITIVES  # noqa: PLC0415
    from gocoder_assets_tests.test_redact import CASES, _fill  # noqa: PLC0415

    raws = [_fill(t, s, placeholders=False) for t, s in CASES.values()]
    raws += [template.replace("⟦s⟧", value) for template, value, _kind, _reported in POSITIVES.values()]
    leftovers = {raw[:60]: residual_findings(redact(raw)[0]) for raw in raws}
    assert {k: v for k, v in leftovers.items() if v} == {}
    assert sum(bool(independent_secrets(raw)) for raw in raws) >= 20  # the second set does see the raw secrets


def test_single_case_words_that_token_rules_match_are_not_findings():
    """detect-secrets' Artifactory rule matches Go assembler constants and its AWS rule matches slices of base64
    (both in the Go stdlib); a token has digits or mixed case."""
    cert = "MIIB" + "VABNAEcAIABIAFQAVABQAFMAIABJAG4AcwBw" + "AGUAYwB0AGkAbwBu"
    text = f"const (\n\tANOP\n\tAPCALIGNMAX\n)\nvar der = `{cert}`\n"
    assert independent_secrets(text) == []
    assert independent_secrets(f'k := "{AWS_ID}"\n') == ["detect-secrets: AWS Access Key"]
