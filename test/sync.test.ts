/**
 * SyncBatchNorm over any transport: the reduceStats and reduceGrads hooks, against one process on
 * the whole batch.
 */
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, batchNormBackward, ChannelStats, type GradientSums, Pool } from '../dist/src/index.js';
import { detached, randomTensor, sameBits, splitRows } from './helpers/data.js';
import { maxRelativeError } from './helpers/reference.js';
import { rendezvous } from './helpers/sync.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

describe('reduceStats and reduceGrads', () => {
  it('two worker threads, each with half the batch, equal one process on the whole batch', async () => {
    const shape = [8, 5, 6, 7];
    const x = randomTensor(shape, 'float64', 9) as Float64Array;
    const dy = randomTensor(shape, 'float64', 10) as Float64Array;
    const [a, b] = splitRows(x, shape, 4);
    const [dyA, dyB] = splitRows(dy, shape, 4);
    const half = [4, 5, 6, 7];
    const workers = [[a, dyA], [b, dyB]].map(([part, g]) => new Worker(
      new URL('./fixtures/sync-shard.mjs', import.meta.url), { workerData: { x: part, dy: g, shape: half, C: 5 } },
    ));
    // The all-reduces: gather both shards' statistics (then gradient sums), combine, send the result to each.
    const locals: ChannelStats[] = [];
    const grads: { sumDy: number[]; sumDyXhat: number[] }[] = [];
    const results: {
      y: Float64Array; dx: Float64Array; dWeight: Float64Array; dBias: Float64Array;
      runningMean: Float64Array; runningVar: Float64Array; tracked: number;
    }[] = [];
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
          } else if (msg.grads) {
            grads[i] = msg.grads;
            if (grads.filter(Boolean).length === 2) {
              const sum = (key: 'sumDy' | 'sumDyXhat'): number[] => grads[0][key].map((v, c) => v + grads[1][key][c]);
              for (const other of workers) other.postMessage({ sumDy: sum('sumDy'), sumDyXhat: sum('sumDyXhat') });
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
    const g = await whole.backward(dy);
    const join = (key: 'y' | 'dx'): Float64Array => {
      const joined = new Float64Array(x.length);
      joined.set(results[0][key], 0);
      joined.set(results[1][key], a.length);
      return joined;
    };
    expect(maxRelativeError(join('y'), y, 1e-3)).toBeLessThan(1e-6);
    expect(maxRelativeError(join('dx'), g.dx, 1e-3)).toBeLessThan(1e-6);
    // dWeight and dBias are each shard's own sums, as in PyTorch's SyncBatchNorm: they add up to the whole's.
    const added = (key: 'dWeight' | 'dBias'): Float64Array => results[0][key].map((v, c) => v + results[1][key][c]);
    expect(maxRelativeError(added('dWeight'), g.dWeight!, 1e-3)).toBeLessThan(1e-9);
    expect(maxRelativeError(added('dBias'), g.dBias!, 1e-3)).toBeLessThan(1e-9);
    expect(maxRelativeError(results[0].dBias, g.dBias!, 1e-3)).toBeGreaterThan(1e-2);
    for (const r of results) {
      expect(r.tracked).toBe(1);
      expect(maxRelativeError(r.runningMean, whole.runningMean!, 1e-3)).toBeLessThan(1e-6);
      expect(maxRelativeError(r.runningVar, whole.runningVar!, 1e-3)).toBeLessThan(1e-6);
    }
  });

  it('float32 shards on one pool, channels-last, with ReLU: dx equals the whole batch\'s', async () => {
    // Rows of (N, H, W, C) split along N; the shards' calls run concurrently on the same pool.
    const shape = [6, 9, 11, 4];
    const half = [3, 9, 11, 4];
    const x = randomTensor(shape, 'float32', 21) as Float32Array;
    const dy = randomTensor(shape, 'float32', 22) as Float32Array;
    const n = x.length / 2;
    const make = (): BatchNorm => new BatchNorm(4, { pool, layout: 'channels-last', activation: 'relu' });
    const shards = [make(), make()];
    const reduceStats = rendezvous<ChannelStats>((parts) => parts[0].merge(parts[1]));
    const reduceGrads = rendezvous<GradientSums>((parts) => ({
      sumDy: Float64Array.from(parts[0].sumDy, (v, c) => v + parts[1].sumDy[c]),
      sumDyXhat: Float64Array.from(parts[0].sumDyXhat, (v, c) => v + parts[1].sumDyXhat[c]),
    }));
    const ys = await Promise.all(shards.map((bn, i) => bn.forward(x.subarray(i * n, (i + 1) * n), half, { reduceStats })));
    const gs = await Promise.all(shards.map((bn, i) => bn.backward(dy.subarray(i * n, (i + 1) * n), { reduceGrads })));

    const whole = make();
    const y = await whole.forward(x, shape);
    const g = await whole.backward(dy);
    const joined = (parts: Float32Array[]): Float32Array => {
      const out = new Float32Array(x.length);
      parts.forEach((p, i) => out.set(p, i * n));
      return out;
    };
    expect(maxRelativeError(joined(ys as Float32Array[]), y, 1e-2)).toBeLessThan(1e-5);
    expect(maxRelativeError(joined(gs.map((r) => r.dx as Float32Array)), g.dx, 1e-2)).toBeLessThan(1e-5);
    expect(ys[0].filter((v) => v === 0).length).toBeGreaterThan(ys[0].length / 4); // ReLU masks a good part of dy
  });

  it('rejects a hook that does not resolve to matching statistics, changing nothing', async () => {
    const bn = new BatchNorm(3, { pool });
    const x = randomTensor([4, 3, 5], 'float32', 3);
    await expect(bn.forward(x, [4, 3, 5], { reduceStats: () => new ChannelStats([1], [0], [0]) }))
      .rejects.toThrow(/^options\.reduceStats must resolve to a ChannelStats with numChannels 3, x's channel count; got one with numChannels 1$/);
    // One channel too many, each with this shard's 20 values and more: still not this module's.
    const four = new ChannelStats([40, 40, 40, 40], [0, 0, 0, 0], [30, 30, 30, 30]);
    await expect(bn.forward(x, [4, 3, 5], { reduceStats: () => four })).rejects.toThrow(/numChannels 3, x's channel count; got one with numChannels 4$/);
    await expect(bn.forward(x, [4, 3, 5], { reduceStats: 'no' as never })).rejects.toThrow(/options.reduceStats must be a function/);
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0]);
  });

  it('a synced forward whose hook fails leaves the saved forward as it was: backward gives the same bits', async () => {
    const bn = new BatchNorm(3, { pool });
    const shape = [4, 3, 5];
    const x = randomTensor(shape, 'float32', 6);
    const dy = randomTensor(shape, 'float32', 7);
    await bn.forward(x, shape);
    const before = await bn.backward(dy);
    // Other data: its statistics pass runs before the hook fails.
    const other = randomTensor(shape, 'float32', 8).map((v) => 3 * v + 1);
    await expect(bn.forward(other, shape, { reduceStats: () => { throw new Error('transport down'); } })).rejects.toThrow(/transport down/);
    const after = await bn.backward(dy);
    expect(sameBits(after.dx, before.dx) && sameBits(after.dWeight!, before.dWeight!) && sameBits(after.dBias!, before.dBias!)).toBe(true);
  });

  it('refuses a synced backward without reduceGrads, reduceGrads without a synced forward, and a bad answer', async () => {
    const bn = new BatchNorm(3, { pool });
    const shape = [4, 3, 5];
    const x = randomTensor(shape, 'float32', 4);
    const dy = randomTensor(shape, 'float32', 5);
    await bn.forward(x, shape);
    const plain = await bn.backward(dy);
    await expect(bn.backward(dy, { reduceGrads: (s) => s })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: expect.stringMatching(/reduceGrads applies only after a forward with options.reduceStats/),
    });
    await expect(bn.backward(dy, { reduceGrads: 1 as never })).rejects.toThrow(/options.reduceGrads must be a function; got 1/);

    await bn.forward(x, shape, { reduceStats: (local) => local });
    await expect(bn.backward(dy)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: expect.stringMatching(/needs options.reduceGrads/),
    });
    const out = pool.alloc(x.length).fill(7);
    await expect(bn.backward(dy, { out, reduceGrads: (s) => ({ sumDy: s.sumDy, sumDyXhat: [1, 2] }) })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: expect.stringMatching(/options.reduceGrads\(...\).sumDyXhat must have length 3; got length 2/),
    });
    await expect(bn.backward(dy, { out, reduceGrads: () => null as never })).rejects.toThrow(/must be an object; got null/);
    expect(out.every((v) => v === 7)).toBe(true);
    // A one-shard all-reduce (the identity) gives the unsynced gradient, to rounding.
    const synced = await bn.backward(dy, { reduceGrads: (s) => s });
    expect(maxRelativeError(synced.dx, plain.dx, 1e-3)).toBeLessThan(1e-6);
    expect(Array.from(synced.dBias!)).toEqual(Array.from(plain.dBias!));
    // An abort while the all-reduce is out stops the call before dx is written.
    const ac = new AbortController();
    await expect(bn.backward(dy, { out, signal: ac.signal, reduceGrads: (s) => { ac.abort(); return s; } }))
      .rejects.toMatchObject({ name: 'AbortError' });
    expect(out.every((v) => v === 7)).toBe(true);
    pool.free(out);
  });

  it('functional: batchNorm with reduceStats, batchNormBackward with reduceGrads and count, equal the whole batch', async () => {
    const shape = [6, 3, 10, 9];
    const half = [3, 3, 10, 9];
    const x = randomTensor(shape, 'float64', 31) as Float64Array;
    const dy = randomTensor(shape, 'float64', 32) as Float64Array;
    const weight = Float64Array.of(0.5, -1.5, 2);
    const [xs, dys] = [splitRows(x, shape, 3), splitRows(dy, shape, 3)];
    const buffers = (): { runningMean: Float64Array; runningVar: Float64Array } => ({ runningMean: new Float64Array(3), runningVar: new Float64Array(3).fill(1) });
    const reduceStats = rendezvous<ChannelStats>((parts) => parts[0].merge(parts[1]));
    const reduceGrads = rendezvous<GradientSums>((parts) => ({
      sumDy: Array.from(parts[0].sumDy, (v, c) => v + parts[1].sumDy[c]),
      sumDyXhat: Array.from(parts[0].sumDyXhat, (v, c) => v + parts[1].sumDyXhat[c]),
    }));
    const shardBuffers = [buffers(), buffers()];
    const fwd = await Promise.all([0, 1].map((i) => batchNorm(xs[i], half, { training: true, weight, pool, reduceStats, ...shardBuffers[i] })));
    const wholeBuffers = buffers();
    const whole = await batchNorm(x, shape, { training: true, weight, pool, ...wholeBuffers });
    expect(fwd.map((r) => r.count)).toEqual([540, 540]);
    const joined = (parts: Float64Array[]): Float64Array => {
      const out = new Float64Array(x.length);
      parts.forEach((p, i) => out.set(p, i * x.length / 2));
      return out;
    };
    expect(maxRelativeError(joined(fwd.map((r) => r.y as Float64Array)), whole.y, 1e-3)).toBeLessThan(1e-9);
    for (const b of shardBuffers) {
      expect(maxRelativeError(b.runningMean, wholeBuffers.runningMean, 1e-3)).toBeLessThan(1e-9);
      expect(maxRelativeError(b.runningVar, wholeBuffers.runningVar, 1e-3)).toBeLessThan(1e-9);
    }

    const grads = await Promise.all([0, 1].map((i) => batchNormBackward(xs[i], dys[i], half, {
      mean: fwd[i].mean, var: fwd[i].var, weight, pool, reduceGrads, count: fwd[i].count,
    })));
    const g = await batchNormBackward(x, dy, shape, { mean: whole.mean, var: whole.var, weight, pool });
    expect(maxRelativeError(joined(grads.map((r) => r.dx as Float64Array)), g.dx, 1e-3)).toBeLessThan(1e-9);
    const unsynced = await batchNormBackward(xs[0], dys[0], half, { mean: fwd[0].mean, var: fwd[0].var, weight, pool });
    expect(maxRelativeError(unsynced.dx, grads[0].dx, 1e-3)).toBeGreaterThan(1e-3);

    const opts = { mean: fwd[0].mean, var: fwd[0].var, weight, pool, reduceGrads };
    await expect(batchNormBackward(xs[0], dys[0], half, opts)).rejects.toThrow(/options.count must be an integer of at least this shard's 270 values per channel/);
    await expect(batchNormBackward(xs[0], dys[0], half, { ...opts, count: 540, training: false })).rejects.toThrow(/needs options.training true/);
    await expect(batchNorm(xs[0], half, { reduceStats, ...buffers() })).rejects.toThrow(/options.reduceStats needs options.training true/);
  });

  it('an abort ends a call whose all-reduce never answers, changing nothing; close() then returns', async () => {
    const own = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const shape = [4, 3, 5];
    const x = randomTensor(shape, 'float32', 8);
    const dy = randomTensor(shape, 'float32', 9);
    const bn = new BatchNorm(3, { pool: own });
    const never = (): Promise<never> => new Promise(() => {});
    const ac = new AbortController();
    const forward = bn.forward(x, shape, { signal: ac.signal, reduceStats: never });
    setTimeout(() => ac.abort(), 20);
    await expect(forward).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0]);

    await bn.forward(x, shape, { reduceStats: (local) => local });
    const out = own.alloc(x.length).fill(7);
    const live = own.memoryStats.liveBytes;
    const ac2 = new AbortController();
    const backward = bn.backward(dy, { out, signal: ac2.signal, reduceGrads: never });
    setTimeout(() => ac2.abort(), 20);
    await expect(backward).rejects.toMatchObject({ name: 'AbortError' });
    expect(out.every((v) => v === 7)).toBe(true);
    expect(own.memoryStats.liveBytes).toBe(live); // the call's scratch was given back
    own.free(out);
    await own.close();
  }, 10_000);

  it('a shard may hold one value per channel when the merged batch holds more, as in PyTorch\'s SyncBatchNorm', async () => {
    const x = randomTensor([3, 4], 'float64', 51) as Float64Array;
    const dy = randomTensor([3, 4], 'float64', 52) as Float64Array;
    const parts = [x.slice(0, 4), x.slice(4)];
    const dys = [dy.slice(0, 4), dy.slice(4)];
    const reduceStats = rendezvous<ChannelStats>((p) => p[0].merge(p[1]));
    const reduceGrads = rendezvous<GradientSums>((p) => ({
      sumDy: Array.from(p[0].sumDy, (v, c) => v + p[1].sumDy[c]),
      sumDyXhat: Array.from(p[0].sumDyXhat, (v, c) => v + p[1].sumDyXhat[c]),
    }));
    const shards = [new BatchNorm(4, { pool, dtype: 'float64' }), new BatchNorm(4, { pool, dtype: 'float64' })];
    const ys = await Promise.all(shards.map((bn, i) => bn.forward(parts[i], [i === 0 ? 1 : 2, 4], { reduceStats })));
    const gs = await Promise.all(shards.map((bn, i) => bn.backward(dys[i], { reduceGrads })));
    const whole = new BatchNorm(4, { pool, dtype: 'float64' });
    const y = await whole.forward(x, [3, 4]);
    const g = await whole.backward(dy);
    expect(maxRelativeError(Float64Array.of(...ys[0], ...ys[1]), y, 1e-3)).toBeLessThan(1e-9);
    expect(maxRelativeError(Float64Array.of(...gs[0].dx, ...gs[1].dx), g.dx, 1e-3)).toBeLessThan(1e-9);
    expect(maxRelativeError(shards[0].runningVar!, whole.runningVar!, 1e-3)).toBeLessThan(1e-9);

    // Alone, one value per channel is still an error, raised before any state changes.
    const alone = new BatchNorm(4, { pool, dtype: 'float64' });
    await expect(alone.forward(parts[0], [1, 4], { reduceStats: (local) => local })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_SINGLE_VALUE', message: expect.stringMatching(/more than 1 value per channel.*got 1 over every shard/),
    });
    await expect(alone.forward(parts[0], [1, 4])).rejects.toMatchObject({ code: 'ERR_BNPOOL_SINGLE_VALUE' });
    // Counts that differ between channels are a bad answer.
    await expect(alone.forward(x, [3, 4], { reduceStats: () => new ChannelStats([3, 3, 3, 2], [0, 0, 0, 0], [1, 1, 1, 1]) }))
      .rejects.toThrow(/the same count for every channel; got 3 for channel 0 and 2 for channel 3/);
    // An answer whose m2 was transferred away (its buffer detached): typed, not NaN outputs.
    const untouched = new Float64Array(x.length).fill(7);
    await expect(alone.forward(x, [3, 4], {
      out: untouched,
      reduceStats: (local) => { detached(local.m2); return local; },
    })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG',
      message: "options.reduceStats's result's m2 must hold 4 values, one a channel; its buffer was detached (transferred), and it now holds 0",
    });
    expect(Array.from(untouched)).toEqual(new Array(x.length).fill(7));
    expect(alone.numBatchesTracked).toBe(0);
    expect(Array.from(alone.runningMean!)).toEqual([0, 0, 0, 0]);
  });

  it('a synced backward run inline (small input) uses the reduced sums too', async () => {
    const inline = new Pool({ threads: 1 });
    try {
      const shape = [4, 3, 5];
      const x = randomTensor(shape, 'float64', 6);
      const dy = randomTensor(shape, 'float64', 7);
      const bn = new BatchNorm(3, { pool: inline, dtype: 'float64' });
      await bn.forward(x, shape, { reduceStats: (local) => local });
      const identity = await bn.backward(dy, { reduceGrads: (s) => s });
      const doubled = await bn.backward(dy, {
        reduceGrads: (s) => ({ sumDy: s.sumDy, sumDyXhat: Float64Array.from(s.sumDyXhat, (v) => 2 * v) }),
      });
      // dx = a·dy + b·(x - mean) + d, and b is proportional to Σdy·x̂: doubling it moves dx.
      expect(maxRelativeError(doubled.dx, identity.dx, 1e-3)).toBeGreaterThan(1e-3);
      expect(Array.from(doubled.dWeight!)).toEqual(Array.from(identity.dWeight!));
    } finally {
      await inline.close();
    }
  });
});
