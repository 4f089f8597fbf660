import assert from 'node:assert/strict';
import { test } from 'node:test';

import { readyByVersion } from './lib.js';

test('only ready instances count', () => {
  assert.deepEqual(readyByVersion([['v1', true], ['v2', false], ['v1', true]]), [['v1', 2]]);
});
