import { throwIfAbortedBeforeStart } from './abort.js';
import { checkMoreThanOneValue } from './batch-norm-checks.js';
import { type ByteArray, checkBytesOut, isByteArray, runBytes } from './bytes.js';
import { runBatchNormBackward } from './engine.js';
import { ArgumentError, describe } from './errors.js';
import { checkLive, pinArrays, poolInternals } from './pool-internals.js';
import { getDefaultPool, Pool } from './pool.js';
import { updateRunningStats } from './running.js';
import type { ChannelStats } from './channel-stats.js';
import { gradientReducer, type GradientSums, runForward } from './sync.js';
import {
  checkAttached, checkBoolean, checkChannelArray, checkChannelOuts, checkOptionalFunction, checkEps, checkMomentum, checkOptions,
  checkOut, checkShape, checkLayout, checkSignal, dtypeOf, type FloatArray, type Layout, type OptionKeys, type SameDtype,
} from './validate.js';

/**
 * `batchNorm` of 8-bit input (pixels): eval only, running statistics required, a Float32Array
 * out. Checks everything before it starts, as batchNorm does; src/bytes.ts runs it.
 */
async function batchNormBytes(x: ByteArray, shape: readonly number[], options?: BatchNormFunctionalOptions): Promise<BatchNormResult<Float32Array>> {
  const opts = checkOptions(options, 'options', FUNCTIONAL_OPTIONS);
  checkAttached(x, 'x');
  const dims = checkShape(shape, x.length, undefined, checkLayout(opts.layout));
  const outLayout = opts.outLayout === undefined ? dims.layout : checkLayout(opts.outLayout, 'options.outLayout');
  if (dims.layout === 'channels-first' && outLayout === 'channels-last' && dims.C > 1) {
    throw new ArgumentError(
      `options.outLayout 'channels-last' needs channels-last 8-bit input (options.layout); channels-first input is written channels first; got layout 'channels-first'`,
    );
  }
  if (opts.training !== undefined && checkBoolean(opts.training, 'options.training')) {
    throw new ArgumentError(`options.training must be false for 8-bit input (${describe(x)}): it is normalized with running statistics only; got true`);
  }
  if (opts.reduceStats !== undefined) {
    throw new ArgumentError(`options.reduceStats is for training calls; 8-bit input (${describe(x)}) is normalized with running statistics only; got ${describe(opts.reduceStats)}`);
  }
  for (const key of ['meanOut', 'varOut'] as const) {
    if (opts[key] !== undefined && opts[key] !== null) {
      throw new ArgumentError(`options.${key} is for float input; 8-bit input (${describe(x)}) returns copies of the running statistics it was given; got ${describe(opts[key])}`);
    }
  }
  const { runningMean, runningVar, weight, bias } = channelOptions(opts, dims.C);
  if (runningMean === null || runningVar === null) {
    const given = runningMean !== null ? 'only runningMean' : runningVar !== null ? 'only runningVar' : 'neither';
    throw new ArgumentError(`options.runningMean and options.runningVar are required for 8-bit input (${describe(x)}); got ${given}`);
  }
  if (opts.momentum !== undefined) checkMomentum(opts.momentum, false, 'options.momentum');
  const eps = opts.eps === undefined ? 1e-5 : checkEps(opts.eps, 'options.eps');
  if (opts.pool !== undefined && !(opts.pool instanceof Pool)) {
    throw new ArgumentError(`options.pool must be a Pool; got ${describe(opts.pool)}`);
  }
  const out = checkBytesOut(opts.out, x);
  const signal = checkSignal(opts.signal);
  const relu = checkActivation(opts.activation);
  const pool = (opts.pool as Pool | undefined) ?? getDefaultPool();
  const ctx = poolInternals(pool);
  ctx.assertOpen();
  checkLive([[x, 'x'], [out, 'options.out'], [runningMean, 'options.runningMean'], [runningVar, 'options.runningVar'], [weight, 'options.weight'], [bias, 'options.bias']]);
  throwIfAbortedBeforeStart(signal);
  const unpin = pinArrays([x, out]);
  return ctx.track((async () => {
    try {
      const y = await runBytes(ctx, { x, dims, runningMean, runningVar, weight, bias, eps, out, signal, relu, outLayout });
      // As a float eval call's: copies of the running statistics, and the values per channel.
      return { y, mean: Float64Array.from(runningMean), var: Float64Array.from(runningVar), count: dims.N * dims.S };
    } finally {
      unpin();
    }
  })());
}

/** The per-channel arrays among `batchNorm`'s options, each checked (C values) or null when not given. */
function channelOptions(opts: Record<string, unknown>, C: number): Record<'runningMean' | 'runningVar' | 'weight' | 'bias', FloatArray | null> {
  const channel = (key: string): FloatArray | null =>
    opts[key] === undefined || opts[key] === null ? null : checkChannelArray(opts[key], `options.${key}`, C);
  return { runningMean: channel('runningMean'), runningVar: channel('runningVar'), weight: channel('weight'), bias: channel('bias') };
}

/** Options of `batchNorm`, as `torch.nn.functional.batch_norm`'s arguments. */
export interface BatchNormFunctionalOptions {
  /** Use (and return) the batch statistics. Default false: normalize with the running ones. */
  training?: boolean;
  /** Running statistics: required when not training; updated in place when training. */
  runningMean?: FloatArray;
  runningVar?: FloatArray;
  weight?: FloatArray;
  bias?: FloatArray;
  /** Weight of the new batch in the running statistics. Default 0.1. */
  momentum?: number;
  eps?: number;
  pool?: Pool;
  out?: FloatArray;
  /**
   * Float64Arrays of length C to write the result's `mean` and `var` into, instead of new ones
   * each call (for many channels a fresh array's first writes cost page faults); the result
   * holds them. Float input only.
   */
  meanOut?: Float64Array;
  varOut?: Float64Array;
  signal?: AbortSignal;
  /** `'channels-first'` (N, C, *spatial), the default, or `'channels-last'` (N, *spatial, C). */
  layout?: Layout;
  /** `'relu'`: y = max(0, BatchNorm(x)) in the same pass. */
  activation?: 'relu' | null;
  /**
   * 8-bit input only: the output's layout, by default `layout`. `'channels-first'` with
   * channels-last input writes (N, C, *spatial): an image decoder's HWC pixels become a model's
   * CHW input in the same pass, as torchvision's ToTensor lays them out.
   */
  outLayout?: Layout;
  /**
   * SyncBatchNorm (training only), as `BatchNorm.forward`'s option: called with this batch's
   * statistics, it resolves to the whole distributed batch's, which normalize x and update the
   * running buffers.
   */
  reduceStats?: (local: ChannelStats) => ChannelStats | Promise<ChannelStats>;
}

const FUNCTIONAL_OPTIONS: OptionKeys<BatchNormFunctionalOptions> = {
  training: true, runningMean: true, runningVar: true, weight: true, bias: true, momentum: true, eps: true, pool: true,
  out: true, meanOut: true, varOut: true, signal: true, layout: true, activation: true, reduceStats: true, outLayout: true,
};

/** What `batchNorm` resolves to. */
export interface BatchNormResult<A extends FloatArray = FloatArray> {
  /** The output (`options.out`, or a new array of x's type). */
  y: A;
  /** Per-channel mean used: the batch mean when training, else a copy of the running mean. */
  mean: Float64Array;
  /** Per-channel variance used: the biased batch variance when training, else a copy of the running variance. */
  var: Float64Array;
  /**
   * Values per channel behind a training call's statistics: N·prod(spatial), or with
   * `reduceStats` the whole batch's (`batchNormBackward`'s `count` for a synced backward).
   */
  count: number;
}

/**
 * Functional BatchNorm, like `torch.nn.functional.batch_norm`, on a pool. When training with
 * running buffers, it updates them in place once the output is complete (a failed call leaves
 * them as they were). Unlike a `BatchNorm` module it does not order concurrent calls that share
 * buffers: each applies its update when it finishes.
 *
 * @example
 * const r = await batchNorm(x, [8, 3, 32, 32], { training: true, runningMean, runningVar });
 * r.y; r.mean; r.var;
 */
export function batchNorm<T extends FloatArray>(x: T, shape: readonly number[], options?: BatchNormFunctionalOptions): Promise<BatchNormResult<SameDtype<T>>>;
/**
 * Eval BatchNorm of 8-bit input (pixels 0-255: a Uint8Array, a Buffer or a Uint8ClampedArray)
 * into float32, with the running statistics (required; `training` must be false). The workers
 * convert each byte as they normalize it, reading bytes from `pool.alloc(n, 'uint8')` where
 * they lie and copying others onto the pool first; `out`, if given, is a Float32Array that does
 * not overlap x; `outLayout: 'channels-first'` writes channels-last pixels channels first. The
 * result's bits are the float32 input's on the WebAssembly kernel (transposed with `outLayout`).
 *
 * @example
 * // torchvision's ToTensor + Normalize(mean, std) on 16 decoded RGB images (HWC), into NCHW:
 * const runningMean = Float64Array.from(mean, (m) => 255 * m);
 * const runningVar = Float64Array.from(std, (s) => (255 * s) ** 2);
 * const { y } = await batchNorm(rgb, [16, 224, 224, 3], {
 *   layout: 'channels-last', outLayout: 'channels-first', runningMean, runningVar, eps: Number.MIN_VALUE,
 * });
 */
export function batchNorm(x: ByteArray, shape: readonly number[], options?: BatchNormFunctionalOptions): Promise<BatchNormResult<Float32Array>>;
export async function batchNorm(
  x: FloatArray | ByteArray, shape: readonly number[], options?: BatchNormFunctionalOptions,
): Promise<BatchNormResult> {
  if (isByteArray(x)) return batchNormBytes(x, shape, options);
  const dtype = dtypeOf(x, 'x');
  const opts = checkOptions(options, 'options', FUNCTIONAL_OPTIONS);
  checkAttached(x, 'x');
  const dims = checkShape(shape, x.length, undefined, checkLayout(opts.layout));
  if (opts.outLayout !== undefined && checkLayout(opts.outLayout, 'options.outLayout') !== dims.layout) {
    throw new ArgumentError(
      `options.outLayout is for 8-bit input: a ${describe(x)} is written in its own layout ('${dims.layout}'); got ${describe(opts.outLayout)}`,
    );
  }
  const training = opts.training === undefined ? false : checkBoolean(opts.training, 'options.training');
  const { runningMean, runningVar, weight, bias } = channelOptions(opts, dims.C);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new ArgumentError(`options.runningMean and options.runningVar must be given together; got only ${runningMean === null ? 'runningVar' : 'runningMean'}`);
  }
  if (!training && runningMean === null) {
    throw new ArgumentError('options.runningMean and options.runningVar are required when options.training is false; got neither');
  }
  const momentum = opts.momentum === undefined ? 0.1 : checkMomentum(opts.momentum, false, 'options.momentum')!;
  const eps = opts.eps === undefined ? 1e-5 : checkEps(opts.eps, 'options.eps');
  if (opts.pool !== undefined && !(opts.pool instanceof Pool)) {
    throw new ArgumentError(`options.pool must be a Pool; got ${describe(opts.pool)}`);
  }
  const reduceStats = checkOptionalFunction<NonNullable<BatchNormFunctionalOptions['reduceStats']>>(opts.reduceStats, 'options.reduceStats');
  if (reduceStats !== undefined) {
    if (!training) throw new ArgumentError('options.reduceStats needs options.training true: eval normalizes with the running statistics; got training false');
  }
  const out = checkOut(opts.out, x, dtype);
  const [meanOut, varOut] = checkChannelOuts([[opts.meanOut, 'options.meanOut'], [opts.varOut, 'options.varOut']], 'float64', dims.C, [
    [x, 'x'], [out, 'options.out'], [weight, 'options.weight'], [bias, 'options.bias'], [runningMean, 'options.runningMean'], [runningVar, 'options.runningVar'],
  ]) as [Float64Array | null, Float64Array | null];
  const signal = checkSignal(opts.signal);
  if (training && reduceStats === undefined) checkMoreThanOneValue(dims);
  const pool = (opts.pool as Pool | undefined) ?? getDefaultPool();
  const ctx = poolInternals(pool);
  ctx.assertOpen();
  checkLive([
    [x, 'x'], [out, 'options.out'], [meanOut, 'options.meanOut'], [varOut, 'options.varOut'], [runningMean, 'options.runningMean'],
    [runningVar, 'options.runningVar'], [weight, 'options.weight'], [bias, 'options.bias'],
  ]);
  throwIfAbortedBeforeStart(signal);

  const relu = checkActivation(opts.activation);
  const request = {
    x, dims, dtype, useBatchStats: training, weight, bias, runningMean, runningVar, eps, out, signal, relu, into: { mean: meanOut, var: varOut },
  };
  const unpin = pinArrays([x, out, meanOut, varOut]);
  return ctx.track((async () => {
    try {
      const { result, count } = await runForward(pool, request, reduceStats, dims.C);
      // An empty batch (count 0) leaves the running statistics as they were, as in PyTorch.
      if (training && runningMean !== null && count > 0) {
        await updateRunningStats(ctx, runningMean, runningVar!, result.mean, result.var, count, momentum);
      }
      // y has x's dtype: made of it, or out, checked to have it.
      return { y: result.y, mean: result.mean, var: result.var, count };
    } finally {
      unpin();
    }
  })());
}

/** Options of `batchNormBackward`. */
export interface BatchNormBackwardOptions {
  /** Per-channel mean the forward normalized with (required). */
  mean: FloatArray;
  /** Per-channel 1 / sqrt(var + eps); or give `var` and `eps` instead. */
  invstd?: FloatArray;
  var?: FloatArray;
  eps?: number;
  /** Training-mode gradient (default true); false: dx = weight·invstd·dy. */
  training?: boolean;
  weight?: FloatArray;
  layout?: Layout;
  /** `'relu'` after a forward with a fused ReLU: give its output as `y`, the mask. */
  activation?: 'relu' | null;
  y?: FloatArray;
  pool?: Pool;
  out?: FloatArray;
  /**
   * Float64Arrays of length C to write dWeight and dBias to, instead of new ones each call (for
   * many channels a fresh array's first writes cost page faults); the result holds them.
   */
  dWeight?: Float64Array;
  dBias?: Float64Array;
  signal?: AbortSignal;
  /**
   * SyncBatchNorm (training mode): the all-reduce SUM of this shard's per-channel Σdy and Σdy·x̂,
   * as `BatchNorm.backward`'s option; needs `count`. `mean` and `invstd` (or `var`) must then be
   * the whole batch's: those of `batchNorm` with `reduceStats`, whose result also gives `count`.
   */
  reduceGrads?: (local: GradientSums) => GradientSums | Promise<GradientSums>;
  /** With `reduceGrads`: the values per channel over every shard (N·prod(spatial) summed). */
  count?: number;
}

const BACKWARD_FUNCTIONAL_OPTIONS: OptionKeys<BatchNormBackwardOptions> = {
  mean: true, invstd: true, var: true, eps: true, training: true, weight: true, layout: true, activation: true, y: true,
  pool: true, out: true, dWeight: true, dBias: true, signal: true, reduceGrads: true, count: true,
};

/**
 * Functional backward, like `torch.ops.aten.native_batch_norm_backward`: dx, and dWeight = Σdy·x̂,
 * dBias = Σdy (Float64Array(C)), with x̂ = (x - mean)·invstd.
 *
 * @example
 * const { dx, dWeight, dBias } = await batchNormBackward(x, dy, shape, { mean: r.mean, var: r.var, weight });
 */
export async function batchNormBackward<T extends FloatArray>(
  x: T, dy: FloatArray, shape: readonly number[], options: BatchNormBackwardOptions,
): Promise<{ dx: SameDtype<T>; dWeight: Float64Array; dBias: Float64Array }> {
  const dtype = dtypeOf(x, 'x');
  const opts = checkOptions(options, 'options', BACKWARD_FUNCTIONAL_OPTIONS);
  checkAttached(x, 'x');
  const dims = checkShape(shape, x.length, undefined, checkLayout(opts.layout));
  if (dtypeOf(dy, 'dy') !== dtype || dy.length !== x.length) {
    throw new ArgumentError(`dy must be a ${dtype === 'float64' ? 'Float64Array' : 'Float32Array'} of x's length ${x.length}; got ${describe(dy)}`);
  }
  const channel = (key: string): FloatArray | null =>
    opts[key] === undefined || opts[key] === null ? null : checkChannelArray(opts[key], `options.${key}`, dims.C);
  const mean = channel('mean');
  if (mean === null) throw new ArgumentError('options.mean is required: the per-channel mean the forward used; got none');
  // Without invstd, the workers make it from var and eps.
  const invstd = channel('invstd');
  const variance = channel('var');
  if (invstd === null && variance === null) {
    throw new ArgumentError('options.invstd, or options.var with options.eps, is required; got neither');
  }
  const eps = invstd !== null || opts.eps === undefined ? 1e-5 : checkEps(opts.eps, 'options.eps');
  const weight = channel('weight');
  const training = opts.training === undefined ? true : checkBoolean(opts.training, 'options.training');
  const relu = checkActivation(opts.activation);
  let mask: FloatArray | null = null;
  if (relu) {
    if (opts.y === undefined || dtypeOf(opts.y, 'options.y') !== dtype || (opts.y as FloatArray).length !== x.length) {
      throw new ArgumentError(`options.y, the forward's output, is required with activation 'relu' and must be like x; got ${describe(opts.y)}`);
    }
    mask = opts.y as FloatArray;
  }
  if (opts.pool !== undefined && !(opts.pool instanceof Pool)) {
    throw new ArgumentError(`options.pool must be a Pool; got ${describe(opts.pool)}`);
  }
  const reduceGrads = checkOptionalFunction<NonNullable<BatchNormBackwardOptions['reduceGrads']>>(opts.reduceGrads, 'options.reduceGrads');
  let sync: { reduce: (local: GradientSums) => Promise<GradientSums>; count: number } | null = null;
  if (reduceGrads !== undefined) {
    if (!training) throw new ArgumentError('options.reduceGrads needs options.training true: an eval-mode dx uses no gradient sums; got training false');
    const count = opts.count;
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < dims.N * dims.S) {
      throw new ArgumentError(`options.count must be an integer of at least this shard's ${dims.N * dims.S} values per channel with options.reduceGrads; got ${describe(count)}`);
    }
    sync = { reduce: gradientReducer(reduceGrads, dims.C), count };
  }
  const kept = [[x, 'x'], [mask, 'options.y (the ReLU mask)']] as const;
  const out = checkOut(opts.out, dy, dtype, 'dy', kept);
  // The sums are float64 whatever x's dtype; they must not land on an array the call reads.
  const [dWeightOut, dBiasOut] = checkChannelOuts([[opts.dWeight, 'options.dWeight'], [opts.dBias, 'options.dBias']], 'float64', dims.C, [
    [dy, 'dy'], [out, 'options.out'], ...kept, ...(['mean', 'invstd', 'var', 'weight'] as const).map((key) => [opts[key], `options.${key}`] as const),
  ]);
  const signal = checkSignal(opts.signal);
  const pool = (opts.pool as Pool | undefined) ?? getDefaultPool();
  const ctx = poolInternals(pool);
  ctx.assertOpen();
  checkLive([
    [x, 'x'], [dy, 'dy'], [mask, 'options.y'], [out, 'options.out'], [dWeightOut, 'options.dWeight'], [dBiasOut, 'options.dBias'],
    [weight, 'options.weight'], [mean, 'options.mean'], [invstd, 'options.invstd'], [variance, 'options.var'],
  ]);
  throwIfAbortedBeforeStart(signal);
  const unpin = pinArrays([x, dy, mask, out, dWeightOut, dBiasOut]);
  return ctx.track((async () => {
    try {
      const r = await runBatchNormBackward(pool, {
        x, dims, dtype, weight, out, signal,
        backward: {
          dy, mean, invstd, var: variance ?? undefined, eps, mode: training ? 'train' : 'eval', mask, reduce: sync?.reduce, count: sync?.count,
          dWeightOut, dBiasOut,
        },
      });
      // No gradDtype: float64 sums.
      return { dx: r.dx as SameDtype<T>, dWeight: r.dWeight as Float64Array, dBias: r.dBias as Float64Array };
    } finally {
      unpin();
    }
  })());
}

function checkActivation(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (value !== 'relu') throw new ArgumentError(`options.activation must be 'relu' or null; got ${describe(value)}`);
  return true;
}
