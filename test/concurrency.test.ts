/** Many calls at once, call order on one module, and steady memory over many calls. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, Pool } from '../dist/src/index.js';
import { callThreads } from '../dist/src/pool-internals.js';
import { randomTensor, sameBits } from './helpers/data.js';
import { posting } from './helpers/posting.js';
import { outputErrorRatio, referenceForward } from './helpers/reference.js';

let pool: Pool;
let mixed: Pool;
beforeAll(() => {
  pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
  mixed = new Pool({ threads: 3, inlineThreshold: 0, grainSize: 2000 });
});
afterAll(() => Promise.all([pool.close(), mixed.close()]));

describe('concurrency', () => {
  // Each call's tasks wait for each other at a barrier: they are queued back to back on a FIFO
  // queue and no call has more than the pool's threads, so every call's tasks start (README,
  // "How the work is split"), also when a grain gives the calls different numbers of them.
  it.each([
    ['on every thread of 2', () => pool],
    ['on 1-3 threads of 3 by their size (grainSize 2000)', () => mixed],
  ])('50 concurrent calls on different modules are all correct, %s', async (_name, poolOf) => {
    const pool = poolOf();
    const shapes = Array.from({ length: 50 }, (_, i) => [2 + (i % 5), 1 + (i % 7), 9 + i, 5]);
    let ratios: number[] = [];
    const sent = await posting(async () => {
      ratios = await Promise.all(shapes.map(async (shape, i) => {
        const C = shape[1];
        const dtype = i % 2 === 0 ? 'float32' as const : 'float64' as const;
        const x = randomTensor(shape, dtype, 1000 + i);
        const bn = new BatchNorm(C, { pool, dtype });
        bn.bias!.fill(i);
        const y = await bn.forward(x, shape);
        const ref = referenceForward(x, shape, { training: true, bias: bn.bias });
        return outputErrorRatio(y, x, shape, ref, bn.bias, dtype);
      }));
    });
    expect(ratios).toHaveLength(50);
    for (const r of ratios) expect(r).toBeLessThanOrEqual(1);
    expect(pool.memoryStats.liveBytes).toBe(0);
    // At most one task per thread each call takes (fewer where a small call has fewer work
    // items: test/grain-size.test.ts counts them exactly), and calls of several among them.
    const perCall = shapes.map((shape) => callThreads(pool, shape.reduce((a, b) => a * b)));
    if (pool === mixed) expect(new Set(perCall)).toEqual(new Set([1, 2, 3]));
    expect(sent.length).toBeLessThanOrEqual(perCall.reduce((a, b) => a + b));
    expect(sent.length).toBeGreaterThan(shapes.length + 20);
  });

  it('concurrent calls on one module apply their updates in call order', async () => {
    const shape = [4, 3, 20, 21];
    const batches = Array.from({ length: 6 }, (_, i) => randomTensor(shape, 'float32', 50 + i));
    // momentum null: each update depends on how many came before, so order shows in the bits.
    const sequential = new BatchNorm(3, { pool, momentum: null });
    const ys: (Float32Array | Float64Array)[] = [];
    for (const [i, x] of batches.entries()) {
      if (i === 4) sequential.eval();
      ys.push(await sequential.forward(x, shape));
      if (i === 4) sequential.train();
    }
    const concurrent = new BatchNorm(3, { pool, momentum: null });
    const pending = batches.map((x, i) => {
      if (i === 4) concurrent.eval();
      const p = concurrent.forward(x, shape);
      if (i === 4) concurrent.train();
      return p;
    });
    const got = await Promise.all(pending);
    for (let i = 0; i < batches.length; i++) expect(sameBits(got[i], ys[i])).toBe(true);
    expect(sameBits(concurrent.runningMean!, sequential.runningMean!)).toBe(true);
    expect(sameBits(concurrent.runningVar!, sequential.runningVar!)).toBe(true);
    expect(concurrent.numBatchesTracked).toBe(5);
  });

  it('2,000 calls with pool buffers do not grow the memory', async () => {
    const shape = [4, 8, 16, 16];
    const n = 4 * 8 * 16 * 16;
    const x = pool.alloc(n);
    x.set(randomTensor(shape, 'float32', 3));
    const out = pool.alloc(n);
    const bn = new BatchNorm(8, { pool });
    await bn.forward(x, shape, { out });
    const { byteLength, liveBytes } = pool.memoryStats;
    for (let i = 0; i < 2000; i++) {
      if (i === 1000) bn.eval();
      await bn.forward(x, shape, { out });
    }
    expect(pool.memoryStats.byteLength).toBe(byteLength);
    expect(pool.memoryStats.liveBytes).toBe(liveBytes);
    expect(bn.numBatchesTracked).toBe(1001);
    const ref = referenceForward(x, shape, { training: false, runningMean: bn.runningMean, runningVar: bn.runningVar });
    expect(outputErrorRatio(out, x, shape, ref, null, 'float32')).toBeLessThanOrEqual(1);
    pool.free(x);
    pool.free(out);
  });
});
