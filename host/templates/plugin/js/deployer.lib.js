// __NAME__'s logic, without host imports, so `node --test` runs it.

/** [version, ready count] pairs in first-seen order; unready ones do not count. */
export function readyByVersion(instances) {
  const ready = new Map();
  for (const [version, isReady] of instances) {
    if (isReady) ready.set(version, (ready.get(version) ?? 0) + 1);
  }
  return [...ready.entries()];
}
