"""__NAME__: a weir test runner. Each file under `expected` is a test case:
it passes when the file of the same name under `actual` has the same
lines, and fails naming the first line that differs."""

import weir_plugin as weir
from wit_world import exports
from wit_world.imports import types

DEFAULTS = {
    # The golden files.
    "expected": "tests/expected",
    # What the build produced, to compare with them.
    "actual": "tests/actual",
}


def difference(expected, actual):
    """None when `actual` has `expected`'s lines, else why not."""
    if actual is None:
        return "missing"
    want, got = expected.splitlines(), actual.splitlines()
    for i, (e, a) in enumerate(zip(want, got, strict=False)):
        if e != a:
            return f"differs from line {i + 1}"
    if len(want) != len(got):
        return f"differs from line {min(len(want), len(got)) + 1}"
    return None


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


class Plugin(exports.Plugin):
    def describe(self):
        return types.Manifest(
            name="__NAME__",
            version="0.1.0",
            kind=types.PluginKind.TEST_RUNNER,
            description="__DESCRIPTION__",
            capabilities=[],
            config_schema=None,
        )


class TestRunner(exports.TestRunner):
    def run_tests(self, ctx):
        config = weir.config(ctx, DEFAULTS)
        expected_dir = config["expected"].rstrip("/")
        actual_dir = config["actual"].rstrip("/")
        golden = weir.find_files(f"{expected_dir}/**/*")
        if not golden:
            weir.fail(f"there are no golden files under {expected_dir}")
        cases = []
        for expected_path in golden:
            name = expected_path[len(expected_dir) + 1 :]
            actual_path = f"{actual_dir}/{name}"
            why = difference(read(expected_path) or "", read(actual_path))
            cases.append(
                types.TestCase(
                    suite="golden",
                    name=name,
                    status=types.TestStatus.PASSED if why is None else types.TestStatus.FAILED,
                    duration_ms=0,
                    message=None if why is None else f"{actual_path} {why} of {expected_path}",
                    file=expected_path,
                )
            )
        failed = sum(1 for c in cases if c.status == types.TestStatus.FAILED)
        return types.TestReport(
            cases=cases,
            summary=f"{len(cases) - failed} passed, {failed} failed",
        )
