"""__NAME__'s unit tests, run natively: `python3 -m unittest`.

They import `app` as the component does. Natively there is no host, so the
bindings componentize-py generates from `wit/` are written to
`build/bindings` first (their host imports raise NotImplementedError, and
weir_plugin's log helpers print to stderr instead)."""

import os
import shutil
import subprocess
import sys

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
