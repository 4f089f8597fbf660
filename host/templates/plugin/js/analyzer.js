// __NAME__: a weir analyzer. It flags TODO, FIXME and XXX markers left in
// the workspace files its `include` globs match, and fails the stage when
// a finding is at least as severe as `fail-at`.

import { config, fail, finding, findFiles, log, readText } from './weir.js';
import { MARKERS, markers, SEVERITIES } from './lib.js';

const DEFAULTS = {
  // Workspace globs to read.
  include: ['*.js'],
  // The lowest severity that fails the stage: low, medium, high, critical.
  'fail-at': 'high',
};

export const plugin = {
  describe() {
    return {
      name: '__NAME__',
      version: '0.1.0',
      kind: 'analyzer',
      description: "__DESCRIPTION__",
      capabilities: [],
    };
  },
};

export const analyzer = {
  analyze(ctx) {
    const { include, 'fail-at': failAt } = config(ctx, DEFAULTS);
    if (!SEVERITIES.includes(failAt)) fail(`fail-at = "${failAt}" is not a severity; use ${SEVERITIES.join(', ')}`);
    const files = findFiles(include);
    const findings = [];
    for (const path of files) {
      for (const { line, marker } of markers(readText(path))) {
        findings.push(
          finding({ rule: marker.toLowerCase(), severity: MARKERS[marker], message: `\`${marker}\` is left in the code`, path, line }),
        );
      }
    }
    log.info(`${findings.length} marker(s) in ${files.length} file(s)`);
    const failing = findings.filter((f) => SEVERITIES.indexOf(f.severity) >= SEVERITIES.indexOf(failAt));
    return {
      findings,
      verdict: failing.length > 0 ? 'fail' : findings.length > 0 ? 'warn' : 'pass',
      summary: `${findings.length} marker(s), ${failing.length} at or above ${failAt}`,
    };
  },
};
