/**
 * SyncBatchNorm over any transport: the synced forward and the checks around the caller's
 * all-reduces of the batch statistics (`reduceStats`, forward) and of the gradient sums
 * (`reduceGrads`, backward; the engine calls it between its passes), as in
 * PyTorch's `SyncBatchNorm`, which all-gathers (count, mean, invstd) forward and all-reduces
 * (sum_dy, sum_dy_xmu) backward.
 */
import { checkStatsHeld } from './channel-stats-values.js';
import { batchChannelStats, ChannelStats, meanOf } from './channel-stats.js';
import { untilAborted } from './abort.js';
import { inChannelSlices } from './channels.js';
import { type EngineRequest, type EngineResult, runBatchNorm, type runChannelStats } from './engine.js';
import { ArgumentError, describe, SingleValueError } from './errors.js';
import type { Pool } from './pool.js';
import { checkChannelValues, checkObject } from './validate.js';

/** Per-channel gradient sums of one shard, or, all-reduced, of every shard. */
export interface GradientSums {
  /** Σdy: dBias. */
  readonly sumDy: ArrayLike<number>;
  /** Σdy·x̂: dWeight (x̂ from the mean and invstd every shard shares after a synced forward). */
  readonly sumDyXhat: ArrayLike<number>;
}

/**
 * This batch's statistics as a `ChannelStats`, through the caller's all-reduce, and their count:
 * what it resolves to must have C channels and one count for all of them, at least this shard's
 * own (else an ArgumentError), and, with `moreThanOne` (the torch convention), above 1 (else a
 * SingleValueError, as an unsynced call on a single value per channel) or 0: every shard empty,
 * an empty batch (runForward).
 */
async function reduceBatchStats(
  pool: Pool, request: Parameters<typeof runChannelStats>[1],
  reduceStats: (local: ChannelStats) => ChannelStats | Promise<ChannelStats>, C: number, moreThanOne: boolean,
): Promise<{ merged: ChannelStats; count: number }> {
  const local = await batchChannelStats(pool, request);
  const merged = await untilAborted(reduceStats(local), request.signal);
  if (!(merged instanceof ChannelStats) || merged.numChannels !== C) {
    const given = merged instanceof ChannelStats ? `one with numChannels ${merged.numChannels}` : describe(merged);
    throw new ArgumentError(`options.reduceStats must resolve to a ChannelStats with numChannels ${C}, x's channel count; got ${given}`);
  }
  checkStatsHeld(merged, "options.reduceStats's result's ");
  // One count for every channel: a loop over the channels (7-9 ms in one piece for 4M), in slices
  // between turns where they are many. The caller owns the arrays and may transfer them during a
  // turn: the count is read before the first (m2 is checked whole where it is read).
  const first = merged.count[0];
  let differs = -1;
  await inChannelSlices(C, (c0, c1) => {
    checkStatsHeld(merged, "options.reduceStats's result's ");
    const counts = merged.count;
    for (let c = c0; c < c1 && differs < 0; c++) if (counts[c] !== first) differs = c;
  });
  if (differs >= 0) {
    throw new ArgumentError(`options.reduceStats must resolve to statistics with the same count for every channel; got ${first} for channel 0 and ${merged.count[differs]} for channel ${differs}`);
  }
  const own = request.dims.N * request.dims.S;
  if (!(first >= own)) {
    throw new ArgumentError(`options.reduceStats must resolve to the statistics of every shard, this one's included: a count of at least its ${own} values per channel; got ${first}`);
  }
  if (moreThanOne && first !== 0 && !(first > 1)) {
    throw new SingleValueError(`Expected more than 1 value per channel when training, got ${first} over every shard (options.reduceStats)`);
  }
  return { merged, count: first };
}

/**
 * A forward, with `count` the values per channel behind its statistics (for the running
 * statistics and a synced backward). Without `reduceStats`, on this batch alone (N·prod(spatial)).
 * With it, normalized with the whole distributed batch's statistics: this shard's statistics
 * through the hook, then the normalization with the merged mean and biased variance.
 * `moreThanOne`: whether the merged count must exceed 1 (the torch convention's rule).
 */
export async function runForward(
  pool: Pool, request: EngineRequest, reduceStats: ((local: ChannelStats) => ChannelStats | Promise<ChannelStats>) | undefined, C: number,
  moreThanOne = true,
): Promise<{ result: EngineResult; count: number }> {
  if (reduceStats === undefined) return { result: await runBatchNorm(pool, request), count: request.dims.N * request.dims.S };
  const { merged, count } = await reduceBatchStats(pool, request, reduceStats, C, moreThanOne);
  // Every shard empty: an empty batch, as an unsynced one (its statistics NaN, its count 0).
  if (count === 0) return { result: await runBatchNorm(pool, request), count };
  // The merged biased variance, m2 / count (one count for every channel, checked), is made as it
  // goes onto the pool; the mean goes there from the statistics' own array (no copies).
  const result = await runBatchNorm(pool, {
    x: request.x, dims: request.dims, dtype: request.dtype, useBatchStats: false, weight: request.weight, bias: request.bias,
    runningMean: meanOf(merged), runningVar: merged.m2, runningVarDivisor: count, eps: request.eps, out: request.out,
    signal: request.signal, relu: request.relu, into: request.into, continued: true,
  });
  return { result, count };
}

/** The caller's all-reduce of the gradient sums (`reduceGrads`), its answer checked before dx uses it. */
export function gradientReducer(
  reduceGrads: (local: GradientSums) => GradientSums | Promise<GradientSums>, C: number,
): (local: GradientSums) => Promise<GradientSums> {
  return async (local) => {
    const reduced: unknown = await reduceGrads(local);
    const sums = checkObject(reduced, 'the value options.reduceGrads resolved to') as Partial<GradientSums>;
    return {
      sumDy: checkChannelValues(sums.sumDy, 'options.reduceGrads(...).sumDy', C),
      sumDyXhat: checkChannelValues(sums.sumDyXhat, 'options.reduceGrads(...).sumDyXhat', C),
    };
  };
}
