// A copy of a build's dist/ in a temporary folder that imports as the package does (its own
// package.json, the project's node_modules linked), for the bench scripts that patch or time a
// build without changing it: timeline.mjs, calling-thread.mjs and relaxed.mjs.
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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
 * Wraps the worker entry's task function in the copy at `tmp`: the original becomes
 * `runTaskUntimed`, and `wrapper` (source text that defines `export default function
 * runTask(task)` around it, and any imports it needs) is appended. `script` names the caller
 * for the error thrown when the entry no longer has the function to wrap.
 */
export function wrapWorkerEntry(tmp, wrapper, script) {
  const file = join(tmp, 'dist', 'workers', 'worker.js');
  const source = readFileSync(file, 'utf8');
  const head = 'export default function runTask(';
  if (!source.includes(head)) throw new Error(`${file}: no "${head}" to wrap (the worker entry changed: update bench/${script})`);
  writeFileSync(file, `${source.replace(head, 'function runTaskUntimed(')}\n${wrapper}`);
}
