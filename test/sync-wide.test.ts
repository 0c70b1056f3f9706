/**
 * SyncBatchNorm over many channels: where a call's per-channel arrays pass CHANNEL_SLICE channels
 * (1 MiB of float64), a synced forward lets the event loop turn within each of its per-channel
 * steps (inChannelSlices), and still normalizes with the merged statistics, bit for bit
 * (sync.test.ts has the hooks themselves).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_SLICE, FRESH_SLICE } from '../dist/src/channels.js';
import { BatchNorm, batchNorm, batchNormBackward, ChannelStats, type GradientSums, Pool } from '../dist/src/index.js';
import { detached, randomTensor, randomVector, sameBits } from './helpers/data.js';
import { maxRelativeError } from './helpers/reference.js';
import { turnsOf } from './helpers/turns.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

describe('reduceStats', () => {
  it('over 600K channels (turns of the event loop between and within its steps) it normalizes with the merged statistics, bit for bit', async () => {
    // Per-channel arrays of more than 1 MiB: the statistics' copies and the hook's answer go
    // between turns of the event loop, and the variance goes onto the pool from m2.
    const C = 600_001;
    const shape = [2, C];
    const offset = (c: number): { offset: number; spread: number } => ({ offset: (c % 7) - 3 + 1000 * (c % 2), spread: 0.5 + (c % 5) / 4 });
    const x = randomTensor(shape, 'float64', 21, offset) as Float64Array;
    const other = randomTensor([3, C], 'float64', 22, offset) as Float64Array;
    const bn = new BatchNorm(C, { pool, dtype: 'float64', momentum: 0.25 });
    bn.weight!.set(randomVector(C, 'float64', 23, 0.5, 2));
    bn.bias!.set(randomVector(C, 'float64', 24, -1, 1));
    const otherStats = await ChannelStats.fromBatch(other, [3, C], { pool });
    let local: ChannelStats | null = null;
    let merged: ChannelStats | null = null;
    const y = await bn.forward(x, shape, {
      reduceStats: (stats) => {
        local = stats;
        merged = stats.merge(otherStats);
        return merged;
      },
    });
    // The statistics handed to the hook are this shard's, as fromBatch makes them.
    const own = await ChannelStats.fromBatch(x, shape, { pool });
    expect(sameBits(local!.count, own.count) && sameBits(local!.mean(), own.mean()) && sameBits(local!.m2, own.m2)).toBe(true);
    expect(local!.count[0]).toBe(2);
    // The output: an eval forward with the merged mean and biased variance as its running statistics.
    const m = merged!.mean();
    const v = merged!.variance();
    const evalBn = new BatchNorm(C, { pool, dtype: 'float64' }).eval();
    evalBn.weight!.set(bn.weight!);
    evalBn.bias!.set(bn.bias!);
    evalBn.runningMean!.set(m);
    evalBn.runningVar!.set(v);
    expect(sameBits(y, await evalBn.forward(x, shape))).toBe(true);
    // The running update uses the merged statistics and count (5 values a channel), as
    // runningStatsUpdate computes it from running mean 0 and variance 1.
    expect(bn.numBatchesTracked).toBe(1);
    expect(sameBits(bn.runningMean!, m.map((mean) => 0.75 * 0 + 0.25 * mean))).toBe(true);
    expect(sameBits(bn.runningVar!, v.map((variance) => 0.75 * 1 + 0.25 * variance * (5 / 4)))).toBe(true);
  });

  describe('over CHANNEL_SLICE channels, on an inline pool', () => {
    // Inline, with x and out on the pool: no worker and no copy, so every turn a call takes is one
    // of its per-channel steps', and the first turn after a hook is the call's own.
    let inline: Pool;
    beforeAll(() => { inline = new Pool({ threads: 1, inlineThreshold: 1 << 21 }); });
    afterAll(() => inline.close());
    /** A random float64 tensor of `shape` (seed `seed`) on the inline pool. */
    const onPool = (shape: number[], seed: number): Float64Array => {
      const a = inline.alloc(shape[0] * shape[1], 'float64');
      a.set(randomTensor(shape, 'float64', seed));
      return a;
    };

    it('lets the event loop turn between the slices of each of its per-channel steps; at CHANNEL_SLICE channels it takes no turn', async () => {
      // The count of turns does not depend on timing.
      expect(CHANNEL_SLICE).toBe(131_072);
      const sliced = 3 * CHANNEL_SLICE + 1;
      const turns: number[] = [];
      for (const C of [CHANNEL_SLICE, sliced]) {
        const x = inline.alloc(2 * C, 'float64');
        x.set(randomTensor([2, C], 'float64', 31));
        const out = inline.alloc(2 * C, 'float64');
        const bn = new BatchNorm(C, { pool: inline, dtype: 'float64' });
        const { turns: ticks } = await turnsOf(() => bn.forward(x, [2, C], { out, reduceStats: (local) => local }));
        turns.push(ticks);
        expect(bn.numBatchesTracked).toBe(1);
        inline.free(x);
        inline.free(out);
      }
      expect(turns[0]).toBe(0);
      // A turn before each slice of its per-channel steps, four of CHANNEL_SLICE each (thirteen
      // of FRESH_SLICE where a step writes new arrays: at least four): five for the local
      // statistics (their mean, variance and low parts copied off the pool, their counts, and m2
      // from the variance), the check of the answer's counts, the puts onto the pool (weight,
      // bias, the merged mean and variance), the copies of the mean and variance the module
      // keeps, and the running update.
      expect(turns[1]).toBeGreaterThanOrEqual((5 + 1 + 1 + 2 + 1) * 4);
    });

    it('a synced backward over CHANNEL_SLICE channels hands the hook its sums whole, copied in slices between turns', async () => {
      const C = 3 * CHANNEL_SLICE + 1;
      // Three rows: with two, dx is 0 but for rounding (x̂ is ±1 in every channel).
      const shape = [3, C];
      // On the pool, with dx into pool arrays: no copy of the call's own takes a turn.
      const x = onPool(shape, 51);
      const dy = onPool(shape, 52);
      const weight = randomVector(C, 'float64', 53, 0.5, 2) as Float64Array;
      const fwd = await batchNorm(x, shape, { training: true, weight, pool: inline, out: inline.alloc(3 * C, 'float64') });
      const opts = { weight, mean: fwd.mean, var: fwd.var, pool: inline };
      const plain = await batchNormBackward(x, dy, shape, { ...opts, out: inline.alloc(3 * C, 'float64') });
      let local: GradientSums | null = null;
      const { value: synced, turns: ticks } = await turnsOf(() => batchNormBackward(x, dy, shape, {
        ...opts, out: inline.alloc(3 * C, 'float64'), count: 3, reduceGrads: (sums) => { local = sums; return sums; },
      }));
      // Σdy and Σdy·x̂ as the unsynced backward's dBias and dWeight, every value.
      expect(sameBits(local!.sumDy, plain.dBias!)).toBe(true);
      expect(sameBits(local!.sumDyXhat, plain.dWeight!)).toBe(true);
      expect(sameBits(synced.dBias!, plain.dBias!)).toBe(true);
      expect(sameBits(synced.dWeight!, plain.dWeight!)).toBe(true);
      // dx from the same sums along another rounding path (reduceGradients rewrites its coefficients).
      expect(maxRelativeError(synced.dx, plain.dx, 1e-3)).toBeLessThan(1e-10);
      // A turn before each slice: the copies of the two sums into new arrays (FRESH_SLICE a slice)
      // and the rewrite of the dx coefficients from the answer (CHANNEL_SLICE a slice).
      expect(ticks).toBeGreaterThanOrEqual(2 * Math.ceil(C / FRESH_SLICE) + Math.ceil(C / CHANNEL_SLICE));
      for (const a of [x, dy, fwd.y, plain.dx, synced.dx]) inline.free(a);
    });

    it("the answer's sums detached during the turns of the rewrite that reads them: an ArgumentError, and no dx written", async () => {
      // The caller owns the arrays its hook answers with and may transfer one while the call takes
      // its turns: the rewrite of the dx coefficients checks both whole before each slice.
      const C = 3 * CHANNEL_SLICE + 1;
      const shape = [3, C];
      const x = onPool(shape, 61);
      const dy = onPool(shape, 62);
      const fwd = await batchNorm(x, shape, { training: true, pool: inline });
      const out = inline.alloc(3 * C, 'float64');
      for (const key of ['sumDy', 'sumDyXhat'] as const) {
        out.fill(NaN);
        const call = batchNormBackward(x, dy, shape, {
          mean: fwd.mean, var: fwd.var, pool: inline, out, count: 3,
          reduceGrads: (sums) => {
            const answer = { sumDy: Float64Array.from(sums.sumDy), sumDyXhat: Float64Array.from(sums.sumDyXhat) };
            // After the hook, before the rewrite's first slice.
            setImmediate(() => detached(answer[key]));
            return answer;
          },
        });
        await expect(call).rejects.toMatchObject({
          code: 'ERR_BNPOOL_ARG',
          message: `options.reduceGrads(...).${key} must keep its ${C} values while a call uses it; its buffer was detached or resized, and it now has 0`,
        });
        expect(out.every(Number.isNaN)).toBe(true);
      }
      // The same call with an answer kept whole writes every dx.
      const answered = await batchNormBackward(x, dy, shape, { mean: fwd.mean, var: fwd.var, pool: inline, out, count: 3, reduceGrads: (sums) => sums });
      expect(answered.dx.some(Number.isNaN)).toBe(false);
      for (const a of [x, dy, out]) inline.free(a);
    });

    it('the answer\'s count or m2 transferred during the turns after the hook: an ArgumentError that changes nothing', async () => {
      // The caller owns the ChannelStats its hook returns and may transfer its arrays while the
      // call takes its turns (checking that every channel has the same count takes three slices).
      const C = 600_001;
      const shape = [2, C];
      const x = inline.alloc(2 * C, 'float64');
      x.set(randomTensor(shape, 'float64', 41));
      const run = (transfer: 'count' | 'm2' | null): { bn: BatchNorm; y: Promise<Float64Array> } => {
        const bn = new BatchNorm(C, { pool: inline, dtype: 'float64' });
        const y = bn.forward(x, shape, {
          reduceStats: (local) => {
            const answer = local.merge(local);
            if (transfer !== null) setImmediate(() => detached(answer[transfer]));
            return answer;
          },
        }) as Promise<Float64Array>;
        return { bn, y };
      };
      const plain = run(null);
      await plain.y;
      expect(plain.bn.numBatchesTracked).toBe(1);
      for (const key of ['count', 'm2'] as const) {
        const { bn, y } = run(key);
        await expect(y).rejects.toMatchObject({
          code: 'ERR_BNPOOL_ARG', message: expect.stringMatching(new RegExp(`result's ${key} must hold 600001 values, one a channel; its buffer was detached`)),
        });
        expect(bn.numBatchesTracked).toBe(0);
        expect(bn.runningVar!.every((v) => v === 1)).toBe(true);
      }
      inline.free(x);
    });
  });
});
