// What size-budget checks, without host imports, so `node --test` runs it.

const UNITS = { b: 1, kb: 1000, kib: 1024, mb: 1000 ** 2, mib: 1024 ** 2, gb: 1000 ** 3, gib: 1024 ** 3 };

/**
 * Bytes in a size written for people: `2048`, `200 KiB`, `1.5 MB`
 * (KB and MB are powers of 1000, KiB and MiB of 1024). undefined when it
 * is not one.
 */
export function parseSize(text) {
  if (typeof text === 'number') return Number.isInteger(text) && text >= 0 ? text : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(String(text));
  if (!match) return undefined;
  const unit = UNITS[(match[2] || 'b').toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(match[1]) * unit);
}

/** `bytes` for people: 1536 → "1.5 KiB". */
export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = bytes / 1024;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${value.toFixed(1).replace(/\.0$/, '')} ${units[i]}`;
}

/**
 * Each budget's verdict. `budgets` are { path, max } as configured (max
 * already in bytes); `files` maps each budget's glob to [path, bytes]
 * pairs. A budget no file matches is reported as such: a renamed bundle
 * must not pass by matching nothing.
 */
export function judge(budgets, files) {
  return budgets.map(({ path, max }) => {
    const matched = files[path] ?? [];
    const bytes = matched.reduce((sum, [, size]) => sum + size, 0);
    const largest = [...matched].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([p, size]) => ({ path: p, bytes: size }));
    let problem;
    if (matched.length === 0) problem = `no file matches ${path}`;
    else if (bytes > max) problem = `${path} is ${formatSize(bytes)}, ${formatSize(bytes - max)} over its budget of ${formatSize(max)}`;
    return { path, max, bytes, files: matched.length, largest, problem };
  });
}
