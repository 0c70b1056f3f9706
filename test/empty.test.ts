/**
 * Empty batches (a dimension of size 0), as PyTorch takes them: an empty output, running
 * statistics left as they were with the batch still counted (the onnx and keras conventions: NaN,
 * as their frameworks), gradients of 0, statistics of count 0; and a synced batch whose shard
 * holds no values.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError, BatchNorm, batchNorm, batchNormBackward, ChannelStats, type GradientSums, Pool, ShapeError, SingleValueError,
} from '../dist/src/index.js';
import { randomTensor, randomVector, sameBits } from './helpers/data.js';
import { expectRejection, stateOf } from './helpers/errors.js';
import { channelStats, maxRelativeError } from './helpers/reference.js';
import { rendezvous } from './helpers/sync.js';

const kernels = ['js', 'wasm'] as const;
const pools = new Map<string, Pool>();
beforeAll(() => {
  for (const kernel of kernels) pools.set(kernel, new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel }));
});
afterAll(() => Promise.all([...pools.values()].map((p) => p.close())));

/** Shapes of 3 channels holding no values, ranks 2 to 5, in each layout (channels at 1, or last). */
const EMPTY_SHAPES = {
  'channels-first': [[0, 3], [0, 3, 7], [5, 3, 0], [2, 3, 4, 0], [0, 3, 2, 2, 2], [2, 3, 1, 0, 5]],
  'channels-last': [[0, 3], [0, 7, 3], [5, 0, 3], [2, 4, 0, 3], [0, 2, 2, 2, 3], [2, 1, 0, 5, 3]],
} as const;

/** A channels-first or channels-last shape of 3 channels with values, for a module's first, real batch. */
function fullShape(layout: 'channels-first' | 'channels-last'): number[] {
  return layout === 'channels-first' ? [4, 3, 5, 3] : [4, 5, 3, 3];
}

/** The module's state, every bit of it, to compare before and after. */
const state = (bn: BatchNorm): string => JSON.stringify(stateOf(bn));

describe.each(kernels)('empty batches, %s kernel', (kernel) => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const layout of ['channels-first', 'channels-last'] as const) {
      it(`${dtype}, ${layout}: training counts the batch and changes no statistics; eval changes nothing; gradients are 0`, async () => {
        const pool = pools.get(kernel)!;
        const Ctor = dtype === 'float32' ? Float32Array : Float64Array;
        for (const shape of EMPTY_SHAPES[layout]) {
          const bn = new BatchNorm(3, { pool, dtype, layout });
          bn.weight!.set([0.5, -2, 3]);
          bn.bias!.set([0.25, 1, -1]);
          const first = fullShape(layout);
          await bn.forward(randomTensor(first, dtype, 11), first);
          const mean = Array.from(bn.runningMean!);
          const variance = Array.from(bn.runningVar!);
          expect(mean.every((m) => m !== 0)).toBe(true);

          const y = await bn.forward(new Ctor(0), shape);
          expect(y).toBeInstanceOf(Ctor);
          expect(y.length).toBe(0);
          expect(sameBits(bn.runningMean!, mean) && sameBits(bn.runningVar!, variance)).toBe(true);
          expect(bn.numBatchesTracked).toBe(2);
          const g = await bn.backward(new Ctor(0));
          expect(g.dx).toBeInstanceOf(Ctor);
          expect(g.dx.length).toBe(0);
          for (const sums of [g.dWeight!, g.dBias!]) {
            expect(sums).toBeInstanceOf(Ctor);
            expect(Array.from(sums)).toEqual([0, 0, 0]);
          }

          bn.eval();
          const before = state(bn);
          const out = new Ctor(0);
          expect(await bn.forward(new Ctor(0), shape, { out })).toBe(out);
          expect(state(bn)).toBe(before);
          const e = await bn.backward(new Ctor(0));
          expect(e.dx.length).toBe(0);
          expect(Array.from(e.dWeight!)).toEqual([0, 0, 0]);
        }
      });
    }
  }

  it('affine false: the gradients of an empty batch are dx alone, in training and in eval', async () => {
    const pool = pools.get(kernel)!;
    const bn = new BatchNorm(3, { pool, affine: false });
    for (const mode of ['train', 'eval'] as const) {
      if (mode === 'eval') bn.eval();
      await bn.forward(new Float32Array(0), [2, 3, 0]);
      const g = await bn.backward(new Float32Array(0));
      expect([g.dx.constructor.name, g.dx.length, g.dWeight, g.dBias]).toEqual(['Float32Array', 0, null, null]);
    }
    expect(bn.numBatchesTracked).toBe(1);
  });

  it('over more channels than a step takes at once (CHANNEL_SLICE): the same, in slices', async () => {
    const pool = pools.get(kernel)!;
    const C = (1 << 17) + 3;
    const bn = new BatchNorm(C, { pool });
    bn.runningMean!.set(randomVector(C, 'float32', 61, -1, 1));
    bn.runningVar!.set(randomVector(C, 'float32', 62, 0.5, 2));
    const [mean, variance] = [bn.runningMean!.slice(), bn.runningVar!.slice()];
    const y = await bn.forward(new Float32Array(0), [0, C]);
    expect(y.length).toBe(0);
    expect(bn.numBatchesTracked).toBe(1);
    expect(sameBits(bn.runningMean!, mean) && sameBits(bn.runningVar!, variance)).toBe(true);
    const dBias = new Float32Array(C).fill(7);
    const g = await bn.backward(new Float32Array(0), { dBias });
    expect(g.dBias).toBe(dBias);
    expect(dBias.every((v) => v === 0) && g.dWeight!.every((v) => v === 0)).toBe(true);
    bn.eval();
    const meanOut = new Float64Array(C).fill(7);
    const r = await batchNorm(new Float32Array(0), [3, C, 0], { runningMean: mean, runningVar: variance, meanOut, pool });
    expect(sameBits(r.mean, mean) && sameBits(r.var, variance)).toBe(true);
  });

  it("the onnx and keras conventions: an empty batch's NaN statistics reach their running statistics, as in their frameworks", async () => {
    const pool = pools.get(kernel)!;
    for (const convention of ['onnx', 'keras'] as const) {
      for (const layout of ['channels-first', 'channels-last'] as const) {
        const bn = new BatchNorm(2, { pool, convention, layout });
        const shape = layout === 'channels-first' ? [5, 2, 3] : [5, 3, 2];
        await bn.forward(randomTensor(shape, 'float32', 81), shape);
        expect([...bn.runningMean!, ...bn.runningVar!].some(Number.isNaN)).toBe(false);
        expect((await bn.forward(new Float32Array(0), layout === 'channels-first' ? [0, 2, 3] : [0, 3, 2])).length).toBe(0);
        expect([...bn.runningMean!, ...bn.runningVar!].every(Number.isNaN)).toBe(true);
        expect(bn.numBatchesTracked).toBe(2);
      }
    }
  });

  it('momentum null: the empty batch counts in the cumulative average, as in PyTorch', async () => {
    const pool = pools.get(kernel)!;
    const shape = [6, 3, 4];
    const x1 = randomTensor(shape, 'float64', 21);
    const x2 = randomTensor(shape, 'float64', 22).map((v) => 2 * v + 5);
    const bn = new BatchNorm(3, { pool, dtype: 'float64', momentum: null });
    await bn.forward(x1, shape);
    await bn.forward(new Float64Array(0), [0, 3, 4]);
    await bn.forward(x2, shape);
    expect(bn.numBatchesTracked).toBe(3);
    // Factors 1, then none for the empty batch (counted: 2), then 1/3.
    const [s1, s2] = [channelStats(x1, shape), channelStats(x2, shape)];
    const m = shape[0] * shape[2];
    const wantMean = s1.mean.map((v, c) => (2 / 3) * v + (1 / 3) * s2.mean[c]);
    const wantVar = s1.var.map((v, c) => ((2 / 3) * v + (1 / 3) * s2.var[c]) * m / (m - 1));
    expect(maxRelativeError(bn.runningMean!, wantMean)).toBeLessThan(1e-13);
    expect(maxRelativeError(bn.runningVar!, wantVar)).toBeLessThan(1e-13);
  });

  it('functional: training gives NaN statistics of count 0 and leaves the running buffers; eval gives them back', async () => {
    const pool = pools.get(kernel)!;
    const runningMean = randomVector(3, 'float32', 31, -1, 1) as Float32Array;
    const runningVar = randomVector(3, 'float32', 32, 0.5, 2) as Float32Array;
    const [mean0, var0] = [runningMean.slice(), runningVar.slice()];
    const meanOut = new Float64Array(3).fill(7);
    const r = await batchNorm(new Float32Array(0), [0, 3, 5], { training: true, runningMean, runningVar, meanOut, pool });
    expect(r.y.length).toBe(0);
    expect(r.count).toBe(0);
    expect(r.mean).toBe(meanOut);
    expect([...r.mean, ...r.var].every(Number.isNaN)).toBe(true);
    expect(sameBits(runningMean, mean0) && sameBits(runningVar, var0)).toBe(true);

    const e = await batchNorm(new Float32Array(0), [0, 5, 3], { layout: 'channels-last', runningMean, runningVar, pool });
    expect(e.count).toBe(0);
    expect(sameBits(e.mean, mean0) && sameBits(e.var, var0)).toBe(true);

    const dWeight = new Float64Array(3).fill(7);
    const g = await batchNormBackward(new Float32Array(0), new Float32Array(0), [2, 3, 0], {
      mean: Float64Array.of(1, 2, 3), var: Float64Array.of(1, 1, 1), eps: 1e-5, dWeight, pool,
    });
    expect(g.dx.length).toBe(0);
    expect(g.dWeight).toBe(dWeight);
    expect([...g.dWeight, ...g.dBias]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('8-bit eval of no pixels: an empty float32 output, in either layout', async () => {
    const pool = pools.get(kernel)!;
    const bn = new BatchNorm(3, { pool, layout: 'channels-last' });
    bn.runningMean!.set([100, 120, 140]);
    bn.eval();
    const y = await bn.forward(new Uint8Array(0), [0, 8, 8, 3]);
    expect(y).toBeInstanceOf(Float32Array);
    expect(y.length).toBe(0);
    const r = await batchNorm(Buffer.alloc(0), [0, 8, 8, 3], {
      layout: 'channels-last', outLayout: 'channels-first', runningMean: bn.runningMean!, runningVar: bn.runningVar!, pool,
    });
    expect(r.y.length).toBe(0);
    expect(Array.from(r.mean)).toEqual([100, 120, 140]);
  });
});

describe('ChannelStats of an empty batch', () => {
  it('has count 0, a stored mean 0 and m2 0, mean() and variance() NaN, and merges as nothing', async () => {
    const pool = pools.get('wasm')!;
    const shape = [5, 3, 7];
    const x = randomTensor(shape, 'float32', 41);
    const full = await ChannelStats.fromBatch(x, shape, { pool });
    const empties = [
      await ChannelStats.fromBatch(new Float32Array(0), [0, 3, 7], { pool }),
      await ChannelStats.fromBatch(new Float64Array(0), [5, 0, 3], { layout: 'channels-last', pool }),
      await ChannelStats.fromBatch(new Uint8Array(0), [0, 3, 4, 4], { pool }),
      await ChannelStats.fromBatch(new Uint8Array(0), [2, 0, 4, 3], { layout: 'channels-last', pool }),
    ];
    for (const empty of empties) {
      expect(empty.toJSON()).toEqual({ count: [0, 0, 0], mean: [0, 0, 0], m2: [0, 0, 0] });
      expect([Array.from(empty.mean()), Array.from(empty.variance())]).toEqual([[NaN, NaN, NaN], [NaN, NaN, NaN]]);
      expect(empty.merge(full).toJSON()).toEqual(full.toJSON());
      expect(full.merge(empty).toJSON()).toEqual(full.toJSON());
    }
  });
});

describe('a synced batch with an empty shard', () => {
  it.each(kernels)('%s kernel: the empty shard takes part in both all-reduces and keeps the same running statistics', async (kernel) => {
    const pool = pools.get(kernel)!;
    const shape = [6, 3, 5, 4];
    const x = randomTensor(shape, 'float32', 51) as Float32Array;
    const dy = randomTensor(shape, 'float32', 52) as Float32Array;
    const make = (): BatchNorm => {
      const bn = new BatchNorm(3, { pool });
      bn.weight!.set([1.5, -0.5, 2]);
      return bn;
    };
    const [full, empty] = [make(), make()];
    const seen: number[][] = [];
    const reduceStats = rendezvous<ChannelStats>((parts) => parts[0].merge(parts[1]));
    const reduceGrads = rendezvous<GradientSums>((parts) => {
      seen.push(...parts.map((p) => Array.from(p.sumDy)));
      return {
        sumDy: Float64Array.from(parts[0].sumDy, (v, c) => v + parts[1].sumDy[c]),
        sumDyXhat: Float64Array.from(parts[0].sumDyXhat, (v, c) => v + parts[1].sumDyXhat[c]),
      };
    });
    const [y, yEmpty] = await Promise.all([
      full.forward(x, shape, { reduceStats }), empty.forward(new Float32Array(0), [0, 3, 5, 4], { reduceStats }),
    ]);
    const [g, gEmpty] = await Promise.all([
      full.backward(dy, { reduceGrads }), empty.backward(new Float32Array(0), { reduceGrads }),
    ]);

    const whole = make();
    const yWhole = await whole.forward(x, shape);
    const gWhole = await whole.backward(dy);
    expect(yEmpty.length).toBe(0);
    expect(maxRelativeError(y, yWhole, 1e-2)).toBeLessThan(1e-5);
    expect(maxRelativeError(g.dx, gWhole.dx, 1e-2)).toBeLessThan(1e-5);
    // Both shards apply the merged statistics: the same running statistics, those of the whole batch.
    expect(sameBits(empty.runningMean!, full.runningMean!) && sameBits(empty.runningVar!, full.runningVar!)).toBe(true);
    expect(maxRelativeError(full.runningMean!, whole.runningMean!)).toBeLessThan(1e-6);
    expect(maxRelativeError(full.runningVar!, whole.runningVar!)).toBeLessThan(1e-6);
    expect([full.numBatchesTracked, empty.numBatchesTracked]).toEqual([1, 1]);
    // The empty shard sent sums of 0 and keeps parameter gradients of 0.
    expect(seen.find((sums) => sums.every((v) => v === 0))).toEqual([0, 0, 0]);
    expect(gEmpty.dx.length).toBe(0);
    expect([...gEmpty.dWeight!, ...gEmpty.dBias!]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(maxRelativeError(g.dBias!, gWhole.dBias!)).toBeLessThan(1e-6);
  }, 15_000); // a shard that skipped an all-reduce would leave the other waiting

  it('every shard empty: an empty batch, counted, with NaN statistics and the running ones left', async () => {
    const pool = pools.get('wasm')!;
    const make = (): BatchNorm => new BatchNorm(3, { pool, dtype: 'float64' });
    const shards = [make(), make()];
    for (const bn of shards) bn.runningMean!.set([0.5, -1, 2]);
    const reduceStats = rendezvous<ChannelStats>((parts) => parts[0].merge(parts[1]));
    const ys = await Promise.all(shards.map((bn) => bn.forward(new Float64Array(0), [0, 3, 2], { reduceStats })));
    const reduceGrads = rendezvous<GradientSums>((parts) => parts[0]);
    const gs = await Promise.all(shards.map((bn) => bn.backward(new Float64Array(0), { reduceGrads })));
    for (const [i, bn] of shards.entries()) {
      expect(ys[i].length).toBe(0);
      expect(bn.numBatchesTracked).toBe(1);
      expect(Array.from(bn.runningMean!)).toEqual([0.5, -1, 2]);
      expect(Array.from(bn.runningVar!)).toEqual([1, 1, 1]);
      expect([...gs[i].dWeight!, ...gs[i].dBias!]).toEqual([0, 0, 0, 0, 0, 0]);
    }
    const r = await batchNorm(new Float64Array(0), [0, 3], { training: true, pool, reduceStats: (local) => local });
    expect(r.count).toBe(0);
    expect([...r.mean, ...r.var].every(Number.isNaN)).toBe(true);
  });

  it('refuses an answer that counts fewer values than this shard holds, changing nothing', async () => {
    const pool = pools.get('wasm')!;
    const bn = new BatchNorm(3, { pool });
    const before = state(bn);
    const none = new ChannelStats([0, 0, 0], [0, 0, 0], [0, 0, 0]);
    await expectRejection(
      bn.forward(randomTensor([4, 3, 5], 'float32', 71), [4, 3, 5], { reduceStats: () => none }),
      ArgumentError, 'ERR_BNPOOL_ARG', 'options.reduceStats', 'at least its 20 values per channel', 'got 0',
    );
    const half = new ChannelStats([0.5, 0.5, 0.5], [0, 0, 0], [0, 0, 0]);
    await expectRejection(
      bn.forward(new Float32Array(0), [0, 3], { reduceStats: () => half }), SingleValueError, 'ERR_BNPOOL_SINGLE_VALUE', 'got 0.5 over every shard',
    );
    expect(state(bn)).toBe(before);
  });

  it('refuses a merged count of 1 (an empty shard beside a shard of one value per channel), changing nothing', async () => {
    const pool = pools.get('wasm')!;
    const bn = new BatchNorm(3, { pool });
    const before = state(bn);
    const one = await ChannelStats.fromBatch(Float32Array.of(1, 2, 3), [1, 3], { pool });
    await expectRejection(
      bn.forward(new Float32Array(0), [0, 3], { reduceStats: (local) => local.merge(one) }),
      SingleValueError, 'ERR_BNPOOL_SINGLE_VALUE', 'got 1 over every shard',
    );
    expect(state(bn)).toBe(before);
  });
});

describe('shapes with a 0', () => {
  it('refuse 0 channels and negative dimensions; an unsynced batch of one value per channel is still refused', async () => {
    const pool = pools.get('wasm')!;
    await expectRejection(batchNorm(new Float32Array(0), [4, 0, 2], { training: true, pool }), ShapeError, 'ERR_BNPOOL_SHAPE',
      'shape[1]', 'positive integer (the channels)', 'got 0');
    await expectRejection(batchNorm(new Float32Array(0), [4, 2, 0], { training: true, layout: 'channels-last', pool }), ShapeError,
      'ERR_BNPOOL_SHAPE', 'shape[2]', 'positive integer (the channels)');
    await expectRejection(ChannelStats.fromBatch(new Float32Array(0), [-1, 2], { pool }), ShapeError, 'ERR_BNPOOL_SHAPE',
      'shape[0]', 'non-negative integer', '-1');
    const bn = new BatchNorm(2, { pool });
    await expectRejection(bn.forward(Float32Array.of(1, 2), [1, 2, 1]), SingleValueError, 'ERR_BNPOOL_SINGLE_VALUE', '[1, 2, 1]');
    expect(bn.numBatchesTracked).toBe(0);
  });

  it('pool.alloc(0) gives an empty array of each type, for an empty batch, freed as any other; a negative or fractional length is refused', async () => {
    const pool = pools.get('wasm')!;
    const bn = new BatchNorm(3, { pool });
    const [x, out] = [pool.alloc(0), pool.alloc(0)];
    expect([x.length, out.length]).toEqual([0, 0]);
    const pending = bn.forward(x, [0, 3, 4], { out });
    // As any array a call uses: not to be freed until it settles.
    expect(() => pool.free(out)).toThrow(/in use by a call in flight/);
    expect(await pending).toBe(out);
    expect(bn.numBatchesTracked).toBe(1);
    const pixels = pool.alloc(0, 'uint8');
    const wide = pool.alloc(0, 'float64');
    expect([pixels, wide].map((a) => [a.constructor.name, a.length])).toEqual([['Uint8Array', 0], ['Float64Array', 0]]);
    for (const a of [x, out, pixels, wide]) pool.free(a);
    expect(() => pool.free(x)).toThrow(/live array from this pool's alloc/);
    for (const bad of [-1, 1.5, Number.NaN]) {
      expect(() => pool.alloc(bad)).toThrow(expect.objectContaining({ code: 'ERR_BNPOOL_ARG', message: expect.stringContaining('length must be a non-negative integer') }));
    }
  });

  it('an aborted signal refuses an empty call too, changing nothing', async () => {
    const pool = pools.get('wasm')!;
    const bn = new BatchNorm(3, { pool });
    const ac = new AbortController();
    ac.abort();
    await expect(bn.forward(new Float32Array(0), [0, 3], { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(bn.numBatchesTracked).toBe(0);
  });
});
