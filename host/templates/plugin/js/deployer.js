// __NAME__: a weir deployer. It runs releases on weir's local target
// through the `runtime` host import: it starts a release's instances,
// moves traffic, scales down, promotes and rolls back.

import { instances, setWeights, start, stop } from 'weir:plugin/runtime@0.1.0';

import { config, fail } from './weir.js';
import { readyByVersion } from './lib.js';

const DEFAULTS = {
  // The path each instance answers when it is ready.
  'readiness-path': '/healthz',
};

/** A runtime call; its host error becomes this call's failure. */
function host(name, call) {
  try {
    return call();
  } catch (e) {
    const error = e && e.payload !== undefined ? e.payload : e;
    fail(`runtime.${name} refused: ${error.tag ?? ''}: ${error.val ?? error}`);
  }
}

function status(service) {
  const all = host('instances', () => instances(service));
  return { service, weights: [], ready: readyByVersion(all.map((i) => [i.version, i.ready])) };
}

export const plugin = {
  describe() {
    return {
      name: '__NAME__',
      version: '0.1.0',
      kind: 'deployer',
      description: "__DESCRIPTION__",
      capabilities: ['runtime'],
    };
  },
};

export const deployer = {
  deploy(ctx, release) {
    // The deploy stage's table: weir's keys (service, artifact, ...) and ours.
    const c = config(ctx, DEFAULTS, { strict: false });
    const running = host('instances', () => instances(release.service)).filter((i) => i.version === release.version);
    for (let n = running.length; n < release.replicas; n++) {
      const spec = {
        service: release.service,
        version: release.version,
        artifact: release.artifact,
        args: [],
        env: release.env,
        readinessPath: c['readiness-path'],
      };
      host('start', () => start(spec));
    }
    return status(release.service);
  },
  setTraffic(ctx, service, weights) {
    host('set-weights', () => setWeights(service, weights));
    return status(service);
  },
  scale(ctx, service, version, replicas) {
    const mine = host('instances', () => instances(service)).filter((i) => i.version === version);
    if (mine.length < replicas) fail(`${service} ${version} runs ${mine.length} instance(s); this deployer scales down only`);
    for (const i of mine.slice(replicas)) host('stop', () => stop(i.id));
    return status(service);
  },
  promote(ctx, service, version) {
    host('set-weights', () => setWeights(service, [[version, 100]]));
    for (const i of host('instances', () => instances(service))) {
      if (i.version !== version) host('stop', () => stop(i.id));
    }
    return status(service);
  },
  rollback(ctx, service, version) {
    for (const i of host('instances', () => instances(service))) {
      if (i.version === version) host('stop', () => stop(i.id));
    }
    return status(service);
  },
  status(ctx, service) {
    return status(service);
  },
};
