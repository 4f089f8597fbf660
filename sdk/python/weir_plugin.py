"""Helpers for weir plugins written in Python (built with componentize-py).

`weir plugin new --lang python` copies this file into the project, beside
`app.py`. It wraps the bindings componentize-py generates from weir's WIT
(`wit_world`) where they are awkward:

- `config(ctx, defaults)` parses the stage's `with` table and refuses keys
  the plugin does not know, naming them;
- `fail(message)` ends the call with a `failure` (the WIT `result`'s error)
  instead of a crash;
- `info`, `warn`, `debug`, `error` and `progress` write to the run's log,
  and to stderr when the plugin runs natively (in its unit tests), where
  there is no host;
- `find_files(patterns)` lists workspace files matching globs (`**` for any
  number of folders), sorted;
- `finding(...)` and `stage_output(...)` build result records with the
  optional fields left out.

Everything else is the plain generated bindings: `from wit_world.imports
import types, process, secrets, metrics, runtime`.
"""

import json
import os
import re
import sys

from componentize_py_types import Err
from wit_world.imports import log as _log
from wit_world.imports import types

__all__ = [
    "config",
    "fail",
    "info",
    "warn",
    "debug",
    "error",
    "progress",
    "find_files",
    "glob_match",
    "severity_named",
    "finding",
    "stage_output",
]


def fail(message, details=None, retryable=False):
    """End the call with a failure: the stage fails with `message`."""
    raise Err(types.Failure(message=message, details=details, retryable=retryable))


def config(ctx, defaults, strict=True):
    """The stage's `with` table (JSON in `ctx.config`) over `defaults`.

    A key that is not in `defaults` fails the call, naming the key and the
    ones the plugin knows, so a typo in pipeline.toml is not silently
    ignored. A deployer passes `strict=False`: it is handed the whole
    deploy stage's table (`service`, `artifact`, ...), which is weir's.
    """
    try:
        given = json.loads(ctx.config or "{}")
    except ValueError as e:
        fail(f"the stage's `with` table is not JSON: {e}")
    if not isinstance(given, dict):
        fail("the stage's `with` must be a table")
    unknown = sorted(set(given) - set(defaults))
    if unknown and strict:
        fail(
            f"unknown `with` key(s) {', '.join(unknown)}; "
            f"this plugin reads {', '.join(sorted(defaults)) or 'none'}"
        )
    merged = dict(defaults)
    merged.update(given)
    return merged


def _write(level, name, message, fields):
    pairs = [(str(k), str(v)) for k, v in fields.items()]
    try:
        _log.write(level, message, pairs)
    except NotImplementedError:
        # Native: the bindings' stubs, no host to write to.
        extra = "".join(f" {k}={v}" for k, v in pairs)
        print(f"[{name}] {message}{extra}", file=sys.stderr)


def info(message, **fields):
    """An info line in the run's log; `fields` are shown after it."""
    _write(_log.Level.INFO, "info", message, fields)


def warn(message, **fields):
    """A warning in the run's log."""
    _write(_log.Level.WARN, "warn", message, fields)


def debug(message, **fields):
    """A debug line (shown when the run is verbose)."""
    _write(_log.Level.DEBUG, "debug", message, fields)


def error(message, **fields):
    """An error line; it does not fail the stage by itself (`fail` does)."""
    _write(_log.Level.ERROR, "error", message, fields)


def progress(done, total, message):
    """Progress on long work: `done` of `total` (None if unknown)."""
    try:
        _log.progress(done, total, message)
    except NotImplementedError:
        print(f"[progress] {done}/{total if total is not None else '?'} {message}", file=sys.stderr)


def _glob_regex(pattern):
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern, path):
    """Whether the workspace-relative `path` (with `/`) matches `pattern`:
    `*` and `?` within one folder, `**` across any number of them."""
    return _glob_regex(pattern).match(path) is not None


def find_files(patterns, root="."):
    """Workspace files (relative paths, sorted) matching any of
    `patterns`. Folders named `.git`, `.weir` and `node_modules` are not
    entered; files that vanish during the walk are skipped."""
    if isinstance(patterns, str):
        patterns = [patterns]
    compiled = [_glob_regex(p) for p in patterns]
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".weir", "node_modules"))
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            if any(r.match(rel) for r in compiled):
                found.append(rel)
    return sorted(found)


_SEVERITIES = {
    "info": types.Severity.INFO,
    "low": types.Severity.LOW,
    "medium": types.Severity.MEDIUM,
    "high": types.Severity.HIGH,
    "critical": types.Severity.CRITICAL,
}


def severity_named(name):
    """The severity called `name` (`info` … `critical`); fails the call
    on any other, naming the ones there are."""
    try:
        return _SEVERITIES[name]
    except KeyError:
        fail(f"`{name}` is not a severity; use one of {', '.join(_SEVERITIES)}")


def finding(rule, severity, message, path=None, line=None, column=None, **fields):
    """One finding; `severity` is a `types.Severity` or its name."""
    if isinstance(severity, str):
        severity = severity_named(severity)
    return types.Finding(
        rule=rule,
        severity=severity,
        message=message,
        path=path,
        line=line,
        column=column,
        fields=[(str(k), str(v)) for k, v in fields.items()],
    )


def stage_output(outputs=None, artifacts=None, summary=None):
    """What a stage returns: `outputs` and `artifacts` are dicts
    (name → value, name → workspace path)."""
    return types.StageOutput(
        outputs=[(str(k), str(v)) for k, v in (outputs or {}).items()],
        artifacts=[types.Artifact(name=k, path=v) for k, v in (artifacts or {}).items()],
        summary=summary,
    )
