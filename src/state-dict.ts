/**
 * What a module's state dict must hold, checked whole before anything loads: the keys
 * `stateDict()` gives (num_batches_tracked optional, as PyTorch's BatchNorm takes it), arrays of C
 * numbers, and a non-negative count. `loadStateDict` and every file reader share these checks.
 */
import type { BatchNormStateDict } from './batch-norm-types.js';
import { ArgumentError, describe } from './errors.js';
import { checkChannelValues, checkObject, type FloatArray } from './validate.js';

/** What the helpers need of a module. */
export interface Module {
  readonly numFeatures: number;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly dtype: 'float32' | 'float64';
  stateDict(): BatchNormStateDict;
  loadStateDict(sd: BatchNormStateDict): void;
}

/** What checkChannelValues lets through: a float typed array or an array of numbers. */
export type ChannelValues = FloatArray | readonly number[];

/** The per-channel arrays of a state dict, by key. */
export type ChannelKey = 'weight' | 'bias' | 'running_mean' | 'running_var';

/** A state dict that `checkStateDict` let through: its arrays (checked, not copied) and count (null without running statistics). */
export interface CheckedStateDict {
  readonly arrays: ReadonlyArray<readonly [ChannelKey, ChannelValues]>;
  readonly numBatchesTracked: number | null;
}

/**
 * Checks a state dict for `m.loadStateDict` whole, before anything is copied: the keys
 * `m.stateDict()` gives (num_batches_tracked may be left out: missingKeys), arrays of C numbers,
 * and a count that is a non-negative integer (a bigint too). A count left out is null: the module
 * keeps its own.
 */
export function checkStateDict(m: Omit<Module, 'stateDict' | 'loadStateDict'>, stateDict: unknown): CheckedStateDict {
  const sd = checkObject(stateDict, 'stateDict');
  const { keys, expected } = stateDictKeys(m);
  const missing = missingKeys(expected, (key) => key in sd);
  const unexpected = Object.keys(sd).filter((key) => !expected.includes(key));
  if (missing.length > 0 || unexpected.length > 0) throw keysError(expected, missing, unexpected);
  const arrays = keys.map((key) => [key, checkChannelValues(sd[key], `stateDict.${key}`, m.numFeatures) as ChannelValues] as const);
  return { arrays, numBatchesTracked: m.trackRunningStats && 'num_batches_tracked' in sd ? checkCount(sd.num_batches_tracked) : null };
}

/**
 * The keys of `expected` a state dict lacks, but for num_batches_tracked, which it may lack:
 * PyTorch's BatchNorm takes a dict without it (one with no version metadata: a plain dict,
 * safetensors' `load_file`) under `strict=True` and keeps its own count (_NormBase.
 * _load_from_state_dict; seen on PyTorch 2.11, bench/MACHINES.md). Before the buffer existed
 * (PyTorch 0.4.1) checkpoints had none.
 */
export function missingKeys(expected: readonly string[], has: (key: string) => boolean): string[] {
  return expected.filter((key) => key !== 'num_batches_tracked' && !has(key));
}

/** The keys `m.stateDict()` gives: its per-channel arrays', and all of them with the count. */
export function stateDictKeys(m: Pick<Module, 'affine' | 'trackRunningStats'>): { keys: ChannelKey[]; expected: string[] } {
  const keys: ChannelKey[] = [...(m.affine ? ['weight', 'bias'] as const : []), ...(m.trackRunningStats ? ['running_mean', 'running_var'] as const : [])];
  return { keys, expected: [...keys, ...(m.trackRunningStats ? ['num_batches_tracked'] : [])] };
}

export function keysError(expected: readonly string[], missing: readonly string[], unexpected: readonly string[]): ArgumentError {
  const optional = expected.includes('num_batches_tracked') ? ' (num_batches_tracked may be left out)' : '';
  return new ArgumentError(
    `stateDict must have exactly the keys ${describe(expected)}${optional}; missing ${describe(missing)}, unexpected ${describe(unexpected)}`,
  );
}

function checkCount(value: unknown): number {
  const count = typeof value === 'bigint' ? Number(value) : value;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    throw new ArgumentError(`stateDict.num_batches_tracked must be a non-negative integer; got ${describe(value)}`);
  }
  return count;
}