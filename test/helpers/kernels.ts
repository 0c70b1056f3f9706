/**
 * What the kernel tests (test/kernels-*.test.ts) share: a kernel of either implementation over its
 * own shared memory, where their data, outputs and scratch lie in it, the lengths and offsets that
 * hit SIMD tails, and a float64 two-pass reference for a run's statistics.
 */
import { expect } from 'vitest';
import { PARTIAL_BYTES } from '../../dist/workers/scratch.js';
import { createKernel, loadWasmModule } from '../../dist/workers/kernels/select.js';

export const LENGTHS = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1001, 1025, 2049];
export const OFFSETS = [0, 1, 2, 3]; // elements: byte offsets 0, 4, 8, 12 (float32) past a 16-byte boundary
export const GUARD = -7777;
/** Float64 values a partial: (count, mean, m2, lo). */
export const PF = PARTIAL_BYTES / 8;
/** The ulp of a normal float64 v. */
export const ulpOf = (v: number): number => 2 ** (Math.floor(Math.log2(Math.abs(v))) - 52);

export function setup(name: 'js' | 'wasm') {
  const memory = new WebAssembly.Memory({ initial: 128, maximum: 128, shared: true });
  const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
  return { kernel, f32: new Float32Array(memory.buffer), f64: new Float64Array(memory.buffer), i32: new Int32Array(memory.buffer) };
}

export const DATA = 1 << 16; // byte where data start
export const OUT = 1 << 22; // byte where outputs start
export const SCRATCH = 6 << 20;

/**
 * The scratch `op` uses from SCRATCH: the bytes up to the last word it changed, of `given` and
 * 4 KiB past it, filled with a guard word first.
 */
export function scratchUsed(i32: Int32Array, given: number, op: () => void): number {
  const WORD = 0x5a5a5a5a;
  const end = (SCRATCH + given) / 4 + 1024;
  i32.fill(WORD, SCRATCH / 4, end);
  op();
  let last = end - 1;
  while (last >= SCRATCH / 4 && i32[last] === WORD) last--;
  return 4 * (last + 1) - SCRATCH;
}

export function reference(values: number[]): { n: number; mean: number; m2: number } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  return { n, mean, m2: values.reduce((a, v) => a + (v - mean) ** 2, 0) };
}

/**
 * Statistics tolerance. float64 data: float64 sums, ~1e-13. float32 data in the WASM kernel: lanes
 * summed in float32 over at most 8 values (of a run, or down 8 rows) before each float64 fold, a few
 * float32 roundings each: 2e-6 of m2, and of the spread for the mean.
 */
export function expectStats(got: Float64Array | number[], want: { n: number; mean: number; m2: number }, f64Data: boolean, name: string): void {
  const rel = f64Data || name === 'js' ? 1e-12 : 2e-6;
  const spread = Math.sqrt(want.m2 / want.n) || 1;
  expect(got[0]).toBe(want.n);
  expect(Math.abs(got[1] - want.mean)).toBeLessThanOrEqual(rel * spread + 1e-15 * Math.abs(want.mean));
  expect(Math.abs(got[2] - want.m2)).toBeLessThanOrEqual(rel * want.m2 + 1e-12);
}

/** Where the combined-op tests put partials apart (P1) and combined (P2), their scratch and parameters. */
export const PAIRED = { P1: SCRATCH, P2: SCRATCH + 8192, ACC: SCRATCH + 16384, params: SCRATCH + (1 << 20) };

/**
 * Cases of a combined row op against its two ops apart, as [S, C, nC, rows, nRows] for runs of
 * each length in `runs`: the channel counts and rows of the two sides differ (a phase's two groups
 * need not match).
 */
export function pairedRowCases(runs: number[]): [number, number, number, number, number][] {
  const cases: [number, number, number, number, number][] = [];
  for (const S of runs) {
    for (const [C, nC] of [[1, 1], [3, 2], [2, 5], [16, 16], [13, 21]]) {
      for (const [rows, nRows] of [[1, 1], [4, 3], [2, 7]]) cases.push([S, C, nC, rows, nRows]);
    }
  }
  return cases;
}
