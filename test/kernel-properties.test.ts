/**
 * Properties of the kernels (fast-check, which shrinks a failure to a small case): for any length,
 * offset, stride and number of runs, and data drawn from a chosen centre and spread (among them a
 * large offset with a tiny spread, a constant run, values whose float32 squares overflow, a NaN at
 * any place), each implementation's partial statistics, normalized outputs, backward sums and dx
 * (with and without a ReLU mask, training and eval coefficients) agree with a float64 two-pass
 * reference of the same values within their stated bounds, and no write lands outside the output.
 * test/kernels-*.test.ts walk fixed grids of sizes on one distribution, and check the backward
 * kernels against each other; this varies both and checks each against the reference.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rowScratchBytes } from '../dist/workers/kernels/kernel.js';
import {
  bwdPartialError, DATA, distribution, draw, drawMask, dxError, DY, DY_SCALES, firstWrong, GUARD, MASK, normalizedError, OUT,
  PARAMS, partialError, PARTIALS, passes, SCRATCH, setup,
} from './helpers/kernel-properties.js';

/**
 * Cases a property and fast-check's seed: fixed, so CI is repeatable; BNPOOL_KERNEL_PROPERTIES=2000
 * and BNPOOL_KERNEL_PROPERTIES_SEED search longer and elsewhere (a failure prints its seed and path).
 */
const RUNS = Number(process.env.BNPOOL_KERNEL_PROPERTIES ?? 60);
/**
 * Channel counts of the row kernels: few (the pattern kernel below 16), rows of 64 to 300
 * channels (256 bytes to 1.2 KiB of float32: rows a fraction of the call apart, with up to 40 of
 * them), and rows of about 4 KiB or a band of a wider row.
 */
const channelCounts = fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 60, max: 300 }), fc.integer({ min: 1020, max: 1100 }));
const SEED = Number(process.env.BNPOOL_KERNEL_PROPERTIES_SEED ?? 1);

for (const name of ['js', 'wasm'] as const) {
  describe(`${name} kernel properties`, () => {
    const { kernel, f32, f64 } = setup(name);
    for (const wide of [false, true]) {
      const dtype = wide ? 'float64' : 'float32';
      const bpe = wide ? 8 : 4;
      const x = wide ? f64 : f32;
      const exact = wide || name === 'js';

      /**
       * A backward's inputs: x from the distribution (NaN at `nan`), dy, and with `masked` a ReLU
       * mask, each written `offset` elements past its region (DATA, DY, MASK). `at` gives a
       * region's byte offset as the kernel gets it.
       */
      const placeBackward = (o: {
        n: number; dist: readonly [number, number]; seed: number; nan: number | null; masked: boolean; maskNan: number | null;
        offset: number; dyScale: number;
      }) => {
        const xs = draw(o.n, o.dist, o.seed, wide);
        if (o.nan !== null) xs[o.nan % o.n] = NaN;
        const dys = draw(o.n, [0, o.dyScale], o.seed + 1, wide);
        const mask = o.masked ? drawMask(o.n, o.seed + 2, o.maskNan) : null;
        x.set(xs, DATA / bpe + o.offset);
        x.set(dys, DY / bpe + o.offset);
        if (mask !== null) x.set(mask, MASK / bpe + o.offset);
        return { xs, dys, mask, at: (byte: number): number => byte + o.offset * bpe };
      };

      it(`statsPlanes: any runs, offsets, strides and data give the reference's partials (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            len: fc.integer({ min: 1, max: 1300 }), rows: fc.integer({ min: 1, max: 4 }), blocks: fc.integer({ min: 1, max: 2 }),
            offset: fc.integer({ min: 0, max: 3 }), gap: fc.integer({ min: 0, max: 9 }), dist: distribution,
            seed: fc.integer({ min: 1, max: 2 ** 30 }), nan: fc.option(fc.nat(), { freq: 4 }),
          }),
          ({ len, rows, blocks, offset, gap, dist, seed, nan }) => {
            const rowStride = blocks * len + gap;
            const base = DATA / bpe + offset;
            const all = draw(rows * rowStride, dist, seed, wide);
            if (nan !== null) all[nan % all.length] = NaN;
            x.set(all, base);
            kernel.statsPlanes(wide, base * bpe, blocks, len, rows, rowStride, len, PARTIALS, 32, SCRATCH);
            for (let b = 0; b < blocks; b++) {
              const values: number[] = [];
              for (let r = 0; r < rows; r++) values.push(...all.slice(r * rowStride + b * len, r * rowStride + (b + 1) * len));
              expect(partialError(f64.subarray(PARTIALS / 8 + 4 * b, PARTIALS / 8 + 4 * b + 3), values, exact), `block ${b}`).toBeNull();
            }
          },
        ), { numRuns: RUNS, seed: SEED });
      });

      it(`normalizePlanes: any runs, offsets, strides, parameters and data, nothing written past the runs (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            len: fc.integer({ min: 1, max: 1300 }), rows: fc.integer({ min: 1, max: 3 }), xOffset: fc.integer({ min: 0, max: 3 }),
            yOffset: fc.integer({ min: 0, max: 3 }), gap: fc.integer({ min: 0, max: 9 }), dist: distribution,
            seed: fc.integer({ min: 1, max: 2 ** 30 }), nan: fc.option(fc.nat(), { freq: 4 }), relu: fc.boolean(),
            meanShift: fc.double({ min: -3, max: 3, noNaN: true }), scale: fc.double({ min: -1e3, max: 1e3, noNaN: true }),
            bias: fc.double({ min: -10, max: 10, noNaN: true }),
          }),
          ({ len, rows, xOffset, yOffset, gap, dist, seed, nan, relu, meanShift, scale, bias }) => {
            const stride = len + gap;
            const xBase = DATA / bpe + xOffset;
            const yBase = OUT / bpe + yOffset;
            const all = draw(rows * stride, dist, seed, wide);
            if (nan !== null) all[nan % all.length] = NaN;
            x.set(all, xBase);
            x.fill(GUARD, yBase - 4, yBase + rows * stride + 4);
            const mean = dist[0] + meanShift * dist[1];
            kernel.normalizePlanes(wide, xBase * bpe, stride, yBase * bpe, stride, rows, len, mean, scale, bias, relu);
            expect(firstWrong(x, yBase, rows * stride, stride, len, (i) => normalizedError(x[yBase + i], all[i], mean, scale, bias, relu, wide))).toBeNull();
          },
        ), { numRuns: RUNS, seed: SEED });
      });

      it(`statsRows: any channel count, run, band and data give each channel the reference's partial (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            C: channelCounts, S: fc.integer({ min: 1, max: 6 }),
            rows: fc.integer({ min: 1, max: 40 }), offset: fc.integer({ min: 0, max: 3 }), gap: fc.integer({ min: 0, max: 7 }),
            dist: distribution, seed: fc.integer({ min: 1, max: 2 ** 30 }), nan: fc.option(fc.nat(), { freq: 4 }),
          }),
          ({ C, S, rows, offset, gap, dist, seed, nan }) => {
            const rows2 = C > 400 ? Math.min(rows, 4) : rows; // wide rows: a few, to stay quick
            const stride = C * S + gap;
            const base = DATA / bpe + offset;
            // Each channel around its own centre, so that a lane mixed up with its neighbour shows.
            const all = draw(rows2 * stride, dist, seed, wide).map((v, i) => (wide ? v + (i % stride) * dist[1] : Math.fround(v + (i % stride) * dist[1])));
            if (nan !== null) all[nan % all.length] = NaN;
            x.set(all, base);
            const outStride = 32;
            kernel.statsRows(wide, base * bpe, rows2, C, S, stride, SCRATCH, PARTIALS, outStride);
            let wrong: string | null = null;
            for (let c = 0; c < C && wrong === null; c++) {
              const values: number[] = [];
              for (let r = 0; r < rows2; r++) values.push(...all.slice(r * stride + c * S, r * stride + (c + 1) * S));
              const at = (PARTIALS + c * outStride) / 8;
              const error = partialError(f64.subarray(at, at + 3), values, exact);
              if (error !== null) wrong = `channel ${c}: ${error}`;
            }
            expect(wrong).toBeNull();
          },
        ), { numRuns: RUNS, seed: SEED });
      });

      it(`normalizeRows: any channel count, run, band, parameters and data, the band's rest untouched (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            C: channelCounts, S: fc.integer({ min: 1, max: 6 }),
            rows: fc.integer({ min: 1, max: 12 }), xOffset: fc.integer({ min: 0, max: 3 }), yOffset: fc.integer({ min: 0, max: 3 }),
            gap: fc.integer({ min: 0, max: 7 }), dist: distribution, seed: fc.integer({ min: 1, max: 2 ** 30 }),
            nan: fc.option(fc.nat(), { freq: 4 }), relu: fc.boolean(),
          }),
          ({ C, S, rows, xOffset, yOffset, gap, dist, seed, nan, relu }) => {
            const rows2 = C > 400 ? Math.min(rows, 3) : rows;
            const stride = C * S + gap;
            const n = rows2 * stride;
            const xBase = DATA / bpe + xOffset;
            const yBase = OUT / bpe + yOffset;
            const all = draw(n, dist, seed, wide);
            if (nan !== null) all[nan % all.length] = NaN;
            x.set(all, xBase);
            x.fill(GUARD, yBase - 4, yBase + n + 4);
            const params = draw(3 * C, [0, 1], seed + 1, true);
            const parameters = (c: number): [number, number, number] => [dist[0] + params[3 * c] * dist[1], 50 * params[3 * c + 1], params[3 * c + 2]];
            for (let c = 0; c < C; c++) f64.set(parameters(c), PARAMS / 8 + 4 * c);
            expect(SCRATCH + rowScratchBytes(C)).toBeLessThan(f64.byteLength);
            kernel.normalizeRows(wide, xBase * bpe, yBase * bpe, rows2, C, S, stride, PARAMS, SCRATCH, relu);
            expect(firstWrong(x, yBase, n, stride, C * S, (i) => {
              const [mean, scale, bias] = parameters(Math.floor((i % stride) / S));
              return normalizedError(x[yBase + i], all[i], mean, scale, bias, relu, wide);
            })).toBeNull();
          },
        ), { numRuns: RUNS, seed: SEED });
      });

      it(`bwdStatsPlanes: any runs, strides, mask and data give the reference's sums (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            len: fc.integer({ min: 1, max: 1300 }), rows: fc.integer({ min: 1, max: 4 }), offset: fc.integer({ min: 0, max: 3 }),
            gap: fc.integer({ min: 0, max: 9 }), dist: distribution, seed: fc.integer({ min: 1, max: 2 ** 30 }),
            nan: fc.option(fc.nat(), { freq: 4 }), masked: fc.boolean(), maskNan: fc.option(fc.nat(), { freq: 4 }),
            dyScale: fc.constantFrom(...DY_SCALES), meanShift: fc.double({ min: -3, max: 3, noNaN: true }),
          }),
          ({ len, rows, offset, gap, dist, seed, nan, masked, maskNan, dyScale, meanShift }) => {
            const stride = len + gap;
            const n = rows * stride;
            const { xs, dys, mask, at } = placeBackward({ n, dist, seed, nan, masked, maskNan, offset, dyScale });
            const mean = dist[0] + meanShift * dist[1];
            kernel.bwdStatsPlanes(wide, at(DATA), stride, at(DY), stride, mask === null ? 0 : at(MASK), stride, rows, len, mean, PARTIALS);
            const indices = Array.from({ length: n }, (_, i) => i).filter((i) => i % stride < len);
            expect(bwdPartialError(f64.subarray(PARTIALS / 8, PARTIALS / 8 + 3), indices, xs, dys, mask, mean, exact)).toBeNull();
          },
        ), { numRuns: RUNS, seed: SEED });
      });

      it(`bwdApplyPlanes: any runs, strides, mask, coefficients and data, nothing written past the runs (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            len: fc.integer({ min: 1, max: 1300 }), rows: fc.integer({ min: 1, max: 3 }), offset: fc.integer({ min: 0, max: 3 }),
            dxOffset: fc.integer({ min: 0, max: 3 }), gap: fc.integer({ min: 0, max: 9 }), dist: distribution,
            seed: fc.integer({ min: 1, max: 2 ** 30 }), nan: fc.option(fc.nat(), { freq: 4 }), masked: fc.boolean(),
            maskNan: fc.option(fc.nat(), { freq: 4 }), a: fc.double({ min: -1e3, max: 1e3, noNaN: true }),
            // k = 0 is eval mode: x is not read, so a NaN in x leaves dx finite.
            k: fc.oneof(fc.constant(0), fc.double({ min: -1e3, max: 1e3, noNaN: true })),
            e: fc.double({ min: -10, max: 10, noNaN: true }), meanShift: fc.double({ min: -3, max: 3, noNaN: true }),
          }),
          ({ len, rows, offset, dxOffset, gap, dist, seed, nan, masked, maskNan, a, k, e, meanShift }) => {
            const stride = len + gap;
            const n = rows * stride;
            const { xs, dys, mask, at } = placeBackward({ n, dist, seed, nan, masked, maskNan, offset, dyScale: 1 });
            const dxBase = OUT / bpe + dxOffset;
            x.fill(GUARD, dxBase - 4, dxBase + n + 4);
            const mean = dist[0] + meanShift * dist[1];
            kernel.bwdApplyPlanes(
              wide, at(DATA), stride, at(DY), stride, mask === null ? 0 : at(MASK), stride, dxBase * bpe, stride, rows, len, a, k, mean, e,
            );
            expect(firstWrong(x, dxBase, n, stride, len, (i) => dxError(x[dxBase + i], xs[i], dys[i], passes(mask, i), a, k, mean, e, wide))).toBeNull();
          },
        ), { numRuns: RUNS, seed: SEED });
      });

      it(`bwdStatsRows: any channel count, run, band, mask and data give each channel the reference's sums (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            C: channelCounts, S: fc.integer({ min: 1, max: 6 }),
            rows: fc.integer({ min: 1, max: 40 }), offset: fc.integer({ min: 0, max: 3 }), gap: fc.integer({ min: 0, max: 7 }),
            dist: distribution, seed: fc.integer({ min: 1, max: 2 ** 30 }), nan: fc.option(fc.nat(), { freq: 4 }),
            masked: fc.boolean(), maskNan: fc.option(fc.nat(), { freq: 4 }), dyScale: fc.constantFrom(...DY_SCALES),
          }),
          ({ C, S, rows, offset, gap, dist, seed, nan, masked, maskNan, dyScale }) => {
            const rows2 = C > 400 ? Math.min(rows, 4) : rows;
            const stride = C * S + gap;
            const n = rows2 * stride;
            const { xs, dys, mask, at } = placeBackward({ n, dist, seed, nan, masked, maskNan, offset, dyScale });
            const means = draw(C, [0, 1], seed + 3, true).map((v) => dist[0] + v * dist[1]);
            for (let c = 0; c < C; c++) f64[PARAMS / 8 + 4 * c] = means[c];
            const outStride = 32;
            kernel.bwdStatsRows(wide, at(DATA), at(DY), mask === null ? 0 : at(MASK), rows2, C, S, stride, PARAMS, SCRATCH, PARTIALS, outStride);
            let wrong: string | null = null;
            for (let c = 0; c < C && wrong === null; c++) {
              const indices: number[] = [];
              for (let r = 0; r < rows2; r++) for (let k = 0; k < S; k++) indices.push(r * stride + c * S + k);
              const p = (PARTIALS + c * outStride) / 8;
              const error = bwdPartialError(f64.subarray(p, p + 3), indices, xs, dys, mask, means[c], exact);
              if (error !== null) wrong = `channel ${c}: ${error}`;
            }
            expect(wrong).toBeNull();
          },
        ), { numRuns: RUNS, seed: SEED });
      });

      it(`bwdApplyRows: any channel count, run, band, mask, coefficients and data, the band's rest untouched (${dtype})`, () => {
        fc.assert(fc.property(
          fc.record({
            C: channelCounts, S: fc.integer({ min: 1, max: 6 }),
            rows: fc.integer({ min: 1, max: 12 }), offset: fc.integer({ min: 0, max: 3 }), gap: fc.integer({ min: 0, max: 7 }),
            dist: distribution, seed: fc.integer({ min: 1, max: 2 ** 30 }), nan: fc.option(fc.nat(), { freq: 4 }),
            masked: fc.boolean(), maskNan: fc.option(fc.nat(), { freq: 4 }), evalMode: fc.boolean(),
          }),
          ({ C, S, rows, offset, gap, dist, seed, nan, masked, maskNan, evalMode }) => {
            const rows2 = C > 400 ? Math.min(rows, 3) : rows;
            const stride = C * S + gap;
            const n = rows2 * stride;
            const { xs, dys, mask, at } = placeBackward({ n, dist, seed, nan, masked, maskNan, offset, dyScale: 1 });
            const dxBase = OUT / bpe + offset;
            x.fill(GUARD, dxBase - 4, dxBase + n + 4);
            const coefficients = draw(4 * C, [0, 1], seed + 3, true);
            const params = (c: number): [number, number, number, number] => [
              20 * coefficients[4 * c], evalMode ? 0 : 5 * coefficients[4 * c + 1], dist[0] + coefficients[4 * c + 2] * dist[1], coefficients[4 * c + 3],
            ];
            for (let c = 0; c < C; c++) f64.set(params(c), PARAMS / 8 + 4 * c);
            kernel.bwdApplyRows(wide, at(DATA), at(DY), mask === null ? 0 : at(MASK), dxBase * bpe, rows2, C, S, stride, PARAMS, SCRATCH);
            expect(firstWrong(x, dxBase, n, stride, C * S, (i) => {
              const [a, k, mean, e] = params(Math.floor((i % stride) / S));
              return dxError(x[dxBase + i], xs[i], dys[i], passes(mask, i), a, k, mean, e, wide);
            })).toBeNull();
          },
        ), { numRuns: RUNS, seed: SEED });
      });
    }
  });
}
