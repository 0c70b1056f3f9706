/**
 * bench/timeline.mjs and bench/calling-thread.mjs still time a build: they patch a copy of dist/
 * by its source text (timeline.mjs wraps the worker entry's task function), so a change to the
 * code they patch must reach them. A small shape, three kinds
 * of call; every column a number, in the order a call's events must come (each holds call by
 * call, so it holds for the medians).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('bench/timeline.mjs', () => {
  it('prints a row of timings for each kind of call', () => {
    const run = spawnSync(process.execPath, ['bench/timeline.mjs', '4,16,64,64', 'floor,train,backward', '2'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const rows = run.stdout.split('\n').filter((line) => /^\| (floor|train|backward) \|/.test(line));
    expect(rows.map((r) => r.split('|')[1].trim())).toEqual(['floor', 'train', 'backward']);
    for (const row of rows) {
      const [pre, posting, first, last, work, gap, settle, total] = row.split('|').slice(2, 10).map(Number);
      for (const v of [pre, posting, first, last, work, gap, settle, total]) expect(Number.isFinite(v) && v >= 0).toBe(true);
      expect(work).toBeGreaterThan(0);
      expect(pre).toBeLessThanOrEqual(first);
      expect(first).toBeLessThanOrEqual(last);
      expect(work).toBeLessThanOrEqual(total);
      expect(settle).toBeLessThanOrEqual(total);
    }
  });

  it('with KERNELS=1, adds each task\'s time inside kernel calls, within its work', () => {
    const run = spawnSync(process.execPath, ['bench/timeline.mjs', '4,16,64,64', 'floor,train', '2'], {
      encoding: 'utf8', timeout: 60_000, env: { ...process.env, KERNELS: '1' },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/\| call \| pre \| posting \| first \| last \| work \| gap \| settle \| total \| kernels \|/);
    const rows = run.stdout.split('\n').filter((line) => /^\| (floor|train) \|/.test(line));
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      const cells = row.split('|').slice(2, -1).map(Number);
      expect(cells).toHaveLength(9);
      const [work, kernels] = [cells[4], cells[8]];
      expect(kernels).toBeGreaterThan(0);
      expect(kernels).toBeLessThanOrEqual(work);
    }
  });
});

describe('bench/calling-thread.mjs', () => {
  it('still finds the steps it marks in the build, and prints them in a call\'s order', () => {
    // It inserts a timestamp before lines of dist/ found by their text: a refactor that moves one
    // makes the script throw, which this catches.
    const run = spawnSync(process.execPath, ['bench/calling-thread.mjs', '4,16,64,64'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const row = run.stdout.split('\n').find((line) => line.startsWith('[4, 16, 64, 64]: '));
    expect(row).toBeDefined();
    const labels = [...row!.matchAll(/([a-z]+(?: \d)?) \d+ \(\d+\)/g)].map((m) => m[1]);
    // Printed by median time: the workers' steps may pass piscina's second post.
    expect([...labels].sort()).toEqual([
      'blocks', 'channels', 'checked', 'end', 'grid', 'post 1', 'post 2', 'queued', 'ready', 'results', 'settled', 'tasks', 'work',
    ]);
    // The calling thread's steps before the first post run one after another in every call.
    expect(labels.slice(0, 7)).toEqual(['checked', 'queued', 'grid', 'blocks', 'ready', 'channels', 'tasks']);
  });
});
