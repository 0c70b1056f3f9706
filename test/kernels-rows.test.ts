/**
 * The row kernels (rows of C channels: runs of S, or channels in lanes), both implementations,
 * against a float64 two-pass reference over every channel count, run length, offset and band of a
 * row; the fused kernels against their two kernels apart, bit for bit; their scratch; and the
 * float32 row parameters the WebAssembly merge and prep write for them.
 */
import { describe, expect, it } from 'vitest';
import { rowScratchBytes } from '../dist/workers/kernels/kernel.js';
import { CHANNEL_BIAS, CHANNEL_MEAN, CHANNEL_VAR, CHANNEL_WEIGHT, PARTIAL_BYTES } from '../dist/workers/scratch.js';
import { normal, rng } from './helpers/data.js';
import { DATA, expectStats, GUARD, OUT, PAIRED, pairedRowCases, PF, reference, SCRATCH, scratchUsed, setup } from './helpers/kernels.js';

for (const name of ['js', 'wasm'] as const) {
  describe(`${name} kernel`, () => {
    for (const f64Data of [false, true]) {
      const dtype = f64Data ? 'float64' : 'float32';
      const bpe = f64Data ? 8 : 4;

      it(`statsRows handles every channel count, run length, offset and band of a row (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(3);
        // 64, 100 and 130 channels: rows of 256 bytes and more (float32), summed 8 rows an eighth of
        // the call apart (16 rows and up), whole or a band of a row.
        for (const C of [1, 2, 3, 4, 5, 6, 7, 8, 13, 16, 21, 35, 64, 100, 130]) {
          for (const S of [1, 2, 3, 5, 17]) {
            for (const rows of [1, 2, 3, 5, 16, 17, 33]) {
              const off = (C + S + rows) % 4;
              const base = DATA / bpe + off;
              // Every other case reads a band of wider rows: the rest of each row is NaN, which
              // would show in the partials if the kernel read it.
              const stride = C * S + ((C + rows) % 2 === 0 ? 0 : 3 + off);
              x.fill(NaN, base, base + rows * stride);
              const perChannel: number[][] = Array.from({ length: C }, () => []);
              for (let r = 0; r < rows; r++) {
                for (let c = 0; c < C; c++) {
                  for (let s = 0; s < S; s++) {
                    const v = c * 10 - 20 + (1 + c) * normal(rand);
                    x[base + r * stride + c * S + s] = v;
                    perChannel[c].push(f64Data ? v : Math.fround(v));
                  }
                }
              }
              const outStride = 40; // bytes between channels' partials
              kernel.statsRows(f64Data, (base) * bpe, rows, C, S, stride, SCRATCH, OUT, outStride);
              for (let c = 0; c < C; c++) {
                const at = (OUT + c * outStride) / 8;
                expectStats(f64.slice(at, at + 3), reference(perChannel[c]), f64Data, name);
              }
            }
          }
        }
      });

      it(`statsRows of channels in lanes with an outlier first in some channels: theirs within 1e-10, as summed again (${dtype})`, () => {
        // The outlier is its channel's shift K, far from the channel's mean (farShift): such a
        // channel is summed again about its mean, whether its neighbour in a pair of lanes is too
        // (the WebAssembly kernel writes two channels' partials at once where neither is far).
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(17);
        const C = 37;
        for (const rows of [16, 64]) {
          const base = DATA / bpe + 1;
          const perChannel: number[][] = Array.from({ length: C }, () => []);
          for (let r = 0; r < rows; r++) {
            for (let c = 0; c < C; c++) {
              const v = r === 0 && c % 3 === 0 ? 1e7 : rand();
              x[base + r * C + c] = v;
              perChannel[c].push(f64Data ? v : Math.fround(v));
            }
          }
          kernel.statsRows(f64Data, base * bpe, rows, C, 1, C, SCRATCH, OUT, 32);
          for (let c = 0; c < C; c++) {
            const got = f64.slice((OUT + 32 * c) / 8, (OUT + 32 * c) / 8 + 3);
            const want = reference(perChannel[c]);
            if (c % 3 !== 0) {
              // The others: the float32 lanes' own rounding.
              expectStats(got, want, f64Data, name);
              continue;
            }
            expect(got[0]).toBe(rows);
            expect(Math.abs(got[1] - want.mean)).toBeLessThanOrEqual(1e-10 * Math.sqrt(want.m2 / rows) + 1e-15 * Math.abs(want.mean));
            expect(Math.abs(got[2] - want.m2)).toBeLessThanOrEqual(1e-10 * want.m2);
          }
        }
      });

      it(`statsNormRows gives statsRows' partials and normalizeRows' outputs, bit for bit (${dtype})`, () => {
        const { kernel, f32, f64, i32 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(11);
        const { P1, P2, ACC, params } = PAIRED;
        // Runs of every tail, channels in lanes (S = 1: the two ops apart), a band of wider rows.
        for (const [S, C, nC, rows, nRows] of pairedRowCases([1, 2, 3, 5, 17, 196])) {
          for (const relu of [false, true]) {
            const off = (C + S + rows) % 4;
            // The reduced channels and the normalized ones lie in rows of C + nC channels (and a
            // few more elements where the case is odd), as two groups of a phased call do.
            const stride = (C + nC) * S + ((C + rows) % 2 === 0 ? 0 : 3);
            const xs = DATA / bpe + off;
            const nx = xs + C * S;
            const total = Math.max(rows, nRows) * stride;
            for (let i = 0; i < total; i++) x[xs + i] = (i % 5 === 0 ? 3000 : 2) + normal(rand);
            if (S === 17 && C === 13) x[xs + stride + 3] = NaN; // row 1, channel 0: its float64 way out
            const y1 = OUT / bpe + ((off + 1) % 4);
            const y2 = y1 + total + 16;
            x.fill(GUARD, y1 - 4, y2 + total + 4);
            for (let c = 0; c < nC; c++) f64.set([c - 1.5 + 1e-4 * c, 0.5 + c, (c % 3) - 1, 0], params / 8 + 4 * c);
            const outStride = 40;
            kernel.statsRows(f64Data, xs * bpe, rows, C, S, stride, ACC, P1, outStride);
            kernel.normalizeRows(f64Data, nx * bpe, (y1 + C * S) * bpe, nRows, nC, S, stride, params, ACC, relu);
            i32.fill(0x5a5a5a5a, (ACC + rowScratchBytes(C + nC)) / 4, (ACC + rowScratchBytes(C + nC)) / 4 + 64);
            kernel.statsNormRows(
              f64Data, xs * bpe, rows, C, S, stride, ACC, P2, outStride, nx * bpe, (y2 + C * S) * bpe, nRows, nC, params, relu, 0, 0,
            );
            for (let c = 0; c < C; c++) {
              const at = (c * outStride) / 8;
              expect(f64.slice(P2 / 8 + at, P2 / 8 + at + PF)).toEqual(f64.slice(P1 / 8 + at, P1 / 8 + at + PF));
            }
            expect(x.slice(y2 - 4, y2 + total + 4)).toEqual(x.slice(y1 - 4, y1 + total + 4));
            const guard = (ACC + rowScratchBytes(C + nC)) / 4;
            expect(Array.from(i32.slice(guard, guard + 64)).every((v) => v === 0x5a5a5a5a)).toBe(true);
            // And they are what they should be: channel C - 1's partial, the last channel's first output.
            const values: number[] = [];
            for (let r = 0; r < rows; r++) for (let k = 0; k < S; k++) values.push(x[xs + r * stride + (C - 1) * S + k]);
            const at = P2 / 8 + ((C - 1) * outStride) / 8;
            if (values.every(Number.isFinite)) expectStats(f64.slice(at, at + 3), reference(values), f64Data, name);
            else expect(f64[at + 2]).toBeNaN();
            const [mean, scale, bias] = [0, 1, 2].map((k) => f64[params / 8 + 4 * (nC - 1) + k]);
            const xv = x[nx + (nC - 1) * S];
            const v = (xv - mean) * scale + bias;
            const tol = 4 * (f64Data ? 2 ** -52 : 2 ** -23) * (Math.abs(xv * scale) + Math.abs(mean * scale) + Math.abs(bias) + Math.abs(v));
            expect(Math.abs(x[y2 + C * S + (nC - 1) * S] - (relu ? Math.max(0, v) : v))).toBeLessThanOrEqual(tol);
            // Nothing outside the normalized runs is written.
            expect(x[y2 + C * S - 1]).toBe(GUARD);
          }
        }
      });

      it(`bwdStatsApplyRows gives bwdStatsRows' partials and bwdApplyRows' dx, bit for bit (${dtype})`, () => {
        const { kernel, f32, f64, i32 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(12);
        const { P1, P2, ACC, params } = PAIRED;
        for (const [S, C, nC, rows, nRows] of pairedRowCases([1, 3, 17, 65, 196])) {
          for (const masked of [false, true]) {
            const off = (C + S + rows) % 4;
            // x, dy and the mask are three arrays with the same rows of C + nC channels (and a few
            // more elements where the case is odd): the reduced channels first, then the others.
            const stride = (C + nC) * S + ((C + rows) % 2 === 0 ? 0 : 3);
            const total = Math.max(rows, nRows) * stride;
            const [xs, gs, ms] = [0, 1, 2].map((k) => DATA / bpe + off + k * (total + 8));
            for (const base of [xs, gs, ms]) for (let i = 0; i < total; i++) x[base + i] = 1.5 + normal(rand);
            if (S === 17 && C === 13) x[xs + C * S + 2] = NaN; // an x of the dx side: NaN where k != 0
            const d1 = OUT / bpe + ((off + 1) % 4);
            const d2 = d1 + total + 16;
            x.fill(GUARD, d1 - 4, d2 + total + 4);
            // The reduced channels' means, then the dx side's (a, k, mean, e): k = 0 for one channel
            // in three (x is not read there).
            for (let c = 0; c < C; c++) f64[params / 8 + 4 * c] = 1.4 + 0.01 * c;
            const q = params + 32 * C;
            for (let c = 0; c < nC; c++) f64.set([0.75 + 0.1 * c, c % 3 === 1 ? 0 : -0.25 - 0.01 * c, 1.6, -0.125], q / 8 + 4 * c);
            const mask = (at: number): number => (masked ? at * bpe : 0);
            const n0 = C * S;
            kernel.bwdStatsRows(f64Data, xs * bpe, gs * bpe, mask(ms), rows, C, S, stride, params, ACC, P1, 40);
            kernel.bwdApplyRows(f64Data, (xs + n0) * bpe, (gs + n0) * bpe, mask(ms + n0), (d1 + n0) * bpe, nRows, nC, S, stride, q, ACC);
            const guard = (ACC + rowScratchBytes(C + nC)) / 4;
            i32.fill(0x5a5a5a5a, guard, guard + 64);
            kernel.bwdStatsApplyRows(
              f64Data, xs * bpe, gs * bpe, mask(ms), rows, C, S, stride, params, ACC, P2, 40,
              (xs + n0) * bpe, (gs + n0) * bpe, mask(ms + n0), (d2 + n0) * bpe, nRows, nC, q,
            );
            for (let c = 0; c < C; c++) {
              const at = (c * 40) / 8;
              expect(f64.slice(P2 / 8 + at, P2 / 8 + at + 3)).toEqual(f64.slice(P1 / 8 + at, P1 / 8 + at + 3));
            }
            expect(x.slice(d2 - 4, d2 + total + 4)).toEqual(x.slice(d1 - 4, d1 + total + 4));
            expect(Array.from(i32.slice(guard, guard + 64)).every((v) => v === 0x5a5a5a5a)).toBe(true);
            // And they are what they should be: channel C - 1's Σdy, dx of the last channel's first value.
            let sumDy = 0;
            for (let r = 0; r < rows; r++) {
              for (let k = 0; k < S; k++) {
                const i = r * stride + (C - 1) * S + k;
                if (!masked || !(x[ms + i] <= 0)) sumDy += x[gs + i];
              }
            }
            expect(f64[P2 / 8 + ((C - 1) * 40) / 8 + 1]).toBeCloseTo(sumDy, 3);
            const i0 = n0 + (nC - 1) * S;
            const [a, k, qMean, e] = [0, 1, 2, 3].map((j) => f64[q / 8 + 4 * (nC - 1) + j]);
            const g0 = masked && x[ms + i0] <= 0 ? 0 : x[gs + i0];
            expect(x[d2 + i0]).toBeCloseTo(a * (g0 + (k === 0 ? 0 : k * (x[xs + i0] - qMean)) + e), 5);
            expect(x[d2 + n0 - 1]).toBe(GUARD);
          }
        }
      });

      it(`normalizeRows handles every channel count, run length, offset and band of a row (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(4);
        const cases: [number, number, number][] = [];
        let inOrderCases = 0;
        for (const C of [1, 2, 3, 4, 5, 6, 7, 8, 13, 16, 21]) {
          for (const S of [1, 2, 3, 5, 17]) for (const rows of [1, 3, 4, 5, 9, 33]) cases.push([C, S, rows]);
        }
        // Wide rows (S = 1): the channels-in-lanes kernel takes a band of a row (the odd cases
        // below) 1024 channels at a time down the rows; 1045 and 2071 end in a partial chunk with
        // a vector and a scalar tail.
        for (const C of [1045, 2071]) for (const rows of [1, 2, 3, 4, 5]) cases.push([C, 1, rows]);
        // Rows of 256 bytes and more (float32) go four at a time a quarter of the call apart, the
        // rows past a multiple of 4 and the channels past a multiple of 16 one row at a time.
        for (const C of [64, 77, 130]) for (const rows of [4, 9, 33, 36, 38]) cases.push([C, 1, rows]);
        for (const [C, S, rows] of cases) {
          const off = (C + S + rows) % 4;
          const xBase = DATA / bpe + off;
          const yBase = OUT / bpe + ((off + 2) % 4);
          // Every other case normalizes a band of wider rows: the rest of each y row keeps
          // its guard.
          const stride = C * S + ((C + rows) % 2 === 0 ? 0 : 3 + off);
          const n = rows * stride;
          const params = SCRATCH + (1 << 20);
          for (let c = 0; c < C; c++) {
            f64[params / 8 + 4 * c] = c - 1.5 + 1e-4 * c;
            f64[params / 8 + 4 * c + 1] = 0.5 + c;
            f64[params / 8 + 4 * c + 2] = (c % 3) - 1;
          }
          x.fill(GUARD, yBase - 4, yBase + n + 4);
          for (let i = 0; i < n; i++) x[xBase + i] = 5 * normal(rand);
          // A fused ReLU in every other case.
          const relu = (C + S + rows) % 2 === 1;
          kernel.normalizeRows(f64Data, xBase * bpe, yBase * bpe, rows, C, S, stride, params, SCRATCH, relu);
          const ulp = f64Data ? 2 ** -52 : 2 ** -23;
          for (let i = 0; i < n; i++) {
            if (i % stride >= C * S) {
              expect(x[yBase + i]).toBe(GUARD);
              continue;
            }
            const c = Math.floor((i % stride) / S);
            const [mean, scale, bias] = [0, 1, 2].map((k) => f64[params / 8 + 4 * c + k]);
            const linear = (x[xBase + i] - mean) * scale + bias;
            const want = relu ? Math.max(0, linear) : linear;
            const tol = 4 * ulp * (Math.abs(x[xBase + i] * scale) + Math.abs(mean * scale) + Math.abs(bias) + Math.abs(linear));
            expect(Math.abs(x[yBase + i] - want)).toBeLessThanOrEqual(tol);
          }
          expect(x[yBase - 1]).toBe(GUARD);
          expect(x[yBase + n]).toBe(GUARD);
          // Whole rows of channels in lanes walked as from memory (Task.inOrder: two at a time,
          // half the call apart): the same bits as the walk above, and nothing written past the rows.
          if (S === 1 && stride === C) {
            const first = Array.from(x.subarray(yBase, yBase + n));
            x.fill(GUARD, yBase - 4, yBase + n + 4);
            kernel.normalizeRows(f64Data, xBase * bpe, yBase * bpe, rows, C, S, stride, params, SCRATCH, relu, 0, 0, true);
            expect(Array.from(x.subarray(yBase, yBase + n))).toEqual(first);
            expect([x[yBase - 1], x[yBase + n]]).toEqual([GUARD, GUARD]);
            inOrderCases++;
          }
        }
        // The walk from memory was compared on rows of every shape it takes.
        expect(inOrderCases).toBeGreaterThan(40);
      });
    }

    it('uses no more row scratch than it is given: rowScratchBytes(C), rowScratchBytes(C + nC) for the combined ops', () => {
      // The engine gives each task rowScratchBytes(bandChannels) (engine.ts, accBytes), and the
      // tasks' areas lie end to end: a kernel that used more would write over the next task's. Each
      // row op, both dtypes, every channel count to 17 (the pattern kernels' 60 lane positions at
      // 15) and some wide rows, runs of 1 (channels in lanes) and longer, whole rows and a band of
      // wider ones, on scratch filled with a guard word: the last word it changed must lie inside
      // what it was given.
      const { kernel, f32, f64, i32 } = setup(name);
      const rand = rng(29);
      const [X, DY, MASK, Y, PARTIALS, PARAMS] = [DATA, DATA + (1 << 20), DATA + (2 << 20), OUT + (1 << 20), OUT, PAIRED.params];
      // The most scratch any op used past 32 bytes for each channel it was given.
      let most = 0;
      let calls = 0;
      for (const f64Data of [false, true]) {
        const x = f64Data ? f64 : f32;
        const bpe = f64Data ? 8 : 4;
        for (const C of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 21, 64, 130, 256]) {
          for (const [S, extra] of [1, 2, 3, 17].flatMap((S) => [[S, 0], [S, 5]])) {
            const rows = 9;
            const stride = C * S + extra;
            const n = rows * stride;
            for (const at of [X, DY, MASK]) for (let i = 0; i < n; i++) x[at / bpe + i] = 1.5 + normal(rand);
            // Room for the combined ops' nC = C channels past the first C.
            for (let c = 0; c < 2 * C; c++) f64.set([normal(rand), 0.5 + rand(), normal(rand), 0.25], PARAMS / 8 + 4 * c);
            const q = PARAMS + 32 * C;
            const mask = C % 2 === 0 ? MASK : 0;
            const relu = C % 3 === 0;
            const ops: [channels: number, op: () => void][] = [
              [C, () => kernel.statsRows(f64Data, X, rows, C, S, stride, SCRATCH, PARTIALS, PARTIAL_BYTES)],
              [C, () => kernel.normalizeRows(f64Data, X, Y, rows, C, S, stride, PARAMS, SCRATCH, relu)],
              [2 * C, () => kernel.statsNormRows(
                f64Data, X, rows, C, S, stride, SCRATCH, PARTIALS, PARTIAL_BYTES, X, Y, rows, C, PARAMS, relu, 0, 0,
              )],
              [C, () => kernel.bwdStatsRows(f64Data, X, DY, mask, rows, C, S, stride, PARAMS, SCRATCH, PARTIALS, PARTIAL_BYTES)],
              [C, () => kernel.bwdApplyRows(f64Data, X, DY, mask, Y, rows, C, S, stride, q, SCRATCH)],
              [2 * C, () => kernel.bwdStatsApplyRows(
                f64Data, X, DY, mask, rows, C, S, stride, PARAMS, SCRATCH, PARTIALS, PARTIAL_BYTES, X, DY, mask, Y, rows, C, q,
              )],
            ];
            for (const [channels, op] of ops) {
              const given = rowScratchBytes(channels);
              const used = scratchUsed(i32, given, op);
              expect(used, `${name} ${f64Data ? 'float64' : 'float32'} C=${C} S=${S} +${extra} op ${ops.findIndex(([, o]) => o === op)}`)
                .toBeLessThanOrEqual(given);
              most = Math.max(most, used - 32 * channels);
              calls++;
            }
          }
        }
      }
      expect(calls).toBe(2 * 21 * 8 * 6);
      // The allowance beyond 32 bytes a channel is met in earnest: the float32 pattern kernels use
      // 28 bytes a lane position (1200 bytes past 32 * C at C = 15, 1040 at 13), more than half of
      // its 2048, so it cannot be halved unseen (the TypeScript kernel uses none of it).
      if (name === 'wasm') expect(most).toBeGreaterThan(1024);
    });
  });
}

describe('float32 row parameters (WebAssembly kernel)', () => {
  // The merge and the eval prep write each channel's float32 (hi, scale, shift) once for a call;
  // normalizeRows reads them instead of converting the float64 parameters for every item. Both
  // routes must give the same bits.
  it('the merge and the eval prep write what normalizeRows would convert, and normalizeRows reads them with the same bits', () => {
    const { kernel, f32, f64 } = setup('wasm');
    const rand = rng(8);
    const partials = DATA;
    const channels = OUT;
    const params = SCRATCH;
    const rowParams = SCRATCH + (64 << 10);
    const x = SCRATCH + (128 << 10);
    const y1 = SCRATCH + (256 << 10);
    const y2 = SCRATCH + (384 << 10);
    const scratch = SCRATCH + (512 << 10);
    const fround = Math.fround;
    const eps = 1e-5;
    for (const C of [5, 16, 37]) {
      const stride = C + 7;
      const array = (k: number, c: number): number => f64[channels / 8 + k * C + c];
      // Channel c's (mean, scale, bias) as the merge and the prep make them, from the per-channel arrays.
      const expected = (c: number): number[] => [
        array(CHANNEL_MEAN, c), array(CHANNEL_WEIGHT, c) / Math.sqrt(array(CHANNEL_VAR, c) + eps), array(CHANNEL_BIAS, c),
      ];
      const expectRowParams = (): void => {
        for (let c = 0; c < C; c++) {
          const [mean, scale, bias] = expected(c);
          const hi = fround(mean);
          const got = [0, 1, 2].map((k) => f32[rowParams / 4 + k * stride + c]);
          expect(got).toEqual([hi, fround(scale), fround(bias - (mean - hi) * scale)]);
        }
      };
      // The float64 parameters: written where the row kernels read them, the pattern kernel's rows
      // (fewer than 16 channels, not a multiple of 4) or a call without row parameters; else left
      // as they were.
      const expectParams = (written: boolean): void => {
        for (let c = 0; c < C; c++) {
          const got = [0, 1, 2].map((k) => f64[params / 8 + 4 * c + k]);
          expect(got).toEqual(written ? expected(c) : [GUARD, GUARD, GUARD]);
        }
      };
      // The merge, from partials of a large-offset spread (the shift's float64 fold matters).
      for (let c = 0; c < C; c++) {
        f64.set([9 + c, 1000 + c + normal(rand), 0.5 + rand(), 0], (partials + c * PARTIAL_BYTES) / 8);
        f64[channels / 8 + CHANNEL_WEIGHT * C + c] = 0.5 + rand();
        f64[channels / 8 + CHANNEL_BIAS * C + c] = normal(rand);
      }
      f64.fill(GUARD, params / 8, params / 8 + 4 * C);
      kernel.mergeChannels(partials, 1, 0, C, channels, C, params, eps, rowParams, stride);
      expectRowParams();
      expectParams(C === 5);
      kernel.mergeChannels(partials, 1, 0, C, channels, C, params, eps);
      expectParams(true);
      // The eval prep, from running statistics.
      for (let c = 0; c < C; c++) {
        f64[channels / 8 + CHANNEL_MEAN * C + c] = 500 * normal(rand);
        f64[channels / 8 + CHANNEL_VAR * C + c] = 0.1 + rand();
      }
      f32.fill(GUARD, rowParams / 4, rowParams / 4 + 3 * stride);
      f64.fill(GUARD, params / 8, params / 8 + 4 * C);
      kernel.prepareEval(channels, C, 0, C, params, eps, rowParams, stride);
      expectRowParams();
      expectParams(C === 5);
      kernel.prepareEval(channels, C, 0, C, params, eps);
      expectParams(true);
      // normalizeRows: converted or read, whole rows and a band of wider rows, with and without ReLU.
      for (const [rows, rowStride, S] of [[9, C, 1], [4, C + 3, 1], [3, 2 * C, 1], [2, 3 * C, 3]] as const) {
        for (let i = 0; i < rows * rowStride; i++) f32[x / 4 + i] = 500 * normal(rand);
        for (const relu of [false, true]) {
          f32.fill(GUARD, y1 / 4, y1 / 4 + rows * rowStride);
          f32.fill(GUARD, y2 / 4, y2 / 4 + rows * rowStride);
          const cS = S === 1 ? C : Math.floor(rowStride / S);
          kernel.normalizeRows(false, x, y1, rows, cS, S, rowStride, params, scratch, relu);
          kernel.normalizeRows(false, x, y2, rows, cS, S, rowStride, params, scratch, relu, rowParams, stride);
          const a = new Uint32Array(f32.buffer, y1, rows * rowStride);
          const b = new Uint32Array(f32.buffer, y2, rows * rowStride);
          expect(Array.from(b)).toEqual(Array.from(a));
          // statsNormRows reads them too (here beside the statistics of channel 0).
          f32.fill(GUARD, y2 / 4, y2 / 4 + rows * rowStride);
          kernel.statsNormRows(false, x, rows, 1, S, rowStride, scratch, partials, PARTIAL_BYTES, x, y2, rows, cS, params, relu, rowParams, stride);
          expect(Array.from(b)).toEqual(Array.from(a));
        }
      }
    }
  });
});
