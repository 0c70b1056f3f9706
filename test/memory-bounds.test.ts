/**
 * Every kind of call writes the pool's memory only inside the blocks it holds. The pool is filled
 * with sentinel arrays but for a hole, which grows a sentinel at a time until the call fits (for
 * the calls that copy a channel at a time, from where their arrays fit whole): its scratch and its
 * staging chunks, cut to the room there is, then fill the hole, so that a write past any of its
 * blocks lands on another of them or on a sentinel. Each call must give the bits it
 * gives on a pool with room, and leave every sentinel as it was but those inside its blocks
 * (recorded by wrapping the pool's allocator). Found wanting by a mutant: a dy staged one chunk
 * past its block gave the right gradients in every other test, its copy written over free memory.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { BatchNorm, ChannelStats, OutOfMemoryError, Pool, batchNorm, batchNormBackward } from '../dist/src/index.js';
import { poolInternals } from '../dist/src/pool-internals.js';
import { randomBytes } from './helpers/bytes.js';
import { type FloatArray, randomTensor, randomVector, sameBits } from './helpers/data.js';
import { recordingTasks } from './helpers/pools.js';

/**
 * A sentinel's float32 values: 64 bytes, the allocator's alignment and so the hole's step. Every
 * block is a whole number of them, so the smallest hole a call fits is the call's blocks exactly.
 */
const SENTINEL = 16;

const roomy = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
const pools: Pool[] = [roomy];
afterAll(() => Promise.all(pools.map((p) => p.close())));

const MiB = 1 << 20;

/**
 * A 32 MiB pool of one worker, which leaves the calling thread a core: past 2 Mi elements staged
 * whole, a fused call's tasks start at once and wait for each channel the calling thread copies in.
 */
function oneWorkerPool(): Pool {
  const pool = new Pool({ threads: 1, inlineThreshold: 0, grainSize: 1, maxMemory: 32 * MiB, initialMemory: 32 * MiB });
  pools.push(pool);
  return pool;
}

/** A 1 MiB pool of two workers (or `threads`) that runs every call on them. */
function smallPool(threads = 2): Pool {
  const pool = new Pool({ threads, inlineThreshold: 0, grainSize: 1, maxMemory: 1 << 20, initialMemory: 1 << 20 });
  pools.push(pool);
  return pool;
}

/**
 * Runs `call` in the smallest hole of whole sentinels it fits, from `fromBytes` up, checks the
 * sentinels, frees them, and returns its result and the hole's size in bytes. The blocks the call
 * allocates are recorded (the pool's `alloc`, wrapped), and every sentinel of the hole outside them
 * must keep its values too: a block that is short of what the call writes in it leaves the rest of
 * the hole free, as a staging chunk is cut to the room there is, and the write lands there. Past
 * `runBytes` of sentinels the rest of the pool is one array, which must keep its values as well.
 */
async function inHole<T>(
  pool: Pool, call: () => Promise<T>, { fromBytes = 4 * SENTINEL, runBytes = Infinity } = {},
): Promise<{ result: T; holeBytes: number }> {
  const live = pool.memoryStats.liveBytes;
  const arena = poolInternals(pool).arena;
  const blocks: [number, number][] = [];
  const alloc = arena.alloc;
  arena.alloc = function (bytes: number): number {
    const offset = alloc.call(this, bytes);
    if (offset >= 0) blocks.push([offset, offset + arena.sizeAt(offset)!]);
    return offset;
  };
  try {
    const first = 10;
    const sentinels: Float32Array[] = [];
    for (; sentinels.length < first || 4 * SENTINEL * (sentinels.length - first) < runBytes;) {
      let s: Float32Array;
      try {
        s = pool.alloc(SENTINEL);
      } catch (e) {
        expect(e).toBeInstanceOf(OutOfMemoryError);
        break;
      }
      sentinels.push(s);
    }
    const rest = sentinels.length === first + Math.ceil(runBytes / (4 * SENTINEL)) ? pool.alloc(arena.largestAllocatable() / 4) : null;
    rest?.fill(0.25);
    expect(() => pool.alloc(SENTINEL)).toThrow(OutOfMemoryError);
    expect(sentinels.length).toBeGreaterThan(1000);
    sentinels.forEach((s, i) => s.fill(i + 0.5));
    for (let freed = Math.ceil(fromBytes / (4 * SENTINEL)), f = 0; first + freed <= sentinels.length; freed++) {
      for (; f < freed; f++) pool.free(sentinels[first + f]);
      // The hole's sentinels again (a refused call may have written its own blocks there); the
      // others are never filled again, so a write on them by a refused call is caught too.
      for (let i = first; i < first + freed; i++) sentinels[i].fill(i + 0.5);
      blocks.length = 0;
      let result: T;
      try {
        result = await call();
      } catch (e) {
        expect(e).toBeInstanceOf(OutOfMemoryError);
        continue;
      }
      const holeAt = (i: number): boolean => i >= first && i < first + freed;
      const inBlock = (s: Float32Array): boolean => blocks.some(([a, b]) => s.byteOffset >= a && s.byteOffset < b);
      expect(blocks.length).toBeGreaterThan(0);
      expect(blocks.every(([a]) => a >= sentinels[first].byteOffset && a < sentinels[first + freed - 1].byteOffset + 4 * SENTINEL)).toBe(true);
      const clobbered = sentinels.map((_, i) => i)
        .filter((i) => (!holeAt(i) || !inBlock(sentinels[i])) && sentinels[i].some((v) => v !== i + 0.5));
      expect(clobbered).toEqual([]);
      expect(rest === null || rest.every((v) => v === 0.25)).toBe(true);
      sentinels.forEach((s, i) => { if (!holeAt(i)) pool.free(s); });
      if (rest !== null) pool.free(rest);
      expect(pool.memoryStats.liveBytes).toBe(live);
      return { result, holeBytes: freed * 4 * SENTINEL };
    }
    throw new Error('the call did not fit the whole pool');
  } finally {
    delete (arena as { alloc?: unknown }).alloc;
  }
}

/** `call`'s result: on the roomy pool as it is, on another in the smallest hole it fits (`inHole`). */
async function runOn<T>(pool: Pool, call: () => Promise<T>, hole?: Parameters<typeof inHole>[2]): Promise<T> {
  return pool === roomy ? call() : (await inHole(pool, call, hole)).result;
}

function expectSame(got: readonly (ArrayLike<number> | null | undefined)[], want: readonly (ArrayLike<number> | null | undefined)[]): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    expect(g, `result ${i}`).toBeTruthy();
    expect(sameBits(g!, want[i]!), `result ${i}`).toBe(true);
  });
}

describe('calls write only inside their own blocks of the pool', () => {
  it('a training forward from and into ordinary arrays (x staged, its output in place there)', async () => {
    const shape = [4, 6, 20, 20];
    const x = randomTensor(shape, 'float32', 31);
    const want = new BatchNorm(6, { pool: roomy });
    const wantY = await want.forward(x, shape);
    const pool = smallPool();
    const bn = new BatchNorm(6, { pool });
    const { result, holeBytes } = await inHole(pool, () => bn.forward(x, shape));
    expect(holeBytes).toBeGreaterThan(4096);
    expectSame([result, bn.runningMean, bn.runningVar], [wantY, want.runningMean, want.runningVar]);
    expect(bn.numBatchesTracked).toBe(1);
  });

  it('a float64 eval forward with ReLU, x on the pool and an ordinary out (the output staged)', async () => {
    const shape = [3, 5, 33, 17];
    const x0 = randomTensor(shape, 'float64', 32);
    const mean = randomVector(5, 'float64', 33, -0.5, 0.5);
    const want = new BatchNorm(5, { pool: roomy, dtype: 'float64', activation: 'relu' }).eval();
    want.runningMean!.set(mean);
    const wantY = await want.forward(x0, shape);
    const pool = smallPool();
    const x = pool.alloc(x0.length, 'float64');
    x.set(x0);
    const bn = new BatchNorm(5, { pool, dtype: 'float64', activation: 'relu' }).eval();
    bn.runningMean!.set(mean);
    const out = new Float64Array(x0.length);
    const { holeBytes } = await inHole(pool, () => bn.forward(x, shape, { out }));
    expect(holeBytes).toBeGreaterThan(4096);
    expectSame([out], [wantY]);
    expect(out.some((v) => v === 0) && out.some((v) => v > 0)).toBe(true);
  });

  it('a channels-last training forward from and into ordinary arrays', async () => {
    const shape = [8, 9, 9, 5];
    const x = randomTensor(shape, 'float32', 34);
    const want = new BatchNorm(5, { pool: roomy, layout: 'channels-last' });
    const wantY = await want.forward(x, shape);
    const pool = smallPool();
    const bn = new BatchNorm(5, { pool, layout: 'channels-last' });
    const { result } = await inHole(pool, () => bn.forward(x, shape));
    expectSame([result, bn.runningMean, bn.runningVar], [wantY, want.runningMean, want.runningVar]);
  });

  it('15 interleaved channels (the pattern kernels, whose scratch holds 60 lane positions): training forward and backward', async () => {
    // One row group: on two workers the first task's area takes it. On one worker the only task's
    // area is also the last of the call's scratch.
    const shape = [203, 15];
    const x = randomTensor(shape, 'float32', 48);
    const dy = randomTensor(shape, 'float32', 49);
    const results: FloatArray[][] = [];
    for (const p of [roomy, smallPool(), smallPool(1)]) {
      const bn = new BatchNorm(15, { pool: p });
      const y = await runOn(p, () => bn.forward(x, shape));
      const g = await runOn(p, () => bn.backward(dy));
      results.push([y, bn.runningMean!, bn.runningVar!, g.dx, g.dWeight!, g.dBias!]);
    }
    expectSame(results[1], results[0]);
    expectSame(results[2], results[0]);
  });

  it('a ReLU backward from ordinary arrays (x, dy and the mask staged)', async () => {
    const shape = [4, 3, 24, 24];
    const x = randomTensor(shape, 'float32', 35);
    const dy = randomTensor(shape, 'float32', 36);
    const results: FloatArray[][] = [];
    const pool = smallPool();
    for (const p of [roomy, pool]) {
      const bn = new BatchNorm(3, { pool: p, activation: 'relu' });
      await bn.forward(x, shape);
      const g = await runOn(p, () => bn.backward(dy));
      results.push([g.dx, g.dWeight!, g.dBias!]);
    }
    expectSame(results[1], results[0]);
  });

  it('one worker, plane mode: a ReLU training forward and its backward, their arrays copied in a channel at a time', async () => {
    // The fused tasks wait for each channel the calling thread copies in (x; for the backward dy
    // and the output too). The holes start where each call's arrays fit whole.
    const shape = [2, 4, 512, 520];
    const x = randomTensor(shape, 'float32', 46);
    const dy = randomTensor(shape, 'float32', 47);
    const pool = oneWorkerPool();
    const results: FloatArray[][] = [];
    for (const p of [roomy, pool]) {
      const bn = new BatchNorm(4, { pool: p, activation: 'relu' });
      const y = await runOn(p, () => bn.forward(x, shape), { fromBytes: 9 * MiB, runBytes: 10 * MiB });
      const g = await runOn(p, () => bn.backward(dy), { fromBytes: 25 * MiB, runBytes: 26 * MiB });
      results.push([y, bn.runningMean!, bn.runningVar!, g.dx, g.dWeight!, g.dBias!]);
    }
    expectSame(results[1], results[0]);
  });

  it('one worker, plane mode: a ReLU backward with x on the pool, dy and the mask copied in a channel at a time, dx written over dy there', async () => {
    // The fused tasks wait for each channel of dy and of the mask (the forward's fresh output) and
    // write dx over dy's staged copy while the calling thread copies the next channels in. The hole
    // starts where dy and the mask fit whole (16.25 MiB), as the call takes chunks in a smaller one.
    const shape = [2, 4, 512, 520];
    const x0 = randomTensor(shape, 'float32', 56);
    const dy = randomTensor(shape, 'float32', 57);
    const pool = oneWorkerPool();
    // Fused tasks that waited for their channels, in the call on the small pool.
    let awaited = 0;
    const results: FloatArray[][] = [];
    for (const p of [roomy, pool]) {
      const x = p.alloc(x0.length);
      x.set(x0);
      const bn = new BatchNorm(4, { pool: p, activation: 'relu' });
      await bn.forward(x, shape);
      awaited = 0;
      const g = await runOn(p, () => recordingTasks(p, (tasks) => {
        awaited += tasks.filter((t) => t.op === 'fused' && t.awaitStaged).length;
      }, () => bn.backward(dy)), { fromBytes: 16.5 * MiB, runBytes: 17.5 * MiB });
      results.push([g.dx, g.dWeight!, g.dBias!]);
      p.free(x);
    }
    expect(awaited).toBeGreaterThan(0);
    expectSame(results[1], results[0]);
  });

  it('an eval backward with x on the pool and dy ordinary (dy staged, dx written over it there)', async () => {
    const shape = [2, 7, 40];
    const x0 = randomTensor(shape, 'float64', 37);
    const dy = randomTensor(shape, 'float64', 38);
    const pool = smallPool();
    const x = pool.alloc(x0.length, 'float64');
    x.set(x0);
    const results: FloatArray[][] = [];
    for (const [p, input] of [[roomy, x0], [pool, x]] as const) {
      const bn = new BatchNorm(7, { pool: p, dtype: 'float64' }).eval();
      bn.runningVar!.fill(2.5);
      await bn.forward(input, shape);
      const g = await runOn(p, () => bn.backward(dy));
      results.push([g.dx, g.dWeight!, g.dBias!]);
    }
    expectSame(results[1], results[0]);
  });

  it('a backward with x, the output and dx on the pool and dy ordinary (dy alone staged)', async () => {
    const shape = [4, 8, 16, 16];
    const n = 4 * 8 * 16 * 16;
    const x0 = randomTensor(shape, 'float32', 39);
    const dy = randomTensor(shape, 'float32', 40);
    const want = new BatchNorm(8, { pool: roomy });
    await want.forward(x0, shape);
    const wantG = await want.backward(dy);
    const pool = smallPool();
    const [x, out, dx] = [pool.alloc(n), pool.alloc(n), pool.alloc(n)];
    x.set(x0);
    const bn = new BatchNorm(8, { pool });
    await bn.forward(x, shape, { out });
    const { result } = await inHole(pool, () => bn.backward(dy, { out: dx }));
    expectSame([dx, result.dWeight, result.dBias], [wantG.dx, wantG.dWeight, wantG.dBias]);
  });

  it('the functional forms: a training forward into ordinary arrays, then its backward', async () => {
    const shape = [16, 12, 7];
    const x = randomTensor(shape, 'float32', 41);
    const dy = randomTensor(shape, 'float32', 42);
    const weight = randomVector(12, 'float32', 43, 0.5, 2);
    const pool = smallPool();
    const results: ArrayLike<number>[][] = [];
    for (const p of [roomy, pool]) {
      const run = async (): Promise<ArrayLike<number>[]> => {
        const out = new Float32Array(x.length);
        const meanOut = new Float64Array(12), varOut = new Float64Array(12);
        const r = await batchNorm(x, shape, { training: true, weight, out, meanOut, varOut, pool: p });
        const g = await batchNormBackward(x, dy, shape, { mean: r.mean, var: r.var, weight, training: true, pool: p });
        return [out, meanOut, varOut, g.dx, g.dWeight!, g.dBias!];
      };
      results.push(await runOn(p, run));
    }
    expectSame(results[1], results[0]);
  });

  it('8-bit pixels, channels last to channels first, into an ordinary out', async () => {
    const shape = [3, 20, 24, 3];
    const bytes = randomBytes(3 * 20 * 24 * 3, 44);
    const opts = {
      layout: 'channels-last', outLayout: 'channels-first', runningMean: Float64Array.of(120, 110, 100),
      runningVar: Float64Array.of(3000, 2500, 2800), eps: 1e-5,
    } as const;
    const want = await batchNorm(bytes, shape, { ...opts, pool: roomy });
    const pool = smallPool();
    const out = new Float32Array(bytes.length);
    await inHole(pool, () => batchNorm(bytes, shape, { ...opts, out, pool }));
    expectSame([out], [want.y]);
  });

  it('ChannelStats.fromBatch of an ordinary float64 array', async () => {
    const shape = [300, 37];
    const x = randomTensor(shape, 'float64', 45);
    const want = await ChannelStats.fromBatch(x, shape, { pool: roomy });
    const pool = smallPool();
    const { result } = await inHole(pool, () => ChannelStats.fromBatch(x, shape, { pool }));
    expectSame([result.count, result.mean(), result.m2], [want.count, want.mean(), want.m2]);
  });
});
