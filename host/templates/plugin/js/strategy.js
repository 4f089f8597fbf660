// __NAME__: a weir rollout strategy. It deploys the candidate, then for
// each of `steps` sets its share of traffic, waits `interval` and runs the
// stage's checks; it promotes after the last step and rolls back as soon
// as a check fails. A first release (nothing stable yet) takes all
// traffic at once.

import { config, fail } from './weir.js';
import { durationMs, plan } from './lib.js';

const DEFAULTS = {
  // The candidate's share of traffic at each step, rising to 100.
  steps: [20, 50, 100],
  // How long to watch each step before checking: 500ms, 30s, 5m.
  interval: '30s',
};

export const plugin = {
  describe() {
    return {
      name: '__NAME__',
      version: '0.1.0',
      kind: 'strategy',
      description: "__DESCRIPTION__",
      capabilities: [],
    };
  },
};

export const strategy = {
  next(ctx, state) {
    const { steps, interval } = config(ctx, DEFAULTS);
    const rising = steps.every((s, i) => i === 0 || steps[i - 1] < s);
    if (steps.length === 0 || !rising || steps.some((s) => !(s >= 1 && s <= 100))) {
      fail(`steps = ${JSON.stringify(steps)} must rise, each a share of traffic from 1 to 100`);
    }
    const wait = durationMs(interval);
    if (wait === undefined) fail(`interval = "${interval}" is not a duration; write e.g. 30s, 500ms or 5m`);
    const last = state.lastAnalysis;
    if (last && (last.verdict === 'fail' || last.verdict === 'inconclusive')) {
      return { tag: 'rollback', val: `a check failed: ${last.summary ?? last.verdict}` };
    }
    const step = plan(steps, state.stable === undefined, state.step);
    switch (step.do) {
      case 'deploy':
        return { tag: 'deploy-candidate' };
      case 'weight':
        return { tag: 'set-weight', val: step.weight };
      case 'wait':
        return { tag: 'wait', val: BigInt(wait) };
      case 'analyze':
        return { tag: 'analyze' };
      default:
        return { tag: 'promote' };
    }
  },
};
