"""pins' unit tests, run natively from this folder: `python3 -m unittest`.

The parsing and judging in pins.py need no host. app.py is imported too,
through the bindings componentize-py writes to build/bindings (their host
imports raise NotImplementedError natively), and run on a folder of
requirements files."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BINDINGS = os.path.join(HERE, "build", "bindings")
shutil.rmtree(BINDINGS, ignore_errors=True)
# componentize-py, from this Python's packages (pip install componentize-py).
COMPONENTIZE_PY = (
    "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"
)
subprocess.run(
    [
        sys.executable,
        "-c",
        COMPONENTIZE_PY,
        "--quiet",
        "--wit-path",
        os.path.join(HERE, "wit"),
        "--world",
        "plugin",
        "bindings",
        BINDINGS,
    ],
    check=True,
)
sys.path.insert(0, BINDINGS)

import pins  # noqa: E402


def rules(line, **options):
    [requirement] = pins.parse(line)
    return [p.rule for p in pins.judge(requirement, **options)]


class Parse(unittest.TestCase):
    def test_comments_options_and_continuations(self):
        text = (
            "# tools\n-r base.txt\n--index-url https://example.org/simple\n\n"
            "requests==2.32.3 \\\n    --hash=sha256:abc\nflask>=3  # web\n"
        )
        found = pins.parse(text)
        self.assertEqual(
            [(r.line, r.name, r.spec, r.hashes) for r in found],
            [(5, "requests", "==2.32.3", 1), (7, "flask", ">=3", 0)],
        )

    def test_markers_and_extras(self):
        [r] = pins.parse('uvicorn[standard]==0.30.1 ; python_version >= "3.8"\n')
        self.assertEqual((r.name, r.spec), ("uvicorn", "==0.30.1"))


class Judge(unittest.TestCase):
    def test_exact_pins_pass(self):
        self.assertEqual(rules("requests==2.32.3"), [])
        self.assertEqual(rules("requests===2.32.3"), [])

    def test_ranges_and_bare_names_are_unpinned(self):
        for line in ["requests", "requests>=2", "requests~=2.31", "requests==2.*", "requests==2.0,<3"]:
            self.assertEqual(rules(line), ["unpinned"], line)

    def test_repositories_need_a_commit(self):
        self.assertEqual(rules("git+https://example.org/lib.git@v1.0#egg=lib"), ["vcs-not-pinned"])
        self.assertEqual(rules("lib @ git+https://example.org/lib.git@" + "a" * 40), [])

    def test_editable_and_hashes(self):
        self.assertEqual(rules("-e ./tools"), ["editable"])
        self.assertEqual(rules("requests==2.32.3", require_hashes=True), ["no-hash"])
        self.assertEqual(rules("requests==2.32.3 --hash=sha256:abc", require_hashes=True), [])


class Analyze(unittest.TestCase):
    def test_a_folder_of_requirements(self):
        import app
        from wit_world.imports import types

        ctx = types.Context(
            run_id="r",
            pipeline="p",
            stage="pins",
            tenant="default",
            environment=None,
            attempt=1,
            config=json.dumps({"allow": ["pip"]}),
            inputs=[],
            workspace=".",
        )
        with tempfile.TemporaryDirectory() as ws:
            with open(os.path.join(ws, "requirements.txt"), "w") as f:
                f.write("requests==2.32.3\nflask>=3\npip\n")
            cwd = os.getcwd()
            os.chdir(ws)
            try:
                analysis = app.Analyzer().analyze(ctx)
            finally:
                os.chdir(cwd)
        self.assertEqual(analysis.verdict, types.Verdict.FAIL)
        self.assertEqual([(f.rule, f.line) for f in analysis.findings], [("unpinned", 2)])
        self.assertEqual(analysis.score, 50.0)
