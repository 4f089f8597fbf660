import assert from 'node:assert/strict';
import { test } from 'node:test';

import { countLines } from './lib.js';

test('blank lines do not count', () => {
  assert.equal(countLines('function main() {\n\n  run();\n}\n'), 3);
  assert.equal(countLines(''), 0);
});
