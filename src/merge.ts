import {
  CHANNEL_BIAS, CHANNEL_INVSTD, CHANNEL_MEAN, CHANNEL_MEAN_LO, CHANNEL_VAR, CHANNEL_WEIGHT, channelArrayByte, PARAM_BYTES, PARTIAL_BYTES,
} from '../workers/scratch.js';

/** Index in a float64 view of the first value of per-channel array k (CHANNEL_MEAN ...). */
function arrayIndex(channelsByte: number, C: number, k: number): number {
  return channelArrayByte(channelsByte, C, k) / 8;
}

/**
 * Merges the partials of channel `c` in block order with the pairwise formula of Chan, Golub &
 * LeVeque (1979, "Updating formulae and a pairwise algorithm for computing sample variances"), as
 * in PyTorch's `WelfordOps::combine`:
 *
 *     delta = mean_b - mean_a,  n = n_a + n_b
 *     mean  = mean_a + delta * n_b / n
 *     m2    = m2_a + m2_b + delta^2 * n_a * n_b / n
 *
 * The means go in relative to the first block's, K: a block's is (mean - K) + lo, from its partial
 * (count, mean, m2, lo), whose mean + lo is the block's exact shifted mean (workers/scratch.ts, PARTIAL_BYTES). So the
 * deltas keep every digit of the data's spread, however large the common offset: mean - K is
 * exact between means within a factor of two of each other, and the offset's rounding, half an
 * ulp of |mean| a block, never enters them. The channel's mean is K plus the merged relative
 * mean, rounded once, and what that rounding left out goes to MEAN_LO (TwoSum), for `ChannelStats`
 * to merge on with. (Merging the rounded means themselves, float64 data of mean 3000 and
 * standard deviation 1e-3 got their variance 1.3e-12 to 1.3e-11 relative off and their mean up to
 * 0.97 ulp; this, 8.5e-15 and half an ulp at most: bench/offset-stats.ts.)
 *
 * Where that merge does not end in a finite mean (a partial holds NaN or an infinity, or the
 * relative means overflow), the channel is merged again from the blocks' rounded means, where an
 * infinite (or NaN) mean on either side takes the weighted mean (n_a·mean_a + n_b·mean_b) / n
 * instead of Chan's, as a sum-based mean would: a channel holding +Inf has mean +Inf, as in
 * PyTorch, where Chan's update would make it Inf - Inf = NaN. Finite means stay finite
 * there however near float64's range (mergedMean).
 *
 * then folds the statistics into the parameters the normalize kernels use:
 * y = (x - mean) * scale + bias with scale = weight / sqrt(var + eps). Subtracting the mean first
 * (unlike PyTorch's folded x * alpha + beta) keeps a constant channel at exactly `bias`.
 *
 * The order is fixed by the grid, never by which thread produced a partial, so the result has the
 * same bits at any thread count. This is the TypeScript kernel's merge; the WebAssembly kernel's
 * `mergeChannels` performs the same operations in the same order.
 *
 * @param mem - float64 view of the pool's memory
 * @param partialsByte - channel c's partials are the `blocks` (count, mean, m2, lo) at
 *   partialsByte + PARTIAL_BYTES * blocks * c
 * @param channelsByte - the per-channel arrays of C channels (workers/scratch.ts, CHANNEL_MEAN ...):
 *   reads WEIGHT[c] and BIAS[c], writes MEAN[c], VAR[c] (biased) and MEAN_LO[c]
 * @param paramsByte - receives (mean, scale, bias) at paramsByte + 32 * c
 */
export function mergeChannel(
  mem: Float64Array, partialsByte: number, blocks: number, c: number, channelsByte: number, C: number, paramsByte: number,
  eps: number,
): void {
  const first = (partialsByte + c * blocks * PARTIAL_BYTES) / 8;
  const last = first + PARTIAL_FLOATS * blocks;
  const K = mem[first + 1];
  let [r, m2, n] = chanMerge(mem, first, last, K);
  let mean = K + r;
  let lo = lowPart(K, r, mean);
  if (!Number.isFinite(mean)) {
    [mean, m2, n] = chanMerge(mem, first, last, null);
    lo = 0;
  } else if (!Number.isFinite(lo)) {
    lo = 0; // a + b near float64's largest: TwoSum's own steps overflowed
  }
  const variance = m2 / n;
  const at = (k: number): number => arrayIndex(channelsByte, C, k) + c;
  mem[at(CHANNEL_MEAN)] = mean;
  mem[at(CHANNEL_VAR)] = variance;
  mem[at(CHANNEL_MEAN_LO)] = lo;
  writeChannelParams(mem, paramsByte, c, mean, variance, eps, mem[at(CHANNEL_WEIGHT)], mem[at(CHANNEL_BIAS)]);
}

/**
 * What rounding a + b to sum left out (Knuth's TwoSum: sum + the result is a + b exactly, for
 * finite values that do not overflow): the error term of the partials (writePartial) and of the
 * merged means here and in `ChannelStats`.
 */
export function lowPart(a: number, b: number, sum: number): number {
  const t = sum - a;
  return (a - (sum - t)) + (b - t);
}

/** Float64 values a partial: PARTIAL_BYTES / 8. */
const PARTIAL_FLOATS = PARTIAL_BYTES / 8;

/**
 * Chan's merge, in order, of the partials [first, last) of a float64 view: of their means
 * relative to K, (mean - K) + lo, or (K null: mergeChannel's way out) of their rounded means as
 * they are. Returns [the merged mean (relative to K), m2, count].
 */
function chanMerge(mem: Float64Array, first: number, last: number, K: number | null): [number, number, number] {
  let n = 0;
  let mean = 0;
  let m2 = 0;
  for (let at = first; at < last; at += PARTIAL_FLOATS) {
    const nb = mem[at];
    const meanB = K === null ? mem[at + 1] : (mem[at + 1] - K) + mem[at + 3];
    const m2B = mem[at + 2];
    if (n === 0) {
      n = nb;
      mean = meanB;
      m2 = m2B;
      continue;
    }
    const total = n + nb;
    const delta = meanB - mean;
    m2 += m2B + (delta * delta * n * nb) / total;
    mean = mergedMean(mean, n, meanB, nb, total);
    n = total;
  }
  return [mean, m2, n];
}

/**
 * The mean of two merged parts of n_a and n_b values (n = n_a + n_b): Chan's
 * mean_a + (mean_b - mean_a) * n_b / n, or the weighted (mean_a * n_a + mean_b * n_b) / n where
 * either mean is infinite or NaN (see mergeChannel). Where both are finite but
 * (mean_b - mean_a) * n_b overflows (means near float64's range, of opposite signs), the convex
 * mean_a * (n_a / n) + mean_b * (n_b / n), which cannot: the mean stays finite, and the m2 of
 * such parts is +Infinity (its delta² term), as it is past float64's range.
 */
export function mergedMean(meanA: number, na: number, meanB: number, nb: number, n: number): number {
  if (!Number.isFinite(meanA) || !Number.isFinite(meanB)) return (meanA * na + meanB * nb) / n;
  const step = (meanB - meanA) * nb;
  return Number.isFinite(step) ? meanA + step / n : meanA * (na / n) + meanB * (nb / n);
}

/** Writes channel c's (mean, weight / sqrt(var + eps), bias) at paramsByte + 32 * c. */
export function writeChannelParams(
  mem: Float64Array, paramsByte: number, c: number,
  mean: number, variance: number, eps: number, weight: number, bias: number,
): void {
  const at = (paramsByte + c * PARAM_BYTES) / 8;
  mem[at] = mean;
  mem[at + 1] = weight / Math.sqrt(variance + eps);
  mem[at + 2] = bias;
}

/**
 * Backward: sums channel c's partials (count, Σdy, Σdy·(x - mean)) in block order, writes
 * dWeight = invstd·Σdy·(x - mean) to WEIGHT[c] and dBias = Σdy to BIAS[c] of the per-channel
 * arrays at channelsByte (C channels), and turns the parameters at paramsByte + 32 * c from
 * (mean, invstd, weight, ·) into (a, k, mean, e), so that dx = a·(dy + k·(x - mean) + e). With
 * x̂ = (x - mean)·invstd and m values per channel, PyTorch's training-mode gradient
 * dx = weight·invstd·(dy - mean(dy) - x̂·mean(dy·x̂)) gives
 * a = weight·invstd, k = -invstd²·Σdy(x - mean)/m, e = -Σdy/m. An eval-mode backward (k = e = 0)
 * gets its coefficients from the 'apply' prep, always (prepareBackwardChannels): with `applied`,
 * the parameters are left as they are and invstd is read from INVSTD: the same dWeight and dBias.
 * (Its factors, not dx = a·dy + b·(x - mean) + d with b = a·k and d = a·e, whose b float32 could
 * not hold where x's spread is large: workers/wasm/assembly/backward-apply.ts.)
 * The WebAssembly kernel's `mergeBackward` performs the same operations in the same order.
 */
export function mergeBackwardChannel(
  mem: Float64Array, partialsByte: number, blocks: number, c: number, channelsByte: number, C: number, paramsByte: number,
  count: number, applied = false,
): void {
  let sdy = 0;
  let sdx = 0;
  const first = (partialsByte + c * blocks * PARTIAL_BYTES) / 8;
  for (let at = first; at < first + PARTIAL_FLOATS * blocks; at += PARTIAL_FLOATS) {
    sdy += mem[at + 1];
    sdx += mem[at + 2];
  }
  const q = (paramsByte + c * PARAM_BYTES) / 8;
  // Applied parameters hold the eval-mode dx coefficients already (the 'apply' prep), and invstd
  // stays in INVSTD, where the prep read it: only the sums.
  const invstd = applied ? mem[arrayIndex(channelsByte, C, CHANNEL_INVSTD) + c] : mem[q + 1];
  sdx = effectiveSdx(invstd, sdx, sdy);
  mem[arrayIndex(channelsByte, C, CHANNEL_WEIGHT) + c] = invstd * sdx;
  mem[arrayIndex(channelsByte, C, CHANNEL_BIAS) + c] = sdy;
  if (applied) return;
  const mean = mem[q];
  const weight = mem[q + 2];
  const a = weight * invstd;
  mem[q] = a;
  mem[q + 1] = -invstd * invstd * sdx / count;
  mem[q + 2] = mean;
  mem[q + 3] = -sdy / count;
}

/**
 * Σdy·(x - mean) as the backward uses it: 0 where invstd is 0 and Σdy is finite. A variance of
 * +Infinity (float64 data near float64's range: README, "Semantics") makes invstd 0, so
 * x̂ = (x - mean)·invstd is 0 wherever x - mean is finite, and the forward's output `bias`; but
 * the sum of dy·(x - mean) over such data overflows (to Inf, or to NaN where terms of both signs
 * do), and invstd times it would make dWeight and every dx NaN (as PyTorch's are there). dy
 * holding NaN or an infinity (Σdy not finite) keeps the sum as it is. The WebAssembly kernel's
 * mergeBackward performs the same operations.
 */
function effectiveSdx(invstd: number, sdx: number, sdy: number): number {
  return invstd === 0 && Number.isFinite(sdy) ? 0 : sdx;
}

/**
 * The eval prep (workers/prep.ts) of channels [c0, c1): (mean, weight / sqrt(var + eps), bias) at
 * paramsByte + 32 * c from the running statistics and the affine parameters in the per-channel
 * arrays of C channels at channelsByte, as mergeChannel writes them from batch statistics. The
 * WebAssembly kernel's `prepEval` performs the same operations: the same bits.
 */
export function prepareEvalChannels(
  mem: Float64Array, channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number,
): void {
  const [mean, variance, weight, bias] = [CHANNEL_MEAN, CHANNEL_VAR, CHANNEL_WEIGHT, CHANNEL_BIAS]
    .map((k) => arrayIndex(channelsByte, C, k));
  for (let c = c0; c < c1; c++) {
    writeChannelParams(mem, paramsByte, c, mem[mean + c], mem[variance + c], eps, mem[weight + c], mem[bias + c]);
  }
}

/**
 * The backward prep of channels [c0, c1): with `fromVar`, first INVSTD = 1 / sqrt(var + eps) from
 * VAR; then (mean, invstd, weight, 0) at paramsByte + 32 * c, which mergeBackwardChannel turns
 * into dx coefficients. The WebAssembly kernel's `prepBackward` performs the same operations.
 */
export function prepareBackwardChannels(
  mem: Float64Array, channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number, fromVar: boolean,
  apply = false,
): void {
  const [mean, variance, invstd, weight] = [CHANNEL_MEAN, CHANNEL_VAR, CHANNEL_INVSTD, CHANNEL_WEIGHT]
    .map((k) => arrayIndex(channelsByte, C, k));
  if (fromVar) {
    for (let c = c0; c < c1; c++) mem[invstd + c] = 1 / Math.sqrt(mem[variance + c] + eps);
  }
  for (let c = c0, q = (paramsByte + c0 * PARAM_BYTES) / 8; c < c1; c++, q += PARAM_BYTES / 8) {
    if (apply) {
      // mergeBackwardChannel's eval-mode coefficients, the same product: a = weight·invstd, k = e = 0.
      const m = mem[mean + c];
      mem[q] = mem[weight + c] * mem[invstd + c];
      mem[q + 1] = 0;
      mem[q + 2] = m;
      mem[q + 3] = 0;
      continue;
    }
    mem[q] = mem[mean + c];
    mem[q + 1] = mem[invstd + c];
    mem[q + 2] = mem[weight + c];
    mem[q + 3] = 0;
  }
}
