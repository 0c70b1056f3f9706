/**
 * Moving a module's weights between frameworks: PyTorch `state_dict` keys, the Keras weight order,
 * ONNX `BatchNormalization` inputs, and `.safetensors` files. Values move as they are; which
 * estimator filled a running variance (unbiased in PyTorch, biased in ONNX and Keras) is not
 * recorded by any of these formats.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { BatchNormStateDict } from './batch-norm-types.js';
import { ArgumentError, describe, FormatError } from './errors.js';
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from './safetensors.js';
import { checkChannelValues, checkObject, type FloatArray } from './validate.js';

/** The weight layouts `exportWeights` writes and `importWeights` reads: a PyTorch state dict, Keras' list, ONNX's inputs. */
export type WeightFormat = 'torch' | 'keras' | 'onnx';

/** ONNX `BatchNormalization` inputs 2 to 5, by their names in the operator's schema. */
export interface OnnxBatchNormInputs {
  scale: FloatArray;
  B: FloatArray;
  input_mean: FloatArray;
  input_var: FloatArray;
}

/** What the helpers need of a module. */
interface Module {
  readonly numFeatures: number;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly dtype: 'float32' | 'float64';
  stateDict(): BatchNormStateDict;
  loadStateDict(sd: BatchNormStateDict): void;
}

/** What checkChannelValues lets through: a float typed array or an array of numbers. */
type ChannelValues = FloatArray | readonly number[];

/** The per-channel arrays of a state dict, by key. */
type ChannelKey = 'weight' | 'bias' | 'running_mean' | 'running_var';

/** A state dict that `checkStateDict` let through: its arrays (checked, not copied) and count (null without running statistics). */
export interface CheckedStateDict {
  readonly arrays: ReadonlyArray<readonly [ChannelKey, ChannelValues]>;
  readonly numBatchesTracked: number | null;
}

/**
 * Checks a state dict for `m.loadStateDict` whole, before anything is copied: exactly the keys
 * `m.stateDict()` gives, arrays of C numbers, and a count that is a non-negative integer (a
 * bigint too).
 */
export function checkStateDict(m: Omit<Module, 'stateDict' | 'loadStateDict'>, stateDict: unknown): CheckedStateDict {
  const sd = checkObject(stateDict, 'stateDict');
  const keys: ChannelKey[] = [...(m.affine ? ['weight', 'bias'] as const : []), ...(m.trackRunningStats ? ['running_mean', 'running_var'] as const : [])];
  const expected = [...keys, ...(m.trackRunningStats ? ['num_batches_tracked'] : [])];
  const missing = expected.filter((key) => !(key in sd));
  const unexpected = Object.keys(sd).filter((key) => !expected.includes(key));
  if (missing.length > 0 || unexpected.length > 0) {
    throw new ArgumentError(
      `stateDict must have exactly the keys ${describe(expected)}; missing ${describe(missing)}, unexpected ${describe(unexpected)}`,
    );
  }
  const arrays = keys.map((key) => [key, checkChannelValues(sd[key], `stateDict.${key}`, m.numFeatures) as ChannelValues] as const);
  return { arrays, numBatchesTracked: m.trackRunningStats ? checkCount(sd.num_batches_tracked) : null };
}

function checkCount(value: unknown): number {
  const count = typeof value === 'bigint' ? Number(value) : value;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    throw new ArgumentError(`stateDict.num_batches_tracked must be a non-negative integer; got ${describe(value)}`);
  }
  return count;
}

export function checkFormat(value: unknown): WeightFormat {
  if (value !== 'torch' && value !== 'keras' && value !== 'onnx') {
    throw new ArgumentError(`format must be 'torch', 'keras' or 'onnx'; got ${describe(value)}`);
  }
  return value;
}

/** Keras: [gamma, beta, moving_mean, moving_variance] (gamma and beta only when affine). */
export function toKeras(m: Module): FloatArray[] {
  requireRunningStats(m, 'keras');
  const sd = m.stateDict();
  return [...(m.affine ? [sd.weight, sd.bias] : []), sd.running_mean, sd.running_var] as FloatArray[];
}

export function fromKeras(m: Module, weights: unknown): void {
  requireRunningStats(m, 'keras');
  const names = m.affine ? ['gamma', 'beta', 'moving_mean', 'moving_variance'] : ['moving_mean', 'moving_variance'];
  if (!Array.isArray(weights) || weights.length !== names.length) {
    throw new ArgumentError(`keras weights must be an array of ${names.length} arrays [${names.join(', ')}]; got ${describe(weights)}`);
  }
  const [a, b, c, d] = weights.map((w: unknown, k) => checkChannelValues(w, `keras weights[${k}] (${names[k]})`, m.numFeatures) as ChannelValues);
  const current = m.stateDict().num_batches_tracked;
  m.loadStateDict(m.affine
    ? { weight: a, bias: b, running_mean: c, running_var: d, num_batches_tracked: current }
    : { running_mean: a, running_var: b, num_batches_tracked: current });
}

/** ONNX: scale and B are ones and zeros when the module is not affine. */
export function toOnnx(m: Module): OnnxBatchNormInputs {
  requireRunningStats(m, 'onnx');
  const sd = m.stateDict();
  const make = (fill: number): FloatArray => (m.dtype === 'float64' ? new Float64Array(m.numFeatures) : new Float32Array(m.numFeatures)).fill(fill);
  return {
    scale: (sd.weight as FloatArray | undefined) ?? make(1),
    B: (sd.bias as FloatArray | undefined) ?? make(0),
    input_mean: sd.running_mean as FloatArray,
    input_var: sd.running_var as FloatArray,
  };
}

export function fromOnnx(m: Module, inputs: unknown): void {
  requireRunningStats(m, 'onnx');
  const i = inputs as Record<keyof OnnxBatchNormInputs, unknown> | null;
  if (i === null || typeof i !== 'object') throw new ArgumentError(`onnx weights must be {scale, B, input_mean, input_var}; got ${describe(inputs)}`);
  // Without affine, scale and B may be left out; given, they must be the identity.
  const take = (key: keyof OnnxBatchNormInputs, optional: boolean): ChannelValues | undefined => (
    optional && i[key] === undefined ? undefined : checkChannelValues(i[key], `onnx weights.${key}`, m.numFeatures) as ChannelValues
  );
  const scale = take('scale', !m.affine);
  const B = take('B', !m.affine);
  const mean = take('input_mean', false);
  const variance = take('input_var', false);
  if (!m.affine) {
    const identity = (v: ArrayLike<number> | undefined, fill: number): boolean => v === undefined || Array.from(v).every((x) => x === fill);
    if (!identity(scale, 1) || !identity(B, 0)) {
      throw new ArgumentError('onnx scale and B must be ones and zeros for a module with affine: false');
    }
  }
  const current = m.stateDict().num_batches_tracked;
  m.loadStateDict({
    ...(m.affine ? { weight: scale, bias: B } : {}),
    running_mean: mean, running_var: variance, num_batches_tracked: current,
  });
}

function requireRunningStats(m: Module, format: WeightFormat): void {
  if (!m.trackRunningStats) {
    throw new ArgumentError(`format '${format}' needs running statistics; the module has trackRunningStats: false`);
  }
}

/**
 * The state dict as safetensors: tensors of the module's dtype with shape [C], and
 * num_batches_tracked as an int64 scalar, as `torch.save`'s tensors would be.
 */
export function toSafetensors(m: Module): Uint8Array {
  const sd = m.stateDict();
  const dtype = m.dtype === 'float64' ? 'F64' : 'F32';
  const tensors: Record<string, SafeTensor> = {};
  for (const key of ['weight', 'bias', 'running_mean', 'running_var'] as const) {
    const v = sd[key];
    if (v !== undefined) tensors[key] = { dtype, shape: [m.numFeatures], data: v };
  }
  if (sd.num_batches_tracked !== undefined) {
    tensors.num_batches_tracked = { dtype: 'I64', shape: [], data: [Number(sd.num_batches_tracked)] };
  }
  return encodeSafetensors(tensors, { format: 'pt' });
}

/** Reads a state dict from safetensors bytes; the module's loadStateDict then checks it whole. */
export function fromSafetensors(m: Module, bytes: Uint8Array): void {
  const { tensors } = decodeSafetensors(bytes);
  // No prototype, as in decodeSafetensors: every name in the file is a key the check below sees.
  const sd: Record<string, unknown> = Object.create(null);
  for (const [name, t] of Object.entries(tensors)) {
    if (name === 'num_batches_tracked') {
      if (t.shape.length !== 0 && !(t.shape.length === 1 && t.shape[0] === 1)) {
        throw new FormatError(`num_batches_tracked must be a scalar; got shape ${JSON.stringify(t.shape)}`);
      }
      sd[name] = t.data[0];
    } else {
      if (t.shape.length !== 1) throw new FormatError(`${name} must have shape [C]; got ${JSON.stringify(t.shape)}`);
      sd[name] = Array.from(t.data);
    }
  }
  m.loadStateDict(sd as BatchNormStateDict);
}

/** `bn.saveSafetensors(path)`: the state dict to a `.safetensors` file. */
export async function saveSafetensorsFile(m: Module, path: unknown): Promise<void> {
  await writeFile(checkPath(path), toSafetensors(m));
}

/** `bn.loadSafetensors(path)`: a state dict from a `.safetensors` file; a malformed file is a `FormatError` and changes nothing. */
export async function loadSafetensorsFile(m: Module, path: unknown): Promise<void> {
  const bytes = new Uint8Array(await readFile(checkPath(path)));
  try {
    fromSafetensors(m, bytes);
  } catch (err) {
    // A well-formed file of another module: say which file, then what the state dict check found.
    if (err instanceof ArgumentError) {
      throw new ArgumentError(`the state dict in ${String(path)} does not fit this module: ${err.message}`);
    }
    throw err;
  }
}

/** A file path as `fs` takes it: a string or a file: URL (not a descriptor number, nor anything else). */
function checkPath(value: unknown): string | URL {
  if (typeof value === 'string' || value instanceof URL) return value;
  throw new ArgumentError(`path must be a string or a URL; got ${describe(value)}`);
}
