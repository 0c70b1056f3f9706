/**
 * Moving a module's weights between frameworks: PyTorch `state_dict` keys, the Keras weight order,
 * ONNX `BatchNormalization` inputs, and `.safetensors` files. Values move as they are; which
 * estimator filled a running variance (unbiased in PyTorch, biased in ONNX and Keras) is not
 * recorded by any of these formats.
 */
import { type FileHandle, open, writeFile } from 'node:fs/promises';
import type { BatchNormStateDict } from './batch-norm-types.js';
import { ArgumentError, describe, FormatError } from './errors.js';
import {
  decodeTensor, type DecodedTensor, encodeSafetensors, type HeaderEntry, headerLengthOf, parseHeader, type SafeTensor,
} from './safetensors.js';
import type { Dtype } from '../workers/protocol.js';
import { checkChannelValues, checkObject, checkOptions, type FloatArray, type OptionKeys } from './validate.js';

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
function missingKeys(expected: readonly string[], has: (key: string) => boolean): string[] {
  return expected.filter((key) => key !== 'num_batches_tracked' && !has(key));
}

/** The keys `m.stateDict()` gives: its per-channel arrays', and all of them with the count. */
function stateDictKeys(m: Pick<Module, 'affine' | 'trackRunningStats'>): { keys: ChannelKey[]; expected: string[] } {
  const keys: ChannelKey[] = [...(m.affine ? ['weight', 'bias'] as const : []), ...(m.trackRunningStats ? ['running_mean', 'running_var'] as const : [])];
  return { keys, expected: [...keys, ...(m.trackRunningStats ? ['num_batches_tracked'] : [])] };
}

function keysError(expected: readonly string[], missing: readonly string[], unexpected: readonly string[]): ArgumentError {
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

/** Options of `saveSafetensors` and `loadSafetensors`. */
export interface SafetensorsOptions {
  /**
   * Where the module's keys stand in the file: `'layer1.0.bn1.'` (with its dot, as PyTorch's
   * `state_dict()` of a whole model names them) reads `layer1.0.bn1.weight`, `...bias`,
   * `...running_mean`, `...running_var` and `...num_batches_tracked` from a model's file and
   * leaves its other tensors unread; saving writes the keys so named. `''` by default: the file is
   * one module's state dict, with nothing else in it.
   */
  prefix?: string;
}

const SAFETENSORS_OPTIONS: OptionKeys<SafetensorsOptions> = { prefix: true };

/** The options' prefix ('' when not given), checked. */
function checkSafetensorsOptions(options: unknown): string {
  const { prefix = '' } = checkOptions(options, 'options', SAFETENSORS_OPTIONS);
  if (typeof prefix !== 'string') throw new ArgumentError(`options.prefix must be a string; got ${describe(prefix)}`);
  return prefix;
}

/**
 * The state dict as safetensors: tensors of the module's dtype with shape [C], and
 * num_batches_tracked as an int64 scalar, as `torch.save`'s tensors would be; each key after `prefix`.
 */
export function toSafetensors(m: Module, prefix = ''): Uint8Array {
  return encodeSafetensors(tensorsOf(m, prefix), { format: 'pt' });
}

/** The module's state dict as toSafetensors writes it, by name (each key after `prefix`). */
function tensorsOf(m: Module, prefix: string): Record<string, SafeTensor> {
  const sd = m.stateDict();
  const dtype = m.dtype === 'float64' ? 'F64' : 'F32';
  const tensors: Record<string, SafeTensor> = Object.create(null);
  for (const key of ['weight', 'bias', 'running_mean', 'running_var'] as const) {
    const v = sd[key];
    if (v !== undefined) tensors[prefix + key] = { dtype, shape: [m.numFeatures], data: v };
  }
  if (sd.num_batches_tracked !== undefined) {
    tensors[`${prefix}num_batches_tracked`] = { dtype: 'I64', shape: [], data: [Number(sd.num_batches_tracked)] };
  }
  return tensors;
}

/**
 * Several modules' state dicts as one file's tensors, each under its prefix. No two modules' names
 * can meet: the prefixes differ (they are an object's keys), and no key of a state dict ends
 * another.
 */
export function modulesToSafetensors(modules: ReadonlyArray<readonly [string, Module]>): Uint8Array {
  const tensors: Record<string, SafeTensor> = Object.create(null);
  for (const [prefix, m] of modules) Object.assign(tensors, tensorsOf(m, prefix));
  return encodeSafetensors(tensors, { format: 'pt' });
}

/**
 * The entries of a file's header that hold the module's state: every one where `prefix` is '',
 * else those whose names start with it (the rest of a model's file), checked to be exactly the
 * module's keys (prefix taken off) before any is read. Where they are not, an ArgumentError says
 * what the file holds.
 */
function moduleEntries(m: Module, entries: readonly HeaderEntry[], prefix: string, where: string): HeaderEntry[] {
  const chosen = entries.filter((e) => e.name.startsWith(prefix));
  if (prefix !== '' && chosen.length === 0) {
    throw new ArgumentError(`options.prefix ${JSON.stringify(prefix)} starts no tensor name in ${where}; ${heldModules(entries).held}`);
  }
  const names = chosen.map((e) => e.name.slice(prefix.length));
  const { expected } = stateDictKeys(m);
  const missing = missingKeys(expected, (key) => names.includes(key));
  const unexpected = names.filter((key) => !expected.includes(key));
  if (missing.length > 0 || unexpected.length > 0) {
    const { prefixes, held } = heldModules(entries);
    const hint = prefix !== '' && !prefix.endsWith('.') && names.every((name) => name.startsWith('.'))
      ? ` (its names go on with a dot: options.prefix ${JSON.stringify(`${prefix}.`)}?)`
      : prefixes.length > 0 && !prefixes.includes(prefix) ? ` (${held}: options.prefix picks one)` : '';
    throw notFit(keysError(expected, missing, unexpected), prefix, where, hint);
  }
  return chosen;
}

/** The prefixes of a file's BatchNorms (batchNormsIn), and a phrase that lists them. */
function heldModules(entries: readonly HeaderEntry[]): { prefixes: string[]; held: string } {
  const prefixes = batchNormsIn(entries).map((b) => b.prefix);
  const listed = prefixes.slice(0, 8).map((p) => JSON.stringify(p)).join(', ') + (prefixes.length > 8 ? `, ... (${prefixes.length})` : '');
  const held = prefixes.length > 0
    ? `its BatchNorm prefixes (BatchNorm.findInSafetensors) are ${listed}`
    : `it holds ${entries.length} tensors, none a BatchNorm's running statistics`;
  return { prefixes, held };
}

/** A state dict that does not fit the module, from the file `where` (under `prefix`): what the check found, with `hint`. */
function notFit(err: ArgumentError, prefix: string, where: string, hint = ''): ArgumentError {
  const under = prefix === '' ? '' : ` under prefix ${JSON.stringify(prefix)}`;
  return new ArgumentError(`the state dict${under} in ${where} does not fit this module${hint}: ${err.message}`);
}

/** A state dict from tensors by key (the prefix taken off); the module's loadStateDict then checks it whole. */
function stateDictOf(tensors: Iterable<readonly [string, DecodedTensor]>): BatchNormStateDict {
  // No prototype, as in decodeSafetensors: every name in the file is a key the check sees.
  const sd: Record<string, unknown> = Object.create(null);
  for (const [name, t] of tensors) {
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
  return sd as BatchNormStateDict;
}

/**
 * Reads the module's state from safetensors bytes held whole in memory, by the steps a file takes
 * (statesOf), and loads it (the fuzz drives this; `bn.loadSafetensors` reads a file's parts).
 */
export async function fromSafetensors(m: Module, bytes: Uint8Array, prefix = ''): Promise<void> {
  const length = headerLengthOf(bytes, bytes.length);
  const base = 8 + length;
  const { entries } = parseHeader(bytes.subarray(8, base), bytes.length - base);
  const [sd] = await statesOf(entries, [[prefix, m]], 'the file', (e) => bytes.subarray(base + e.begin, base + e.end));
  m.loadStateDict(sd);
}

/** `bn.saveSafetensors(path, options)`: the state dict to a `.safetensors` file. */
export async function saveSafetensorsFile(m: Module, path: unknown, options: unknown): Promise<void> {
  const target = checkPath(path);
  await writeFile(target, toSafetensors(m, checkSafetensorsOptions(options)));
}

/**
 * `bn.loadSafetensors(path, options)`: the module's state from a `.safetensors` file. It reads the
 * header, checks every tensor's entry in it, and reads the module's tensors alone: a model's file
 * of gigabytes costs its header and the module's few kilobytes. A malformed file is a
 * `FormatError` and changes nothing.
 */
export async function loadSafetensorsFile(m: Module, path: unknown, options: unknown): Promise<void> {
  const source = checkPath(path);
  const prefix = checkSafetensorsOptions(options);
  const [sd] = await readModulesFile(source, [[prefix, m]]);
  m.loadStateDict(sd);
}

/** A BatchNorm's state in a `.safetensors` file, as `BatchNorm.findInSafetensors` finds it. */
export interface SafetensorsBatchNorm {
  /** What its keys start with: `'layer1.0.bn1.'`, or `''` in a file of one module (`loadSafetensors`' `options.prefix`). */
  readonly prefix: string;
  /** Its channels: the length of its running statistics. */
  readonly numFeatures: number;
  /** Whether it has a weight and a bias. */
  readonly affine: boolean;
  /** `'float64'` where its running variance is F64, else `'float32'` (F32, F16 and BF16 load into a float32 module). */
  readonly dtype: Dtype;
}

/**
 * `BatchNorm.findInSafetensors(path)`: the modules a file holds the state of a BatchNorm for (names
 * P + running_mean and P + running_var, vectors of one length), by prefix; the header alone is read.
 */
export async function findBatchNormsInFile(path: unknown): Promise<SafetensorsBatchNorm[]> {
  const handle = await open(checkPath(path), 'r');
  try {
    return batchNormsIn((await readHeader(handle)).entries);
  } finally {
    await handle.close();
  }
}

/**
 * The BatchNorms among a header's entries, by prefix: P + running_var and P + running_mean,
 * vectors of one length; affine where P + weight and P + bias are vectors of that length too.
 */
function batchNormsIn(entries: readonly HeaderEntry[]): SafetensorsBatchNorm[] {
  const byName = new Map(entries.map((e) => [e.name, e]));
  const vector = (name: string): number | null => {
    const e = byName.get(name);
    return e !== undefined && e.shape.length === 1 ? e.shape[0] : null;
  };
  const found: SafetensorsBatchNorm[] = [];
  for (const e of entries) {
    if (!e.name.endsWith('running_var')) continue;
    const prefix = e.name.slice(0, -'running_var'.length);
    const C = vector(e.name);
    if (C === null || C === 0 || vector(`${prefix}running_mean`) !== C) continue;
    const affine = vector(`${prefix}weight`) === C && vector(`${prefix}bias`) === C;
    found.push({ prefix, numFeatures: C, affine, dtype: e.dtype === 'F64' ? 'float64' : 'float32' });
  }
  return found.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
}

/**
 * Several modules' state dicts from one `.safetensors` file (a path checked by checkPath), each
 * under its prefix: the header is read once and checked whole, then statesOf; loading them is
 * left to the caller, who applies all or none.
 */
export async function readModulesFile(path: string | URL, modules: ReadonlyArray<readonly [string, Module]>): Promise<BatchNormStateDict[]> {
  const handle = await open(path, 'r');
  try {
    const { base, entries } = await readHeader(handle);
    return await statesOf(entries, modules, String(path), (e) => readAt(handle, base + e.begin, e.end - e.begin));
  } finally {
    await handle.close();
  }
}

/**
 * Each module's state dict from a header's entries under its prefix: every module's keys checked
 * (moduleEntries) before any tensor's bytes are asked of `bytesOf`, and every state dict
 * (checkStateDict) before any is returned; what does not fit is refused whole (notFit).
 */
async function statesOf(
  entries: readonly HeaderEntry[], modules: ReadonlyArray<readonly [string, Module]>, where: string,
  bytesOf: (e: HeaderEntry) => Uint8Array | Promise<Uint8Array>,
): Promise<BatchNormStateDict[]> {
  const chosen = modules.map(([prefix, m]) => moduleEntries(m, entries, prefix, where));
  const states: BatchNormStateDict[] = [];
  for (const [i, [prefix, m]] of modules.entries()) {
    const tensors: [string, DecodedTensor][] = [];
    for (const e of chosen[i]) tensors.push([e.name.slice(prefix.length), decodeTensor(e, await bytesOf(e))]);
    const sd = stateDictOf(tensors);
    try {
      checkStateDict(m, sd);
    } catch (err) {
      throw err instanceof ArgumentError ? notFit(err, prefix, where) : err;
    }
    states.push(sd);
  }
  return states;
}

/** A file's header, checked whole (parseHeader), and where its byte buffer starts. */
async function readHeader(handle: FileHandle): Promise<{ base: number; entries: HeaderEntry[] }> {
  const { size } = await handle.stat();
  const length = headerLengthOf(await readAt(handle, 0, Math.min(8, size)), size);
  const base = 8 + length;
  return { base, entries: parseHeader(await readAt(handle, 8, length), size - base).entries };
}

/** `length` bytes of the file from byte `position` (fewer only where it ends first: a FormatError). */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  for (let done = 0; done < length;) {
    const { bytesRead } = await handle.read(bytes, done, length - done, position + done);
    if (bytesRead === 0) throw new FormatError(`the file ended at byte ${position + done}, before the ${length} bytes from ${position} its header names`);
    done += bytesRead;
  }
  return bytes;
}

/** A file path as `fs` takes it: a string or a file: URL (not a descriptor number, nor anything else). */
export function checkPath(value: unknown): string | URL {
  if (typeof value === 'string' || value instanceof URL) return value;
  throw new ArgumentError(`path must be a string or a URL; got ${describe(value)}`);
}
