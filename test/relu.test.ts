/** activation: 'relu': ReLU in the normalize pass, and a backward masked by the saved output. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, BatchNorm, batchNorm, batchNormBackward, type Pool } from '../dist/src/index.js';
import { fillChannel, randomTensor } from './helpers/data.js';
import { closePools, KERNELS, openPools, POOL_CONFIGS } from './helpers/pools.js';
import { channelStats, outputErrorRatio, referenceForward } from './helpers/reference.js';

for (const kernel of KERNELS) {
  describe(`fused ReLU (${kernel} kernel)`, () => {
    let pools: Map<string, Pool>;
    beforeAll(() => { pools = openPools(kernel); });
    afterAll(() => closePools(pools));

    for (const { name } of POOL_CONFIGS) {
      for (const dtype of ['float32', 'float64'] as const) {
        for (const shape of [[9, 5], [3, 4, 33], [2, 3, 70, 71]]) {
          it(`forward is max(0, BatchNorm(x)), NaN kept: ${name}, ${dtype}, [${shape}]`, async () => {
            const C = shape[1];
            const x = randomTensor(shape, dtype, 3 + C);
            fillChannel(x, shape, C - 1, (i) => (i === 2 ? NaN : i));
            const bn = new BatchNorm(C, { pool: pools.get(name)!, dtype, activation: 'relu' });
            bn.bias!.fill(0.1);
            const y = await bn.forward(x, shape);
            const ref = referenceForward(x, shape, { training: true, bias: bn.bias });
            const relu = { ...ref, y: ref.y.map((v) => (Number.isNaN(v) ? v : Math.max(0, v))) };
            expect(outputErrorRatio(y, x, shape, relu, bn.bias, dtype)).toBeLessThanOrEqual(1);
            expect(Array.from(y).some((v) => v === 0)).toBe(true);
            expect(Array.from(y).every((v) => Number.isNaN(v) || v >= 0)).toBe(true);
          });
        }

        it(`backward masks dy where y <= 0, from the saved output: ${name}, ${dtype}`, async () => {
          const shape = [4, 3, 12, 13];
          const x = randomTensor(shape, dtype, 11);
          const dy = randomTensor(shape, dtype, 12);
          const bn = new BatchNorm(3, { pool: pools.get(name)!, dtype, activation: 'relu' });
          const y = await bn.forward(x, shape);
          const g = await bn.backward(dy);
          // Reference: the plain backward of dy zeroed where y <= 0.
          const masked = dy.map((v, i) => (y[i] <= 0 ? 0 : v));
          const st = channelStats(x, shape);
          const plain = await batchNormBackward(x, masked as typeof dy, shape, { mean: Float64Array.from(st.mean), var: Float64Array.from(st.var), pool: pools.get(name)! });
          const tol = dtype === 'float32' ? 1e-5 : 1e-12;
          for (let i = 0; i < dy.length; i++) expect(Math.abs(g.dx[i] - plain.dx[i])).toBeLessThanOrEqual(tol * (1 + Math.abs(plain.dx[i])));
          for (let c = 0; c < 3; c++) {
            expect(Math.abs(g.dBias![c] - plain.dBias[c])).toBeLessThanOrEqual(tol * (1 + Math.abs(plain.dBias[c])) * 40);
            expect(Math.abs(g.dWeight![c] - plain.dWeight[c])).toBeLessThanOrEqual(tol * (1 + Math.abs(plain.dWeight[c])) * 40);
          }
          // The unmasked gradient is different: the mask mattered.
          expect(plain.dBias[0]).not.toBeCloseTo(Array.from(dy).filter((_, i) => Math.floor(i / 156) % 3 === 0).reduce((a, b) => a + b, 0), 3);
        });
      }
    }

    // Shapes for each kernel path that reads the mask: planes ([2, 3, 40, 41]), short runs
    // ([5, 3, 6, 7]), channels in lanes ([40, 37], channels last [6, 5, 5, 21]) and the few-channel
    // pattern ([40, 3]); the NaN sits in a vector's body and in a tail.
    for (const [shape, layout] of [
      [[2, 3, 40, 41], 'channels-first'], [[5, 3, 6, 7], 'channels-first'], [[40, 37], 'channels-first'],
      [[6, 5, 5, 21], 'channels-last'], [[40, 3], 'channels-first'],
    ] as const) {
      for (const dtype of ['float32', 'float64'] as const) {
        it(`backward passes dy where y is NaN (masks only y <= 0, as PyTorch): [${shape}] ${layout}, ${dtype}`, async () => {
          const last = layout === 'channels-last';
          const C = last ? shape[shape.length - 1] : shape[1];
          const n = shape.reduce((a, b) => a * b, 1);
          const S = last ? 1 : n / (shape[0] * C);
          const channelOf = (i: number): number => (last ? i % C : Math.floor(i / S) % C);
          const nanAt = [n - 1, Math.floor(n / 2) + 5];
          const x = randomTensor(shape, dtype, 21);
          for (const i of nanAt) x[i] = NaN;
          const dy = randomTensor(shape, dtype, 22);
          const pool = pools.get('2 workers')!;
          // Eval with finite running statistics: y is NaN at the NaN inputs only, and their dx is
          // weight * invstd * dy there, not 0.
          const bn = new BatchNorm(C, { pool, dtype, activation: 'relu', layout });
          bn.weight!.fill(1.5);
          bn.runningVar!.fill(4);
          bn.eval();
          const y = await bn.forward(x, shape);
          const { dx } = await bn.backward(dy);
          const invstd = 1 / Math.sqrt(4 + 1e-5);
          const tol = dtype === 'float32' ? 1e-6 : 1e-14;
          for (const i of nanAt) {
            expect(Number.isNaN(y[i])).toBe(true);
            expect(Math.abs(dx[i] - 1.5 * invstd * dy[i])).toBeLessThanOrEqual(tol);
          }
          // ...and elsewhere the mask still zeroes dy where y <= 0.
          const zeroed = Array.from(y).findIndex((v) => v === 0);
          expect(zeroed).toBeGreaterThanOrEqual(0);
          expect(dx[zeroed]).toBe(0);
          // Training: the NaN channels' outputs are all NaN, so all their dy pass: dBias = sum(dy).
          const train = new BatchNorm(C, { pool, dtype, activation: 'relu', layout });
          await train.forward(x, shape);
          const g = await train.backward(dy);
          for (const c of new Set(nanAt.map(channelOf))) {
            let sum = 0;
            for (let i = 0; i < n; i++) if (channelOf(i) === c) sum += dy[i];
            expect(Math.abs(g.dBias![c] - sum)).toBeLessThanOrEqual(tol * 100 * (1 + Math.abs(sum)));
          }
        });
      }
    }

    it('the functional forms take activation, and the backward needs y', async () => {
      const pool = pools.get('2 workers')!;
      const shape = [5, 2, 20];
      const x = randomTensor(shape, 'float32', 4);
      const r = await batchNorm(x, shape, { training: true, activation: 'relu', pool });
      expect(Array.from(r.y).every((v) => v >= 0)).toBe(true);
      await expect(batchNormBackward(x, x, shape, { mean: r.mean, var: r.var, activation: 'relu', pool })).rejects.toThrow(/options.y/);
      const g = await batchNormBackward(x, x, shape, { mean: r.mean, var: r.var, activation: 'relu', y: r.y, pool });
      expect(g.dx.length).toBe(x.length);
      expect(() => new BatchNorm(2, { activation: 'gelu' as never })).toThrow(ArgumentError);
    });
  });
}
