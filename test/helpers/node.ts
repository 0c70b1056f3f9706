import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';

/**
 * Runs an ES module script in a fresh Node process, which must exit cleanly, writing `stderr` to
 * stderr (nothing, unless Node itself warns about its flags); its stdout, trimmed.
 */
export function runNode(script: string, flags: string[] = [], timeout = 30_000, stderr = ''): string {
  const run = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { timeout, encoding: 'utf8' });
  expect(run.error).toBeUndefined();
  expect(run.stderr).toBe(stderr);
  expect(run.status).toBe(0);
  return run.stdout.trim();
}

/** runNode, its stdout parsed as JSON. */
export function runScript(script: string, flags: string[] = [], timeout = 30_000, stderr = ''): unknown {
  return JSON.parse(runNode(script, flags, timeout, stderr));
}
