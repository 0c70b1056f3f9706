// Merging partials into per-channel statistics and coefficients, in block order.
import { hiOf, lowPart, shiftOf } from './common';
import { rowsReadParams } from './normalize';

/** Bytes of a partial (workers/scratch.ts, PARTIAL_BYTES): (count, mean, m2, lo) as f64. */
const PARTIAL: usize = 32;

/**
 * For channels [c0, c1): merges the channel's `blocks` partials (count, mean, m2, lo), contiguous
 * at partials + 32 * blocks * c, in block order with Chan et al.'s pairwise formula, the means
 * relative to the first block's (src/merge.ts has why and how); writes the mean, the biased
 * variance and what rounding the mean left out to the per-channel arrays of C channels at
 * `channels` (MEAN, VAR, MEAN_LO: workers/scratch.ts); and writes (mean, weight / sqrt(var + eps), bias) at params + 32 * c, with
 * weight and bias from the arrays' WEIGHT and BIAS. The same operations, in the same order, as
 * src/merge.ts, so the two give the same bits. With `rowParams` (0: none), also channel c's
 * float32 (hi, scale, shift) at rowParams + 4 * (k * rowStride + c), k = 0, 1, 2, as the row
 * kernels would convert them (normParams32).
 *
 * Each merge step waits on the one before (two divisions on the way): ~25 cycles, so a
 * [4096, 1024] input's 16 Ki partials took ~120 µs one channel at a time. Channels are
 * independent, so four are merged at once, in the lanes of two f64x2 chains (lane operations are
 * the same IEEE operations as the scalar ones: the same bits). A block's count is the same for
 * every channel, so the first-block case is taken by all lanes together.
 *
 * A channel whose merge ends in a non-finite mean is merged again from the blocks' rounded means,
 * with the weighted mean at a step where a mean is infinite or NaN, as in src/merge.ts: lanes
 * that end so go one channel at a time through mergeOne, which does the same.
 */
export function mergeChannels(
  partials: usize, blocks: i32, c0: i32, c1: i32, channels: usize, C: i32, params: usize, eps: f64,
  rowParams: usize, rowStride: i32,
): void {
  const stride = <usize>blocks * PARTIAL;
  // The float64 parameters, where the row kernels read them (0: not written).
  if (!rowsReadParams(C, rowParams)) params = 0;
  const e = f64x2.splat(eps);
  let c = c0;
  for (; c + 4 <= c1; c += 4) {
    const p = partials + <usize>c * stride;
    let n = f64x2.splat(load<f64>(p));
    const kA = pair(p, stride, 8);
    const kB = pair(p + 2 * stride, stride, 8);
    let rA = relative(p, stride, kA);
    let m2A = pair(p, stride, 16);
    let rB = relative(p + 2 * stride, stride, kB);
    let m2B = pair(p + 2 * stride, stride, 16);
    for (let o: usize = PARTIAL; o < stride; o += PARTIAL) {
      const nb = f64x2.splat(load<f64>(p + o));
      const total = f64x2.add(n, nb);
      const dA = f64x2.sub(relative(p + o, stride, kA), rA);
      const dB = f64x2.sub(relative(p + o + 2 * stride, stride, kB), rB);
      m2A = f64x2.add(m2A, f64x2.add(pair(p + o, stride, 16), f64x2.div(f64x2.mul(f64x2.mul(f64x2.mul(dA, dA), n), nb), total)));
      m2B = f64x2.add(m2B, f64x2.add(pair(p + o + 2 * stride, stride, 16), f64x2.div(f64x2.mul(f64x2.mul(f64x2.mul(dB, dB), n), nb), total)));
      rA = f64x2.add(rA, f64x2.div(f64x2.mul(dA, nb), total));
      rB = f64x2.add(rB, f64x2.div(f64x2.mul(dB, nb), total));
      n = total;
    }
    const meanA = f64x2.add(kA, rA);
    const meanB = f64x2.add(kB, rB);
    const zero = f64x2.splat(0);
    // x - x is 0 exactly for finite x, NaN otherwise.
    const finite = v128.and(f64x2.eq(f64x2.sub(meanA, meanA), zero), f64x2.eq(f64x2.sub(meanB, meanB), zero));
    if (!i64x2.all_true(finite)) {
      for (let j = 0; j < 4; j++) mergeOne(partials, stride, c + j, channels, C, params, eps, rowParams, rowStride, true);
      continue;
    }
    const loA = lowPart2(kA, rA, meanA);
    const loB = lowPart2(kB, rB, meanB);
    finish2(c, meanA, loA, f64x2.div(m2A, n), channels, C, params, e, rowParams, rowStride);
    finish2(c + 2, meanB, loB, f64x2.div(m2B, n), channels, C, params, e, rowParams, rowStride);
  }
  for (; c < c1; c++) mergeOne(partials, stride, c, channels, C, params, eps, rowParams, rowStride, true);
}

/**
 * Channel c alone: src/merge.ts's mergeChannel, operation for operation. Its means relative to
 * the first block's, or (`relative` false: the way out for a channel whose relative merge ended
 * non-finite) its rounded means as they are.
 */
function mergeOne(
  partials: usize, stride: usize, c: i32, channels: usize, C: i32, params: usize, eps: f64, rowParams: usize, rowStride: i32,
  relative: bool,
): void {
  const first = partials + <usize>c * stride;
  const end = first + stride;
  const K = load<f64>(first, 8);
  let n: f64 = 0;
  let mean: f64 = 0;
  let m2: f64 = 0;
  for (let p = first; p < end; p += PARTIAL) {
    const nb = load<f64>(p);
    const meanB = relative ? (load<f64>(p, 8) - K) + load<f64>(p, 24) : load<f64>(p, 8);
    const m2B = load<f64>(p, 16);
    if (n == 0) {
      n = nb;
      mean = meanB;
      m2 = m2B;
      continue;
    }
    const total = n + nb;
    const delta = meanB - mean;
    m2 += m2B + (delta * delta * n * nb) / total;
    mean = mergedMean(mean, n, meanB, nb, total, delta);
    n = total;
  }
  let lo: f64 = 0;
  if (relative) {
    const r = mean;
    mean = K + r;
    if (!isFinite(mean)) {
      mergeOne(partials, stride, c, channels, C, params, eps, rowParams, rowStride, false);
      return;
    }
    lo = lowPart(K, r, mean);
    if (!isFinite(lo)) lo = 0;
  }
  finish(c, mean, lo, m2 / n, channels, C, params, eps, rowParams, rowStride);
}

/** src/merge.ts's mergedMean, operation for operation (`delta`: meanB - meanA). */
@inline function mergedMean(meanA: f64, na: f64, meanB: f64, nb: f64, n: f64, delta: f64): f64 {
  if (!isFinite(meanA) || !isFinite(meanB)) return (meanA * na + meanB * nb) / n;
  const step = delta * nb;
  return isFinite(step) ? meanA + step / n : meanA * (na / n) + meanB * (nb / n);
}

/** The f64 at `at` bytes into a partial of channel c (at p) and of channel c + 1 (at p + stride). */
@inline function pair(p: usize, stride: usize, at: usize): v128 {
  return f64x2.replace_lane(f64x2.splat(load<f64>(p + at)), 1, load<f64>(p + stride + at));
}

/**
 * src/merge.ts's lowPart in two lanes, what rounding k + r to mean left out (0 in a lane where that
 * is not finite).
 */
@inline function lowPart2(k: v128, r: v128, mean: v128): v128 {
  const t = f64x2.sub(mean, k);
  const lo = f64x2.add(f64x2.sub(k, f64x2.sub(mean, t)), f64x2.sub(r, t));
  // x - x is 0 exactly for finite x, NaN otherwise.
  return v128.and(lo, f64x2.eq(f64x2.sub(lo, lo), f64x2.splat(0)));
}

/** The means of the partials at p and p + stride relative to k (two channels'): (mean - k) + lo. */
@inline function relative(p: usize, stride: usize, k: v128): v128 {
  return f64x2.add(f64x2.sub(pair(p, stride, 8), k), pair(p, stride, 24));
}

// The per-channel arrays (workers/scratch.ts): MEAN, VAR, INVSTD, WEIGHT, BIAS, MEAN_LO, C float64 each,
// one after another at `channels`.
const MEAN = 0;
const VAR = 1;
const INVSTD = 2;
const WEIGHT = 3;
const BIAS = 4;
const MEAN_LO = 5;

/** Byte address of array k's value for channel c, of the arrays of C channels at `channels`. */
@inline function arrayAt(channels: usize, C: i32, k: i32, c: i32): usize {
  return channels + ((<usize>k * <usize>C + <usize>c) << 3);
}

@inline function finish(
  c: i32, mean: f64, lo: f64, variance: f64, channels: usize, C: i32, params: usize, eps: f64, rowParams: usize, rowStride: i32,
): void {
  store<f64>(arrayAt(channels, C, MEAN, c), mean);
  store<f64>(arrayAt(channels, C, VAR, c), variance);
  store<f64>(arrayAt(channels, C, MEAN_LO, c), lo);
  const scale = load<f64>(arrayAt(channels, C, WEIGHT, c)) / Math.sqrt(variance + eps);
  params1(c, mean, scale, load<f64>(arrayAt(channels, C, BIAS, c)), params, rowParams, rowStride);
}

/**
 * finish for channels c and c + 1, their values in the two lanes: the same IEEE operations lane by
 * lane (the same bits), with the division and the square root two channels an instruction. One
 * at a time they bounded the merge of wide rows, whose channels have one partial each: a division
 * for the variance, a square root and a division for the scale, ~18 cycles a channel here (a
 * [16, 262144] training forward's merge took 1.3-1.4 ms a task, `KERNELS=1 node
 * bench/timeline.mjs 16,262144 train`).
 */
@inline function finish2(
  c: i32, mean: v128, lo: v128, variance: v128, channels: usize, C: i32, params: usize, eps: v128, rowParams: usize, rowStride: i32,
): void {
  v128.store(arrayAt(channels, C, MEAN, c), mean);
  v128.store(arrayAt(channels, C, VAR, c), variance);
  v128.store(arrayAt(channels, C, MEAN_LO, c), lo);
  const scale = f64x2.div(v128.load(arrayAt(channels, C, WEIGHT, c)), f64x2.sqrt(f64x2.add(variance, eps)));
  const bias = v128.load(arrayAt(channels, C, BIAS, c));
  params2(c, mean, scale, bias, params, rowParams, rowStride);
}

/**
 * Channel c's (mean, scale, bias) as its float64 record at params (0: none) and its float32 row
 * parameters at rowParams (0: none).
 */
@inline function params1(c: i32, mean: f64, scale: f64, bias: f64, params: usize, rowParams: usize, rowStride: i32): void {
  if (params != 0) {
    const q = params + (<usize>c << 5);
    store<f64>(q, mean);
    store<f64>(q, scale, 8);
    store<f64>(q, bias, 16);
  }
  if (rowParams != 0) rowParamsOf(rowParams, rowStride, c, mean, scale, bias);
}

/**
 * params1 of channels c and c + 1, their values in the two lanes: both records, then both row
 * parameters (as two params1 calls, the wide rows' merge took 0.76-1.17 ms a task against
 * 0.66-0.84, `KERNELS=1 node bench/timeline.mjs 16,262144 train`, five runs of each build in turn).
 */
@inline function params2(c: i32, mean: v128, scale: v128, bias: v128, params: usize, rowParams: usize, rowStride: i32): void {
  if (params != 0) {
    const q = params + (<usize>c << 5);
    store<f64>(q, f64x2.extract_lane(mean, 0));
    store<f64>(q, f64x2.extract_lane(scale, 0), 8);
    store<f64>(q, f64x2.extract_lane(bias, 0), 16);
    store<f64>(q, f64x2.extract_lane(mean, 1), 32);
    store<f64>(q, f64x2.extract_lane(scale, 1), 40);
    store<f64>(q, f64x2.extract_lane(bias, 1), 48);
  }
  if (rowParams != 0) {
    rowParamsOf(rowParams, rowStride, c, f64x2.extract_lane(mean, 0), f64x2.extract_lane(scale, 0), f64x2.extract_lane(bias, 0));
    rowParamsOf(rowParams, rowStride, c + 1, f64x2.extract_lane(mean, 1), f64x2.extract_lane(scale, 1), f64x2.extract_lane(bias, 1));
  }
}

/** Channel c's float32 row parameters (hi, scale, shift) from its (mean, scale, bias), as normParams32. */
@inline function rowParamsOf(rowParams: usize, rowStride: i32, c: i32, mean: f64, scale: f64, bias: f64): void {
  const at = rowParams + (<usize>c << 2);
  const stride = <usize>rowStride << 2;
  store<f32>(at, hiOf(mean));
  store<f32>(at + stride, <f32>scale);
  store<f32>(at + 2 * stride, shiftOf(mean, scale, bias));
}

/**
 * For channels [c0, c1): sums the channel's `blocks` backward partials (count, Σdy,
 * Σdy·(x - mean)) in block order; writes dWeight = invstd·Σdy·(x - mean) over WEIGHT and
 * dBias = Σdy over BIAS of the per-channel arrays of C channels at `channels`; and turns
 * params + 32 * c from (mean, invstd, weight, ·) into (a, k, mean, e) for
 * dx = a·(dy + k·(x - mean) + e), with m values per channel:
 * a = weight·invstd, k = -invstd²·Σdy(x - mean)/m, e = -Σdy/m (training). With `applied` (the
 * 'apply' prep wrote the eval coefficients, k = e = 0, already: every eval-mode backward), only
 * dWeight and dBias, invstd read from INVSTD. The same operations, in the same order, as
 * src/merge.ts.
 */
export function mergeBackward(
  partials: usize, blocks: i32, c0: i32, c1: i32, channels: usize, C: i32, params: usize, count: f64, applied: i32,
): void {
  for (let c = c0; c < c1; c++) {
    let sdy: f64 = 0;
    let sdx: f64 = 0;
    let p = partials + <usize>c * <usize>blocks * PARTIAL;
    const end = p + <usize>blocks * PARTIAL;
    for (; p < end; p += PARTIAL) {
      sdy += load<f64>(p, 8);
      sdx += load<f64>(p, 16);
    }
    const q = params + (<usize>c << 5);
    // Applied parameters hold the eval-mode dx coefficients already, and invstd stays in INVSTD.
    const invstd = applied ? load<f64>(arrayAt(channels, C, INVSTD, c)) : load<f64>(q, 8);
    // src/merge.ts's effectiveSdx: 0 where invstd is 0 (a variance of +Infinity) and sdy finite.
    if (invstd == 0 && isFinite(sdy)) sdx = 0;
    store<f64>(arrayAt(channels, C, WEIGHT, c), invstd * sdx);
    store<f64>(arrayAt(channels, C, BIAS, c), sdy);
    if (applied) continue;
    const mean = load<f64>(q);
    const weight = load<f64>(q, 16);
    const a = weight * invstd;
    store<f64>(q, a);
    store<f64>(q, -invstd * invstd * sdx / count, 8);
    store<f64>(q, mean, 16);
    store<f64>(q, -sdy / count, 24);
  }
}

// The prep (workers/prep.ts): the parameters of eval and backward calls from given statistics.

/**
 * Eval: (mean, weight / sqrt(var + eps), bias) at params + 32 * c for channels [c0, c1), from
 * MEAN, VAR, WEIGHT and BIAS of the per-channel arrays of C channels at `channels`. Two channels a
 * step in f64x2 lanes (the lane operations are the scalar IEEE ones: the same bits as
 * src/merge.ts's prepareEvalChannels), twice the JavaScript loop's speed here. With `rowParams`
 * (0: none), also the float32 row parameters, as mergeChannels.
 */
export function prepEval(
  channels: usize, C: i32, c0: i32, c1: i32, params: usize, eps: f64, rowParams: usize, rowStride: i32,
): void {
  const e = f64x2.splat(eps);
  // The float64 parameters, where the row kernels read them (0: not written).
  if (!rowsReadParams(C, rowParams)) params = 0;
  let c = c0;
  for (; c + 2 <= c1; c += 2) {
    const mean = v128.load(arrayAt(channels, C, MEAN, c));
    const scale = f64x2.div(
      v128.load(arrayAt(channels, C, WEIGHT, c)), f64x2.sqrt(f64x2.add(v128.load(arrayAt(channels, C, VAR, c)), e)),
    );
    params2(c, mean, scale, v128.load(arrayAt(channels, C, BIAS, c)), params, rowParams, rowStride);
  }
  for (; c < c1; c++) {
    const mean = load<f64>(arrayAt(channels, C, MEAN, c));
    const scale = load<f64>(arrayAt(channels, C, WEIGHT, c)) / Math.sqrt(load<f64>(arrayAt(channels, C, VAR, c)) + eps);
    params1(c, mean, scale, load<f64>(arrayAt(channels, C, BIAS, c)), params, rowParams, rowStride);
  }
}

/**
 * Backward: with `fromVar`, first INVSTD = 1 / sqrt(var + eps) from VAR (two channels a step in
 * f64x2 lanes); then (mean, invstd, weight, 0) at params + 32 * c for channels [c0, c1), or with
 * `apply` the eval-mode dx coefficients (weight·invstd, 0, mean, 0) that mergeBackward would make,
 * as src/merge.ts's prepareBackwardChannels.
 */
export function prepBackward(channels: usize, C: i32, c0: i32, c1: i32, params: usize, eps: f64, fromVar: i32, apply: i32): void {
  if (fromVar) {
    const e = f64x2.splat(eps);
    const one = f64x2.splat(1);
    let c = c0;
    for (; c + 2 <= c1; c += 2) {
      const v = v128.load(arrayAt(channels, C, VAR, c));
      v128.store(arrayAt(channels, C, INVSTD, c), f64x2.div(one, f64x2.sqrt(f64x2.add(v, e))));
    }
    for (; c < c1; c++) {
      store<f64>(arrayAt(channels, C, INVSTD, c), 1.0 / Math.sqrt(load<f64>(arrayAt(channels, C, VAR, c)) + eps));
    }
  }
  for (let c = c0; c < c1; c++) {
    const q = params + (<usize>c << 5);
    if (apply) {
      const mean = load<f64>(arrayAt(channels, C, MEAN, c));
      store<f64>(q, load<f64>(arrayAt(channels, C, WEIGHT, c)) * load<f64>(arrayAt(channels, C, INVSTD, c)));
      store<f64>(q, 0, 8);
      store<f64>(q, mean, 16);
      store<f64>(q, 0, 24);
      continue;
    }
    store<f64>(q, load<f64>(arrayAt(channels, C, MEAN, c)));
    store<f64>(q, load<f64>(arrayAt(channels, C, INVSTD, c)), 8);
    store<f64>(q, load<f64>(arrayAt(channels, C, WEIGHT, c)), 16);
    store<f64>(q, 0, 24);
  }
}
