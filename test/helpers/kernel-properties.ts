/**
 * What test/kernel-properties.test.ts shares among its properties: where a case's arrays lie on
 * its memory, the data's distributions, and the checks of each kernel's results against a float64
 * two-pass reference of the same values.
 */
import fc from 'fast-check';
import { createKernel, loadWasmModule } from '../../dist/workers/kernels/select.js';
import { normal, rng } from './data.js';

export const DATA = 1 << 16; // byte where inputs start (x)
export const DY = DATA + (1 << 20); // a backward's dy
export const MASK = DATA + (2 << 20); // a backward's ReLU mask (the forward's output)
export const OUT = 4 << 20; // outputs
export const PARTIALS = 7 << 20;
export const PARAMS = PARTIALS + (64 << 10);
export const SCRATCH = PARAMS + (64 << 10);
export const GUARD = -7777;

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

export const distribution = fc.constantFrom(...DISTRIBUTIONS);

/**
 * Spreads of a backward's dy. With the distributions above, 1e20 and 1e-20 make products
 * dy·(x - mean) past float32's range (up to 1e40) and in its subnormal range (down to ~1e-44),
 * where the WebAssembly kernel's float32 lanes turn to a float64 pass (README, "Kernels").
 */
export const DY_SCALES = [1e-3, 1, 1e3, 1e-20, 1e20] as const;

export function setup(name: 'js' | 'wasm') {
  const memory = new WebAssembly.Memory({ initial: 160, maximum: 160, shared: true });
  const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
  return { kernel, f32: new Float32Array(memory.buffer), f64: new Float64Array(memory.buffer) };
}

/** n values of the distribution, seeded; as float32 when !f64 (the reference sees what the kernel sees). */
export function draw(n: number, [centre, spread]: readonly [number, number], seed: number, f64: boolean): number[] {
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
 * Until 2026-12-06 one float32 case was let through: a block whose deviations from its first
 * value all square to zero in float32 (all under 2^-75 or so) and whose float32 sums of them
 * cancel to exactly zero was taken for a constant one, m2 0. Seed 10 of
 * BNPOOL_KERNEL_PROPERTIES=600 drew one: 4 rows of 1038 channels spread 1.7e-24, where a
 * channel's three deviations summed to 0 exactly (multiples of its ulp, ~17,000 of them each);
 * m2 5.4e-48 came out 0. The kernel reads such blocks again now (workers/wasm/assembly/common.ts,
 * PROVEN_SHIFT), and they are held to the same bound as any other.
 */
export function partialError(got: ArrayLike<number>, values: readonly number[], exact: boolean): string | null {
  const want = twoPass(values);
  if (got[0] !== want.n) return `count ${got[0]}, want ${want.n}`;
  if (Number.isNaN(want.mean)) return Number.isNaN(got[1]) && Number.isNaN(got[2]) ? null : `mean ${got[1]}, m2 ${got[2]} where NaN went in`;
  const rel = exact ? 1e-12 : 2e-6;
  const spread = Math.sqrt(want.m2 / want.n);
  const meanTol = rel * spread + 4 * 2 ** -52 * Math.abs(want.mean);
  if (!(Math.abs(got[1] - want.mean) <= meanTol)) return `mean ${got[1]}, want ${want.mean} within ${meanTol}`;
  if (!(Math.abs(got[2] - want.m2) <= rel * want.m2)) return `m2 ${got[2]}, want ${want.m2} within ${rel * want.m2}`;
  return null;
}

/**
 * y = (x - mean) * scale + bias (and ReLU) against float64, within a few roundings of each term;
 * for float32 also the rounding of the mean's low part (the kernel splits the mean in two floats),
 * and, where the scale or the output is subnormal, their rounding (steps of 2^-149 in float32).
 * Returns what is wrong, or null: the callers assert once a case (an expect an element took
 * seconds a property).
 */
export function normalizedError(
  got: number, x: number, mean: number, scale: number, bias: number, relu: boolean, f64: boolean,
): string | null {
  const linear = (x - mean) * scale + bias;
  const want = relu && linear < 0 ? 0 : linear;
  if (Number.isNaN(want)) return Number.isNaN(got) ? null : `${got} where NaN went in`;
  const ulp = f64 ? 2 ** -52 : 2 ** -23;
  const tol = 4 * ulp * (Math.abs(x - mean) * Math.abs(scale) + Math.abs(bias) + Math.abs(linear))
    + (f64 ? 0 : 4 * ulp * 2 ** -23 * Math.abs(mean * scale)) + (f64 ? 2 ** -1074 : 2 ** -149) * (2 + Math.abs(x - mean));
  return Math.abs(got - want) <= tol ? null : `${got} for x = ${x}: want ${want} within ${tol}`;
}

/** The first element of y at yBase (n elements, rows `stride` apart) that is wrong, or null; guards around and between runs. */
export function firstWrong(
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
export function drawMask(n: number, seed: number, nan: number | null): number[] {
  const rand = rng(seed);
  const mask = Array.from({ length: n }, () => Math.fround(Math.max(0, normal(rand) - 0.43)));
  if (nan !== null) mask[nan % n] = NaN;
  return mask;
}

export function passes(mask: readonly number[] | null, i: number): boolean {
  return mask === null || !(mask[i] <= 0);
}

/**
 * What is wrong with a backward partial (count, Σdy, Σdy·(x - mean)) of the elements at
 * `indices`, or null. Bounds as partialError's, on the sums of magnitudes (sums of products
 * cancel): the WebAssembly kernel's float32 products and lane sums (of a run: trees of 4 vectors,
 * added in turn over 512 bytes of x), and x - mean taken as x minus the mean's float32 part (its
 * low part applied once at the end).
 */
export function bwdPartialError(
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
export function dxError(
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
