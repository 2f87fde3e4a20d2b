"""PII and secret redaction: planted secrets in Go, YAML, markdown and PR comments, negatives, idempotence, the
residual scan, username pseudonyms, and a false-positive budget on the real Go standard library.

Secret-shaped values are generated at import time from a seeded RNG and assembled from pieces, so this file holds
no literal token or key that a secret scanner (or GitHub push protection) would flag.
"""

from __future__ import annotations

import base64
import json
import os
import random
import string
from collections import Counter
from pathlib import Path

import pytest

from gocoder_assets.categorized_records.redact import (
    EMAIL,
    IP,
    KEY,
    PASSWORD,
    PLACEHOLDERS,
    UsernameMapper,
    redact,
    residual_secrets,
)

E, K, P = EMAIL, KEY, PASSWORD  # short names for the case table

_RNG = random.Random(20240520)
_B62 = string.ascii_letters + string.digits


def _rand(n: int, alphabet: str = _B62) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _pem(label: str, lines: int = 6, indent: str = "", block: str = "KEY") -> str:
    body = base64.b64encode(_RNG.randbytes(48 * lines)).decode()
    rows = [body[i : i + 64] for i in range(0, len(body), 64)]
    armor = f"{label} PRIVATE {block}-----"
    begin, end = "-----BEGIN " + armor, "-----END " + armor
    return "\n".join(indent + row for row in [begin, *rows, end]).removeprefix(indent)


GH = {p: p + "_" + _rand(36) for p in ("ghp", "gho", "ghs", "ghu", "ghr")}
GH_PAT = "github" + "_pat_" + "11" + _rand(20, string.ascii_uppercase + string.digits) + "_" + _rand(59)
AWS_ID, AWS_ID2 = "AK" + "IA" + _rand(16, string.ascii_uppercase + "234567"), "AS" + "IA" + _rand(16, "ABCDEFGHJK2345")
AWS_SECRET = _rand(18) + "/" + _rand(12) + "+" + _rand(8)
JWT = ".".join([_b64url({"alg": "HS256", "typ": "JWT"}), _b64url({"sub": "1234567890", "iat": 1516239022}), _rand(43)])
RSA, OPENSSH, EC_YAML = _pem("RSA"), _pem("OPENSSH", 8), _pem("EC", 3, indent="  ")
PGP = _pem("PGP", 4, block="KEY BLOCK")
TRUNCATED = "\n".join(_pem("RSA", 6).splitlines()[:4])  # a PR body cut at 1000 chars: no END line

# Each case: a text with ⟦name⟧ slots, and the planted value and expected placeholder of every slot.
CASES = {
    "go_comment_email": ("// Author: Jane Roe <⟦a⟧>\npackage mail\n", {"a": ("jane.roe@corp-mail.io", E)}),
    "yaml_email": ("maintainers:\n  - name: Bob\n    email: ⟦a⟧\n", {"a": ("bob_smith99@gmail.com", E)}),
    "markdown_emails": (
        "Contact [me](mailto:⟦a⟧) or ⟦b⟧.\n",
        {"a": ("alice@proton.me", E), "b": ("ops+alerts@company.co.uk", E)},
    ),
    "pr_comment_email": ("cc ⟦a⟧ — can you take a look?", {"a": ("John.Doe@ACME-CORP.COM", E)}),
    "go_escaped_email": ('want := "\\u003c⟦a⟧\\u003e"\n', {"a": ("dev@corp.io", E)}),
    "go_ipv4": ('conn, err := net.Dial("tcp", "⟦a⟧:443")\n', {"a": ("54.83.193.112", IP)}),
    "yaml_ipv4_cidr": (
        "upstream:\n  host: ⟦a⟧\n  allow: ⟦b⟧/24\n",
        {"a": ("93.184.216.34", IP), "b": ("34.120.1.0", IP)},
    ),
    "markdown_ips": (
        "The server at ⟦a⟧ and [⟦b⟧]:443 went down.\n",
        {"a": ("203.0.114.7", IP), "b": ("2606:2800:220:1:248:1893:25c8:1946", IP)},
    ),
    "go_ipv6": (
        'addr := netip.MustParseAddr("⟦a⟧") // mapped: ::ffff:⟦b⟧\n',
        {"a": ("2a00:1450:4001:82a::200e", IP), "b": ("52.1.2.3", IP)},
    ),
    "go_github_tokens": (
        'const (\n\ta = "⟦p⟧"\n\tb = "⟦o⟧"\n\tc = "⟦s⟧"\n)\n',
        {"p": (GH["ghp"], K), "o": (GH["gho"], K), "s": (GH["ghs"], K)},
    ),
    "yaml_github_tokens": ("env:\n  GITHUB_TOKEN: ⟦u⟧\n  GH_PAT: ⟦pat⟧\n", {"u": (GH["ghu"], K), "pat": (GH_PAT, K)}),
    "pr_comment_github_token": (
        "Oops, I pasted my token ⟦r⟧ in the issue, revoking it now. `curl -H 'Authorization: token ⟦p⟧'`",
        {"r": (GH["ghr"], K), "p": (GH["ghp"], K)},
    ),
    "yaml_aws": (
        "aws_access_key_id: ⟦id⟧\naws_secret_access_key: ⟦sk⟧\nregion: us-east-1\n",
        {"id": (AWS_ID, K), "sk": (AWS_SECRET, K)},
    ),
    "go_aws_same_line": (
        'creds := credentials.NewStaticCredentials("⟦id⟧", "⟦sk⟧", "")\n',
        {"id": (AWS_ID2, K), "sk": (AWS_SECRET, K)},
    ),
    "go_private_key_raw_string": ("const testKey = `⟦k⟧`\n\nfunc key() string { return testKey }\n", {"k": (RSA, K)}),
    "go_private_key_concatenated": ('var pemKey = "⟦k⟧\\n"\n', {"k": (RSA.replace("\n", '\\n" +\n\t"'), K)}),
    "markdown_private_keys": (
        "Deploy key:\n\n```\n⟦o⟧\n```\n\nand the signing key:\n\n⟦g⟧\n",
        {"o": (OPENSSH, K), "g": (PGP, K)},
    ),
    "yaml_private_key_block": (
        "tls:\n  key: |\n    ⟦k⟧\n  cert: cert.pem\n",
        {"k": (EC_YAML.replace("\n  ", "\n    "), K)},
    ),
    "pr_body_truncated_private_key": ("Here is the config that fails:\n\n⟦k⟧", {"k": (TRUNCATED, K)}),
    "go_jwt": ('const tok = "⟦j⟧"\n', {"j": (JWT, K)}),
    "markdown_bearer_jwt": ("```\nAuthorization: Bearer ⟦j⟧\n```\n", {"j": (JWT, K)}),
    "yaml_id_token_jwt": ("id_token: ⟦j⟧\n", {"j": (JWT, K)}),
    "bearer_token": ("Authorization: Bearer ⟦t⟧\n", {"t": ("4f8a9c2e1b7d3f6a0c5e", K)}),
    "go_password_assignments": (
        'password := "⟦a⟧"\ncfg := Config{Password: "⟦b⟧", APIKey: "⟦c⟧"}\npw := []byte("x")\n'
        'secret := []byte("⟦d⟧")\nif apiKey == "⟦e⟧" {\n',
        {
            "a": ("Xk9#mQ2$vL8pZ4", P),
            "b": ("Tr0ub4dor&3xyz", P),
            "c": ("AbC123dEf456GhI789", P),
            "d": ("hK3$jL5%nM7^pQ9", P),
            "e": ("q8W2e4R6t8Y0u2I4o6P8", P),
        },
    ),
    "yaml_env_json_passwords": (
        'db_password: "⟦a⟧"\napi_key: ⟦b⟧\nAPI_KEY=⟦c⟧\n{"client_secret": "⟦d⟧"}\naccess_token=⟦e⟧\n',
        {
            "a": ("s3cr3t-V4lue!x", P),
            "b": ("aB3dE5fG7hJ9kL1mN3pQ", P),
            "c": ("Zx9Cv8Bn7Mq6Wr5Ty4Ui", P),
            "d": ("q8W2e4R6t8Y0u2I4o6P8", P),
            "e": ("ya29.A0ARrdaM8xk2Jq9LzQw", P),
        },
    ),
    "url_password": ('dsn := "postgres://admin:⟦a⟧@db.internal.corp:5432/app"\n', {"a": ("Zq8vR2mK9xL4", P)}),
    "uuid_as_token_value": ('api_token: "⟦u⟧"\n', {"u": ("550e8400-e29b-41d4-a716-446655440000", P)}),
    "pr_comment_mixed": (
        "@alice the deploy to ⟦ip⟧ failed, ping ⟦mail⟧; I rotated ⟦tok⟧ already.",
        {"ip": ("198.51.99.14", IP), "mail": ("alice.w@startup.dev", E), "tok": (GH["gho"], K)},
    ),
}


def _fill(template: str, slots: dict[str, tuple[str, str]], placeholders: bool) -> str:
    for name, (value, kind) in slots.items():
        template = template.replace(f"⟦{name}⟧", PLACEHOLDERS[kind] if placeholders else value)
    return template


@pytest.mark.parametrize("case", sorted(CASES))
def test_planted_secrets_are_replaced_and_nothing_else_changes(case):
    template, slots = CASES[case]
    raw, expected = _fill(template, slots, placeholders=False), _fill(template, slots, placeholders=True)
    out, counts = redact(raw)
    assert out == expected
    want = Counter(kind for name, (_, kind) in slots.items() for _ in range(template.count(f"⟦{name}⟧")))
    assert counts == want
    assert redact(out) == (out, Counter())  # idempotent
    assert residual_secrets(raw)  # the residual scan sees the planted secrets in raw text …
    assert residual_secrets(out) == []  # … and nothing after redaction, placeholders included


NEGATIVES = [
    'password = ""\nsecret = nil\npassword := os.Getenv("PW")\ntoken := tok.Next()\n',
    'password: ${DB_PASSWORD}\npassword: changeme\napi_key: <YOUR_API_KEY>\nsecret: "my-secret-value"\n',
    'Password: cfg.Password,\ntokenType: "Bearer"\nvar rsaPrivateKey = test1024Key\nPrivateKey: testECDSAP256Key,\n',
    "tokens = 2*maxCompilerConcurrency + minTokens*cfg.BuildP\nSecret: Bug4Secret{1},\n",
    'password := []byte("hunter22")\nsecret := "abcdefghij"\n',  # too short / one character class
    # UUIDs are ids, not secrets, unless a secret-named key holds one (see uuid_as_token_value)
    'requestID := "550e8400-e29b-41d4-a716-446655440000"\n',
    # documentation, loopback, private, unspecified, link-local addresses and public resolvers
    'ips := []string{"192.0.2.1", "198.51.100.7", "203.0.113.9", "127.0.0.1", "10.0.0.1", "192.168.1.1", '
    '"172.16.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.251", "8.8.8.8", "1.1.1.1"}\n',
    'ip6 := []string{"2001:db8::1", "::1", "::", "fe80::1%eth0", "fc00::1", "2001:4860:4860::8888", "2002::"}\n',
    # versions, sections, OIDs and things that only look like addresses
    '// See RFC 5280, 4.2.1.10 and OID 2.5.4.10; go 1.21.3; v1.2.3.4; 999.1.1.1; 1.2.3.4.5; ParseIP("1.2.3.4")\n',
    '// 31.7.8.1: Vector Unit-Stride Segment Loads and Stores\nname := "26.0.0.73.com"\n',
    's := a[::2]; t := x[1:2:3]; tbl := []uint16{0xfe80, 0x2001}; mac := "00:1a:2b:3c:4d:5e"\n',
    'at := "12:34:56"; cpp := "std::string"; net := "2001:db8::/32"; day := "2023:10:01"\n',
    # e-mail look-alikes and reserved domains
    "require golang.org/x/tools@v0.1.0 // icon@2x.png user@1000.service m.Path@m.Version\n",
    'from := "foo@example.com"; to := "bob@mail.example.org"; x := "joe@where.test"\n',
    "git clone git@github.com:golang/go.git\n",
    "@alice please review, thanks @bob-the-builder!\n",
    # private key headers without key material, and a test key the Go tree renames on purpose
    'const header = "-----BEGIN RSA PRIVATE KEY-----"\n// -----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----\n',
    "const k = `-----BEGIN RSA TESTING KEY-----\nMIIEowIBAAKCAQEAsPnoGUOnrpiSqt4XynxA+HRP7S+BSObI6qJ7fQAVSPtRkqso\n`\n",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_negatives_are_byte_identical(text):
    out, counts = redact(text)
    assert out is text and not counts
    assert residual_secrets(text) == []


def test_clean_go_source_is_returned_unchanged():
    src = 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello, 世界", 1.5, x[1:2])\n}\n'
    assert redact(src) == (src, Counter())
    assert redact(src)[0] is src


def test_placeholders_are_not_residual_secrets():
    text = '<EMAIL> <IP> <KEY> <PASSWORD>\npassword: <PASSWORD>\ntoken = "<KEY>"\nAuthorization: Bearer <KEY>\n'
    assert residual_secrets(text) == []
    assert redact(text)[0] is text


def test_residual_secrets_names_the_kinds():
    raw = _fill(*CASES["pr_comment_mixed"], placeholders=False)
    assert sorted(residual_secrets(raw)) == ["email", "github_token", "ip"]


def test_every_placeholder_is_idempotent_under_repeated_redaction():
    everything = "\n".join(_fill(t, s, placeholders=False) for t, s in CASES.values())
    once, counts = redact(everything)
    assert set(counts) == {E, IP, K, P}
    assert redact(once)[0] == once and residual_secrets(once) == []


def test_username_mapper_numbers_authors_and_rewrites_mentions():
    m = UsernameMapper()
    assert [m.name(x) for x in ("alice", "Bob", "ALICE", "carol")] == [
        "username_0",
        "username_1",
        "username_0",
        "username_2",
    ]
    assert "Alice" in m and "dave" not in m
    body = "Thanks @alice and @BOB! cc @dave, @alice-x, @carol/team; mail alice@corp.io (@carol)."
    assert m.mention_text(body) == (
        "Thanks @username_0 and @username_1! cc @username_3, @username_4, @carol/team; mail alice@corp.io "
        "(@username_2)."
    )
    assert "dave" in m  # a mentioned person is a person of the thread from then on
    other = UsernameMapper()
    assert other.name("carol") == "username_0"  # numbering is per thread
    assert other.name(None) == other.name("ghost") == "username_1"  # a deleted account has no login


def test_mentions_that_are_not_people_are_kept():
    text = "go get golang.org/x/tools@latest or @v0.1.0; ping @here; /** @param x @return y */ @2x @golang/security"
    m = UsernameMapper()
    assert m.mention_text(text) == text and "latest" not in m


def test_trailer_names_are_pseudonymized_and_their_emails_redacted():
    m = UsernameMapper()
    m.name("jroe")
    msg = (
        "net/http: fix the thing\n\nFixes #1\n\nSigned-off-by: Jane Roe <jane.roe@corp-mail.io>\n"
        "Co-authored-by: Max Mustermann <max@firma.de>\nReported-by: @jroe\n"
        "Reviewed-by: Jane Roe <jane.roe@corp-mail.io>\n"
        "  signed-off-by: bob\n"
    )
    out, counts = redact(m.mention_text(msg))
    assert out == (
        "net/http: fix the thing\n\nFixes #1\n\nSigned-off-by: username_1 <<EMAIL>>\n"
        "Co-authored-by: username_2 <<EMAIL>>\nReported-by: @username_0\nReviewed-by: username_1 <<EMAIL>>\n"
        "  signed-off-by: username_3\n"
    )
    assert counts == Counter({EMAIL: 3})
    assert m.mention_text(out) == out  # pseudonyms are not renamed again
    prose = "Who signed-off-by this? Reported-by lines are optional."
    assert UsernameMapper().mention_text(prose) == prose


def _stdlib_go_files() -> tuple[Path, list[Path]]:
    from gocoder_assets.sources.goroot import default_goroot  # noqa: PLC0415

    src = default_goroot() / "src"
    files = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in ("testdata", "vendor"))
        files += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".go")]
    return src, files


def test_go_stdlib_false_positive_budget():
    """Redact every .go file of the Go standard library: few files may change, and the review of what changes is
    printed (run with -s): author e-mails in copyright headers (the Inferno notice alone is ~70 files), test
    e-mails and public addresses in net/ and crypto/x509 tests, RFC test vectors assigned to PrivateKey/SharedSecret,
    and one PEM private key in crypto/tls/example_test.go."""
    src, files = _stdlib_go_files()
    assert len(files) > 4000
    changed: dict[str, Counter[str]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        out, _ = redact(text)
        if out is not text:
            changed[str(path.relative_to(src))] = Counter(residual_secrets(text))
            assert residual_secrets(out) == [], path
    fraction = len(changed) / len(files)
    by_kind = Counter(kind for kinds in changed.values() for kind in kinds)
    files_by_kind = Counter(kind for kinds in changed.values() for kind in set(kinds))
    if fraction > 0.01:
        print(
            f"\n{len(changed)}/{len(files)} stdlib files changed ({fraction:.2%}); findings {dict(by_kind)}, "
            f"files {dict(files_by_kind)}"
        )
        for name, kinds in sorted(changed.items()):
            print(f"  {name}: {dict(kinds)}")
    assert fraction < 0.025
    not_email = [name for name, kinds in changed.items() if set(kinds) != {"email"}]
    assert len(not_email) / len(files) < 0.005, not_email
    # No secret-kind detector fires on the stdlib beyond the known test fixtures.
    assert files_by_kind["private_key"] <= 1 and files_by_kind["password_assignment"] <= 3
    # Credential positions redacted by position, all test fixtures: cmd/go/internal/auth (git credential helper
    # output password=…, RFC 7617 Authorization: Basic headers) and net/url, net/http URL user-info.
    assert files_by_kind["url_password"] <= 3 and files_by_kind["dsn_password"] <= 1
    assert files_by_kind["auth_header"] <= 1
    known = ("email", "ip", "private_key", "password_assignment", "url_password", "dsn_password", "auth_header")
    assert not {k for k in files_by_kind if k not in known}
