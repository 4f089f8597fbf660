// size-budget: a weir stage, in JavaScript. It holds build output to size
// budgets: each budget is a workspace glob and the most its files may
// weigh together. It writes a JSON report of every budget (with the
// largest files of each), hands the totals to later stages as outputs,
// and fails the stage naming each budget that is exceeded or matches
// nothing.

import { config, fail, fileSize, findFiles, log, stageOutput, writeText } from './weir.js';
import { formatSize, judge, parseSize } from './lib.js';

const DEFAULTS = {
  // [{ path = "dist/**/*.js", max = "200 KiB" }, ...]
  budgets: [],
  // Where to write the report, relative to the workspace.
  report: 'size-report.json',
};

export const plugin = {
  describe() {
    return {
      name: 'size-budget',
      version: '0.1.0',
      kind: 'stage',
      description: 'Holds build output to size budgets and writes a size report',
      capabilities: [],
    };
  },
};

export const stage = {
  run(ctx) {
    const c = config(ctx, DEFAULTS);
    if (!Array.isArray(c.budgets) || c.budgets.length === 0) {
      fail('no budgets: set `budgets = [{ path = "dist/**/*.js", max = "200 KiB" }]`');
    }
    const budgets = c.budgets.map((b, i) => {
      const max = parseSize(b?.max);
      if (typeof b?.path !== 'string' || max === undefined) {
        fail(`budgets[${i}] needs a path glob and a max size such as "200 KiB"; it is ${JSON.stringify(b)}`);
      }
      return { path: b.path, max };
    });
    const files = {};
    budgets.forEach(({ path }, i) => {
      log.progress(i, budgets.length, path);
      files[path] = findFiles(path).map((p) => [p, fileSize(p)]);
    });
    const results = judge(budgets, files);
    const total = results.reduce((sum, r) => sum + r.bytes, 0);
    writeText(c.report, `${JSON.stringify({ budgets: results }, null, 2)}\n`);
    for (const r of results) {
      log.info(`${r.path}: ${formatSize(r.bytes)} of ${formatSize(r.max)}`, { files: r.files });
    }
    const problems = results.filter((r) => r.problem).map((r) => r.problem);
    if (problems.length > 0) {
      fail(problems.join('; '), { details: `the report is in ${c.report}` });
    }
    return stageOutput({
      outputs: { 'total-bytes': total, budgets: results.length },
      artifacts: { 'size-report': c.report },
      summary: `${results.length} budget(s) held: ${formatSize(total)} in all`,
    });
  },
};
