import { CHANNEL_STAT_BYTES, PARAM_BYTES, partialByte, type Grid } from '../workers/protocol.js';

/**
 * Merges the partials of one channel, in block order, with the pairwise formula of Chan, Golub &
 * LeVeque (1979, "Updating formulae and a pairwise algorithm for computing sample variances"),
 * as in PyTorch's `WelfordOps::combine`:
 *
 *     delta = mean_b - mean_a,  n = n_a + n_b
 *     mean  = mean_a + delta * n_b / n
 *     m2    = m2_a + m2_b + delta^2 * n_a * n_b / n
 *
 * The order is fixed by the grid, never by which thread produced a partial, so the result has the
 * same bits at any thread count. Workers (fused path) and the main thread (split path) both call
 * this one function. Writes the channel's mean and biased variance (m2 / n).
 *
 * @param mem - float64 view of the pool's memory
 */
export function mergeChannelStats(
  mem: Float64Array, grid: Grid, partialsByte: number, c: number, channelStatsByte: number,
): void {
  let n = 0;
  let mean = 0;
  let m2 = 0;
  // A channel's partials are contiguous, in block order.
  const first = partialByte(grid, partialsByte, c, 0, 0) / 8;
  const last = first + 3 * grid.blocksPerChannel;
  for (let at = first; at < last; at += 3) {
    const nb = mem[at];
    const meanB = mem[at + 1];
    const m2B = mem[at + 2];
    if (n === 0) {
      n = nb;
      mean = meanB;
      m2 = m2B;
      continue;
    }
    const total = n + nb;
    const delta = meanB - mean;
    mean += (delta * nb) / total;
    m2 += m2B + (delta * delta * n * nb) / total;
    n = total;
  }
  const out = (channelStatsByte + c * CHANNEL_STAT_BYTES) / 8;
  mem[out] = mean;
  mem[out + 1] = m2 / n;
}

/**
 * Folds a channel's statistics and affine parameters into the (mean, scale, bias) the normalize
 * kernels use: y = (x - mean) * scale + bias with scale = weight / sqrt(var + eps). Unlike
 * PyTorch's folded `x * alpha + beta`, subtracting the mean first keeps a constant channel at
 * exactly `bias`. One function for every path, so every path gets the same bits.
 */
export function writeChannelParams(
  mem: Float64Array, paramsByte: number, c: number,
  mean: number, variance: number, eps: number, weight: number, bias: number,
): void {
  const at = (paramsByte + c * PARAM_BYTES) / 8;
  mem[at] = mean;
  mem[at + 1] = weight / Math.sqrt(variance + eps);
  mem[at + 2] = bias;
}
