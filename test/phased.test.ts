/**
 * The `phased` split: inputs too large for the cache between the two passes, with too few channels
 * to share out whole, are done one group of channels at a time, with a barrier per group. The
 * planner's choice, then the results: against the float64 reference, and the same bits as the
 * other paths (fused at one thread, one barrier with the default cache budget), forward, running
 * statistics, ReLU and backward, both kernels and dtypes; hard data (a large offset with a tiny
 * spread, a constant channel, NaN in one channel); and an abort while a task waits at a group's
 * barrier.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, BatchNorm, batchNorm, DEFAULT_CACHE_BYTES, Pool } from '../dist/src/index.js';
import { phasesOf as enginePhases } from '../dist/src/engine.js';
import { planGrid, planPhases, shouldFuse } from '../dist/src/plan.js';
import { injectFault, poolInternals } from '../dist/src/pool-internals.js';
import { fillChannel, randomTensor, sameBits } from './helpers/data.js';
import { abortOnceDispatched, KERNELS } from './helpers/pools.js';
import { channelStats, dimsOf, maxRelativeError, outputErrorRatio, referenceForward } from './helpers/reference.js';

/** The channel groups the engine uses for a whole tensor in one chunk (null: fused or one barrier). */
function phasesOf(shape: number[], bpe: number, threads: number, cacheBytes: number): number[] | null {
  const { N, C, S } = dimsOf(shape);
  const grid = planGrid(N, C, S);
  if (shouldFuse(grid, C, true, threads)) return null;
  return planPhases(grid, C, bpe, threads, cacheBytes);
}

describe('planPhases', () => {
  it('gives one group of channels per cache budget when the input outgrows it', () => {
    // [64, 3, 224, 224] float32: 12.8 MB a channel, 38.5 MB in all, against 16 MiB.
    expect(phasesOf([64, 3, 224, 224], 4, 2, DEFAULT_CACHE_BYTES)).toEqual([0, 1, 2, 3]);
    // 5 channels of 4 MiB for 4 threads (not shared out whole): 4 fit a group, so 2 even groups.
    expect(phasesOf([16, 5, 256, 256], 4, 4, DEFAULT_CACHE_BYTES)).toEqual([0, 3, 5]);
    // One channel larger than the budget: a channel a group, for the overlap of the passes.
    expect(phasesOf([64, 3, 512, 512], 4, 2, DEFAULT_CACHE_BYTES)).toEqual([0, 1, 2, 3]);
    // Fused instead: 64 channels share out whole between 2 threads.
    expect(phasesOf([32, 64, 112, 112], 4, 2, 1 << 20)).toBeNull();
  });

  it('declines when one barrier is as good', () => {
    expect(phasesOf([16, 3, 64, 64], 4, 2, DEFAULT_CACHE_BYTES)).toBeNull(); // fits the budget
    expect(phasesOf([64, 1, 512, 512], 4, 2, 1 << 30)).toBeNull(); // one channel
    expect(phasesOf([3, 3, 224, 224], 4, 2, 1 << 20)).toBeNull(); // 3 row groups for 2 threads
    expect(phasesOf([4096, 3, 10], 4, 2, 1 << 10)).toBeNull(); // row mode, fewer channels than groups
    expect(phasesOf([4096, 1024], 4, 2, 1 << 20)).toBeNull(); // row mode, channels in lanes
  });

  it('gives row mode (short runs) four groups of channels when the input outgrows the budget', () => {
    expect(phasesOf([256, 256, 14, 14], 4, 2, DEFAULT_CACHE_BYTES)).toEqual([0, 64, 128, 192, 256]);
    expect(phasesOf([40, 5, 14, 14], 4, 2, 100_000)).toEqual([0, 1, 3, 4, 5]);
    expect(phasesOf([64, 128, 7, 7], 4, 2, DEFAULT_CACHE_BYTES)).toBeNull(); // 1.6 MB: fits
  });
});

describe('phases by default', () => {
  it('go to no call unless cacheBytes is given, and then to every training forward and backward that outgrows it', async () => {
    const given = new Pool({ threads: 2, cacheBytes: DEFAULT_CACHE_BYTES });
    const plain = new Pool({ threads: 2 });
    expect(plain.cacheBytes).toBe(DEFAULT_CACHE_BYTES);
    const backward = { dy: new Float32Array(0), mean: new Float64Array(0), invstd: null, mode: 'train' } as const;
    const of = (pool: Pool, shape: number[], bwd: boolean): number[] | null => {
      const { N, C, S } = dimsOf(shape);
      return enginePhases(poolInternals(pool), planGrid(N, C, S), { dtype: 'float32', backward: bwd ? backward : undefined }, C, 2);
    };
    // C (plane mode, 12.8 MB a channel): its forward goes a channel a group only with the option.
    expect(of(plain, [64, 3, 224, 224], false)).toBeNull();
    expect(of(given, [64, 3, 224, 224], false)).toEqual([0, 1, 2, 3]);
    // Its backward, and B's (row mode) forward and backward: likewise.
    expect(of(plain, [64, 3, 224, 224], true)).toBeNull();
    expect(of(given, [64, 3, 224, 224], true)).toEqual([0, 1, 2, 3]);
    expect(of(plain, [256, 256, 14, 14], false)).toBeNull();
    expect(of(given, [256, 256, 14, 14], false)).toEqual([0, 64, 128, 192, 256]);
    expect(of(plain, [256, 256, 14, 14], true)).toBeNull();
    expect(of(given, [256, 256, 14, 14], true)).toEqual([0, 64, 128, 192, 256]);
    await Promise.all([given.close(), plain.close()]);
  });
});

// Shapes that take the phased path with the budget given. Row mode (runs of 90 and 196, 16 and 14
// row groups, the last of one row; groups of 2 and of 1-2 channels). Plane mode: one row per block; 15-row blocks with a
// short last group (64 = 4 * 15 + 4); planes cut into stretches: 2 equal ones, 2 unequal (8193 and
// 8192), 3 unequal (13401, 13401, 13399). In float32, most of them go in a group of 2 channels and
// then 1, so that a phase's statistics pair with only some channels of the normalization before;
// [8, 5, 100, 101] in groups of 2, 1 and 2, so that the last phase reduces a channel that pairs
// with none (on 4 threads: 5 channels are too few to share fused, where 2 and 3 threads fuse).
const CASES: { shape: number[]; cacheBytes: number; threads?: number[] }[] = [
  { shape: [61, 8, 9, 10], cacheBytes: 100_000 },
  { shape: [40, 5, 14, 14], cacheBytes: 100_000 },
  { shape: [4, 3, 100, 101], cacheBytes: 400_000 },
  { shape: [64, 3, 32, 33], cacheBytes: 600_000 },
  { shape: [6, 3, 130, 130], cacheBytes: 900_000 },
  { shape: [4, 3, 113, 145], cacheBytes: 600_000 },
  { shape: [4, 3, 7, 5743], cacheBytes: 1_400_000 },
  { shape: [8, 5, 100, 101], cacheBytes: 800_000, threads: [4] },
];

for (const kernel of KERNELS) {
  describe(`phased split (${kernel} kernel)`, () => {
    const pools = new Map<string, Pool>();
    beforeAll(() => {
      pools.set('fused, 1 thread', new Pool({ threads: 1, inlineThreshold: 0, grainSize: 1, kernel }));
      pools.set('one barrier, 2 threads', new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel }));
    });
    afterAll(() => Promise.all([...pools.values()].map((p) => p.close())));

    for (const { shape, cacheBytes, threads = [2, 3] } of CASES) {
      for (const dtype of ['float32', 'float64'] as const) {
        it(`matches the reference and the other paths bit for bit: [${shape}], ${dtype}`, async () => {
          const bpe = dtype === 'float32' ? 4 : 8;
          const C = shape[1];
          const phased = threads
            .filter((t) => phasesOf(shape, bpe, t, cacheBytes) !== null)
            .map((t) => new Pool({ threads: t, inlineThreshold: 0, grainSize: 1, kernel, cacheBytes }));
          // The premise: at least the first pool takes the phased path, in more than one group.
          expect(phasesOf(shape, bpe, threads[0], cacheBytes)!.length).toBeGreaterThan(2);
          const { N, S } = dimsOf(shape);
          expect(shouldFuse(planGrid(N, C, S), C, true, threads[0])).toBe(false);
          try {
            const x = randomTensor(shape, dtype, shape[0] * 100 + C);
            const dy = randomTensor(shape, dtype, shape[0] * 100 + C + 1);
            const runs = [];
            for (const pool of [...pools.values(), ...phased]) {
              const bn = new BatchNorm(C, { pool, dtype, momentum: 0.3 });
              bn.weight!.set(Array.from({ length: C }, (_, c) => 0.5 + c));
              bn.bias!.set(Array.from({ length: C }, (_, c) => c - 1));
              await bn.forward(x, shape);
              const y = await bn.forward(x, shape);
              const grad = await bn.backward(dy);
              const relu = new BatchNorm(C, { pool, dtype, activation: 'relu' });
              const yRelu = await relu.forward(x, shape);
              const gradRelu = await relu.backward(dy);
              runs.push({ y, rm: bn.runningMean!, rv: bn.runningVar!, ...grad, yRelu, dxRelu: gradRelu.dx, weight: bn.weight!, bias: bn.bias! });
            }
            const first = runs[0];
            const ref = referenceForward(x, shape, { training: true, weight: first.weight, bias: first.bias });
            expect(outputErrorRatio(first.y, x, shape, ref, first.bias, dtype)).toBeLessThanOrEqual(1);
            for (const run of runs.slice(1)) {
              for (const key of ['y', 'rm', 'rv', 'dx', 'yRelu', 'dxRelu'] as const) {
                expect(sameBits(run[key], first[key]), key).toBe(true);
              }
              expect(sameBits(run.dWeight!, first.dWeight!)).toBe(true);
              expect(sameBits(run.dBias!, first.dBias!)).toBe(true);
            }
          } finally {
            await Promise.all(phased.map((p) => p.close()));
          }
        });
      }
    }
  });
}

for (const kernel of KERNELS) {
  describe(`phased split, hard data (${kernel} kernel)`, () => {
    // [8, 3, 128, 130]: planes cut into 2 stretches, 8 row groups; 532 KB a float32 channel, so a
    // 600 KB budget gives a group a channel.
    const shape = [8, 3, 128, 130];
    const S = 128 * 130;
    let pool: Pool;
    beforeAll(() => {
      pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, cacheBytes: 600_000 });
      expect(phasesOf(shape, 4, 2, 600_000)).toEqual([0, 1, 2, 3]);
    });
    afterAll(() => pool.close());

    it('float32 with mean 3000 and sd 0.5 keeps the variance within 1e-4', async () => {
      const x = randomTensor(shape, 'float32', 42, () => ({ offset: 3000, spread: 0.5 }));
      const r = await batchNorm(x, shape, { training: true, pool });
      const ref = channelStats(x, shape);
      expect(maxRelativeError(r.var, ref.var)).toBeLessThan(1e-4);
      expect(maxRelativeError(r.mean, ref.mean)).toBeLessThan(1e-9);
      expect(outputErrorRatio(r.y, x, shape, referenceForward(x, shape, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
    });

    it('a constant channel gives exactly bias; NaN in another stays in it', async () => {
      const x = randomTensor(shape, 'float32', 8);
      fillChannel(x, shape, 0, () => -17.25);
      const clean = x.slice();
      x[(5 * 3 + 2) * S + 77] = NaN;
      const bn = new BatchNorm(3, { pool });
      bn.bias!.set([0.5, -1, 2]);
      const cleanBn = new BatchNorm(3, { pool });
      cleanBn.bias!.set([0.5, -1, 2]);
      const y = await bn.forward(x, shape);
      const yClean = await cleanBn.forward(clean, shape);
      for (let n = 0; n < 8; n++) {
        for (let s = 0; s < S; s++) {
          expect(y[(n * 3) * S + s]).toBe(0.5);
          expect(y[(n * 3 + 1) * S + s]).toBe(yClean[(n * 3 + 1) * S + s]);
          expect(y[(n * 3 + 2) * S + s]).toBeNaN();
        }
      }
      expect(bn.runningVar![0]).toBeCloseTo(0.9, 6);
      expect(bn.runningVar![2]).toBeNaN();
      expect(bn.runningMean![1]).toBe(cleanBn.runningMean![1]);
    });
  });
}

describe('phased split, abort', () => {
  const cases = [['plane', [4, 3, 100, 101], 400_000], ['row', [61, 4, 9, 10], 40_000]] as const;
  for (const [mode, dims, cacheBytes] of cases) {
    it(`a task waiting at a group barrier gives up when the call is aborted; nothing changes (${mode} mode)`, async () => {
      const shape = [...dims];
      const C = shape[1];
      const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, cacheBytes });
      expect(phasesOf(shape, 4, 2, cacheBytes)).not.toBeNull();
      const x = randomTensor(shape, 'float32', 3);
      const bn = new BatchNorm(C, { pool });
      const ac = new AbortController();
      // One task stalls until the call is cancelled, so the other is certainly at the first barrier.
      injectFault(pool, { kind: 'stall' });
      const call = bn.forward(x, shape, { signal: ac.signal });
      await abortOnceDispatched(pool, ac, call);
      await expect(call).rejects.toBeInstanceOf(AbortError);
      expect(bn.numBatchesTracked).toBe(0);
      expect(Array.from(bn.runningMean!)).toEqual(new Array(C).fill(0));
      expect(pool.memoryStats.liveBytes).toBe(0);
      const y = await bn.forward(x, shape);
      expect(outputErrorRatio(y, x, shape, referenceForward(x, shape, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
      await pool.close();
    });
  }
});
