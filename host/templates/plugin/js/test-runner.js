// __NAME__: a weir test runner. Each file under `expected` is a test case:
// it passes when the file of the same name under `actual` has the same
// lines, and fails naming the first line that differs.

import { config, fail, findFiles, readText } from './weir.js';
import { difference } from './lib.js';

const DEFAULTS = {
  // The golden files.
  expected: 'tests/expected',
  // What the build produced, to compare with them.
  actual: 'tests/actual',
};

function tryRead(path) {
  try {
    return readText(path);
  } catch {
    return undefined;
  }
}

export const plugin = {
  describe() {
    return {
      name: '__NAME__',
      version: '0.1.0',
      kind: 'test-runner',
      description: "__DESCRIPTION__",
      capabilities: [],
    };
  },
};

export const testRunner = {
  runTests(ctx) {
    const c = config(ctx, DEFAULTS);
    const expectedDir = c.expected.replace(/\/+$/, '');
    const actualDir = c.actual.replace(/\/+$/, '');
    const golden = findFiles(`${expectedDir}/**/*`);
    if (golden.length === 0) fail(`there are no golden files under ${expectedDir}`);
    const cases = golden.map((expectedPath) => {
      const name = expectedPath.slice(expectedDir.length + 1);
      const actualPath = `${actualDir}/${name}`;
      const why = difference(readText(expectedPath), tryRead(actualPath));
      return {
        suite: 'golden',
        name,
        status: why === undefined ? 'passed' : 'failed',
        durationMs: 0n,
        message: why === undefined ? undefined : `${actualPath} ${why} of ${expectedPath}`,
        file: expectedPath,
      };
    });
    const failed = cases.filter((c) => c.status === 'failed').length;
    return { cases, summary: `${cases.length - failed} passed, ${failed} failed` };
  },
};
