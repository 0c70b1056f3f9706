/**
 * Statistics of 8-bit input (bytesSumsPlanes, bytesSumsPattern, ChannelStats.fromBatch): exact
 * integer sums, merged batch by batch, against exact statistics.
 */
import { describe, expect, it } from 'vitest';
import { batchNorm, ChannelStats } from '../dist/src/index.js';
import { createKernel, loadWasmModule } from '../dist/workers/kernels/select.js';
import { elements, rng } from './helpers/data.js';
import { agreeingPools, CASES, channelsOf, exactStats, type Layout, randomBytes } from './helpers/bytes.js';
import { SCRATCH, scratchUsed } from './helpers/kernels.js';
import { KERNELS } from './helpers/pools.js';

describe('statistics of 8-bit input (bytesSumsPlanes, bytesSumsPattern, ChannelStats.fromBatch)', () => {
  const X = 1 << 16;
  const OUT = 1 << 22;
  for (const name of KERNELS) {
    it(`${name} kernels: exact sums from any element, across folds of their integer lanes`, () => {
      const memory = new WebAssembly.Memory({ initial: 128, maximum: 128, shared: true });
      const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
      const u8 = new Uint8Array(memory.buffer);
      const f64 = new Float64Array(memory.buffer);
      const check = (n: number, xOff: number, L: number, at: (i: number) => number, run: () => void, fill: (i: number) => number) => {
        for (let i = 0; i < n; i++) u8[X + xOff + i] = fill(i);
        f64.fill(0.5, OUT / 8, OUT / 8 + 2 * L + 2); // pairs start from 0.5: sums are added, not stored
        run();
        const want = new Float64Array(2 * L).fill(0.5);
        for (let i = 0; i < n; i++) {
          const v = u8[X + xOff + i];
          want[2 * at(i)] += v;
          want[2 * at(i) + 1] += v * v;
        }
        for (let k = 0; k < 2 * L; k++) if (f64[OUT / 8 + k] !== want[k]) throw new Error(`n ${n}: pair value ${k}: got ${f64[OUT / 8 + k]}, want ${want[k]}`);
        expect(f64[OUT / 8 + 2 * L]).toBe(0.5);
      };
      // bytesSumsPattern with the 6 * P bytes of scratch it documents (src/bytes.ts gives a task
      // 8 * P): the last word it changes must lie inside them.
      const i32 = new Int32Array(memory.buffer);
      let guarded = 0;
      const pattern = (n: number, xOff: number, first: number, P: number, fill: (i: number) => number) => {
        const run = () => kernel.bytesSumsPattern(X + xOff, n, first, P, OUT, SCRATCH);
        const used = scratchUsed(i32, 6 * P, () => check(n, xOff, P, (i) => (first + i) % P, run, fill));
        expect(used, `P ${P}, n ${n}: scratch past 6 * P written`).toBeLessThanOrEqual(6 * P);
        guarded++;
      };
      const rand = rng(41);
      const random = () => Math.floor(256 * rand());
      for (const [C, S] of [[1, 5], [3, 17], [2, 64], [4, 200_000]]) {
        for (const first of [0, 1, S - 1, S + 7]) {
          for (const n of [1, 15, 16, 17, 33, 2 * C * S - first]) {
            if (n < 1 || first + n > 2 * C * S) continue;
            check(n, 3, C, (i) => Math.floor((first + i) / S) % C, () => kernel.bytesSumsPlanes(X + 3, n, first, C, S, OUT), random);
          }
        }
      }
      for (const P of [16, 48, 80, 4096]) {
        for (const first of [0, 1, 15, 16, P - 1, P + 5]) {
          // 700 periods: several blocks of periods and folds of the integer lanes (the WebAssembly kernel).
          for (const n of [1, 15, 16, 17, 49, 3 * P + 11, 700 * P + 13]) {
            pattern(n, 5, first, P, random);
          }
        }
      }
      // Every byte 255, where integer lanes summed without their folds would wrap: 70,000 vectors
      // of a plane (a lane of squares passes 2^31 after 8,257), 70,000 periods of 16 and 20,000 of
      // 48 positions (a position's u16 sum passes 2^16 after 257 periods).
      check(1_120_000, 0, 1, () => 0, () => kernel.bytesSumsPlanes(X, 1_120_000, 0, 1, 1_120_000, OUT), () => 255);
      pattern(1_120_000, 0, 0, 16, () => 255);
      pattern(960_000, 0, 0, 48, () => 255);
      expect(guarded).toBe(4 * 6 * 7 + 2);
    });
  }

  const pools = agreeingPools();

  for (const [layout, shape] of [...CASES, ['channels-first', [4, 3, 100, 101]], ['channels-last', [4, 100, 101, 3]]] as [Layout, number[]][]) {
    it(`are exact, on every pool and kernel: ${layout} [${shape}]`, async () => {
      const x = randomBytes(elements(shape), 50 + shape.length);
      const want = exactStats(x, layout, shape);
      for (const [name, pool] of pools) {
        if (name.endsWith('small memory') && channelsOf(layout, shape) === 4096) {
          // Each task's sums of 4096 channels (24 bytes each) leave no room in 256 KiB for the input.
          await expect(ChannelStats.fromBatch(x, shape, { layout, pool })).rejects.toMatchObject({ code: 'ERR_BNPOOL_OUT_OF_MEMORY' });
          expect(pool.memoryStats.liveBytes, name).toBe(0);
          continue;
        }
        const stats = await ChannelStats.fromBatch(x, shape, { layout, pool });
        expect(Array.from(stats.count), name).toEqual(new Array(want.mean.length).fill(want.count));
        expect(Array.from(stats.mean()), name).toEqual(want.mean);
        expect(Array.from(stats.m2), name).toEqual(want.m2);
        expect(pool.memoryStats.liveBytes, name).toBe(0);
      }
      // The float32 input's statistics agree to their own accuracy (float32 lanes folded in float64).
      const floats = await ChannelStats.fromBatch(Float32Array.from(x), shape, { layout, pool: pools.get('wasm 2 workers')! });
      want.mean.forEach((m, c) => {
        expect(Math.abs(floats.mean()[c] - m)).toBeLessThanOrEqual(1e-6 * (Math.abs(m) + 1));
        expect(Math.abs(floats.m2[c] - want.m2[c])).toBeLessThanOrEqual(1e-6 * want.m2[c] + 1e-9);
      });
    });
  }

  it("merge batch by batch into the whole's statistics, which normalize the bytes as a model's would be", async () => {
    const shape = [6, 20, 21, 3];
    const x = randomBytes(elements(shape), 60);
    const pool = pools.get('wasm 2 workers')!;
    const half = x.length / 2;
    const a = await ChannelStats.fromBatch(x.subarray(0, half), [3, 20, 21, 3], { layout: 'channels-last', pool });
    const b = await ChannelStats.fromBatch(x.subarray(half), [3, 20, 21, 3], { layout: 'channels-last', pool });
    const whole = await ChannelStats.fromBatch(x, shape, { layout: 'channels-last', pool });
    const merged = a.merge(b);
    for (let c = 0; c < 3; c++) {
      expect(merged.count[c]).toBe(whole.count[c]);
      expect(Math.abs(merged.mean()[c] - whole.mean()[c])).toBeLessThanOrEqual(1e-13 * whole.mean()[c]);
      expect(Math.abs(merged.m2[c] - whole.m2[c])).toBeLessThanOrEqual(1e-12 * whole.m2[c]);
    }
    // Normalized with its own statistics, each channel of the batch has mean 0 and variance 1.
    const r = await batchNorm(x, shape, { layout: 'channels-last', runningMean: whole.mean(), runningVar: whole.variance(), eps: Number.MIN_VALUE, pool });
    const again = await ChannelStats.fromBatch(r.y, shape, { layout: 'channels-last', pool });
    for (let c = 0; c < 3; c++) {
      expect(Math.abs(again.mean()[c])).toBeLessThan(1e-6);
      expect(Math.abs(again.variance()[c] - 1)).toBeLessThan(1e-5);
    }
  });

  it('refuses a wrong shape or options before any work, and stops on an abort', async () => {
    const pool = pools.get('wasm 2 workers')!;
    const x = randomBytes(12, 61);
    await expect(ChannelStats.fromBatch(x, [5, 3], { pool })).rejects.toMatchObject({ code: 'ERR_BNPOOL_SHAPE' });
    await expect(ChannelStats.fromBatch(x, [4, 3], { pool, layout: 'hwc' as never })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(ChannelStats.fromBatch(x, [4, 3], { pool, training: true } as never)).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(ChannelStats.fromBatch(x, [4, 3], { pool, signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORT_ERR' });
    // Aborted while its 5 MB are copied in, between the copy's two slices (as batchNorm's above).
    const ac = new AbortController();
    const pending = ChannelStats.fromBatch(randomBytes(5_000_000, 62), [5, 1000, 1000], { pool, signal: ac.signal });
    setImmediate(() => ac.abort());
    await expect(pending).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(pool.memoryStats.liveBytes).toBe(0);
  });
});
