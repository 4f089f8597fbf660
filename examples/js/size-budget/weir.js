// Helpers for weir plugins written in JavaScript (built with
// componentize-js). `weir plugin new --lang js` copies this file into the
// project, beside app.js.
//
// componentize-js gives a plugin weir's host imports as ES modules
// (`weir:plugin/log@0.1.0`, ...) and its exports as plain objects, but no
// file API: files are WASI descriptors. This module wraps what is awkward:
//
// - `config(ctx, defaults)` parses the stage's `with` table and refuses
//   keys the plugin does not know, naming them;
// - `fail(message)` ends the call with a `failure` (the WIT result's
//   error) instead of a crash;
// - `log.info/warn/debug/error/progress` write to the run's log;
// - `readText`, `writeText`, `fileSize` and `findFiles(globs)` work on
//   workspace files, by relative path;
// - `finding(...)` and `stageOutput(...)` build result records.
//
// WIT values in JavaScript: records are objects with camelCase fields,
// enums are strings ('stage', 'high'), variants are `{ tag, val }`,
// `option` is a value or undefined, and u64 is a BigInt.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { write, progress } from 'weir:plugin/log@0.1.0';

/** A failure the plugin returns: the stage fails with its message. */
export class Failure extends Error {
  constructor(message, { details, retryable } = {}) {
    super(message);
    this.payload = { message, details, retryable: Boolean(retryable) };
  }
}

/** End the call with a failure. */
export function fail(message, options) {
  throw new Failure(message, options);
}

/**
 * The stage's `with` table (JSON in `ctx.config`) over `defaults`. A key
 * not in `defaults` fails the call, naming it and the ones there are. A
 * deployer passes `{ strict: false }`: it is handed the whole deploy
 * stage's table (`service`, `artifact`, ...), which is weir's.
 */
export function config(ctx, defaults, { strict = true } = {}) {
  let given;
  try {
    given = JSON.parse(ctx.config || '{}');
  } catch (e) {
    fail(`the stage's \`with\` table is not JSON: ${e.message}`);
  }
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    fail("the stage's `with` must be a table");
  }
  const unknown = Object.keys(given).filter((k) => !Object.hasOwn(defaults, k)).sort();
  if (strict && unknown.length > 0) {
    const known = Object.keys(defaults).sort().join(', ') || 'none';
    fail(`unknown \`with\` key(s) ${unknown.join(', ')}; this plugin reads ${known}`);
  }
  return { ...defaults, ...given };
}

const pairs = (fields) => Object.entries(fields).map(([k, v]) => [String(k), String(v)]);

/** Lines in the run's log; `fields` are shown after the message. */
export const log = {
  info: (message, fields = {}) => write('info', message, pairs(fields)),
  warn: (message, fields = {}) => write('warn', message, pairs(fields)),
  debug: (message, fields = {}) => write('debug', message, pairs(fields)),
  error: (message, fields = {}) => write('error', message, pairs(fields)),
  /** `done` of `total` (undefined if unknown). */
  progress: (done, total, message) =>
    progress(BigInt(done), total === undefined ? undefined : BigInt(total), message),
};

// The workspace: the one directory weir gives the plugin.
function workspace() {
  const dirs = getDirectories();
  if (dirs.length === 0) fail('weir gave this plugin no workspace directory');
  return dirs[0][0];
}

function why(e) {
  return e && e.payload !== undefined ? String(e.payload) : String(e);
}

function open(path, openFlags, flags) {
  try {
    return workspace().openAt({ symlinkFollow: true }, path, openFlags, flags);
  } catch (e) {
    fail(`cannot open ${path}: ${why(e)}`);
  }
}

/** The bytes of a workspace file. */
export function readBytes(path) {
  const file = open(path, {}, { read: true });
  const chunks = [];
  let offset = 0n;
  for (;;) {
    const [chunk, end] = file.read(65536n, offset);
    chunks.push(chunk);
    offset += BigInt(chunk.length);
    if (end || chunk.length === 0) break;
  }
  const all = new Uint8Array(Number(offset));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** A workspace file's text (UTF-8). */
export function readText(path) {
  return new TextDecoder().decode(readBytes(path));
}

/** Write `text` to a workspace file, replacing it. */
export function writeText(path, text) {
  const file = open(path, { create: true, truncate: true }, { write: true });
  const bytes = new TextEncoder().encode(text);
  let offset = 0;
  while (offset < bytes.length) {
    offset += Number(file.write(bytes.subarray(offset), BigInt(offset)));
  }
}

/** A workspace file's size in bytes. */
export function fileSize(path) {
  try {
    return Number(workspace().statAt({ symlinkFollow: true }, path).size);
  } catch (e) {
    fail(`cannot stat ${path}: ${why(e)}`);
  }
}

function globRegex(pattern) {
  let out = '';
  for (let i = 0; i < pattern.length; ) {
    if (pattern.startsWith('**/', i)) {
      out += '(?:.*/)?';
      i += 3;
    } else if (pattern.startsWith('**', i)) {
      out += '.*';
      i += 2;
    } else if (pattern[i] === '*') {
      out += '[^/]*';
      i += 1;
    } else if (pattern[i] === '?') {
      out += '[^/]';
      i += 1;
    } else {
      out += pattern[i].replace(/[.+^${}()|[\]\\]/g, '\\$&');
      i += 1;
    }
  }
  return new RegExp(`^${out}$`);
}

/**
 * Whether the workspace-relative `path` matches `pattern`: `*` and `?`
 * within one folder, `**` across any number of them.
 */
export function globMatch(pattern, path) {
  return globRegex(pattern).test(path);
}

const SKIP = new Set(['.git', '.weir', 'node_modules']);

/**
 * Workspace files (relative paths, sorted) matching any of `patterns`.
 * Folders named .git, .weir and node_modules are not entered.
 */
export function findFiles(patterns) {
  const regexes = (Array.isArray(patterns) ? patterns : [patterns]).map(globRegex);
  const found = [];
  const walk = (dir, prefix) => {
    const entries = dir.readDirectory();
    for (;;) {
      const entry = entries.readDirectoryEntry();
      if (entry === undefined) break;
      const rel = prefix + entry.name;
      if (entry.type === 'directory') {
        if (SKIP.has(entry.name)) continue;
        walk(dir.openAt({ symlinkFollow: false }, entry.name, { directory: true }, { read: true }), `${rel}/`);
      } else if (entry.type === 'regular-file' && regexes.some((r) => r.test(rel))) {
        found.push(rel);
      }
    }
  };
  walk(workspace(), '');
  return found.sort();
}

/** One finding. */
export function finding({ rule, severity, message, path, line, column, fields = {} }) {
  return { rule, severity, message, path, line, column, fields: pairs(fields) };
}

/** What a stage returns: outputs and artifacts are name → value objects. */
export function stageOutput({ outputs = {}, artifacts = {}, summary } = {}) {
  return {
    outputs: pairs(outputs),
    artifacts: Object.entries(artifacts).map(([name, path]) => ({ name, path })),
    summary,
  };
}
