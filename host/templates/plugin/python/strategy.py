"""__NAME__: a weir rollout strategy. It deploys the candidate, then for
each of `steps` sets its share of traffic, waits `interval` and runs the
stage's checks; it promotes after the last step and rolls back as soon as a
check fails. A first release (nothing stable yet) takes all traffic at
once."""

import re

import weir_plugin as weir
from wit_world import exports
from wit_world.imports import types

DEFAULTS = {
    # The candidate's share of traffic at each step, rising to 100.
    "steps": [20, 50, 100],
    # How long to watch each step before checking: 500ms, 30s, 5m.
    "interval": "30s",
}


def duration_ms(text):
    """`500ms`, `30s`, `5m` or `1h` in milliseconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text).strip())
    if not match:
        weir.fail(f"interval = {text!r} is not a duration; write e.g. 30s, 500ms or 5m")
    scale = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[match.group(2)]
    return int(match.group(1)) * scale


def plan(steps, first_release, actions):
    """What to do after `actions` actions: ("deploy",), ("weight", w),
    ("wait",), ("analyze",) or ("promote",)."""
    if actions == 0:
        return ("deploy",)
    steps = [100] if first_release else steps
    step, phase = divmod(actions - 1, 3)
    if step >= len(steps):
        return ("promote",)
    return [("weight", steps[step]), ("wait",), ("analyze",)][phase]


class Plugin(exports.Plugin):
    def describe(self):
        return types.Manifest(
            name="__NAME__",
            version="0.1.0",
            kind=types.PluginKind.STRATEGY,
            description="__DESCRIPTION__",
            capabilities=[],
            config_schema=None,
        )


class Strategy(exports.Strategy):
    def next(self, ctx, state):
        config = weir.config(ctx, DEFAULTS)
        steps = config["steps"]
        rising = all(a < b for a, b in zip(steps, steps[1:], strict=False))
        if not steps or not rising or any(not 1 <= s <= 100 for s in steps):
            weir.fail(f"steps = {steps} must rise, each a share of traffic from 1 to 100")
        interval = duration_ms(config["interval"])
        last = state.last_analysis
        if last is not None and last.verdict in (types.Verdict.FAIL, types.Verdict.INCONCLUSIVE):
            return types.Action_Rollback(f"a check failed: {last.summary or last.verdict.name.lower()}")
        step = plan(steps, state.stable is None, state.step)
        if step[0] == "deploy":
            return types.Action_DeployCandidate()
        if step[0] == "weight":
            return types.Action_SetWeight(step[1])
        if step[0] == "wait":
            return types.Action_Wait(interval)
        if step[0] == "analyze":
            return types.Action_Analyze()
        return types.Action_Promote()
