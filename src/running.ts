import { checkIntact, type FloatArray } from './validate.js';

/**
 * The running-statistics update, applied in place:
 *
 *     running_mean = (1 - f) * running_mean + f * mean
 *     running_var  = (1 - f) * running_var  + f * var * m / (m - 1)
 *
 * with `var` the biased batch variance, m the values per channel, and f the weight of the new
 * batch (PyTorch: the momentum, or 1 / num_batches_tracked for a cumulative average). With
 * `unbiased` false (the ONNX and Keras conventions) the m / (m - 1) factor is left out.
 * Computed in float64, stored in the buffers' own type. Both buffers are checked whole first
 * (`checkIntact`: their owner may have detached or shrunk them while the call ran), so that an
 * update is applied to every channel or to none.
 */
export function runningStatsUpdate(
  runningMean: FloatArray, runningVar: FloatArray,
  mean: Float64Array, variance: Float64Array, count: number, factor: number, unbiased = true,
): void {
  checkIntact(runningMean, mean.length, 'the running mean');
  checkIntact(runningVar, mean.length, 'the running variance');
  const unbias = unbiased ? count / (count - 1) : 1;
  for (let c = 0; c < mean.length; c++) {
    runningMean[c] = (1 - factor) * runningMean[c] + factor * mean[c];
    runningVar[c] = (1 - factor) * runningVar[c] + factor * variance[c] * unbias;
  }
}
