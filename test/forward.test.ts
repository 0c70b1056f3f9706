/**
 * Training and eval forward against the float64 two-pass reference: ranks 2-5, odd sizes that
 * hit every grid mode (row mode, plane mode, split planes), C = 1, 3, 129, 1000, both dtypes; and
 * the forward in place (out: x) on every path.
 */
import { types } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, type Pool } from '../dist/src/index.js';
import { randomTensor, randomVector, sameBits } from './helpers/data.js';
import { closePools, eachInPlaceCase, KERNELS, openPools, POOL_CONFIGS, recordingOps } from './helpers/pools.js';
import { maxRelativeError, outputErrorRatio, referenceForward } from './helpers/reference.js';

const SHAPES: number[][] = [
  [7, 3], // rank 2, row mode
  [5, 129], // rank 2, C = 129
  [3, 1000], // rank 2, C = 1000
  [3, 5, 17], // rank 3, short rows
  [2, 3, 67], // rank 3, plane mode, odd length
  [3, 1, 5, 13], // C = 1
  [2, 1000, 3, 3], // C = 1000, small planes
  [4, 129, 11, 13], // C = 129
  [2, 3, 4, 5, 7], // rank 5
  [3, 3, 151, 151], // planes longer than a block: split into stretches
  [1, 1, 3, 3, 3], // N = 1
];

for (const kernel of KERNELS) {
  describe(`forward (${kernel} kernel)`, () => {
    let pools: Map<string, Pool>;
    beforeAll(() => { pools = openPools(kernel); });
    afterAll(() => closePools(pools));

    for (const { name } of POOL_CONFIGS) {
      for (const dtype of ['float32', 'float64'] as const) {
        for (const shape of SHAPES) {
          it(`training matches the reference: ${name}, ${dtype}, [${shape}]`, async () => {
            const C = shape[1];
            const x = randomTensor(shape, dtype, shape.length * 1000 + C);
            const bn = new BatchNorm(C, { pool: pools.get(name)!, dtype });
            bn.weight!.set(randomVector(C, dtype, 11, 0.5, 2));
            bn.bias!.set(randomVector(C, dtype, 12, -1, 1));
            const y = await bn.forward(x, shape);
            const ref = referenceForward(x, shape, { training: true, weight: bn.weight, bias: bn.bias });
            expect(y).toBeInstanceOf(x.constructor);
            expect(outputErrorRatio(y, x, shape, ref, bn.bias, dtype)).toBeLessThanOrEqual(1);
            // Running statistics after one step from (0, 1), momentum 0.1, unbiased variance.
            const m = x.length / C;
            const wantMean = ref.mean.map((v) => 0.1 * v);
            const wantVar = ref.var.map((v) => 0.9 + 0.1 * v * (m / (m - 1)));
            const storeTol = dtype === 'float32' ? 1e-6 : 1e-12;
            expect(maxRelativeError(bn.runningMean!, wantMean, 1)).toBeLessThan(storeTol);
            expect(maxRelativeError(bn.runningVar!, wantVar, 1)).toBeLessThan(storeTol);
            expect(bn.numBatchesTracked).toBe(1);
          });
        }
      }

      it(`eval uses the running statistics: ${name}`, async () => {
        const shape = [3, 4, 9, 11];
        const x = randomTensor(shape, 'float32', 5);
        const bn = new BatchNorm(4, { pool: pools.get(name)! });
        bn.runningMean!.set([0.5, -1, 2, 0]);
        bn.runningVar!.set([0.25, 4, 1.5, 9]);
        bn.weight!.set([1, 2, -1, 0.5]);
        bn.bias!.set([0, 1, -2, 3]);
        bn.eval();
        const y = await bn.forward(x, shape);
        const ref = referenceForward(x, shape, {
          training: false, weight: bn.weight, bias: bn.bias, runningMean: bn.runningMean, runningVar: bn.runningVar,
        });
        expect(outputErrorRatio(y, x, shape, ref, bn.bias, 'float32')).toBeLessThanOrEqual(1);
        expect(Array.from(bn.runningMean!)).toEqual([0.5, -1, 2, 0]);
        expect(bn.numBatchesTracked).toBe(0);
      });

      it(`functional batchNorm returns the biased batch statistics: ${name}`, async () => {
        const shape = [6, 5, 33];
        const x = randomTensor(shape, 'float64', 77);
        const runningMean = new Float64Array(5).fill(0.25);
        const runningVar = new Float64Array(5).fill(2);
        const weight = randomVector(5, 'float64', 1, 0.5, 1.5);
        const bias = randomVector(5, 'float64', 2, -1, 1);
        const r = await batchNorm(x, shape, {
          training: true, runningMean, runningVar, weight, bias, momentum: 0.3, eps: 1e-3, pool: pools.get(name)!,
        });
        const ref = referenceForward(x, shape, { training: true, weight, bias, eps: 1e-3 });
        expect(maxRelativeError(r.mean, ref.mean)).toBeLessThan(1e-12);
        expect(maxRelativeError(r.var, ref.var)).toBeLessThan(1e-12);
        expect(outputErrorRatio(r.y, x, shape, ref, bias, 'float64')).toBeLessThanOrEqual(1);
        const m = 6 * 33;
        for (let c = 0; c < 5; c++) {
          expect(runningMean[c]).toBeCloseTo(0.7 * 0.25 + 0.3 * ref.mean[c], 12);
          expect(runningVar[c]).toBeCloseTo(0.7 * 2 + 0.3 * ref.var[c] * (m / (m - 1)), 12);
        }
        // Eval with those buffers normalizes with them.
        const e = await batchNorm(x, shape, { runningMean, runningVar, weight, bias, eps: 1e-3, pool: pools.get(name)! });
        const refEval = referenceForward(x, shape, { training: false, weight, bias, runningMean, runningVar, eps: 1e-3 });
        expect(outputErrorRatio(e.y, x, shape, refEval, bias, 'float64')).toBeLessThanOrEqual(1);
        expect(Array.from(e.mean)).toEqual(Array.from(runningMean));
      });

      it(`functional batchNorm takes F.batch_norm's defaults: eval, eps 1e-5, momentum 0.1: ${name}`, async () => {
        const shape = [4, 3, 17];
        const x = randomTensor(shape, 'float64', 78);
        const mean0 = [0.5, -0.25, 1];
        const var0 = [2e-4, 0.5, 1.5]; // the first channel's variance near eps: eps shows in its output
        const runningMean = Float64Array.from(mean0);
        const runningVar = Float64Array.from(var0);
        const pool = pools.get(name)!;
        // No `training`: eval, with the running statistics, which stay as they were.
        const e = await batchNorm(x, shape, { runningMean, runningVar, pool });
        const refEval = referenceForward(x, shape, { training: false, runningMean, runningVar, eps: 1e-5 });
        expect(outputErrorRatio(e.y, x, shape, refEval, null, 'float64')).toBeLessThanOrEqual(1);
        expect([Array.from(runningMean), Array.from(runningVar)]).toEqual([mean0, var0]);
        // Training: eps 1e-5 in the output, momentum 0.1 in the update (unbiased variance).
        const r = await batchNorm(x, shape, { training: true, runningMean, runningVar, pool });
        const ref = referenceForward(x, shape, { training: true, eps: 1e-5 });
        expect(outputErrorRatio(r.y, x, shape, ref, null, 'float64')).toBeLessThanOrEqual(1);
        const m = shape[0] * shape[2];
        for (let c = 0; c < shape[1]; c++) {
          expect(runningMean[c]).toBeCloseTo(0.9 * mean0[c] + 0.1 * ref.mean[c], 12);
          expect(runningVar[c]).toBeCloseTo(0.9 * var0[c] + 0.1 * ref.var[c] * (m / (m - 1)), 12);
        }
      });

      it(`functional batchNorm writes mean and var into meanOut and varOut: the same bits as new arrays: ${name}`, async () => {
        const shape = [6, 5, 33];
        const pool = pools.get(name)!;
        for (const dtype of ['float32', 'float64'] as const) {
          const x = randomTensor(shape, dtype, 78);
          const fresh = await batchNorm(x, shape, { training: true, pool });
          const meanOut = new Float64Array(5).fill(NaN);
          const varOut = new Float64Array(5).fill(NaN);
          const r = await batchNorm(x, shape, { training: true, pool, meanOut, varOut });
          expect(r.mean).toBe(meanOut);
          expect(r.var).toBe(varOut);
          expect(sameBits(meanOut, fresh.mean)).toBe(true);
          expect(sameBits(varOut, fresh.var)).toBe(true);
          expect(sameBits(r.y, fresh.y)).toBe(true);
          // One alone (the other new); eval copies the running statistics into them.
          const only = await batchNorm(x, shape, { training: true, pool, varOut: new Float64Array(5) });
          expect(sameBits(only.var, fresh.var)).toBe(true);
          expect(sameBits(only.mean, fresh.mean)).toBe(true);
          const runningMean = randomVector(5, 'float64', 3, -1, 1);
          const runningVar = randomVector(5, 'float64', 4, 0.5, 2);
          const e = await batchNorm(x, shape, { runningMean, runningVar, pool, meanOut, varOut });
          expect(e.mean).toBe(meanOut);
          expect(Array.from(meanOut)).toEqual(Array.from(runningMean));
          expect(Array.from(varOut)).toEqual(Array.from(runningVar));
        }
      });

      it(`a new output lives on a SharedArrayBuffer of its own, which no later call touches: ${name}`, async () => {
        // README, "Using it": what a call without `out` resolves to, inline or on the workers.
        const shape = [4, 3, 5, 7];
        const pool = pools.get(name)!;
        for (const dtype of ['float32', 'float64'] as const) {
          const x = randomTensor(shape, dtype, 91);
          const bn = new BatchNorm(3, { pool, dtype }).eval();
          bn.runningMean!.set(randomVector(3, dtype, 92, -1, 1));
          const first = await bn.forward(x, shape);
          const kept = first.slice();
          // Another running mean: the second call's values differ from the first's everywhere.
          bn.runningMean!.set(randomVector(3, dtype, 93, 2, 3));
          const second = await bn.forward(x, shape);
          for (const y of [first, second]) {
            expect(types.isSharedArrayBuffer(y.buffer)).toBe(true);
            expect([y.byteOffset, y.buffer.byteLength]).toEqual([0, x.byteLength]);
          }
          expect(second.buffer).not.toBe(first.buffer);
          expect(sameBits(first, kept)).toBe(true);
          expect(second.every((v, i) => v !== kept[i])).toBe(true);
          // The same bits as the same call into an `out`.
          const out = new (dtype === 'float64' ? Float64Array : Float32Array)(x.length).fill(NaN);
          await bn.forward(x, shape, { out });
          expect(sameBits(second, out)).toBe(true);
        }
        // 8-bit input: a new Float32Array on a SharedArrayBuffer as well.
        const bytes = Uint8Array.from({ length: 4 * 3 * 5 * 7 }, (_, i) => (i * 37) % 256);
        const y = await new BatchNorm(3, { pool }).eval().forward(bytes, shape);
        expect(y).toBeInstanceOf(Float32Array);
        expect(types.isSharedArrayBuffer(y.buffer)).toBe(true);
        expect(y[1]).toBeCloseTo(37 / Math.sqrt(1 + 1e-5), 4);
      });
    }
  });
}

describe('forward in place (out: x, on the pool)', () => {
  it('writes y over x with the bits of a y apart: every grid mode and path, both kernels and dtypes, training and eval, ReLU', async () => {
    // The kernels' rule for outputs over inputs (workers/kernels/kernel.ts), its forward half:
    // each element read before y is written there, and never read again after. The cases and
    // pools of backward's in-place test.
    const { count, ops } = await eachInPlaceCase(async ({ pool, shape, layout, dtype, C, n, activation, training, label, ops }) => {
      const x0 = randomTensor(shape, dtype, 110 + C);
      const make = (): BatchNorm => {
        const bn = new BatchNorm(C, { pool, dtype, layout, activation });
        bn.weight!.set(randomVector(C, dtype, 120 + C, 0.5, 2));
        bn.runningMean!.set(randomVector(C, dtype, 130 + C, -0.5, 0.5));
        return training ? bn : bn.eval();
      };
      const x = pool.alloc(n, dtype);
      x.set(x0);
      const apart = pool.alloc(n, dtype);
      const a = make();
      await a.forward(x, shape, { out: apart });
      const b = make();
      const y = await recordingOps(pool, ops, () => b.forward(x, shape, { out: x }));
      expect(y, label).toBe(x);
      expect(sameBits(x, apart), label).toBe(true);
      expect(sameBits(b.runningMean!, a.runningMean!), label).toBe(true);
      expect(sameBits(b.runningVar!, a.runningVar!), label).toBe(true);
      expect(sameBits(apart, x0), label).toBe(false);
      pool.free(x);
      pool.free(apart);
    });
    expect(count).toBe(KERNELS.length * 3 * 12 * 2 * 4);
    for (const seen of ops.values()) expect([...seen].sort()).toEqual(['fused', 'normalize', 'phased', 'split']);
  });
});
