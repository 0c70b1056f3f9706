import { CHANNEL_SLICE, inChannelSlices } from './channels.js';
import type { PoolInternals } from './pool-internals.js';
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
 * update is applied to every channel or to none. One loop over the channels: updateRunningStats
 * makes it between turns of the event loop where they are many.
 */
export function runningStatsUpdate(
  runningMean: FloatArray, runningVar: FloatArray,
  mean: Float64Array, variance: Float64Array, count: number, factor: number, unbiased = true,
): void {
  checkIntact(runningMean, mean.length, 'the running mean');
  checkIntact(runningVar, mean.length, 'the running variance');
  blend(runningMean, runningVar, mean, variance, factor, unbiasOf(count, unbiased), runningMean, runningVar, 0, mean.length);
}

/**
 * runningStatsUpdate, the same bits, without holding the event loop for long: up to
 * CHANNEL_SLICE channels it is that; over more, the new values are made in slices between turns
 * of the event loop (inChannelSlices) into scratch on the pool's memory, of the buffers' own
 * types, and then `set` into the buffers in one piece, so that no one sees an update half made
 * and one that fails (a buffer detached or shrunk meanwhile) changes nothing. The loop over 4M
 * channels held the event loop 15.6-17.0 ms at a module training forward's end (`npm run
 * bench:wide`); a `set` of 4M float32 from the pool's memory takes ~0.9 ms here (a probe), and the
 * forward's longest hold became 2.3-2.9 ms. Where the pool cannot give the scratch (the call's own
 * scratch, freed just before, is larger, but another call may have taken it), it is the one loop.
 *
 * The buffers are read during the turns: a write to them meanwhile would be lost under the
 * `set`. Where `unchanged` (the module's own writes: resetRunningStats, loadStateDict) returns
 * false before the `set`, nothing is applied and it resolves to false, for the caller to apply
 * the update again on what was written; otherwise to true. The formula alone: whether an empty
 * batch (count 0, NaN statistics) updates at all is the caller's rule (PyTorch's skips it).
 */
export async function updateRunningStats(
  ctx: PoolInternals, runningMean: FloatArray, runningVar: FloatArray,
  mean: Float64Array, variance: Float64Array, count: number, factor: number, unbiased = true,
  unchanged: () => boolean = () => true,
): Promise<boolean> {
  const C = mean.length;
  const meanAt = C > CHANNEL_SLICE ? ctx.arena.alloc(C * runningMean.BYTES_PER_ELEMENT) : -1;
  const varAt = meanAt < 0 ? -1 : ctx.arena.alloc(C * runningVar.BYTES_PER_ELEMENT);
  if (varAt < 0) {
    if (meanAt >= 0) ctx.arena.free(meanAt);
    runningStatsUpdate(runningMean, runningVar, mean, variance, count, factor, unbiased);
    return true;
  }
  // Right after an allocation, which may have grown the memory, as every call does (Pool's
  // #privateContext): no call finds the shared views stale after an await.
  ctx.views.refresh();
  // Blocks this update frees by itself: a call waiting for memory waits for them (memory-line.ts).
  const release = ctx.arena.line.hold();
  const check = (): void => {
    checkIntact(runningMean, C, 'the running mean');
    checkIntact(runningVar, C, 'the running variance');
  };
  try {
    const unbias = unbiasOf(count, unbiased);
    // Views made again after every turn: a private memory's growth detaches its old buffer.
    const scratch = (): [FloatArray, FloatArray] => [
      viewLike(runningMean, ctx.arena.memory.buffer, meanAt, C), viewLike(runningVar, ctx.arena.memory.buffer, varAt, C),
    ];
    await inChannelSlices(C, (c0, c1) => {
      check();
      const [nextMean, nextVar] = scratch();
      blend(runningMean, runningVar, mean, variance, factor, unbias, nextMean, nextVar, c0, c1);
    });
    if (!unchanged()) return false;
    check();
    const [nextMean, nextVar] = scratch();
    runningMean.set(nextMean);
    runningVar.set(nextVar);
    return true;
  } finally {
    ctx.arena.free(meanAt);
    ctx.arena.free(varAt);
    release();
  }
}

/** The factor m / (m - 1) that makes the biased variance of m values unbiased, or 1. */
function unbiasOf(count: number, unbiased: boolean): number {
  return unbiased ? count / (count - 1) : 1;
}

/** The update of channels [c0, c1), from the buffers' values into `toMean` and `toVar` (which may be the buffers). */
function blend(
  runningMean: FloatArray, runningVar: FloatArray, mean: Float64Array, variance: Float64Array, factor: number, unbias: number,
  toMean: FloatArray, toVar: FloatArray, c0: number, c1: number,
): void {
  for (let c = c0; c < c1; c++) {
    toMean[c] = (1 - factor) * runningMean[c] + factor * mean[c];
    toVar[c] = (1 - factor) * runningVar[c] + factor * variance[c] * unbias;
  }
}

/** A view of `length` values of `like`'s type at byte `offset` of `buffer`. */
function viewLike(like: FloatArray, buffer: ArrayBufferLike, offset: number, length: number): FloatArray {
  return like instanceof Float64Array ? new Float64Array(buffer, offset, length) : new Float32Array(buffer, offset, length);
}
