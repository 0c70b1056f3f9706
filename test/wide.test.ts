/**
 * Wide rows: many channels and few values a channel in each row (BatchNorm1d over wide
 * features, late channels-last layers). planGrid cuts such rows into bands of channels and makes
 * the row groups tall; training calls then reduce and normalize a band at a time (`fused`) where a
 * band of every row fits the cache, else in two passes over (row group, band) blocks. Checked
 * against the float64 reference, forward and backward, with adversarial channels, at several
 * thread counts (fused and two-pass), inline and staged through a small pool in chunks: the
 * same bits everywhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, Pool } from '../dist/src/index.js';
import { planGrid, shouldFuse } from '../dist/src/plan.js';
import { normalizesRows } from '../dist/workers/protocol.js';
import { fillChannel, permute, randomTensor, randomVector, sameBits } from './helpers/data.js';
import { KERNELS, openAgreeingPools } from './helpers/pools.js';
import {
  dxErrorRatio, outputErrorRatio, referenceBackward, referenceForward, referenceRunningUpdate,
} from './helpers/reference.js';

type Dtype = 'float32' | 'float64';

describe('the wide-row grid', () => {
  it('makes thin row groups tall, cuts rows long enough into bands, and leaves other row groups as they were', () => {
    // [64, 65536]: 16 row groups of 4 rows would give every channel 16 partials for 64 values.
    const wide = planGrid(64, 65536, 1);
    expect(wide).toMatchObject({ mode: 'row', groupRows: 64, nGroups: 1, bandChannels: 2048, bands: 32 });
    expect(shouldFuse(wide, 65536, true, 2)).toBe(true);
    // Too many rows for a band of every row to stay in cache: two passes over (group, band) blocks.
    const tall = planGrid(600, 9000, 1);
    expect(tall).toMatchObject({ groupRows: 120, nGroups: 5, bandChannels: 1008, bands: 9 });
    expect(shouldFuse(tall, 9000, true, 2)).toBe(false);
    // Short runs (S > 1) are banded in whole channels, bands and row groups of equal size.
    expect(planGrid(3, 700, 13)).toMatchObject({ groupRows: 3, bandChannels: 350, bands: 2 });
    expect(planGrid(300, 8200, 1)).toMatchObject({ groupRows: 100, nGroups: 3, bandChannels: 912, bands: 9 });
    // Rows of 2048 or more elements and a few rows (BatchNorm1d on a small batch): at least two
    // bands, one row group, so two threads share the work and each channel has one partial.
    expect(planGrid(16, 4096, 1)).toMatchObject({ groupRows: 16, nGroups: 1, bandChannels: 2048, bands: 2 });
    expect(planGrid(30, 3916, 1)).toMatchObject({ groupRows: 30, nGroups: 1, bandChannels: 1968, bands: 2 });
    expect(planGrid(16, 2048, 3)).toMatchObject({ groupRows: 16, nGroups: 1, bandChannels: 1024, bands: 2 });
    expect(shouldFuse(planGrid(16, 4096, 1), 4096, true, 2)).toBe(true);
    // Rows too short for two bands: one band, but tall row groups where they would be thin.
    expect(planGrid(16, 2047, 1)).toMatchObject({ groupRows: 16, nGroups: 1, bands: 1, bandChannels: 2047 });
    expect(planGrid(16, 512, 1)).toMatchObject({ groupRows: 16, nGroups: 1, bands: 1 });
    expect(planGrid(1000, 1000, 1)).toMatchObject({ groupRows: 125, nGroups: 8, bands: 1 });
    // Row groups that hold >= 64 values a channel stay as they were: up to 16, one band.
    expect(planGrid(4096, 1024, 1)).toMatchObject({ groupRows: 256, nGroups: 16, bands: 1, bandChannels: 1024 });
    expect(planGrid(256, 256, 196)).toMatchObject({ groupRows: 16, bands: 1 });
    expect(planGrid(2, 1207, 64)).toMatchObject({ groupRows: 1, bands: 1 });
    // Huge rows: the row group (a staging unit) stays at most 4M elements.
    expect(planGrid(16, 1 << 20, 1)).toMatchObject({ groupRows: 4, nGroups: 4, bandChannels: 8192, bands: 128 });
  });

  it('normalizes banded float32 rows a whole row at a time where every thread gets a claim, forward only', () => {
    expect(normalizesRows(planGrid(512, 65536, 1), 'float32', null, 512, 2)).toBe(true);
    expect(normalizesRows(planGrid(12, 700, 13), 'float32', null, 12, 3)).toBe(true);
    // A region of fewer rows than ROWS_CLAIM_MIN a thread keeps the bands, which the threads share.
    expect(normalizesRows(planGrid(2, 1 << 20, 1), 'float32', null, 2, 2)).toBe(false);
    expect(normalizesRows(planGrid(12, 700, 13), 'float32', null, 12, 4)).toBe(false);
    expect(normalizesRows(planGrid(512, 65536, 1), 'float32', null, 7, 2)).toBe(false);
    // The float64 row kernel makes parameter arrays as wide as its call; backward keeps its blocks.
    expect(normalizesRows(planGrid(512, 65536, 1), 'float64', null, 512, 2)).toBe(false);
    expect(normalizesRows(planGrid(512, 65536, 1), 'float32', 'train', 512, 2)).toBe(false);
    expect(normalizesRows(planGrid(512, 65536, 1), 'float32', 'eval', 512, 2)).toBe(false);
    // One band, or plane mode: the blocks already lie in address order.
    expect(normalizesRows(planGrid(4096, 1024, 1), 'float32', null, 4096, 2)).toBe(false);
    expect(normalizesRows(planGrid(8, 16, 1024), 'float32', null, 8, 1)).toBe(false);
  });
});

// [4, 8195]: two bands, the second of 4083 channels (a vector tail in each row);
// [3, 700, 13]: bands of whole short runs; [300, 8200]: three row groups, two passes;
// channels-last [2, 3, 3, 8200]: 18 rows of 8200 channels; [30, 3916] and channels-last
// [6, 5, 2052]: rows too short for bands before (16 partials a channel), now two bands.
const CASES: { shape: number[]; layout: 'channels-first' | 'channels-last' }[] = [
  { shape: [4, 8195], layout: 'channels-first' },
  { shape: [30, 3916], layout: 'channels-first' },
  { shape: [6, 5, 2052], layout: 'channels-last' },
  { shape: [3, 700, 13], layout: 'channels-first' },
  { shape: [300, 8200], layout: 'channels-first' },
  { shape: [2, 3, 3, 8200], layout: 'channels-last' },
];

for (const kernel of KERNELS) {
  describe(`wide rows (${kernel} kernel)`, () => {
    const pools: Pool[] = [];
    // The staged pool is too small for [300, 8200] with dy (or in float64) at once: staged a few
    // row groups (128 rows, 4.2 MB of float32) at a time.
    beforeAll(() => { pools.push(...openAgreeingPools(kernel, 20 << 20)); });
    afterAll(() => Promise.all(pools.map((p) => p.close())));

    for (const { shape, layout } of CASES) {
      for (const dtype of ['float32', 'float64'] as Dtype[]) {
        it(`[${shape}] ${layout} ${dtype}: forward, running statistics and backward against float64, the same bits everywhere`, async () => {
          const last = layout === 'channels-last';
          const C = last ? shape[shape.length - 1] : shape[1];
          const cfShape = last ? [shape[0], C, ...shape.slice(1, -1)] : shape;
          // Adversarial channels among random ones: a large offset with a tiny spread, a
          // constant channel, and NaN in one channel (first and last band).
          const cf = randomTensor(cfShape, dtype, 7 + C);
          fillChannel(cf, cfShape, 1, (i) => 1e4 + 1e-3 * Math.sin(i));
          fillChannel(cf, cfShape, 2, () => 0.75);
          fillChannel(cf, cfShape, C - 1, (i) => (i === 1 ? NaN : Math.cos(i)));
          const x = last ? permute(cf, cfShape) : cf;
          const dyCf = randomTensor(cfShape, dtype, 9 + C);
          const dy = last ? permute(dyCf, cfShape) : dyCf;
          const weight = randomVector(C, 'float64', 5, 0.5, 2);
          const bias = randomVector(C, 'float64', 6, -1, 1);

          const runs: Float64Array[][] = [];
          for (const pool of pools) {
            const bn = new BatchNorm(C, { pool, dtype, layout });
            bn.weight!.set(weight);
            bn.bias!.set(bias);
            const y = await bn.forward(x, shape);
            const g = await bn.backward(dy);
            runs.push([y, bn.runningMean!, bn.runningVar!, g.dx, g.dWeight!, g.dBias!].map((a) => Float64Array.from(a)));
          }
          for (const run of runs.slice(1)) {
            for (let k = 0; k < run.length; k++) expect(sameBits(run[k], runs[0][k]), `output ${k}`).toBe(true);
          }

          const [y, rm, rv, dx, dWeight, dBias] = runs[0];
          const ref = referenceForward(cf, cfShape, { training: true, weight, bias });
          const yCf = last ? permute(Float64Array.from(y), cfShape, true) : y;
          expect(outputErrorRatio(yCf, cf, cfShape, ref, bias, dtype)).toBeLessThanOrEqual(1);
          const wantMean = new Float64Array(C);
          const wantVar = new Float64Array(C).fill(1);
          referenceRunningUpdate(wantMean, wantVar, ref.mean, ref.var, cf.length / C, 0.1);
          // The float32 kernels' means are off by a few ulps of the channel's spread (README,
          // "Kernels"), their m2 by ~1e-6 relative; the module then rounds to float32.
          const f32 = dtype === 'float32';
          for (let c = 0; c < C - 1; c++) {
            const sd = Math.sqrt(ref.var[c]);
            const meanTol = (f32 ? 8 * 2 ** -23 : 1e-12) * (Math.abs(ref.mean[c]) + sd);
            expect(Math.abs(rm[c] - wantMean[c]), `running mean ${c}`).toBeLessThanOrEqual(meanTol);
            expect(Math.abs(rv[c] - wantVar[c]), `running var ${c}`).toBeLessThanOrEqual((f32 ? 4e-6 : 1e-12) * wantVar[c]);
          }
          const invstd = Array.from(ref.var, (v) => 1 / Math.sqrt(v + 1e-5));
          const bref = referenceBackward(cf, dyCf, cfShape, ref.mean, invstd, weight, true);
          const dxCf = last ? permute(dx, cfShape, true) : dx;
          expect(dxErrorRatio(dxCf, bref, dyCf, cf, cfShape, dtype)).toBeLessThanOrEqual(1);
          // The sums as in backward.test.ts, on the random channels (the large offset's dWeight
          // carries its mean's rounding times invstd ~300; the NaN channel's are NaN).
          const m = cf.length / C;
          const rel = f32 && kernel === 'wasm' ? 1e-5 : 1e-9;
          const rounding = f32 ? 2 ** -23 : 0;
          const norm = (v: Float64Array): number => v.subarray(3, C - 1).reduce((a, b) => Math.max(a, Math.abs(b)), 1);
          const [nW, nB] = [norm(bref.dWeight), norm(bref.dBias)];
          for (let c = 3; c < C - 1; c++) {
            expect(Math.abs(dWeight[c] - bref.dWeight[c])).toBeLessThanOrEqual(rel * nW * Math.sqrt(m) + rounding * Math.abs(bref.dWeight[c]));
            expect(Math.abs(dBias[c] - bref.dBias[c])).toBeLessThanOrEqual(rel * nB * Math.sqrt(m) + rounding * Math.abs(bref.dBias[c]));
          }
          expect(Number.isNaN(dWeight[C - 1])).toBe(true);
          // The NaN channel is NaN and only it: a band must not leak into its neighbours.
          expect(Number.isNaN(rm[C - 1])).toBe(true);
          expect(rm.slice(0, C - 1).every(Number.isFinite)).toBe(true);
        }, 60_000);
      }
    }

    it("a training forward's whole-row normalization into an `out` on another SharedArrayBuffer gives the plain call's bits", async () => {
      const shape = [300, 8200];
      const x = randomTensor(shape, 'float32', 31);
      const weight = randomVector(8200, 'float64', 32, 0.5, 2);
      for (const pool of pools) {
        const run = async (out?: Float32Array): Promise<Float32Array> => {
          const bn = new BatchNorm(8200, { pool });
          bn.weight!.set(weight);
          return await bn.forward(x, shape, out === undefined ? {} : { out }) as Float32Array;
        };
        const y = await run();
        const out = new Float32Array(new SharedArrayBuffer(4 * x.length)).fill(NaN);
        await run(out);
        expect(sameBits(out, y)).toBe(true);
        expect(y.every(Number.isFinite)).toBe(true);
      }
    });

    // Whole rows a claim (normalizesRows) and bands, the same bits: 5 rows (whole rows on one
    // thread, a claim of 4 and one of 1; bands on more), 300 rows in three row groups, short runs
    // (S = 13, 12 rows: whole rows on up to 3 threads), and channels-last rows (18 of 8200 channels).
    for (const { shape, layout } of [
      { shape: [5, 9000], layout: 'channels-first' }, { shape: [300, 8200], layout: 'channels-first' },
      { shape: [12, 700, 13], layout: 'channels-first' }, { shape: [2, 3, 3, 8200], layout: 'channels-last' },
    ] as const) {
      it(`eval mode and a fused ReLU on wide rows [${shape}] ${layout} match the reference, the same bits everywhere`, async () => {
        const last = layout === 'channels-last';
        const C = last ? shape[shape.length - 1] : shape[1];
        const cfShape = last ? [shape[0], C, ...shape.slice(1, -1)] : [...shape];
        const cf = randomTensor(cfShape, 'float32', 21 + C);
        const x = last ? permute(cf, cfShape) : cf;
        const runningMean = randomVector(C, 'float64', 22, -1, 1);
        const runningVar = randomVector(C, 'float64', 23, 0.5, 2);
        const bias = randomVector(C, 'float64', 24, -0.5, 0.5);
        const ys: Float32Array[] = [];
        for (const pool of pools) {
          const bn = new BatchNorm(C, { pool, activation: 'relu', layout });
          bn.runningMean!.set(runningMean);
          bn.runningVar!.set(runningVar);
          bn.bias!.set(bias);
          bn.eval();
          ys.push(await bn.forward(x, [...shape]) as Float32Array);
          // Into an `out` on a SharedArrayBuffer of its own: the workers copy each claim's rows there.
          const out = new Float32Array(new SharedArrayBuffer(4 * x.length)).fill(NaN);
          await bn.forward(x, [...shape], { out });
          expect(sameBits(out, ys.at(-1)!)).toBe(true);
        }
        for (const y of ys.slice(1)) expect(sameBits(y, ys[0])).toBe(true);
        const ref = referenceForward(cf, cfShape, {
          training: false, runningMean: Float32Array.from(runningMean), runningVar: Float32Array.from(runningVar),
          bias: Float32Array.from(bias),
        });
        const relu = { ...ref, y: ref.y.map((v) => Math.max(v, 0)) };
        const yCf = last ? permute(Float64Array.from(ys[0]), cfShape, true) : ys[0];
        expect(outputErrorRatio(yCf, cf, cfShape, relu, Float32Array.from(bias), 'float32')).toBeLessThanOrEqual(1);
        expect(ys[0].some((v) => v === 0) && ys[0].some((v) => v > 0)).toBe(true);
      });
    }
  });
}
