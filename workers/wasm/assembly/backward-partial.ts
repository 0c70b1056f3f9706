import { masked32, TINY_MEAN_SQUARE } from './common';

// The float32 backward partials (count, Σdy, Σdy·(x - mean)), from the sums the kernels make in
// float32 lanes: Σdy, and Σdy·(x - hi) with hi = <f32>mean, whose low part is applied here
// (Σdy·(x - mean) = Σdy·(x - hi) - lo·Σdy). The products leave float32's range as the forward's
// squares do (common.ts, writePartial32), on data whose float64 gradients are finite and normal
// (bench/extremes.mjs): past ~3.4e38 they are infinite, and +Inf meeting -Inf is NaN (x and dy of spread 1e20
// gave a NaN dWeight and dx); under ~1.2e-38 they are subnormal (x - mean and dy of 1e-20 lost
// 1e-6 to 2e-5 of dWeight), and on float32's subnormal steps (2^-149) tiny products cancel to
// exactly zero often. So sums that came out infinite or NaN, or whose mean product is under
// TINY_MEAN_SQUARE in magnitude (the same bound on the rounding of subnormal products: at most
// 2^-30 of the sum), are made again in float64 from the data, and so is a sum of exactly zero
// beside a Σdy that is not, unless every product is exactly zero (x == hi wherever dy passes: a
// block of a constant channel, such as one a ReLU before this layer left at 0, which reads its x
// once more for the check, a vector compare a vector, rather than pay for a scalar float64 pass).
// Both sums exactly zero are taken as they are: the block of a channel whose gradients are zero
// (one its fused ReLU shut) must not pay even that. Left: a block whose float32 Σdy cancels to
// exactly zero and whose products all round or cancel to zero is taken for such a one.

/**
 * Whether writeBwdPartial32 needs to know if every product of a block is exactly zero: its
 * Σdy·(x - hi) came out exactly zero beside a Σdy that is not. Callers check only such blocks.
 */
@inline export function needsZeroCheck(sdy: f64, sp: f64): bool {
  return sp == 0 && sdy != 0;
}

/**
 * Writes the partial of a block of `rows` runs of `len` values, `xRow`, `dyRow` and `maskRow`
 * bytes apart (mask 0 for none), from its float32 lanes' sums sdy = Σdy and sp = Σdy·(x - hi).
 * `zero`: every product of the block is exactly zero (productsZero32, or zeroProductLanes32 for
 * many channels at once); consulted only where needsZeroCheck(sdy, sp), so callers may pass
 * `needsZeroCheck(sdy, sp) && ...`.
 */
@inline export function writeBwdPartial32(
  out: usize, count: f64, sdy: f64, sp: f64, mean: f64, zero: bool,
  x: usize, dy: usize, mask: usize, rows: i32, xRow: usize, dyRow: usize, maskRow: usize, len: i32,
): void {
  if (isFinite(sdy) && isFinite(sp) && (abs(sp) >= count * TINY_MEAN_SQUARE || (sp == 0 && (sdy == 0 || zero)))) {
    store<f64>(out, count);
    store<f64>(out, sdy, 8);
    store<f64>(out, sp - (mean - <f64><f32>mean) * sdy, 16);
  } else {
    bwdResum32(out, count, mean, x, dy, mask, rows, xRow, dyRow, maskRow, len);
  }
}

/**
 * Whether dy (0 where the mask's y <= 0) or x - hi is exactly zero at every element of `rows` runs
 * of `len` values (strided as writeBwdPartial32's): each product is then zero in any precision.
 * x - hi is zero in float32 only where x == hi (gradual underflow); NaN or an infinity in x or dy
 * answers false. dy is read only where x - hi is not zero (a constant block reads x alone); stops
 * at the first element that answers false.
 */
export function productsZero32(
  x: usize, dy: usize, mask: usize, rows: i32, xRow: usize, dyRow: usize, maskRow: usize, len: i32, hi: f32,
): bool {
  const hv = f32x4.splat(hi);
  const zero = f32x4.splat(0);
  for (let r = 0; r < rows; r++) {
    const px = x + <usize>r * xRow;
    const pg = dy + <usize>r * dyRow;
    const pm = mask + <usize>r * maskRow;
    let j = 0;
    for (; j + 4 <= len; j += 4) {
      const o = <usize>j << 2;
      const xz = f32x4.eq(f32x4.sub(v128.load(px + o), hv), zero);
      if (i32x4.all_true(xz)) continue;
      let g = v128.load(pg + o);
      if (mask != 0) g = masked32(g, pm, o);
      if (!i32x4.all_true(v128.or(f32x4.eq(g, zero), xz))) return false;
    }
    for (; j < len; j++) {
      const o = <usize>j << 2;
      if (load<f32>(px + o) - hi == 0) continue;
      const g: f32 = mask != 0 && load<f32>(pm + o) <= 0 ? 0 : load<f32>(pg + o);
      if (g != 0) return false;
    }
  }
  return true;
}

/**
 * productsZero32 for many interleaved channels at once: `rows` rows of `width` values, `rowBytes`
 * apart (x, dy and the mask alike), lane i against hi at hArr + 4 * i. `flags` holds an i32 a
 * lane: -1 for a lane to check, 0 for one not to; each checked lane keeps -1 only where every
 * product of its column is exactly zero. Lanes are checked four at a time where all four lie in
 * the row, the rest one by one, dy read only where x - hi is not zero. The groups of four with a
 * lane to check are listed first (in `list`, 4 bytes a group): a row visits those alone, a group
 * leaves the list when none of its lanes is left, and the walk stops when none is left at all.
 * Lanes checked one by one, and a pattern's values past its last whole period, are ones the
 * callers sum in float64, where each float32 product is exact: for them a sum of exactly zero
 * beside nonzero products comes only from exact cancellation, where the sums as they are equal
 * the resum up to rounding. The check holds them to the contract all the same; no test can tell
 * it from none (the mutants zero-lanes-tail and bwd-pattern-zero-rest, tried 2026-12-05).
 */
export function zeroProductLanes32(
  x: usize, dy: usize, mask: usize, rows: i32, rowBytes: usize, width: i32, hArr: usize, flags: usize, list: usize,
): void {
  const w4 = <usize>(width & ~3);
  const zero = f32x4.splat(0);
  let n: usize = 0;
  for (let i: usize = 0; i < w4; i += 4) {
    if (v128.any_true(v128.load(flags + (i << 2)))) store<u32>(list + (n++ << 2), <u32>i);
  }
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let k: usize = 0; k < n;) {
      const i = <usize>load<u32>(list + (k << 2));
      const o = row + (i << 2);
      const xz = f32x4.eq(f32x4.sub(v128.load(x + o), v128.load(hArr + (i << 2))), zero);
      if (!i32x4.all_true(xz)) {
        let g = v128.load(dy + o);
        if (mask != 0) g = masked32(g, mask, o);
        const left = v128.and(v128.load(flags + (i << 2)), v128.or(f32x4.eq(g, zero), xz));
        v128.store(flags + (i << 2), left);
        if (!v128.any_true(left)) {
          store<u32>(list + (k << 2), load<u32>(list + (--n << 2)));
          continue;
        }
      }
      k++;
    }
    let live = n > 0;
    for (let i = w4; i < <usize>width; i++) {
      if (load<i32>(flags + (i << 2)) == 0) continue;
      const o = row + (i << 2);
      const g: f32 = load<f32>(x + o) - load<f32>(hArr + (i << 2)) == 0 || (mask != 0 && load<f32>(mask + o) <= 0) ? 0 : load<f32>(dy + o);
      if (g != 0) store<i32>(flags + (i << 2), 0);
      else live = true;
    }
    if (!live) return;
  }
}

/** writeBwdPartial32's way out: the sums again in float64, from the data. */
function bwdResum32(
  out: usize, count: f64, mean: f64, x: usize, dy: usize, mask: usize, rows: i32, xRow: usize, dyRow: usize, maskRow: usize, len: i32,
): void {
  let t1: f64 = 0;
  let t2: f64 = 0;
  for (let r = 0; r < rows; r++) {
    const px = x + <usize>r * xRow;
    const pg = dy + <usize>r * dyRow;
    const pm = mask + <usize>r * maskRow;
    for (let j = 0; j < len; j++) {
      const o = <usize>j << 2;
      const g = mask != 0 && load<f32>(pm + o) <= 0 ? 0 : <f64>load<f32>(pg + o);
      t1 += g;
      t2 += g * (<f64>load<f32>(px + o) - mean);
    }
  }
  store<f64>(out, count);
  store<f64>(out, t1, 8);
  store<f64>(out, t2, 16);
}
