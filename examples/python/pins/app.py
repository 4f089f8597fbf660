"""pins: a weir analyzer, in Python. It reads the pip requirements files
its `include` globs match and flags each requirement that does not name
exactly one thing to install: no `==` version, a repository without a
commit, an editable install, and (with `require-hashes`) a missing
`--hash`. The stage fails when a finding is at least as severe as
`fail-at`."""

import pins
import weir_plugin as weir
from wit_world import exports
from wit_world.imports import types

DEFAULTS = {
    # Requirements files to read, as workspace globs.
    "include": ["**/requirements*.txt"],
    # The lowest severity that fails the stage: low, medium, high, critical.
    "fail-at": "high",
    # Whether every requirement must carry a --hash.
    "require-hashes": False,
    # Packages allowed to float (e.g. a tool pinned elsewhere).
    "allow": [],
}


class Plugin(exports.Plugin):
    def describe(self):
        return types.Manifest(
            name="pins",
            version="0.1.0",
            kind=types.PluginKind.ANALYZER,
            description="Flags Python requirements that are not pinned to one version, or to one commit",
            capabilities=[],
            config_schema=None,
        )


class Analyzer(exports.Analyzer):
    def analyze(self, ctx):
        config = weir.config(ctx, DEFAULTS)
        fail_at = weir.severity_named(config["fail-at"])
        allowed = {name.lower() for name in config["allow"]}
        files = weir.find_files(config["include"])
        if not files:
            return types.Analysis(
                findings=[],
                score=None,
                verdict=types.Verdict.PASS,
                summary=f"no requirements file matches {config['include']}",
            )
        findings, total, clean = [], 0, 0
        for done, path in enumerate(files):
            weir.progress(done, len(files), path)
            with open(path, encoding="utf-8", errors="replace") as f:
                requirements = pins.parse(f.read())
            for requirement in requirements:
                if requirement.name.lower() in allowed:
                    continue
                total += 1
                problems = pins.judge(requirement, config["require-hashes"])
                clean += not problems
                for problem in problems:
                    findings.append(
                        weir.finding(
                            problem.rule,
                            problem.severity,
                            problem.message,
                            path=path,
                            line=requirement.line,
                            package=requirement.name,
                            spec=requirement.url or requirement.spec or "*",
                        )
                    )
        weir.info(f"{clean} of {total} requirement(s) pinned", files=len(files))
        failing = [f for f in findings if f.severity.value >= fail_at.value]
        verdict = types.Verdict.FAIL if failing else types.Verdict.WARN if findings else types.Verdict.PASS
        return types.Analysis(
            findings=findings,
            score=100.0 * clean / total if total else None,
            verdict=verdict,
            summary=(
                f"{clean} of {total} requirement(s) pinned in {len(files)} file(s); "
                f"{len(findings)} finding(s)"
            ),
        )
