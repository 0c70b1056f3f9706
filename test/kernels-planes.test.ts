/**
 * The plane kernels (a channel's runs of whole planes), both implementations, against a float64
 * two-pass reference: odd lengths that leave SIMD tails, offsets that are not 16-byte aligned,
 * several blocks a call, and guard values around every output to catch a tail that writes past its
 * end; the fused kernels against their two kernels apart, bit for bit; and the scratch they use.
 */
import { describe, expect, it } from 'vitest';
import { PLANE_ACC_BYTES, PLANE_BLOCKS_MAX } from '../dist/workers/kernels/kernel.js';
import { PARTIAL_BYTES } from '../dist/workers/scratch.js';
import { normal, rng } from './helpers/data.js';
import { DATA, expectStats, GUARD, LENGTHS, OFFSETS, OUT, PAIRED, PF, reference, SCRATCH, scratchUsed, setup, ulpOf } from './helpers/kernels.js';
import { exactChannelStats } from './helpers/reference.js';

for (const name of ['js', 'wasm'] as const) {
  describe(`${name} kernel`, () => {
    for (const f64Data of [false, true]) {
      const dtype = f64Data ? 'float64' : 'float32';
      const bpe = f64Data ? 8 : 4;

      it(`statsPlanes handles every tail and offset (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(1);
        for (const len of LENGTHS) {
          for (const off of OFFSETS) {
            for (const rows of [1, 3]) {
              const stride = len + 5;
              const base = DATA / bpe + off;
              const values: number[] = [];
              for (let r = 0; r < rows; r++) {
                for (let i = 0; i < len; i++) {
                  const v = 100 + 2 * normal(rand);
                  x[base + r * stride + i] = v;
                  values.push(f64Data ? v : Math.fround(v));
                }
              }
              kernel.statsPlanes(f64Data, DATA + off * bpe, 1, 0, rows, stride, len, OUT, 0, SCRATCH);
              expectStats(f64.slice(OUT / 8, OUT / 8 + 3), reference(values), f64Data, name);
            }
          }
        }
      });

      it(`a partial's lo is what rounding its mean left out: mean + lo is the block's shifted mean (${dtype})`, () => {
        // Blocks at an offset of 3000 with a spread of 1e-3: the mean's half-ulp rounding (2.3e-13)
        // is large against the spread, and lo holds it (workers/scratch.ts, PARTIAL_BYTES). For float64
        // data the shifted mean is the exact one up to the float64 sums' rounding; float32 data
        // are summed in float32 lanes first, so there only the TwoSum itself is checked.
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(21);
        for (const len of [7, 64, 1001, 4099]) {
          const base = DATA / bpe + 1;
          const values: number[] = [];
          for (let i = 0; i < len; i++) {
            x[base + i] = 3000 + 1e-3 * normal(rand);
            values.push(x[base + i]);
          }
          kernel.statsPlanes(f64Data, base * bpe, 1, 0, 1, len, len, OUT, 0, SCRATCH);
          const [, mean, , lo] = f64.slice(OUT / 8, OUT / 8 + PF);
          const ulp = ulpOf(mean);
          expect(mean + lo).toBe(mean); // |lo| at most half an ulp of mean
          if (f64Data) {
            const exact = exactChannelStats(values, [1, 1, len]);
            // mean - exact is -lo, to within 1e-3 ulp (the sums' rounding, ~1e-19 here).
            expect(Math.abs(exact.meanErrorUlps(0, mean) + lo / ulp)).toBeLessThan(1e-3);
          }
        }
      });

      it(`statsPlanes over several blocks gives each block's partial, bit for bit as alone (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(11);
        // Lengths around the WebAssembly kernel's 512-byte turns and float32 groups (128 float32, 64 float64) and its tails.
        for (const len of [255, 256, 257, 511, 512, 513, 1000, 1024, 1537, 2600]) {
          for (const rows of [1, 2, 3]) {
            for (const blocks of [2, 3, 4]) {
              const off = (len + rows + blocks) % 4;
              const rowStride = len + 7;
              const blockStride = rows * rowStride + 3;
              const base = DATA / bpe + off;
              const perBlock: number[][] = [];
              for (let b = 0; b < blocks; b++) {
                const values: number[] = [];
                for (let r = 0; r < rows; r++) {
                  for (let i = 0; i < len; i++) {
                    const v = 50 * b - 20 + (1 + b) * normal(rand);
                    x[base + b * blockStride + r * rowStride + i] = v;
                    values.push(f64Data ? v : Math.fround(v));
                  }
                }
                perBlock.push(values);
              }
              const outStride = 40; // bytes: partials need not be packed
              f64.fill(GUARD, OUT / 8 - 1, OUT / 8 + (blocks * outStride) / 8 + 1);
              kernel.statsPlanes(f64Data, base * bpe, blocks, blockStride, rows, rowStride, len, OUT, outStride, SCRATCH);
              for (let b = 0; b < blocks; b++) {
                const at = (OUT + b * outStride) / 8;
                const got = f64.slice(at, at + PF);
                expectStats(got, reference(perBlock[b]), f64Data, name);
                expect(f64[at + PF]).toBe(GUARD);
                const alone = OUT + blocks * outStride + 64;
                kernel.statsPlanes(f64Data, (base + b * blockStride) * bpe, 1, 0, rows, rowStride, len, alone, 0, SCRATCH);
                expect(Array.from(got)).toEqual(Array.from(f64.slice(alone / 8, alone / 8 + PF)));
              }
              expect(f64[OUT / 8 - 1]).toBe(GUARD);
            }
          }
        }
      });

      it(`statsPlaneGroups gives each group the partials of its own statsPlanes call, bit for bit (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(13);
        for (const [groups, blocks, rows, len] of [[1, 1, 1, 1000], [5, 1, 1, 333], [3, 2, 2, 517], [4, 2, 1, 64]]) {
          const rowStride = len + 5;
          const blockStride = rows * rowStride + 9;
          const groupStride = blocks * blockStride + 11;
          const base = DATA / bpe + 1;
          for (let i = 0; i < groups * groupStride; i++) x[base + i] = 100 * Math.floor(i / groupStride) + normal(rand);
          const outStride = PARTIAL_BYTES;
          const groupOut = blocks * outStride + 16;
          f64.fill(GUARD, OUT / 8, OUT / 8 + (groups * groupOut) / 8 + 1);
          kernel.statsPlaneGroups(f64Data, base * bpe, groups, groupStride, groupOut, blocks, blockStride, rows, rowStride, len, OUT, outStride, SCRATCH);
          const alone = OUT + groups * groupOut + 64;
          for (let q = 0; q < groups; q++) {
            kernel.statsPlanes(f64Data, (base + q * groupStride) * bpe, blocks, blockStride, rows, rowStride, len, alone, outStride, SCRATCH);
            const at = (OUT + q * groupOut) / 8;
            expect(Array.from(f64.slice(at, at + PF * blocks))).toEqual(Array.from(f64.slice(alone / 8, alone / 8 + PF * blocks)));
            expect(f64[at + PF * blocks]).toBe(GUARD); // the gap between groups is not written
          }
        }
      });

      it(`normalizePlanes handles every tail and offset and writes nothing past it (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(2);
        for (const len of LENGTHS) {
          for (const off of OFFSETS) {
            const rows = 2;
            const xStride = len + 3;
            const yStride = len + 9;
            const xBase = DATA / bpe + off;
            const yBase = OUT / bpe + ((off + 1) % 4);
            x.fill(GUARD, yBase - 4, yBase + rows * yStride + 4);
            for (let r = 0; r < rows; r++) for (let i = 0; i < len; i++) x[xBase + r * xStride + i] = 3000 + normal(rand) * 0.5;
            const mean = 3000.123456789;
            const scale = 1.75;
            const bias = -0.5;
            kernel.normalizePlanes(f64Data, xBase * bpe, xStride, yBase * bpe, yStride, rows, len, mean, scale, bias, false);
            const ulp = f64Data ? 2 ** -52 : 2 ** -23;
            for (let r = 0; r < rows; r++) {
              for (let i = 0; i < len; i++) {
                const xi = x[xBase + r * xStride + i];
                const want = (xi - mean) * scale + bias;
                const tol = 4 * ulp * (Math.abs(xi - mean) * scale + Math.abs(bias) + Math.abs(want)) + (f64Data ? 0 : 4 * ulp * Math.abs(mean) * 2 ** -23 * scale);
                expect(Math.abs(x[yBase + r * yStride + i] - want)).toBeLessThanOrEqual(tol + 1e-300);
              }
              for (let i = len; i < yStride; i++) if (r * yStride + i < rows * yStride) expect(x[yBase + r * yStride + i]).toBe(GUARD);
            }
            expect(x[yBase - 1]).toBe(GUARD);
          }
        }
      });

      it(`statsNormPlanes gives statsPlanes' partials and normalizePlanes' outputs, bit for bit (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(9);
        const { P1, P2, ACC } = PAIRED;
        for (const len of [1, 5, 17, 63, 129, 255, 256, 257, 1001, 1025, 2049]) {
          for (const [blocks, rows] of [[1, 1], [2, 1], [1, 3], [2, 3]]) {
            for (const relu of [false, true]) {
              const off = (len + blocks + rows) % 4;
              const rowStride = len + 5;
              const blockStride = rows * rowStride + 7;
              const nRowStride = len + 2;
              const nBlockStride = rows * nRowStride + 5;
              const yRowStride = len + 9;
              const yBlockStride = rows * yRowStride + 3;
              const xs = DATA / bpe + off;
              const nx = xs + 20000;
              const y1 = OUT / bpe + ((off + 1) % 4);
              const y2 = y1 + 20000;
              for (let i = 0; i < blocks * blockStride; i++) x[xs + i] = 3000 + normal(rand) * 0.5;
              for (let i = 0; i < blocks * nBlockStride; i++) x[nx + i] = 2 + normal(rand);
              if (len === 1025) x[xs + blockStride + rowStride - 5] = NaN; // block 1 (or past the data): the float64 path
              x.fill(GUARD, y1 - 4, y1 + blocks * yBlockStride + 4);
              x.fill(GUARD, y2 - 4, y2 + blocks * yBlockStride + 4);
              const [mean, scale, bias] = [1.9876543, 1.25, -0.375];
              kernel.statsPlanes(f64Data, xs * bpe, blocks, blockStride, rows, rowStride, len, P1, PARTIAL_BYTES, ACC);
              for (let i = 0; i < blocks; i++) {
                kernel.normalizePlanes(
                  f64Data, (nx + i * nBlockStride) * bpe, nRowStride, (y1 + i * yBlockStride) * bpe, yRowStride, rows, len, mean, scale, bias, relu,
                );
              }
              kernel.statsNormPlanes(
                f64Data, xs * bpe, blocks, blockStride, rows, rowStride, len, P2, PARTIAL_BYTES, ACC,
                nx * bpe, nBlockStride, nRowStride, y2 * bpe, yBlockStride, yRowStride, mean, scale, bias, relu,
              );
              expect(f64.slice(P2 / 8, P2 / 8 + PF * blocks)).toEqual(f64.slice(P1 / 8, P1 / 8 + PF * blocks));
              expect(x.slice(y2 - 4, y2 + blocks * yBlockStride + 4)).toEqual(x.slice(y1 - 4, y1 + blocks * yBlockStride + 4));
              // And they are what they should be: block 0's partial (the tolerance of the tests
              // above, but for the float64 reference's own rounding at 3000), and its first output.
              const first = Array.from({ length: rows * len }, (_, j) => x[xs + Math.floor(j / len) * rowStride + (j % len)]);
              const want = reference(first);
              const got = f64.slice(P2 / 8, P2 / 8 + 3);
              expect(got[0]).toBe(want.n);
              expect(Math.abs(got[1] - want.mean)).toBeLessThanOrEqual(2e-6 * Math.sqrt(want.m2 / want.n) + 1e-13 * 3000);
              expect(Math.abs(got[2] - want.m2)).toBeLessThanOrEqual(2e-6 * want.m2 + 1e-9);
              const y0 = (x[nx] - mean) * scale + bias;
              expect(x[y2]).toBeCloseTo(relu ? Math.max(0, y0) : y0, 5);
            }
          }
        }
      });

      it(`bwdStatsApplyPlanes gives bwdStatsPlanes' partial and bwdApplyPlanes' dx, bit for bit (${dtype})`, () => {
        const { kernel, f32, f64 } = setup(name);
        const x = f64Data ? f64 : f32;
        const rand = rng(10);
        const { P1, P2 } = PAIRED;
        for (const len of [1, 5, 17, 63, 64, 65, 255, 256, 257, 1001, 1025, 2049]) {
          for (const rows of [1, 3]) {
            for (const [masked, k] of [[false, 0.25], [true, -0.5], [false, 0], [true, 0]] as const) {
              const off = (len + rows) % 4;
              // x, dy and the mask of each block share a row stride; dx has its own.
              const stride = len + 3;
              const dxStride = len + 6;
              const size = rows * stride;
              const [xs, gs, ms] = [0, 1, 2].map((k) => DATA / bpe + off + k * (size + 8)); // the reduced block
              const [qx, qg, qm] = [3, 4, 5].map((k) => DATA / bpe + off + k * (size + 8)); // the other block
              const d1 = OUT / bpe + ((off + 1) % 4);
              const d2 = d1 + rows * dxStride + 16;
              for (const base of [xs, gs, ms, qx, qg, qm]) for (let i = 0; i < size; i++) x[base + i] = 1.5 + normal(rand);
              if (len === 1025) x[qx + 7] = NaN; // the other block's x: dx NaN there where k != 0
              x.fill(GUARD, d1 - 4, d2 + rows * dxStride + 4);
              const mask = (at: number): number => (masked ? at * bpe : 0);
              const [mean, a, qMean, e] = [1.3, 0.75, 1.6, -0.125];
              kernel.bwdStatsPlanes(f64Data, xs * bpe, stride, gs * bpe, stride, mask(ms), stride, rows, len, mean, P1);
              kernel.bwdApplyPlanes(f64Data, qx * bpe, stride, qg * bpe, stride, mask(qm), stride, d1 * bpe, dxStride, rows, len, a, k, qMean, e);
              kernel.bwdStatsApplyPlanes(
                f64Data, xs * bpe, stride, gs * bpe, stride, mask(ms), stride, rows, len, mean, P2,
                qx * bpe, qg * bpe, mask(qm), d2 * bpe, dxStride, a, k, qMean, e,
              );
              expect(f64.slice(P2 / 8, P2 / 8 + 3)).toEqual(f64.slice(P1 / 8, P1 / 8 + 3));
              expect(x.slice(d2 - 4, d2 + rows * dxStride)).toEqual(x.slice(d1 - 4, d1 + rows * dxStride));
              // And they are what they should be: Σdy of the reduced block, dx of the other's first value.
              let sumDy = 0;
              for (let r = 0; r < rows; r++) {
                for (let i = 0; i < len; i++) if (!masked || !(x[ms + r * stride + i] <= 0)) sumDy += x[gs + r * stride + i];
              }
              expect(f64[P2 / 8 + 1]).toBeCloseTo(sumDy, 3);
              const g0 = masked && x[qm] <= 0 ? 0 : x[qg];
              expect(x[d2]).toBeCloseTo(a * (g0 + k * (x[qx] - qMean) + e), 5);
            }
          }
        }
      });
    }

    it('uses no more plane scratch than it is given: PLANE_ACC_BYTES a block', () => {
      // The executor gives a task's statistics calls PLANE_ACC_BYTES a block for up to
      // PLANE_BLOCKS_MAX blocks (engine.ts, accBytes). Each plane op that takes scratch, both
      // dtypes, every tail: the last scratch word it changed must lie inside that.
      const { kernel, f32, f64, i32 } = setup(name);
      const rand = rng(31);
      let most = 0;
      let calls = 0;
      for (const f64Data of [false, true]) {
        const x = f64Data ? f64 : f32;
        const bpe = f64Data ? 8 : 4;
        for (const len of [1, 3, 4, 5, 17, 129, 1025]) {
          for (const rows of [1, 2, 3]) {
            const stride = len + 3;
            const blockStride = rows * stride;
            const n = 3 * PLANE_BLOCKS_MAX * blockStride;
            for (let i = 0; i < n; i++) x[DATA / bpe + i] = 2 + normal(rand);
            const ny = (OUT + (1 << 20)) / bpe;
            for (let blocks = 1; blocks <= PLANE_BLOCKS_MAX; blocks++) {
              const ops = [
                () => kernel.statsPlanes(f64Data, DATA, blocks, blockStride, rows, stride, len, OUT, PARTIAL_BYTES, SCRATCH),
                () => kernel.statsPlaneGroups(
                  f64Data, DATA, 3, blocks * blockStride, blocks * PARTIAL_BYTES, blocks, blockStride, rows, stride, len, OUT, PARTIAL_BYTES, SCRATCH,
                ),
                () => kernel.statsNormPlanes(
                  f64Data, DATA, blocks, blockStride, rows, stride, len, OUT, PARTIAL_BYTES, SCRATCH,
                  DATA + blocks * blockStride * bpe, blockStride, stride, ny * bpe, blockStride, stride, 1.9, 0.5, -0.25, blocks === 2,
                ),
              ];
              for (const [k, op] of ops.entries()) {
                const given = PLANE_ACC_BYTES * blocks;
                const used = scratchUsed(i32, given, op);
                expect(used, `${name} ${f64Data ? 'float64' : 'float32'} len=${len} rows=${rows} blocks=${blocks} op ${k}`).toBeLessThanOrEqual(given);
                most = Math.max(most, used);
                calls++;
              }
            }
          }
        }
      }
      expect(calls).toBe(2 * 7 * 3 * PLANE_BLOCKS_MAX * 3);
      // The WebAssembly kernel's second block's area is in use: the check reaches the end of it.
      if (name === 'wasm') expect(most).toBeGreaterThan(PLANE_ACC_BYTES * (PLANE_BLOCKS_MAX - 1));
    });
  });
}
