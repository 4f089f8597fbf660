import assert from 'node:assert/strict';
import { test } from 'node:test';

import { difference } from './lib.js';

test('differences name the first line', () => {
  assert.equal(difference('a\nb\n', 'a\nb\n'), undefined);
  assert.equal(difference('a\nb\n', 'a\nc\n'), 'differs from line 2');
  assert.equal(difference('a\n', undefined), 'missing');
});
