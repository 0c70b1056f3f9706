/**
 * `grainSize`: a call runs on at most ceil(sqrt(n / AUTO_GRAIN)) of its pool's threads by default
 * ('auto'), or on at most one per `grainSize` elements of input where it is a number
 * (src/pool-internals.ts, callThreads). Checked on the tasks each kind of call posts (piscina's
 * `run` wrapped: helpers/posting.ts), and on the outputs, which must have the same bits whatever
 * the number of threads a call took (README, "How the work is split") and match the float64
 * reference. What a call's threads decide besides (the waits' spin, the pipelined copies) is in
 * spare-core.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamFloor } from '../dist/src/floor.js';
import { AUTO_GRAIN, BatchNorm, ChannelStats, DEFAULT_GRAIN_SIZE, Pool } from '../dist/src/index.js';
import { callThreads } from '../dist/src/pool-internals.js';
import { permute, randomTensor, sameBits } from './helpers/data.js';
import { posting, type Sent } from './helpers/posting.js';
import { dxErrorRatio, outputErrorRatio, referenceBackward, referenceForward } from './helpers/reference.js';

describe('callThreads', () => {
  const ctx = { threads: 8, inlineThreshold: 1000, grainSize: 5000 };

  it('is one at or below the inline threshold, whatever the grain', () => {
    expect(callThreads(ctx, 1)).toBe(1);
    expect(callThreads(ctx, 1000)).toBe(1);
    expect(callThreads({ ...ctx, grainSize: 1 }, 1000)).toBe(1);
  });

  it('is one thread per grainSize elements, rounded up, at most the pool\'s threads', () => {
    expect(callThreads(ctx, 1001)).toBe(1);
    expect(callThreads(ctx, 5000)).toBe(1);
    expect(callThreads(ctx, 5001)).toBe(2);
    expect(callThreads(ctx, 15000)).toBe(3);
    expect(callThreads(ctx, 39999)).toBe(8);
    expect(callThreads(ctx, 1e9)).toBe(8);
    expect(callThreads({ ...ctx, grainSize: 1 }, 1001)).toBe(8);
  });

  it('is ceil(sqrt(n / AUTO_GRAIN)) threads at grainSize \'auto\', at most the pool\'s', () => {
    const auto = { threads: 16, inlineThreshold: 0, grainSize: 'auto' as const };
    expect(AUTO_GRAIN).toBe(65536);
    // t threads from just past (t - 1)² grains to t² grains.
    for (let t = 1; t <= 16; t++) {
      if (t > 1) expect(callThreads(auto, (t - 1) ** 2 * AUTO_GRAIN + 1), `past ${(t - 1) ** 2} grains`).toBe(t);
      expect(callThreads(auto, t * t * AUTO_GRAIN), `at ${t * t} grains`).toBe(t);
    }
    // The benchmark shapes on 16 threads: D inline below, E 8, C 13, B 14, A 16; and a 1 Mi call 4.
    expect([1 << 20, 4096 * 1024, 64 * 3 * 224 * 224, 256 * 256 * 14 * 14, 32 * 64 * 112 * 112].map((n) => callThreads(auto, n)))
      .toEqual([4, 8, 13, 14, 16]);
    expect(callThreads(auto, 1e12)).toBe(16);
    expect(callThreads({ ...auto, threads: 2 }, AUTO_GRAIN + 1)).toBe(2);
    expect(callThreads({ ...auto, inlineThreshold: 786432 }, 786432)).toBe(1);
  });
});

describe('a pool\'s grainSize', () => {
  it('defaults to \'auto\', and is given as an option', async () => {
    const byDefault = new Pool({ threads: 1 });
    const auto = new Pool({ threads: 1, grainSize: 'auto' });
    const given = new Pool({ threads: 1, grainSize: 12345 });
    try {
      expect(DEFAULT_GRAIN_SIZE).toBe('auto');
      expect(byDefault.grainSize).toBe('auto');
      expect(auto.grainSize).toBe('auto');
      expect(given.grainSize).toBe(12345);
    } finally {
      await Promise.all([byDefault.close(), auto.close(), given.close()]);
    }
  });

  it('by default, puts a call of at most 4 grains (AUTO_GRAIN each) on two of three workers, a larger one on three, a small one on one', async () => {
    const pool = new Pool({ threads: 3, inlineThreshold: 0 });
    try {
      const counts: number[] = [];
      const width = 4 * AUTO_GRAIN / (8 * 4 * 128);
      for (const shape of [[1, 1, 8, 64], [8, 4, 128, width], [8, 4, 128, width + 1]]) {
        const data = randomTensor(shape, 'float32', 43);
        const bn = new BatchNorm(shape[1], { pool });
        await bn.forward(data, shape);
        const sent = await posting(async () => { await bn.forward(data, shape); });
        counts.push(sent.length);
      }
      expect(counts).toEqual([1, 2, 3]);
    } finally {
      await pool.close();
    }
  });
});

describe('calls on a 4-thread pool', () => {
  const shape = [16, 8, 24, 24];
  const n = 16 * 8 * 24 * 24;
  const data = randomTensor(shape, 'float32', 41) as Float32Array;
  const dyData = randomTensor(shape, 'float32', 42) as Float32Array;
  // grainSize and the threads each call should take: all four, three, one.
  const grains: [number, number][] = [[1, 4], [Math.ceil(n / 3), 3], [n, 1]];
  const pools = new Map<number, Pool>();

  beforeAll(() => {
    for (const [grain] of grains) pools.set(grain, new Pool({ threads: 4, inlineThreshold: 0, grainSize: grain }));
  });
  afterAll(async () => {
    await Promise.all([...pools.values()].map((p) => p.close()));
  });

  /** The tasks of each step, by op, after one warm-up round of all of them. */
  async function tasksOf(pool: Pool, steps: Record<string, () => Promise<unknown>>): Promise<Record<string, Sent[]>> {
    for (const step of Object.values(steps)) await step();
    const tasks: Record<string, Sent[]> = {};
    await posting(async (sent) => {
      for (const [name, step] of Object.entries(steps)) {
        const from = sent.length;
        await step();
        tasks[name] = sent.slice(from);
      }
    });
    return tasks;
  }

  it('post one task per thread the grain allows, for every kind of call', async () => {
    for (const [grain, threads] of grains) {
      const pool = pools.get(grain)!;
      const x = pool.alloc(n);
      x.set(data);
      const out = pool.alloc(n);
      const bytes = pool.alloc(n, 'uint8');
      bytes.forEach((_, i, b) => { b[i] = (i * 37) % 256; });
      const bn = new BatchNorm(8, { pool });
      const evalBn = new BatchNorm(8, { pool }).eval();
      const last = new BatchNorm(8, { pool, layout: 'channels-last' });
      const tasks = await tasksOf(pool, {
        training: () => bn.forward(x, shape, { out }),
        backward: () => bn.backward(x, { out }),
        eval: () => evalBn.forward(x, shape, { out }),
        channelsLast: () => last.forward(x, [16, 24, 24, 8], { out }),
        rank2: () => new BatchNorm(64, { pool }).forward(x, [n / 64, 64], { out }),
        bytes: () => evalBn.forward(bytes, shape, { out }),
        bytesStats: () => ChannelStats.fromBatch(bytes, shape, { pool }),
        floor: () => streamFloor(pool, x, out),
      });
      for (const [name, sent] of Object.entries(tasks)) {
        expect(sent.length, `${name} at grainSize ${grain}`).toBe(threads);
      }
    }
  });

  it('give the same bits at every grain, and the float64 reference\'s values', async () => {
    const results = [];
    for (const [grain] of grains) {
      const pool = pools.get(grain)!;
      const x = pool.alloc(n);
      x.set(data);
      const dy = pool.alloc(n);
      dy.set(dyData);
      const weight = Float32Array.from({ length: 8 }, (_, c) => 0.5 + 0.25 * c);
      const bn = new BatchNorm(8, { pool, momentum: 0.3 });
      bn.weight!.set(weight);
      const y = Float32Array.from(await bn.forward(x, shape));
      const { dx } = await bn.backward(dy);
      const last = new BatchNorm(8, { pool, layout: 'channels-last' });
      const yLast = Float32Array.from(await last.forward(permute(data, shape), [16, 24, 24, 8]));
      results.push({ y, dx: Float32Array.from(dx), runningVar: Float32Array.from(bn.runningVar!), yLast });
    }
    for (const r of results.slice(1)) {
      for (const key of ['y', 'dx', 'runningVar', 'yLast'] as const) expect(sameBits(r[key], results[0][key]), key).toBe(true);
    }
    const weight = Float64Array.from({ length: 8 }, (_, c) => 0.5 + 0.25 * c);
    const ref = referenceForward(data, shape, { training: true, weight });
    expect(outputErrorRatio(results[0].y, data, shape, ref, null, 'float32')).toBeLessThanOrEqual(1);
    const yLast = permute(results[0].yLast, shape, true);
    expect(outputErrorRatio(yLast, data, shape, referenceForward(data, shape, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
    const invstd = Float64Array.from(ref.var, (v) => 1 / Math.sqrt(v + 1e-5));
    const grads = referenceBackward(data, dyData, shape, ref.mean, invstd, weight, true);
    expect(dxErrorRatio(results[0].dx, grads, dyData, data, shape, 'float32')).toBeLessThanOrEqual(1);
  });
});
