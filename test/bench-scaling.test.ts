/**
 * bench/scaling.ts (`npm run bench:scaling`): a table per shape with every mode at every thread
 * count, and the same-bits check across thread counts; its JSON; and its refusal of a shape it
 * cannot read. A small shape at 1 and 2 threads (the numbers are not checked, only that they are
 * numbers in their place).
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
      const run = spawnSync(process.execPath, ['dist/bench/scaling.js', '--shapes=6x4x32x33', '--threads=1,2', `--json=${json}`], { encoding: 'utf8', timeout: 120_000 });
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
      const saved = JSON.parse(readFileSync(json, 'utf8')) as { threadCounts: number[]; rows: unknown[]; checks: Record<string, { compared: number; differ: string[] }> };
      expect(saved.threadCounts).toEqual([1, 2]);
      expect(saved.rows).toHaveLength(8);
      expect(saved.checks['6x4x32x33']).toEqual({ compared: 14, differ: [] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a shape it cannot read, naming what it takes', () => {
    const run = spawnSync(process.execPath, ['dist/bench/scaling.js', '--shapes=A,8x0x4'], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/--shapes: expected shape ids \(A, B, C, D, E\) or shapes such as 16x64x32x32; got 8x0x4/);
  });
});
