/**
 * The checks of `BatchNorm`'s arguments that are the module's own (validate.ts has those it
 * shares with the functional forms): its constructor's options, the calls' option names, what a
 * forward of 8-bit input and a backward need of the module's state. Each throws before anything
 * changes.
 */
import type { Dtype } from '../workers/protocol.js';
import type { BackwardOptions, BatchNormOptions, ForwardOptions } from './batch-norm-types.js';
import { CONVENTIONS, type Convention, type ConventionRules } from './conventions.js';
import { ArgumentError, describe, DtypeError, NoForwardError, SingleValueError } from './errors.js';
import { allocationOf } from './pool-internals.js';
import { Pool } from './pool.js';
import {
  checkBoolean, checkDtypeName, checkEps, checkIntact, checkLayout, checkMomentum, checkOptions, checkPositiveInteger, type Dims,
  type FloatArray, type Layout, type OptionKeys,
} from './validate.js';

const BATCH_NORM_OPTIONS: OptionKeys<BatchNormOptions> = {
  convention: true, eps: true, momentum: true, affine: true, trackRunningStats: true, dtype: true, pool: true, layout: true,
  activation: true,
};

/** The options `forward` takes. */
export const FORWARD_OPTIONS: OptionKeys<ForwardOptions> = { out: true, signal: true, reduceStats: true };

/** The options `backward` takes. */
export const BACKWARD_OPTIONS: OptionKeys<BackwardOptions> = { out: true, dWeight: true, dBias: true, signal: true, reduceGrads: true };

/**
 * The most channels a module takes: a call keeps at least 124 bytes of scratch a channel
 * (parameters 32, per-channel arrays 48, a 32-byte partial for each of its blocks, float32 row
 * parameters 12) and a row-mode task 32 more, so from ~28M channels on no call fits the 4 GiB a
 * pool's memory can reach, and an absurd count (2^31) would only allocate gigabytes of
 * parameters before failing.
 */
const MAX_FEATURES = 2 ** 25;

/** A module's settings, from `new BatchNorm(numFeatures, options)` with the convention's defaults filled in. */
export interface ModuleSettings {
  readonly numFeatures: number;
  readonly convention: Convention;
  readonly rules: ConventionRules;
  readonly layout: Layout;
  readonly activation: 'relu' | null;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly dtype: Dtype;
  readonly pool: Pool | null;
}

/** Checks `new BatchNorm()`'s arguments and fills in the defaults (PyTorch's, or the convention's). */
export function checkModuleSettings(numFeatures: number, options: BatchNormOptions | undefined): ModuleSettings {
  checkPositiveInteger(numFeatures, 'numFeatures');
  if (numFeatures > MAX_FEATURES) {
    throw new ArgumentError(
      `numFeatures must be at most ${MAX_FEATURES} (2^25: a call keeps over 100 bytes of scratch a channel in a pool's memory, at most 4 GiB); got ${numFeatures}`,
    );
  }
  const opts = checkOptions(options, 'options', BATCH_NORM_OPTIONS);
  const convention = opts.convention ?? 'torch';
  if (convention !== 'torch' && convention !== 'onnx' && convention !== 'keras') {
    throw new ArgumentError(`options.convention must be 'torch', 'onnx' or 'keras'; got ${describe(convention)}`);
  }
  const rules = CONVENTIONS[convention];
  const layout = checkLayout(opts.layout);
  if (opts.activation !== undefined && opts.activation !== null && opts.activation !== 'relu') {
    throw new ArgumentError(`options.activation must be 'relu' or null; got ${describe(opts.activation)}`);
  }
  const eps = opts.eps === undefined ? rules.eps : checkEps(opts.eps, 'options.eps');
  const momentum = opts.momentum === undefined ? rules.momentum : checkMomentum(opts.momentum, true, 'options.momentum');
  const affine = opts.affine === undefined ? true : checkBoolean(opts.affine, 'options.affine');
  const trackRunningStats = opts.trackRunningStats === undefined ? true : checkBoolean(opts.trackRunningStats, 'options.trackRunningStats');
  const dtype = opts.dtype === undefined ? 'float32' : checkDtypeName(opts.dtype, 'options.dtype');
  if (opts.pool !== undefined && !(opts.pool instanceof Pool)) {
    throw new ArgumentError(`options.pool must be a Pool; got ${describe(opts.pool)}`);
  }
  return {
    numFeatures, convention, rules, layout, activation: (opts.activation as 'relu' | undefined) ?? null, eps, momentum, affine,
    trackRunningStats, dtype, pool: (opts.pool as Pool | undefined) ?? null,
  };
}

/** PyTorch's check: batch statistics need more than one value per channel. */
export function checkMoreThanOneValue(dims: Dims): void {
  if (dims.N * dims.S === 1) {
    throw new SingleValueError(
      `Expected more than 1 value per channel when training, got input shape ${describe(dims.shape)}`,
    );
  }
}

/**
 * A module's forward of 8-bit input `x` normalizes with the running statistics into float32: a
 * float32 module in eval mode with running statistics, and no all-reduce hook.
 */
export function checkBytesForward(
  x: ArrayBufferView, module: { readonly dtype: Dtype; readonly training: boolean; readonly trackRunningStats: boolean }, reduceStats: unknown,
): void {
  if (module.dtype !== 'float32') {
    throw new DtypeError(`x may be 8-bit (${describe(x)}) only for a float32 module, whose output is float32; this module's dtype is '${module.dtype}'`);
  }
  if (module.training) {
    throw new ArgumentError(`8-bit input (${describe(x)}) is normalized with the running statistics only: call eval() first; the module is in training mode`);
  }
  if (!module.trackRunningStats) {
    throw new ArgumentError(`8-bit input (${describe(x)}) is normalized with the running statistics only; this module has trackRunningStats false`);
  }
  if (reduceStats !== undefined) {
    throw new ArgumentError(`options.reduceStats is for batch statistics; 8-bit input (${describe(x)}) is normalized with the running statistics; got ${describe(reduceStats)}`);
  }
}

/** What the latest forward leaves for `backward`. */
export interface SavedForward {
  readonly x: FloatArray;
  /** The output, kept as the ReLU mask when the module has `activation: 'relu'`. */
  readonly y: FloatArray | null;
  /** The forward wrote its output over x: its input is gone. */
  readonly inPlace: boolean;
  readonly dims: Dims;
  readonly mean: Float64Array;
  /** The variance normalized with, and eps: the backward's prep makes invstd from them. */
  readonly var: Float64Array;
  readonly eps: number;
  readonly mode: 'train' | 'eval';
  /** The statistics came through `reduceStats`: values per channel over every shard; else null. */
  readonly syncedCount: number | null;
  /** x's and y's pool allocations at the forward (`allocationOf`; null: not on a pool, or no y). */
  readonly allocations: readonly [number | null, number | null];
}

/**
 * What a backward, when its turn comes, needs of the latest forward (`saved`; 'bytes' after one
 * of 8-bit input): one of float input that kept its input, and `reduceGrads` exactly when that
 * forward had `reduceStats`.
 */
export function checkSavedForward(saved: SavedForward | 'bytes' | null, reduceGrads: unknown): SavedForward {
  if (saved === null) throw new NoForwardError('backward needs a forward first: this module has not run one');
  if (saved === 'bytes') {
    throw new NoForwardError('backward needs a forward of float input; the latest forward took 8-bit input, which is normalized and not differentiated');
  }
  if (saved.syncedCount !== null && reduceGrads === undefined) {
    throw new ArgumentError('backward after a forward with options.reduceStats needs options.reduceGrads, the all-reduce of the gradient sums; got none');
  }
  if (saved.syncedCount === null && reduceGrads !== undefined) {
    throw new ArgumentError('options.reduceGrads applies only after a forward with options.reduceStats; the latest forward had none');
  }
  if (saved.inPlace) throw new ArgumentError('backward needs the forward input, but the latest forward wrote its output over it (options.out was x)');
  return saved;
}

/**
 * The saved forward's x and ReLU output, which a backward reads again, checked when its turn
 * comes: each still holds its values (its owner may have detached or shrunk it) and, where it was
 * on a pool, is still in the allocation it was in at the forward (a block freed since with
 * `pool.free` may have been handed out again and written: the backward would take those values
 * for x). Returns them with their names, the ones there are, for the overlap checks of `out`.
 */
export function checkSavedArrays(saved: SavedForward): (readonly [FloatArray, string])[] {
  const kept = [[saved.x, saved.allocations[0], 'the forward input x'], [saved.y, saved.allocations[1], "the forward's output (the ReLU mask)"]] as const;
  const named: (readonly [FloatArray, string])[] = [];
  for (const [array, allocation, name] of kept) {
    if (array === null) continue;
    checkIntact(array, saved.dims.length, name);
    if (allocation !== null && allocationOf(array) !== allocation) {
      throw new ArgumentError(`${name} must stay allocated until the backward, which reads it; it was freed (pool.free) after the forward`);
    }
    named.push([array, name]);
  }
  return named;
}

/** A module's per-channel arrays (null where it has none), as checkModuleArrays reads them. */
interface ModuleArrays {
  readonly numFeatures: number;
  readonly weight: FloatArray | null;
  readonly bias: FloatArray | null;
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
}

/**
 * The module's weight, bias and running statistics, each still holding its C values: they are
 * plain arrays, which their owner can transfer or shrink. Checked together before a method that
 * reads or writes them changes anything: `loadStateDict` would otherwise load the weight, the bias
 * and the running mean before it reached a detached running variance, and throw a TypeError.
 * (A call checks them where it reads them, with the same names: validate.ts, checkIntact.)
 */
export function checkModuleArrays(m: ModuleArrays): void {
  const arrays = [
    [m.weight, 'weight'], [m.bias, 'bias'], [m.runningMean, 'the running mean'], [m.runningVar, 'the running variance'],
  ] as const;
  for (const [array, name] of arrays) if (array !== null) checkIntact(array, m.numFeatures, name, '');
}
