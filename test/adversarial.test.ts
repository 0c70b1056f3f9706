/**
 * Hard data: a large offset with a tiny spread, constant channels, NaN in one channel; values whose
 * squares, or whose backward's products, leave float32's range.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, ChannelStats, type Pool } from '../dist/src/index.js';
import { fillChannel, normal, randomTensor, randomVector, rng } from './helpers/data.js';
import { closePools, KERNELS, openPools, POOL_CONFIGS } from './helpers/pools.js';
import { channelStats, dimsOf, dxErrorRatio, exactChannelStats, maxRelativeError, outputErrorRatio, referenceBackward, referenceForward } from './helpers/reference.js';

for (const kernel of KERNELS) {
  describe(`adversarial data (${kernel} kernel)`, () => {
    let pools: Map<string, Pool>;
    beforeAll(() => { pools = openPools(kernel); });
    afterAll(() => closePools(pools));

    for (const { name } of POOL_CONFIGS) {
      for (const shape of [[16, 3, 64, 64], [4096, 3], [8, 2, 5, 7, 11]]) {
        it(`float32 with mean 3000 and sd 0.5 keeps the variance within 1e-4: ${name}, [${shape}]`, async () => {
          const x = randomTensor(shape, 'float32', 42, () => ({ offset: 3000, spread: 0.5 }));
          const r = await batchNorm(x, shape, { training: true, pool: pools.get(name)! });
          const ref = channelStats(x, shape);
          expect(maxRelativeError(r.var, ref.var)).toBeLessThan(1e-4);
          expect(maxRelativeError(r.mean, ref.mean)).toBeLessThan(1e-9);
          // The output is as good as float32 arithmetic allows at this offset.
          const full = referenceForward(x, shape, { training: true });
          expect(outputErrorRatio(r.y, x, shape, full, null, 'float32')).toBeLessThanOrEqual(1);
          // ...and naive single-pass E[x^2] - E[x]^2 in float32 really fails this test.
          let s1 = Math.fround(0);
          let s2 = Math.fround(0);
          const [N, C] = shape;
          const S = x.length / (N * C);
          for (let n = 0; n < N; n++) {
            for (let s = 0; s < S; s++) {
              const v = x[n * C * S + s];
              s1 = Math.fround(s1 + v);
              s2 = Math.fround(s2 + Math.fround(v * v));
            }
          }
          const m = N * S;
          const naive = Math.fround(s2 / m) - Math.fround(s1 / m) ** 2;
          expect(Math.abs(naive - ref.var[0]) / ref.var[0]).toBeGreaterThan(1e-4);
        });
      }

      for (const shape of [[16, 3, 64, 64], [4096, 3], [8, 2, 5, 7, 11], [64, 40]]) {
        it(`float64 with mean 3000 and sd 1e-3 gets the exact variance and a mean within half an ulp: ${name}, [${shape}]`, async () => {
          // The blocks' means differ from each other by ~1e-5 and are rounded at 3000 (ulp 4.5e-13):
          // merged as they were until 2026-12-03, they put the variance 1.3e-12 to 1.3e-11 off and
          // the mean up to 0.97 ulp (`node dist/bench/offset-stats.js <that build's dist>`), where
          // the float64 sums' own rounding leaves up to 8.5e-15.
          const x = randomTensor(shape, 'float64', 43, (c) => ({ offset: 3000 + c, spread: 1e-3 }));
          const exact = exactChannelStats(x, shape);
          const r = await batchNorm(x, shape, { training: true, pool: pools.get(name)! });
          const stats = await ChannelStats.fromBatch(x, shape, { pool: pools.get(name)! });
          for (const [mean, variance] of [[r.mean, r.var], [stats.mean(), stats.variance({ ddof: 0 })]]) {
            expect(maxRelativeError(variance, exact.var)).toBeLessThan(5e-14);
            for (let c = 0; c < exact.mean.length; c++) expect(Math.abs(exact.meanErrorUlps(c, mean[c]))).toBeLessThanOrEqual(0.5 + 1e-6);
          }
        });
      }

      it(`float64 integers 1e15 + (i mod 13) get their exact variance: ${name}`, async () => {
        // The offset's ulp is 0.125: the blocks' rounded means put the variance up to 1.9e-8 off.
        const shape = [16, 2, 40, 40];
        const x = Float64Array.from({ length: 16 * 2 * 1600 }, (_, i) => 1e15 + (i % 13));
        const r = await batchNorm(x, shape, { training: true, pool: pools.get(name)! });
        const exact = exactChannelStats(x, shape);
        expect(maxRelativeError(r.var, exact.var)).toBeLessThan(5e-14);
        for (let c = 0; c < 2; c++) expect(Math.abs(exact.meanErrorUlps(c, r.mean[c]))).toBeLessThanOrEqual(0.5 + 1e-6);
      });

      for (const dtype of ['float32', 'float64'] as const) {
        it(`a constant channel gives exactly bias and no NaN: ${name}, ${dtype}`, async () => {
          const shape = [5, 3, 40, 41];
          const x = randomTensor(shape, dtype, 7);
          fillChannel(x, shape, 1, () => 1234.5);
          const bn = new BatchNorm(3, { pool: pools.get(name)!, dtype });
          bn.bias!.set([0.5, -0.75, 2]);
          bn.weight!.set([2, 3, 4]);
          const y = await bn.forward(x, shape);
          const S = 40 * 41;
          for (let n = 0; n < 5; n++) {
            for (let s = 0; s < S; s++) expect(y[(n * 3 + 1) * S + s]).toBe(-0.75);
          }
          expect(y.some(Number.isNaN)).toBe(false);
          expect(bn.runningVar![1]).toBeCloseTo(0.9, 6);
          expect(bn.runningMean![1]).toBeCloseTo(123.45, 3);
        });

        it(`NaN in one channel changes only that channel: ${name}, ${dtype}`, async () => {
          const shape = [6, 4, 33];
          const x = randomTensor(shape, dtype, 9);
          const clean = x.slice();
          x[(2 * 4 + 2) * 33 + 5] = NaN;
          const bn = new BatchNorm(4, { pool: pools.get(name)!, dtype });
          const cleanBn = new BatchNorm(4, { pool: pools.get(name)!, dtype });
          const y = await bn.forward(x, shape);
          const yClean = await cleanBn.forward(clean, shape);
          for (let n = 0; n < 6; n++) {
            for (let c = 0; c < 4; c++) {
              for (let s = 0; s < 33; s++) {
                const i = (n * 4 + c) * 33 + s;
                if (c === 2) expect(y[i]).toBeNaN();
                else expect(y[i]).toBe(yClean[i]);
              }
            }
          }
          expect(bn.runningMean![2]).toBeNaN();
          expect(bn.runningVar![2]).toBeNaN();
          for (const c of [0, 1, 3]) {
            expect(bn.runningMean![c]).toBe(cleanBn.runningMean![c]);
            expect(bn.runningVar![c]).toBe(cleanBn.runningVar![c]);
          }
        });
      }
    }

    for (const { name } of POOL_CONFIGS) {
      // One shape per float32 statistics kernel: planes, short runs, a few interleaved channels
      // (pattern), channels in lanes (16 + 4, and 16 + a scalar tail).
      for (const shape of [[2, 3, 40, 40], [4, 3, 5, 7], [64, 3], [64, 20], [50, 17]]) {
        it(`float32 whose squares overflow float32 (channel 1: sd 1e25) normalizes as in float64: ${name}, [${shape}]`, async () => {
          const x = randomTensor(shape, 'float32', 5, (c) => (c === 1 ? { offset: 3e24, spread: 1e25 } : { offset: c - 1.5, spread: 1 + c }));
          const r = await batchNorm(x, shape, { training: true, pool: pools.get(name)! });
          const ref = channelStats(x, shape);
          expect(ref.var[1]).toBeGreaterThan(1e49); // (x - K)^2 passes float32's 3.4e38
          expect(maxRelativeError(r.var, ref.var)).toBeLessThan(1e-6);
          expect(maxRelativeError(r.mean, ref.mean)).toBeLessThan(1e-6);
          const full = referenceForward(x, shape, { training: true });
          expect(outputErrorRatio(r.y, x, shape, full, null, 'float32')).toBeLessThanOrEqual(1);
        });
      }

      // The other end: deviations whose float32 squares are subnormal (below ~1.1e-19) or zero
      // (below ~2.6e-23). Channel 2 is constant, which must stay exact (and fast: sums of zero).
      for (const shape of [[2, 3, 40, 40], [4, 3, 5, 7], [64, 3], [64, 20], [50, 17]]) {
        for (const [offset, spread] of [[1e-20, 1.7e-22], [0, 1.7e-24], [-3e-30, 1e-36]]) {
          it(`float32 with deviations too small to square in float32 (channel 1: ${offset} ± ${spread}) keeps its variance: ${name}, [${shape}]`, async () => {
            const x = randomTensor(shape, 'float32', 6, (c) => (c === 1 ? { offset, spread } : { offset: c - 1.5, spread: 1 + c }));
            fillChannel(x, shape, 2, () => 0.1);
            const r = await batchNorm(x, shape, { training: true, pool: pools.get(name)! });
            const ref = channelStats(x, shape);
            expect(ref.var[1]).toBeGreaterThan(0);
            expect(ref.var[1]).toBeLessThan(spread * spread * 2);
            // Relative to the values themselves (the helper's default floor, 1e-30, would hide them).
            expect(maxRelativeError(r.var, ref.var, Number.MIN_VALUE)).toBeLessThan(1e-6);
            expect(maxRelativeError(r.mean, ref.mean, Number.MIN_VALUE)).toBeLessThan(1e-6);
            expect(r.var[2]).toBe(0);
            expect(r.mean[2]).toBe(Math.fround(0.1));
          });
        }
      }

      // Deviations that all square to zero in float32 (2^-76: each square under half its smallest
      // subnormal) and whose float32 sums cancel exactly: channel 1 is K, K + d, K - d, K, ... (by
      // its own index k = n·S + s), so a block that starts on a multiple of 4 has shifted sums that
      // are both zero, as a constant block's are. Only a read of the block tells them apart where
      // K is under 2^-50 (workers/wasm/assembly/common.ts, PROVEN_SHIFT). Until 2026-12-06 such a
      // block was taken for constant: a variance 6% to 100% low, and y off with this eps. Channel 0
      // is constant at 2^-73 and channel 2 all zeros (the read finds them constant), which must stay
      // exact; the forward's y, with eps 1e-60, needs channel 1's variance. One shape per float32
      // statistics kernel, as above, but with runs (S) and rows (N) that are multiples of 4: the
      // short runs' last values and the rows past the last whole period would be summed apart
      // (in float64, or about a shift of K ± d), and no longer cancel.
      for (const shape of [[2, 3, 40, 40], [4, 3, 4, 7], [64, 3], [64, 20], [48, 17]]) {
        for (const K of [2 ** -73, 0]) {
          it(`float32 of deviations that square to zero and cancel in the sums (channel 1: ${K} ± 2^-76) keeps its variance: ${name}, [${shape}]`, async () => {
            const EPS = 1e-60;
            const d = 2 ** -76;
            const C = shape[1];
            const x = randomTensor(shape, 'float32', 12);
            const { N, S } = dimsOf(shape);
            for (let k = 0; k < N * S; k++) {
              const at = (c: number): number => (Math.floor(k / S) * C + c) * S + (k % S);
              x[at(0)] = 2 ** -73;
              x[at(1)] = K + [0, d, -d, 0][k % 4];
              x[at(2)] = 0;
            }
            // The premise: every float32 square of channel 1's deviations is zero.
            expect(Math.fround(Math.fround(K + d - K) ** 2)).toBe(0);
            const exact = channelStats(x, shape);
            expect(exact.var[1]).toBeGreaterThan(0);
            const stats = await ChannelStats.fromBatch(x, shape, { pool: pools.get(name)! });
            const bn = new BatchNorm(C, { pool: pools.get(name)!, eps: EPS });
            bn.weight!.set(randomVector(C, 'float32', 13, 0.5, 2));
            bn.bias!.set(randomVector(C, 'float32', 14, -1, 1));
            const y = await bn.forward(x, shape);
            expect(Math.abs(stats.variance({ ddof: 0 })[1] - exact.var[1])).toBeLessThanOrEqual(1e-6 * exact.var[1]);
            expect(Math.abs(stats.mean()[1] - exact.mean[1])).toBeLessThanOrEqual(1e-6 * d);
            for (const c of [0, 2]) expect([stats.variance()[c], stats.mean()[c]]).toEqual([0, c === 0 ? 2 ** -73 : 0]);
            const ref = referenceForward(x, shape, { training: true, eps: EPS, weight: bn.weight, bias: bn.bias });
            expect(outputErrorRatio(y, x, shape, ref, bn.bias, 'float32')).toBeLessThanOrEqual(1);
          });
        }
      }

      // The backward's products dy·(x - mean), which the WebAssembly kernel takes in float32 lanes,
      // past float32's range (1e40: an infinity, and NaN where +Inf meets -Inf) and in its
      // subnormal range (1e-40); and x of spread 1e25 with dy of 1, whose dx coefficient
      // b = -weight·invstd³·Σdy(x - mean)/m (~1e-52) float32 cannot hold. One shape per float32
      // backward kernel as above, with and without the ReLU's mask. Channel 2 is constant (every
      // product exactly zero), which stays exact.
      for (const shape of [[2, 3, 40, 40], [4, 3, 5, 7], [64, 3], [64, 20], [50, 17]]) {
        for (const [xSpread, dySpread] of [[1e20, 1e20], [1e-20, 1e-20], [1e25, 1]]) {
          for (const activation of [null, 'relu'] as const) {
            it(`float32 backward, channel 1 of x spread ${xSpread} and dy spread ${dySpread}, gives float64's gradients: ${name}, [${shape}], ${activation ?? 'no activation'}`, async () => {
              const x = randomTensor(shape, 'float32', 8, (c) => (c === 1 ? { offset: 0, spread: xSpread } : { offset: c - 1.5, spread: 1 + c }));
              fillChannel(x, shape, 2, () => 0.1);
              const dy = randomTensor(shape, 'float32', 9, (c) => (c === 1 ? { offset: 0, spread: dySpread } : { offset: 0.5, spread: 1 }));
              const bn = new BatchNorm(shape[1], { pool: pools.get(name)!, activation });
              bn.bias!.set([0.25, 0, 0.5].concat(Array(shape[1] - 3).fill(0.1)));
              const y = await bn.forward(x, shape);
              const { dx, dWeight, dBias } = await bn.backward(dy);
              const g = activation === 'relu' ? dy.map((v, i) => (y[i] <= 0 ? 0 : v)) : dy;
              const st = channelStats(x, shape);
              const ref = referenceBackward(x, g, shape, st.mean, st.var.map((v) => 1 / Math.sqrt(v + 1e-5)), bn.weight, true);
              expect(Math.abs(ref.dWeight[1])).toBeGreaterThan(0);
              expect(Math.abs(dWeight![1] - ref.dWeight[1])).toBeLessThanOrEqual(1e-6 * Math.abs(ref.dWeight[1]));
              expect(Math.abs(dBias![1] - ref.dBias[1])).toBeLessThanOrEqual(1e-6 * Math.abs(ref.dBias[1]));
              expect(dxErrorRatio(dx, ref, g, x, shape, 'float32')).toBeLessThanOrEqual(1);
              expect(dWeight![2] === 0).toBe(true);
              expect(Math.abs(dBias![2] - ref.dBias[2])).toBeLessThanOrEqual(1e-6 * Math.abs(ref.dBias[2]));
            });
          }
        }
      }

      // Products dy·(x - mean) that all round to zero in float32 (each under half its smallest
      // subnormal), while eps 1e-60 keeps x̂ of order 1, so dWeight and dx need them: the float32
      // Σdy·(x - mean) is then exactly zero beside a Σdy that is not, and only a check that some
      // product is not zero in fact (x != hi and dy != 0 somewhere) sends the block to its float64
      // resum (workers/wasm/assembly/backward-partial.ts). Channel 1 (and 16 of 18) is such a
      // channel; its dy is zero in every fourth row from the fourth, the last row included, so that
      // a check whose answer comes from one position of an interleaved channel (C = 3) or from the
      // last row (lanes, beside channel 0, whose dy is zero throughout) answers wrong. One shape per
      // float32 backward kernel: planes, short runs, a pattern, channels in lanes (channel 17 of 18,
      // the last, an ordinary one).
      const EPS = 1e-60;
      for (const shape of [[2, 3, 40, 40], [4, 3, 5, 7], [64, 3], [64, 18]]) {
        it(`float32 backward whose products all round to zero in float32 gives float64's gradients: ${name}, [${shape}]`, async () => {
          const C = shape[1];
          const tiny = (c: number): boolean => c === 1 || (C > 16 && c === 16);
          const x = randomTensor(shape, 'float32', 10, (c) => (tiny(c) ? { offset: 0, spread: 1e-23 } : { offset: c - 1.5, spread: 1 + c }));
          const dy = randomTensor(shape, 'float32', 11, (c) => (tiny(c) ? { offset: 1e-25, spread: 1e-24 } : { offset: 0.5, spread: 1 }));
          const { N, S } = dimsOf(shape);
          const tinies = [1, 16].filter(tiny);
          /** Where the k-th value of channel c is (k = n·S + s). */
          const at = (k: number, c: number): number => (Math.floor(k / S) * C + c) * S + (k % S);
          fillChannel(dy, shape, 0, () => 0);
          for (const c of tinies) for (let k = 3 * S; k < N * S; k++) if (Math.floor(k / S) % 4 === 3) dy[at(k, c)] = 0;
          const bn = new BatchNorm(C, { pool: pools.get(name)!, eps: EPS });
          await bn.forward(x, shape);
          const { dx, dWeight, dBias } = await bn.backward(dy);
          const st = channelStats(x, shape);
          const ref = referenceBackward(x, dy, shape, st.mean, st.var.map((v) => 1 / Math.sqrt(v + EPS)), bn.weight, true);
          for (const c of tinies) {
            // The premise: every float32 product of the channel is zero, and dWeight is a normal float32.
            const hi = Math.fround(st.mean[c]);
            let products = 0;
            for (let k = 0; k < N * S; k++) if (Math.fround(Math.fround(x[at(k, c)] - hi) * dy[at(k, c)]) !== 0) products++;
            expect(products).toBe(0);
            expect(Math.abs(ref.dWeight[c])).toBeGreaterThan(2 ** -126);
            // The sums are float64's: float32 rounds only the results.
            expect(Math.abs(dWeight![c] - ref.dWeight[c])).toBeLessThanOrEqual(1e-6 * Math.abs(ref.dWeight[c]));
            expect(Math.abs(dBias![c] - ref.dBias[c])).toBeLessThanOrEqual(1e-6 * Math.abs(ref.dBias[c]));
          }
          // Channel 0's gradients are zero; dx covers every channel.
          expect([dWeight![0], dBias![0]]).toEqual([0, 0]);
          expect(dxErrorRatio(dx, ref, dy, x, shape, 'float32')).toBeLessThanOrEqual(1);
        });
      }

      for (const shape of [[6, 3, 40, 41], [2000, 3], [8, 3, 37]]) {
        it(`float64 near float64's range (channel 1: ±1.5e308): a finite mean, variance +Infinity, output = bias: ${name}, [${shape}]`, async () => {
          // Shifted sums of such data overflow although every value is finite: until 2026-12-03 the
          // mean came out +Infinity (for negative data too) or NaN, and the variance NaN.
          const x = randomTensor(shape, 'float64', 47);
          const clean = x.slice();
          const rand = rng(48);
          fillChannel(x, shape, 1, () => (rand() < 0.5 ? -1.5e308 : 1.5e308) * (0.5 + rand() / 2));
          const exact = exactChannelStats(x, shape);
          const options = { pool: pools.get(name)!, dtype: 'float64' as const };
          const bn = new BatchNorm(3, { ...options, affine: true });
          bn.weight!.set([1.5, 2, 0.5]);
          bn.bias!.set([0.25, -3, 1]);
          const cleanBn = new BatchNorm(3, { ...options, affine: true });
          cleanBn.weight!.set(bn.weight!);
          cleanBn.bias!.set(bn.bias!);
          const y = await bn.forward(x, shape);
          const yClean = await cleanBn.forward(clean, shape);
          const stats = await ChannelStats.fromBatch(x, shape, { pool: pools.get(name)! });
          const count = x.length / 3;
          for (const mean of [stats.mean()[1], bn.runningMean![1] / 0.1]) {
            // The mean of values this large and of both signs: within a sum's rounding bound,
            // count * 2^-53 of their magnitude.
            expect(Math.abs(mean - exact.mean[1])).toBeLessThan(count * 2 ** -53 * 1.5e308);
          }
          expect(stats.variance()[1]).toBe(Infinity);
          expect(bn.runningVar![1]).toBe(Infinity);
          const N = shape[0];
          const S = x.length / (N * 3);
          for (let n = 0; n < N; n++) {
            for (let c = 0; c < 3; c++) {
              for (let s = 0; s < S; s++) {
                const i = (n * 3 + c) * S + s;
                expect(y[i]).toBe(c === 1 ? -3 : yClean[i]); // scale 2 / sqrt(Infinity) = 0
              }
            }
          }
          // The backward: x̂ = (x - mean)·0 = 0 in channel 1, so dWeight and dx are 0 there, though
          // Σdy·(x - mean) overflows (until 2026-12-03 both came out NaN, as PyTorch's do).
          const dy = randomTensor(shape, 'float64', 52);
          const g = await bn.backward(dy);
          const gClean = await cleanBn.backward(dy);
          expect(g.dWeight![1]).toBe(0);
          expect([g.dWeight![0], g.dWeight![2], g.dBias![0], g.dBias![1], g.dBias![2]])
            .toEqual([gClean.dWeight![0], gClean.dWeight![2], gClean.dBias![0], gClean.dBias![1], gClean.dBias![2]]);
          for (let n = 0; n < N; n++) {
            for (let c = 0; c < 3; c++) {
              for (let s = 0; s < S; s++) {
                const i = (n * 3 + c) * S + s;
                if (c === 1) expect(Math.abs(g.dx[i])).toBe(0); // 0 times a negative term: -0
                else expect(g.dx[i]).toBe(gClean.dx[i]);
              }
            }
          }
        });

        it(`float64 with an outlier of 1e153 first in channel 0 keeps its variance: ${name}, [${shape}]`, async () => {
          // The outlier is the shift K of its block (the channel's first value): the shifted sum
          // s1 = Σ(x - K), ~1e153 times the block's count, squares past float64's range, and so
          // does s2, although the variance (~1e306 / count) does not. Until 2026-12-03 that
          // block's m2 came out NaN (s2 - s1²/count = Inf - Inf; where s1² alone overflowed, it
          // was clamped from -Inf to 0).
          const x = randomTensor(shape, 'float64', 49);
          x[0] = 1e153;
          const ref = channelStats(x, shape);
          const r = await batchNorm(x, shape, { training: true, pool: pools.get(name)! });
          const stats = await ChannelStats.fromBatch(x, shape, { pool: pools.get(name)! });
          for (const [mean, variance] of [[r.mean, r.var], [stats.mean(), stats.variance()]]) {
            // Sums shifted by the outlier lose digits to it: 3.5e-10 (variance) and 1.1e-9 (mean)
            // off before such a block was summed again about its mean (farShift); 1.3e-12 and
            // 1e-14 since.
            expect(maxRelativeError(variance, ref.var)).toBeLessThan(1e-11);
            expect(maxRelativeError(mean, ref.mean)).toBeLessThan(1e-12);
          }
        });
      }

      for (const dtype of ['float32', 'float64'] as const) {
        // Blocks of 3, 5, 8 and 9 values too ([N, 3] takes a channel's N rows in one block): until
        // 2026-12-03 the small blocks' bound was at least √8 standard deviations, which a block of
        // 9 values or fewer never passes (its outlier lies at most √(count - 1) out).
        for (const shape of [[4, 3, 64, 64], [16384, 3], [64, 3, 33], [8, 3, 37], [64, 3], [2, 3, 32], [3, 3], [5, 3], [8, 3], [9, 3]]) {
          it(`${dtype} with an outlier of 1e7 first in channel 0, among values in [0, 1): the variance within 1e-11: ${name}, [${shape}]`, async () => {
            // The outlier is the shift K of its block, far from the block's mean: until 2026-12-03
            // the WebAssembly kernel's float32 lanes, cancelling s2 - s1²/count, put the variance
            // 1e-5 to 1.3e-3 off (and the mean up to 8e-4), past the 1e-4 of the hard-data rule,
            // and the float64 sums 1e-13 to 1.5e-10. Now a block whose shift lies more than 8
            // standard deviations from its mean (√(count / 2) in blocks under 128 values: the
            // channels of 64 values, where the outlier lies 7.9 out, got 4.3e-6 under 8) is summed
            // again, in float64, about that mean.
            const x = randomVector(shape.reduce((a, b) => a * b), dtype, 51, 0, 1);
            x[0] = 1e7;
            const ref = channelStats(x, shape);
            const r = await batchNorm(x, shape, { training: true, pool: pools.get(name)! });
            expect(Math.abs(r.var[0] - ref.var[0]) / ref.var[0]).toBeLessThan(1e-11);
            expect(Math.abs(r.mean[0] - ref.mean[0]) / ref.mean[0]).toBeLessThan(1e-10);
            expect(maxRelativeError(r.var, ref.var)).toBeLessThan(1e-6); // the other channels
          });
        }
      }

      it(`ChannelStats and the pool merge parts of opposite signs near float64's range to a finite mean: ${name}`, async () => {
        // Constant parts (m2 0) of means 1.5e308 and -1.2e308: Chan's delta (2.7e308) overflows, and
        // so does the merged m2 (2.7e308² * 4001 / 2), which is past float64's range.
        const shape = [2, 1, 4001];
        const x = Float64Array.from({ length: 2 * 4001 }, (_, i) => (i < 4001 ? 1.5e308 : -1.2e308));
        const exact = exactChannelStats(x, shape);
        const pool = pools.get(name)!;
        const a = await ChannelStats.fromBatch(x.subarray(0, 4001), [1, 1, 4001], { pool });
        const b = await ChannelStats.fromBatch(x.subarray(4001), [1, 1, 4001], { pool });
        const whole = await ChannelStats.fromBatch(x, shape, { pool });
        for (const stats of [a.merge(b), b.merge(a), whole]) {
          expect(Math.abs(stats.mean()[0] - exact.mean[0])).toBeLessThan(x.length * 2 ** -53 * 1.5e308);
          expect(stats.variance()[0]).toBe(Infinity);
        }
        expect([a.mean()[0], a.variance()[0], b.mean()[0], b.variance()[0]]).toEqual([1.5e308, 0, -1.2e308, 0]);
      });

      it(`+Inf in a channel gives it mean +Inf, NaN variance and output (as PyTorch); +Inf with -Inf a NaN mean: ${name}`, async () => {
        const shape = [6, 4, 33];
        const x = randomTensor(shape, 'float32', 19);
        const clean = x.slice();
        x[(3 * 4 + 1) * 33 + 7] = Infinity;
        x[(1 * 4 + 2) * 33 + 3] = Infinity;
        x[(4 * 4 + 2) * 33 + 9] = -Infinity;
        const bn = new BatchNorm(4, { pool: pools.get(name)! });
        const cleanBn = new BatchNorm(4, { pool: pools.get(name)! });
        const y = await bn.forward(x, shape);
        const yClean = await cleanBn.forward(clean, shape);
        expect(bn.runningMean![1]).toBe(Infinity);
        expect(bn.runningVar![1]).toBeNaN();
        expect(bn.runningMean![2]).toBeNaN();
        expect(bn.runningVar![2]).toBeNaN();
        for (let n = 0; n < 6; n++) {
          for (let c = 0; c < 4; c++) {
            for (let s = 0; s < 33; s++) {
              const i = (n * 4 + c) * 33 + s;
              if (c === 1 || c === 2) expect(y[i]).toBeNaN();
              else expect(y[i]).toBe(yClean[i]);
            }
          }
        }
        for (const c of [0, 3]) expect(bn.runningMean![c]).toBe(cleanBn.runningMean![c]);
      });
    }

    it('a huge spread next to a tiny one stays accurate per channel', async () => {
      const shape = [32, 2, 999];
      const rand = rng(3);
      const x = new Float64Array(32 * 2 * 999);
      fillChannel(x, shape, 0, () => 1e6 * normal(rand));
      fillChannel(x, shape, 1, () => 1e-6 * normal(rand) + 1);
      const r = await batchNorm(x, shape, { training: true, pool: pools.get('2 workers')! });
      const ref = channelStats(x, shape);
      expect(maxRelativeError(r.var, ref.var)).toBeLessThan(1e-9);
    });
  });
}
