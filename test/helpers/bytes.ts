/**
 * What the 8-bit input tests (test/bytes*.test.ts) share: shapes of both layouts with odd sizes,
 * random pixels, a model's running statistics and affine parameters in pixel units, float64
 * references for the output and the statistics, and the pools whose results must agree.
 */
import { afterAll, beforeAll } from 'vitest';
import { Pool } from '../../dist/src/index.js';
import { elements, rng } from './data.js';
import { KERNELS } from './pools.js';

export type Layout = 'channels-first' | 'channels-last';

/** Shapes in their layout's order, with odd sizes that leave vector tails and split periods. */
export const CASES: [Layout, number[]][] = [
  ['channels-first', [7, 3]], // rank 2
  ['channels-first', [3, 5, 17]], // rank 3, runs shorter than a vector of bytes and longer
  ['channels-first', [2, 3, 67]],
  ['channels-first', [4, 3, 31, 33]], // an RGB batch, odd planes
  ['channels-first', [1, 1, 5, 13]], // C = 1
  ['channels-first', [2, 4, 3, 5, 7]], // rank 5
  ['channels-last', [7, 3]],
  ['channels-last', [2, 31, 33, 3]], // HWC RGB, as a decoder gives it: period 48
  ['channels-last', [3, 9, 11, 4]], // RGBA: period 16
  ['channels-last', [2, 5, 7, 1]], // gray: period 16
  ['channels-last', [2, 3, 5, 17]], // period 272
  ['channels-last', [3, 11, 13, 6]], // period 48
  ['channels-last', [2, 3, 3, 3, 5]], // rank 5, period 80
  ['channels-last', [3, 5, 1001]], // a period of 16,016: a value at a time
  ['channels-last', [3, 2, 4096]], // a period of C
];

export function channelsOf(layout: Layout, shape: number[]): number {
  return layout === 'channels-last' ? shape[shape.length - 1] : shape[1];
}

export function randomBytes(length: number, seed: number): Uint8Array {
  const rand = rng(seed);
  return Uint8Array.from({ length }, () => Math.floor(256 * rand()));
}

/** Running statistics and affine parameters of C channels, as a model's would be (in pixel units). */
export function params(C: number, seed: number) {
  const rand = rng(seed);
  const make = (lo: number, hi: number) => Float64Array.from({ length: C }, () => lo + (hi - lo) * rand());
  return { runningMean: make(60, 190), runningVar: make(200, 5000), weight: make(0.5, 2), bias: make(-1, 1) };
}

/** float64 reference: max(0?)((x - mean) / sqrt(var + eps) * weight + bias), channel by layout. */
export function reference(x: Uint8Array, layout: Layout, shape: number[], p: ReturnType<typeof params>, eps: number, relu: boolean): Float64Array {
  const C = channelsOf(layout, shape);
  const S = layout === 'channels-last' ? 1 : elements(shape.slice(2));
  return Float64Array.from(x, (v, i) => {
    const c = layout === 'channels-last' ? i % C : Math.floor(i / S) % C;
    const y = ((v - p.runningMean[c]) / Math.sqrt(p.runningVar[c] + eps)) * p.weight[c] + p.bias[c];
    return relu ? Math.max(0, y) : y;
  });
}

/** Largest error over the float32 rounding the three operations allow: |y - ref| / (4 ulp-sized bound). */
export function errorRatio(y: Float32Array, want: Float64Array, x: Uint8Array, layout: Layout, shape: number[], p: ReturnType<typeof params>, eps: number): number {
  const C = channelsOf(layout, shape);
  const S = layout === 'channels-last' ? 1 : elements(shape.slice(2));
  let worst = 0;
  for (let i = 0; i < y.length; i++) {
    const c = layout === 'channels-last' ? i % C : Math.floor(i / S) % C;
    const scale = p.weight[c] / Math.sqrt(p.runningVar[c] + eps);
    // Each float32 operation rounds by at most 2^-24 of its result: x - hi, (x - hi) * sc, + bs.
    const bound = 4 * 2 ** -24 * (Math.abs((x[i] - p.runningMean[c]) * scale) + Math.abs(p.bias[c]) + Math.abs(p.runningMean[c] * scale) * 2 ** -23) + 1e-30;
    worst = Math.max(worst, Math.abs(y[i] - want[i]) / bound);
  }
  return worst;
}

/** x (N, *spatial, C) as (N, C, *spatial). */
export function toChannelsFirst(y: Float32Array, shape: number[]): Float32Array {
  const C = shape[shape.length - 1];
  const S = elements(shape.slice(1, -1));
  const out = new Float32Array(y.length);
  for (let n = 0; n < shape[0]; n++) for (let s = 0; s < S; s++) for (let c = 0; c < C; c++) out[(n * C + c) * S + s] = y[(n * S + s) * C + c];
  return out;
}

/**
 * The pools a suite's results must agree on, by name, for both kernels: 1-3 workers, inline, and
 * 2 workers in a pool too small for the larger cases at once (staged in chunks). Opened before
 * the suite's tests, closed after.
 */
export function agreeingPools(): Map<string, Pool> {
  const pools = new Map<string, Pool>();
  beforeAll(() => {
    for (const kernel of KERNELS) {
      for (const threads of [1, 2, 3]) pools.set(`${kernel} ${threads} workers`, new Pool({ threads, inlineThreshold: 0, grainSize: 1, kernel }));
      pools.set(`${kernel} inline`, new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel }));
      pools.set(`${kernel} small memory`, new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: 256 << 10, initialMemory: 128 << 10 }));
    }
  });
  afterAll(() => Promise.all([...pools.values()].map((p) => p.close())));
  return pools;
}

/** Exact statistics of 8-bit input, as bnpool makes them: integer sums, m2's numerator exact. */
export function exactStats(x: Uint8Array, layout: Layout, shape: number[]): { count: number; mean: number[]; m2: number[] } {
  const C = channelsOf(layout, shape);
  const S = layout === 'channels-last' ? 1 : elements(shape.slice(2));
  const s1 = new Array<number>(C).fill(0);
  const s2 = new Array<number>(C).fill(0);
  x.forEach((v, i) => {
    const c = layout === 'channels-last' ? i % C : Math.floor(i / S) % C;
    s1[c] += v;
    s2[c] += v * v;
  });
  const count = x.length / C;
  return {
    count,
    mean: s1.map((s) => s / count),
    m2: s1.map((s, c) => Number(BigInt(count) * BigInt(s2[c]) - BigInt(s) ** 2n) / count),
  };
}
