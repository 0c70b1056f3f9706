/**
 * A worker's view of the shared memory after the calling thread grew it. V8 can leave a worker
 * that was starting during a growth with its old `memory.buffer` past later growths, so every task carries
 * the memory's length when it was posted, and the worker calls `grow(0)` when its buffer is
 * shorter (workers/execute.ts, `coverMemory`): checked here on a stand-in memory, on the tasks
 * posted (piscina's `run` wrapped: helpers/posting.ts), and on a worker given a length its
 * memory lacks. The race itself came too seldom to test for (bench/growth-race.mjs reproduces it
 * now and then). Pool arrays and growth in general are in memory.test.ts. Last, `wholeView`: the
 * kernels' views of a growable buffer keep their length, and are made again when it grows.
 */
import { describe, expect, it } from 'vitest';
import { streamFloor } from '../dist/src/floor.js';
import { BatchNorm, Pool } from '../dist/src/index.js';
import { wholeView } from '../dist/src/wasm-types.js';
import { coverMemory } from '../dist/workers/execute.js';
import { randomTensor } from './helpers/data.js';
import { posting } from './helpers/posting.js';
import { outputErrorRatio, referenceForward } from './helpers/reference.js';

/** A memory whose buffer is `stale` bytes long until grow(0) shows it `current` bytes long. */
function laggingMemory(stale: number, current: number): { memory: WebAssembly.Memory; grows: number[] } {
  const grows: number[] = [];
  let buffer = new SharedArrayBuffer(stale);
  const memory = {
    get buffer() { return buffer; },
    grow(delta: number): number {
      grows.push(delta);
      buffer = new SharedArrayBuffer(current);
      return current / 65536;
    },
  } as unknown as WebAssembly.Memory;
  return { memory, grows };
}

describe('coverMemory', () => {
  it('leaves a buffer that covers the task alone', () => {
    const { memory, grows } = laggingMemory(131072, 262144);
    coverMemory(memory, 131072);
    coverMemory(memory, 65536);
    expect(grows).toEqual([]);
    expect(memory.buffer.byteLength).toBe(131072);
  });

  it('makes a short buffer take the current length with grow(0)', () => {
    const { memory, grows } = laggingMemory(65536, 262144);
    coverMemory(memory, 196608);
    expect(grows).toEqual([0]);
    expect(memory.buffer.byteLength).toBe(262144);
  });

  it('throws, naming both lengths, when even grow(0) leaves the buffer short', () => {
    const { memory } = laggingMemory(65536, 131072);
    expect(() => coverMemory(memory, 196608)).toThrow(/131072 bytes long on this worker after grow\(0\), short of the 196608/);
  });
});

describe('tasks posted to workers', () => {
  it("carry the memory's length when they were posted: forwards, backward, the floor, 8-bit input", async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, initialMemory: 1 << 20 });
    try {
      const shape = [4, 3, 40, 40];
      const x = pool.alloc(4 * 3 * 1600);
      x.set(randomTensor(shape, 'float32', 3));
      const bn = new BatchNorm(3, { pool });
      // Per call: the memory's length after it, and the tasks it posted.
      const calls: { length: number; ops: string[]; memoryBytes: number[] }[] = [];
      await posting(async (sent) => {
        const steps: (() => Promise<unknown>)[] = [
          () => bn.forward(x, shape),
          () => bn.backward(pool.alloc(x.length).fill(0.5)),
          () => streamFloor(pool, x, pool.alloc(x.length)),
          () => {
            const bytes = pool.alloc(x.length, 'uint8');
            bytes.forEach((_, i, b) => { b[i] = (i * 37) % 256; });
            return bn.eval().forward(bytes, shape);
          },
        ];
        for (const step of steps) {
          const from = sent.length;
          await step();
          const mine = sent.slice(from);
          calls.push({ length: pool.memoryStats.byteLength, ops: mine.map((t) => t.op), memoryBytes: mine.map((t) => t.memoryBytes) });
          pool.alloc(4 << 20); // grows the memory before the next call
        }
      });
      expect(calls.map((c) => [...new Set(c.ops)])).toEqual([['split'], ['split'], ['stream'], ['bytes']]);
      // Each call's tasks carry the length after its own allocations (its output, its scratch).
      for (const c of calls) expect(c.memoryBytes).toEqual(c.ops.map(() => c.length));
      expect(calls[0].length).toBeLessThan(calls[3].length);
    } finally {
      await pool.close();
    }
  });

  it('make a worker whose memory is shorter than its task was posted with fail the call, naming both lengths', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    try {
      const shape = [8, 4, 32, 32];
      const data = randomTensor(shape, 'float32', 4);
      const x = pool.alloc(data.length);
      x.set(data);
      const bn = new BatchNorm(4, { pool });
      // The first task claims 64 KiB more than the memory has: grow(0) cannot cover it.
      let first = true;
      const call = posting(async () => { await bn.forward(x, shape); }, (task) => {
        const edited = first ? { ...task, memoryBytes: task.memoryBytes + 65536 } : task;
        first = false;
        return edited;
      });
      await expect(call).rejects.toMatchObject({ code: 'ERR_BNPOOL_WORKER', message: expect.stringMatching(/bytes long on this worker after grow\(0\), short of the \d+ its task was posted with/) });
      // Nothing was left half-done: the module's running statistics are as before, and the pool works.
      expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0, 0]);
      const y = await bn.forward(x, shape);
      expect(outputErrorRatio(y, data, shape, referenceForward(data, shape, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
    } finally {
      await pool.close();
    }
  });
});

describe('wholeView', () => {
  it('makes a view of fixed length over a growable SharedArrayBuffer, never a length-tracking one', () => {
    // A BufferMemory's buffer. Node 20 runs loops over a length-tracking view ~30x slower
    // (src/wasm-types.ts), so the kernels keep views of fixed length and remake them on growth.
    const buffer = new SharedArrayBuffer(16, { maxByteLength: 64 });
    const f64 = wholeView(Float64Array, buffer);
    const f32 = wholeView(Float32Array, buffer);
    const tracking = new Float64Array(buffer);
    expect([f64.length, f32.length, tracking.length]).toEqual([2, 4, 2]);
    buffer.grow(64);
    expect([f64.length, f32.length, tracking.length]).toEqual([2, 4, 8]);
    expect([wholeView(Float64Array, buffer).length, wholeView(Float32Array, buffer).length]).toEqual([8, 16]);
    // Over a plain memory's buffer too: the whole of it.
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true });
    expect(wholeView(Float32Array, memory.buffer).length).toBe(16_384);
  });
});
