/**
 * A call's per-channel steps over more than CHANNEL_SLICE channels (src/channels.ts,
 * src/running.ts): its per-channel inputs put on the pool, its results copied off it (into new
 * arrays or into arrays given) and a training forward's running update go in slices with a turn
 * of the event loop before each, with the same bits as in one piece (sync-wide.test.ts has a
 * synced forward's and backward's); so do an 8-bit input's parameters and statistics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_SLICE, FRESH_SLICE } from '../dist/src/channels.js';
import { AbortError, ArgumentError, BatchNorm, batchNorm, batchNormBackward, ChannelStats, Pool } from '../dist/src/index.js';
import { type PoolInternals, poolInternals } from '../dist/src/pool-internals.js';
import { runningStatsUpdate, updateRunningStats } from '../dist/src/running.js';
import { randomBytes } from './helpers/bytes.js';
import { detached, randomTensor, randomVector, sameBits } from './helpers/data.js';
import { everyTurn, turnCounter, turnsOf } from './helpers/turns.js';

// Inline, with x, dy and the outputs on the pool: no worker and no copy of x, so every turn a
// call takes is one of its per-channel steps'.
let pool: Pool;
beforeAll(async () => {
  pool = new Pool({ threads: 1, inlineThreshold: 1 << 21 });
  // Started (its kernels compiled, off this thread) before any turns are counted.
  await pool.ready;
});
afterAll(() => pool.close());

const C = 2 * CHANNEL_SLICE + 5; // three slices
const SLICES = 3;
const shape = [2, C];

/** x on the pool, channel c around (c % 9) - 4: statistics that differ from channel to channel. */
function input(seed: number): Float32Array {
  const x = pool.alloc(2 * C);
  x.set(randomTensor(shape, 'float32', seed, (c) => ({ offset: (c % 9) - 4, spread: 0.5 + (c % 3) })));
  return x;
}

/** The running update in float64, as PyTorch states it, stored in the buffers' type. */
function updated(running: Float32Array | Float64Array, batch: Float64Array, factor: number, unbias = 1): Float32Array {
  return Float32Array.from(running, (r, c) => (1 - factor) * r + factor * batch[c] * unbias);
}

describe('per-channel results over more than CHANNEL_SLICE channels', () => {
  it("batchNorm's mean and var: copied in slices between turns, into new arrays or meanOut and varOut, the same bits", async () => {
    const x = input(61);
    const out = pool.alloc(2 * C);
    const given = await turnsOf(() => batchNorm(x, shape, {
      training: true, pool, out, meanOut: new Float64Array(C), varOut: new Float64Array(C),
    }));
    const made = await turnsOf(() => batchNorm(x, shape, { training: true, pool, out }));
    // The inputs (weight and bias: filled) in one sliced pass, then two arrays of three slices;
    // new arrays in slices of FRESH_SLICE (their first writes are page faults).
    expect(given.turns).toBeGreaterThanOrEqual(SLICES + 2 * SLICES);
    expect(made.turns).toBeGreaterThanOrEqual(SLICES + 2 * Math.ceil(C / FRESH_SLICE));
    expect(made.value.mean).toBeInstanceOf(Float64Array);
    expect(sameBits(made.value.mean, given.value.mean)).toBe(true);
    expect(sameBits(made.value.var, given.value.var)).toBe(true);
    // Not a copy of an array of zeros: the batch's own statistics.
    expect(made.value.mean[4]).toBeCloseTo(((x[4] + x[C + 4]) / 2), 5);
    expect(made.value.mean[C - 1]).toBeCloseTo(((x[C - 1] + x[2 * C - 1]) / 2), 5);
    pool.free(x);
    pool.free(out);
  });

  it("batchNormBackward's and a float32 module's dWeight and dBias: in slices, new or into the arrays given, the same bits", async () => {
    const x = input(62);
    const dy = pool.alloc(2 * C);
    dy.set(randomTensor(shape, 'float32', 63));
    const out = pool.alloc(2 * C);
    const weight = randomVector(C, 'float32', 64, 0.5, 2) as Float32Array;
    const y = pool.alloc(2 * C);
    const fwd = await batchNorm(x, shape, { training: true, weight, pool, out: y });
    const opts = { weight, mean: fwd.mean, var: fwd.var, pool, out };
    const given = await turnsOf(() => batchNormBackward(x, dy, shape, { ...opts, dWeight: new Float64Array(C), dBias: new Float64Array(C) }));
    const made = await turnsOf(() => batchNormBackward(x, dy, shape, opts));
    // weight, bias, mean and var put in one sliced pass; dWeight and dBias copied in slices.
    expect(given.turns).toBeGreaterThanOrEqual(SLICES + 2 * SLICES);
    expect(made.turns).toBeGreaterThanOrEqual(SLICES + 2 * SLICES);
    expect(sameBits(made.value.dWeight!, given.value.dWeight!)).toBe(true);
    expect(sameBits(made.value.dBias!, given.value.dBias!)).toBe(true);
    // dBias is Σdy.
    expect(made.value.dBias![3]).toBeCloseTo(dy[3] + dy[C + 3], 5);
    expect(made.value.dBias![C - 2]).toBeCloseTo(dy[C - 2] + dy[2 * C - 2], 5);

    // A float32 module's gradients are float32.
    const bn = new BatchNorm(C, { pool });
    bn.weight!.set(weight);
    await bn.forward(x, shape, { out: y });
    const module = await turnsOf(() => bn.backward(dy, { out }));
    expect(module.turns).toBeGreaterThanOrEqual(SLICES + 2 * SLICES);
    expect(module.value.dWeight).toBeInstanceOf(Float32Array);
    expect(sameBits(module.value.dBias!, Float32Array.from(given.value.dBias!))).toBe(true);
    expect(sameBits(module.value.dWeight!, Float32Array.from(given.value.dWeight!))).toBe(true);
    for (const a of [x, dy, out, y]) pool.free(a);
  });
});

describe("per-channel results of inline calls on the pool's private memory", () => {
  it('copied in slices while other calls grow that memory (which detaches its buffer): the same bits as alone', async () => {
    // Plain arrays run inline on the pool's private memory. Calls that stage larger inputs,
    // started one a turn from the last turn of the first one's puts (SLICES of them, weight and
    // bias), so during its copies of the results, grow it, each larger than the one before, and
    // the views made before a growth are detached.
    const x = randomTensor(shape, 'float32', 91, (c) => ({ offset: (c % 7) - 3, spread: 1 + (c % 2) }));
    const larger = [3, 4, 5, 6, 7].map((rows) => randomTensor([rows, C], 'float32', 90 + rows));
    const alone = await batchNorm(x, shape, { training: true, pool });
    const grown = pool.memoryStats.privateByteLength;
    let turn = 0;
    const others: Promise<unknown>[] = [];
    const stop = everyTurn(() => {
      turn++;
      const next = larger[others.length];
      if (turn >= SLICES && next !== undefined) others.push(batchNorm(next, [next.length / C, C], { training: true, pool }));
    });
    // The mean into an array given (copyInto), the variance into a new one (newCopy).
    const racing = batchNorm(x, shape, { training: true, pool, meanOut: new Float64Array(C) });
    await Promise.allSettled([racing]);
    stop();
    // Every call settled before any assertion (and the pool's close), whatever this one did.
    await Promise.allSettled(others);
    const raced = await racing;
    await Promise.all(others);
    expect(others.length).toBeGreaterThan(0);
    expect(pool.memoryStats.privateByteLength).toBeGreaterThan(grown);
    expect(sameBits(raced.y, alone.y)).toBe(true);
    expect(sameBits(raced.mean, alone.mean)).toBe(true);
    expect(sameBits(raced.var, alone.var)).toBe(true);
  });
});

describe('per-channel inputs over more than CHANNEL_SLICE channels', () => {
  /** An eval module with running statistics, weight and bias of its own, different in every channel. */
  function evalModule(): BatchNorm {
    const bn = new BatchNorm(C, { pool }).eval();
    bn.runningMean!.set(randomVector(C, 'float32', 71, -3, 3));
    bn.runningVar!.set(randomVector(C, 'float32', 72, 0.25, 4));
    bn.weight!.set(randomVector(C, 'float32', 73, 0.5, 2));
    bn.bias!.set(randomVector(C, 'float32', 74, -1, 1));
    return bn;
  }

  it('an eval forward puts its four arrays on the pool in slices between turns, with the values of the arrays', async () => {
    const x = input(75);
    const out = pool.alloc(2 * C);
    const bn = evalModule();
    const { turns } = await turnsOf(() => bn.forward(x, shape, { out }));
    // Four arrays in one sliced pass, then the running statistics' copies (the saved mean, var).
    expect(turns).toBeGreaterThanOrEqual(SLICES + 2 * SLICES);
    for (const c of [0, CHANNEL_SLICE - 1, CHANNEL_SLICE, 2 * CHANNEL_SLICE + 1, C - 1]) {
      const expected = (x[C + c] - bn.runningMean![c]) / Math.sqrt(bn.runningVar![c] + 1e-5) * bn.weight![c] + bn.bias![c];
      expect(out[C + c]).toBeCloseTo(expected, 4);
    }
    pool.free(x);
    pool.free(out);
  });

  it('an abort during the puts stops the call there: it rejects with an AbortError and writes no output', async () => {
    const x = input(76);
    const out = pool.alloc(2 * C).fill(7);
    const bn = evalModule();
    const controller = new AbortController();
    setImmediate(() => controller.abort());
    await expect(bn.forward(x, shape, { out, signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    expect(out.every((v) => v === 7)).toBe(true);
    pool.free(x);
    pool.free(out);
  });

  it('weight detached during the puts: the call rejects with an ArgumentError, writes no output and changes nothing', async () => {
    const x = input(77);
    const out = pool.alloc(2 * C).fill(7);
    const weight = randomVector(C, 'float32', 78, 0.5, 2) as Float32Array;
    const runningMean = new Float32Array(C).fill(0.5);
    const runningVar = new Float32Array(C).fill(2);
    setImmediate(() => detached(weight));
    const call = batchNorm(x, shape, { training: false, weight, runningMean, runningVar, pool, out });
    await expect(call).rejects.toBeInstanceOf(ArgumentError);
    await expect(call).rejects.toThrow(/weight/);
    expect(out.every((v) => v === 7)).toBe(true);
    expect(runningMean.every((v) => v === 0.5) && runningVar.every((v) => v === 2)).toBe(true);
    pool.free(x);
    pool.free(out);
  });
});

describe('the running update over more than CHANNEL_SLICE channels', () => {
  it("a module's: made in slices between turns, the buffers changed in one piece at the end, the bits of one loop", async () => {
    const x = input(81);
    const out = pool.alloc(2 * C);
    const bn = new BatchNorm(C, { pool });
    bn.runningMean!.set(randomVector(C, 'float32', 82, -1, 1));
    bn.runningVar!.set(randomVector(C, 'float32', 83, 0.5, 2));
    const [mean0, var0] = [bn.runningMean!.slice(), bn.runningVar!.slice()];
    const untracked = await turnsOf(() => new BatchNorm(C, { pool, trackRunningStats: false }).forward(x, shape, { out }));
    // At every turn: whether the first and the last channel have their new values yet.
    const seen: string[] = [];
    const counter = turnCounter();
    const stop = everyTurn(() => { seen.push(`${bn.runningMean![0] !== mean0[0]},${bn.runningVar![C - 1] !== var0[C - 1]}`); });
    await bn.forward(x, shape, { out });
    stop();
    counter.stop();
    // Three slices of the update more than the same forward without running statistics.
    expect(counter.turns()).toBeGreaterThanOrEqual(untracked.turns + SLICES);
    expect(seen.length).toBeGreaterThan(SLICES);
    expect(seen.every((s) => s === 'false,false')).toBe(true);
    const { mean, var: variance } = await batchNorm(x, shape, { training: true, pool, out });
    expect(sameBits(bn.runningMean!, updated(mean0, mean, 0.1))).toBe(true);
    expect(sameBits(bn.runningVar!, updated(var0, variance, 0.1, 2))).toBe(true);
    expect(bn.numBatchesTracked).toBe(1);
    pool.free(x);
    pool.free(out);
  });

  it('loadStateDict during the turns: the update is applied on what it wrote last, as by a call that finished after it', async () => {
    const x = input(84);
    const out = pool.alloc(2 * C);
    const bn = new BatchNorm(C, { pool });
    // At every turn of the call a new state: running mean k, variance 1 + k, k + 100 batches.
    let k = 0;
    const stop = everyTurn(() => {
      k++;
      bn.loadStateDict({
        ...bn.stateDict(), running_mean: new Float32Array(C).fill(k), running_var: new Float32Array(C).fill(1 + k), num_batches_tracked: k + 100,
      });
    });
    await bn.forward(x, shape, { out });
    stop();
    // Loaded more times than the update has slices: some of them during its turns.
    expect(k).toBeGreaterThan(2 * SLICES);
    const { mean, var: variance } = await batchNorm(x, shape, { training: true, pool, out });
    expect(bn.numBatchesTracked).toBe(k + 101);
    expect(sameBits(bn.runningMean!, updated(new Float32Array(C).fill(k), mean, 0.1))).toBe(true);
    expect(sameBits(bn.runningVar!, updated(new Float32Array(C).fill(1 + k), variance, 0.1, 2))).toBe(true);
    pool.free(x);
    pool.free(out);
  });

  it("resetRunningStats during the update's turns: the update is made again on the reset statistics, the first batch after it", async () => {
    const x = input(88);
    const out = pool.alloc(2 * C);
    const bn = new BatchNorm(C, { pool });
    bn.loadStateDict({ ...bn.stateDict(), running_mean: new Float32Array(C).fill(3), num_batches_tracked: 4 });
    // The update's scratch on the pool (two float32 arrays of C) is live during its turns only;
    // the call's own scratch, freed before it, is far larger.
    const base = pool.memoryStats.liveBytes;
    let resets = 0;
    const stop = everyTurn(() => {
      const live = pool.memoryStats.liveBytes - base;
      if (resets === 0 && live > 0 && live < 3 * 4 * C) {
        bn.resetRunningStats();
        resets++;
      }
    });
    await bn.forward(x, shape, { out });
    stop();
    expect(resets).toBe(1);
    const { mean, var: variance } = await batchNorm(x, shape, { training: true, pool, out });
    expect(bn.numBatchesTracked).toBe(1);
    expect(sameBits(bn.runningMean!, updated(new Float32Array(C), mean, 0.1))).toBe(true);
    expect(sameBits(bn.runningVar!, updated(new Float32Array(C).fill(1), variance, 0.1, 2))).toBe(true);
    pool.free(x);
    pool.free(out);
  });

  it('where the pool gives the first scratch array but not the second: that one given back, one loop', async () => {
    // The call's own scratch, freed just before, is larger than the update's, but a call beside
    // it may have taken it: the pool's allocations, the second refused, through a Proxy.
    const internals = poolInternals(pool);
    const given: number[] = [];
    const arena = new Proxy(internals.arena, {
      get(target, key) {
        if (key === 'alloc') {
          return (bytes: number): number => {
            const at = given.length === 1 ? -1 : target.alloc(bytes);
            given.push(at);
            return at;
          };
        }
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const ctx = { arena, views: internals.views } as unknown as PoolInternals;
    const runningMean = randomVector(C, 'float32', 91, -1, 1);
    const runningVar = randomVector(C, 'float32', 92, 0.5, 2);
    const mean = randomVector(C, 'float64', 93, -3, 3) as Float64Array;
    const variance = randomVector(C, 'float64', 94, 0.1, 4) as Float64Array;
    const [mean0, var0] = [runningMean.slice(), runningVar.slice()];
    const live = pool.memoryStats.liveBytes;
    const update = await turnsOf(() => updateRunningStats(ctx, runningMean, runningVar, mean, variance, 7, 0.3));
    expect(update.value).toBe(true);
    expect(given.length).toBe(2);
    expect(given[0]).toBeGreaterThanOrEqual(0);
    expect(pool.memoryStats.liveBytes).toBe(live);
    // One loop, no turn (the sliced update takes SLICES), with its bits.
    expect(update.turns).toBe(0);
    const [oneMean, oneVar] = [mean0.slice(), var0.slice()];
    runningStatsUpdate(oneMean, oneVar, mean, variance, 7, 0.3);
    expect(sameBits(runningMean, oneMean)).toBe(true);
    expect(sameBits(runningVar, oneVar)).toBe(true);
    for (const c of [0, CHANNEL_SLICE, C - 1]) {
      expect(runningMean[c]).toBe(Math.fround((1 - 0.3) * mean0[c] + 0.3 * mean[c]));
      expect(runningVar[c]).toBe(Math.fround((1 - 0.3) * var0[c] + 0.3 * variance[c] * (7 / 6)));
    }
  });

  it("batchNorm's, on the caller's float64 buffers: made in slices, the bits of one loop", async () => {
    const x = input(85);
    const out = pool.alloc(2 * C);
    const runningMean = randomVector(C, 'float64', 86, -1, 1) as Float64Array;
    const runningVar = randomVector(C, 'float64', 87, 0.5, 2) as Float64Array;
    const [mean0, var0] = [runningMean.slice(), runningVar.slice()];
    const untracked = await turnsOf(() => batchNorm(x, shape, { training: true, pool, out }));
    const tracked = await turnsOf(() => batchNorm(x, shape, { training: true, pool, out, runningMean, runningVar, momentum: 0.25 }));
    expect(tracked.turns).toBeGreaterThanOrEqual(untracked.turns + SLICES);
    const { mean, var: variance } = tracked.value;
    const expected = (r0: Float64Array, batch: Float64Array, unbias: number): Float64Array => (
      Float64Array.from(r0, (r, c) => (1 - 0.25) * r + 0.25 * batch[c] * unbias)
    );
    expect(sameBits(runningMean, expected(mean0, mean, 1))).toBe(true);
    expect(sameBits(runningVar, expected(var0, variance, 2))).toBe(true);
    pool.free(x);
    pool.free(out);
  });
});

describe('8-bit input over more than CHANNEL_SLICE channels', () => {
  // x and out on the pool, inline: every turn such a call takes is one of its per-channel steps'.
  const bytesInput = (channels: number, seed: number): Uint8Array => {
    const x = pool.alloc(2 * channels, 'uint8');
    x.set(randomBytes(2 * channels, seed));
    return x;
  };
  const statistics = (channels: number, seed: number) => ({
    runningMean: randomVector(channels, 'float32', seed, 40, 200) as Float32Array,
    runningVar: randomVector(channels, 'float32', seed + 1, 100, 4000) as Float32Array,
    weight: randomVector(channels, 'float32', seed + 2, 0.5, 2) as Float32Array,
    bias: randomVector(channels, 'float32', seed + 3, -1, 1) as Float32Array,
  });

  it('an eval forward makes its parameters in slices between turns (none at CHANNEL_SLICE), each output as the kernels make it', async () => {
    for (const [channels, turns] of [[CHANNEL_SLICE, 0], [C, SLICES]] as const) {
      const x = bytesInput(channels, 71);
      const out = pool.alloc(2 * channels).fill(NaN);
      const p = statistics(channels, 72);
      const { turns: ticks } = await turnsOf(() => batchNorm(x, [2, channels], { ...p, eps: 1e-5, pool, out }));
      if (turns === 0) expect(ticks).toBe(0);
      else expect(ticks).toBeGreaterThanOrEqual(turns);
      // Every value, as the float32 kernels compute it from the float32 parameters (hi, sc, bs).
      const want = Float32Array.from(x, (v, i) => {
        const c = i % channels;
        const scale = Math.fround(p.weight[c] / Math.sqrt(p.runningVar[c] + 1e-5));
        const hi = Math.fround(p.runningMean[c]);
        const shift = Math.fround(p.bias[c] - (p.runningMean[c] - hi) * scale);
        return Math.fround(Math.fround(v - hi) * scale) + shift;
      });
      expect(sameBits(out, want)).toBe(true);
      pool.free(x);
      pool.free(out);
    }
  });

  it('the running variance detached during those turns: an ArgumentError, and no output written', async () => {
    const x = bytesInput(C, 73);
    const out = pool.alloc(2 * C).fill(NaN);
    const p = statistics(C, 74);
    const call = batchNorm(x, shape, { ...p, pool, out });
    setImmediate(() => detached(p.runningVar));
    await expect(call).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG',
      message: `the running variance must keep its ${C} values while a call uses it; its buffer was detached or resized, and it now has 0`,
    });
    expect(out.every(Number.isNaN)).toBe(true);
    pool.free(x);
    pool.free(out);
  });

  it("ChannelStats.fromBatch makes each channel's values from the exact sums in slices between turns", async () => {
    const x = bytesInput(C, 75);
    const { value: stats, turns } = await turnsOf(() => ChannelStats.fromBatch(x, shape, { pool }));
    // The sums' positions, then the channels' values.
    expect(turns).toBeGreaterThanOrEqual(2 * SLICES);
    const mean = new Float64Array(C);
    const m2 = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      const [a, b] = [x[c], x[C + c]];
      mean[c] = (a + b) / 2;
      m2[c] = (2 * (a * a + b * b) - (a + b) ** 2) / 2;
    }
    expect(stats.count.every((n) => n === 2)).toBe(true);
    expect(sameBits(stats.mean(), mean)).toBe(true);
    expect(sameBits(stats.m2, m2)).toBe(true);
    pool.free(x);
  });
});
