/**
 * Bitwise determinism: the same bits of output and statistics at 1, 2, 3, 4 and 8 threads, inline,
 * in staged chunks, and on every placement of input and output (zero-copy or copied). How tasks
 * claim their work items is in claims.test.ts.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, Pool } from '../dist/src/index.js';
import { randomTensor, sameBits, sharedArray } from './helpers/data.js';
import { KERNELS } from './helpers/pools.js';
import { outputErrorRatio, referenceForward } from './helpers/reference.js';


const THREADS = [1, 2, 3, 4, 8];

// Shapes that take every path: short runs of 64 channels (row mode), fused planes (48 channels
// of 1280, claimed in tapered runs), split planes (C = 3), long planes cut into stretches, row
// mode (rank 2), many small planes, fused bands of wide rows (8 bands, claimed in tapered runs).
const SHAPES = [
  [8, 64, 17, 19], [4, 48, 32, 40], [4, 3, 100, 101], [2, 3, 160, 170], [3000, 37], [64, 300, 3, 3], [5, 1, 16385], [4, 65536],
];

for (const kernel of KERNELS) {
  describe(`determinism (${kernel} kernel)`, () => {
    const pools = new Map<string, Pool>();
    beforeAll(() => {
      for (const t of THREADS) pools.set(`threads=${t}`, new Pool({ threads: t, inlineThreshold: 0, grainSize: 1, kernel }));
      pools.set('inline', new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel }));
    });
    afterAll(() => Promise.all([...pools.values()].map((p) => p.close())));

    for (const shape of SHAPES) {
      it(`gives the same bits at every thread count and inline: [${shape}]`, async () => {
        const C = shape[1];
        const x = randomTensor(shape, 'float32', 1 + C);
        const runs: { y: Float32Array | Float64Array; rm: Float32Array | Float64Array; rv: Float32Array | Float64Array }[] = [];
        for (const pool of pools.values()) {
          const bn = new BatchNorm(C, { pool, momentum: null });
          await bn.forward(x, shape); // two steps, so the running statistics compound
          const y = await bn.forward(x, shape);
          runs.push({ y, rm: bn.runningMean!, rv: bn.runningVar! });
        }
        for (const run of runs.slice(1)) {
          expect(sameBits(run.y, runs[0].y)).toBe(true);
          expect(sameBits(run.rm, runs[0].rm)).toBe(true);
          expect(sameBits(run.rv, runs[0].rv)).toBe(true);
        }
      });
    }

    // The float32 kernels' float64 passes (squares or products dy·(x - mean) past float32's range
    // or under its normal one, a constant channel's zero-product check) decide block by block on
    // the forward's grid, so they too give the same bits at every thread count: forward and
    // backward, with ReLU, on planes, rows of lanes, a pattern and short runs.
    for (const shape of [[8, 3, 64, 64], [2048, 20], [4096, 3], [16, 5, 9, 17]]) {
      it(`the float64 passes of hard data give the same bits at every thread count: [${shape}]`, async () => {
        const C = shape[1];
        for (const [xSpread, dySpread] of [[1e20, 1e20], [1e-20, 1e-20], [1e25, 1]]) {
          const x = randomTensor(shape, 'float32', 8, (c) => (c === 1 ? { offset: 0, spread: xSpread } : { offset: c - 1.5, spread: 1 + c }));
          for (let i = 2 * (x.length / shape[0] / C); i < x.length; i += x.length / shape[0]) x.fill(0.1, i, i + x.length / shape[0] / C);
          const dy = randomTensor(shape, 'float32', 9, (c) => (c === 1 ? { offset: 0, spread: dySpread } : { offset: 0.5, spread: 1 }));
          const runs: (Float32Array | Float64Array)[][] = [];
          for (const pool of pools.values()) {
            const bn = new BatchNorm(C, { pool, activation: 'relu' });
            const y = await bn.forward(x, shape);
            const { dx, dWeight, dBias } = await bn.backward(dy);
            runs.push([y, dx, dWeight!, dBias!, bn.runningVar!]);
          }
          for (const run of runs.slice(1)) run.forEach((a, k) => expect(sameBits(a, runs[0][k])).toBe(true));
          expect(runs[0][2][1]).not.toBe(0);
          expect(Number.isFinite(runs[0][2][1])).toBe(true);
        }
      });
    }

    // One-row blocks (S > 8192) are normalized in runs of blocks, whose edges follow the claims,
    // so the thread count: whole channels (normalizeRows) and stretches of one channel
    // (normalizePlanes), forward and last-first, with ReLU, float64 and a shared output copied out.
    for (const [shape, dtype] of [[[4, 3, 100, 101], 'float32'], [[2, 5, 160, 170], 'float32'], [[3, 7, 40001], 'float64'], [[2, 9, 9000], 'float32']] as const) {
      it(`one-row blocks give the same bits in every mode at every thread count: [${shape}] ${dtype}`, async () => {
        const C = shape[1];
        const x = randomTensor(shape, dtype, 3 + C);
        const results: (Float32Array | Float64Array)[][] = [];
        for (const pool of pools.values()) {
          const bn = new BatchNorm(C, { pool, dtype, activation: 'relu' });
          const y = await bn.forward(x, shape);
          bn.eval();
          const out = sharedArray(dtype, x.length).fill(NaN);
          await bn.forward(x, shape, { out });
          results.push([y, out]);
        }
        for (const r of results.slice(1)) {
          expect(sameBits(r[0], results[0][0])).toBe(true);
          expect(sameBits(r[1], results[0][1])).toBe(true);
        }
        const ref = referenceForward(x, shape, { training: true });
        const relu = { ...ref, y: ref.y.map((v) => (v < 0 ? 0 : v)) };
        expect(outputErrorRatio(results[0][0], x, shape, relu, null, dtype)).toBeLessThanOrEqual(1);
        expect(results[0][1].some(Number.isNaN)).toBe(false);
      });
    }

    it('any thread count and shape give the same bits (property)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 2, maxLength: 5 }),
          fc.constantFrom(...THREADS),
          fc.constantFrom('float32' as const, 'float64' as const),
          async (dims, threads, dtype) => {
            const shape = dims.map((d, i) => (i === 0 ? d + 1 : d * (i + 1)));
            const x = randomTensor(shape, dtype, shape.reduce((a, b) => a * 31 + b, 7));
            const one = await batchNorm(x, shape, { training: true, pool: pools.get('threads=1')! });
            const many = await batchNorm(x, shape, { training: true, pool: pools.get(`threads=${threads}`)! });
            expect(sameBits(many.y, one.y)).toBe(true);
            expect(sameBits(many.mean, one.mean)).toBe(true);
            expect(sameBits(many.var, one.var)).toBe(true);
          },
        ),
        { numRuns: 40 },
      );
    });
  });

  describe(`placements and staging chunks (${kernel} kernel)`, () => {
    let big: Pool;
    let small: Pool;
    beforeAll(() => {
      big = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel });
      // 512 KiB of memory at most: inputs of a few MB are processed in chunks.
      small = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: 512 * 1024, initialMemory: 131072 });
    });
    afterAll(() => Promise.all([big.close(), small.close()]));

    // Channel chunks (fused), row-group chunks (split), row-group-and-channel chunks, row mode.
    for (const shape of [[16, 4, 60, 60], [64, 2, 40, 40], [2, 2, 300, 300], [20000, 16]]) {
      it(`chunks through a small pool give the same bits as one chunk: [${shape}]`, async () => {
        const x = randomTensor(shape, 'float32', 5);
        expect(x.byteLength).toBeGreaterThan(512 * 1024);
        for (const training of [true, false]) {
          const opts = {
            training, runningMean: new Float32Array(shape[1]).fill(0.5), runningVar: new Float32Array(shape[1]).fill(2),
          };
          const one = await batchNorm(x, shape, { ...opts, pool: big });
          const chunked = await batchNorm(x, shape, {
            training, runningMean: new Float32Array(shape[1]).fill(0.5), runningVar: new Float32Array(shape[1]).fill(2), pool: small,
          });
          expect(sameBits(chunked.y, one.y)).toBe(true);
          expect(sameBits(chunked.mean, one.mean)).toBe(true);
          expect(sameBits(chunked.var, one.var)).toBe(true);
        }
        expect(small.memoryStats.byteLength).toBeLessThanOrEqual(512 * 1024);
      });
    }

    it('eval of planes of 1-8 Ki elements (row groups of several rows, walked in address order): every placement and chunking gives the zero-copy bits', async () => {
      // [13, 12, 40, 40]: planes of 1600 elements, row groups of 10 rows and of 3; 998 KB of
      // float32, so the small pool takes it in chunks, and a pool that holds x and half of it
      // stages the other array in chunks cut by channel: rows of x and of y lie different
      // distances apart (the walk then goes a row a call).
      const shape = [13, 12, 40, 40];
      const n = 13 * 12 * 1600;
      for (const dtype of ['float32', 'float64'] as const) {
        const bytes = n * (dtype === 'float32' ? 4 : 8);
        const mid = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: Math.ceil(1.5 * bytes / 65536) * 65536, initialMemory: 131072 });
        for (const activation of [null, 'relu'] as const) {
          const x = randomTensor(shape, dtype, 23);
          const runningMean = Float64Array.from({ length: 12 }, (_, c) => 0.3 * c - 0.7);
          const runningVar = Float64Array.from({ length: 12 }, (_, c) => 0.5 + 0.25 * c);
          const weight = Float64Array.from({ length: 12 }, (_, c) => 1.5 - 0.2 * c);
          const bias = Float64Array.from({ length: 12 }, (_, c) => 0.1 * c - 0.2);
          const opts = { runningMean, runningVar, weight, bias, activation, eps: 1e-5 };
          const onPool = (pool: Pool) => { const a = pool.alloc(n, dtype); a.set(x); return a; };
          const zeroCopy = big.alloc(n, dtype).fill(NaN);
          await batchNorm(onPool(big), shape, { ...opts, pool: big, out: zeroCopy });
          const ref = referenceForward(x, shape, { training: false, runningMean, runningVar, weight, bias });
          const refY = activation === 'relu' ? { ...ref, y: ref.y.map((v) => Math.max(v, 0)) } : ref;
          expect(outputErrorRatio(zeroCopy, x, shape, refY, bias, dtype)).toBeLessThanOrEqual(1);
          const plain = () => (dtype === 'float32' ? new Float32Array(n) : new Float64Array(n)).fill(NaN);
          const cases: [string, () => Promise<ArrayLike<number>>][] = [
            ['plain x, no out', async () => (await batchNorm(x, shape, { ...opts, pool: big })).y],
            ['pool x, plain out', async () => { const o = plain(); await batchNorm(onPool(big), shape, { ...opts, pool: big, out: o }); return o; }],
            ['plain x, shared out', async () => {
              const o = (dtype === 'float32' ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float64Array(new SharedArrayBuffer(8 * n))).fill(NaN);
              await batchNorm(x, shape, { ...opts, pool: big, out: o });
              return o;
            }],
            ['small pool: plain x, plain out', async () => { const o = plain(); await batchNorm(x, shape, { ...opts, pool: small, out: o }); return o; }],
            ['small pool: plain x, no out', async () => (await batchNorm(x, shape, { ...opts, pool: small })).y],
            ['pool holding x: pool x, plain out', async () => {
              const o = plain();
              const onMid = onPool(mid);
              await batchNorm(onMid, shape, { ...opts, pool: mid, out: o });
              mid.free(onMid);
              return o;
            }],
            ['pool holding out: plain x, pool out', async () => {
              const o = mid.alloc(n, dtype).fill(NaN);
              await batchNorm(x, shape, { ...opts, pool: mid, out: o });
              const copy = o.slice();
              mid.free(o);
              return copy;
            }],
          ];
          for (const [label, make] of cases) {
            expect(sameBits(await make(), zeroCopy), `${dtype} ${activation} ${label}`).toBe(true);
          }
        }
        await mid.close();
      }
    });

    it('an out on a SharedArrayBuffer whose length is no multiple of its element size: forward and backward as into any out', async () => {
      // The workers copy each block to such an out; their view of its buffer once had to end on an
      // element (a RangeError in the worker). The view here has an element before and after it in
      // its buffer, then 3 bytes: none of them may change.
      const shape = [6, 5, 21, 23];
      const n = 6 * 5 * 21 * 23;
      for (const dtype of ['float32', 'float64'] as const) {
        const bpe = dtype === 'float32' ? 4 : 8;
        const view = (buffer: ArrayBufferLike, at: number, length: number): Float32Array | Float64Array =>
          (dtype === 'float32' ? new Float32Array(buffer, at, length) : new Float64Array(buffer, at, length));
        const x = randomTensor(shape, dtype, 31);
        const dy = randomTensor(shape, dtype, 32);
        const odd = (): Float32Array | Float64Array => {
          const buffer = new SharedArrayBuffer(bpe * (n + 2) + 3);
          view(buffer, 0, n + 2).fill(7);
          new Uint8Array(buffer, bpe * (n + 2)).fill(9);
          return view(buffer, bpe, n).fill(NaN);
        };
        const beside = (o: Float32Array | Float64Array): number[] => {
          const all = view(o.buffer, 0, n + 2);
          return [all[0], all[n + 1], ...new Uint8Array(o.buffer, bpe * (n + 2))];
        };
        for (const training of [true, false]) {
          const run = async (into: boolean) => {
            const bn = new BatchNorm(5, { pool: big, dtype });
            if (!training) bn.eval();
            const y = await bn.forward(x, shape, into ? { out: odd() } : {});
            const { dx } = await bn.backward(dy, into ? { out: odd() } : {});
            return { y, dx };
          };
          const want = await run(false);
          const got = await run(true);
          const label = `${dtype} ${training ? 'training' : 'eval'}`;
          expect(sameBits(got.y, want.y), label).toBe(true);
          expect(sameBits(got.dx, want.dx), label).toBe(true);
          expect([beside(got.y), beside(got.dx)], label).toEqual([[7, 7, 9, 9, 9], [7, 7, 9, 9, 9]]);
        }
      }
    });

    it('a zero-copy call equals a copying call, for every placement of x and out', async () => {
      const shape = [6, 5, 21, 23];
      const n = 6 * 5 * 21 * 23;
      const x = randomTensor(shape, 'float32', 17) as Float32Array;
      const run = (input: Float32Array, out?: Float32Array) =>
        batchNorm(input, shape, { training: true, pool: big, ...(out ? { out } : {}) });
      const want = (await run(x)).y;
      const onPool = (): Float32Array => { const a = big.alloc(n); a.set(x); return a; };
      // Outputs start as NaN, so an output that was never written cannot pass for a right one.
      const poolOut = (): Float32Array => big.alloc(n).fill(NaN);
      const plainOut = (): Float32Array => new Float32Array(n).fill(NaN);
      const cases: [string, () => Promise<Float32Array | Float64Array>][] = [
        ['pool x, pool out', async () => { const o = poolOut(); await run(onPool(), o); return o; }],
        ['pool x, no out', async () => (await run(onPool())).y],
        ['pool x, in place', async () => { const a = onPool(); await run(a, a); return a; }],
        ['plain x, pool out', async () => { const o = poolOut(); await run(x, o); return o; }],
        ['plain x, plain out', async () => { const o = plainOut(); await run(x, o); return o; }],
        ['plain x, shared out', async () => { const o = new Float32Array(new SharedArrayBuffer(4 * n)).fill(NaN); await run(x, o); return o; }],
        ['plain x, in place', async () => { const a = x.slice(); await run(a, a); return a; }],
        ['pool x, plain out', async () => { const o = plainOut(); await run(onPool(), o); return o; }],
      ];
      for (const [label, make] of cases) {
        const got = await make();
        expect(sameBits(got, want), label).toBe(true);
      }
    });

    it('a zero-copy call equals a copying call for any shape, dtype, layout, mode and placement of x, out, dy and dx (property)', async () => {
      // 'other': on another pool's memory, which the call copies in or writes out as it does an
      // ordinary shared array, and whose free refuses the array meanwhile.
      type Place = 'pool' | 'plain' | 'shared' | 'other';
      const inlinePool = new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel });
      const otherPool = new Pool({ threads: 1, kernel });
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            dims: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 2, maxLength: 5 }),
            dtype: fc.constantFrom('float32' as const, 'float64' as const),
            layout: fc.constantFrom('channels-first' as const, 'channels-last' as const),
            training: fc.boolean(), relu: fc.boolean(), seed: fc.integer({ min: 1, max: 2 ** 30 }), inline: fc.boolean(),
            xAt: fc.constantFrom<Place>('pool', 'plain', 'shared', 'other'),
            outAt: fc.constantFrom<Place | 'none' | 'x'>('none', 'pool', 'plain', 'shared', 'other', 'x'),
            dyAt: fc.constantFrom<Place>('pool', 'plain', 'shared', 'other'),
            dxAt: fc.constantFrom<Place | 'none'>('none', 'pool', 'plain', 'shared', 'other'),
          }),
          async ({ dims, dtype, layout, training, relu, seed, inline, xAt, outAt, dyAt, dxAt }) => {
            // On the workers, or inline on the calling thread (arrays off the pool: its private memory).
            const pool = inline ? inlinePool : big;
            // N >= 2, so a training call has more than one value per channel.
            const shape = dims.map((d, i) => (i === 0 ? d + 1 : d));
            const C = layout === 'channels-last' ? shape[shape.length - 1] : shape[1];
            const data = randomTensor([shape.reduce((a, b) => a * b), 1], dtype, seed);
            const dyData = randomTensor([data.length, 1], dtype, seed + 1);
            const Ctor = dtype === 'float64' ? Float64Array : Float32Array;
            const owned: [Pool, Float32Array | Float64Array][] = [];
            const place = (at: Place, values?: Float32Array | Float64Array) => {
              const a = at === 'pool' ? pool.alloc(data.length, dtype) : at === 'other' ? otherPool.alloc(data.length, dtype)
                : at === 'shared' ? sharedArray(dtype, data.length) : new Ctor(data.length);
              if (at === 'pool' || at === 'other') owned.push([at === 'pool' ? pool : otherPool, a]);
              if (values === undefined) a.fill(Number.NaN);
              else a.set(values);
              return a;
            };
            const run = async (x: Float32Array | Float64Array, out: Float32Array | Float64Array | undefined, dy: Float32Array | Float64Array | null, dxOut: Float32Array | Float64Array | undefined) => {
              const bn = new BatchNorm(C, { pool, dtype, layout, activation: relu ? 'relu' : null });
              bn.weight!.set(Array.from({ length: C }, (_, c) => 0.5 + c / C));
              bn.runningMean!.set(Array.from({ length: C }, (_, c) => c / 7 - 0.3));
              bn.runningVar!.set(Array.from({ length: C }, (_, c) => 0.5 + c / 5));
              bn.train(training);
              const y = Array.from(await bn.forward(x, shape, out === undefined ? {} : { out }));
              const g = dy === null ? null : await bn.backward(dy, dxOut === undefined ? {} : { out: dxOut });
              return { y, dx: g === null ? [] : Array.from(g.dx), sums: g === null ? [] : [...g.dWeight!, ...g.dBias!], running: [...bn.runningMean!, ...bn.runningVar!] };
            };
            try {
              // Backward needs the forward's input: none after a forward written over x.
              const withBackward = outAt !== 'x';
              const want = await run(data.slice(), undefined, withBackward ? dyData.slice() : null, undefined);
              const x = place(xAt, data);
              const out = outAt === 'none' ? undefined : outAt === 'x' ? x : place(outAt);
              const got = await run(x, out, withBackward ? place(dyAt, dyData) : null, dxAt === 'none' ? undefined : place(dxAt));
              expect(sameBits(got.y, want.y), 'y').toBe(true);
              expect(sameBits(got.dx, want.dx), 'dx').toBe(true);
              expect(sameBits(got.sums, want.sums), 'dWeight, dBias').toBe(true);
              expect(sameBits(got.running, want.running), 'running statistics').toBe(true);
            } finally {
              for (const [p, a] of owned) p.free(a);
            }
          },
        ),
        { numRuns: 60, seed: 1 },
      ).finally(() => Promise.all([inlinePool.close(), otherPool.close()]));
    });

    it('the output without out is a new array that no later call overwrites', async () => {
      const shape = [4, 3, 50, 50];
      const x1 = randomTensor(shape, 'float32', 1);
      const x2 = randomTensor(shape, 'float32', 2);
      const y1 = (await batchNorm(x1, shape, { training: true, pool: big })).y;
      const copy = y1.slice();
      const y2 = (await batchNorm(x2, shape, { training: true, pool: big })).y;
      expect(y2.buffer).not.toBe(y1.buffer);
      expect(sameBits(y1, copy)).toBe(true);
      expect(big.memory.buffer).not.toBe(y1.buffer);
    });
  });
}
