"""__NAME__: a weir analyzer. It flags TODO, FIXME and XXX markers left in
the workspace files its `include` globs match, and fails the stage when a
finding is at least as severe as `fail-at`."""

import weir_plugin as weir
from wit_world import exports
from wit_world.imports import types

DEFAULTS = {
    # Workspace globs to read.
    "include": ["*.py"],
    # The lowest severity that fails the stage: low, medium, high, critical.
    "fail-at": "high",
}

# FIXME is a known bug; TODO and XXX are notes.
MARKERS = {"TODO": "low", "FIXME": "medium", "XXX": "low"}


def markers(text):
    """(line, marker) for each marker in `text`, 1-based lines."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for marker in MARKERS:
            if marker in line:
                found.append((number, marker))
    return found


class Plugin(exports.Plugin):
    def describe(self):
        return types.Manifest(
            name="__NAME__",
            version="0.1.0",
            kind=types.PluginKind.ANALYZER,
            description="__DESCRIPTION__",
            capabilities=[],
            config_schema=None,
        )


class Analyzer(exports.Analyzer):
    def analyze(self, ctx):
        config = weir.config(ctx, DEFAULTS)
        fail_at = weir.severity_named(config["fail-at"])
        files = weir.find_files(config["include"])
        findings = []
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            for line, marker in markers(text):
                findings.append(
                    weir.finding(
                        marker.lower(),
                        MARKERS[marker],
                        f"`{marker}` is left in the code",
                        path=path,
                        line=line,
                    )
                )
        weir.info(f"{len(findings)} marker(s) in {len(files)} file(s)")
        failing = [f for f in findings if f.severity.value >= fail_at.value]
        if failing:
            verdict = types.Verdict.FAIL
        elif findings:
            verdict = types.Verdict.WARN
        else:
            verdict = types.Verdict.PASS
        return types.Analysis(
            findings=findings,
            score=None,
            verdict=verdict,
            summary=f"{len(findings)} marker(s), {len(failing)} at or above {config['fail-at']}",
        )
