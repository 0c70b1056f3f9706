/** layout: 'channels-last', (N, *spatial, C): the same normalization as channels-first on the transposed data. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, Pool, ShapeError } from '../dist/src/index.js';
import { permute, randomTensor, sameBits } from './helpers/data.js';
import { KERNELS, recordingTasks } from './helpers/pools.js';
import { maxRelativeError, outputErrorRatio, referenceForward } from './helpers/reference.js';

const toChannelsLast = (x: Float32Array | Float64Array, shape: number[]) => permute(x, shape);
const toChannelsFirst = (y: Float32Array | Float64Array, shape: number[]) => permute(y, shape, true);

const lastShape = (shape: number[]): number[] => [shape[0], ...shape.slice(2), shape[1]];

for (const kernel of KERNELS) {
  describe(`channels-last (${kernel} kernel)`, () => {
    const pools = new Map<number, Pool>();
    beforeAll(() => { for (const t of [1, 2, 3]) pools.set(t, new Pool({ threads: t, inlineThreshold: 0, grainSize: 1, kernel })); });
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

    // Backward: the channels-first gradients, transposed. Channel counts for every rank-2 kernel
    // path: few interleaved channels (1, 3, 5, 6), lanes (64), lanes with a tail (21).
    for (const shape of [[16, 3, 30, 31], [7, 5], [2, 6, 9, 11], [4, 1, 40], [2, 21, 5, 7], [3, 64, 4, 5]]) {
      for (const dtype of ['float32', 'float64'] as const) {
        for (const relu of [false, true]) {
          it(`backward matches channels-first: [${shape}] as [${lastShape(shape)}], ${dtype}${relu ? ', ReLU' : ''}`, async () => {
            const C = shape[1];
            const x = randomTensor(shape, dtype, C * 11 + shape.length);
            const dy = randomTensor(shape, dtype, C * 13 + shape.length);
            const options = { pool: pools.get(2)!, dtype, activation: relu ? 'relu' as const : null };
            const first = new BatchNorm(C, options);
            const last = new BatchNorm(C, { ...options, layout: 'channels-last' });
            for (const bn of [first, last]) {
              bn.weight!.set(Array.from({ length: C }, (_, c) => 0.5 + c / C));
              bn.bias!.set(Array.from({ length: C }, (_, c) => (c % 3) * 0.2 - 0.1));
            }
            await first.forward(x, shape);
            await last.forward(toChannelsLast(x, shape), lastShape(shape));
            const want = await first.backward(dy);
            const got = await last.backward(toChannelsLast(dy, shape));
            const dx = toChannelsFirst(got.dx, shape);
            const tol = dtype === 'float32' ? 2e-5 : 1e-12;
            for (let i = 0; i < dx.length; i++) expect(Math.abs(dx[i] - want.dx[i])).toBeLessThanOrEqual(tol * (1 + Math.abs(want.dx[i])));
            const m = x.length / C;
            for (let c = 0; c < C; c++) {
              expect(Math.abs(got.dBias![c] - want.dBias![c])).toBeLessThanOrEqual(tol * m);
              expect(Math.abs(got.dWeight![c] - want.dWeight![c])).toBeLessThanOrEqual(tol * m);
            }
            expect(Array.from(want.dBias!).some((v) => Math.abs(v) > 1)).toBe(true);
          });
        }
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

    it('walks whole rows in address order where input and output outgrow cacheBytes, with the same bits', async () => {
      // A pool whose cacheBytes the inputs outgrow: its tasks say so (Task.inOrder), and the
      // normalization walks rows in address order. Rows of 64 channels and of 77 (a vector and a
      // scalar tail past the last 16), ReLU and not, training and eval.
      const small = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, cacheBytes: 4096 });
      const seen: boolean[] = [];
      await recordingTasks(small, (tasks) => seen.push(...tasks.map((t) => t.inOrder)), async () => {
        for (const [shape, activation] of [[[6, 9, 11, 64], 'relu'], [[5, 7, 77], undefined]] as const) {
          const C = shape.at(-1)!;
          const x = randomTensor([...shape], 'float32', C);
          for (const training of [true, false]) {
            const ys = await Promise.all([small, pools.get(2)!].map((pool) => {
              const bn = new BatchNorm(C, { pool, layout: 'channels-last', activation });
              bn.runningMean!.forEach((_, c) => { bn.runningMean![c] = Math.sin(c); });
              bn.bias!.fill(-0.125);
              if (!training) bn.eval();
              return bn.forward(x, [...shape]);
            }));
            expect(sameBits(ys[0], ys[1])).toBe(true);
            expect(ys[0].some((v) => v > 0.5) && ys[0].some((v) => v < -0.5 || activation === 'relu')).toBe(true);
          }
        }
      });
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every(Boolean)).toBe(true);
      await small.close();
    });

    it('checks the channel count on the last axis', async () => {
      const bn = new BatchNorm(3, { pool: pools.get(1)!, layout: 'channels-last' });
      await expect(bn.forward(new Float32Array(24), [2, 3, 4])).rejects.toThrow(ShapeError);
      await expect(bn.forward(new Float32Array(24), [2, 3, 4])).rejects.toThrow(/shape\[2\] \(channels\) must equal numFeatures 3; got 4/);
      expect(() => new BatchNorm(3, { layout: 'nhwc' as never })).toThrow(/options.layout/);
    });
  });
}
