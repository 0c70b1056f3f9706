import { throwIfAbortedBeforeStart } from './abort.js';
import { type ByteArray, isByteArray, runBytesStats } from './bytes.js';
import {
  checkArray, checkLowParts, checkNumbers, checkRanges, checkStatsHeld, COUNT_EXPECTED, fromJsonNumber, type JsonNumber, jsonNumbers,
  M2_EXPECTED,
} from './channel-stats-values.js';
import { FRESH_SLICE, inChannelSlices } from './channels.js';
import { runChannelStats } from './engine.js';
import { ArgumentError, describe } from './errors.js';
import { showAs } from './inspect.js';
import { lowPart, mergedMean } from './merge.js';
import { checkLive, pinArrays, poolInternals } from './pool-internals.js';
import { getDefaultPool, Pool } from './pool.js';
import {
  checkAttached, checkLayout, checkObject, checkOptions, checkShape, checkSignal, dtypeOf, type FloatArray, type Layout, lockFields,
  type OptionKeys,
} from './validate.js';

/** Plain form of a `ChannelStats`, for any transport (JSON, structured clone). */
export interface ChannelStatsJSON {
  count: number[];
  mean: JsonNumber[];
  m2: JsonNumber[];
  /** What rounding each mean left out (see `ChannelStats`); absent where all are 0. */
  meanLo?: number[];
}

/** Options of `ChannelStats.fromBatch`. */
export interface FromBatchOptions {
  /** 'channels-first' (default) or 'channels-last', as for `BatchNorm`. */
  layout?: Layout;
  /** The pool to compute on. Default: the shared default pool. */
  pool?: Pool;
  signal?: AbortSignal;
}

const FROM_BATCH_OPTIONS: OptionKeys<FromBatchOptions> = { layout: true, pool: true, signal: true };

/** Options of `ChannelStats.variance`. */
export interface VarianceOptions {
  /** Delta degrees of freedom: the divisor is count - ddof. Default 0 (biased). */
  ddof?: number;
}

const VARIANCE_OPTIONS: OptionKeys<VarianceOptions> = { ddof: true };

/**
 * The statistics' own array of means, not a copy, for bnpool's use on this thread (a synced
 * forward puts it on the pool as it is); never handed to a caller, who gets `mean()`'s copies.
 */
export let meanOf: (stats: ChannelStats) => Float64Array;

/**
 * Per-channel statistics that merge exactly: for each channel the count, the mean and m2 (the sum
 * of squared deviations from the mean), in float64. Two of them merge with the pairwise formula of
 * Chan, Golub & LeVeque (1979), so statistics computed on separate shards of a batch (other
 * threads, processes, machines) combine into those of the whole batch, up to rounding.
 *
 * Each mean also keeps what rounding it to float64 left out (`meanLo`: from `fromBatch` and
 * `merge`, through `toJSON` and `fromJSON`; zeros where not given), and merges take the means
 * relative to one another with it, as the pool's own merge of its blocks does (src/merge.ts): an
 * offset common to the data never rounds their differences. Float64 integers 1e15 + (i mod 13)
 * merged from two halves' statistics get the exact variance, where the rounded means put it up
 * to 1.3e-8 off (bench/offset-stats.ts, test/channel-stats.test.ts).
 *
 * @example
 * const a = await ChannelStats.fromBatch(x1, [8, 3, 32, 32]);
 * const b = ChannelStats.fromJSON(JSON.parse(messageFromPeer));
 * const all = a.merge(b);
 * all.mean(); all.variance({ ddof: 1 });
 */
export class ChannelStats {
  /** Values seen per channel. */
  readonly count: Float64Array;
  /** Sum of squared deviations from the mean, per channel. */
  readonly m2: Float64Array;
  readonly #mean: Float64Array;
  /** What rounding each mean left out; null for zeros. */
  readonly #meanLo: Float64Array | null;
  /** Channels, fixed when made: `count` and `m2` are public, and their owner may transfer their buffers. */
  readonly #channels: number;

  /**
   * @param meanLo - optional: what rounding each mean to float64 left out (mean + meanLo is the
   *   mean without the rounding of its offset), at most half an ulp of its mean, and 0 where the
   *   mean is not finite; as `toJSON` gives it. Zeros when not given.
   */
  constructor(count: ArrayLike<number>, mean: ArrayLike<number>, m2: ArrayLike<number>, meanLo?: ArrayLike<number>) {
    checkArray(count, 'count');
    checkArray(mean, 'mean');
    checkArray(m2, 'm2');
    if (meanLo !== undefined) checkArray(meanLo, 'meanLo');
    const C = count.length;
    if (C === 0 || mean.length !== C || m2.length !== C) {
      throw new ArgumentError(`count, mean and m2 must have the same, non-zero length; got ${count.length}, ${mean.length} and ${m2.length}`);
    }
    if (meanLo !== undefined && meanLo.length !== C) {
      throw new ArgumentError(`meanLo must have the length of mean (${C}); got ${meanLo.length}`);
    }
    // Before the copies: a Float64Array would turn a non-number ('1', null) into a number.
    checkNumbers(count, 'count', COUNT_EXPECTED);
    checkNumbers(mean, 'mean', 'a number');
    checkNumbers(m2, 'm2', M2_EXPECTED);
    if (meanLo !== undefined) checkNumbers(meanLo, 'meanLo', 'a number');
    const own = adopting !== null;
    this.count = own ? (count as Float64Array) : Float64Array.from(count);
    this.#mean = own ? (mean as Float64Array) : Float64Array.from(mean);
    this.m2 = own ? (m2 as Float64Array) : Float64Array.from(m2);
    this.#meanLo = meanLo === undefined ? null : own ? (meanLo as Float64Array) : Float64Array.from(meanLo);
    this.#channels = C;
    if (adopting !== 'made') {
      checkRanges(this.count, this.m2);
      if (this.#meanLo !== null) checkLowParts(this.#mean, this.#meanLo);
    }
    lockFields(this, ['count', 'm2']);
  }

  /** Number of channels. */
  get numChannels(): number {
    return this.#channels;
  }

  /**
   * The statistics of a batch, computed on a pool like a training forward's (same grid, same
   * bits), without normalizing it.
   *
   * @example
   * const stats = await ChannelStats.fromBatch(x, [8, 3, 32, 32], { pool });
   * stats.mean(); stats.variance();                       // per channel, biased
   *
   * 8-bit input (pixels 0-255: a Uint8Array, a Buffer or a Uint8ClampedArray) is summed exactly,
   * in integers: a dataset's statistics, merged batch by batch, for `batchNorm` of its pixels.
   *
   * @example
   * let all = await ChannelStats.fromBatch(rgb, [16, 224, 224, 3], { layout: 'channels-last' });
   * all = all.merge(await ChannelStats.fromBatch(moreRgb, [16, 224, 224, 3], { layout: 'channels-last' }));
   * const runningMean = all.mean(), runningVar = all.variance();
   */
  static async fromBatch(
    x: FloatArray | ByteArray, shape: readonly number[], options?: FromBatchOptions,
  ): Promise<ChannelStats> {
    const bytes = isByteArray(x);
    const dtype = bytes ? null : dtypeOf(x, 'x');
    const opts = checkOptions(options, 'options', FROM_BATCH_OPTIONS);
    checkAttached(x, 'x');
    const dims = checkShape(shape, x.length, undefined, checkLayout(opts.layout));
    if (opts.pool !== undefined && !(opts.pool instanceof Pool)) {
      throw new ArgumentError(`options.pool must be a Pool; got ${describe(opts.pool)}`);
    }
    const signal = checkSignal(opts.signal);
    const pool = (opts.pool as Pool | undefined) ?? getDefaultPool();
    const ctx = poolInternals(pool);
    ctx.assertOpen();
    checkLive([[x, 'x']]);
    throwIfAbortedBeforeStart(signal);
    const unpin = pinArrays([x]);
    // 8-bit input is summed exactly, in integers (src/bytes.ts); float input as a training forward's statistics.
    const stats = bytes
      ? runBytesStats(ctx, { x: x as ByteArray, dims, signal }).then(({ count, mean, m2 }) => adopt(count, mean, m2))
      : batchChannelStats(pool, { x: x as FloatArray, dims, dtype: dtype!, signal });
    return ctx.track(stats.finally(unpin));
  }

  /** Rebuilds statistics from `toJSON()`'s form (after JSON, or a structured clone). */
  static fromJSON(json: ChannelStatsJSON): ChannelStats {
    const j = checkObject(json, 'json');
    const keys = j.meanLo === undefined ? (['count', 'mean', 'm2'] as const) : (['count', 'mean', 'm2', 'meanLo'] as const);
    const [count, mean, m2, meanLo] = keys.map((key) => {
      const v = j[key];
      checkArray(v, `json.${key}`);
      const values = v as ArrayLike<unknown>;
      const numbers = new Float64Array(values.length);
      for (let i = 0; i < numbers.length; i++) numbers[i] = fromJsonNumber(values[i], key, i, key === 'mean' || key === 'm2');
      return numbers;
    });
    if (count.length === 0 || mean.length !== count.length || m2.length !== count.length) {
      throw new ArgumentError(`json.count, json.mean and json.m2 must have the same, non-zero length; got ${count.length}, ${mean.length} and ${m2.length}`);
    }
    if (meanLo !== undefined && meanLo.length !== count.length) {
      throw new ArgumentError(`json.meanLo must have the length of json.mean (${count.length}); got ${meanLo.length}`);
    }
    return adopt(count, mean, m2, meanLo ?? null);
  }

  /**
   * This merged with `other` (Chan et al.): per channel, with delta = mean_b - mean_a,
   * n = n_a + n_b, mean = mean_a + delta * n_b / n, m2 = m2_a + m2_b + delta^2 * n_a * n_b / n,
   * the means taken relative to mean_a with their low parts (mean_b - mean_a + lo_b against lo_a),
   * and the merged mean's own low part kept. Where the means are not finite (or that merge does
   * not end finite), the rounded means as they are, and an infinite or NaN mean takes the weighted
   * mean instead: +Inf stays +Inf.
   *
   * @example
   * const total = shards.reduce((all, s) => all.merge(s)); // shards: ChannelStats of the same C
   */
  merge(other: ChannelStats): ChannelStats {
    if (!(other instanceof ChannelStats)) throw new ArgumentError(`other must be a ChannelStats; got ${describe(other)}`);
    checkStatsHeld(this);
    checkStatsHeld(other, 'other.');
    if (other.numChannels !== this.numChannels) {
      throw new ArgumentError(`other must have ${this.numChannels} channels; got ${other.numChannels}`);
    }
    const C = this.numChannels;
    const count = new Float64Array(C);
    const mean = new Float64Array(C);
    const m2 = new Float64Array(C);
    const meanLo = new Float64Array(C);
    const [countA, meanA, m2A, loA] = [this.count, this.#mean, this.m2, this.#meanLo];
    const [countB, meanB, m2B, loB] = [other.count, other.#mean, other.m2, other.#meanLo];
    for (let c = 0; c < C; c++) {
      const na = countA[c];
      const nb = countB[c];
      const n = na + nb;
      count[c] = n;
      if (na === 0 || nb === 0) {
        mean[c] = na === 0 ? meanB[c] : meanA[c];
        m2[c] = na === 0 ? m2B[c] : m2A[c];
        meanLo[c] = (na === 0 ? loB?.[c] : loA?.[c]) ?? 0;
        continue;
      }
      const K = meanA[c];
      if (Number.isFinite(K) && Number.isFinite(meanB[c])) {
        // Relative to mean_a: r_a = lo_a, r_b = (mean_b - mean_a) + lo_b (without low parts, the
        // same operations as Chan's on the rounded means).
        const ra = loA?.[c] ?? 0;
        const delta = ((meanB[c] - K) + (loB?.[c] ?? 0)) - ra;
        const r = ra + (delta * nb) / n;
        const merged = K + r;
        if (Number.isFinite(merged)) {
          const lo = lowPart(K, r, merged);
          mean[c] = merged;
          meanLo[c] = Number.isFinite(lo) ? lo : 0;
          m2[c] = m2A[c] + m2B[c] + (delta * delta * na * nb) / n;
          continue;
        }
      }
      const delta = meanB[c] - K;
      mean[c] = mergedMean(K, na, meanB[c], nb, n);
      m2[c] = m2A[c] + m2B[c] + (delta * delta * na * nb) / n;
    }
    return adopt(count, mean, m2, meanLo);
  }

  /**
   * Per-channel mean (a copy): NaN for a channel of count 0, as `variance()` and as PyTorch's mean
   * of no values (the stored mean, 0 from an empty batch, stays what `toJSON` writes and `merge`
   * takes, for which count 0 is the identity).
   */
  mean(): Float64Array {
    const mean = this.#mean.slice();
    const { count } = this;
    for (let c = 0; c < mean.length; c++) if (count[c] === 0) mean[c] = NaN;
    return mean;
  }

  /** Per-channel variance, m2 / (count - ddof): ddof 0 (default) biased, 1 unbiased. */
  variance(options?: VarianceOptions): Float64Array {
    const ddof = checkOptions(options, 'options', VARIANCE_OPTIONS).ddof ?? 0;
    if (typeof ddof !== 'number' || !Number.isSafeInteger(ddof) || ddof < 0) {
      throw new ArgumentError(`options.ddof must be a non-negative integer; got ${describe(ddof)}`);
    }
    checkStatsHeld(this);
    const { count, m2 } = this;
    const variance = new Float64Array(count.length);
    for (let c = 0; c < variance.length; c++) variance[c] = m2[c] / (count[c] - ddof);
    return variance;
  }

  /**
   * Plain arrays, for JSON or structured clone: NaN and the infinities as their names; `meanLo`
   * where any mean's low part is not 0.
   */
  toJSON(): ChannelStatsJSON {
    checkStatsHeld(this);
    const json: ChannelStatsJSON = { count: jsonNumbers(this.count) as number[], mean: jsonNumbers(this.#mean), m2: jsonNumbers(this.m2) };
    const lo = this.#shownLowParts();
    // Finite by the constructor's check: plain numbers.
    if (lo !== null) json.meanLo = jsonNumbers(lo) as number[];
    return json;
  }

  /** The means' low parts where any is not 0 (what toJSON and util.inspect show), else null. */
  #shownLowParts(): Float64Array | null {
    const lo = this.#meanLo;
    return lo !== null && lo.some((v) => v !== 0) ? lo : null;
  }

  static {
    meanOf = (stats) => stats.#mean;
  }

  static {
    // console.log and util.inspect show count, mean (a method, so left out by default), m2, and
    // meanLo where toJSON writes it.
    showAs(ChannelStats.prototype, 'ChannelStats', (stats) => {
      const lo = stats.#shownLowParts();
      const view = { count: stats.count, mean: stats.mean(), m2: stats.m2 };
      return lo === null ? view : { ...view, meanLo: lo.slice() };
    });
  }
}

/**
 * The statistics of a checked batch on `pool` (a statistics pass and the merge in block order),
 * counted as N·prod(spatial) values per channel: `fromBatch`'s, and a synced forward's local ones.
 */
export async function batchChannelStats(pool: Pool, request: Parameters<typeof runChannelStats>[1]): Promise<ChannelStats> {
  // The engine's result arrays are this call's own: the statistics take them as they are.
  const { mean, var: variance, meanLo } = await runChannelStats(pool, request);
  const n = request.dims.N * request.dims.S;
  // A new array (page faults) and a loop, each in slices between turns of the event loop where
  // they are large (inChannelSlices).
  const count = new Float64Array(mean.length);
  await inChannelSlices(mean.length, (c0, c1) => { count.fill(n, c0, c1); }, undefined, FRESH_SLICE);
  // m2 = variance * count, in place. A loop: TypedArray `map` with a callback took 13-20 ms for a
  // million channels in Node 20, a loop 3 ms.
  await inChannelSlices(mean.length, (c0, c1) => {
    for (let c = c0; c < c1; c++) variance[c] *= n;
  });
  return adopt(count, mean, variance, meanLo, true);
}

/**
 * Set while `adopt` constructs: the constructor then keeps the arrays it is given instead of
 * copying them ('made': and skips the checks of their ranges).
 */
let adopting: 'checked' | 'made' | null = null;

/**
 * A ChannelStats over float64 arrays made for it and referenced nowhere else (checked as the
 * constructor checks, not copied): for a million channels, each copy costs the calling thread
 * ~10 ms, most of it the page faults of new memory. `made`: the arrays are a float statistics
 * pass's results (batchChannelStats), whose ranges hold by construction (counts N·prod(spatial),
 * m2 clamped at 0 by the kernels and summed from non-negative parts by the merge, low parts from
 * TwoSum), so the range checks are skipped: 22 ms of this thread's time for 4M channels.
 */
function adopt(count: Float64Array, mean: Float64Array, m2: Float64Array, meanLo: Float64Array | null = null, made = false): ChannelStats {
  adopting = made ? 'made' : 'checked';
  try {
    return new ChannelStats(count, mean, m2, meanLo ?? undefined);
  } finally {
    adopting = null;
  }
}
