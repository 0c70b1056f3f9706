/**
 * The backward after an eval-mode forward (running statistics): dx = weight·invstd·dy in one pass
 * over the data, its sums (dWeight, dBias) in the same pass where the module is affine, across the
 * grid's modes, layouts, dtypes, kernels and staging (backward.test.ts has the rest of backward).
 */
import { describe, expect, it } from 'vitest';
import { BatchNorm, Pool } from '../dist/src/index.js';
import { randomTensor, sameBits } from './helpers/data.js';
import { KERNELS, recordingTasks } from './helpers/pools.js';

describe('backward, more', () => {
  it('eval mode: one pass (without affine dx alone, with it each block: sums, then dx); the dx bits of an affine module with weight 1', async () => {
    // Row mode, lanes, a few interleaved channels, planes of several rows and of one long row,
    // channels-last; both dtypes and kernels, ReLU on and off; pool arrays, plain arrays, and a
    // small pool that stages them in chunks.
    const cases: [number[], 'channels-first' | 'channels-last'][] = [
      [[4, 6, 9, 10], 'channels-first'], [[64, 20], 'channels-first'], [[50, 3], 'channels-first'], [[6, 5, 40, 40], 'channels-first'],
      [[3, 2, 130, 130], 'channels-first'], [[4, 7, 7, 6], 'channels-last'],
    ];
    for (const kernel of KERNELS) {
      const big = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel });
      const small = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: 512 * 1024, initialMemory: 131072 });
      for (const [shape, layout] of cases) {
        for (const dtype of ['float32', 'float64'] as const) {
          for (const activation of [null, 'relu'] as const) {
            const C = layout === 'channels-last' ? shape.at(-1)! : shape[1];
            const x = randomTensor(shape, dtype, 31 + C);
            const dy = randomTensor(shape, dtype, 41 + C);
            for (const pool of [big, small]) {
              // Every dispatch's tasks, by op and prep (the module's own pool, inline never).
              const seen: string[] = [];
              await recordingTasks(pool, (tasks) => seen.push(...tasks.map((t) => `${t.op}${t.prep === null ? '' : `+${t.prep}`}`)), async () => {
                const grads = async (affine: boolean, onPool: boolean) => {
                  const bn = new BatchNorm(C, { pool, dtype, affine, layout, activation });
                  await bn.forward(x, shape); // running statistics that are not the defaults
                  bn.eval();
                  await bn.forward(x, shape);
                  seen.length = 0;
                  if (!onPool) return { ...(await bn.backward(dy)), ops: [...seen] };
                  const d = pool.alloc(x.length, dtype);
                  d.set(dy);
                  const out = pool.alloc(x.length, dtype);
                  const g = await bn.backward(d, { out });
                  const dx = out.slice();
                  pool.free(d);
                  pool.free(out);
                  return { ...g, dx, ops: [...seen] };
                };
                for (const onPool of pool === big ? [true, false] : [false]) {
                  const label = `${kernel} ${pool === big ? 'big' : 'small'} ${onPool ? 'pool' : 'plain'} [${shape}] ${layout} ${dtype} ${activation}`;
                  const plain = await grads(false, onPool);
                  const affine = await grads(true, onPool);
                  expect(sameBits(plain.dx, affine.dx), label).toBe(true);
                  expect(plain.dWeight, label).toBeNull();
                  expect(affine.dWeight, label).not.toBeNull();
                  // Without affine: normalize tasks only, the first dispatch's making the dx coefficients.
                  expect(plain.ops.length, label).toBeGreaterThan(0);
                  expect(plain.ops.every((op) => op === 'normalize' || op === 'normalize+apply-var'), label).toBe(true);
                  expect(plain.ops[0], label).toBe('normalize+apply-var');
                  // With it: one pass too, each block's sums and then its dx (stats tasks, the first
                  // dispatch's making the dx coefficients).
                  expect(affine.ops.every((op) => op === 'stats' || op === 'stats+apply-var'), label).toBe(true);
                  expect(affine.ops[0], label).toBe('stats+apply-var');
                }
              });
            }
          }
        }
      }
      // Planes of several rows with dy on a pool that holds it and half more: x, dx and the mask
      // are staged in chunks cut by channel, whose rows lie closer together than dy's (the dx pass
      // then goes a row a call).
      const shape = [13, 12, 40, 40];
      for (const dtype of ['float32', 'float64'] as const) {
        const n = 13 * 12 * 1600;
        const mid = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: Math.ceil(1.5 * n * (dtype === 'float32' ? 4 : 8) / 65536) * 65536, initialMemory: 131072 });
        const x = randomTensor(shape, dtype, 61);
        const dy = randomTensor(shape, dtype, 62);
        for (const activation of [null, 'relu'] as const) {
          const dx = async (affine: boolean) => {
            const bn = new BatchNorm(12, { pool: mid, dtype, affine, activation });
            await bn.forward(x, shape);
            bn.eval();
            await bn.forward(x, shape);
            const d = mid.alloc(n, dtype);
            d.set(dy);
            const { dx: got } = await bn.backward(d);
            mid.free(d);
            return got;
          };
          expect(sameBits(await dx(false), await dx(true)), `${kernel} ${dtype} ${activation} [${shape}], dy on a pool that stages the rest`).toBe(true);
        }
        await mid.close();
      }
      await Promise.all([big.close(), small.close()]);
    }
  }, 60_000);
});
