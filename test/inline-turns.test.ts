/**
 * Turns of the event loop between inline calls made at once (src/inline-turns.ts): a burst of
 * small calls, awaited together, lets the event loop turn every INLINE_TURN_ELEMENTS elements of
 * them, and once INLINE_TURN_MS passed, with the bits each call gives alone; a lone call takes
 * no turn, nor does a synced forward between its two parts; an abort while a call waits for its
 * turn stops it before any work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, BatchNorm, batchNorm, Pool } from '../dist/src/index.js';
import { INLINE_TURN_ELEMENTS, INLINE_TURN_MS } from '../dist/src/inline-turns.js';
import { randomTensor, rng, sameBits } from './helpers/data.js';
import { oneTurn, turnsOf } from './helpers/turns.js';

let pool: Pool;
beforeAll(async () => {
  pool = new Pool({ threads: 2 });
  await pool.ready;
});
afterAll(() => pool.close());

describe('inline calls made at once', () => {
  it('let the event loop turn every INLINE_TURN_ELEMENTS elements, each with the bits it gives alone', async () => {
    // 64 RGB images of 224x224 from a decoder (channels last, 8-bit) to a model's CHW input, and 16
    // training forwards of four modules: all inline (under the default threshold).
    const image = [1, 224, 224, 3];
    const pixels = image.reduce((a, b) => a * b);
    const rand = rng(3);
    const images = Array.from({ length: 64 }, () => Uint8Array.from({ length: pixels }, () => Math.floor(256 * rand())));
    const runningMean = Float64Array.from([123.675, 116.28, 103.53]);
    const runningVar = Float64Array.from([58.395 ** 2, 57.12 ** 2, 57.375 ** 2]);
    const shape = [4, 3, 128, 128];
    const xs = Array.from({ length: 16 }, (_, i) => randomTensor(shape, 'float32', 10 + i) as Float32Array);
    expect(pixels).toBeLessThanOrEqual(pool.inlineThreshold);
    expect(xs[0].length).toBeLessThanOrEqual(pool.inlineThreshold);
    const modules = () => Array.from({ length: 4 }, () => new BatchNorm(3, { pool }));
    const burst = (mods: BatchNorm[]) => [
      ...images.map((x) => batchNorm(x, image, {
        pool, runningMean, runningVar, layout: 'channels-last', outLayout: 'channels-first',
      }).then((r) => [r.y])),
      ...xs.map((x, i) => mods[i % 4].forward(x, shape).then((y) => [y, mods[i % 4].runningMean!])),
    ];
    await oneTurn();
    const { value: together, turns } = await turnsOf(() => Promise.all(burst(modules())));
    const elements = 64 * pixels + 16 * xs[0].length;
    // A turn at least every INLINE_TURN_ELEMENTS elements (each call counted whole, so a few more).
    expect(turns).toBeGreaterThanOrEqual(Math.floor(elements / INLINE_TURN_ELEMENTS) - 1);
    // One at a time, each after a turn: the same bits (a module's calls run in call order either way).
    const alone: ArrayLike<number>[][] = [];
    for (const x of images) {
      await oneTurn();
      alone.push([(await batchNorm(x, image, { pool, runningMean, runningVar, layout: 'channels-last', outLayout: 'channels-first' })).y]);
    }
    const fresh = modules();
    for (const [i, x] of xs.entries()) {
      await oneTurn();
      const y = await fresh[i % 4].forward(x, shape);
      alone.push([y, fresh[i % 4].runningMean!.slice()]);
    }
    // The outputs, and each module's running mean after its last call.
    together.forEach((arrays, i) => expect(sameBits(arrays[0], alone[i][0]), `call ${i}`).toBe(true));
    for (let m = 0; m < 4; m++) expect(sameBits(fresh[m].runningMean!, together[64 + 12 + m][1]), `module ${m}`).toBe(true);
  });

  it('let the event loop turn once INLINE_TURN_MS passed, however few their elements', async () => {
    // 400 evals of 4096 elements queued on one module: 1.6M elements, under the element budget,
    // but each call takes microseconds of the calling thread (over 2.5 µs on any machine this
    // runs on), so the calls run for over INLINE_TURN_MS and at least one waits for a turn.
    const shape = [16, 16, 16];
    const calls = 400;
    expect(calls * 4096).toBeLessThan(INLINE_TURN_ELEMENTS);
    expect(INLINE_TURN_MS).toBeLessThanOrEqual(1);
    const x = randomTensor(shape, 'float32', 30) as Float32Array;
    const bn = new BatchNorm(16, { pool }).eval();
    const alone = await bn.forward(x, shape);
    await oneTurn();
    const { value: ys, turns } = await turnsOf(() => Promise.all(Array.from({ length: calls }, () => bn.forward(x, shape))));
    expect(turns).toBeGreaterThanOrEqual(1);
    ys.forEach((y, i) => expect(sameBits(y, alone), `call ${i}`).toBe(true));
  });

  it('the second part of a synced forward never waits for a turn: the call passed the check at its start', async () => {
    // 1,769,472 elements a part, inline on a pool with a larger threshold: the statistics and
    // then the normalization, 3.5M elements together, past INLINE_TURN_ELEMENTS, with no turn
    // between them (the hook answers at once). x and out on the pool: no copy, which would pause
    // between its slices.
    const big = new Pool({ threads: 1, inlineThreshold: INLINE_TURN_ELEMENTS });
    try {
      const shape = [16, 3, 192, 192];
      const x = big.alloc(shape.reduce((a, b) => a * b));
      x.set(randomTensor(shape, 'float32', 40));
      const out = big.alloc(x.length);
      expect(x.length).toBeLessThanOrEqual(INLINE_TURN_ELEMENTS);
      expect(2 * x.length).toBeGreaterThan(INLINE_TURN_ELEMENTS);
      const synced = (): Promise<unknown> => new BatchNorm(3, { pool: big }).forward(x, shape, { out, reduceStats: (local) => local });
      await synced();
      const alone = out.slice();
      await oneTurn();
      const { turns } = await turnsOf(synced);
      expect(turns).toBe(0);
      expect(sameBits(out, alone)).toBe(true);
    } finally {
      await big.close();
    }
  });

  it('a lone inline call takes no turn', async () => {
    const shape = [8, 16, 32, 32];
    const x = randomTensor(shape, 'float32', 5);
    const bn = new BatchNorm(16, { pool });
    for (let i = 0; i < 3; i++) {
      await oneTurn();
      const { turns } = await turnsOf(() => bn.forward(x, shape));
      expect(turns).toBe(0);
    }
  });

  it('an abort while a call waits for its turn stops it before any work', async () => {
    const shape = [16, 3, 128, 128]; // 786,432 elements: the third call of a fresh count waits
    expect(3 * 786_432).toBeGreaterThan(INLINE_TURN_ELEMENTS);
    const xs = Array.from({ length: 3 }, (_, i) => randomTensor(shape, 'float32', 20 + i));
    const mods = xs.map(() => new BatchNorm(3, { pool }));
    await oneTurn();
    const controller = new AbortController();
    // Set before the calls: this immediate runs before the turn the third call waits for.
    setImmediate(() => controller.abort());
    const settled = await Promise.allSettled(xs.map((x, i) => mods[i].forward(x, shape, i === 2 ? { signal: controller.signal } : {})));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect((settled[2] as PromiseRejectedResult).reason).toBeInstanceOf(AbortError);
    expect(mods.map((m) => m.numBatchesTracked)).toEqual([1, 1, 0]);
    expect(Array.from(mods[2].runningMean!)).toEqual([0, 0, 0]);
  });
});
