/** `npm run bench`'s command line (bench/options.ts): which shapes, thread counts and files a run has. */
import { describe, expect, it } from 'vitest';
import { benchOptions, defaultThreadCounts } from '../dist/bench/options.js';

describe('bench options', () => {
  it('measures every thread count up to 4, then powers of two and the most', () => {
    expect(defaultThreadCounts(1)).toEqual([1]);
    expect(defaultThreadCounts(2)).toEqual([1, 2]);
    expect(defaultThreadCounts(4)).toEqual([1, 2, 3, 4]);
    expect(defaultThreadCounts(6)).toEqual([1, 2, 4, 6]);
    expect(defaultThreadCounts(16)).toEqual([1, 2, 4, 8, 16]);
  });

  it('a full run, a quick one, and partial ones by shape (the suite\'s or any) or thread count', () => {
    const full = benchOptions([], 2);
    expect([full.tag, full.quick, full.threadCounts, full.shapes.map((s) => s.id)]).toEqual(['full', false, [1, 2], ['A', 'B', 'C', 'D', 'E']]);
    const quick = benchOptions(['--quick'], 16);
    expect([quick.tag, quick.threadCounts]).toEqual(['quick', [16]]);
    const some = benchOptions(['--shapes=C,A'], 2);
    expect([some.tag, some.shapes.map((s) => s.id)]).toEqual(['partial', ['A', 'C']]);
    const custom = benchOptions(['--shapes=8x3x5x7,E,8x3x5x7,2x9,A'], 2);
    expect([custom.tag, custom.shapes.map((s) => [s.id, s.shape])]).toEqual(['partial', [
      ['A', [32, 64, 112, 112]], ['E', [4096, 1024]], ['8x3x5x7', [8, 3, 5, 7]], ['2x9', [2, 9]],
    ]]);
    const threads = benchOptions(['--threads=8,1,2,8'], 16);
    expect([threads.tag, threads.threadCounts, threads.shapes.length]).toEqual(['partial', [1, 2, 8], 5]);
  });

  it('refuses unknown shapes and bad thread counts, naming what it got', () => {
    for (const bad of ['F', '', '8', '8x0x4', '8x3.5', '1x2x3x4x5x6', 'x8x3']) {
      expect(() => benchOptions([`--shapes=A,${bad}`], 2), bad).toThrow(
        `--shapes: expected a shape id (A, B, C, D, E) or 2 to 5 sizes joined by x, such as 16x64x32x32; got ${JSON.stringify(bad)}`,
      );
    }
    for (const bad of ['', '0', '2,x', '1.5', '2000']) {
      expect(() => benchOptions([`--threads=${bad}`], 2), bad).toThrow(`--threads: expected thread counts from 1 to 1024, separated by commas; got ${JSON.stringify(bad)}`);
    }
  });
});
