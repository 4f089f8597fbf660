"""__NAME__: a weir stage. It counts the lines of the workspace files its
`include` globs match, writes a report, and hands the totals to the stages
after it as outputs (`${{ stages.STAGE.outputs.lines }}`)."""

import weir_plugin as weir
from wit_world import exports
from wit_world.imports import types

DEFAULTS = {
    # Workspace globs to count.
    "include": ["*.py"],
    # Where to write the report, relative to the workspace.
    "report": "__NAME__-report.txt",
}


def count_lines(text):
    """Lines in `text`, not counting blank ones."""
    return sum(1 for line in text.splitlines() if line.strip())


class Plugin(exports.Plugin):
    def describe(self):
        return types.Manifest(
            name="__NAME__",
            version="0.1.0",
            kind=types.PluginKind.STAGE,
            description="__DESCRIPTION__",
            capabilities=[],
            config_schema=None,
        )


class Stage(exports.Stage):
    def run(self, ctx):
        config = weir.config(ctx, DEFAULTS)
        files = weir.find_files(config["include"])
        if not files:
            weir.fail(f"no workspace file matches {config['include']}; check `include`")
        total = 0
        report = []
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = count_lines(f.read())
            total += lines
            report.append(f"{lines:>8}  {path}\n")
        report.append(f"{total:>8}  total\n")
        with open(config["report"], "w", encoding="utf-8") as f:
            f.writelines(report)
        summary = f"{total} lines in {len(files)} file(s)"
        weir.info(summary)
        return weir.stage_output(
            outputs={"lines": total, "files": len(files)},
            artifacts={"report": config["report"]},
            summary=summary,
        )
