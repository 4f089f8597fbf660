import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatSize, judge, parseSize } from './lib.js';

test('sizes are read as people write them', () => {
  assert.equal(parseSize('2048'), 2048);
  assert.equal(parseSize(512), 512);
  assert.equal(parseSize('200 KiB'), 204800);
  assert.equal(parseSize('1.5MB'), 1500000);
  assert.equal(parseSize('10 parsecs'), undefined);
  assert.equal(parseSize(-1), undefined);
  assert.equal(formatSize(1536), '1.5 KiB');
  assert.equal(formatSize(100), '100 B');
});

test('a budget fails when exceeded or when nothing matches', () => {
  const [ok, over, missing] = judge(
    [
      { path: 'dist/*.css', max: 100 },
      { path: 'dist/*.js', max: 1000 },
      { path: 'dist/*.wasm', max: 10 },
    ],
    {
      'dist/*.css': [['dist/a.css', 60], ['dist/b.css', 40]],
      'dist/*.js': [['dist/app.js', 1500], ['dist/vendor.js', 524]],
    },
  );
  assert.equal(ok.problem, undefined);
  assert.equal(ok.bytes, 100);
  assert.equal(over.problem, 'dist/*.js is 2 KiB, 1 KiB over its budget of 1000 B');
  assert.deepEqual(over.largest[0], { path: 'dist/app.js', bytes: 1500 });
  assert.equal(missing.problem, 'no file matches dist/*.wasm');
});
