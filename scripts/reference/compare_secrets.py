#!/usr/bin/env python3
"""Score weir's and detect-secrets' findings on the secrets corpus.

usage: compare_secrets.py TRUTH WEIR_EVENTS_JSONL DETECT_SECRETS_JSON [--write-expected FILE]

A finding on a line listed in TRUTH (PATH LINE KIND) is a true secret;
any other finding is a false positive. Prints both tools' scores and
exits 1 when weir finds fewer true secrets than detect-secrets, or misses
one that detect-secrets finds. With --write-expected, the true secrets
detect-secrets found are written to FILE (PATH LINE), for the end-to-end
test that runs without detect-secrets.
"""
import json
import sys


def truth(path):
    t = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        p, n, kind = line.split()
        t[(p, int(n))] = kind
    return t


def weir(path):
    found = {}
    for line in open(path):
        e = json.loads(line)
        if e.get("event") == "stage_finished":
            for f in e.get("findings", []):
                found.setdefault((f["path"], f["line"]), []).append(f["rule"])
    return found


def detect_secrets(path):
    found = {}
    for p, items in json.load(open(path))["results"].items():
        for it in items:
            found.setdefault((p.removeprefix("./"), it["line_number"]), []).append(it["type"])
    return found


def main():
    t, w, d = truth(sys.argv[1]), weir(sys.argv[2]), detect_secrets(sys.argv[3])
    for name, found in (("weir", w), ("detect-secrets", d)):
        tp = sum(1 for k in found if k in t)
        fp = [k for k in found if k not in t]
        print(f"{name:15} true secrets {tp:3} of {len(t)}   false positives {len(fp):3}")
        for k in sorted(t):
            if k not in found:
                print(f"   missed {k[0]}:{k[1]} ({t[k]})")
        for k in sorted(fp):
            print(f"   false positive {k[0]}:{k[1]} ({', '.join(found[k])})")
    ds_true = {k for k in d if k in t}
    w_true = {k for k in w if k in t}
    if len(sys.argv) > 5 and sys.argv[4] == "--write-expected":
        with open(sys.argv[5], "w") as f:
            f.write("# The planted secrets detect-secrets finds in corpus/: PATH LINE.\n")
            f.write("# Written by scripts/reference/detect-secrets.sh --write-expected.\n")
            for p, n in sorted(ds_true):
                f.write(f"{p} {n}\n")
    missing = ds_true - w_true
    for p, n in sorted(missing):
        print(f"weir misses {p}:{n}, which detect-secrets finds")
    ok = not missing and len(w_true) >= len(ds_true)
    print("weir finds no fewer true secrets" if ok else "WEIR FINDS FEWER")
    sys.exit(0 if ok else 1)


main()
