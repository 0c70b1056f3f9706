/**
 * 8-bit input (pixels) to the functional batchNorm: eval with running statistics, normalized on
 * the workers into float32. Checked against a float64 reference, bit for bit against the float32
 * input's result on the WebAssembly kernel, and across kernels, thread counts, inline calls,
 * staging in chunks and output placements; and its errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, ChannelStats, Pool } from '../dist/src/index.js';
import { poolInternals } from '../dist/src/pool-internals.js';
import { createKernel, loadWasmModule } from '../dist/workers/kernels/select.js';
import { elements, rng, sameBits } from './helpers/data.js';
import { KERNELS } from './helpers/pools.js';

type Layout = 'channels-first' | 'channels-last';

/** Shapes in their layout's order, with odd sizes that leave vector tails and split periods. */
const CASES: [Layout, number[]][] = [
  ['channels-first', [7, 3]], // rank 2
  ['channels-first', [3, 5, 17]], // rank 3, runs shorter than a vector of bytes and longer
  ['channels-first', [2, 3, 67]],
  ['channels-first', [4, 3, 31, 33]], // an RGB batch, odd planes
  ['channels-first', [1, 1, 5, 13]], // C = 1
  ['channels-first', [2, 4, 3, 5, 7]], // rank 5
  ['channels-last', [7, 3]],
  ['channels-last', [2, 31, 33, 3]], // HWC RGB, as a decoder gives it: period 48
  ['channels-last', [3, 9, 11, 4]], // RGBA: period 16
  ['channels-last', [2, 5, 7, 1]], // gray: period 16
  ['channels-last', [2, 3, 5, 17]], // period 272
  ['channels-last', [3, 11, 13, 6]], // period 48
  ['channels-last', [2, 3, 3, 3, 5]], // rank 5, period 80
  ['channels-last', [3, 5, 1001]], // a period of 16,016: a value at a time
  ['channels-last', [3, 2, 4096]], // a period of C
];

function channelsOf(layout: Layout, shape: number[]): number {
  return layout === 'channels-last' ? shape[shape.length - 1] : shape[1];
}

function randomBytes(length: number, seed: number): Uint8Array {
  const rand = rng(seed);
  return Uint8Array.from({ length }, () => Math.floor(256 * rand()));
}

/** Running statistics and affine parameters of C channels, as a model's would be (in pixel units). */
function params(C: number, seed: number) {
  const rand = rng(seed);
  const make = (lo: number, hi: number) => Float64Array.from({ length: C }, () => lo + (hi - lo) * rand());
  return { runningMean: make(60, 190), runningVar: make(200, 5000), weight: make(0.5, 2), bias: make(-1, 1) };
}

/** float64 reference: max(0?)((x - mean) / sqrt(var + eps) * weight + bias), channel by layout. */
function reference(x: Uint8Array, layout: Layout, shape: number[], p: ReturnType<typeof params>, eps: number, relu: boolean): Float64Array {
  const C = channelsOf(layout, shape);
  const S = layout === 'channels-last' ? 1 : elements(shape.slice(2));
  return Float64Array.from(x, (v, i) => {
    const c = layout === 'channels-last' ? i % C : Math.floor(i / S) % C;
    const y = ((v - p.runningMean[c]) / Math.sqrt(p.runningVar[c] + eps)) * p.weight[c] + p.bias[c];
    return relu ? Math.max(0, y) : y;
  });
}

/** Largest error over the float32 rounding the three operations allow: |y - ref| / (4 ulp-sized bound). */
function errorRatio(y: Float32Array, want: Float64Array, x: Uint8Array, layout: Layout, shape: number[], p: ReturnType<typeof params>, eps: number): number {
  const C = channelsOf(layout, shape);
  const S = layout === 'channels-last' ? 1 : elements(shape.slice(2));
  let worst = 0;
  for (let i = 0; i < y.length; i++) {
    const c = layout === 'channels-last' ? i % C : Math.floor(i / S) % C;
    const scale = p.weight[c] / Math.sqrt(p.runningVar[c] + eps);
    // Each float32 operation rounds by at most 2^-24 of its result: x - hi, (x - hi) * sc, + bs.
    const bound = 4 * 2 ** -24 * (Math.abs((x[i] - p.runningMean[c]) * scale) + Math.abs(p.bias[c]) + Math.abs(p.runningMean[c] * scale) * 2 ** -23) + 1e-30;
    worst = Math.max(worst, Math.abs(y[i] - want[i]) / bound);
  }
  return worst;
}

describe('8-bit input kernels (bytesPlanes, bytesPattern)', () => {
  // Any start in the tensor (a pattern's period entered in its middle), any byte offset of x and y,
  // lengths around the 16-byte vectors: every value as float32 operations give it, bit for bit, and
  // nothing written past the end.
  const X = 1 << 16;
  const Y = 1 << 18;
  const PARAMS = 1 << 20;
  const GUARD = -7777;
  for (const name of KERNELS) {
    const memory = new WebAssembly.Memory({ initial: 32, maximum: 32, shared: true });
    const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
    const u8 = new Uint8Array(memory.buffer);
    const f32 = new Float32Array(memory.buffer);
    /** Fills bytes and parameters (L positions); returns the expected output of element i at position pos(i). */
    const prepare = (n: number, xOff: number, L: number, seed: number) => {
      const rand = rng(seed);
      for (let i = 0; i < n + 32; i++) u8[X + xOff + i] = Math.floor(256 * rand());
      for (let k = 0; k < L; k++) {
        f32[PARAMS / 4 + k] = 40 + 150 * rand();
        f32[PARAMS / 4 + L + k] = 0.01 + 0.05 * rand();
        f32[PARAMS / 4 + 2 * L + k] = 2 * rand() - 1;
      }
      return (i: number, k: number, relu: boolean): number => {
        const r = Math.fround;
        const v = r(r(r(u8[X + xOff + i] - f32[PARAMS / 4 + k]) * f32[PARAMS / 4 + L + k]) + f32[PARAMS / 4 + 2 * L + k]);
        return relu && v < 0 ? 0 : v;
      };
    };
    const check = (n: number, yOff: number, want: (i: number) => number): void => {
      for (let i = 0; i < n; i++) {
        if (!Object.is(f32[Y / 4 + yOff + i], want(i))) throw new Error(`element ${i}: got ${f32[Y / 4 + yOff + i]}, want ${want(i)}`);
      }
      expect(f32[Y / 4 + yOff + n]).toBe(GUARD);
    };
    it(`${name}: planes from any element, any offsets, both ReLU forms`, () => {
      for (const [C, S] of [[1, 5], [3, 17], [2, 64], [5, 1], [4, 33]]) {
        const total = 2 * C * S + 3;
        for (const first of [0, 1, S - 1, S, S + 7, 2 * S + 1]) {
          for (const n of [1, 15, 16, 17, 33, total - first]) {
            for (const [xOff, yOff] of [[0, 0], [3, 1], [13, 2]]) {
              for (const relu of [false, true]) {
                const want = prepare(n, xOff, C, C * 1000 + first * 10 + n);
                f32.fill(GUARD, Y / 4 + yOff, Y / 4 + yOff + n + 8);
                kernel.bytesPlanes(X + xOff, Y + 4 * yOff, n, first, C, S, PARAMS, relu);
                check(n, yOff, (i) => want(i, Math.floor((first + i) / S) % C, relu));
              }
            }
          }
        }
      }
    });
    it(`${name}: a pattern from any element of its period, any offsets, both ReLU forms`, () => {
      for (const P of [16, 48, 80, 272]) {
        for (const first of [0, 1, 15, 16, 17, P - 1, P, P + 5]) {
          for (const n of [1, 15, 16, 17, 47, 48, 49, 3 * P + 11]) {
            for (const [xOff, yOff] of [[0, 0], [5, 3]]) {
              for (const relu of [false, true]) {
                const want = prepare(n, xOff, P, P * 1000 + first * 10 + n);
                f32.fill(GUARD, Y / 4 + yOff, Y / 4 + yOff + n + 8);
                kernel.bytesPattern(X + xOff, Y + 4 * yOff, n, first, P, PARAMS, relu);
                check(n, yOff, (i) => want(i, (first + i) % P, relu));
              }
            }
          }
        }
      }
    });
    it(`${name}: channels last to channels first from any pixel, across images, any offsets, both ReLU forms`, () => {
      for (const [C, S] of [[3, 37], [3, 16], [3, 5], [2, 33], [4, 20], [5, 7]]) {
        const images = 3;
        const pixels = images * S;
        for (const first of [0, 1, 15, 16, S - 1, S, S + 17, 2 * S + 3].filter((f) => f < pixels)) {
          for (const n of [1, 16, 17, 33, pixels - first].filter((k) => k >= 1 && first + k <= pixels)) {
            for (const xOff of [0, 7]) {
              for (const relu of [false, true]) {
                const want = prepare(n * C, xOff, C, C * 1000 + S * 10 + first + n);
                const total = images * C * S;
                f32.fill(GUARD, Y / 4, Y / 4 + total + 8);
                kernel.bytesToPlanes(X + xOff, Y, n, first, C, S, PARAMS, relu);
                for (let k = 0; k < total; k++) {
                  const image = Math.floor(k / (C * S));
                  const c = Math.floor(k / S) % C;
                  const q = image * S + (k % S);
                  const expected = q >= first && q < first + n ? want((q - first) * C + c, c, relu) : GUARD;
                  if (!Object.is(f32[Y / 4 + k], expected)) throw new Error(`C ${C} S ${S} first ${first} n ${n}: element ${k}: got ${f32[Y / 4 + k]}, want ${expected}`);
                }
                expect(f32[Y / 4 + total]).toBe(GUARD);
              }
            }
          }
        }
      }
    });
  }
});

/** x (N, *spatial, C) as (N, C, *spatial). */
function toChannelsFirst(y: Float32Array, shape: number[]): Float32Array {
  const C = shape[shape.length - 1];
  const S = elements(shape.slice(1, -1));
  const out = new Float32Array(y.length);
  for (let n = 0; n < shape[0]; n++) for (let s = 0; s < S; s++) for (let c = 0; c < C; c++) out[(n * C + c) * S + s] = y[(n * S + s) * C + c];
  return out;
}

/**
 * The pools a suite's results must agree on, by name, for both kernels: 1-3 workers, inline, and
 * 2 workers in a pool too small for the larger cases at once (staged in chunks). Opened before
 * the suite's tests, closed after.
 */
function agreeingPools(): Map<string, Pool> {
  const pools = new Map<string, Pool>();
  beforeAll(() => {
    for (const kernel of KERNELS) {
      for (const threads of [1, 2, 3]) pools.set(`${kernel} ${threads} workers`, new Pool({ threads, inlineThreshold: 0, kernel }));
      pools.set(`${kernel} inline`, new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel }));
      pools.set(`${kernel} small memory`, new Pool({ threads: 2, inlineThreshold: 0, kernel, maxMemory: 256 << 10, initialMemory: 128 << 10 }));
    }
  });
  afterAll(() => Promise.all([...pools.values()].map((p) => p.close())));
  return pools;
}

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
          for (const out of [null, new Float32Array(n), pool.alloc(n)]) {
            sizes.length = 0;
            const call = batchNorm(onPool, shape, { ...p, pool, out });
            expect(() => pool.free(base), `${name}: freed in flight`).toThrow(/in use by a call in flight/);
            const r = await call;
            expect(sameBits(r.y, want), `${name} ${layout} [${shape}] to ${outLayout}, out ${out === null ? 'none' : arena.owns(out) ? 'on the pool' : 'ordinary'}`).toBe(true);
            expect(sizes.includes(n), `${name}: x on the pool staged`).toBe(false);
            if (out !== null && arena.owns(out)) pool.free(out);
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
    await expect(batchNorm(x, [4, 3], { pool })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG', message: expect.stringContaining('got neither') });
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

describe('8-bit input to a BatchNorm module', () => {
  let pool: Pool;
  beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0 }); });
  afterAll(() => pool.close());

  /** A module in eval mode with random weight, bias and running statistics (pixel units). */
  function module(C: number, options: ConstructorParameters<typeof BatchNorm>[1] = {}): BatchNorm {
    const bn = new BatchNorm(C, { pool, eps: 1e-3, ...options });
    const p = params(C, C + 30);
    bn.runningMean!.set(p.runningMean);
    bn.runningVar!.set(p.runningVar);
    bn.weight?.set(p.weight);
    bn.bias?.set(p.bias);
    return bn.eval();
  }

  it("normalizes as batchNorm does with the module's parameters, both layouts, with ReLU, without affine", async () => {
    for (const [layout, shape] of [['channels-first', [4, 3, 31, 33]], ['channels-last', [2, 31, 33, 3]], ['channels-last', [3, 9, 11, 4]]] as [Layout, number[]][]) {
      const C = channelsOf(layout, shape);
      const x = randomBytes(elements(shape), 31 + C);
      for (const options of [{}, { activation: 'relu' as const }, { affine: false }]) {
        const bn = module(C, { layout, ...options });
        const y = await bn.forward(x, shape);
        expect(y).toBeInstanceOf(Float32Array);
        const want = await batchNorm(x, shape, {
          runningMean: bn.runningMean!, runningVar: bn.runningVar!, weight: bn.weight ?? undefined, bias: bn.bias ?? undefined,
          eps: 1e-3, layout, pool, activation: bn.activation,
        });
        expect(sameBits(y, want.y), `${layout} [${shape}] ${JSON.stringify(options)}`).toBe(true);
        const out = pool.alloc(x.length);
        expect(await bn.forward(x, shape, { out })).toBe(out);
        expect(sameBits(out, want.y)).toBe(true);
        pool.free(out);
      }
    }
  });

  it('runs in call order: after a training forward queued before it, with the running statistics it left', async () => {
    const shape = [4, 3, 10, 11];
    const bn = module(3).train();
    const floats = Float32Array.from(randomBytes(elements(shape), 32), (v) => v * 0.9 + 7);
    const first = bn.forward(floats, shape);
    bn.eval();
    const x = randomBytes(elements(shape), 33);
    const second = bn.forward(x, shape);
    await first;
    const y = await second;
    expect(bn.numBatchesTracked).toBe(1);
    const want = await batchNorm(x, shape, { runningMean: bn.runningMean!, runningVar: bn.runningVar!, weight: bn.weight!, bias: bn.bias!, eps: 1e-3, pool });
    expect(sameBits(y, want.y)).toBe(true);
  });

  it('refuses training mode, float64 modules, no running statistics, reduceStats and a wrong out, changing nothing; backward after it', async () => {
    const shape = [2, 3, 4];
    const x = randomBytes(24, 34);
    const snapshot = (bn: BatchNorm) => JSON.stringify([Array.from(bn.runningMean ?? []), Array.from(bn.runningVar ?? []), bn.numBatchesTracked]);
    const training = module(3).train();
    const before = snapshot(training);
    await expect(training.forward(x, shape)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: '8-bit input (Uint8Array(24)) is normalized with the running statistics only: call eval() first; the module is in training mode',
    });
    expect(snapshot(training)).toBe(before);
    await expect(module(3, { dtype: 'float64' }).forward(x, shape)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_DTYPE', message: "x may be 8-bit (Uint8Array(24)) only for a float32 module, whose output is float32; this module's dtype is 'float64'",
    });
    await expect(new BatchNorm(3, { pool, trackRunningStats: false }).eval().forward(x, shape)).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    const bn = module(3);
    await expect(bn.forward(x, shape, { reduceStats: (s) => s })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(bn.forward(x, shape, { out: new Float64Array(24) as never })).rejects.toMatchObject({ code: 'ERR_BNPOOL_DTYPE' });
    await expect(bn.forward(x, [2, 4, 3])).rejects.toMatchObject({ code: 'ERR_BNPOOL_SHAPE' });
    await bn.forward(x, shape);
    await expect(bn.backward(new Float32Array(24))).rejects.toMatchObject({
      code: 'ERR_BNPOOL_NO_FORWARD',
      message: 'backward needs a forward of float input; the latest forward took 8-bit input, which is normalized and not differentiated',
    });
    // A float forward after it gives backward its input again.
    await bn.forward(Float32Array.from(x), shape);
    const { dx } = await bn.backward(new Float32Array(24).fill(0.5));
    expect(dx.length).toBe(24);
    expect(pool.memoryStats.liveBytes).toBe(0);
  });
});

/** Exact statistics of 8-bit input, as bnpool makes them: integer sums, m2's numerator exact. */
function exactStats(x: Uint8Array, layout: Layout, shape: number[]): { count: number; mean: number[]; m2: number[] } {
  const C = channelsOf(layout, shape);
  const S = layout === 'channels-last' ? 1 : elements(shape.slice(2));
  const s1 = new Array<number>(C).fill(0);
  const s2 = new Array<number>(C).fill(0);
  x.forEach((v, i) => {
    const c = layout === 'channels-last' ? i % C : Math.floor(i / S) % C;
    s1[c] += v;
    s2[c] += v * v;
  });
  const count = x.length / C;
  return {
    count,
    mean: s1.map((s) => s / count),
    m2: s1.map((s, c) => Number(BigInt(count) * BigInt(s2[c]) - BigInt(s) ** 2n) / count),
  };
}

describe('statistics of 8-bit input (bytesSumsPlanes, bytesSumsPattern, ChannelStats.fromBatch)', () => {
  const X = 1 << 16;
  const OUT = 1 << 22;
  const SCRATCH = (1 << 22) + (1 << 18);
  for (const name of KERNELS) {
    it(`${name} kernels: exact sums from any element, across folds of their integer lanes`, () => {
      const memory = new WebAssembly.Memory({ initial: 128, maximum: 128, shared: true });
      const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
      const u8 = new Uint8Array(memory.buffer);
      const f64 = new Float64Array(memory.buffer);
      const check = (n: number, xOff: number, L: number, at: (i: number) => number, run: () => void, fill: (i: number) => number) => {
        for (let i = 0; i < n; i++) u8[X + xOff + i] = fill(i);
        f64.fill(0.5, OUT / 8, OUT / 8 + 2 * L + 2); // pairs start from 0.5: sums are added, not stored
        run();
        const want = new Float64Array(2 * L).fill(0.5);
        for (let i = 0; i < n; i++) {
          const v = u8[X + xOff + i];
          want[2 * at(i)] += v;
          want[2 * at(i) + 1] += v * v;
        }
        for (let k = 0; k < 2 * L; k++) if (f64[OUT / 8 + k] !== want[k]) throw new Error(`n ${n}: pair value ${k}: got ${f64[OUT / 8 + k]}, want ${want[k]}`);
        expect(f64[OUT / 8 + 2 * L]).toBe(0.5);
      };
      const rand = rng(41);
      const random = () => Math.floor(256 * rand());
      for (const [C, S] of [[1, 5], [3, 17], [2, 64], [4, 200_000]]) {
        for (const first of [0, 1, S - 1, S + 7]) {
          for (const n of [1, 15, 16, 17, 33, 2 * C * S - first]) {
            if (n < 1 || first + n > 2 * C * S) continue;
            check(n, 3, C, (i) => Math.floor((first + i) / S) % C, () => kernel.bytesSumsPlanes(X + 3, n, first, C, S, OUT), random);
          }
        }
      }
      for (const P of [16, 48, 80, 4096]) {
        for (const first of [0, 1, 15, 16, P - 1, P + 5]) {
          // 700 periods: several blocks of periods and folds of the integer lanes (the WebAssembly kernel).
          for (const n of [1, 15, 16, 17, 49, 3 * P + 11, 700 * P + 13]) {
            check(n, 5, P, (i) => (first + i) % P, () => kernel.bytesSumsPattern(X + 5, n, first, P, OUT, SCRATCH), random);
          }
        }
      }
      // Every byte 255, where integer lanes summed without their folds would wrap: 70,000 vectors
      // of a plane (a lane of squares passes 2^31 after 8,257), 70,000 periods of 16 and 20,000 of
      // 48 positions (a position's u16 sum passes 2^16 after 257 periods).
      check(1_120_000, 0, 1, () => 0, () => kernel.bytesSumsPlanes(X, 1_120_000, 0, 1, 1_120_000, OUT), () => 255);
      check(1_120_000, 0, 16, (i) => i % 16, () => kernel.bytesSumsPattern(X, 1_120_000, 0, 16, OUT, SCRATCH), () => 255);
      check(960_000, 0, 48, (i) => i % 48, () => kernel.bytesSumsPattern(X, 960_000, 0, 48, OUT, SCRATCH), () => 255);
    });
  }

  const pools = agreeingPools();

  for (const [layout, shape] of [...CASES, ['channels-first', [4, 3, 100, 101]], ['channels-last', [4, 100, 101, 3]]] as [Layout, number[]][]) {
    it(`are exact, on every pool and kernel: ${layout} [${shape}]`, async () => {
      const x = randomBytes(elements(shape), 50 + shape.length);
      const want = exactStats(x, layout, shape);
      for (const [name, pool] of pools) {
        if (name.endsWith('small memory') && channelsOf(layout, shape) === 4096) {
          // Each task's sums of 4096 channels (24 bytes each) leave no room in 256 KiB for the input.
          await expect(ChannelStats.fromBatch(x, shape, { layout, pool })).rejects.toMatchObject({ code: 'ERR_BNPOOL_OUT_OF_MEMORY' });
          expect(pool.memoryStats.liveBytes, name).toBe(0);
          continue;
        }
        const stats = await ChannelStats.fromBatch(x, shape, { layout, pool });
        expect(Array.from(stats.count), name).toEqual(new Array(want.mean.length).fill(want.count));
        expect(Array.from(stats.mean()), name).toEqual(want.mean);
        expect(Array.from(stats.m2), name).toEqual(want.m2);
        expect(pool.memoryStats.liveBytes, name).toBe(0);
      }
      // The float32 input's statistics agree to their own accuracy (float32 lanes folded in float64).
      const floats = await ChannelStats.fromBatch(Float32Array.from(x), shape, { layout, pool: pools.get('wasm 2 workers')! });
      want.mean.forEach((m, c) => {
        expect(Math.abs(floats.mean()[c] - m)).toBeLessThanOrEqual(1e-6 * (Math.abs(m) + 1));
        expect(Math.abs(floats.m2[c] - want.m2[c])).toBeLessThanOrEqual(1e-6 * want.m2[c] + 1e-9);
      });
    });
  }

  it("merge batch by batch into the whole's statistics, which normalize the bytes as a model's would be", async () => {
    const shape = [6, 20, 21, 3];
    const x = randomBytes(elements(shape), 60);
    const pool = pools.get('wasm 2 workers')!;
    const half = x.length / 2;
    const a = await ChannelStats.fromBatch(x.subarray(0, half), [3, 20, 21, 3], { layout: 'channels-last', pool });
    const b = await ChannelStats.fromBatch(x.subarray(half), [3, 20, 21, 3], { layout: 'channels-last', pool });
    const whole = await ChannelStats.fromBatch(x, shape, { layout: 'channels-last', pool });
    const merged = a.merge(b);
    for (let c = 0; c < 3; c++) {
      expect(merged.count[c]).toBe(whole.count[c]);
      expect(Math.abs(merged.mean()[c] - whole.mean()[c])).toBeLessThanOrEqual(1e-13 * whole.mean()[c]);
      expect(Math.abs(merged.m2[c] - whole.m2[c])).toBeLessThanOrEqual(1e-12 * whole.m2[c]);
    }
    // Normalized with its own statistics, each channel of the batch has mean 0 and variance 1.
    const r = await batchNorm(x, shape, { layout: 'channels-last', runningMean: whole.mean(), runningVar: whole.variance(), eps: Number.MIN_VALUE, pool });
    const again = await ChannelStats.fromBatch(r.y, shape, { layout: 'channels-last', pool });
    for (let c = 0; c < 3; c++) {
      expect(Math.abs(again.mean()[c])).toBeLessThan(1e-6);
      expect(Math.abs(again.variance()[c] - 1)).toBeLessThan(1e-5);
    }
  });

  it('refuses a wrong shape or options before any work, and stops on an abort', async () => {
    const pool = pools.get('wasm 2 workers')!;
    const x = randomBytes(12, 61);
    await expect(ChannelStats.fromBatch(x, [5, 3], { pool })).rejects.toMatchObject({ code: 'ERR_BNPOOL_SHAPE' });
    await expect(ChannelStats.fromBatch(x, [4, 3], { pool, layout: 'hwc' as never })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(ChannelStats.fromBatch(x, [4, 3], { pool, training: true } as never)).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(ChannelStats.fromBatch(x, [4, 3], { pool, signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORT_ERR' });
    // Aborted while its 5 MB are copied in, between the copy's two slices (as batchNorm's above).
    const ac = new AbortController();
    const pending = ChannelStats.fromBatch(randomBytes(5_000_000, 62), [5, 1000, 1000], { pool, signal: ac.signal });
    setImmediate(() => ac.abort());
    await expect(pending).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(pool.memoryStats.liveBytes).toBe(0);
  });
});
