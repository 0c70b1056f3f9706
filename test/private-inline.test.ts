/**
 * Inline calls with every array off the pool stage them on a private, non-shared memory of the
 * calling thread, with the kernels' module patched to import a non-shared memory: the same bits
 * as every other placement, memory that survives another call growing it mid-copy, nothing kept.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, ChannelStats, type GradientSums, Pool } from '../dist/src/index.js';
import { COPY_SLICE_BYTES } from '../dist/src/placement.js';
import { poolInternals } from '../dist/src/pool-internals.js';
import { loadPrivateWasmModule, loadWasmModule, unsharedMemoryImport } from '../dist/workers/kernels/select.js';
import { randomTensor, sameBits } from './helpers/data.js';
import { KERNELS } from './helpers/pools.js';
import { outputErrorRatio, referenceForward } from './helpers/reference.js';

type FloatArray = Float32Array | Float64Array;

describe('the private module', () => {
  const bytes = readFileSync(new URL('../dist/workers/wasm/kernels.wasm', import.meta.url));

  it('is the shared module with one byte changed: the memory import no longer shared', () => {
    const patched = unsharedMemoryImport(bytes);
    expect(patched.length).toBe(bytes.length);
    const changed = [...patched.keys()].filter((i) => patched[i] !== bytes[i]);
    expect(changed).toHaveLength(1);
    expect([bytes[changed[0]], patched[changed[0]]]).toEqual([0x03, 0x01]); // shared + max -> max
    const shared = new WebAssembly.Memory({ initial: 2, maximum: 4, shared: true });
    const plain = new WebAssembly.Memory({ initial: 2, maximum: 4 });
    const privateModule = loadPrivateWasmModule()!;
    expect(() => new WebAssembly.Instance(privateModule, { env: { memory: plain } })).not.toThrow();
    expect(() => new WebAssembly.Instance(privateModule, { env: { memory: shared } })).toThrow(/shared/);
    expect(() => new WebAssembly.Instance(loadWasmModule()!, { env: { memory: plain } })).toThrow(/shared/);
    expect(WebAssembly.Module.exports(privateModule)).toEqual(WebAssembly.Module.exports(loadWasmModule()!));
  });

  it('walks imports of every kind to reach the memory (a hand-made binary)', () => {
    const name = (s: string): number[] => [s.length, ...Buffer.from(s)];
    const imports = [
      4,
      ...name('m'), ...name('f'), 0x00, 0x00, // function of type 0
      ...name('m'), ...name('t'), 0x01, 0x70, 0x00, 0x01, // table: funcref, min 1
      ...name('m'), ...name('g'), 0x03, 0x7f, 0x00, // global: i32, immutable
      ...name('m'), ...name('mem'), 0x02, 0x03, 0x01, 0x02, // memory: shared, min 1, max 2
    ];
    const binary = Uint8Array.from([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
      0x02, imports.length, ...imports,
    ]);
    const before = WebAssembly.Module.imports(new WebAssembly.Module(binary));
    const patched = unsharedMemoryImport(binary);
    expect([...patched.keys()].filter((i) => patched[i] !== binary[i])).toEqual([binary.length - 3]);
    expect(WebAssembly.Module.imports(new WebAssembly.Module(patched as Uint8Array<ArrayBuffer>))).toEqual(before);
    const env = {
      f: () => {}, t: new WebAssembly.Table({ initial: 1, element: 'anyfunc' }), g: 1,
      mem: new WebAssembly.Memory({ initial: 1, maximum: 2 }),
    };
    expect(() => new WebAssembly.Instance(new WebAssembly.Module(patched as Uint8Array<ArrayBuffer>), { m: env })).not.toThrow();
    expect(() => new WebAssembly.Instance(new WebAssembly.Module(binary), { m: env })).toThrow(/shared/);
  });
});

for (const kernel of KERNELS) {
  describe(`inline placements (${kernel} kernel)`, () => {
    let inline: Pool;
    let workers: Pool;
    beforeAll(() => {
      inline = new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel });
      workers = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel });
    });
    afterAll(() => Promise.all([inline.close(), workers.close()]));

    /** Where x, out and dy live, and which memory an inline call then stages on. */
    const placements = ['plain', 'plain with out', 'pool', 'pool x, plain out'] as const;

    /** Training forward, backward, eval forward, backward again: each result copied out. */
    async function run(pool: Pool, where: (typeof placements)[number] | 'workers', x: FloatArray, dy: FloatArray, shape: number[], dtype: 'float32' | 'float64'): Promise<FloatArray[]> {
      const onPool = where === 'pool' || where === 'pool x, plain out';
      const put = (a: FloatArray): FloatArray => {
        if (!onPool) return a;
        const p = pool.alloc(a.length, dtype);
        p.set(a);
        return p;
      };
      const outFor = (): FloatArray | undefined => {
        if (where === 'pool') return pool.alloc(x.length, dtype);
        if (where === 'plain with out' || where === 'pool x, plain out') return new (dtype === 'float64' ? Float64Array : Float32Array)(x.length).fill(NaN);
        return undefined;
      };
      const bn = new BatchNorm(shape[1], { pool, dtype, activation: 'relu' });
      const xs = put(x);
      const dys = put(dy);
      const results: FloatArray[] = [];
      for (const mode of ['train', 'eval'] as const) {
        bn[mode]();
        results.push((await bn.forward(xs, shape, { out: outFor() })).slice());
        results.push((await bn.backward(dys, { out: outFor() })).dx.slice());
      }
      results.push(bn.runningMean!.slice(), bn.runningVar!.slice());
      return results;
    }

    for (const dtype of ['float32', 'float64'] as const) {
      for (const shape of [[7, 5], [3, 4, 33], [2, 3, 9, 11], [2, 2, 3, 4, 5]]) {
        it(`same bits on the private memory, the pool's and the workers: [${shape}] ${dtype}`, async () => {
          const x = randomTensor(shape, dtype, 40 + shape.length);
          const dy = randomTensor(shape, dtype, 50 + shape.length);
          const want = await run(workers, 'workers', x, dy, shape, dtype);
          const ref = referenceForward(x, shape, { training: true });
          const relu = { ...ref, y: ref.y.map((v) => (v < 0 ? 0 : v)) };
          expect(outputErrorRatio(want[0], x, shape, relu, null, dtype)).toBeLessThanOrEqual(1);
          const privateArena = poolInternals(inline).privateInline().arena;
          for (const where of placements) {
            const got = await run(inline, where, x, dy, shape, dtype);
            got.forEach((g, i) => expect(sameBits(g, want[i]), `${where}: result ${i}`).toBe(true));
          }
          expect(privateArena.liveBytes).toBe(0);
        });
      }
    }

    it('statistics only, SyncBatchNorm hooks and channels-last: same bits inline and on workers', async () => {
      const shape = [6, 5, 7, 9];
      const x = randomTensor(shape, 'float32', 80);
      const dy = randomTensor(shape, 'float32', 81);
      // Identity all-reduces: one shard, so the synced path runs with this process's sums.
      const reduceStats = (local: ChannelStats): ChannelStats => ChannelStats.fromJSON(JSON.parse(JSON.stringify(local)));
      const reduceGrads = (local: GradientSums): GradientSums => ({ sumDy: Float64Array.from(local.sumDy), sumDyXhat: Float64Array.from(local.sumDyXhat) });
      const results: ArrayLike<number>[][] = [];
      for (const pool of [inline, workers]) {
        const stats = await ChannelStats.fromBatch(x, shape, { pool });
        const last = await ChannelStats.fromBatch(x, shape, { pool, layout: 'channels-last' });
        const bn = new BatchNorm(5, { pool });
        const y = await bn.forward(x, shape, { reduceStats });
        const { dx, dWeight } = await bn.backward(dy, { reduceGrads });
        const nhwc = new BatchNorm(9, { pool, layout: 'channels-last' });
        const yLast = await nhwc.forward(x, shape);
        const dxLast = (await nhwc.backward(dy)).dx;
        results.push([stats.mean(), stats.variance(), last.mean(), y, dx, dWeight!, yLast, dxLast, nhwc.runningVar!]);
      }
      expect(poolInternals(inline).privateInline().arena.liveBytes).toBe(0);
      results[0].forEach((r, i) => expect(sameBits(r, results[1][i]), `result ${i}`).toBe(true));
    });

    it('only calls with nothing on the pool stage on the private memory', async () => {
      const pool = new Pool({ threads: 1, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel });
      const ctx = poolInternals(pool);
      const shape = [4, 3, 25000]; // 1.2 MB of float32: more than the private memory's first 1 MiB
      const x = randomTensor(shape, 'float32', 7);
      const onPool = pool.alloc(x.length);
      onPool.set(x);
      await batchNorm(onPool, shape, { pool, training: true });
      await batchNorm(x, shape, { pool, training: true, out: pool.alloc(x.length) });
      expect(pool.memoryStats.privateByteLength).toBe(0); // not made yet
      const shared = ctx.arena.byteLength;
      await batchNorm(x, shape, { pool, training: true });
      expect(pool.memoryStats.privateByteLength).toBeGreaterThan(1 << 20); // made, and grown
      expect(pool.memoryStats.privateByteLength).toBe(ctx.privateInline().arena.byteLength);
      expect(ctx.arena.byteLength).toBe(shared);
      await pool.close();
    });
  });
}

describe('the private memory capped by maxMemory', () => {
  for (const kernel of KERNELS) {
    it(`stages an input larger than the cap in chunks, with the bits of 2 workers (${kernel} kernel)`, async () => {
      const small = new Pool({ threads: 1, kernel, inlineThreshold: Number.MAX_SAFE_INTEGER, maxMemory: 256 * 1024, initialMemory: 131072 });
      const workers = new Pool({ threads: 2, kernel, inlineThreshold: 0, grainSize: 1 });
      const shape = [16, 3, 70, 71]; // 954 KB of float32, chunks of a few samples
      const x = randomTensor(shape, 'float32', 90);
      const dy = randomTensor(shape, 'float32', 91);
      const results: ArrayLike<number>[][] = [];
      for (const pool of [small, workers]) {
        const bn = new BatchNorm(3, { pool });
        const y = await bn.forward(x, shape);
        const { dx } = await bn.backward(dy);
        bn.eval();
        results.push([y, dx, await bn.forward(x, shape), bn.runningVar!]);
      }
      results[0].forEach((r, i) => expect(sameBits(r, results[1][i]), `result ${i}`).toBe(true));
      expect(small.memoryStats.privateByteLength).toBeLessThanOrEqual(256 * 1024);
      expect(small.memoryStats.privateByteLength).toBeGreaterThan(0);
      expect(small.memoryStats.byteLength).toBe(131072); // the shared memory was not used
      await Promise.all([small.close(), workers.close()]);
    });
  }
});

describe('the private memory under concurrent calls', () => {
  // float64 inputs over COPY_SLICE_BYTES: a call's copy in pauses for a turn of the event loop,
  // and the next call, larger, grows the private memory meanwhile, which detaches its buffer.
  const shapes = [[5, 3, 40000], [6, 3, 60000], [7, 3, 80000]];

  for (const kernel of KERNELS) {
    it(`each call finishes on the grown memory with the bits of a zero-copy call (${kernel} kernel)`, async () => {
      expect(5 * 3 * 40000 * 8).toBeGreaterThan(COPY_SLICE_BYTES);
      const pool = new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel });
      const xs = shapes.map((s, i) => randomTensor(s, 'float64', 60 + i));
      const want: FloatArray[] = [];
      for (const [i, x] of xs.entries()) {
        const onPool = pool.alloc(x.length, 'float64');
        onPool.set(x);
        want.push((await batchNorm(onPool, shapes[i], { pool, training: true, out: pool.alloc(x.length, 'float64') })).y.slice());
      }
      const privateMemory = poolInternals(pool).privateInline().arena;
      const grows: number[] = [];
      const calls = xs.map(async (x, i) => {
        const r = await batchNorm(x, shapes[i], { pool, training: true });
        grows.push(privateMemory.byteLength);
        return r.y;
      });
      const got = await Promise.all(calls);
      got.forEach((y, i) => expect(sameBits(y, want[i]), `call ${i}`).toBe(true));
      expect(privateMemory.byteLength).toBeGreaterThanOrEqual(xs.reduce((sum, x) => sum + x.byteLength, 0));
      expect(privateMemory.liveBytes).toBe(0);
      await pool.close();
    });
  }

  it('an abort between slices frees what the call held on the private memory', async () => {
    const pool = new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER });
    const shape = shapes[1];
    const x = randomTensor(shape, 'float64', 70);
    const bn = new BatchNorm(3, { pool, dtype: 'float64' });
    const controller = new AbortController();
    const call = bn.forward(x, shape, { signal: controller.signal });
    setImmediate(() => controller.abort());
    await expect(call).rejects.toMatchObject({ code: 'ABORT_ERR', name: 'AbortError' });
    expect(bn.numBatchesTracked).toBe(0);
    const privateMemory = poolInternals(pool).privateInline().arena;
    expect(privateMemory.byteLength).toBeGreaterThan(x.byteLength);
    expect(privateMemory.liveBytes).toBe(0);
    expect(pool.memoryStats.liveBytes).toBe(0);
    await pool.close();
  });
});
