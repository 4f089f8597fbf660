#!/usr/bin/env python3
"""Write the secrets corpus: files of many kinds with planted secrets (made
up, in each provider's real format, random bodies) and decoys (placeholders,
documented example keys, hashes, public keys, references to variables).

    make_secrets_corpus.py DIR

writes DIR/corpus/... and DIR/truth.txt, one line per planted secret:
`PATH LINE KIND`. Every other line of the corpus is a decoy or filler, so
a finding on it is a false positive. The output is deterministic (a fixed
seed): tests/fixtures/secrets/ is this script's output, committed.
"""
import base64
import json
import os
import random
import shutil
import sys

rnd = random.Random(20261122)
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
ALNUM = UPPER + LOWER + DIGITS
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"


def r(alphabet, n):
    return "".join(rnd.choice(alphabet) for _ in range(n))


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def pem(kind, lines=12):
    body = "\n".join(r(B64, 64) for _ in range(lines))
    return f"-----BEGIN {kind}-----\n{body}\n{r(B64, 20)}==\n-----END {kind}-----"


def jwt():
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": r(DIGITS, 10), "name": "svc-deploy", "iat": 1767225600}).encode())
    return f"{header}.{payload}.{r(URLSAFE, 43)}"


# (path, [lines]); a line is either text or (text, kind) for a planted secret.
FILES = {}


def file(path, *lines):
    FILES[path] = list(lines)


def S(text, kind):
    return (text, kind)


def main():
    out = sys.argv[1]
    file(
        ".env",
        "# Local settings for the payments service",
        S(f"AWS_ACCESS_KEY_ID=AKIA{r(UPPER + DIGITS, 16)}", "aws-access-key-id"),
        S(f"AWS_SECRET_ACCESS_KEY={r(B64, 40)}", "aws-secret-access-key"),
        S(f"STRIPE_API_KEY=sk_live_{r(ALNUM, 24)}", "stripe-key"),
        "STRIPE_PUBLISHABLE_KEY=pk_test_TYooMQauvdEDq54NiTphI7jx",
        "NODE_ENV=production",
        "DB_PASSWORD=${DB_PASSWORD}",
        "API_TOKEN=changeme",
        S(f"SENDGRID_API_KEY=SG.{r(URLSAFE, 22)}.{r(URLSAFE, 43)}", "sendgrid-api-key"),
        "LOG_LEVEL=debug",
    )
    file(
        "config/app.yaml",
        "server:",
        "  port: 8080",
        "  host: 0.0.0.0",
        "github:",
        S(f"  token: ghp_{r(ALNUM, 36)}", "github-token"),
        "  org: acme",
        "slack:",
        S(f"  webhook: https://hooks.slack.com/services/T{r(UPPER + DIGITS, 8)}/B{r(UPPER + DIGITS, 10)}/{r(ALNUM, 24)}", "slack-webhook"),
        S(f"  bot_token: xoxb-{r(DIGITS, 12)}-{r(DIGITS, 13)}-{r(ALNUM, 24)}", "slack-token"),
        "database:",
        S(f"  url: postgres://payments:{r(ALNUM, 16)}@db.internal:5432/payments", "password-in-url"),
        "  password: ${DATABASE_PASSWORD}",
        "  pool: 10",
        "secret_name: payments-db-secret",
        "token_ttl: 3600",
    )
    file(
        "config/settings.py",
        "import os",
        "",
        'DEBUG = os.environ.get("DEBUG") == "1"',
        S(f'DATABASE_PASSWORD = "{r(ALNUM, 10)}#{r(ALNUM, 6)}"', "generic-secret"),
        'SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]',
        'PASSWORD_FIELD = "password"',
        S(f'REDIS_URL = "redis://:{r(ALNUM, 20)}@cache.internal:6379/0"', "password-in-url"),
        'ALLOWED_HOSTS = ["payments.example.com"]',
        'EXAMPLE_KEY = "AKIAIOSFODNN7EXAMPLE"',
        'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        S(f'GOOGLE_MAPS_KEY = "AIza{r(URLSAFE, 35)}"', "gcp-api-key"),
        "",
    )
    file(
        "src/client.js",
        "const axios = require('axios');",
        "",
        "const API_URL = 'https://api.example.com/v1';",
        S(f"const session = '{jwt()}';", "jwt"),
        "const apiKey = process.env.API_KEY;",
        S(f"const openaiKey = 'sk-proj-{r(URLSAFE, 24)}T3BlbkFJ{r(URLSAFE, 24)}';", "openai-api-key"),
        "const placeholder = 'ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx';",
        "const commit = 'e83c5163316f89bfbde7d9ab23ca2e25604af290';",
        "const sha = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';",
        S(f"axios.defaults.headers.common['Authorization'] = 'Bearer {r(ALNUM, 32)}';", "bearer-token"),
        "module.exports = { API_URL };",
    )
    file(
        "src/notify.go",
        "package notify",
        "",
        'import "net/http"',
        "",
        S(f'const discordHook = "https://discord.com/api/webhooks/{r(DIGITS, 18)}/{r(URLSAFE, 68)}"', "discord-webhook"),
        S(f'const telegramToken = "{r(DIGITS, 10)}:AA{r(URLSAFE, 33)}"', "telegram-bot-token"),
        'const userAgent = "weir-notify/1.0"',
        "",
        "func Send(c *http.Client) error { return nil }",
    )
    file(
        "deploy/terraform.tf",
        'provider "azurerm" {',
        "  features {}",
        "}",
        'variable "client_secret" {',
        "  type      = string",
        "  sensitive = true",
        "}",
        S(f'  client_secret = "{r(ALNUM, 8)}~{r(ALNUM, 8)}_{r(ALNUM, 16)}"', "generic-secret"),
        S(f'  storage = "DefaultEndpointsProtocol=https;AccountName=acmepay;AccountKey={r(B64, 86)}==;EndpointSuffix=core.windows.net"', "azure-storage-key"),
        '  token = var.do_token',
    )
    file(
        "deploy/do.sh",
        "#!/bin/sh",
        "set -eu",
        S(f"export DIGITALOCEAN_TOKEN=dop_v1_{r(HEX, 64)}", "digitalocean-token"),
        S(f"export VAULT_TOKEN=hvs.{r(URLSAFE, 92)}", "hashicorp-vault-token"),
        'export DIGITALOCEAN_REGION="fra1"',
        S(f"curl -H 'Authorization: Basic {base64.b64encode(('deploy:' + r(ALNUM, 14)).encode()).decode()}' https://ci.internal/api", "basic-auth-header"),
        "curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA==' https://ci.internal/docs-example",
        "doctl compute droplet list",
    )
    file(
        ".npmrc",
        "registry=https://registry.npmjs.org/",
        S(f"//registry.npmjs.org/:_authToken=npm_{r(ALNUM, 36)}", "npm-token"),
        "//npm.internal/:_authToken=${NPM_TOKEN}",
    )
    file(
        ".pypirc",
        "[pypi]",
        "username = __token__",
        S(f"password = pypi-AgEIcHlwaS5vcmc{r(URLSAFE, 70)}", "pypi-token"),
    )
    file(
        "src/main/resources/application.properties",
        "spring.application.name=payments",
        "spring.datasource.url=jdbc:postgresql://db.internal/payments",
        "spring.datasource.username=payments",
        S(f"spring.datasource.password={r(ALNUM, 12)}!{r(DIGITS, 3)}", "generic-secret"),
        "spring.jpa.hibernate.ddl-auto=validate",
        "management.endpoints.web.exposure.include=health",
    )
    file(
        "src/integrations.rb",
        "module Integrations",
        S(f"  TWILIO_KEY = 'SK{r(HEX, 32)}'", "twilio-api-key"),
        S(f"  MAILGUN_KEY = 'key-{r(ALNUM, 32)}'", "mailgun-api-key"),
        S(f"  SQUARE_TOKEN = 'sq0atp-{r(URLSAFE, 22)}'", "square-token"),
        S(f"  SHOPIFY_TOKEN = 'shpat_{r(HEX, 32)}'", "shopify-token"),
        "  SHOPIFY_SHOP = 'acme-pay.myshopify.com'",
        "end",
    )
    file(
        "ci/gitlab.env",
        S(f"GITLAB_TOKEN=glpat-{r(URLSAFE, 20)}", "gitlab-token"),
        S(f"GH_RELEASE_TOKEN=github_pat_{r(ALNUM, 22)}_{r(ALNUM, 59)}", "github-fine-grained-token"),
        "CI_REGISTRY=registry.gitlab.com",
    )
    file(
        "keys/deploy_rsa",
        S(pem("RSA PRIVATE KEY").split("\n")[0], "private-key"),
        *pem("RSA PRIVATE KEY").split("\n")[1:],
    )
    file(
        "keys/ci_ed25519",
        S("-----BEGIN OPENSSH PRIVATE KEY-----", "private-key"),
        *[r(B64, 70) for _ in range(5)],
        "-----END OPENSSH PRIVATE KEY-----",
    )
    file(
        "keys/server.pub.pem",
        *pem("PUBLIC KEY", 6).split("\n"),
    )
    file(
        "keys/ca.crt",
        *pem("CERTIFICATE", 8).split("\n"),
    )
    sa_key = pem("PRIVATE KEY", 10).replace("\n", "\\n")
    file(
        "deploy/gcp-service-account.json",
        "{",
        '  "type": "service_account",',
        '  "project_id": "acme-payments",',
        f'  "private_key_id": "{r(HEX, 40)}",',
        S(f'  "private_key": "{sa_key}\\n",', "gcp-service-account-key"),  # weir:ignore generic-secret (writes a made-up key)
        '  "client_email": "deploy@acme-payments.iam.gserviceaccount.com",',
        f'  "client_id": "{r(DIGITS, 21)}"',
        "}",
    )
    file(
        "docs/SETUP.md",
        "# Setting up",
        "",
        "Copy `.env.example` to `.env` and fill in your keys:",
        "",
        "    AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
        "    GITHUB_TOKEN=<your token here>",
        "    password = \"your-password-here\"",
        "",
        "A private key starts with `-----BEGIN PRIVATE KEY-----` and is never committed.",
        "Connect with `postgres://user:password@localhost/db` in development.",
        "The token looks like `xoxb-...`.",
    )
    file(
        "docs/anthropic.md",
        "Set the key in your shell, not in the code:",
        "",
        S(f"    export ANTHROPIC_API_KEY=sk-ant-api03-{r(URLSAFE, 93)}AA", "anthropic-api-key"),
    )
    file(
        "k8s/secret.yaml",
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        "  name: payments",
        "type: Opaque",
        "stringData:",
        S(f"  api-key: {r(ALNUM, 14)}{r(DIGITS, 4)}{r(UPPER, 4)}", "generic-secret"),
        "  api-key-file: /etc/payments/api-key",
        "  token: {{ .Values.token }}",
    )
    file(
        "tests/test_auth.py",
        "def test_login(client):",
        '    # fixture values, not real credentials',
        '    resp = client.post("/login", json={"user": "alice", "password": "x"})',
        '    assert resp.status_code == 401',
        '    uuid = "3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b"',
        '    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',
    )

    corpus = os.path.join(out, "corpus")
    shutil.rmtree(corpus, ignore_errors=True)
    truth = []
    for path, lines in sorted(FILES.items()):
        full = os.path.join(corpus, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            for i, line in enumerate(lines, 1):
                if isinstance(line, tuple):
                    text, kind = line
                    truth.append(f"{path} {i} {kind}")
                else:
                    text = line
                f.write(text + "\n")
    with open(os.path.join(out, "truth.txt"), "w") as f:
        f.write("# Planted secrets: PATH LINE KIND. Written by scripts/reference/make_secrets_corpus.py.\n")
        f.write("\n".join(truth) + "\n")
    print(f"{len(truth)} planted secrets in {len(FILES)} files")


main()
