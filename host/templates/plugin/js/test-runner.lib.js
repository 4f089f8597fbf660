// __NAME__'s logic, without host imports, so `node --test` runs it.

/** undefined when `actual` has `expected`'s lines, else why not. */
export function difference(expected, actual) {
  if (actual === undefined) return 'missing';
  const want = expected.split('\n');
  const got = actual.split('\n');
  const n = Math.min(want.length, got.length);
  for (let i = 0; i < n; i++) {
    if (want[i] !== got[i]) return `differs from line ${i + 1}`;
  }
  return want.length === got.length ? undefined : `differs from line ${n + 1}`;
}
