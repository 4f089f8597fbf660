import assert from 'node:assert/strict';
import { test } from 'node:test';

import { markers } from './lib.js';

test('markers are found by line', () => {
  const text = 'let x = 1;\n// TODO: name this\nlet y = 2; // FIXME\n';
  assert.deepEqual(markers(text), [
    { line: 2, marker: 'TODO' },
    { line: 3, marker: 'FIXME' },
  ]);
  assert.deepEqual(markers('clean\n'), []);
});
