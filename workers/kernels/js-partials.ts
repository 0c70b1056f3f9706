/**
 * The TypeScript kernel's partials (count, mean, m2, lo) from a block's shifted sums, with the
 * WebAssembly kernel's ways out where float64 sums overflow or the shift lies far from the mean
 * (wasm/assembly/common.ts, where they are explained): the same operations in the same order.
 */
import { lowPart } from '../../src/merge.js';

/** 2^-584 and 2^584: the WebAssembly kernel's DOWN and UP (common.ts, where they are explained). */
const DOWN = 2 ** -584;
const UP = 2 ** 584;

/** FAR² of the WebAssembly kernel's farShift (common.ts, where it is explained). */
const FAR2 = 64;

/**
 * The WebAssembly kernel's farShift: the shift lies more than 8 standard deviations from the
 * mean, or in blocks of fewer than 128 values more than √(count / 2) of them.
 */
function farShift(count: number, s1: number, s2: number): boolean {
  return s1 * s1 > Math.min(FAR2, count * 0.5) * count * (s2 - (s1 * s1) / count);
}

/**
 * writePartial, unless s2 or s1 * s1 overflowed (float64 data near float64's range: x - shift,
 * the deviations' sum or their squares past it although every value is finite), or the shift lies
 * far from the mean (farShift: an outlier first, whose distance cancels m2 = s2 - s1²/count down
 * to digits the sums' rounding reaches). Then the sums again from the
 * data: times DOWN about the shift times DOWN, and the partial times UP, so that the mean comes
 * out finite and m2 as it is or +Infinity; or about the first sums' mean. Data holding NaN or an
 * infinity keep the sums they had. The values are `rows` runs of `len` from x[start], `rowStride`
 * apart. The WebAssembly kernel's writePartial64 performs the same operations (and its float32
 * kernel's writePartial32 the second way out).
 */
export function writeChecked(
  out: Float64Array, at: number, count: number, shift: number, s1: number, s2: number,
  x: Float32Array | Float64Array, start: number, rows: number, rowStride: number, len: number,
): void {
  if (!Number.isFinite(s2) || !Number.isFinite(s1 * s1)) {
    resum(out, at, count, shift, s1, s2, x, start, rows, rowStride, len, DOWN, UP);
  } else if (farShift(count, s1, s2)) {
    resum(out, at, count, shift + s1 / count, s1, s2, x, start, rows, rowStride, len, 1, 1);
  } else {
    writePartial(out, at, count, shift, s1, s2);
  }
}

/** writeChecked's way out: the WebAssembly kernel's resum (a second pass where the first's mean lies far). */
function resum(
  out: Float64Array, at: number, count: number, shift: number, s1: number, s2: number,
  x: Float32Array | Float64Array, start: number, rows: number, rowStride: number, len: number, down: number, up: number,
): void {
  let k = shift * down;
  let t1 = 0;
  let t2 = 0;
  for (let pass = 0; pass < 2; pass++) {
    t1 = 0;
    t2 = 0;
    for (let r = 0; r < rows; r++) {
      for (let i = start + r * rowStride, stop = i + len; i < stop; i++) {
        const d = x[i] * down - k;
        t1 += d;
        t2 += d * d;
      }
    }
    if (!Number.isFinite(t1) || !Number.isFinite(t2)) {
      writePartial(out, at, count, shift, s1, s2); // NaN or an infinity in the data
      return;
    }
    if (!farShift(count, t1, t2)) break;
    k += t1 / count;
  }
  writePartial(out, at, count, k, t1, t2);
  out[at + 1] *= up;
  out[at + 2] = out[at + 2] * up * up;
  out[at + 3] *= up;
}

/**
 * Turns shifted sums into a partial (count, mean, m2, lo), mean + lo = shift + s1 / count exactly
 * (TwoSum; scratch.ts, PARTIAL_BYTES). m2 is clamped at 0 against rounding; NaN stays NaN. The
 * same operations as the WebAssembly kernel's writePartial.
 */
function writePartial(out: Float64Array, at: number, count: number, shift: number, s1: number, s2: number): void {
  const m2 = s2 - (s1 * s1) / count;
  const rel = s1 / count;
  const mean = shift + rel;
  out[at] = count;
  out[at + 1] = mean;
  out[at + 2] = m2 < 0 ? 0 : m2;
  out[at + 3] = lowPart(shift, rel, mean);
}
