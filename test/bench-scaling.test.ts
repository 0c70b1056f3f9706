/**
 * bench/scaling.ts (`npm run bench:scaling`): a table per shape with every mode at every thread
 * count, and the same-bits check across thread counts; its JSON; and its refusal of a shape it
 * cannot read. A small shape at 1 and 2 threads on pools of 2 (the numbers are not checked, only
 * that they are numbers in their place).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('bench/scaling.ts', () => {
  it('prints each mode at each thread count, and that every output had the first thread count\'s bits', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bnpool-scaling-'));
    try {
      const json = join(dir, 'scaling.json');
      const run = spawnSync(process.execPath, ['dist/bench/scaling.js', '--shapes=6x4x32x33', '--threads=1,2', '--pool-threads=2', `--json=${json}`], { encoding: 'utf8', timeout: 120_000 });
      expect(run.status, run.stderr).toBe(0);
      const rows = run.stdout.split('\n').filter((line) => /^\| (floor|train|eval|backward) \| \d/.test(line)).map((line) => line.split('|').slice(1, -1).map((c) => c.trim()));
      expect(rows.map(([mode, threads]) => `${mode}@${threads}`)).toEqual([
        'floor@1', 'floor@2', 'train@1', 'train@2', 'eval@1', 'eval@2', 'backward@1', 'backward@2',
      ]);
      for (const [, , ms, gbps, vsFloor, speedUp] of rows) {
        for (const v of [ms, gbps, vsFloor, speedUp]) expect(Number(v)).toBeGreaterThan(0);
      }
      // Seven outputs (y, running mean and variance, dx, dWeight, dBias, eval's y), two kernels, one thread count past the first.
      expect(run.stdout).toMatch(/\| 6x4x32x33 \| 14 \| none \|/);
      expect(run.stdout).toMatch(/Thread counts 1, 2 \(pools of 2 threads, a grainSize giving each call that many\)/);
      const saved = JSON.parse(readFileSync(json, 'utf8')) as {
        threadCounts: number[]; poolThreads: number; rows: unknown[]; checks: Record<string, { compared: number; differ: string[] }>;
      };
      expect(saved.threadCounts).toEqual([1, 2]);
      expect(saved.poolThreads).toBe(2);
      expect(saved.rows).toHaveLength(8);
      expect(saved.checks['6x4x32x33']).toEqual({ compared: 14, differ: [] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a shape it cannot read, naming what it takes', () => {
    const run = spawnSync(process.execPath, ['dist/bench/scaling.js', '--shapes=A,8x0x4'], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('--shapes: expected a shape id (A, B, C, D, E) or 2 to 5 sizes joined by x, such as 16x64x32x32; got "8x0x4"');
  });

  it('refuses pools smaller than a thread count, a grain other than the default, and the default with --pool-threads', () => {
    const small = spawnSync(process.execPath, ['dist/bench/scaling.js', '--threads=1,4', '--pool-threads=2'], { encoding: 'utf8', timeout: 30_000 });
    expect(small.status).not.toBe(0);
    expect(small.stderr).toMatch(/--pool-threads: expected an integer from the largest thread count \(4\) to 1024; got 2/);
    const grain = spawnSync(process.execPath, ['dist/bench/scaling.js', '--grain=7'], { encoding: 'utf8', timeout: 30_000 });
    expect(grain.status).not.toBe(0);
    expect(grain.stderr).toMatch(/--grain: expected default; got 7/);
    const both = spawnSync(process.execPath, ['dist/bench/scaling.js', '--grain=default', '--pool-threads=2', '--threads=1,2'], { encoding: 'utf8', timeout: 30_000 });
    expect(both.status).not.toBe(0);
    expect(both.stderr).toMatch(/--grain=default with --pool-threads: every row would be the same pool/);
  });
});
