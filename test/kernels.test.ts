/**
 * Each kernel op, both implementations, against a float64 two-pass reference: odd lengths that
 * leave SIMD tails, offsets that are not 16-byte aligned, strided runs, and guard values around
 * every output to catch a tail that writes past its end.
 */
import { describe, expect, it } from 'vitest';
import { rowScratchBytes } from '../dist/workers/kernels/kernel.js';
import {
  CHANNEL_ARRAYS, CHANNEL_BIAS, CHANNEL_INVSTD, CHANNEL_MEAN, CHANNEL_MEAN_LO, CHANNEL_VAR, CHANNEL_WEIGHT, PARTIAL_BYTES,
} from '../dist/workers/protocol.js';
import { createKernel, loadWasmModule } from '../dist/workers/kernels/select.js';
import { normal, rng } from './helpers/data.js';
import { exactChannelStats } from './helpers/reference.js';

const LENGTHS = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1001, 1025, 2049];
const OFFSETS = [0, 1, 2, 3]; // elements: byte offsets 0, 4, 8, 12 (float32) past a 16-byte boundary
const GUARD = -7777;
/** Float64 values a partial: (count, mean, m2, lo). */
const PF = PARTIAL_BYTES / 8;
/** The ulp of a normal float64 v. */
const ulpOf = (v: number): number => 2 ** (Math.floor(Math.log2(Math.abs(v))) - 52);

function setup(name: 'js' | 'wasm') {
  const memory = new WebAssembly.Memory({ initial: 128, maximum: 128, shared: true });
  const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
  return { kernel, f32: new Float32Array(memory.buffer), f64: new Float64Array(memory.buffer), i32: new Int32Array(memory.buffer) };
}

const DATA = 1 << 16; // byte where data start
const OUT = 1 << 22; // byte where outputs start
const SCRATCH = 6 << 20;

function reference(values: number[]): { n: number; mean: number; m2: number } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  return { n, mean, m2: values.reduce((a, v) => a + (v - mean) ** 2, 0) };
}

/**
 * Statistics tolerance. float64 data: float64 sums, ~1e-13. float32 data in the WASM kernel: lanes
 * summed in float32 over at most 8 values (of a run, or down 8 rows) before each float64 fold, a few
 * float32 roundings each: 2e-6 of m2, and of the spread for the mean.
 */
function expectStats(got: Float64Array | number[], want: { n: number; mean: number; m2: number }, f64Data: boolean, name: string): void {
  const rel = f64Data || name === 'js' ? 1e-12 : 2e-6;
  const spread = Math.sqrt(want.m2 / want.n) || 1;
  expect(got[0]).toBe(want.n);
  expect(Math.abs(got[1] - want.mean)).toBeLessThanOrEqual(rel * spread + 1e-15 * Math.abs(want.mean));
  expect(Math.abs(got[2] - want.m2)).toBeLessThanOrEqual(rel * want.m2 + 1e-12);
}

/** Where the combined-op tests put partials apart (P1) and combined (P2), their scratch and parameters. */
const PAIRED = { P1: SCRATCH, P2: SCRATCH + 8192, ACC: SCRATCH + 16384, params: SCRATCH + (1 << 20) };

/**
 * Cases of a combined row op against its two ops apart, as [S, C, nC, rows, nRows] for runs of
 * each length in `runs`: the channel counts and rows of the two sides differ (a phase's two groups
 * need not match).
 */
function pairedRowCases(runs: number[]): [number, number, number, number, number][] {
  const cases: [number, number, number, number, number][] = [];
  for (const S of runs) {
    for (const [C, nC] of [[1, 1], [3, 2], [2, 5], [16, 16], [13, 21]]) {
      for (const [rows, nRows] of [[1, 1], [4, 3], [2, 7]]) cases.push([S, C, nC, rows, nRows]);
    }
  }
  return cases;
}

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
        // is large against the spread, and lo holds it (protocol.ts, PARTIAL_BYTES). For float64
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
          // Whole rows of channels in lanes walked in address order (Task.inOrder): the same
          // bits as the walk above, and nothing written past the rows.
          if (S === 1 && stride === C) {
            const first = Array.from(x.subarray(yBase, yBase + n));
            x.fill(GUARD, yBase - 4, yBase + n + 4);
            kernel.normalizeRows(f64Data, xBase * bpe, yBase * bpe, rows, C, S, stride, params, SCRATCH, relu, 0, 0, true);
            expect(Array.from(x.subarray(yBase, yBase + n))).toEqual(first);
            expect([x[yBase - 1], x[yBase + n]]).toEqual([GUARD, GUARD]);
            inOrderCases++;
          }
        }
        // The in-order walk was compared on rows of every shape it takes.
        expect(inOrderCases).toBeGreaterThan(40);
      });
    }

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

    it('stream computes y = a * x + b over odd lengths', () => {
      const { kernel, f32 } = setup(name);
      for (const len of LENGTHS) {
        for (let i = 0; i < len; i++) f32[DATA / 4 + 1 + i] = i * 0.25 - 3;
        f32[OUT / 4 + 3 + len] = GUARD;
        kernel.stream(DATA + 4, OUT + 12, len, 1.5, 0.25);
        for (let i = 0; i < len; i++) expect(f32[OUT / 4 + 3 + i]).toBe(Math.fround(Math.fround(f32[DATA / 4 + 1 + i] * 1.5) + 0.25));
        expect(f32[OUT / 4 + 3 + len]).toBe(GUARD);
      }
    });

    it('read sums n float32 and fill writes n, over odd lengths and offsets', () => {
      const { kernel, f32 } = setup(name);
      const rand = rng(5);
      for (const len of LENGTHS) {
        for (const off of OFFSETS) {
          // Small integers: every order of summation gives the exact sum.
          let want = 0;
          for (let i = 0; i < len; i++) want += f32[DATA / 4 + off + i] = Math.floor(rand() * 64) - 32;
          f32[DATA / 4 + off + len] = 1e30; // past the end: must not be read into the sum
          expect(kernel.read(DATA + 4 * off, len)).toBe(want);
          f32[OUT / 4 + off - 1] = GUARD;
          f32[OUT / 4 + off + len] = GUARD;
          kernel.fill(OUT + 4 * off, len, 2.5);
          expect(Array.from(f32.subarray(OUT / 4 + off, OUT / 4 + off + len))).toEqual(new Array(len).fill(2.5));
          expect([f32[OUT / 4 + off - 1], f32[OUT / 4 + off + len]]).toEqual([GUARD, GUARD]);
        }
      }
    });

    it('needs no more row scratch than rowScratchBytes(C)', () => {
      // The scratch given to statsRows/normalizeRows: fill what lies beyond it with a guard.
      const { kernel, f32, i32 } = setup(name);
      for (const C of [1, 3, 5, 8, 13]) {
        const end = SCRATCH + rowScratchBytes(C);
        i32.fill(0x5a5a5a5a, end / 4, end / 4 + 64);
        for (let i = 0; i < 4 * C * 3; i++) f32[DATA / 4 + i] = i % 7;
        kernel.statsRows(false, DATA, 4, C, 3, 3 * C, SCRATCH, OUT, PARTIAL_BYTES);
        kernel.statsRows(false, DATA, 4, C, 1, C, SCRATCH, OUT, PARTIAL_BYTES);
        kernel.statsRows(false, DATA, 4, C, 1, C + 5, SCRATCH, OUT, PARTIAL_BYTES);
        kernel.normalizeRows(false, DATA, OUT, 4, C, 1, C, OUT, SCRATCH, false);
        expect(Array.from(i32.slice(end / 4, end / 4 + 64)).every((v) => v === 0x5a5a5a5a)).toBe(true);
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
    for (const C of [5, 16, 37]) {
      const stride = C + 7;
      const expectRowParams = (): void => {
        for (let c = 0; c < C; c++) {
          const [mean, scale, bias] = [0, 1, 2].map((k) => f64[params / 8 + 4 * c + k]);
          const hi = fround(mean);
          const got = [0, 1, 2].map((k) => f32[rowParams / 4 + k * stride + c]);
          expect(got).toEqual([hi, fround(scale), fround(bias - (mean - hi) * scale)]);
        }
      };
      // The merge, from partials of a large-offset spread (the shift's float64 fold matters).
      for (let c = 0; c < C; c++) {
        f64.set([9 + c, 1000 + c + normal(rand), 0.5 + rand(), 0], (partials + c * PARTIAL_BYTES) / 8);
        f64[channels / 8 + CHANNEL_WEIGHT * C + c] = 0.5 + rand();
        f64[channels / 8 + CHANNEL_BIAS * C + c] = normal(rand);
      }
      kernel.mergeChannels(partials, 1, 0, C, channels, C, params, 1e-5, rowParams, stride);
      expectRowParams();
      // The eval prep, from running statistics.
      for (let c = 0; c < C; c++) {
        f64[channels / 8 + CHANNEL_MEAN * C + c] = 500 * normal(rand);
        f64[channels / 8 + CHANNEL_VAR * C + c] = 0.1 + rand();
      }
      f32.fill(GUARD, rowParams / 4, rowParams / 4 + 3 * stride);
      kernel.prepareEval(channels, C, 0, C, params, 1e-5, rowParams, stride);
      expectRowParams();
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
