#!/usr/bin/env python3
"""Generate a large source tree for the scan benchmark.

    gen_tree.py DIR MEGABYTES

Writes about MEGABYTES of text in files of 2-40 KiB spread over nested
directories: code-like lines in several languages (Python, JavaScript,
Rust, YAML, .env), with identifiers, numbers, URLs, hashes and UUIDs, and
one planted secret in about every 50th file. Deterministic (fixed seed).
"""
import os
import random
import sys

rnd = random.Random(7)
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
WORDS = ("user order account payment invoice config client server request response handler "
         "cache queue worker session token_ttl retry timeout limit buffer stream record "
         "event metric report build deploy release version channel").split()


def ident():
    return "_".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 3)))


def rand(n, alphabet=ALNUM):
    return "".join(rnd.choice(alphabet) for _ in range(n))


LINES = [
    lambda: f"def {ident()}({ident()}, {ident()}=None):",
    lambda: f"    return {ident()}.{ident()}({rnd.randint(0, 9999)})",
    lambda: f"const {ident()} = require('./{ident()}');",
    lambda: f"    let {ident()}: Vec<u64> = Vec::with_capacity({rnd.randint(1, 512)});",
    lambda: f"  {ident()}: {rnd.randint(0, 100000)}",
    lambda: f"# {' '.join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 12)))}",
    lambda: f"url = \"https://{ident().replace('_', '-')}.example.com/v{rnd.randint(1, 3)}/{ident()}\"",
    lambda: f"checksum = \"{rand(64, '0123456789abcdef')}\"",
    lambda: f"id = \"{rand(8, '0123456789abcdef')}-{rand(4, '0123456789abcdef')}-4{rand(3, '0123456789abcdef')}-a{rand(3, '0123456789abcdef')}-{rand(12, '0123456789abcdef')}\"",
    lambda: f"    if {ident()} > {rnd.randint(0, 50)} {{ {ident()}.push({ident()}); }}",
    lambda: f"{ident().upper()}={rnd.choice(['true', 'false', str(rnd.randint(1, 99))])}",
    lambda: f"log.info(\"{' '.join(rnd.choice(WORDS) for _ in range(6))}\", {ident()})",
]

SECRETS = [
    lambda: f"AWS_ACCESS_KEY_ID=AKIA{rand(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}",
    lambda: f"github_token: ghp_{rand(36)}",
    lambda: f"STRIPE_KEY = \"sk_live_{rand(24)}\"",
    lambda: f"db_password = \"{rand(10)}!{rand(5)}\"",
]


def main():
    root, megabytes = sys.argv[1], float(sys.argv[2])
    target = int(megabytes * 1024 * 1024)
    written = 0
    n = 0
    exts = [".py", ".js", ".rs", ".yaml", ".env", ".toml"]
    while written < target:
        d = os.path.join(root, f"pkg{n % 37}", f"mod{n % 11}", f"part{n % 5}")
        os.makedirs(d, exist_ok=True)
        size = rnd.randint(2 * 1024, 40 * 1024)
        lines = []
        length = 0
        while length < size:
            line = rnd.choice(LINES)()
            lines.append(line)
            length += len(line) + 1
        if n % 50 == 0:
            lines.insert(rnd.randrange(len(lines)), rnd.choice(SECRETS)())
        text = "\n".join(lines) + "\n"
        with open(os.path.join(d, f"f{n}{rnd.choice(exts)}"), "w") as f:
            f.write(text)
        written += len(text)
        n += 1
    print(f"{n} files, {written / 1048576:.1f} MiB in {root}")


main()
