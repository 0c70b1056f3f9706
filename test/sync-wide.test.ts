/**
 * SyncBatchNorm over many channels: where a call's per-channel arrays pass 4 MiB (over 512K
 * channels), a synced forward lets the event loop turn between its per-channel steps
 * (channelsTurn), and still normalizes with the merged statistics, bit for bit (sync.test.ts has
 * the hooks themselves).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, ChannelStats, Pool } from '../dist/src/index.js';
import { detached, randomTensor, randomVector, sameBits } from './helpers/data.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0 }); });
afterAll(() => pool.close());

describe('reduceStats', () => {
  it('over 512K channels (turns of the event loop between its steps) it normalizes with the merged statistics, bit for bit', async () => {
    // Per-channel arrays of more than 4 MiB: the statistics' copies and the hook's answer go
    // between turns of the event loop (channelsTurn), and the variance goes onto the pool from m2.
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

  describe('over 512K channels, on an inline pool', () => {
    // Inline, with x and out on the pool: no worker and no copy, so every turn a call takes is one
    // of its steps' (channelsTurn), and the first turn after a hook is the call's own.
    let inline: Pool;
    beforeAll(() => { inline = new Pool({ threads: 1, inlineThreshold: 1 << 21 }); });
    afterAll(() => inline.close());

    it('lets the event loop turn between its per-channel steps; at 500,000 channels it takes no turn', async () => {
      // The count of turns does not depend on timing.
      const turns: number[] = [];
      for (const C of [500_000, 600_001]) {
        const x = inline.alloc(2 * C, 'float64');
        x.set(randomTensor([2, C], 'float64', 31));
        const out = inline.alloc(2 * C, 'float64');
        const bn = new BatchNorm(C, { pool: inline, dtype: 'float64' });
        let ticks = 0;
        let running = true;
        const tick = (): void => {
          ticks++;
          if (running) setImmediate(tick);
        };
        setImmediate(tick);
        await bn.forward(x, [2, C], { out, reduceStats: (local) => local });
        running = false;
        turns.push(ticks);
        expect(bn.numBatchesTracked).toBe(1);
        inline.free(x);
        inline.free(out);
      }
      expect(turns[0]).toBe(0);
      expect(turns[1]).toBeGreaterThanOrEqual(4);
    });

    it('the answer\'s count or m2 transferred during the turn after the hook: the same bits, or an ArgumentError changing nothing', async () => {
      // The caller owns the ChannelStats its hook returns and may transfer its arrays while the
      // call takes its turns.
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
      const want = (await plain.y).slice();
      const counted = run('count');
      expect(sameBits(await counted.y, want)).toBe(true);
      expect(sameBits(counted.bn.runningVar!, plain.bn.runningVar!)).toBe(true);
      expect(counted.bn.numBatchesTracked).toBe(1);
      const summed = run('m2');
      await expect(summed.y).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG', message: expect.stringMatching(/the merged m2 must keep its 600001 values/) });
      expect(summed.bn.numBatchesTracked).toBe(0);
      expect(summed.bn.runningVar!.every((v) => v === 1)).toBe(true);
      inline.free(x);
    });
  });
});
