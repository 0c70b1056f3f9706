/**
 * The per-channel kernels, both implementations: the merge of a call's partials (Chan et al., in
 * block order) and the preps that make each channel's parameters, against the formulas and the
 * other kernel bit for bit; and the float32 backward sums' fallback to float64 where their products
 * cancel.
 */
import { describe, expect, it } from 'vitest';
import { rowScratchBytes } from '../dist/workers/kernels/kernel.js';
import {
  CHANNEL_ARRAYS, CHANNEL_BIAS, CHANNEL_INVSTD, CHANNEL_MEAN, CHANNEL_MEAN_LO, CHANNEL_VAR, CHANNEL_WEIGHT, PARTIAL_BYTES,
} from '../dist/workers/scratch.js';
import { normal, rng } from './helpers/data.js';
import { DATA, GUARD, OUT, PAIRED, PF, reference, SCRATCH, setup, ulpOf } from './helpers/kernels.js';

for (const name of ['js', 'wasm'] as const) {
  describe(`${name} kernel`, () => {
    it('mergeChannels gives the same bits as the other kernel, and Chan-merges exactly', () => {
      const a = setup(name);
      const other = setup(name === 'js' ? 'wasm' : 'js');
      const rand = rng(5);
      const partials = DATA;
      const channels = OUT;
      const params = SCRATCH;
      // The per-channel arrays of C channels at `channels`: index of array k's value for channel c.
      const arr = (C: number, k: number, c: number): number => channels / 8 + k * C + c;
      const arrays = (k: { f64: Float64Array }, C: number): number[] => Array.from(k.f64.slice(arr(C, 0, 0), arr(C, CHANNEL_ARRAYS, 0)));
      // Channel counts around the WebAssembly merge's four lanes, one block or several, and
      // ranges that do not start at channel 0 (the `phased` barriers merge a group at a time).
      for (const C of [1, 3, 4, 5, 9]) {
        for (const blocks of [1, 2, 7]) {
          for (const c0 of C > 2 ? [0, 1] : [0]) {
            const values: number[][] = Array.from({ length: C }, () => []);
            for (const k of [a, other]) {
              k.f64.fill(0, partials / 8, partials / 8 + C * blocks * PF);
              k.f64.fill(GUARD, arr(C, 0, 0), arr(C, CHANNEL_ARRAYS, 0));
            }
            for (let c = 0; c < C; c++) {
              for (let b = 0; b < blocks; b++) {
                const run = Array.from({ length: 3 + b }, () => 50 + c + (1 + b) * normal(rand));
                values[c].push(...run);
                const { n, mean, m2 } = reference(run);
                // A low part within half an ulp of the mean, as writePartial's: merged relative to
                // the first block's mean with it, by both kernels alike.
                const lo = (rand() - 0.5) * ulpOf(mean);
                for (const k of [a, other]) k.f64.set([n, mean, m2, lo], (partials + (c * blocks + b) * PARTIAL_BYTES) / 8);
              }
              for (const k of [a, other]) {
                k.f64[arr(C, CHANNEL_WEIGHT, c)] = 1 + c;
                k.f64[arr(C, CHANNEL_BIAS, c)] = c - 2;
              }
            }
            a.kernel.mergeChannels(partials, blocks, c0, C, channels, C, params, 1e-5);
            other.kernel.mergeChannels(partials, blocks, c0, C, channels, C, params, 1e-5);
            for (let c = 0; c < c0; c++) {
              for (const k of [CHANNEL_MEAN, CHANNEL_VAR, CHANNEL_MEAN_LO]) expect(a.f64[arr(C, k, c)]).toBe(GUARD);
            }
            // INVSTD is a backward's input only.
            for (let c = 0; c < C; c++) expect(a.f64[arr(C, CHANNEL_INVSTD, c)]).toBe(GUARD);
            for (let c = c0; c < C; c++) {
              const want = reference(values[c]);
              const mean = a.f64[arr(C, CHANNEL_MEAN, c)];
              const variance = a.f64[arr(C, CHANNEL_VAR, c)];
              expect(Math.abs(mean - want.mean)).toBeLessThan(1e-12);
              expect(Math.abs(variance - want.m2 / want.n) / (want.m2 / want.n)).toBeLessThan(1e-12);
              // The inputs stay as they were.
              expect([a.f64[arr(C, CHANNEL_WEIGHT, c)], a.f64[arr(C, CHANNEL_BIAS, c)]]).toEqual([1 + c, c - 2]);
              const p = a.f64.slice(params / 8 + 4 * c, params / 8 + 4 * c + 3);
              expect(p[0]).toBe(mean);
              expect(p[1]).toBe((1 + c) / Math.sqrt(variance + 1e-5));
              expect(p[2]).toBe(c - 2);
            }
            expect(arrays(a, C)).toEqual(arrays(other, C));
            expect(Array.from(a.f64.slice(params / 8, params / 8 + 4 * C))).toEqual(Array.from(other.f64.slice(params / 8, params / 8 + 4 * C)));
          }
        }
      }
      // Partials of large, uneven counts (as from long planes), where a change in the order of the
      // operations shows in the last bits: many channels, merges of 2 blocks (where one step's
      // rounding is not absorbed by later ones) and of 23.
      for (const blocks of [2, 23]) {
        const C = 64;
        for (const k of [a, other]) {
          for (let c = 0; c < C; c++) {
            for (let b = 0; b < blocks; b++) {
              const r2 = rng(1000 * c + b);
              const mean = 1e3 * c + 10 * normal(r2);
              const lo = (r2() - 0.5) * ulpOf(mean);
              k.f64.set([12345 + 777 * b, mean, (1 + r2()) * 1e-3, lo], (partials + (c * blocks + b) * PARTIAL_BYTES) / 8);
            }
            k.f64[arr(C, CHANNEL_WEIGHT, c)] = 1;
            k.f64[arr(C, CHANNEL_BIAS, c)] = 0;
          }
          k.kernel.mergeChannels(partials, blocks, 0, C, channels, C, params, 1e-5);
        }
        for (let c = 0; c < C; c++) {
          // A block's mean is mean + lo: taken relative to the first block's (the low parts
          // would round away against the means themselves), by sums rather than Chan's steps.
          const first = (partials + c * blocks * PARTIAL_BYTES) / 8;
          const K = a.f64[first + 1];
          const d = (at: number): number => (a.f64[at + 1] - K) + a.f64[at + 3];
          let n = 0;
          let sum = 0;
          for (let b = 0; b < blocks; b++) {
            const at = (partials + (c * blocks + b) * PARTIAL_BYTES) / 8;
            n += a.f64[at];
            sum += a.f64[at] * d(at);
          }
          const mean = sum / n;
          let m2 = 0;
          for (let b = 0; b < blocks; b++) {
            const at = (partials + (c * blocks + b) * PARTIAL_BYTES) / 8;
            m2 += a.f64[at + 2] + a.f64[at] * (d(at) - mean) ** 2;
          }
          expect(Math.abs(a.f64[arr(C, CHANNEL_MEAN, c)] - (K + mean))).toBeLessThan(1e-9);
          expect(Math.abs(a.f64[arr(C, CHANNEL_VAR, c)] - m2 / n) / (m2 / n)).toBeLessThan(1e-12);
        }
        expect(arrays(a, C)).toEqual(arrays(other, C));
        expect(Array.from(a.f64.slice(params / 8, params / 8 + 4 * C))).toEqual(Array.from(other.f64.slice(params / 8, params / 8 + 4 * C)));
      }
      // Infinite partial means (data holding infinities): +Inf stays +Inf, +Inf and -Inf give NaN,
      // whichever block comes first; the channels beside them in the same lanes keep their bits.
      {
        const C = 9;
        const blocks = 3;
        const inf: Record<number, number[]> = { 1: [1], 2: [0], 6: [0, 2], 8: [2] };
        const sign: Record<number, number[]> = { 1: [1], 2: [1], 6: [1, -1], 8: [1] };
        const results: number[][][] = [];
        for (const finiteOnly of [false, true]) {
          for (const k of [a, other]) {
            for (let c = 0; c < C; c++) {
              for (let b = 0; b < blocks; b++) {
                const r2 = rng(100 * c + b);
                const at = inf[c]?.indexOf(b) ?? -1;
                const bad = !finiteOnly && at >= 0;
                k.f64.set([10 + b, bad ? sign[c][at] * Infinity : 5 * normal(r2), bad ? NaN : 1 + r2(), bad ? NaN : 0], (partials + (c * blocks + b) * PARTIAL_BYTES) / 8);
              }
              k.f64[arr(C, CHANNEL_WEIGHT, c)] = 1;
              k.f64[arr(C, CHANNEL_BIAS, c)] = 0;
            }
            k.kernel.mergeChannels(partials, blocks, 0, C, channels, C, params, 1e-5);
          }
          expect(arrays(a, C)).toEqual(arrays(other, C));
          const column = (k: number): number[] => Array.from(a.f64.slice(arr(C, k, 0), arr(C, k, C)));
          results.push([column(CHANNEL_MEAN), column(CHANNEL_VAR)]);
        }
        const [[meanInf, varInf], [meanFinite, varFinite]] = results;
        for (const c of [1, 2, 8]) expect(meanInf[c]).toBe(Infinity);
        expect(meanInf[6]).toBeNaN();
        for (const c of [1, 2, 6, 8]) expect(varInf[c]).toBeNaN();
        for (const c of [0, 3, 4, 5, 7]) expect([meanInf[c], varInf[c]]).toEqual([meanFinite[c], varFinite[c]]);
      }
    });

    it("keeps MEAN_LO 0 where the mean is finite but TwoSum's own steps overflow", () => {
      // TwoSum (src/merge.ts's lowPart) of K = 2^1022 + 3·2^970 and r = -M (M: float64's
      // largest) rounds K + r away from zero at a tie, so that mean - K is -M - 2^970, which
      // rounds to -Infinity: the low part is NaN where the mean is finite. Only hand-made partials reach
      // it: r is -M where the first block weighs under 2^-54 of the channel (here 1 value
      // against 2^60), and the relative mean of the second block, (mean - K) + lo, is -M
      // exactly. Channel 0 of 1, and channel 1 of 4, where the WebAssembly lanes' step
      // overflows and the channel is merged again one at a time; the others are ordinary.
      const a = setup(name);
      const other = setup(name === 'js' ? 'wasm' : 'js');
      const partials = DATA;
      const channels = OUT;
      const params = SCRATCH;
      const M = Number.MAX_VALUE;
      const K = 2 ** 1022 + 3 * 2 ** 970;
      const meanB = -(2 ** 1023 - 2 ** 970);
      const loB = -(2 ** 1022) + 2 ** 972;
      expect((meanB - K) + loB).toBe(-M); // exact: every step is representable
      const blocks = 2;
      for (const [C, odd] of [[1, 0], [4, 1]]) {
        const arr = (k: number, c: number): number => channels / 8 + k * C + c;
        for (const k of [a, other]) {
          for (let c = 0; c < C; c++) {
            const at = (b: number): number => (partials + (c * blocks + b) * PARTIAL_BYTES) / 8;
            if (c === odd) {
              k.f64.set([1, K, 0, 0], at(0));
              k.f64.set([2 ** 60, meanB, 0, loB], at(1));
            } else {
              k.f64.set([3, 1 + c, 2, 0], at(0));
              k.f64.set([5, 2 + c, 4, 0], at(1));
            }
            k.f64[arr(CHANNEL_WEIGHT, c)] = 1;
            k.f64[arr(CHANNEL_BIAS, c)] = 0;
          }
          k.f64.fill(GUARD, arr(CHANNEL_MEAN_LO, 0), arr(CHANNEL_MEAN_LO, C));
          k.kernel.mergeChannels(partials, blocks, 0, C, channels, C, params, 1e-5);
        }
        const column = (k: { f64: Float64Array }, j: number): number[] => Array.from(k.f64.slice(arr(j, 0), arr(j, C)));
        // K + r, rounded as JavaScript rounds it, and no low part.
        expect(a.f64[arr(CHANNEL_MEAN, odd)]).toBe(K - M);
        expect(Number.isFinite(K - M)).toBe(true);
        expect(a.f64[arr(CHANNEL_MEAN_LO, odd)]).toBe(0);
        expect(a.f64[arr(CHANNEL_VAR, odd)]).toBe(Infinity);
        for (let c = 0; c < C; c++) {
          if (c === odd) continue;
          // 3 values of mean 1 + c and m2 2 with 5 of mean 2 + c and m2 4: mean 1 + c + 5/8.
          expect(a.f64[arr(CHANNEL_MEAN, c)]).toBe(1 + c + 5 / 8);
          expect(a.f64[arr(CHANNEL_VAR, c)]).toBeCloseTo((2 + 4 + (3 * 5) / 8) / 8, 15);
        }
        for (const j of [CHANNEL_MEAN, CHANNEL_VAR, CHANNEL_MEAN_LO]) expect(column(a, j)).toEqual(column(other, j));
      }
    });

    it('prepareEval and prepareBackward give the formulas, bit for bit, and the same bits as the other kernel', () => {
      const a = setup(name);
      const other = setup(name === 'js' ? 'wasm' : 'js');
      const channels = OUT;
      const params = SCRATCH;
      const rand = rng(6);
      // Odd counts and offsets around the WebAssembly prep's two lanes; variances that make
      // sqrt(var + eps) NaN or 0 among positive ones.
      for (const C of [1, 2, 3, 5, 9]) {
        for (const c0 of C > 2 ? [0, 1] : [0]) {
          const arrays = Float64Array.from({ length: CHANNEL_ARRAYS * C }, () => 3 * normal(rand));
          for (let c = 0; c < C; c++) arrays[CHANNEL_VAR * C + c] = c === 2 ? -1 : c === 4 ? -1e-5 : 0.5 + rand();
          const eps = 1e-5;
          for (const k of [a, other]) {
            k.f64.set(arrays, channels / 8);
            k.f64.fill(GUARD, params / 8, params / 8 + 4 * C);
            k.kernel.prepareEval(channels, C, c0, C, params, eps);
          }
          const at = (k: number, c: number): number => arrays[k * C + c];
          for (let c = 0; c < C; c++) {
            const p = Array.from(a.f64.slice(params / 8 + 4 * c, params / 8 + 4 * c + 4));
            if (c < c0) expect(p).toEqual([GUARD, GUARD, GUARD, GUARD]);
            else expect(p).toEqual([at(CHANNEL_MEAN, c), at(CHANNEL_WEIGHT, c) / Math.sqrt(at(CHANNEL_VAR, c) + eps), at(CHANNEL_BIAS, c), GUARD]);
          }
          expect(Array.from(a.f64.slice(params / 8, params / 8 + 4 * C))).toEqual(Array.from(other.f64.slice(params / 8, params / 8 + 4 * C)));
          for (const [fromVar, apply] of [[false, false], [true, false], [false, true], [true, true]]) {
            for (const k of [a, other]) {
              k.f64.set(arrays, channels / 8);
              k.f64.fill(GUARD, params / 8, params / 8 + 4 * C);
              k.kernel.prepareBackward(channels, C, c0, C, params, eps, fromVar, apply);
            }
            for (let c = 0; c < C; c++) {
              const invstd = fromVar && c >= c0 ? 1 / Math.sqrt(at(CHANNEL_VAR, c) + eps) : at(CHANNEL_INVSTD, c);
              expect(a.f64[channels / 8 + CHANNEL_INVSTD * C + c]).toBe(invstd);
              const p = Array.from(a.f64.slice(params / 8 + 4 * c, params / 8 + 4 * c + 4));
              // apply: the eval-mode dx coefficients the merge makes, (weight·invstd, 0, mean, 0).
              const want = apply ? [at(CHANNEL_WEIGHT, c) * invstd, 0, at(CHANNEL_MEAN, c), 0] : [at(CHANNEL_MEAN, c), invstd, at(CHANNEL_WEIGHT, c), 0];
              expect(p).toEqual(c < c0 ? [GUARD, GUARD, GUARD, GUARD] : want);
            }
            const both = (k: { f64: Float64Array }): number[] => [
              ...k.f64.slice(params / 8, params / 8 + 4 * C), ...k.f64.slice(channels / 8, channels / 8 + CHANNEL_ARRAYS * C),
            ];
            expect(both(a)).toEqual(both(other));
          }
        }
      }
    });

    it('float32 backward sums: tiny products that cancel in float32 are summed again, products that are all zero are not', () => {
      // dy = 1e-25 everywhere and x = 1e-20 and -0.8e-20 in turn around a mean of 0: the float32
      // products 1e-45 and -0.8e-45 both round to 2^-149 (with their signs) and cancel to exactly
      // zero in the WebAssembly kernel's lanes, where the sum is 1e-46 a pair (README, "Kernels").
      // Channel 1 is constant at its mean (0.5): its products are exactly zero, and so is its sum.
      // The row cases cover short runs, channels in lanes (16 + 4) and a pattern (C = 3); the
      // scratch past rowScratchBytes(C) holds a guard, as the zero check keeps flags there.
      const { kernel, f32, f64, i32 } = setup(name);
      const DY = DATA + (1 << 20);
      const PARAMS = PAIRED.params;
      const dy = Math.fround(1e-25);
      const xOf = (c: number, i: number): number => (c === 1 ? 0.5 : Math.fround(i % 2 === 0 ? 1e-20 : -0.8e-20));
      const check = (got: number, values: number[], mean: number) => {
        const want = values.reduce((a, v) => a + dy * (v - mean), 0);
        expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-12 * Math.abs(want));
      };
      // Planes: two runs of 33 of channel 0.
      const plane = Array.from({ length: 66 }, (_, i) => xOf(0, i));
      f32.set(plane, DATA / 4);
      f32.fill(dy, DY / 4, DY / 4 + 66);
      kernel.bwdStatsPlanes(false, DATA, 33, DY, 33, 0, 33, 2, 33, 0, OUT);
      expect(f64[OUT / 8]).toBe(66);
      expect(Math.abs(f64[OUT / 8 + 1] - 66 * dy)).toBeLessThanOrEqual(1e-12 * 66 * dy);
      check(f64[OUT / 8 + 2], plane, 0);
      for (const [C, S, rows] of [[3, 5, 6], [20, 1, 10], [3, 1, 16]]) {
        const rowStride = C * S;
        const values: number[][] = Array.from({ length: C }, () => []);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < C; c++) {
            for (let k = 0; k < S; k++) {
              const v = xOf(c, r * S + k);
              f32[DATA / 4 + r * rowStride + c * S + k] = v;
              values[c].push(v);
            }
          }
        }
        f32.fill(dy, DY / 4, DY / 4 + rows * rowStride);
        for (let c = 0; c < C; c++) f64[PARAMS / 8 + 4 * c] = c === 1 ? 0.5 : 0;
        const end = SCRATCH + rowScratchBytes(C);
        i32.fill(0x5a5a5a5a, end / 4, end / 4 + 64);
        kernel.bwdStatsRows(false, DATA, DY, 0, rows, C, S, rowStride, PARAMS, SCRATCH, OUT, PARTIAL_BYTES);
        for (let c = 0; c < C; c++) {
          expect(f64[OUT / 8 + PF * c]).toBe(rows * S);
          if (c === 1) expect(f64[OUT / 8 + PF * c + 2]).toBe(0);
          else check(f64[OUT / 8 + PF * c + 2], values[c], 0);
        }
        expect(Array.from(i32.slice(end / 4, end / 4 + 64)).every((v) => v === 0x5a5a5a5a)).toBe(true);
      }
    });
  });
}
