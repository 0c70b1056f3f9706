/** Mergeable statistics and the reduceStats hook (SyncBatchNorm over any transport). */
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, BatchNorm, ChannelStats, Pool } from '../dist/src/index.js';
import { randomTensor } from './helpers/data.js';
import { channelStats, maxRelativeError } from './helpers/reference.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0 }); });
afterAll(() => pool.close());

/** The first `rows` rows (along N) of a channels-first tensor, and the rest. */
function splitRows(x: Float64Array, shape: number[], rows: number): [Float64Array, Float64Array] {
  const per = x.length / shape[0];
  return [x.slice(0, rows * per), x.slice(rows * per)];
}

describe('ChannelStats', () => {
  it('fromBatch gives count, mean and m2 of each channel', async () => {
    const shape = [6, 4, 9, 7];
    const x = randomTensor(shape, 'float64', 1) as Float64Array;
    const s = await ChannelStats.fromBatch(x, shape, { pool });
    const ref = channelStats(x, shape);
    expect(Array.from(s.count)).toEqual([378, 378, 378, 378]);
    expect(maxRelativeError(s.mean(), ref.mean)).toBeLessThan(1e-12);
    expect(maxRelativeError(s.variance(), ref.var)).toBeLessThan(1e-12);
    expect(maxRelativeError(s.variance({ ddof: 1 }), ref.var.map((v) => v * 378 / 377))).toBeLessThan(1e-12);
  });

  it('merges shards into the statistics of the whole batch (Chan et al.)', async () => {
    const shape = [10, 3, 11, 5];
    const x = randomTensor(shape, 'float64', 2) as Float64Array;
    const [a, b] = splitRows(x, shape, 3);
    const sa = await ChannelStats.fromBatch(a, [3, 3, 11, 5], { pool });
    const sb = await ChannelStats.fromBatch(b, [7, 3, 11, 5], { pool });
    const all = sa.merge(sb);
    const ref = channelStats(x, shape);
    expect(Array.from(all.count)).toEqual([550, 550, 550]);
    expect(maxRelativeError(all.mean(), ref.mean)).toBeLessThan(1e-12);
    expect(maxRelativeError(all.variance(), ref.var)).toBeLessThan(1e-12);
    // Merging with empty statistics changes nothing.
    const empty = new ChannelStats([0, 0, 0], [0, 0, 0], [0, 0, 0]);
    expect(Array.from(empty.merge(all).mean())).toEqual(Array.from(all.mean()));
    expect(Array.from(all.merge(empty).m2)).toEqual(Array.from(all.m2));
  });

  it('merges an infinite mean as a sum would: +Inf stays +Inf, +Inf with -Inf is NaN', () => {
    const a = new ChannelStats([4, 4, 4], [Infinity, Infinity, 1], [NaN, NaN, 2]);
    const b = new ChannelStats([6, 6, 6], [2, -Infinity, 3], [1, NaN, 1]);
    const ab = a.merge(b).mean();
    const ba = b.merge(a).mean();
    expect(ab[0]).toBe(Infinity);
    expect(ba[0]).toBe(Infinity);
    expect(ab[1]).toBeNaN();
    expect(ab[2]).toBe(1 + ((3 - 1) * 6) / 10); // finite means: Chan's formula, bit for bit
    expect(a.merge(b).variance()[0]).toBeNaN();
  });

  it('round-trips through JSON, and rejects bad input', () => {
    const s = new ChannelStats([4, 4], [1.5, -2], [3, 0.5]);
    const back = ChannelStats.fromJSON(JSON.parse(JSON.stringify(s)));
    expect(back.toJSON()).toEqual({ count: [4, 4], mean: [1.5, -2], m2: [3, 0.5] });
    expect(() => new ChannelStats([1], [1, 2], [1])).toThrow(ArgumentError);
    expect(() => new ChannelStats([-1], [0], [0])).toThrow(/count\[0\]/);
    expect(() => s.merge(new ChannelStats([1], [1], [0]))).toThrow(/2 channels; got 1/);
    expect(() => s.variance({ ddof: -1 })).toThrow(/ddof/);
    expect(() => ChannelStats.fromJSON({ count: 3 } as never)).toThrow(/json.count/);
  });
});

describe('reduceStats', () => {
  it('two worker threads, each with half the batch, equal one process on the whole batch', async () => {
    const shape = [8, 5, 6, 7];
    const x = randomTensor(shape, 'float64', 9) as Float64Array;
    const [a, b] = splitRows(x, shape, 4);
    const half = [4, 5, 6, 7];
    const workers = [a, b].map((part) => new Worker(new URL('./fixtures/sync-shard.mjs', import.meta.url), { workerData: { x: part, shape: half, C: 5 } }));
    // The all-reduce: gather both shards' statistics, merge, send the result to each.
    const locals: ChannelStats[] = [];
    const results: { y: Float64Array; runningMean: Float64Array; runningVar: Float64Array; tracked: number }[] = [];
    await new Promise<void>((resolve, reject) => {
      workers.forEach((w, i) => {
        w.on('error', reject);
        w.on('message', (msg) => {
          if (msg.local) {
            locals[i] = ChannelStats.fromJSON(msg.local);
            if (locals.filter(Boolean).length === 2) {
              const merged = locals[0].merge(locals[1]).toJSON();
              for (const other of workers) other.postMessage(merged);
            }
          } else {
            results[i] = msg;
            if (results.filter(Boolean).length === 2) resolve();
          }
        });
      });
    });
    await Promise.all(workers.map((w) => w.terminate()));

    const whole = new BatchNorm(5, { pool, dtype: 'float64' });
    const y = await whole.forward(x, shape);
    const joined = new Float64Array(x.length);
    joined.set(results[0].y, 0);
    joined.set(results[1].y, a.length);
    expect(maxRelativeError(joined, y, 1e-3)).toBeLessThan(1e-6);
    for (const r of results) {
      expect(r.tracked).toBe(1);
      expect(maxRelativeError(r.runningMean, whole.runningMean!, 1e-3)).toBeLessThan(1e-6);
      expect(maxRelativeError(r.runningVar, whole.runningVar!, 1e-3)).toBeLessThan(1e-6);
    }
  });

  it('rejects a hook that does not resolve to matching statistics, changing nothing', async () => {
    const bn = new BatchNorm(3, { pool });
    const x = randomTensor([4, 3, 5], 'float32', 3);
    await expect(bn.forward(x, [4, 3, 5], { reduceStats: () => new ChannelStats([1], [0], [0]) })).rejects.toThrow(/ChannelStats of 3 channels/);
    await expect(bn.forward(x, [4, 3, 5], { reduceStats: 'no' as never })).rejects.toThrow(/options.reduceStats must be a function/);
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0]);
  });
});
