/**
 * 8-bit input (pixels) to the functional batchNorm: eval with running statistics, normalized on
 * the workers into float32. Checked against a float64 reference, bit for bit against the float32
 * input's result on the WebAssembly kernel, and across kernels, thread counts, inline calls,
 * staging in chunks and output placements; and its errors.
 */
import { describe, expect, it } from 'vitest';
import { batchNorm, ChannelStats, Pool } from '../dist/src/index.js';
import { poolInternals } from '../dist/src/pool-internals.js';
import { elements, sameBits } from './helpers/data.js';
import {
  agreeingPools, CASES, channelsOf, errorRatio, exactStats, type Layout, params, randomBytes, reference, toChannelsFirst,
} from './helpers/bytes.js';
import { KERNELS } from './helpers/pools.js';

describe('8-bit input', () => {
  const pools = agreeingPools();

  for (const [layout, shape] of CASES) {
    const C = channelsOf(layout, shape);
    it(`matches the float64 reference and agrees bit for bit everywhere: ${layout} [${shape}]`, async () => {
      const x = randomBytes(elements(shape), shape.length * 100 + C);
      const p = params(C, C + 7);
      const eps = 1e-5;
      const want = reference(x, layout, shape, p, eps, false);
      let first: Float32Array | null = null;
      for (const [name, pool] of pools) {
        const r = await batchNorm(x, shape, { ...p, eps, layout, pool });
        expect(r.y, name).toBeInstanceOf(Float32Array);
        expect(errorRatio(r.y, want, x, layout, shape, p, eps), name).toBeLessThanOrEqual(1);
        first ??= r.y;
        expect(sameBits(r.y, first), `${name} against the first pool's bits`).toBe(true);
        expect(Array.from(r.mean)).toEqual(Array.from(p.runningMean));
        expect(Array.from(r.var)).toEqual(Array.from(p.runningVar));
        expect(r.count).toBe(elements(shape) / C);
      }
      // The float32 input's eval gives the same bits on the WebAssembly kernel (same parameters,
      // same float32 operations).
      const floats = await batchNorm(Float32Array.from(x), shape, { ...p, eps, layout, pool: pools.get('wasm 2 workers')! });
      expect(sameBits(floats.y, first!)).toBe(true);
    });
  }

  it('fuses ReLU: zero where the normalization is negative, as the float32 input', async () => {
    for (const [layout, shape] of [CASES[3], CASES[7]]) {
      const C = channelsOf(layout, shape);
      const x = randomBytes(elements(shape), 5);
      const p = params(C, 6);
      const want = reference(x, layout, shape, p, 1e-5, true);
      for (const kernel of KERNELS) {
        const pool = pools.get(`${kernel} 2 workers`)!;
        const r = await batchNorm(x, shape, { ...p, layout, pool, activation: 'relu' });
        expect(errorRatio(r.y, want, x, layout, shape, p, 1e-5)).toBeLessThanOrEqual(1);
        const zeros = want.filter((v) => v === 0).length;
        expect(zeros).toBeGreaterThan(want.length / 10);
        expect(r.y.filter((v) => v === 0).length).toBe(zeros);
        const floats = await batchNorm(Float32Array.from(x), shape, { ...p, layout, pool: pools.get('wasm 2 workers')!, activation: 'relu' });
        expect(sameBits(r.y, floats.y)).toBe(true);
      }
    }
  });

  it('takes a Uint8ClampedArray, a Buffer and a subarray alike; without affine parameters, weight 1 and bias 0', async () => {
    const shape = [2, 13, 9, 3];
    const backing = randomBytes(elements(shape) + 5, 9);
    const x = backing.subarray(5);
    const { runningMean, runningVar } = params(3, 10);
    const pool = pools.get('wasm 2 workers')!;
    const base = await batchNorm(x, shape, { runningMean, runningVar, layout: 'channels-last', pool });
    for (const other of [new Uint8ClampedArray(x), Buffer.from(x)]) {
      const r = await batchNorm(other, shape, { runningMean, runningVar, layout: 'channels-last', pool });
      expect(sameBits(r.y, base.y)).toBe(true);
    }
    const ones = new Float64Array(3).fill(1);
    const affine = await batchNorm(x, shape, { runningMean, runningVar, weight: ones, bias: new Float64Array(3), layout: 'channels-last', pool });
    expect(sameBits(affine.y, base.y)).toBe(true);
  });

  it('writes into out on the pool, an ordinary out, a new array or an out on another shared buffer; leaves the bytes as they were', async () => {
    const shape = [3, 3, 40, 41];
    const x = randomBytes(elements(shape), 11);
    const copy = x.slice();
    const p = params(3, 12);
    for (const kernel of KERNELS) {
      const pool = pools.get(`${kernel} 2 workers`)!;
      const fresh = await batchNorm(x, shape, { ...p, pool });
      const ordinary = new Float32Array(x.length).fill(Number.NaN);
      const r1 = await batchNorm(x, shape, { ...p, pool, out: ordinary });
      expect(r1.y).toBe(ordinary);
      const onPool = pool.alloc(x.length).fill(Number.NaN);
      const r2 = await batchNorm(x, shape, { ...p, pool, out: onPool });
      expect(r2.y).toBe(onPool);
      expect(sameBits(ordinary, fresh.y)).toBe(true);
      expect(sameBits(onPool, fresh.y)).toBe(true);
      pool.free(onPool);
      // On a SharedArrayBuffer of its own, at an offset: the workers copy their parts into it.
      const shared = new Float32Array(new SharedArrayBuffer(4 * (x.length + 8)), 16, x.length).fill(Number.NaN);
      expect((await batchNorm(x, shape, { ...p, pool, out: shared })).y).toBe(shared);
      expect(sameBits(shared, fresh.y)).toBe(true);
      const hwc = [3, 40, 41, 3];
      const planes = await batchNorm(x, hwc, { ...p, pool, layout: 'channels-last', outLayout: 'channels-first' });
      const sharedPlanes = new Float32Array(new SharedArrayBuffer(4 * (x.length + 8)), 32, x.length).fill(Number.NaN);
      await batchNorm(x, hwc, { ...p, pool, layout: 'channels-last', outLayout: 'channels-first', out: sharedPlanes });
      expect(sameBits(sharedPlanes, planes.y)).toBe(true);
      expect(sameBits(planes.y, toChannelsFirst((await batchNorm(x, hwc, { ...p, pool, layout: 'channels-last', out: new Float32Array(x.length) })).y, hwc))).toBe(true);
      expect(Array.from(x)).toEqual(Array.from(copy));
    }
  });

  it('stages an input larger than the pool in chunks, with the same bits', async () => {
    for (const [layout, shape] of [['channels-first', [4, 3, 100, 101]], ['channels-last', [4, 100, 101, 3]]] as [Layout, number[]][]) {
      const x = randomBytes(elements(shape), 13);
      const p = params(3, 14);
      for (const kernel of KERNELS) {
        const whole = await batchNorm(x, shape, { ...p, layout, pool: pools.get(`${kernel} 2 workers`)! });
        // 121,200 values: 606 KB of bytes and float32 output, in a pool of at most 256 KiB.
        const small = pools.get(`${kernel} small memory`)!;
        const staged = await batchNorm(x, shape, { ...p, layout, pool: small });
        expect(sameBits(staged.y, whole.y), `${kernel} ${layout}`).toBe(true);
        expect(small.memoryStats.liveBytes).toBe(0);
        // The bytes on the small pool itself (121 KB of its 256 KiB): read where they lie, the
        // float32 output (485 KB) staged in chunks beside them; channels last also to planes.
        const onPool = small.alloc(x.length, 'uint8');
        onPool.set(x);
        const chunked = await batchNorm(onPool, shape, { ...p, layout, pool: small, out: new Float32Array(x.length) });
        expect(sameBits(chunked.y, whole.y), `${kernel} ${layout}, bytes on the pool`).toBe(true);
        small.free(onPool);
        if (layout === 'channels-last') {
          // To planes, chunks are whole images: 16 smaller ones (30.6 KB of output each).
          const images = [16, 50, 51, 3];
          const xi = randomBytes(elements(images), 15);
          const planes = await batchNorm(xi, images, { ...p, layout, outLayout: 'channels-first', pool: pools.get(`${kernel} 2 workers`)! });
          const pixels = small.alloc(xi.length, 'uint8');
          pixels.set(xi);
          const chunkedPlanes = await batchNorm(pixels, images, { ...p, layout, outLayout: 'channels-first', pool: small, out: new Float32Array(xi.length) });
          expect(sameBits(chunkedPlanes.y, planes.y), `${kernel}, bytes on the pool, to planes`).toBe(true);
          small.free(pixels);
        }
        expect(small.memoryStats.liveBytes).toBe(0);
      }
    }
  });

  it("reads bytes from pool.alloc(n, 'uint8') where they lie, with the same bits; pinned while a call runs", async () => {
    const cases: [Layout, number[], Layout][] = [
      ['channels-first', [3, 3, 40, 41], 'channels-first'],
      ['channels-last', [3, 40, 41, 3], 'channels-last'], // the pattern kernel, period 48
      ['channels-last', [3, 40, 41, 3], 'channels-first'], // to planes
      ['channels-last', [2, 3, 5, 17], 'channels-last'], // period 272
    ];
    for (const [name, pool] of pools) {
      const arena = poolInternals(pool).arena;
      for (const [layout, shape, outLayout] of cases) {
        const n = elements(shape);
        const C = channelsOf(layout, shape);
        const x = randomBytes(n, n + C);
        const p = { ...params(C, 19), layout, outLayout };
        const want = (await batchNorm(x, shape, { ...p, pool })).y;
        const base = pool.alloc(n + 5, 'uint8');
        expect(base).toBeInstanceOf(Uint8Array);
        const onPool = base.subarray(5); // at an odd byte offset
        onPool.set(x);
        // An ordinary x is staged: n bytes allocated for it (a check that the spy sees it; these
        // inputs fit even the small memory in one chunk). Bytes on the pool are not.
        const sizes: number[] = [];
        const alloc = arena.alloc;
        arena.alloc = (bytes: number) => { sizes.push(bytes); return alloc.call(arena, bytes); };
        try {
          await batchNorm(x, shape, { ...p, pool });
          expect(sizes.includes(n), `${name}: an ordinary x staged`).toBe(true);
          for (const out of [undefined, new Float32Array(n), pool.alloc(n)]) {
            sizes.length = 0;
            const call = batchNorm(onPool, shape, { ...p, pool, out });
            expect(() => pool.free(base), `${name}: freed in flight`).toThrow(/in use by a call in flight/);
            const r = await call;
            expect(sameBits(r.y, want), `${name} ${layout} [${shape}] to ${outLayout}, out ${out === undefined ? 'none' : arena.owns(out) ? 'on the pool' : 'ordinary'}`).toBe(true);
            expect(sizes.includes(n), `${name}: x on the pool staged`).toBe(false);
            if (out !== undefined && arena.owns(out)) pool.free(out);
          }
          sizes.length = 0;
          const stats = await ChannelStats.fromBatch(onPool, shape, { layout, pool });
          expect(sizes.includes(n), `${name}: x on the pool staged for its statistics`).toBe(false);
          const wantStats = exactStats(x, layout, shape);
          expect(Array.from(stats.mean())).toEqual(wantStats.mean);
          expect(Array.from(stats.m2)).toEqual(wantStats.m2);
        } finally {
          arena.alloc = alloc;
        }
        pool.free(base);
        expect(pool.memoryStats.liveBytes, name).toBe(0);
      }
    }
    const pool = pools.get('wasm 2 workers')!;
    expect(() => pool.alloc(4, 'int8' as 'uint8')).toThrow(/dtype must be 'float32', 'float64' or 'uint8'; got "int8"/);
  });

  it("writes channels-last pixels channels first with outLayout 'channels-first': the channels-last result, transposed", async () => {
    for (const shape of [[2, 31, 33, 3], [3, 9, 11, 4], [2, 5, 7, 1], [2, 3, 5, 17], [30, 40, 41, 3], [2, 3, 3, 3, 5], [7, 3]]) {
      const C = shape[shape.length - 1];
      const x = randomBytes(elements(shape), 17 + C);
      const p = params(C, 18);
      for (const relu of [false, true]) {
        const activation = relu ? 'relu' as const : null;
        const last = await batchNorm(x, shape, { ...p, layout: 'channels-last', pool: pools.get('wasm 2 workers')!, activation });
        const want = toChannelsFirst(last.y, shape);
        for (const [name, pool] of pools) {
          const r = await batchNorm(x, shape, { ...p, layout: 'channels-last', outLayout: 'channels-first', pool, activation });
          expect(sameBits(r.y, want), `${name} [${shape}] relu ${relu}`).toBe(true);
          expect(pool.memoryStats.liveBytes).toBe(0);
        }
      }
    }
  });

  it('refuses training, missing running statistics and a wrong out before any work', async () => {
    const pool = pools.get('wasm 2 workers')!;
    const x = randomBytes(12, 15);
    const p = params(3, 16);
    const before = { mean: p.runningMean.slice(), var: p.runningVar.slice() };
    await expect(batchNorm(x, [4, 3], { ...p, training: true, pool })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG',
      message: 'options.training must be false for 8-bit input (Uint8Array(12)): it is normalized with running statistics only; got true',
    });
    await expect(batchNorm(x, [4, 3], { runningMean: p.runningMean, pool })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG',
      message: 'options.runningMean and options.runningVar are required for 8-bit input (Uint8Array(12)); got only runningMean',
    });
    await expect(batchNorm(x, [4, 3], { runningVar: p.runningVar, pool })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG',
      message: 'options.runningMean and options.runningVar are required for 8-bit input (Uint8Array(12)); got only runningVar',
    });
    await expect(batchNorm(x, [4, 3], { pool })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: 'options.runningMean and options.runningVar are required for 8-bit input (Uint8Array(12)); got neither',
    });
    await expect(batchNorm(x, [4, 3], { ...p, pool, out: new Float64Array(12) })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_DTYPE', message: "options.out must be a Float32Array (dtype 'float32'); got Float64Array(12)",
    });
    await expect(batchNorm(x, [4, 3], { ...p, pool, out: new Float32Array(11) })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: "options.out must have the input's length 12; got length 11",
    });
    const shared = new ArrayBuffer(64);
    await expect(batchNorm(new Uint8Array(shared, 0, 12).fill(7), [4, 3], { ...p, pool, out: new Float32Array(shared, 8, 12) })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: expect.stringContaining('options.out must not overlap x'),
    });
    await expect(batchNorm(x, [4, 3], { ...p, pool, reduceStats: (s) => s })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(batchNorm(x, [5, 3], { ...p, pool })).rejects.toMatchObject({ code: 'ERR_BNPOOL_SHAPE' });
    await expect(batchNorm(x, [4, 3], { ...p, pool, runningVar: new Float64Array(2) })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(batchNorm(new Int8Array(12) as never, [4, 3], { ...p, pool })).rejects.toMatchObject({ code: 'ERR_BNPOOL_DTYPE' });
    await expect(batchNorm(x, [4, 3], { ...p, pool, outLayout: 'channels-last' })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG',
      message: "options.outLayout 'channels-last' needs channels-last 8-bit input (options.layout); channels-first input is written channels first; got layout 'channels-first'",
    });
    await expect(batchNorm(x, [4, 3], { ...p, pool, layout: 'channels-last', outLayout: 'nchw' as never })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(batchNorm(new Float32Array(x), [4, 3], { ...p, pool, layout: 'channels-last', outLayout: 'channels-first' })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: "options.outLayout is for 8-bit input: a Float32Array(12) is written in its own layout ('channels-last'); got \"channels-first\"",
    });
    // One image that does not fit the pool's memory with its output: nothing to chunk.
    const small = pools.get('wasm small memory')!;
    const big = randomBytes(200 * 200 * 3, 19);
    await expect(batchNorm(big, [1, 200, 200, 3], { ...params(3, 20), pool: small, layout: 'channels-last', outLayout: 'channels-first' })).rejects.toMatchObject({
      code: 'ERR_BNPOOL_OUT_OF_MEMORY', message: expect.stringContaining('a chunk of 120000 elements (an image) of 8-bit input and its output'),
    });
    expect(small.memoryStats.liveBytes).toBe(0);
    const aborted = AbortSignal.abort();
    await expect(batchNorm(x, [4, 3], { ...p, pool, signal: aborted })).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(Array.from(p.runningMean)).toEqual(Array.from(before.mean));
    expect(Array.from(p.runningVar)).toEqual(Array.from(before.var));
    expect(pool.memoryStats.liveBytes).toBe(0);
    // Aborted while its input is copied in (5 MB: two slices, a turn of the event loop between
    // them, which comes after the abort's): an AbortError, and the staging memory freed.
    const ac = new AbortController();
    const pending = batchNorm(randomBytes(5_000_000, 21), [5, 1000, 1000, 1], { ...params(1, 22), pool, layout: 'channels-last', signal: ac.signal });
    setImmediate(() => ac.abort());
    await expect(pending).rejects.toMatchObject({ code: 'ABORT_ERR', name: 'AbortError' });
    expect(pool.memoryStats.liveBytes).toBe(0);
    const closed = new Pool({ threads: 1 });
    await closed.close();
    await expect(batchNorm(x, [4, 3], { ...p, pool: closed })).rejects.toMatchObject({ code: 'ERR_BNPOOL_CLOSED' });
  });
});
