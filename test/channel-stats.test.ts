/** Mergeable statistics: ChannelStats. */
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, ChannelStats, Pool } from '../dist/src/index.js';
import { detached, randomTensor, rng, splitRows } from './helpers/data.js';
import { channelStats, exactChannelStats, maxRelativeError } from './helpers/reference.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

describe('ChannelStats', () => {
  it('console.log and util.inspect show count, mean (a method) and m2', () => {
    const shown = inspect(new ChannelStats([2, 3], [0.5, -1.25], [1, 4]));
    expect(shown).toBe('ChannelStats {\n  count: Float64Array(2) [ 2, 3 ],\n  mean: Float64Array(2) [ 0.5, -1.25 ],\n  m2: Float64Array(2) [ 1, 4 ]\n}');
  });

  it('util.inspect shows the means\' low parts where any is not 0, as toJSON writes them', () => {
    const lo = 2 ** -60;
    expect(inspect(new ChannelStats([2, 3], [0.5, -1.25], [1, 4], [0, lo]))).toBe(
      `ChannelStats {\n  count: Float64Array(2) [ 2, 3 ],\n  mean: Float64Array(2) [ 0.5, -1.25 ],\n  m2: Float64Array(2) [ 1, 4 ],\n  meanLo: Float64Array(2) [ 0, ${lo} ]\n}`,
    );
    expect(inspect(new ChannelStats([2], [0.5], [1], [0]))).not.toContain('meanLo');
  });

  it('count or m2 transferred away (their buffers detached) is a typed error, not NaN statistics', () => {
    const withLost = (key: 'count' | 'm2') => {
      const s = new ChannelStats([4, 5], [0.5, -1.25], [1, 4]);
      detached(s[key]);
      return s;
    };
    const whole = new ChannelStats([4, 5], [0.5, -1.25], [1, 4]);
    for (const key of ['count', 'm2'] as const) {
      const s = withLost(key);
      expect(s[key].length).toBe(0);
      expect(s.numChannels).toBe(2);
      const error = { code: 'ERR_BNPOOL_ARG', message: `${key} must hold 2 values, one a channel; its buffer was detached (transferred), and it now holds 0` };
      expect(() => s.variance()).toThrow(expect.objectContaining(error));
      expect(() => s.toJSON()).toThrow(expect.objectContaining(error));
      expect(() => s.merge(whole)).toThrow(expect.objectContaining(error));
      expect(() => whole.merge(s)).toThrow(expect.objectContaining({ code: 'ERR_BNPOOL_ARG', message: `other.${error.message}` }));
      // The mean is private, so it is whole.
      expect(Array.from(s.mean())).toEqual([0.5, -1.25]);
    }
    expect(Array.from(whole.variance())).toEqual([0.25, 0.8]);
  });

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

  it('gives NaN for the mean of a channel of count 0, as for its variance, and keeps the stored mean for toJSON and merge', () => {
    const s = new ChannelStats([0, 2, 0], [7, 0.5, 0], [0, 1, 0]);
    expect(Array.from(s.mean())).toEqual([NaN, 0.5, NaN]);
    expect(Array.from(s.variance())).toEqual([NaN, 0.5, NaN]);
    expect(s.toJSON()).toEqual({ count: [0, 2, 0], mean: [7, 0.5, 0], m2: [0, 1, 0] });
    const merged = s.merge(new ChannelStats([0, 2, 4], [1, 1.5, -2], [0, 1, 8]));
    expect(merged.toJSON()).toEqual({ count: [0, 4, 4], mean: [1, 1, -2], m2: [0, 3, 8] });
    expect(Array.from(merged.mean())).toEqual([NaN, 1, -2]);
  });

  it('random shards of random batches, merged in a random order, give the whole batch\'s statistics', async () => {
    const rand = rng(77);
    const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
    for (let trial = 0; trial < 24; trial++) {
      const dtype = trial % 2 === 0 ? 'float32' : 'float64';
      const rank = int(2, 5);
      const N = int(2, 12);
      const C = int(1, 6);
      const shape = [N, C, ...Array.from({ length: rank - 2 }, () => int(1, 7))];
      // Every third batch is hard: a large offset with a tiny spread.
      const hard = trial % 3 === 2;
      const x = randomTensor(shape, dtype, 1000 + trial, hard ? () => ({ offset: 3000, spread: 0.5 }) : undefined);
      const per = x.length / N;
      // Cut the rows at random points into 1 to 4 shards, each reduced on its own.
      const cuts = [...new Set(Array.from({ length: int(0, 3) }, () => int(1, N - 1)))].sort((a, b) => a - b);
      const bounds = [0, ...cuts, N];
      const shards: ChannelStats[] = [];
      for (let k = 0; k + 1 < bounds.length; k++) {
        const rows = bounds[k + 1] - bounds[k];
        shards.push(await ChannelStats.fromBatch(x.slice(bounds[k] * per, bounds[k + 1] * per), [rows, ...shape.slice(1)], { pool }));
      }
      // Merge pairs picked at random until one is left: any tree of merges.
      while (shards.length > 1) {
        const i = int(0, shards.length - 1);
        const [a] = shards.splice(i, 1);
        const j = int(0, shards.length - 1);
        shards[j] = rand() < 0.5 ? a.merge(shards[j]) : shards[j].merge(a);
      }
      const ref = channelStats(x, shape);
      const label = `trial ${trial}: ${dtype} ${JSON.stringify(shape)} cut at ${JSON.stringify(cuts)}${hard ? ', hard' : ''}`;
      expect(Array.from(shards[0].count), label).toEqual(Array(C).fill(x.length / C));
      expect(maxRelativeError(shards[0].mean(), ref.mean), label).toBeLessThan(dtype === 'float64' ? 1e-12 : 1e-6);
      // float32 hard data: the variance within 1e-4 relative (the core issue's rule); else 1e-6.
      expect(maxRelativeError(shards[0].variance(), ref.var), label).toBeLessThan(dtype === 'float64' ? 1e-10 : hard ? 1e-4 : 1e-6);
    }
  });

  it('keeps what rounding each mean left out, so that merges of offset data stay exact, through JSON too', async () => {
    // Float64 integers at 1e15 (ulp 0.125) with a spread of ~4: the halves' means are rounded at
    // the offset, and Chan's deltas of the rounded means put the variance up to 1.3e-8 off.
    const shape = [16, 2, 40, 40];
    const x = Float64Array.from({ length: 16 * 2 * 1600 }, (_, i) => 1e15 + (i % 13));
    const exact = exactChannelStats(x, shape);
    const half = x.length / 2;
    // Both kernels' merges make the low parts (the WebAssembly one performs the TypeScript one's
    // operations): the same statistics, bit for bit.
    const jsPool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel: 'js' });
    const byKernel = await Promise.all([pool, jsPool].map(async (p) => [
      await ChannelStats.fromBatch(x.subarray(0, half), [8, 2, 40, 40], { pool: p }),
      await ChannelStats.fromBatch(x.subarray(half), [8, 2, 40, 40], { pool: p }),
    ]));
    await jsPool.close();
    expect(byKernel[1].map((s) => s.toJSON())).toEqual(byKernel[0].map((s) => s.toJSON()));
    const [a, b] = byKernel[1];
    const json = a.toJSON();
    expect(json.meanLo).toHaveLength(2);
    const viaJson = ChannelStats.fromJSON(JSON.parse(JSON.stringify(a))).merge(ChannelStats.fromJSON(JSON.parse(JSON.stringify(b))));
    for (const all of [a.merge(b), b.merge(a), viaJson]) {
      expect(maxRelativeError(all.variance(), exact.var)).toBeLessThan(5e-14);
      for (let c = 0; c < 2; c++) expect(Math.abs(exact.meanErrorUlps(c, all.mean()[c]))).toBeLessThanOrEqual(0.5 + 1e-6);
    }
    expect(viaJson.toJSON()).toEqual(a.merge(b).toJSON());
    // Without the low parts (as from an older sender), the merge is Chan's on the rounded means.
    const rounded = (s: ChannelStats): ChannelStats => new ChannelStats(s.count, s.mean(), s.m2);
    const old = rounded(a).merge(rounded(b));
    const [ma, mb] = [a.mean(), b.mean()];
    for (let c = 0; c < 2; c++) {
      const delta = mb[c] - ma[c];
      expect(old.mean()[c]).toBe(ma[c] + (delta * 12800) / 25600);
      expect(old.m2[c]).toBe(a.m2[c] + b.m2[c] + (delta * delta * 12800 * 12800) / 25600);
    }
    expect(maxRelativeError(old.variance(), exact.var)).toBeGreaterThan(1e-10);
    // A low part must be what rounding its mean left out.
    expect(() => new ChannelStats([4], [1], [0], [0.5])).toThrow(/^meanLo\[0\] must be what rounding mean\[0\] left out .*; got 0.5 for mean 1$/);
    expect(() => new ChannelStats([4], [NaN], [0], [1e-30])).toThrow(/meanLo\[0\]/);
    expect(() => new ChannelStats([4, 4], [1, 1], [0, 0], [0])).toThrow(/^meanLo must have the length of mean \(2\); got 1$/);
    expect(new ChannelStats([4], [1], [0], [1e-17]).toJSON()).toEqual({ count: [4], mean: [1], m2: [0], meanLo: [1e-17] });
    expect(() => ChannelStats.fromJSON({ count: [4], mean: [1], m2: [0], meanLo: ['NaN' as never] })).toThrow(/json.meanLo\[0\] must be a number; got "NaN"/);
    expect(() => ChannelStats.fromJSON({ count: [4, 4], mean: [1, 1], m2: [0, 0], meanLo: [0] })).toThrow(/json.meanLo must have the length of json.mean \(2\); got 1/);
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
    expect(() => ChannelStats.fromJSON({ count: 3 } as never)).toThrow(/^json.count must be an array or a typed array of numbers; got 3$/);
    // A DataView is no array of numbers (it was read as one of length 0).
    expect(() => ChannelStats.fromJSON({ count: [1], mean: new DataView(new ArrayBuffer(8)), m2: [0] } as never))
      .toThrow(/^json.mean must be an array or a typed array of numbers; got DataView\(8\)$/);
    expect(() => new ChannelStats([4], [0], [-1])).toThrow(/m2\[0\] must be a number >= 0/);
    expect(() => new ChannelStats([4], ['1' as never], [0])).toThrow(/mean\[0\] must be a number; got "1"/);
    // Not arrays at all: an ArgumentError naming the argument (not a TypeError from .length).
    expect(() => new ChannelStats(null as never, [0], [0])).toThrow(/^count must be an array or a typed array of numbers; got null$/);
    expect(() => new ChannelStats([4], [0], undefined as never)).toThrow(/^m2 must be .*; got undefined$/);
    expect(() => new ChannelStats([4], '0' as never, [0])).toThrow(/^mean must be .*; got "0"$/);
    expect(() => new ChannelStats([4], new DataView(new ArrayBuffer(8)) as never, [0])).toThrow(/^mean must be .*; got DataView\(8\)$/);
    expect(new ChannelStats(new Int32Array([4]), [0.5], new Float32Array([2])).variance()[0]).toBe(0.5);
    expect(() => ChannelStats.fromJSON({ count: ['4' as never], mean: [0], m2: [0] })).toThrow(/json.count\[0\] must be a number/);
    expect(() => ChannelStats.fromJSON({ count: [4, 4], mean: [0], m2: [0, 1] }))
      .toThrow(/^json.count, json.mean and json.m2 must have the same, non-zero length; got 2, 1 and 2$/);
  });

  // A NaN channel (NaN in the data) or an infinite one must cross a JSON transport as it is:
  // JSON.stringify writes NaN and the infinities as null, which Float64Array.from made 0.
  it('round-trips NaN and infinities through JSON as names; null is refused, not read as 0', () => {
    const s = new ChannelStats([4, 4, 4, 4], [NaN, Infinity, -Infinity, 0.5], [NaN, NaN, NaN, Infinity]);
    const text = JSON.stringify(s);
    expect(JSON.parse(text)).toEqual({ count: [4, 4, 4, 4], mean: ['NaN', 'Infinity', '-Infinity', 0.5], m2: ['NaN', 'NaN', 'NaN', 'Infinity'] });
    const back = ChannelStats.fromJSON(JSON.parse(text));
    expect(Array.from(back.mean())).toEqual([NaN, Infinity, -Infinity, 0.5]);
    expect(Array.from(back.m2)).toEqual([NaN, NaN, NaN, Infinity]);
    expect(Array.from(back.variance())).toEqual(Array.from(s.variance()));
    expect(() => ChannelStats.fromJSON({ count: [4], mean: [null as never], m2: [0] })).toThrow(/json.mean\[0\] must be a number, or 'NaN'.*got null \(JSON.stringify writes NaN/);
    expect(() => ChannelStats.fromJSON({ count: [4], mean: [0], m2: ['nan' as never] })).toThrow(/json.m2\[0\]/);
  });

  // The constructor copies what it is given; fromBatch, merge and fromJSON hand it arrays made for
  // the new object, which it keeps without copying, but checks all the same.
  it('owns its arrays, and checks statistics it makes itself as it checks given ones', async () => {
    const count = Float64Array.of(4, 4);
    const mean = Float32Array.of(1.5, -2);
    const m2 = [3, 0.5];
    const s = new ChannelStats(count, mean, m2);
    count[0] = 9;
    mean[0] = 9;
    m2[0] = 9;
    expect(s.toJSON()).toEqual({ count: [4, 4], mean: [1.5, -2], m2: [3, 0.5] });
    const merged = s.merge(s);
    expect(merged.toJSON()).toEqual({ count: [8, 8], mean: [1.5, -2], m2: [6, 1] });
    expect(merged.count).not.toBe(s.count);
    expect(merged.m2).not.toBe(s.m2);
    merged.m2[0] = 100;
    expect(s.m2[0]).toBe(3);
    const shape = [3, 2, 5];
    const x = randomTensor(shape, 'float64', 3) as Float64Array;
    const [a, b] = await Promise.all([ChannelStats.fromBatch(x, shape, { pool }), ChannelStats.fromBatch(x, shape, { pool })]);
    expect(a.count).not.toBe(b.count);
    expect(Array.from(a.m2)).toEqual(Array.from(b.m2));
    expect(maxRelativeError(a.m2, channelStats(x, shape).var.map((v) => v * 15))).toBeLessThan(1e-12);
    // A sum of counts past float64 is no count: the merge refuses it as the constructor would.
    const huge = new ChannelStats([1e308], [0], [0]);
    expect(() => huge.merge(huge)).toThrow(/count\[0\] must be a finite number >= 0; got Infinity/);
    expect(() => ChannelStats.fromJSON({ count: [4, -1], mean: [0, 0], m2: [0, 0] })).toThrow(/count\[1\] must be a finite number >= 0; got -1/);
    expect(() => ChannelStats.fromJSON({ count: [4, 4], mean: [0, 0], m2: [0, -2] })).toThrow(/m2\[1\] must be a number >= 0/);
    expect(() => new ChannelStats([4, 4], [0, 0], [0, 'x' as never])).toThrow(/m2\[1\] must be a number >= 0 .* or NaN; got "x"/);
    expect(() => new ChannelStats([4, null as never], [0, 0], [0, 0])).toThrow(/count\[1\] must be a finite number >= 0; got null/);
  });
});
