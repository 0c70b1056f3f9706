/**
 * The package's TypeScript declarations, as a caller compiles against them: test/types/consumer.ts
 * imports 'bnpool' by name (package.json's "exports" and "types", the build's dist/) and states
 * the types of outputs, gradients, results and errors exactly (not only assignable, as
 * test/package.test.ts's installed app checks them), and calls that must not compile.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { expect, it } from 'vitest';

it('test/types/consumer.ts compiles against the built declarations: every stated type holds, every refused call is an error', () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', 'test/types'], { encoding: 'utf8', timeout: 60_000 });
  expect(run.stdout + run.stderr).toBe('');
  expect(run.status).toBe(0);
});
