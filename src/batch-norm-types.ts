/**
 * The public types of `BatchNorm`'s API: its constructor's and calls' options, what `backward`
 * resolves to, and its state dict. The class is in batch-norm.ts, the checks of these options in
 * batch-norm-checks.ts.
 */
import type { Dtype } from '../workers/protocol.js';
import type { ChannelStats } from './channel-stats.js';
import type { Convention } from './conventions.js';
import type { Pool } from './pool.js';
import type { GradientSums } from './sync.js';
import type { FloatArray, Layout } from './validate.js';

/** Options of `new BatchNorm()`; the defaults are PyTorch's. */
export interface BatchNormOptions {
  /**
   * Running-statistics convention: `'torch'` (default), `'onnx'` or `'keras'`. It sets which value
   * momentum weights, the default momentum and eps, the running-variance estimator, and what a
   * training batch of one value per channel or of none does (see `CONVENTIONS`).
   */
  convention?: Convention;
  /** Added to the variance before the square root. Default 1e-5 (keras: 1e-3). */
  eps?: number;
  /**
   * Momentum of the running statistics; null for a cumulative average. Default 0.1 on the new
   * batch (torch), 0.9 (onnx) or 0.99 (keras) on the old value.
   */
  momentum?: number | null;
  /** Learnable per-channel weight (ones) and bias (zeros). Default true. */
  affine?: boolean;
  /** Keep running statistics and use them in eval mode. Default true. */
  trackRunningStats?: boolean;
  /** Element type of inputs and parameters. Default 'float32'. */
  dtype?: Dtype;
  /** Pool to run on. Default: the shared default pool, created on first use. */
  pool?: Pool;
  /** Input layout: `'channels-first'` (N, C, *spatial), the default, or `'channels-last'` (N, *spatial, C). */
  layout?: Layout;
  /** `'relu'`: y = max(0, BatchNorm(x)) in the same pass; backward masks dy where y <= 0. */
  activation?: 'relu' | null;
}

/** Options of one forward call. */
export interface ForwardOptions {
  /**
   * Array to write the output to, of x's type and length; may be x itself (in place). On the
   * pool (from `pool.alloc`) it is written directly, with no copy.
   */
  out?: FloatArray;
  /** Aborts the call: a queued call never starts, a running one stops between blocks. */
  signal?: AbortSignal;
  /**
   * SyncBatchNorm over any transport: called with this batch's statistics, it resolves to the
   * statistics of the whole distributed batch (for instance the `merge` of every shard's), which
   * then normalize this shard and update the running statistics. Used whenever batch statistics
   * are (training, or no running statistics).
   */
  reduceStats?: (local: ChannelStats) => ChannelStats | Promise<ChannelStats>;
}

/** Options of one backward call. */
export interface BackwardOptions {
  /** Array to write dx to, of dy's type and length; on the pool it is written directly. */
  out?: FloatArray;
  /**
   * Arrays to write dWeight and dBias to (an affine module only), of the module's dtype and
   * length C, instead of new ones each call: for many channels a fresh array's first writes
   * cost page faults (README, "Backward and fused ReLU"). The result holds these arrays.
   */
  dWeight?: FloatArray;
  dBias?: FloatArray;
  /** Aborts the call: a queued call never starts, a running one stops between blocks. */
  signal?: AbortSignal;
  /**
   * SyncBatchNorm's backward, required after a forward with `reduceStats`: called with this
   * shard's per-channel sums Σdy and Σdy·x̂ (Float64Array), it resolves to their sums over every
   * shard (an all-reduce SUM, as PyTorch's SyncBatchNorm does on sum_dy and sum_dy_xmu). dx then
   * uses those and the whole batch's count; dWeight and dBias stay this shard's sums.
   */
  reduceGrads?: (local: GradientSums) => GradientSums | Promise<GradientSums>;
}

/** What `backward` resolves to. */
export interface BatchNormGradients<A extends FloatArray = FloatArray> {
  /** Gradient with respect to the input, of x's type and shape. */
  dx: A;
  /** Σ dy·x̂ per channel (the module's dtype); null when `affine` is false. */
  dWeight: A | null;
  /** Σ dy per channel (the module's dtype); null when `affine` is false. */
  dBias: A | null;
}

/** A module's state, with PyTorch's `state_dict` keys. */
export interface BatchNormStateDict {
  weight?: FloatArray | readonly number[];
  bias?: FloatArray | readonly number[];
  running_mean?: FloatArray | readonly number[];
  running_var?: FloatArray | readonly number[];
  num_batches_tracked?: number | bigint;
}
