// Helpers shared by the kernels: lane conversions, partials, the normalization and ReLU forms.

// `floor` is 0 for a fused ReLU and -Infinity otherwise. The pseudo-maximum pmax(y, floor) =
// y < floor ? floor : y keeps NaN (NaN < floor is false) and is one instruction a vector; wasm's
// IEEE max would be a sequence of about seven on x64 (measured: it halved the speed of a
// normalization).

@inline export function promoteLow(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}

@inline export function promoteHigh(v: v128): v128 {
  return f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
}

@inline export function hsum(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

/**
 * Writes a partial (workers/scratch.ts, PARTIAL_BYTES) from shifted sums s1 = Σ(x - shift) and
 * s2 = Σ(x - shift)² of `count` values: (count, mean, m2, lo), with mean + lo = shift + s1 / count
 * exactly (Knuth's TwoSum: lo is what rounding the sum to mean left out). m2 is clamped at 0
 * against rounding; NaN stays NaN. The same operations as the TypeScript kernel's writePartial.
 */
@inline export function writePartial(out: usize, count: f64, shift: f64, s1: f64, s2: f64): void {
  const m2 = s2 - (s1 * s1) / count;
  const rel = s1 / count;
  const mean = shift + rel;
  store<f64>(out, count);
  store<f64>(out, mean, 8);
  store<f64>(out, m2 < 0 ? 0 : m2, 16);
  store<f64>(out, lowPart(shift, rel, mean), 24);
}

/**
 * What rounding a + b to `sum` left out (Knuth's TwoSum: sum + the result is a + b exactly, for
 * finite values that do not overflow): src/merge.ts's lowPart, operation for operation.
 */
@inline export function lowPart(a: f64, b: f64, sum: f64): f64 {
  const t = sum - a;
  return (a - (sum - t)) + (b - t);
}

/**
 * Below this mean square of a block's deviations (2^-120, ~7.5e-37), writePartial32 sums the block
 * again in float64. A float32 square under 2^-126 is subnormal and rounds to a step of 2^-149, so
 * it can be off by up to 2^-150: over n values, at most n * 2^-150, which is 2^-30 of the sum of
 * squares where that sum is at least n * 2^-120 (and far below float32's own 2^-24 rounding).
 */
export const TINY_MEAN_SQUARE: f64 = 7.52316384526264e-37;

/**
 * From this |shift| (2^-50) up, a float32 block whose shifted sums are both zero is constant: any
 * other float32 x lies at least 2^-74 from such a shift K (the spacing of float32 below K), so
 * x - K rounds to at least 2^-74 in magnitude and its square to at least 2^-148, which float32
 * holds (its smallest subnormal is 2^-149); a sum of squares that are all >= 0 and one > 0 is > 0.
 * Under it, deviations of ~2^-75 and less square to zero, and their sums can cancel exactly
 * (writePartial32 reads such a block again).
 */
export const PROVEN_SHIFT: f64 = 8.881784197001252e-16;

/**
 * Whether every value of `rows` runs of `len` float32, `rowStride` bytes apart, from `p`, equals k
 * (as float32 ==: -0 equals 0, NaN equals nothing): writePartial32's check of a block whose sums
 * are both zero about a shift under PROVEN_SHIFT. A vector a step, the lanes' inequalities or-ed
 * over each run, which returns at the end of the first run that holds another value.
 */
export function allEqual32(p: usize, rows: i32, rowStride: usize, len: i32, k: f32): bool {
  const kv = f32x4.splat(k);
  for (let r = 0; r < rows; r++) {
    let q = p + <usize>r * rowStride;
    const end = q + (<usize>len << 2);
    let ne = i32x4.splat(0);
    for (; q + 16 <= end; q += 16) ne = v128.or(ne, f32x4.ne(v128.load(q), kv));
    if (v128.any_true(ne)) return false;
    for (; q < end; q += 4) if (load<f32>(q) != k) return false;
  }
  return true;
}

/**
 * Whether a block's float32 sums s1 and s2 are both zero about a shift under PROVEN_SHIFT: only a
 * read tells whether the block is constant (checkColumns32 and checkPattern32 pick their channels
 * to read by it).
 */
@inline export function unproven32(s1: f64, s2: f64, shift: f64): bool {
  return s2 == 0 && s1 == 0 && abs(shift) < PROVEN_SHIFT;
}

/**
 * Whether any of `rows` runs of `width` float32 (a multiple of 4), `rowStride` bytes apart, from
 * `p`, differs from its shift at k + 4i where the mask at masks + 4i is on (all bits): one pass in
 * address order, the lanes' masked inequalities or-ed into one accumulator. The in-order read of
 * checkColumns32 (rows of channels) and checkPattern32 (periods of positions).
 */
export function maskedDiffer32(p: usize, rows: i32, rowStride: usize, width: usize, k: usize, masks: usize): bool {
  let ne = i32x4.splat(0);
  for (let r = 0; r < rows; r++) {
    const run = p + <usize>r * rowStride;
    for (let i: usize = 0; i < width; i += 4) {
      ne = v128.or(ne, v128.and(f32x4.ne(v128.load(run + (i << 2)), v128.load(k + (i << 2))), v128.load(masks + (i << 2))));
    }
  }
  return v128.any_true(ne);
}

/**
 * Whether a block's float32 sums s1 and s2 are both zero and the block is constant (writePartial32):
 * proven by a shift of at least PROVEN_SHIFT, else checked by a read. A call, not inlined: as a
 * local that writePartial32's callers tested in their loops, the answer looked to
 * workers/wasm/folded.mjs like a flag folded into a kernel's copies (statsNormRows32).
 */
function constantRun32(s1: f64, s2: f64, shift: f64, p: usize, rows: i32, rowStride: usize, len: i32): bool {
  return s2 == 0 && s1 == 0 && (abs(shift) >= PROVEN_SHIFT || allEqual32(p, rows, rowStride, len, <f32>shift));
}

/**
 * writePartial for float32 data, whose shifted values are squared and summed in float32 lanes.
 * Those squares leave float32's normal range at both ends although every value is finite (as
 * PyTorch's float32 CPU kernels' do: their invstd is 0 at a spread of 1e20; bench/torch/
 * extremes.py): they overflow where |x - K| passes
 * ~1.8e19 (or x - K leaves the float32 range), and lose precision under ~1.1e-19, where they are
 * subnormal, or vanish under ~2.6e-23 (4,096 values uniform on ±1.7e-22 got a variance 1e-3 too
 * small; on ±1.7e-24, zero). So sums that came out infinite or NaN, or whose mean square is under
 * TINY_MEAN_SQUARE, are made again in float64 from the data: `rows` runs of `len` float32,
 * `rowStride` bytes apart, from `p`. Data holding NaN or an infinity take this path too, and come
 * out NaN or infinite as they should. Sums that are both zero are a constant run's (every x - K
 * is 0), and are written as they are, where the shift K is at least PROVEN_SHIFT in magnitude,
 * which proves it, or where the block, read again, holds only K (allEqual32); else its
 * deviations all squared to zero (each under ~2^-75) and their lane sums cancelled exactly, and
 * it is summed again in float64 ([K, K + d, K - d] repeated, K = 2^-73, d = 2^-76, had lost
 * 6-100% of its variance before 2026-12-06). That read falls on blocks of zeros and of values all
 * under 2^-50, a ReLU's dead channels, just after the sums' own read of them: a training forward
 * of zeros took 7-35% more time (the fastest of 58 calls against the build before, planes to
 * lanes, two runs; of random data 0.95-1.09x, noise). The kernels whose blocks are strided
 * columns read theirs in one pass before (checkColumns32, checkPattern32), write the constant
 * ones' partials themselves, and hand the others to writePartial32 with NaN sums. The sums of all
 * other data are written as they are too, but for a block whose shift lies far from its mean
 * (farShift), which is summed again in float64 about that mean: the checks cost nothing
 * measurable.
 */
@inline export function writePartial32(
  out: usize, count: f64, shift: f64, s1: f64, s2: f64, p: usize, rows: i32, rowStride: usize, len: i32,
): void {
  if (isFinite(s1) && isFinite(s2) && (s2 >= count * TINY_MEAN_SQUARE || constantRun32(s1, s2, shift, p, rows, rowStride, len))) {
    if (farShift(count, s1, s2)) resum<f32>(out, count, shift + s1 / count, s1, s2, p, rows, rowStride, len, 1, 1);
    else writePartial(out, count, shift, s1, s2);
  } else {
    resum<f32>(out, count, shift, s1, s2, p, rows, rowStride, len, 1, 1);
  }
}

/**
 * writePartial32 of two blocks at once (channels in lanes: their shifts and shifted sums in the
 * two lanes), partials at out0 and out1, where both blocks' sums are ordinary: finite, a mean
 * square not under TINY_MEAN_SQUARE (or both sums 0: its caller, statsColumns32, has read those
 * whose shift is under PROVEN_SHIFT, checkColumns32), the shift not far from the mean (farShift).
 * The same IEEE operations lane by lane as writePartial32's and writePartial's: the same bits.
 * Returns false, writing nothing, where either block is not; writePartial32 then takes each.
 * One block at a time, the divisions bounded the statistics of wide rows, whose blocks are short
 * columns (statsColumns32: 16 values a channel in [16, 262144]).
 */
@inline export function writePartials32x2(out0: usize, out1: usize, count: f64, shift: v128, s1: v128, s2: v128): bool {
  const zero = f64x2.splat(0);
  const n = f64x2.splat(count);
  const sq = f64x2.mul(s1, s1);
  const m2 = f64x2.sub(s2, f64x2.div(sq, n));
  // x - x is 0 exactly for finite x, NaN otherwise.
  const finite = v128.and(f64x2.eq(f64x2.sub(s1, s1), zero), f64x2.eq(f64x2.sub(s2, s2), zero));
  const notTiny = v128.or(f64x2.ge(s2, f64x2.splat(count * TINY_MEAN_SQUARE)), v128.and(f64x2.eq(s2, zero), f64x2.eq(s1, zero)));
  // farShift: s1 * s1 > min(FAR2, count * 0.5) * count * m2.
  const far = f64x2.gt(sq, f64x2.mul(f64x2.splat(min(FAR2, count * 0.5) * count), m2));
  if (!i64x2.all_true(v128.andnot(v128.and(finite, notTiny), far))) return false;
  const rel = f64x2.div(s1, n);
  const mean = f64x2.add(shift, rel);
  // m2 < 0 ? 0 : m2.
  const m2c = f64x2.pmax(m2, zero);
  const t = f64x2.sub(mean, shift);
  const lo = f64x2.add(f64x2.sub(shift, f64x2.sub(mean, t)), f64x2.sub(rel, t));
  store<f64>(out0, count);
  store<f64>(out0, f64x2.extract_lane(mean, 0), 8);
  store<f64>(out0, f64x2.extract_lane(m2c, 0), 16);
  store<f64>(out0, f64x2.extract_lane(lo, 0), 24);
  store<f64>(out1, count);
  store<f64>(out1, f64x2.extract_lane(mean, 1), 8);
  store<f64>(out1, f64x2.extract_lane(m2c, 1), 16);
  store<f64>(out1, f64x2.extract_lane(lo, 1), 24);
  return true;
}

/**
 * Whether the shift K (a block's first value) lies more than FAR standard deviations from the
 * block's mean, (s1 / count)² > FAR² · m2 / count: then m2 = s2 - s1²/count cancels all but
 * 1/(1 + (distance/σ)²) of s2, and the deviations x - K are as large as that distance, so the
 * float32 lanes' rounding of them and of their squares shows in m2 and in the mean. An outlier of
 * 1e7 first among values in [0, 1) put the float32 variance 1e-5 to 1.3e-3 relative off, and the
 * float64 sums' 5e-14 to 1.5e-10 (`node bench/outliers.mjs`, bench/DESIGN.md "Kernels"). Such a block is
 * summed again in float64 about the mean the first sums gave (resum), where its deviations are
 * of the order of its spread. Data whose first value is an ordinary draw seldom take that path,
 * a ReLU's output only where its first value is nonzero and fewer than ~1 in 65 of its values
 * are. m2 <= 0 (all of s2 cancelled) counts as far.
 */
@inline export function farShift(count: f64, s1: f64, s2: f64): bool {
  return s1 * s1 > min(FAR2, count * 0.5) * count * (s2 - (s1 * s1) / count);
}

/**
 * FAR² for farShift: 8 standard deviations; in blocks of fewer than 128 values, √(count / 2) of
 * them. An outlier first among values close together lies √(count - 1) standard deviations from
 * their mean, and the lanes' roundings of its nearly equal deviations from the others add up
 * rather than cancel: a channel of 64 values with 1e7 first among values in [0, 1) (7.9 out) got
 * its float32 variance 4.3e-6 off under a bound of 8. Until 2026-12-03 the small blocks' bound was
 * at least √8, which a block of 9 values or fewer can never pass: a channel of 8 values led by
 * one 2.65 standard deviations out (its most) got its variance ~2.6e-6 off (random-cases, seed
 * 1214, case 772). An ordinary first value passes √(count / 2) standard deviations in 3% of
 * blocks of 8 values (18% of 4, 0.6% of 12, 0.13% of 16; normal data, a simulation of 200,000
 * blocks each), fewer of larger blocks: small blocks, whose second read is short.
 */
const FAR2: f64 = 64;

/**
 * 2^-584 and 2^584: writePartial64's way out (resum) scales float64 data by the first, so that
 * any finite value's deviations, their sum and their squares' sum stay finite (|x| <= 2^440 after
 * it: a block of up to 2^31 values sums its squares to under 2^913), and its results back by the
 * second. Powers of two: exact, but for values under 2^-438, which go subnormal (or, under
 * 2^-490, to 0) and lose bits that could not have counted beside the values that take this path:
 * some |x| of ~2^480 at least, for s1 * s1 to pass float64's range.
 */
const DOWN: f64 = 1.5793650827938261e-176;
const UP: f64 = 6.331658277711476e+175;

/**
 * writePartial for float64 data, whose shifted sums overflow where the data come near float64's
 * range although every value is finite: x - K where x and K are large and of opposite signs, the
 * sum of such deviations, or their squares (a spread past ~1e154). Then the mean came out infinite
 * (of either sign) or NaN and m2 NaN, or m2 clamped to 0 from an infinite s1 * s1. So sums whose s2
 * or s1 * s1 is not finite are made again from the data scaled by a power of two (resum):
 * the mean comes out as finite as the data's, and m2 as what it is or +Infinity where it passes
 * float64's range. Data holding NaN or an infinity take that path too and keep the sums they had.
 * A block whose shift lies far from its mean (farShift) is summed again about that mean. `rows`
 * runs of `len` float64, `rowStride` bytes apart, from `p`. The TypeScript kernel's writeChecked
 * does the same.
 */
@inline export function writePartial64(
  out: usize, count: f64, shift: f64, s1: f64, s2: f64, p: usize, rows: i32, rowStride: usize, len: i32,
): void {
  if (!isFinite(s2) || !isFinite(s1 * s1)) resum<f64>(out, count, shift, s1, s2, p, rows, rowStride, len, DOWN, UP);
  else if (farShift(count, s1, s2)) resum<f64>(out, count, shift + s1 / count, s1, s2, p, rows, rowStride, len, 1, 1);
  else writePartial(out, count, shift, s1, s2);
}

/**
 * The way out of writePartial32 (T f32) and writePartial64 (T f64): the sums of the data (`rows`
 * runs of `len` T, `rowStride` bytes apart, from `p`) again in float64, times `down` about `shift`
 * times `down`, and once more about their mean where that lies far from it (farShift); then the
 * partial times `up`. DOWN and UP where float64 sums overflowed; 1 and 1 otherwise. Data holding
 * NaN or an infinity (sums that come out non-finite even so) keep the sums s1 and s2 they had.
 */
function resum<T>(
  out: usize, count: f64, shift: f64, s1: f64, s2: f64, p: usize, rows: i32, rowStride: usize, len: i32, down: f64, up: f64,
): void {
  let k = shift * down;
  let t1: f64 = 0;
  let t2: f64 = 0;
  for (let pass = 0; pass < 2; pass++) {
    t1 = 0;
    t2 = 0;
    for (let r = 0; r < rows; r++) {
      const run = p + <usize>r * rowStride;
      for (let j = 0; j < len; j++) {
        const d = <f64>load<T>(run + <usize>j * sizeof<T>()) * down - k;
        t1 += d;
        t2 += d * d;
      }
    }
    if (!isFinite(t1) || !isFinite(t2)) {
      writePartial(out, count, shift, s1, s2); // NaN or an infinity in the data
      return;
    }
    if (!farShift(count, t1, t2)) break;
    k += t1 / count;
  }
  writePartial(out, count, k, t1, t2);
  store<f64>(out, load<f64>(out, 8) * up, 8);
  store<f64>(out, load<f64>(out, 16) * up * up, 16);
  store<f64>(out, load<f64>(out, 24) * up, 24);
}

/** Adds the 4 f32 lanes of v to the 4 f64 at p. */
@inline export function fold4(p: usize, v: v128): void {
  v128.store(p, f64x2.add(v128.load(p), promoteLow(v)));
  v128.store(p, f64x2.add(v128.load(p, 16), promoteHigh(v)), 16);
}

@inline export function relu32(v: f32, floor: f32): f32 {
  return v < floor ? floor : v;
}

@inline export function relu64(v: f64, floor: f64): f64 {
  return v < floor ? floor : v;
}

/**
 * Compile-time flags of kernels made in copies: a function generic in a flag F tests isOn<F>(),
 * which the compiler resolves as it makes each copy (F is On or Off), so that no loop tests it.
 * Kernels took a `bool` before, called as `if (flag) f(..., true) else f(..., false)` to get two
 * copies; but once inlined, the two arms differed only in that constant, and Binaryen's code
 * folding merged them back into one, which tested the flag inside its loops: normalizeRows32's
 * channels-in-lanes walks and statsNormRows32's short runs (the fused ReLU), and the fused
 * backward kernels' copies for k = 0, seen in the built module's text (workers/wasm/folded.mjs
 * finds such a test; test/wasm-module.test.ts runs it on every build).
 */
export type On = i32;
export type Off = f32;

@inline export function isOn<F>(): bool {
  return isInteger<F>();
}

/** The normalization walks' flag: a copy with the fused ReLU (`Relu`) or without (`Plain`). */
export type Relu = On;
export type Plain = Off;

@inline export function norm32(v: v128, hi: v128, sc: v128, b: v128, fl: v128): v128 {
  return f32x4.pmax(f32x4.add(f32x4.mul(f32x4.sub(v, hi), sc), b), fl);
}

/** Without ReLU the pmax is left out altogether: callers branch once, outside their loops. */
@inline export function norm32Plain(v: v128, hi: v128, sc: v128, b: v128): v128 {
  return f32x4.add(f32x4.mul(f32x4.sub(v, hi), sc), b);
}

@inline export function floorOf(relu: i32): f64 {
  return relu ? 0 : -Infinity;
}

/** The float32 form of (mean, scale, bias): hi, scale, and bias - lo * scale. */
@inline export function hiOf(mean: f64): f32 {
  return <f32>mean;
}

@inline export function shiftOf(mean: f64, scale: f64, bias: f64): f32 {
  return <f32>(bias - (mean - <f64><f32>mean) * scale);
}

/**
 * dy masked by the fused ReLU's output y at pm + at: zero where y <= 0, as PyTorch's ReLU backward
 * (threshold_backward) does, so a NaN output passes its gradient on.
 */
@inline export function masked32(g: v128, pm: usize, at: usize): v128 {
  return v128.andnot(g, f32x4.le(v128.load(pm + at), f32x4.splat(0)));
}

/** masked32 for float64: zero where the output at pm is <= 0. */
@inline export function masked64(g: v128, pm: usize): v128 {
  return v128.andnot(g, f64x2.le(v128.load(pm), f64x2.splat(0)));
}

@inline export function patternLength(C: i32): i32 {
  return (C & 1) != 0 ? 4 * C : (C & 2) != 0 ? 2 * C : C;
}
