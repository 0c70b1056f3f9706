import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';

/**
 * Runs an ES module script in a fresh Node process, which must exit cleanly, writing `stderr` to
 * stderr (nothing, unless Node itself warns about its flags); its stdout, trimmed. Where
 * `addressSpace` is given, the process runs under that virtual memory limit in bytes (`ulimit -v`,
 * by /bin/sh).
 */
export function runNode(script: string, flags: string[] = [], timeout = 30_000, stderr = '', addressSpace?: number): string {
  const args = [...flags, '--input-type=module', '-e', script];
  const run = addressSpace === undefined
    ? spawnSync(process.execPath, args, { timeout, encoding: 'utf8' })
    : spawnSync('/bin/sh', ['-c', `ulimit -v ${Math.floor(addressSpace / 1024)} && exec "$0" "$@"`, process.execPath, ...args], { timeout, encoding: 'utf8' });
  expect(run.error).toBeUndefined();
  expect(run.stderr).toBe(stderr);
  expect(run.status).toBe(0);
  return run.stdout.trim();
}

/** runNode, its stdout parsed as JSON. */
export function runScript(script: string, flags: string[] = [], timeout = 30_000, stderr = '', addressSpace?: number): unknown {
  return JSON.parse(runNode(script, flags, timeout, stderr, addressSpace));
}

/**
 * Script lines for a child: `seed` (set it), `rand()`, a linear congruential generator in [0, 1)
 * that gives the same numbers in every process, and `hash(view)`, its bytes hashed, to compare
 * results' bits between processes.
 */
export const SEEDED_AND_HASHED = `
  let seed;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const hash = (a) => {
    let h = 0;
    for (const b of new Uint8Array(a.buffer, a.byteOffset, a.byteLength)) h = (Math.imul(h, 31) + b) >>> 0;
    return h;
  };
`;
