/**
 * A call's per-channel results copied off the pool into new arrays (src/channels.ts): over more
 * than CHANNEL_SLICE channels, in slices with a turn of the event loop before each, the same bits
 * as into arrays the caller gives (sync-wide.test.ts has a synced forward's and backward's).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANNEL_SLICE } from '../dist/src/channels.js';
import { BatchNorm, batchNorm, batchNormBackward, Pool } from '../dist/src/index.js';
import { randomTensor, randomVector, sameBits } from './helpers/data.js';
import { turnsOf } from './helpers/turns.js';

// Inline, with x, dy and the outputs on the pool: no worker and no copy of x, so every turn a
// call takes is one of its per-channel steps'.
let pool: Pool;
beforeAll(async () => {
  pool = new Pool({ threads: 1, inlineThreshold: 1 << 21 });
  // Started (its kernels compiled, off this thread) before any turns are counted.
  await pool.ready;
});
afterAll(() => pool.close());

describe('new per-channel result arrays over more than CHANNEL_SLICE channels', () => {
  const C = 2 * CHANNEL_SLICE + 5; // three slices
  const shape = [2, C];

  it("batchNorm's mean and var: made in slices between turns, as written into meanOut and varOut", async () => {
    const x = pool.alloc(2 * C);
    x.set(randomTensor(shape, 'float32', 61, (c) => ({ offset: (c % 9) - 4, spread: 0.5 + (c % 3) })));
    const out = pool.alloc(2 * C);
    const given = await turnsOf(() => batchNorm(x, shape, {
      training: true, pool, out, meanOut: new Float64Array(C), varOut: new Float64Array(C),
    }));
    const made = await turnsOf(() => batchNorm(x, shape, { training: true, pool, out }));
    expect(given.turns).toBe(0);
    // Two arrays of three slices, a turn before each.
    expect(made.turns).toBeGreaterThanOrEqual(2 * 3);
    expect(made.value.mean).toBeInstanceOf(Float64Array);
    expect(sameBits(made.value.mean, given.value.mean)).toBe(true);
    expect(sameBits(made.value.var, given.value.var)).toBe(true);
    // Not a copy of an array of zeros: the batch's own statistics.
    expect(made.value.mean[4]).toBeCloseTo(((x[4] + x[C + 4]) / 2), 5);
    pool.free(x);
    pool.free(out);
  });

  it("batchNormBackward's and a float32 module's dWeight and dBias: made in slices, as written into the arrays given", async () => {
    const x = pool.alloc(2 * C);
    x.set(randomTensor(shape, 'float32', 62));
    const dy = pool.alloc(2 * C);
    dy.set(randomTensor(shape, 'float32', 63));
    const out = pool.alloc(2 * C);
    const weight = randomVector(C, 'float32', 64, 0.5, 2) as Float32Array;
    const y = pool.alloc(2 * C);
    const fwd = await batchNorm(x, shape, { training: true, weight, pool, out: y });
    const opts = { weight, mean: fwd.mean, var: fwd.var, pool, out };
    const given = await turnsOf(() => batchNormBackward(x, dy, shape, { ...opts, dWeight: new Float64Array(C), dBias: new Float64Array(C) }));
    const made = await turnsOf(() => batchNormBackward(x, dy, shape, opts));
    expect(given.turns).toBe(0);
    expect(made.turns).toBeGreaterThanOrEqual(2 * 3);
    expect(sameBits(made.value.dWeight!, given.value.dWeight!)).toBe(true);
    expect(sameBits(made.value.dBias!, given.value.dBias!)).toBe(true);
    // dBias is Σdy.
    expect(made.value.dBias![3]).toBeCloseTo(dy[3] + dy[C + 3], 5);

    // A float32 module's gradients are float32.
    const bn = new BatchNorm(C, { pool });
    bn.weight!.set(weight);
    await bn.forward(x, shape, { out: y });
    const module = await turnsOf(() => bn.backward(dy, { out }));
    expect(module.turns).toBeGreaterThanOrEqual(2 * 3);
    expect(module.value.dWeight).toBeInstanceOf(Float32Array);
    expect(sameBits(module.value.dBias!, Float32Array.from(given.value.dBias!))).toBe(true);
    expect(sameBits(module.value.dWeight!, Float32Array.from(given.value.dWeight!))).toBe(true);
    for (const a of [x, dy, out, y]) pool.free(a);
  });
});
