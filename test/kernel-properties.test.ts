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
import { createKernel, loadWasmModule } from '../dist/workers/kernels/select.js';
import { normal, rng } from './helpers/data.js';

const DATA = 1 << 16; // byte where inputs start (x)
const DY = DATA + (1 << 20); // a backward's dy
const MASK = DATA + (2 << 20); // a backward's ReLU mask (the forward's output)
const OUT = 4 << 20; // outputs
const PARTIALS = 7 << 20;
const PARAMS = PARTIALS + (64 << 10);
const SCRATCH = PARAMS + (64 << 10);
const GUARD = -7777;
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

/**
 * (centre, spread) pairs of the data. [1e9, 1e-3] is constant once rounded to float32 (its step
 * there is 64); [0, 1e20] squares past float32's range, and [1e-20, 1.7e-22] and [0, 1.7e-24]
 * square into its subnormal range and to zero: the WebAssembly kernel's float32 lanes turn each
 * into a float64 pass over the data (README, "Kernels").
 */
const DISTRIBUTIONS: readonly (readonly [number, number])[] = [
  [0, 1], [-37.5, 2], [3000, 0.5], [1e6, 3], [1e9, 1e-3], [5, 0], [0, 1e20], [1e-15, 1e-17], [-2e4, 1e4],
  [1e-20, 1.7e-22], [0, 1.7e-24],
];

const distribution = fc.constantFrom(...DISTRIBUTIONS);

/**
 * Spreads of a backward's dy. With the distributions above, 1e20 and 1e-20 make products
 * dy·(x - mean) past float32's range (up to 1e40) and in its subnormal range (down to ~1e-44),
 * where the WebAssembly kernel's float32 lanes turn to a float64 pass (README, "Kernels").
 */
const DY_SCALES = [1e-3, 1, 1e3, 1e-20, 1e20] as const;

function setup(name: 'js' | 'wasm') {
  const memory = new WebAssembly.Memory({ initial: 160, maximum: 160, shared: true });
  const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
  return { kernel, f32: new Float32Array(memory.buffer), f64: new Float64Array(memory.buffer) };
}

/** n values of the distribution, seeded; as float32 when !f64 (the reference sees what the kernel sees). */
function draw(n: number, [centre, spread]: readonly [number, number], seed: number, f64: boolean): number[] {
  const rand = rng(seed);
  return Array.from({ length: n }, () => {
    const v = centre + spread * normal(rand);
    return f64 ? v : Math.fround(v);
  });
}

/**
 * The corrected two-pass algorithm in float64 (Chan, Golub & LeVeque, "Algorithms for computing
 * the sample variance", 1983): the mean, then m2 = Σ(v - mean)² - (Σ(v - mean))² / n, whose second
 * term takes out the rounding of the mean (n·δ² in m2, which is most of it for data far from zero
 * with a tiny spread: 1e9 ± 1e-3 in float64); the mean corrected the same way.
 */
function twoPass(values: readonly number[]): { n: number; mean: number; m2: number } {
  const n = values.length;
  const rough = values.reduce((a, b) => a + b, 0) / n;
  let s1 = 0;
  let s2 = 0;
  for (const v of values) {
    s1 += v - rough;
    s2 += (v - rough) ** 2;
  }
  return { n, mean: rough + s1 / n, m2: s2 - (s1 * s1) / n };
}

/**
 * What is wrong with a partial (count, mean, m2) against the reference, or null. The float32
 * lanes of the WebAssembly kernel sum up to 32 shifted values of a run (trees of 8, added in
 * turn) or 8 down the rows before each float64 fold: a few float32 roundings of each deviation,
 * so 2e-6 of m2 and of the spread for the mean, where the shift (the first value) lies within a
 * few spreads of the mean, as it does for these distributions. Float64 data, and the TypeScript
 * kernel, sum in float64: 1e-12. The mean is the shift plus the mean deviation: two more
 * roundings at the mean's scale. NaN anywhere makes both NaN.
 *
 * One float32 case is the README's ("Kernels", Left): a block whose deviations from its first
 * value all square to zero in float32 (all under 2^-75 or so) and whose float32 sums of them
 * cancel to exactly zero is taken for a constant one, m2 0 (float32 sums of squares, as
 * PyTorch's float32 kernel makes them, give 0 there too). Seed 10 of BNPOOL_KERNEL_PROPERTIES=600
 * drew one: 4 rows of 1038 channels spread 1.7e-24, where a channel's three deviations summed
 * to 0 exactly (multiples of its ulp, ~17,000 of them each); m2 5.4e-48 came out 0.
 */
function partialError(got: ArrayLike<number>, values: readonly number[], exact: boolean): string | null {
  const want = twoPass(values);
  if (got[0] !== want.n) return `count ${got[0]}, want ${want.n}`;
  if (Number.isNaN(want.mean)) return Number.isNaN(got[1]) && Number.isNaN(got[2]) ? null : `mean ${got[1]}, m2 ${got[2]} where NaN went in`;
  const rel = exact ? 1e-12 : 2e-6;
  const spread = Math.sqrt(want.m2 / want.n);
  const meanTol = rel * spread + 4 * 2 ** -52 * Math.abs(want.mean);
  if (!(Math.abs(got[1] - want.mean) <= meanTol)) return `mean ${got[1]}, want ${want.mean} within ${meanTol}`;
  if (!(Math.abs(got[2] - want.m2) <= rel * want.m2)) {
    const squaresVanish = !exact && got[2] === 0 && values.every((v) => Math.fround(Math.fround(v - values[0]) ** 2) === 0);
    if (!squaresVanish) return `m2 ${got[2]}, want ${want.m2} within ${rel * want.m2}`;
  }
  return null;
}

/**
 * y = (x - mean) * scale + bias (and ReLU) against float64, within a few roundings of each term;
 * for float32 also the rounding of the mean's low part (the kernel splits the mean in two floats),
 * and, where the scale or the output is subnormal, their rounding (steps of 2^-149 in float32).
 * Returns what is wrong, or null: the callers assert once a case (an expect an element took
 * seconds a property).
 */
function normalizedError(got: number, x: number, mean: number, scale: number, bias: number, relu: boolean, f64: boolean): string | null {
  const linear = (x - mean) * scale + bias;
  const want = relu && linear < 0 ? 0 : linear;
  if (Number.isNaN(want)) return Number.isNaN(got) ? null : `${got} where NaN went in`;
  const ulp = f64 ? 2 ** -52 : 2 ** -23;
  const tol = 4 * ulp * (Math.abs(x - mean) * Math.abs(scale) + Math.abs(bias) + Math.abs(linear))
    + (f64 ? 0 : 4 * ulp * 2 ** -23 * Math.abs(mean * scale)) + (f64 ? 2 ** -1074 : 2 ** -149) * (2 + Math.abs(x - mean));
  return Math.abs(got - want) <= tol ? null : `${got} for x = ${x}: want ${want} within ${tol}`;
}

/** The first element of y at yBase (n elements, rows `stride` apart) that is wrong, or null; guards around and between runs. */
function firstWrong(
  y: Float32Array | Float64Array, yBase: number, n: number, stride: number, runLength: number,
  check: (i: number) => string | null,
): string | null {
  for (let i = -4; i < n + 4; i++) {
    const outside = i < 0 || i >= n || i % stride >= runLength;
    const wrong = outside ? (y[yBase + i] === GUARD ? null : `${y[yBase + i]} over the guard`) : check(i);
    if (wrong !== null) return `element ${i}: ${wrong}`;
  }
  return null;
}

/**
 * A ReLU's output as a backward's mask: zeros (a third), positive values, and NaN at `nan`: the
 * gradient passes where the mask is > 0 or NaN.
 */
function drawMask(n: number, seed: number, nan: number | null): number[] {
  const rand = rng(seed);
  const mask = Array.from({ length: n }, () => Math.fround(Math.max(0, normal(rand) - 0.43)));
  if (nan !== null) mask[nan % n] = NaN;
  return mask;
}

function passes(mask: readonly number[] | null, i: number): boolean {
  return mask === null || !(mask[i] <= 0);
}

/**
 * What is wrong with a backward partial (count, Σdy, Σdy·(x - mean)) of the elements at
 * `indices`, or null. Bounds as partialError's, on the sums of magnitudes (sums of products
 * cancel): the WebAssembly kernel's float32 products and lane sums (of a run: trees of 4 vectors,
 * added in turn over 512 bytes of x), and x - mean taken as x minus the mean's float32 part (its
 * low part applied once at the end).
 */
function bwdPartialError(
  got: ArrayLike<number>, indices: readonly number[], x: readonly number[], dy: readonly number[], mask: readonly number[] | null,
  mean: number, exact: boolean,
): string | null {
  let s1 = 0;
  let s2 = 0;
  let abs1 = 0;
  let abs2 = 0;
  for (const i of indices) {
    const g = passes(mask, i) ? dy[i] : 0;
    s1 += g;
    s2 += g * (x[i] - mean);
    abs1 += Math.abs(g);
    abs2 += Math.abs(g) * (Math.abs(x[i] - mean) + 2 ** -24 * Math.abs(mean));
  }
  if (got[0] !== indices.length) return `count ${got[0]}, want ${indices.length}`;
  const rel = exact ? 1e-12 : 2e-6;
  const check = (label: string, value: number, want: number, tol: number): string | null => {
    if (Number.isNaN(want)) return Number.isNaN(value) ? null : `${label} ${value} where NaN went in`;
    return Math.abs(value - want) <= tol ? null : `${label} ${value}, want ${want} within ${tol}`;
  };
  return check('Σdy', got[1], s1, rel * abs1) ?? check('Σdy·(x - mean)', got[2], s2, rel * abs2);
}

/** dx = a·(dy + k·(x - mean) + e) (dy masked) against float64, or what is wrong; x unread where k is 0. */
function dxError(
  got: number, x: number, dy: number, pass: boolean, a: number, k: number, mean: number, e: number, f64: boolean,
): string | null {
  const g = pass ? dy : 0;
  const centred = k === 0 ? 0 : x - mean;
  const want = a * (g + k * centred + e);
  if (Number.isNaN(want)) return Number.isNaN(got) ? null : `${got} where NaN went in`;
  const ulp = f64 ? 2 ** -52 : 2 ** -23;
  const tol = 4 * ulp * (Math.abs(a) * (Math.abs(g) + Math.abs(k * centred) + Math.abs(e)) + Math.abs(want))
    + (f64 ? 0 : 4 * ulp * 2 ** -23 * Math.abs(a * k * mean))
    // Subnormal steps: of the result and of a and k, which the float32 kernels hold as float32
    // (README, "Semantics"): a below float32's range is 0 there, which loses at most half a step
    // of a times the whole parenthesis (seed 21 found a = 6.1e-48 with k·(x - mean) = 1404).
    + (f64 ? 2 ** -1074 : 2 ** -149) * (3 + (1 + Math.abs(a)) * (1 + Math.abs(g) + Math.abs(centred) + Math.abs(k * centred) + Math.abs(e)));
  return Math.abs(got - want) <= tol ? null : `${got} for x = ${x}, dy = ${g}: want ${want} within ${tol}`;
}

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
