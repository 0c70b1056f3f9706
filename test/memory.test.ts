/**
 * The memory arena (shared and private): allocation, reuse, coalescing, and views across growth;
 * pool arrays, and arrays in use by a call. The calling thread's copies of ordinary arrays are in
 * memory-copies.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, batchNormBackward, ChannelStats, Pool } from '../dist/src/index.js';
import { describe as describeValue } from '../dist/src/errors.js';
import { Arena } from '../dist/src/memory.js';
import { randomTensor, rng } from './helpers/data.js';
import { outputErrorRatio, referenceForward } from './helpers/reference.js';

describe('Arena', () => {
  it('hands out aligned, disjoint blocks and reuses freed ones', () => {
    const arena = new Arena(1 << 20, 1 << 22, 65536);
    const a = arena.alloc(100);
    const b = arena.alloc(1000);
    const c = arena.alloc(10);
    for (const off of [a, b, c]) expect(off % 64).toBe(0);
    expect(a).toBeGreaterThanOrEqual(65536);
    expect(b).toBeGreaterThanOrEqual(a + 100);
    expect(c).toBeGreaterThanOrEqual(b + 1000);
    arena.free(b);
    expect(arena.alloc(1000)).toBe(b);
  });

  it('coalesces neighbours, so a freed run serves a larger request', () => {
    const arena = new Arena(1 << 20, 1 << 20, 65536);
    const blocks = Array.from({ length: 8 }, () => arena.alloc(4096));
    for (const off of blocks) arena.free(off);
    expect(arena.liveBytes).toBe(0);
    expect(arena.alloc(8 * 4096)).toBe(blocks[0]);
  });

  it('over a private (non-shared) memory: growing detaches the old buffer, as engine and copyBox expect', () => {
    const arena = new Arena(65536 * 2, 65536 * 8, 65536, false);
    expect(arena.memory.buffer).toBeInstanceOf(ArrayBuffer);
    const a = arena.alloc(1000);
    const before = new Float32Array(arena.buffer(), a, 250).fill(1.5);
    const b = arena.alloc(65536 * 3); // more than is free: grows
    expect(b).toBeGreaterThan(a);
    expect(before.length).toBe(0); // detached
    const after = new Float32Array(arena.buffer(), a, 250);
    expect(after.every((v) => v === 1.5)).toBe(true); // the bytes moved with the memory
    expect(arena.owns(after)).toBe(true);
    expect(arena.alloc(65536 * 8)).toBe(-1);
  });

  it('random allocs and frees against a model: aligned, disjoint, in bounds, and whole again once all is freed', () => {
    for (const seed of [1, 2, 3]) {
      const rand = rng(seed);
      const reserved = 65536;
      const arena = new Arena(65536 * 2, 65536 * 64, reserved, seed !== 3);
      const live = new Map<number, number>(); // offset -> bytes asked for
      for (let step = 0; step < 3000; step++) {
        if (live.size > 0 && rand() < 0.45) {
          const offsets = [...live.keys()];
          const offset = offsets[Math.floor(rand() * offsets.length)];
          expect(arena.free(offset)).toBe(true);
          expect(arena.free(offset)).toBe(false); // not twice
          live.delete(offset);
          continue;
        }
        // Mostly small blocks, some of tens of KiB, a few that need the memory to grow.
        const r = rand();
        const bytes = r < 0.7 ? 1 + Math.floor(rand() * 2000) : r < 0.97 ? Math.floor(rand() * 100_000) : Math.floor(rand() * 1_500_000);
        const offset = arena.alloc(bytes);
        if (offset < 0) {
          // Refused only when no free range or growth could hold it.
          expect(arena.largestAllocatable(), `seed ${seed} step ${step}`).toBeLessThan(Math.max(bytes, 1));
          continue;
        }
        const overlaps = [...live].filter(([o, b]) => offset < o + Math.max(b, 1) && o < offset + Math.max(bytes, 1));
        const where = `seed ${seed} step ${step}: ${bytes} bytes at ${offset}`;
        if (offset % 64 !== 0 || offset < reserved || offset + bytes > arena.byteLength || overlaps.length > 0) {
          expect.fail(`${where}: misaligned, out of bounds or overlapping ${JSON.stringify(overlaps)}`);
        }
        live.set(offset, bytes);
      }
      let expected = 0;
      for (const b of live.values()) expected += Math.ceil(Math.max(b, 1) / 64) * 64;
      expect(arena.liveBytes).toBe(expected);
      for (const offset of live.keys()) arena.free(offset);
      expect(arena.liveBytes).toBe(0);
      // Every free range coalesced: the whole memory past the reserved bytes is one block again.
      expect(arena.largestAllocatable()).toBe(arena.maxBytes - reserved);
      expect(arena.alloc(arena.maxBytes - reserved)).toBe(reserved);
    }
  });

  it('grows on demand up to its cap and says no beyond it', () => {
    const arena = new Arena(65536 * 2, 65536 * 8, 65536);
    const before = arena.byteLength;
    const big = arena.alloc(65536 * 4);
    expect(big).toBeGreaterThan(0);
    expect(arena.byteLength).toBeGreaterThan(before);
    expect(arena.alloc(65536 * 8)).toBe(-1);
    expect(arena.free(12345)).toBe(false);
  });
});

describe('pool arrays', () => {
  it('stay valid and usable after the memory grows', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, initialMemory: 1 << 20 });
    const shape = [4, 3, 30, 30];
    const x = pool.alloc(4 * 3 * 900);
    const data = randomTensor(shape, 'float32', 1);
    x.set(data);
    const before = pool.memoryStats.byteLength;
    const huge = pool.alloc(8 << 20); // forces growth
    expect(pool.memoryStats.byteLength).toBeGreaterThan(before);
    expect(x.buffer).not.toBe(pool.memory.buffer);
    expect(Array.from(x.subarray(0, 16))).toEqual(Array.from(data.subarray(0, 16)));
    huge.fill(1); // writes through the new view do not disturb x
    expect(Array.from(x.subarray(0, 16))).toEqual(Array.from(data.subarray(0, 16)));
    const out = pool.alloc(x.length);
    const y = await new BatchNorm(3, { pool }).forward(x, shape, { out });
    expect(y).toBe(out);
    expect(outputErrorRatio(out, data, shape, referenceForward(data, shape, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
    expect(pool.alloc(5, 'float64')).toBeInstanceOf(Float64Array);
    await pool.close();
  });

  it('recognises its arrays after another pool grew its memory', async () => {
    // When one shared memory grows, V8 may hand every shared memory of the isolate a new buffer
    // object (it broadcasts the grow). Arrays made afterwards must still be known as the pool's:
    // zero-copy, and free() works.
    const a = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const b = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    for (let n = 16; n <= 128; n *= 2) {
      for (const pool of [a, b]) {
        const shape = [n, 16, 32, 32];
        const length = n * 16 * 1024;
        const x = pool.alloc(length);
        x.set(randomTensor(shape, 'float32', n));
        const out = pool.alloc(length); // grows this pool's memory
        const bn = new BatchNorm(16, { pool });
        for (let i = 0; i < 20; i++) await bn.forward(x, shape, { out });
        expect(() => pool.free(x)).not.toThrow();
        expect(() => pool.free(out)).not.toThrow();
      }
    }
    expect(a.memoryStats.liveBytes).toBe(0);
    expect(b.memoryStats.liveBytes).toBe(0);
    await Promise.all([a.close(), b.close()]);
  });
});

// pool.free of an array a call in flight uses would hand its bytes out again while workers read
// or write them: it is refused from the call's start (queued or running) until it settles.
describe('arrays in use by a call', () => {
  const shape = [4, 3, 40, 41];
  const n = 4 * 3 * 40 * 41;
  const inUse = /is in use by a call in flight; free it once that call has settled/;

  it('x and out of a forward, dy, dx and the saved x of a backward, until each settles', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const base = pool.memoryStats.liveBytes;
    const [x, out, x2, dy, dx] = [1, 2, 3, 4, 5].map((seed) => {
      const a = pool.alloc(n);
      a.set(randomTensor(shape, 'float32', seed));
      return a;
    });
    const bn = new BatchNorm(3, { pool });
    const first = bn.forward(x, shape, { out });
    const queued = bn.forward(x2, shape); // waits for the first: already holds x2
    for (const a of [x, out, x2]) expect(() => pool.free(a)).toThrow(inUse);
    await first;
    expect(() => pool.free(x2)).toThrow(inUse);
    await queued;
    const grads = bn.backward(dy, { out: dx }); // the latest forward's input is x2
    for (const a of [dy, dx, x2]) expect(() => pool.free(a)).toThrow(inUse);
    await grads;
    // Settled: everything can go (x is no longer used: backward reads the latest forward's input).
    for (const a of [x, out, x2, dy, dx]) pool.free(a);
    expect(pool.memoryStats.liveBytes).toBe(base);
    await pool.close();
  });

  // Freed after its forward, x's block goes back to the pool, whose next alloc may hand it out
  // again: a backward would read whatever was written there since (dWeight 743 where -0.1 was right).
  it.each(['input x', 'ReLU output'] as const)("a backward after the forward's %s was freed (pool.free): an ArgumentError, even with the block handed out again", async (which) => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const block = pool.alloc(n + 16);
    const [x, out] = [block.subarray(5, 5 + n), pool.alloc(n)];
    x.set(randomTensor(shape, 'float32', 8));
    const bn = new BatchNorm(3, { pool, activation: 'relu' });
    await bn.forward(x, shape, { out });
    const dy = randomTensor(shape, 'float32', 9) as Float32Array;
    await bn.backward(dy);
    const freed = which === 'input x' ? block : out;
    pool.free(freed);
    const again = pool.alloc(freed.length).fill(3);
    expect(again.byteOffset).toBe(freed.byteOffset); // the same block: what the check must see through
    const name = which === 'input x' ? 'the forward input x' : "the forward's output (the ReLU mask)";
    await expect(bn.backward(dy)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: `${name} must stay allocated until the backward, which reads it; it was freed (pool.free) after the forward`,
    });
    // The next forward saves its own arrays.
    await bn.forward(randomTensor(shape, 'float32', 10) as Float32Array, shape);
    expect((await bn.backward(dy)).dWeight).toHaveLength(3);
    await pool.close();
  });

  // A freed array's block may be handed out again: the call would write its output, or its running
  // statistics, over another array (a forward into a freed out wrote over the next alloc's). The
  // pool knows the arrays alloc() made; a subarray of one it can only check against the live blocks.
  const f32 = (values: number[]): Float32Array => Float32Array.from(values);
  it.each([
    ['x of a forward', 'x', n, 'float32', (pool: Pool, a: Float32Array) => new BatchNorm(3, { pool }).forward(a, shape)],
    ['out of a forward', 'options.out', n, 'float32', (pool: Pool, a: Float32Array, x: Float32Array) => new BatchNorm(3, { pool }).forward(x, shape, { out: a })],
    ["the functional form's running mean", 'options.runningMean', 3, 'float32', (pool: Pool, a: Float32Array, x: Float32Array) =>
      batchNorm(x, shape, { training: true, runningMean: a, runningVar: f32([1, 1, 1]), pool })],
    ["the functional backward's dWeight", 'options.dWeight', 3, 'float64', (pool: Pool, a: Float64Array, x: Float32Array) =>
      batchNormBackward(x, x, shape, { mean: f32([0, 0, 0]), invstd: f32([1, 1, 1]), dWeight: a, pool })],
    ['x of ChannelStats.fromBatch', 'x', n, 'float32', (pool: Pool, a: Float32Array) => ChannelStats.fromBatch(a, shape, { pool })],
  ] as const)('%s freed (pool.free) before the call: an ArgumentError naming it, the block handed out again untouched', async (_, name, length, dtype, call) => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const x = pool.alloc(n);
    x.set(randomTensor(shape, 'float32', 11));
    const freed = pool.alloc(length, dtype);
    freed.fill(0.5);
    pool.free(freed);
    const again = pool.alloc(length, dtype).fill(7);
    expect(again.byteOffset).toBe(freed.byteOffset);
    await expect((call as (p: Pool, a: typeof freed, x: Float32Array) => Promise<unknown>)(pool, freed, x)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG',
      message: `${name} must lie within a live array from its pool's alloc() (not freed since); got ${describeValue(freed)} at byte offset ${freed.byteOffset}, which pool.free returned`,
    });
    expect(again.every((v) => v === 7)).toBe(true);
    // Nor can it free the array that holds its block now; a subarray of none is checked by address.
    expect(() => pool.free(freed)).toThrow(/^array must be a live array from this pool's alloc\(\)/);
    pool.free(again);
    await expect(new BatchNorm(3, { pool }).forward(x, shape, { out: pool.alloc(n + 8).subarray(8) })).resolves.toHaveLength(n);
    pool.free(x);
    await expect(new BatchNorm(3, { pool }).forward(x.subarray(0, 3 * 3 * 40 * 41), [3, 3, 40, 41])).rejects.toMatchObject({
      message: `x must lie within a live array from its pool's alloc() (not freed since); got Float32Array(14760) at byte offset ${x.byteOffset}, outside every live one`,
    });
    await pool.close();
  });

  it('covers the whole block of a subarray passed as x, and is released by a failed or aborted call', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const block = pool.alloc(n + 16);
    const x = block.subarray(5, 5 + n);
    x.set(randomTensor(shape, 'float32', 7));
    const bn = new BatchNorm(3, { pool });
    const call = bn.forward(x, shape);
    expect(() => pool.free(block)).toThrow(inUse);
    await call;
    const ac = new AbortController();
    const aborted = bn.forward(x, shape, { signal: ac.signal });
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'ABORT_ERR' });
    await expect(bn.forward(x, [4, 3, 40, 40])).rejects.toMatchObject({ code: 'ERR_BNPOOL_SHAPE' });
    pool.free(block);
    expect(pool.memoryStats.liveBytes).toBe(0);
    await pool.close();
  });

  it("holds arrays of another pool too: that pool's free refuses them while the call copies them in or writes out", async () => {
    const a = new Pool({ threads: 1 });
    const b = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const x = a.alloc(n);
    x.set(randomTensor(shape, 'float32', 8));
    const out = a.alloc(n);
    const bn = new BatchNorm(3, { pool: b });
    const call = bn.forward(x, shape, { out }); // x and out are ordinary arrays to b: copied
    expect(() => a.free(x)).toThrow(inUse);
    expect(() => a.free(out)).toThrow(inUse);
    const y = await call;
    expect(y).toBe(out);
    a.free(x);
    a.free(out);
    expect(a.memoryStats.liveBytes).toBe(0);
    await Promise.all([a.close(), b.close()]);
  });

  it('functional forms and ChannelStats.fromBatch pin theirs too', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const [x, dy, y, out] = [1, 2, 3, 4].map((seed) => {
      const a = pool.alloc(n);
      a.set(randomTensor(shape, 'float32', seed));
      return a;
    });
    const fwd = batchNorm(x, shape, { training: true, pool, out });
    for (const a of [x, out]) expect(() => pool.free(a)).toThrow(inUse);
    const r = await fwd;
    const bwd = batchNormBackward(x, dy, shape, { mean: r.mean, var: r.var, activation: 'relu', y, pool });
    for (const a of [x, dy, y]) expect(() => pool.free(a)).toThrow(inUse);
    await bwd;
    const stats = ChannelStats.fromBatch(x, shape, { pool });
    expect(() => pool.free(x)).toThrow(inUse);
    await stats;
    for (const a of [x, dy, y, out]) pool.free(a);
    expect(pool.memoryStats.liveBytes).toBe(0);
    await pool.close();
  });
});
