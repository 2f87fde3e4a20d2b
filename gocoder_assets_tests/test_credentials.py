"""Provider credential formats and credential positions (credentials.py via ``redact``): one planted positive and
one plausible non-secret per family, and the placeholder policy.

Values are generated from a seeded RNG and assembled from pieces, so this file holds no literal token that a secret
scanner (or GitHub push protection) would flag.
"""

from __future__ import annotations

import base64
import random
import string
from collections import Counter

import pytest

from gocoder_assets.categorized_records.redact import KEY, PASSWORD, PLACEHOLDERS, redact, residual_secrets

_RNG = random.Random(8_3)
_B62, _HEX = string.ascii_letters + string.digits, "0123456789abcdef"


def _rand(n: int, alphabet: str = _B62) -> str:
    """Random text with every class of ``alphabet`` present (a real token's shape)."""
    while True:
        v = "".join(_RNG.choice(alphabet) for _ in range(n))
        if alphabet != _B62 or (any(c.isdigit() for c in v) and any(c.isupper() for c in v) and v.lower() != v):
            return v


def _letters(n: int) -> str:
    return _rand(n // 2, string.ascii_uppercase) + _rand(n - n // 2, string.ascii_lowercase)


B64_88 = base64.b64encode(_RNG.randbytes(64)).decode()
PUTTY = "\n".join([
    "PuTTY-User-Key-File-3: ssh-ed25519", "Encryption: none", "Comment: deploy", "Public-Lines: 2",
    _rand(64), _rand(20), "Private-Lines: 1", _rand(44), "Private-MAC: " + _rand(64, _HEX),
])  # fmt: skip

# family: (text with one ⟦s⟧ slot, planted value, placeholder kind, kind reported by residual_secrets)
POSITIVES = {
    "google_api_key": ('const apiKey = "⟦s⟧"\n', "AI" + "za" + _rand(35, _B62 + "_-"), KEY, "google_api_key"),
    "gcp_service_account": ('{"type": "service_account", "private_key_id": "⟦s⟧"}', _rand(40, _HEX), KEY,
                            "gcp_private_key_id"),
    "gitlab_pat": ("export GL_TOKEN=⟦s⟧\n", "gl" + "pat-" + _rand(20, _B62 + "_-"), KEY, "gitlab_token"),
    "bitbucket_app_password": ("bitbucket: ⟦s⟧\n", "AT" + "BB" + _rand(32), KEY, "bitbucket_app_password"),
    "stripe_live_long": ('stripe.Key = "⟦s⟧"\n', "sk" + "_live_" + _rand(99), KEY, "stripe_key"),
    "stripe_restricted": ("STRIPE=⟦s⟧\n", "rk" + "_live_" + _rand(40), KEY, "stripe_key"),
    "stripe_test": ('key := "⟦s⟧"\n', "sk" + "_test_" + _rand(24), KEY, "stripe_key"),
    "square": ('sq := "⟦s⟧"\n', "sq0" + "atp-" + _rand(22), KEY, "square_token"),
    "braintree": ("BT=⟦s⟧\n", "access_token$" + "production$" + _rand(16, "abcdefghijk0123456789") + "$"
                  + _rand(32, _HEX), KEY, "braintree_access_token"),
    "slack_bot_token": ("SLACK_TOKEN=⟦s⟧\n", "xo" + "xb-" + _rand(12, "0123456789") + "-" + _rand(24), KEY,
                        "slack_token"),
    "slack_webhook": ('url := "⟦s⟧"\n', "https://hooks.slack.com/services/" + "T" + _rand(8, string.ascii_uppercase)
                      + "/B" + _rand(8, string.ascii_uppercase) + "/" + _rand(24), KEY, "slack_webhook"),
    "discord_webhook": ("hook: ⟦s⟧\n", "https://discord.com/api/webhooks/" + _rand(18, "0123456789") + "/"
                        + _rand(68, _B62 + "_-"), KEY, "discord_webhook"),
    "telegram_bot": ('bot, _ := tgbotapi.NewBotAPI("⟦s⟧")\n', _rand(9, "123456789") + ":AA" + _rand(33), KEY,
                     "telegram_bot_token"),
    "openai_project": ('client := openai.NewClient("⟦s⟧")\n', "sk" + "-proj-" + _rand(48, _B62 + "_-"), KEY,
                       "openai_key"),
    "openai_legacy": ("OPENAI_API_KEY=⟦s⟧\n", "sk" + "-" + _rand(48), KEY, "openai_key"),
    "anthropic": ('c := anthropic.NewClient(option.WithAPIKey("⟦s⟧"))\n', "sk" + "-ant-" + "api03-" + _rand(93, _B62
                  + "_-"), KEY, "anthropic_key"),
    "huggingface": ("HF_TOKEN=⟦s⟧\n", "hf" + "_" + _letters(34), KEY, "huggingface_token"),
    "npm": ("//registry.npmjs.org/:_authToken=⟦s⟧\n", "npm" + "_" + _rand(36), KEY, "npm_token"),
    "pypi": ("password = ⟦s⟧\n", "pypi-" + "AgEIcHlwaS5vcmc" + _rand(60, _B62 + "_-"), KEY, "pypi_token"),
    "rubygems": ("GEM_HOST_API_KEY: ⟦s⟧\n", "rubygems" + "_" + _rand(48, _HEX), KEY, "rubygems_key"),
    "nuget": ("nuget push -k ⟦s⟧\n", "oy2" + _rand(43, string.ascii_lowercase + string.digits), KEY, "nuget_key"),
    "putty": ("key file:\n⟦s⟧\n", PUTTY, KEY, "putty_private_key"),
    "url_password_low_entropy": ('db, _ := sql.Open("pgx", "postgres://u:⟦s⟧@h/db")\n', "p", PASSWORD, "url_password"),
    "url_password_https": ("git clone https://user:⟦s⟧@example-git.corp/repo\n", "pass1", PASSWORD, "url_password"),
    "mongodb_srv": ('uri := "mongodb+srv://app:⟦s⟧@cluster0.mongodb.net/?retryWrites=true"\n', "hunter2", PASSWORD,
                    "url_password"),
    "redis_url": ("REDIS_URL=redis://default:⟦s⟧@cache:6379/0\n", "r3d1s", PASSWORD, "url_password"),
    "mysql_go_dsn": ('db, err := sql.Open("mysql", "root:⟦s⟧@tcp(127.0.0.1:3306)/app")\n', "pw", PASSWORD,
                     "dsn_password"),
    "keyvalue_dsn": ('connStr := "host=db user=app password=⟦s⟧ dbname=app sslmode=disable"\n', "s3cret", PASSWORD,
                     "dsn_password"),
    "sqlserver_dsn": ('"Server=tcp:db;User ID=sa;Password=⟦s⟧;Encrypt=true"\n', "Pa55", PASSWORD, "dsn_password"),
    "basic_auth_header": ("curl -H 'Authorization: Basic ⟦s⟧'\n", base64.b64encode(b"bob:pw").decode(), KEY,
                          "auth_header"),
    "bearer_header_short": ('req.Header.Set("Authorization", "Bearer ⟦s⟧")\n', "abc123", KEY, "auth_header"),
    "azure_account_key": ('"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=⟦s⟧;EndpointSuffix=core"\n',
                          B64_88, KEY, "azure_storage_key"),
    "azure_sas": ("https://acct.blob.core.windows.net/c?sv=2022-11-02&se=2030-01-01&sig=⟦s⟧\n",
                  _rand(43) + "%3D", KEY, "azure_sas_signature"),
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(POSITIVES))
def test_credential_family_is_redacted(family):
    template, value, kind, reported = POSITIVES[family]
    raw = template.replace("⟦s⟧", value)
    out, counts = redact(raw)
    assert out == template.replace("⟦s⟧", PLACEHOLDERS[kind])
    assert counts == Counter({kind: 1})
    assert reported in residual_secrets(raw)
    assert residual_secrets(out) == [] and redact(out)[0] is out


# Plausible non-secrets: each family's prefix or position in ordinary code, prose and documentation.
NEGATIVES = {
    "google_prose": "// AIza keys are restricted by referrer; see AIzaSyDocs for the format.\n",
    "gitlab_words": 'name := "glpat-short"; glob := "gldt-"\n',
    "stripe_short_and_publishable": 'const prefix = "sk_live_"\npk := "pk_live_' + _rand(24) + '"\n',
    "sk_dash_identifiers": 'task-runner disk-usage-reporter-service-config; s := "sk-learn"; risk-based-scoring\n',
    "sk_dash_lowercase_words": "see https://example.com/docs/sk-abcdefghijklmnopqrstuvwxyzabcdefgh\n",
    "hf_words": "hf_hub_download(repo_id, filename); hf_TOKEN_NAME\n",
    "slack_words": 'mode := "xoxo"; // hooks.slack.com is the webhook host\n',
    "telegram_ratio": 'ratio := "123456789:AAbb"\n',
    "npm_words": "npm_config_cache=/tmp/npm_cache\n",
    "url_placeholders": (
        "postgres://user:${DB_PASSWORD}@db/app\nmysql://root:<password>@localhost/db\n"
        'fmt.Sprintf("amqp://%s:%s@%s/", u, p, h)\nredis://:*****@cache:6379\nhttps://user:password@host/x\n'
        "mongodb://admin:$MONGO_PASS@mongo:27017\n"
    ),
    "url_without_password": "git clone https://user@github.com/x/y.git\nssh://git@host:22/repo\n",
    "go_dsn_placeholder": 'dsn := fmt.Sprintf("%s:%s@tcp(%s)/%s", user, pass, host, db)\n',
    "keyvalue_dsn_placeholder": 'dsn := "host=db password=${PGPASSWORD} dbname=x"\nPWD=/home/go\n',
    "auth_header_placeholder": 'req.Header.Set("Authorization", "Bearer "+token)\nAuthorization: Bearer <token>\n',
    "auth_header_prose": "The Authorization header carries credentials; Basic auth is weak.\n",
    "azure_placeholder": "AccountKey=<storage-key>;AccountName=acct\nsig=abc\n",
    "putty_prose": "Convert the PuTTY-User-Key-File-2 format with puttygen.\n",
    "pem_header_only": 'const hdr = "-----BEGIN OPENSSH PRIVATE KEY-----"\n',
}


@pytest.mark.parametrize("case", sorted(NEGATIVES))
def test_plausible_non_secret_is_kept(case):
    text = NEGATIVES[case]
    out, counts = redact(text)
    assert out is text and not counts, out
    assert residual_secrets(text) == []


@pytest.mark.parametrize("label", ["RSA", "EC", "DSA", "OPENSSH", "ENCRYPTED", ""])
def test_every_pem_private_key_flavour_is_redacted(label):
    head = f"{label} PRIVATE KEY".strip()
    body = "\n".join(base64.b64encode(_RNG.randbytes(48)).decode() for _ in range(4))
    extra = "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0123456789ABCDEF\n\n" if label == "RSA" else ""
    raw = f"key:\n-----BEGIN {head}-----\n{extra}{body}\n-----END {head}-----\ndone\n"
    assert redact(raw) == ("key:\n<KEY>\ndone\n", Counter({KEY: 1}))


def test_gcp_service_account_json_loses_key_and_key_id():
    armor = "PRIVATE KEY-----\\n"
    pem = "-----BEGIN " + armor + base64.b64encode(_RNG.randbytes(96)).decode() + "\\n-----END " + armor
    key_id = _rand(40, _HEX)
    raw = f'{{"type": "service_account", "private_key_id": "{key_id}", "private_key": "{pem}"}}'
    out, counts = redact(raw)
    assert out == '{"type": "service_account", "private_key_id": "<KEY>", "private_key": "<KEY>\\n"}'
    assert counts == Counter({KEY: 2})
