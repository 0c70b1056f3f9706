// A copy of a build's dist/ in a temporary folder that imports as the package does (its own
// package.json, the project's node_modules linked), for the bench scripts that patch or time a
// build without changing it: timeline.mjs, calling-thread.mjs and relaxed.mjs.
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Copies `dist` (a build's dist/ folder) to a new temporary folder, which is removed when the
 * process exits; returns the folder (the copy is its dist/).
 */
export function copyDist(dist, name) {
  const tmp = mkdtempSync(join(tmpdir(), `bnpool-${name}-`));
  process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
  cpSync(resolve(dist), join(tmp, 'dist'), { recursive: true });
  writeFileSync(join(tmp, 'package.json'), '{ "type": "module" }\n');
  symlinkSync(join(root, 'node_modules'), join(tmp, 'node_modules'), 'dir');
  return tmp;
}

/**
 * Replaces the first `anchor` (source text) in `file` of the copy at `tmp` (a path under its
 * dist/) with `replacement`, taken as it is. `script` names the caller for the error thrown when
 * the build no longer has the anchor: the code moved, and the script must follow it.
 */
export function replaceInCopy(tmp, file, anchor, replacement, script) {
  const path = join(tmp, 'dist', file);
  const source = readFileSync(path, 'utf8');
  if (!source.includes(anchor)) throw new Error(`${path}: no "${anchor.trim()}" (the code moved: update bench/${script})`);
  writeFileSync(path, source.replace(anchor, () => replacement));
}

/**
 * Wraps the worker entry's task function in the copy at `tmp`: the original becomes
 * `runTaskUntimed`, and `wrapper` (source text that defines `export default function
 * runTask(task)` around it, and any imports it needs) is appended. `script` names the caller
 * for the error thrown when the entry no longer has the function to wrap.
 */
export function wrapWorkerEntry(tmp, wrapper, script) {
  replaceInCopy(tmp, 'workers/worker.js', 'export default function runTask(', 'function runTaskUntimed(', script);
  appendFileSync(join(tmp, 'dist', 'workers', 'worker.js'), `\n${wrapper}`);
}
