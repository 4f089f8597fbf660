// __NAME__: a weir stage. It counts the lines of the workspace files its
// `include` globs match, writes a report, and hands the totals to the
// stages after it as outputs (`${{ stages.STAGE.outputs.lines }}`).

import { config, fail, findFiles, log, readText, stageOutput, writeText } from './weir.js';
import { countLines } from './lib.js';

const DEFAULTS = {
  // Workspace globs to count.
  include: ['*.js'],
  // Where to write the report, relative to the workspace.
  report: '__NAME__-report.txt',
};

export const plugin = {
  describe() {
    return {
      name: '__NAME__',
      version: '0.1.0',
      kind: 'stage',
      description: "__DESCRIPTION__",
      capabilities: [],
    };
  },
};

export const stage = {
  run(ctx) {
    const { include, report } = config(ctx, DEFAULTS);
    const files = findFiles(include);
    if (files.length === 0) fail(`no workspace file matches ${JSON.stringify(include)}; check \`include\``);
    let total = 0;
    let text = '';
    for (const path of files) {
      const lines = countLines(readText(path));
      total += lines;
      text += `${String(lines).padStart(8)}  ${path}\n`;
    }
    text += `${String(total).padStart(8)}  total\n`;
    writeText(report, text);
    const summary = `${total} lines in ${files.length} file(s)`;
    log.info(summary);
    return stageOutput({
      outputs: { lines: total, files: files.length },
      artifacts: { report },
      summary,
    });
  },
};
