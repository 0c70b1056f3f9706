/**
 * The per-channel parameters are made on the workers, not on the main thread: an eval forward's
 * (mean, weight / sqrt(var + eps), bias) and a backward's (mean, invstd, weight) are written by
 * the tasks of the call's first dispatch from the per-channel arrays the main thread copied onto
 * the pool (the prep, claimed PREP_CHANNELS at a time), and a training forward's merge reads the
 * weight and bias from those arrays. Checked with several prep claims racing at 1-3 threads,
 * inline, and staged through a small pool in chunks: the same bits everywhere, and the float64
 * reference's values.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNormBackward, Pool } from '../dist/src/index.js';
import { PREP_CHANNELS } from '../dist/workers/protocol.js';
import { randomTensor, randomVector, sameBits } from './helpers/data.js';
import { KERNELS, openAgreeingPools } from './helpers/pools.js';
import { dxErrorRatio, outputErrorRatio, referenceBackward, referenceForward } from './helpers/reference.js';

type Dtype = 'float32' | 'float64';

// Three prep claims, the last of 5 channels; rank 2 and rank 3.
const C = 2 * PREP_CHANNELS + 5;
const CASES: { shape: number[]; dtype: Dtype }[] = [
  { shape: [3, C], dtype: 'float32' },
  { shape: [2, C, 3], dtype: 'float64' },
];

for (const kernel of KERNELS) {
  describe(`parameters made on the workers (${kernel} kernel)`, () => {
    const pools: Pool[] = [];
    // The staged pool: the prep runs in the first chunk's dispatch, the others use it.
    beforeAll(() => { pools.push(...openAgreeingPools(kernel, 8 << 20)); });
    afterAll(() => Promise.all(pools.map((p) => p.close())));

    for (const { shape, dtype } of CASES) {
      it(`[${shape}] ${dtype}: eval forward and backward, training forward and backward`, async () => {
        const x = randomTensor(shape, dtype, 31);
        const dy = randomTensor(shape, dtype, 32);
        const weight = randomVector(C, dtype, 33, 0.5, 2);
        const bias = randomVector(C, dtype, 34, -1, 1);
        const runningMean = randomVector(C, dtype, 35, -1, 1);
        const runningVar = randomVector(C, dtype, 36, 0.5, 2);

        const runs: Float64Array[][] = [];
        for (const pool of pools) {
          const bn = new BatchNorm(C, { pool, dtype });
          bn.weight!.set(weight);
          bn.bias!.set(bias);
          bn.runningMean!.set(runningMean);
          bn.runningVar!.set(runningVar);
          bn.eval();
          const yEval = await bn.forward(x, shape);
          const gEval = await bn.backward(dy);
          // Eval changes no running statistic.
          expect(sameBits(bn.runningMean!, runningMean) && sameBits(bn.runningVar!, runningVar)).toBe(true);
          bn.train();
          const yTrain = await bn.forward(x, shape);
          const gTrain = await bn.backward(dy);
          runs.push([yEval, gEval.dx, gEval.dWeight!, gEval.dBias!, yTrain, gTrain.dx, gTrain.dWeight!, gTrain.dBias!]
            .map((a) => Float64Array.from(a)));
        }
        for (const run of runs.slice(1)) {
          for (let k = 0; k < run.length; k++) expect(sameBits(run[k], runs[0][k]), `output ${k}`).toBe(true);
        }

        const [yEval, dxEval, dWeightEval, dBiasEval, yTrain, dxTrain] = runs[0];
        const evalRef = referenceForward(x, shape, { training: false, weight, bias, runningMean, runningVar });
        expect(outputErrorRatio(yEval, x, shape, evalRef, bias, dtype)).toBeLessThanOrEqual(1);
        const evalInvstd = Array.from(runningVar, (v) => 1 / Math.sqrt(v + 1e-5));
        const bEval = referenceBackward(x, dy, shape, runningMean, evalInvstd, weight, false);
        expect(dxErrorRatio(dxEval, bEval, dy, x, shape, dtype)).toBeLessThanOrEqual(1);
        // dWeight and dBias against the reference, every channel (the last claim's among them).
        const tol = dtype === 'float32' ? 1e-5 : 1e-12;
        for (let c = 0; c < C; c++) {
          expect(Math.abs(dWeightEval[c] - bEval.dWeight[c]), `dWeight ${c}`).toBeLessThanOrEqual(tol * (1 + Math.abs(bEval.dWeight[c])));
          expect(Math.abs(dBiasEval[c] - bEval.dBias[c]), `dBias ${c}`).toBeLessThanOrEqual(tol * (1 + Math.abs(bEval.dBias[c])));
        }

        const trainRef = referenceForward(x, shape, { training: true, weight, bias });
        expect(outputErrorRatio(yTrain, x, shape, trainRef, bias, dtype)).toBeLessThanOrEqual(1);
        const trainInvstd = Array.from(trainRef.var, (v) => 1 / Math.sqrt(v + 1e-5));
        const bTrain = referenceBackward(x, dy, shape, trainRef.mean, trainInvstd, weight, true);
        expect(dxErrorRatio(dxTrain, bTrain, dy, x, shape, dtype)).toBeLessThanOrEqual(1);
      }, 60_000);
    }

    it('the functional backward takes invstd as given, or makes it from var and eps, with the same bits', async () => {
      const shape = [2, C];
      const x = randomTensor(shape, 'float64', 41);
      const dy = randomTensor(shape, 'float64', 42);
      const weight = randomVector(C, 'float64', 43, 0.5, 2);
      const mean = randomVector(C, 'float64', 44, -1, 1);
      const variance = randomVector(C, 'float64', 45, 0.5, 2);
      const invstd = Float64Array.from(variance, (v) => 1 / Math.sqrt(v + 1e-3));
      for (const pool of pools.slice(0, 3)) {
        const a = await batchNormBackward(x, dy, shape, { weight, mean, invstd, pool });
        const b = await batchNormBackward(x, dy, shape, { weight, mean, var: variance, eps: 1e-3, pool });
        expect(sameBits(a.dx, b.dx) && sameBits(a.dWeight, b.dWeight) && sameBits(a.dBias, b.dBias)).toBe(true);
        const ref = referenceBackward(x, dy, shape, mean, invstd, weight, true);
        expect(dxErrorRatio(a.dx, ref, dy, x, shape, 'float64')).toBeLessThanOrEqual(1);
      }
    });
  });
}
