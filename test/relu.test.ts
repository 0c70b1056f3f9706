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
          // Reference: the plain backward of dy masked by y > 0.
          const masked = dy.map((v, i) => (y[i] > 0 ? v : 0));
          const st = channelStats(x, shape);
          const plain = await batchNormBackward(x, masked as typeof dy, shape, { mean: Float64Array.from(st.mean), var: Float64Array.from(st.var), pool: pools.get(name)! });
          const tol = dtype === 'float32' ? 1e-5 : 1e-12;
          for (let i = 0; i < dy.length; i++) expect(Math.abs(g.dx[i] - plain.dx[i])).toBeLessThanOrEqual(tol * (1 + Math.abs(plain.dx[i])));
          for (let c = 0; c < 3; c++) {
            expect(Math.abs(g.dBias![c] - plain.dBias[c])).toBeLessThanOrEqual(tol * (1 + Math.abs(plain.dBias[c])) * 40);
            expect(Math.abs(g.dWeight![c] - plain.dWeight[c])).toBeLessThanOrEqual(tol * (1 + Math.abs(plain.dWeight[c])) * 40);
          }
          // The unmasked gradient is different: the mask mattered.
          expect(plain.dBias[0]).not.toBeCloseTo(dy.filter((_, i) => Math.floor(i / 156) % 3 === 0).reduce((a, b) => a + b, 0), 3);
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
