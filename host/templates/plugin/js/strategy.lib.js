// __NAME__'s logic, without host imports, so `node --test` runs it.

/** `500ms`, `30s`, `5m` or `1h` in milliseconds; undefined otherwise. */
export function durationMs(text) {
  const match = /^(\d+)(ms|s|m|h)$/.exec(String(text).trim());
  if (!match) return undefined;
  return Number(match[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[match[2]];
}

/**
 * What to do after `actions` actions: { do: 'deploy' | 'weight' | 'wait'
 * | 'analyze' | 'promote', weight }.
 */
export function plan(steps, firstRelease, actions) {
  if (actions === 0) return { do: 'deploy' };
  const weights = firstRelease ? [100] : steps;
  const step = Math.floor((actions - 1) / 3);
  if (step >= weights.length) return { do: 'promote' };
  return [{ do: 'weight', weight: weights[step] }, { do: 'wait' }, { do: 'analyze' }][(actions - 1) % 3];
}
