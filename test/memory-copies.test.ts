/**
 * Copies on the calling thread: ordinary (unshared) arrays staged onto the pool and back, in
 * slices between turns of the event loop, and what a call does when its arrays change meanwhile
 * (memory.test.ts has the arena and the pool's own arrays).
 */
import { describe, expect, it } from 'vitest';
import { ArgumentError, BatchNorm, batchNorm, Pool } from '../dist/src/index.js';
import { COPY_SLICE_BYTES } from '../dist/src/placement.js';
import { poolInternals } from '../dist/src/pool-internals.js';
import { detached, randomTensor, rng, sameBits } from './helpers/data.js';
import { turnCounter, turnsOf } from './helpers/turns.js';

describe('copies on the calling thread', () => {
  // Ordinary (unshared) arrays can only be copied by the thread that owns them. Inline calls (a
  // threshold above the input's size) make every other step synchronous, so the event loop gets
  // a turn only where a copy pauses between slices.
  const shape = [8, 3, 131101]; // 12.6 MB of float32: four slices of 4 MiB
  const length = 8 * 3 * 131101;
  const slices = Math.ceil((length * 4) / COPY_SLICE_BYTES);

  it('copies a large ordinary input and output in slices, with the event loop running between them', async () => {
    expect(slices).toBe(4);
    const pool = new Pool({ threads: 2, inlineThreshold: 1e9 });
    const data = randomTensor(shape, 'float32', 11) as Float32Array;
    const dyData = randomTensor(shape, 'float32', 12) as Float32Array;
    // Reference: the same module state on pool arrays, which copy nothing.
    const xPool = pool.alloc(length);
    xPool.set(data);
    const dyPool = pool.alloc(length);
    dyPool.set(dyData);
    const refBn = new BatchNorm(3, { pool });
    const want = Float32Array.from(await refBn.forward(xPool, shape, { out: pool.alloc(length) }));
    const wantDx = Float32Array.from((await refBn.backward(dyPool, { out: pool.alloc(length) })).dx);

    const bn = new BatchNorm(3, { pool });
    const out = new Float32Array(length);
    const counter = turnCounter();
    const y = await bn.forward(data, shape, { out });
    const forwardTurns = counter.turns();
    const dx = new Float32Array(length);
    await bn.backward(dyData, { out: dx });
    counter.stop();
    // A pause every COPY_SLICE_BYTES of a copy. Forward: x in, y out. Backward: x and dy in (one
    // budget carried across the two), dx out.
    const pauses = (bytes: number): number => Math.ceil(bytes / COPY_SLICE_BYTES) - 1;
    expect(forwardTurns).toBeGreaterThanOrEqual(2 * pauses(length * 4));
    expect(counter.turns() - forwardTurns).toBeGreaterThanOrEqual(pauses(2 * length * 4) + pauses(length * 4));
    expect(y).toBe(out);
    expect(sameBits(out, want)).toBe(true);
    expect(sameBits(dx, wantDx)).toBe(true);
    expect(Array.from(bn.runningMean!)).toEqual(Array.from(refBn.runningMean!));
    await pool.close();
  });

  it('gives the event loop a turn every COPY_SLICE_BYTES of copies, from one staging chunk to the next', async () => {
    // A pool too small for x: inline calls stage it in chunks of under 1 MiB, each copied in and
    // out whole. One budget for all of a call's copies pauses every 4 MiB of them; a budget a
    // copy had paused nowhere, every chunk being smaller than a slice.
    const MiB = 1 << 20;
    const pool = new Pool({ threads: 1, inlineThreshold: 1e9, maxMemory: 2 * MiB, initialMemory: MiB });
    const data = randomTensor(shape, 'float32', 14) as Float32Array;
    const dyData = randomTensor(shape, 'float32', 15) as Float32Array;
    const big = new Pool({ threads: 2, inlineThreshold: 1e9 });
    const refBn = new BatchNorm(3, { pool: big });
    const want = Float32Array.from(await refBn.forward(data, shape));
    const wantDx = Float32Array.from((await refBn.backward(dyData)).dx);
    refBn.eval();
    const wantEval = Float32Array.from(await refBn.forward(data, shape));

    const bn = new BatchNorm(3, { pool });
    const pauses = (bytes: number): number => Math.ceil(bytes / COPY_SLICE_BYTES) - 1;
    const out = new Float32Array(length);
    const train = await turnsOf(() => bn.forward(data, shape, { out }));
    expect(sameBits(out, want)).toBe(true);
    // x in (for the statistics, then again to normalize: the chunks do not stay), y out.
    expect(train.turns).toBeGreaterThanOrEqual(pauses(3 * length * 4));
    const dx = new Float32Array(length);
    const backward = await turnsOf(() => bn.backward(dyData, { out: dx }));
    expect(sameBits(dx, wantDx)).toBe(true);
    expect(backward.turns).toBeGreaterThanOrEqual(pauses(3 * length * 4));
    bn.eval();
    const evaluated = await turnsOf(() => bn.forward(data, shape, { out }));
    expect(sameBits(out, wantEval)).toBe(true);
    expect(evaluated.turns).toBeGreaterThanOrEqual(pauses(2 * length * 4));
    expect(poolInternals(pool).privateInline().arena.liveBytes).toBe(0);
    await Promise.all([pool.close(), big.close()]);
  });

  it('8-bit input staged in chunks: a turn every COPY_SLICE_BYTES of copies, bytes in and float32 out', async () => {
    const MiB = 1 << 20;
    const pool = new Pool({ threads: 1, inlineThreshold: 1e9, maxMemory: 2 * MiB, initialMemory: MiB });
    const big = new Pool({ threads: 1, inlineThreshold: 1e9 });
    const pixels = [16, 224, 224, 3];
    const n = 16 * 224 * 224 * 3;
    const r = rng(16);
    const bytes = Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
    const options = {
      layout: 'channels-last' as const, runningMean: Float32Array.of(120, 110, 100), runningVar: Float32Array.of(3000, 2900, 2800),
    };
    const want = (await batchNorm(bytes, pixels, { ...options, pool: big })).y;
    const out = new Float32Array(n);
    const { value, turns } = await turnsOf(() => batchNorm(bytes, pixels, { ...options, pool, out }));
    expect(value.y).toBe(out);
    expect(sameBits(out, want)).toBe(true);
    // 2.4 MB of bytes in and 9.6 MB of float32 out, in chunks of under 2 MiB of both.
    expect(turns).toBeGreaterThanOrEqual(Math.ceil((n + 4 * n) / COPY_SLICE_BYTES) - 1);
    await Promise.all([pool.close(), big.close()]);
  });

  it('stops between slices when aborted: no work done, no state changed, no memory kept', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 1e9 });
    const data = randomTensor(shape, 'float32', 13) as Float32Array;
    const bn = new BatchNorm(3, { pool });
    await bn.forward(data.subarray(0, 3 * 1000), [1000, 3]);
    const meanBefore = Float32Array.from(bn.runningMean!);
    const live = pool.memoryStats.liveBytes;
    const out = new Float32Array(length).fill(7);
    const controller = new AbortController();
    const call = bn.forward(data, shape, { out, signal: controller.signal });
    setImmediate(() => controller.abort());
    await expect(call).rejects.toMatchObject({ code: 'ABORT_ERR', name: 'AbortError' });
    expect(bn.numBatchesTracked).toBe(1);
    expect(sameBits(bn.runningMean!, meanBefore)).toBe(true);
    expect(out.every((v) => v === 7)).toBe(true);
    expect(pool.memoryStats.liveBytes).toBe(live);
    // Staged on the private memory of inline calls (nothing is on the pool): freed there too.
    expect(poolInternals(pool).privateInline().arena.liveBytes).toBe(0);
    // The module goes on working.
    const y = await bn.forward(data, shape, { out });
    expect(y).toBe(out);
    expect(bn.numBatchesTracked).toBe(2);
    await pool.close();
  });

  // A caller's array may lose its values while a call uses it: its owner transfers (detaches) its
  // buffer, or shrinks a resizable one, between two slices of a copy. Read on, a shorter view
  // copies fewer values without an error, and the call normalized whatever the staging memory held.
  const lost = (name: string, now: number): RegExp => new RegExp(`^${name} must keep its ${length} values while a call uses it; its buffer was detached or resized, and it now has ${now}$`);

  /** x (or out) on a resizable buffer: a length-tracking view, or one of fixed length. */
  function resizable(tracking: boolean): { array: Float32Array; shrink: () => void } {
    const buffer = new ArrayBuffer(length * 4, { maxByteLength: length * 4 });
    const array = tracking ? new Float32Array(buffer) : new Float32Array(buffer, 0, length);
    return { array, shrink: () => buffer.resize(400) };
  }

  it.each([
    ['x, a length-tracking view of a resizable buffer, shrunk', 'x', true, 100],
    ['x, a fixed-length view of a resizable buffer, shrunk', 'x', false, 0],
    ['out, a length-tracking view, shrunk', 'options.out', true, 100],
  ])('%s between slices: an ArgumentError, nothing changed, no memory kept', async (_, which, tracking, now) => {
    const pool = new Pool({ threads: 2, inlineThreshold: 1e9 });
    const data = randomTensor(shape, 'float32', 14) as Float32Array;
    const bn = new BatchNorm(3, { pool });
    await bn.forward(data.subarray(0, 3 * 1000), [1000, 3]);
    const before = [Float32Array.from(bn.runningMean!), Float32Array.from(bn.runningVar!)];
    const live = pool.memoryStats.liveBytes;
    const { array, shrink } = resizable(tracking);
    let x = data;
    let out: Float32Array = new Float32Array(length);
    if (which === 'x') {
      array.set(data);
      x = array;
    } else {
      out = array;
    }
    const call = bn.forward(x, shape, { out });
    setImmediate(shrink); // after the first slice of x's copy
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArgumentError);
    expect(err).toMatchObject({ code: 'ERR_BNPOOL_ARG', message: expect.stringMatching(lost(which, now)) });
    expect(bn.numBatchesTracked).toBe(1);
    expect(sameBits(bn.runningMean!, before[0])).toBe(true);
    expect(sameBits(bn.runningVar!, before[1])).toBe(true);
    expect(pool.memoryStats.liveBytes).toBe(live);
    expect(poolInternals(pool).privateInline().arena.liveBytes).toBe(0);
    // The module goes on working.
    const y = await bn.forward(data, shape);
    expect(bn.numBatchesTracked).toBe(2);
    expect(y.some(Number.isNaN)).toBe(false);
    await pool.close();
  });

  it('8-bit input shrunk between slices: an ArgumentError, no memory kept', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 1e9 });
    const dims = [32, 224, 224, 3]; // 4.8 MB: two slices of the bytes' copy
    const n = 32 * 224 * 224 * 3;
    const buffer = new ArrayBuffer(n, { maxByteLength: n });
    const rgb = new Uint8Array(buffer);
    const rand = rng(15);
    for (let i = 0; i < n; i++) rgb[i] = Math.floor(rand() * 256);
    const live = pool.memoryStats.liveBytes;
    const options = { layout: 'channels-last' as const, runningMean: Float64Array.of(120, 110, 100), runningVar: Float64Array.of(3600, 3500, 3400), pool };
    const call = batchNorm(rgb, dims, options);
    setImmediate(() => buffer.resize(999));
    await expect(call).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: `x must keep its ${n} values while a call uses it; its buffer was detached or resized, and it now has 999`,
    });
    expect(pool.memoryStats.liveBytes).toBe(live);
    expect(poolInternals(pool).privateInline().arena.liveBytes).toBe(0);
    // What is left of the bytes still normalizes.
    const y = await batchNorm(rgb, [333, 3], options);
    expect(y.y[0]).toBeCloseTo((rgb[0] - 120) / Math.sqrt(3600 + 1e-5), 5);
    await pool.close();
  });

  it('a backward whose saved input was detached since its forward says which array, not that dy has the wrong length', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const small = [4, 3, 10, 10];
    const x = randomTensor(small, 'float32', 16) as Float32Array;
    const bn = new BatchNorm(3, { pool });
    await bn.forward(x, small);
    detached(x);
    await expect(bn.backward(randomTensor(small, 'float32', 17) as Float32Array)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: 'the forward input x must keep its 1200 values while a call uses it; its buffer was detached or resized, and it now has 0',
    });
    await pool.close();
  });

  it("a module's weight detached before its call's turn: an ArgumentError naming it, nothing changed", async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const small = [4, 3, 10, 10];
    const bn = new BatchNorm(3, { pool });
    const calls = [bn.forward(randomTensor(small, 'float32', 19) as Float32Array, small), bn.forward(randomTensor(small, 'float32', 20) as Float32Array, small)];
    // Both calls were checked whole; neither has put its weight on the pool yet.
    detached(bn.weight!);
    for (const call of calls) {
      await expect(call).rejects.toMatchObject({
        code: 'ERR_BNPOOL_ARG', message: 'weight must keep its 3 values while a call uses it; its buffer was detached or resized, and it now has 0',
      });
    }
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0]);
    await pool.close();
  });

  // Either buffer: the update checks both before it writes either (a check of the mean alone
  // would leave the mean updated and the variance not).
  it.each(['mean', 'variance'] as const)('the running %s of a functional call shrunk while it runs: an ArgumentError, neither buffer updated', async (which) => {
    const pool = new Pool({ threads: 2, inlineThreshold: 1e9 });
    const data = randomTensor(shape, 'float32', 18) as Float32Array;
    const buffer = new ArrayBuffer(3 * 8, { maxByteLength: 3 * 8 });
    const shrinking = new Float64Array(buffer);
    const other = new Float64Array(3);
    const [runningMean, runningVar] = which === 'mean' ? [shrinking, other] : [other, shrinking];
    runningMean.fill(0.25);
    runningVar.fill(2);
    const call = batchNorm(data, shape, { training: true, runningMean, runningVar, pool });
    setImmediate(() => buffer.resize(8));
    await expect(call).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: `the running ${which} must keep its 3 values while a call uses it; its buffer was detached or resized, and it now has 1`,
    });
    expect(runningMean[0]).toBe(0.25);
    expect(runningVar[0]).toBe(2);
    expect(Array.from(other)).toEqual(which === 'mean' ? [2, 2, 2] : [0.25, 0.25, 0.25]);
    await pool.close();
  });

  // A module's running buffers are its own, but their owner can transfer them: the training
  // forward then fails at its commit, and counts nothing (numBatchesTracked is the update's last step).
  it.each(['mean', 'variance'] as const)("a module's running %s detached while a training forward runs: an ArgumentError, nothing updated", async (which) => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const bn = new BatchNorm(3, { pool });
    const [gone, kept] = which === 'mean' ? [bn.runningMean!, bn.runningVar!] : [bn.runningVar!, bn.runningMean!];
    const keptBefore = kept.slice();
    const call = bn.forward(randomTensor(shape, 'float32', 21) as Float32Array, shape);
    setImmediate(() => detached(gone));
    await expect(call).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: `the running ${which} must keep its 3 values while a call uses it; its buffer was detached or resized, and it now has 0`,
    });
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(kept)).toEqual(Array.from(keptBefore));
    await pool.close();
  });

  // The failed forward had its statistics in by then: they must not reach the saved forward that
  // a backward uses (the module's arrays for them are written only where no saved forward reads).
  it('a training forward that fails at its commit leaves the earlier forward saved whole: its backward as without the failed call', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const [bn, twin] = [new BatchNorm(3, { pool }), new BatchNorm(3, { pool })];
    const x = randomTensor(shape, 'float32', 22) as Float32Array;
    await bn.forward(x, shape);
    await twin.forward(x, shape);
    const call = bn.forward(randomTensor(shape, 'float32', 23) as Float32Array, shape);
    setImmediate(() => detached(bn.runningMean!));
    await expect(call).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    const dy = randomTensor(shape, 'float32', 24) as Float32Array;
    const [got, want] = [await bn.backward(dy), await twin.backward(dy)];
    expect(sameBits(got.dx, want.dx)).toBe(true);
    expect(Array.from(got.dWeight!)).toEqual(Array.from(want.dWeight!));
    expect(Array.from(got.dBias!)).toEqual(Array.from(want.dBias!));
    await pool.close();
  });
});
