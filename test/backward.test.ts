/**
 * Backward against PyTorch's formulas in float64 and against finite differences; ranks 2-5, both
 * dtypes and kernels, affine off, determinism over thread counts (backward-eval.test.ts: the
 * eval-mode backward's single pass).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, batchNormBackward, NoForwardError, Pool } from '../dist/src/index.js';
import { permute, randomTensor, randomVector, sameBits } from './helpers/data.js';
import { closePools, eachInPlaceCase, KERNELS, openPools, POOL_CONFIGS, recordingOps } from './helpers/pools.js';
import { channelStats, dxErrorRatio, maxRelativeError, referenceBackward } from './helpers/reference.js';

// Row mode, planes of a few row groups, one-row planes (fused with C = 2 and 5, split with
// C = 3 on 2 workers) cut into stretches of unequal length (16385 = 8193 + 8192).
const SHAPES = [
  [7, 3], [5, 37], [3, 5, 17], [2, 3, 4, 5, 7], [4, 6, 40, 41], [3, 2, 130, 130], [6, 64, 9, 9],
  [3, 2, 16385], [2, 3, 16385], [2, 5, 20001],
];

for (const kernel of KERNELS) {
  describe(`backward (${kernel} kernel)`, () => {
    let pools: Map<string, Pool>;
    beforeAll(() => { pools = openPools(kernel); });
    afterAll(() => closePools(pools));

    for (const { name } of POOL_CONFIGS) {
      for (const dtype of ['float32', 'float64'] as const) {
        for (const shape of SHAPES) {
          it(`training gradients match PyTorch's formulas: ${name}, ${dtype}, [${shape}]`, async () => {
            const C = shape[1];
            const x = randomTensor(shape, dtype, C + shape.length);
            const dy = randomTensor(shape, dtype, 100 + C);
            const bn = new BatchNorm(C, { pool: pools.get(name)!, dtype });
            bn.weight!.set(randomVector(C, dtype, 5, 0.5, 2));
            await bn.forward(x, shape);
            const { dx, dWeight, dBias } = await bn.backward(dy);
            const st = channelStats(x, shape);
            const ref = referenceBackward(x, dy, shape, st.mean, st.var.map((v) => 1 / Math.sqrt(v + 1e-5)), bn.weight, true);
            expect(dx).toBeInstanceOf(x.constructor);
            expect(dxErrorRatio(dx, ref, dy, x, shape, dtype)).toBeLessThanOrEqual(1);
            // Sums over m = x.length / C terms: the WASM float32 kernel adds float32 lanes a few
            // at a time before folding into float64 (1e-5 of the largest sum, scaled by sqrt(m)),
            // the others add in float64; float32 modules then round the result to float32.
            const rel = dtype === 'float32' && kernel === 'wasm' ? 1e-5 : 1e-9;
            const rounding = dtype === 'float32' ? 2 ** -23 : 0;
            const norm = (v: Float64Array) => Math.max(...Array.from(v, Math.abs), 1);
            for (let c = 0; c < C; c++) {
              expect(Math.abs(dWeight![c] - ref.dWeight[c])).toBeLessThanOrEqual(rel * norm(ref.dWeight) * Math.sqrt(x.length / C) + rounding * Math.abs(ref.dWeight[c]));
              expect(Math.abs(dBias![c] - ref.dBias[c])).toBeLessThanOrEqual(rel * norm(ref.dBias) * Math.sqrt(x.length / C) + rounding * Math.abs(ref.dBias[c]));
            }
          });
        }
      }

      // Planes, rows of short runs, rank-2 lanes (C = 16, 8 for float64 pairs), the C = 3 and 5
      // lane patterns, channels-last.
      for (const [shape, layout] of [
        [[4, 2, 9], 'channels-first'], [[3, 2, 40, 41], 'channels-first'], [[9, 16], 'channels-first'], [[7, 8], 'channels-first'],
        [[6, 5], 'channels-first'], [[2, 5, 7, 3], 'channels-last'],
      ] as const) {
        it(`eval-mode dx ignores x, as PyTorch: NaN and Inf in x leave dx = weight·invstd·dy: ${name}, [${shape}] ${layout}`, async () => {
          for (const dtype of ['float32', 'float64'] as const) {
            const C = layout === 'channels-last' ? shape[shape.length - 1] : shape[1];
            const x = randomTensor(shape as unknown as number[], dtype, 3);
            const dy = randomTensor(shape as unknown as number[], dtype, 4);
            x[1] = NaN;
            x[x.length - 2] = Infinity;
            x[Math.floor(x.length / 2)] = -Infinity;
            const bn = new BatchNorm(C, { pool: pools.get(name)!, dtype, layout }).eval();
            bn.runningMean!.set(randomVector(C, dtype, 6, -1, 1));
            bn.runningVar!.set(randomVector(C, dtype, 7, 0.5, 2));
            bn.weight!.set(randomVector(C, dtype, 8, 0.5, 2));
            await bn.forward(x, shape as unknown as number[]);
            const { dx, dBias } = await bn.backward(dy);
            const channelOf = (i: number): number => (layout === 'channels-last' ? i % C : Math.floor(i / (x.length / shape[0] / C)) % C);
            const tol = dtype === 'float32' ? 2 ** -22 : 2 ** -51;
            for (let i = 0; i < x.length; i++) {
              const c = channelOf(i);
              const want = bn.weight![c] / Math.sqrt(bn.runningVar![c] + 1e-5) * dy[i];
              expect(Math.abs(dx[i] - want)).toBeLessThanOrEqual(tol * Math.abs(want) + 1e-300);
            }
            expect(dBias!.every(Number.isFinite)).toBe(true);
          }
        });
      }

      it(`eval-mode gradient is weight·invstd_running·dy: ${name}`, async () => {
        const shape = [4, 3, 10, 11];
        const x = randomTensor(shape, 'float64', 1);
        const dy = randomTensor(shape, 'float64', 2);
        const bn = new BatchNorm(3, { pool: pools.get(name)!, dtype: 'float64' }).eval();
        bn.runningMean!.set([0.5, -1, 2]);
        bn.runningVar!.set([2, 0.5, 1]);
        bn.weight!.set([1.5, -1, 0.25]);
        await bn.forward(x, shape);
        const { dx, dWeight } = await bn.backward(dy);
        const invstd = [2, 0.5, 1].map((v) => 1 / Math.sqrt(v + 1e-5));
        const ref = referenceBackward(x, dy, shape, [0.5, -1, 2], invstd, bn.weight, false);
        expect(maxRelativeError(dx, ref.dx, 1e-9)).toBeLessThan(1e-12);
        expect(maxRelativeError(dWeight!, ref.dWeight, 1e-6)).toBeLessThan(1e-10);
      });
    }
  });
}

describe('backward, more', () => {
  let pool: Pool;
  beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
  afterAll(() => pool.close());

  it('agrees with central finite differences in float64', async () => {
    const shape = [3, 2, 5];
    const x = randomTensor(shape, 'float64', 3) as Float64Array;
    const r = randomTensor(shape, 'float64', 4) as Float64Array; // L = Σ y·r, so dL/dy = r
    const weight = new Float64Array([1.3, -0.7]);
    const bias = new Float64Array([0.2, 0.1]);
    const loss = async (input: Float64Array, w = weight) => {
      const { y } = await batchNorm(input, shape, { training: true, weight: w, bias, pool });
      return y.reduce((a, v, i) => a + v * r[i], 0);
    };
    const bn = new BatchNorm(2, { pool, dtype: 'float64' });
    bn.weight!.set(weight);
    bn.bias!.set(bias);
    await bn.forward(x, shape);
    const { dx, dWeight } = await bn.backward(r);
    const h = 1e-6;
    for (const i of [0, 4, 7, 12, 21, 29]) {
      const plus = x.slice(); plus[i] += h;
      const minus = x.slice(); minus[i] -= h;
      const numeric = ((await loss(plus)) - (await loss(minus))) / (2 * h);
      expect(Math.abs(dx[i] - numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(numeric)));
    }
    for (const c of [0, 1]) {
      const wp = weight.slice(); wp[c] += h;
      const wm = weight.slice(); wm[c] -= h;
      const numeric = ((await loss(x, wp)) - (await loss(x, wm))) / (2 * h);
      expect(Math.abs(dWeight![c] - numeric)).toBeLessThan(1e-6 * Math.max(1, Math.abs(numeric)));
    }
  });

  // PyTorch's batch_norm_backward takes save_mean and save_invstd as given: the training formula
  // holds for statistics that are not the batch's (a shard's share of a global mean, say).
  for (const kernel of KERNELS) {
    for (const [shape, layout] of [[[6, 4, 9, 11], 'channels-first'], [[33, 5], 'channels-first'], [[3, 7, 5, 4], 'channels-last']] as const) {
      it(`functional training gradients use the given mean and invstd, not the batch's: ${kernel}, [${shape}] ${layout}`, async () => {
        const p = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel });
        const first = layout === 'channels-last' ? [shape[0], shape[3], shape[1], shape[2]] : [...shape];
        const C = first[1];
        const x = randomTensor(first, 'float64', 21);
        const dy = randomTensor(first, 'float64', 22);
        const st = channelStats(x, first);
        const mean = st.mean.map((m, c) => m + (c - 1.5) * 0.3);
        const invstd = st.var.map((v, c) => (1 + 0.25 * c) / Math.sqrt(v));
        const weight = randomVector(C, 'float64', 23, -2, 2);
        const ref = referenceBackward(x, dy, first, mean, invstd, weight, true);
        const toLayout = (a: Float64Array): Float64Array => (layout === 'channels-last' ? permute(a, first) as Float64Array : a);
        const fromLayout = (a: ArrayLike<number>): Float64Array => (layout === 'channels-last' ? permute(Float64Array.from(a), first, true) as Float64Array : Float64Array.from(a));
        const g = await batchNormBackward(toLayout(x as Float64Array), toLayout(dy as Float64Array), shape as unknown as number[], { mean, invstd, weight, layout, pool: p });
        expect(dxErrorRatio(fromLayout(g.dx), ref, dy, x, first, 'float64')).toBeLessThanOrEqual(1);
        expect(maxRelativeError(g.dWeight!, ref.dWeight)).toBeLessThan(1e-12);
        expect(maxRelativeError(g.dBias!, ref.dBias)).toBeLessThan(1e-12);
        // Not the batch statistics' gradient: the given ones matter.
        const batch = referenceBackward(x, dy, first, st.mean, st.var.map((v) => 1 / Math.sqrt(v)), weight, true);
        expect(maxRelativeError(g.dWeight!, batch.dWeight)).toBeGreaterThan(1e-3);
        await p.close();
      });
    }
  }

  it('has no dWeight or dBias with affine: false', async () => {
    const bn = new BatchNorm(3, { pool, affine: false });
    await bn.forward(randomTensor([4, 3, 6], 'float32', 5), [4, 3, 6]);
    const g = await bn.backward(randomTensor([4, 3, 6], 'float32', 6));
    expect(g.dWeight).toBeNull();
    expect(g.dBias).toBeNull();
    expect(g.dx.length).toBe(72);
  });

  it('writes dWeight and dBias into given arrays: the same bits as new ones, both dtypes, module and functional', async () => {
    for (const dtype of ['float32', 'float64'] as const) {
      const shape = [6, 5, 9, 11];
      const x = randomTensor(shape, dtype, 21);
      const dy = randomTensor(shape, dtype, 22);
      const bn = new BatchNorm(5, { pool, dtype });
      bn.weight!.set(randomVector(5, dtype, 23, 0.5, 2));
      await bn.forward(x, shape);
      const fresh = await bn.backward(dy);
      const Ctor = dtype === 'float32' ? Float32Array : Float64Array;
      const dWeight = new Ctor(5).fill(NaN);
      const dBias = new Ctor(5).fill(NaN);
      const given = await bn.backward(dy, { dWeight, dBias });
      expect(given.dWeight).toBe(dWeight);
      expect(given.dBias).toBe(dBias);
      expect(sameBits(dWeight, fresh.dWeight!)).toBe(true);
      expect(sameBits(dBias, fresh.dBias!)).toBe(true);
      expect(sameBits(given.dx, fresh.dx)).toBe(true);
      // One of the two alone; the other is new.
      const only = await bn.backward(dy, { dBias: new Ctor(5) });
      expect(sameBits(only.dBias!, fresh.dBias!)).toBe(true);
      expect(sameBits(only.dWeight!, fresh.dWeight!)).toBe(true);
      // Functional: float64 sums whatever x's dtype.
      const st = channelStats(x, shape);
      const opts = { mean: Float64Array.from(st.mean), var: Float64Array.from(st.var), weight: bn.weight!, pool };
      const f = await batchNormBackward(x, dy, shape, opts);
      const fw = new Float64Array(5);
      const fb = new Float64Array(5);
      const g = await batchNormBackward(x, dy, shape, { ...opts, dWeight: fw, dBias: fb });
      expect(g.dWeight).toBe(fw);
      expect(g.dBias).toBe(fb);
      expect(sameBits(fw, f.dWeight)).toBe(true);
      expect(sameBits(fb, f.dBias)).toBe(true);
    }
  });

  it('without a forward is a NoForwardError; a dy of another length is an argument error', async () => {
    const bn = new BatchNorm(3, { pool });
    await expect(bn.backward(new Float32Array(12))).rejects.toBeInstanceOf(NoForwardError);
    await bn.forward(randomTensor([4, 3], 'float32', 1), [4, 3]);
    await expect(bn.backward(new Float32Array(11))).rejects.toThrow(/dy must have the forward input's length 12; got length 11/);
  });

  it('after a forward written over its input (out is x, or a view of the same bytes): an ArgumentError, dx and the module untouched', async () => {
    const shape = [4, 3, 5];
    for (const view of [false, true]) {
      const bn = new BatchNorm(3, { pool });
      const x = randomTensor(shape, 'float32', 31) as Float32Array;
      await bn.forward(x, shape, { out: view ? new Float32Array(x.buffer, x.byteOffset, x.length) : x });
      const y = x.slice();
      const out = randomTensor(shape, 'float32', 32) as Float32Array;
      const before = out.slice();
      await expect(bn.backward(randomTensor(shape, 'float32', 33) as Float32Array, { out })).rejects.toMatchObject({
        code: 'ERR_BNPOOL_ARG', message: 'backward needs the forward input, but the latest forward wrote its output over it (options.out was x)',
      });
      expect(sameBits(out, before)).toBe(true);
      expect(sameBits(x, y)).toBe(true);
      // A forward into another array makes backward possible again: a fresh module's dx.
      const dy = randomTensor(shape, 'float32', 33) as Float32Array;
      await bn.forward(x, shape, { out: new Float32Array(x.length) });
      const fresh = new BatchNorm(3, { pool });
      await fresh.forward(x, shape);
      expect(sameBits((await bn.backward(dy)).dx, (await fresh.backward(dy)).dx)).toBe(true);
    }
  });

  it('gives the same bits at 1, 2, 3 and 8 threads; functional form and pool buffers agree', async () => {
    const shape = [8, 3, 60, 61];
    const x = randomTensor(shape, 'float32', 7);
    const dy = randomTensor(shape, 'float32', 8);
    const st = channelStats(x, shape);
    const opts = { mean: Float64Array.from(st.mean), var: Float64Array.from(st.var), weight: new Float32Array([1, 2, 3]) };
    const pools = [1, 2, 3, 8].map((t) => new Pool({ threads: t, inlineThreshold: 0, grainSize: 1 }));
    const runs = await Promise.all(pools.map((p) => batchNormBackward(x, dy, shape, { ...opts, pool: p })));
    for (const r of runs.slice(1)) {
      expect(sameBits(r.dx, runs[0].dx)).toBe(true);
      expect(sameBits(r.dWeight, runs[0].dWeight)).toBe(true);
      expect(sameBits(r.dBias, runs[0].dBias)).toBe(true);
    }
    const px = pools[1].alloc(x.length); px.set(x);
    const pdy = pools[1].alloc(x.length); pdy.set(dy);
    const out = pools[1].alloc(x.length).fill(NaN);
    await batchNormBackward(px, pdy, shape, { ...opts, pool: pools[1], out });
    expect(sameBits(out, runs[0].dx)).toBe(true);
    await Promise.all(pools.map((p) => p.close()));
  });
});

describe('backward through staging chunks', () => {
  it('gives the same bits through a small pool (x, dy and the ReLU mask staged) as through a big one; synced, one all-reduce for all chunks', async () => {
    const big = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const small = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, maxMemory: 512 * 1024, initialMemory: 131072 });
    for (const shape of [[16, 4, 60, 60], [20000, 16]]) {
      const x = randomTensor(shape, 'float32', 21);
      const dy = randomTensor(shape, 'float32', 22);
      expect(x.byteLength).toBeGreaterThan(512 * 1024);
      const fwd = await batchNorm(x, shape, { training: true, activation: 'relu', pool: big });
      const opts = { mean: fwd.mean, var: fwd.var, activation: 'relu' as const, y: fwd.y };
      const one = await batchNormBackward(x, dy, shape, { ...opts, pool: big });
      const chunked = await batchNormBackward(x, dy, shape, { ...opts, pool: small });
      expect(sameBits(chunked.dx, one.dx)).toBe(true);
      expect(sameBits(chunked.dWeight, one.dWeight)).toBe(true);
      expect(sameBits(chunked.dBias, one.dBias)).toBe(true);
      // Synced (a one-shard all-reduce): one hook call between the passes over every chunk.
      let hookCalls = 0;
      const synced = await batchNormBackward(x, dy, shape, {
        ...opts, pool: small, count: x.length / shape[1], reduceGrads: (local) => { hookCalls++; return local; },
      });
      expect(hookCalls).toBe(1);
      expect(maxRelativeError(synced.dx, one.dx, 1e-2)).toBeLessThan(1e-5);
      expect(sameBits(synced.dBias, one.dBias)).toBe(true);
      expect(small.memoryStats.byteLength).toBeLessThanOrEqual(512 * 1024);
    }
    await Promise.all([big.close(), small.close()]);
  });
});

describe('backward in place (out: dy, both on the pool)', () => {
  it('writes dx over dy with the bits of a dx apart: every grid mode and path, both kernels and dtypes, training and eval, ReLU', async () => {
    // The kernels then read dy where they write dx, as staged calls also do where x is on the pool
    // (dx over dy's copy: the next test).
    const { count, ops } = await eachInPlaceCase(async ({ pool, shape, layout, dtype, C, n, activation, training, label, ops }) => {
      const x = pool.alloc(n, dtype);
      x.set(randomTensor(shape, dtype, 50 + C));
      const dy0 = randomTensor(shape, dtype, 60 + C);
      const bn = new BatchNorm(C, { pool, dtype, layout, activation });
      bn.weight!.set(randomVector(C, dtype, 70 + C, 0.5, 2));
      await bn.forward(x, shape);
      if (!training) await bn.eval().forward(x, shape);
      const apart = pool.alloc(n, dtype);
      const dy = pool.alloc(n, dtype);
      dy.set(dy0);
      const want = await bn.backward(dy, { out: apart });
      const got = await recordingOps(pool, ops, () => bn.backward(dy, { out: dy }));
      expect(got.dx, label).toBe(dy);
      expect(sameBits(dy, apart), label).toBe(true);
      expect(sameBits(got.dWeight!, want.dWeight!), label).toBe(true);
      expect(sameBits(got.dBias!, want.dBias!), label).toBe(true);
      // And dx is not dy: the comparison could not pass by leaving dy as it was.
      expect(sameBits(apart, dy0), label).toBe(false);
      for (const a of [x, apart, dy]) pool.free(a);
    });
    expect(count).toBe(KERNELS.length * 3 * 12 * 2 * 4);
    for (const seen of ops.values()) expect([...seen].sort()).toEqual(['fused', 'phased', 'split', 'stats']);
  });

  it('with x on the pool and dy ordinary: dy staged, dx written over its copy and copied back into dy, whole or in chunks', async () => {
    const pools = [
      new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }),
      new Pool({ threads: 1, inlineThreshold: 0, grainSize: 1, maxMemory: 1 << 20, initialMemory: 1 << 17 }),
    ];
    let compared = 0;
    for (const pool of pools) {
      for (const shape of [[4, 6, 40, 41], [2, 3, 16385], [300, 37], [20000, 5]]) {
        const x = pool.alloc(shape.reduce((a, b) => a * b, 1));
        x.set(randomTensor(shape, 'float32', 80 + shape[1]));
        const dy0 = randomTensor(shape, 'float32', 90 + shape[1]);
        for (const activation of [null, 'relu'] as const) {
          const bn = new BatchNorm(shape[1], { pool, activation });
          await bn.forward(x, shape);
          const want = await bn.backward(dy0.slice());
          const dy = dy0.slice();
          const got = await bn.backward(dy, { out: dy });
          const label = `${pool.threads} threads [${shape}] ${activation}`;
          expect(got.dx, label).toBe(dy);
          expect(sameBits(dy, want.dx), label).toBe(true);
          expect(sameBits(got.dBias!, want.dBias!), label).toBe(true);
          expect(sameBits(dy, dy0), label).toBe(false);
          compared++;
        }
        pool.free(x);
      }
    }
    expect(compared).toBe(16);
    // The small pool cannot hold [20000, 5]'s x, dy and mask whole: its ReLU backward went in chunks.
    expect(3 * 4 * 20000 * 5).toBeGreaterThan(pools[1].memoryStats.maxBytes);
    await Promise.all(pools.map((p) => p.close()));
  });
});
