import assert from 'node:assert/strict';
import { test } from 'node:test';

import { durationMs, plan } from './lib.js';

test('each step is a weight, a wait and a check', () => {
  const steps = [20, 100];
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7].map((n) => plan(steps, false, n).do),
    ['deploy', 'weight', 'wait', 'analyze', 'weight', 'wait', 'analyze', 'promote'],
  );
  assert.equal(plan(steps, false, 4).weight, 100);
});

test('a first release goes straight to all traffic', () => {
  assert.deepEqual(plan([20, 100], true, 1), { do: 'weight', weight: 100 });
  assert.deepEqual(plan([20, 100], true, 4), { do: 'promote' });
});

test('durations', () => {
  assert.equal(durationMs('3s'), 3000);
  assert.equal(durationMs('250ms'), 250);
  assert.equal(durationMs('soon'), undefined);
});
