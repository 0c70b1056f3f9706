/** layout: 'channels-last', (N, *spatial, C): the same normalization as channels-first on the transposed data. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, Pool, ShapeError } from '../dist/src/index.js';
import { randomTensor, sameBits } from './helpers/data.js';
import { KERNELS } from './helpers/pools.js';
import { maxRelativeError, outputErrorRatio, referenceForward } from './helpers/reference.js';

/**
 * Moves the channel axis of (N, C, *spatial) data [shape] to the end, or (`back`) of
 * (N, *spatial, C) data back to axis 1.
 */
function permute(x: Float32Array | Float64Array, shape: number[], back = false): Float32Array | Float64Array {
  const [N, C] = shape;
  const S = x.length / (N * C);
  const y = new (x.constructor as Float32ArrayConstructor)(x.length);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let s = 0; s < S; s++) {
        const first = (n * C + c) * S + s;
        const last = (n * S + s) * C + c;
        if (back) y[first] = x[last];
        else y[last] = x[first];
      }
    }
  }
  return y;
}

const toChannelsLast = (x: Float32Array | Float64Array, shape: number[]) => permute(x, shape);
const toChannelsFirst = (y: Float32Array | Float64Array, shape: number[]) => permute(y, shape, true);

const lastShape = (shape: number[]): number[] => [shape[0], ...shape.slice(2), shape[1]];

for (const kernel of KERNELS) {
  describe(`channels-last (${kernel} kernel)`, () => {
    const pools = new Map<number, Pool>();
    beforeAll(() => { for (const t of [1, 2, 3]) pools.set(t, new Pool({ threads: t, inlineThreshold: 0, kernel })); });
    afterAll(() => Promise.all([...pools.values()].map((p) => p.close())));

    for (const shape of [[7, 5], [3, 6, 17], [2, 3, 9, 11], [2, 64, 5, 3, 3], [16, 3, 30, 31]]) {
      for (const dtype of ['float32', 'float64'] as const) {
        it(`matches the reference: [${shape}] as [${lastShape(shape)}], ${dtype}`, async () => {
          const C = shape[1];
          const x = randomTensor(shape, dtype, C * 7 + shape.length);
          const xl = toChannelsLast(x, shape);
          const bn = new BatchNorm(C, { pool: pools.get(2)!, dtype, layout: 'channels-last' });
          bn.bias!.fill(0.25);
          const yl = await bn.forward(xl, lastShape(shape));
          const ref = referenceForward(x, shape, { training: true, bias: bn.bias });
          const ratio = outputErrorRatio(toChannelsFirst(yl, shape), x, shape, ref, bn.bias, dtype);
          expect(ratio).toBeLessThanOrEqual(1);
          const m = x.length / C;
          expect(maxRelativeError(bn.runningVar!, ref.var.map((v) => 0.9 + 0.1 * v * m / (m - 1)), 1)).toBeLessThan(dtype === 'float32' ? 1e-6 : 1e-12);
        });
      }
    }

    it('gives the same bits at 1, 2 and 3 threads', async () => {
      const shape = [8, 32, 20, 20];
      const xl = toChannelsLast(randomTensor(shape, 'float32', 3), shape);
      const runs = await Promise.all([1, 2, 3].map((t) => batchNorm(xl, lastShape(shape), { training: true, layout: 'channels-last', pool: pools.get(t)! })));
      for (const r of runs.slice(1)) {
        expect(sameBits(r.y, runs[0].y)).toBe(true);
        expect(sameBits(r.var, runs[0].var)).toBe(true);
      }
    });

    it('checks the channel count on the last axis', async () => {
      const bn = new BatchNorm(3, { pool: pools.get(1)!, layout: 'channels-last' });
      await expect(bn.forward(new Float32Array(24), [2, 3, 4])).rejects.toThrow(ShapeError);
      await expect(bn.forward(new Float32Array(24), [2, 3, 4])).rejects.toThrow(/shape\[2\] \(channels\) must equal numFeatures 3; got 4/);
      expect(() => new BatchNorm(3, { layout: 'nhwc' as never })).toThrow(/options.layout/);
    });
  });
}
