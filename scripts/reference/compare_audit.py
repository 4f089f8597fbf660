#!/usr/bin/env python3
"""Compare weir's dependency findings with `cargo audit --json` output.

usage: compare_audit.py CARGO_AUDIT_JSON WEIR_EVENTS_JSONL [--write-expected FILE]

Both are reduced to sets of (package, version, advisory) per kind
(vulnerability, unmaintained, unsound, notice); the script prints the
counts and every difference, and exits 1 when they differ.
With --write-expected, cargo audit's sets are also written to FILE (one
sorted line each), which the end-to-end test compares against without cargo audit.
"""
import json
import sys


def audit_sets(path):
    d = json.load(open(path))
    sets = {"vulnerability": set()}
    for v in d["vulnerabilities"]["list"]:
        sets["vulnerability"].add((v["package"]["name"], v["package"]["version"], v["advisory"]["id"]))
    for kind, items in d.get("warnings", {}).items():
        if kind == "yanked":  # needs the crates.io index; weir does not check it
            continue
        sets.setdefault(kind, set())
        for w in items:
            sets[kind].add((w["package"]["name"], w["package"]["version"], w["advisory"]["id"]))
    return sets


def weir_sets(path):
    sets = {"vulnerability": set()}
    for line in open(path):
        e = json.loads(line)
        if e.get("event") != "stage_finished":
            continue
        for f in e.get("findings", []):
            fields = f.get("fields", {})
            if "advisory" not in fields:
                continue
            sets.setdefault(fields["kind"], set()).add((fields["package"], fields["version"], fields["advisory"]))
    return sets


def main():
    audit, weir = audit_sets(sys.argv[1]), weir_sets(sys.argv[2])
    if len(sys.argv) > 4 and sys.argv[3] == "--write-expected":
        with open(sys.argv[4], "w") as f:
            f.write("# cargo audit's findings on tests/fixtures/deps/Cargo.lock with ../shared/advisory-db:\n")
            f.write("# KIND PACKAGE VERSION ADVISORY. Written by scripts/reference/cargo-audit.sh --write-expected.\n")
            for kind in sorted(audit):
                for name, version, advisory in sorted(audit[kind]):
                    f.write(f"{kind} {name} {version} {advisory}\n")
    same = True
    for kind in sorted(set(audit) | set(weir)):
        a, w = audit.get(kind, set()), weir.get(kind, set())
        print(f"{kind:14} cargo audit {len(a):5}   weir {len(w):5}   only cargo audit {len(a - w):3}   only weir {len(w - a):3}")
        for x in sorted(a - w)[:20]:
            print("   only cargo audit:", *x)
        for x in sorted(w - a)[:20]:
            print("   only weir:       ", *x)
        same &= a == w
    print("agree" if same else "DIFFER")
    sys.exit(0 if same else 1)


main()
