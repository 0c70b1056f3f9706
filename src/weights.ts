/**
 * Moving a module's weights between frameworks: PyTorch `state_dict` keys, the Keras weight order,
 * ONNX `BatchNormalization` inputs, and `.safetensors` files. Values move as they are; which
 * estimator filled a running variance (unbiased in PyTorch, biased in ONNX and Keras) is not
 * recorded by any of these formats.
 */
import { type FileHandle, open, writeFile } from 'node:fs/promises';
import type { BatchNormStateDict } from './batch-norm-types.js';
import { ArgumentError, describe } from './errors.js';
import { checkPath, readBytes } from './files.js';
import { encodeSafetensors, type HeaderEntry, headerLengthOf, parseHeader, type SafeTensor } from './safetensors.js';
import type { ChannelValues, Module } from './state-dict.js';
import { batchNormsIn, type SafetensorsBatchNorm, statesOf } from './tensor-states.js';
import { archiveFolder, encodeTorchStateDict } from './torch-save.js';
import { checkBoolean, checkChannelValues, checkOptions, type FloatArray, type OptionKeys } from './validate.js';
import { holdsLoneSurrogate } from './utf8.js';

/** The call that lists a `.safetensors` file's BatchNorms, as messages name it. */
const FINDER = 'BatchNorm.findInSafetensors';

/** The weight layouts `exportWeights` writes and `importWeights` reads: a PyTorch state dict, Keras' list, ONNX's inputs. */
export type WeightFormat = 'torch' | 'keras' | 'onnx';

/** ONNX `BatchNormalization` inputs 2 to 5, by their names in the operator's schema. */
export interface OnnxBatchNormInputs {
  scale: FloatArray;
  B: FloatArray;
  input_mean: FloatArray;
  input_var: FloatArray;
}

export function checkFormat(value: unknown): WeightFormat {
  if (value !== 'torch' && value !== 'keras' && value !== 'onnx') {
    throw new ArgumentError(`format must be 'torch', 'keras' or 'onnx'; got ${describe(value)}`);
  }
  return value;
}

/**
 * Which of gamma and beta a Keras layer holds: its `scale` and `center` (both the module's
 * `affine` by default). `keras.layers.BatchNormalization(scale=False)`, as Keras suggests before a
 * ReLU, has no gamma; `center=False` no beta.
 */
export interface KerasWeightsOptions {
  scale?: boolean;
  center?: boolean;
}

const KERAS_OPTIONS: OptionKeys<KerasWeightsOptions> = { scale: true, center: true };

/** Options are the 'keras' format's alone: given with another, an ArgumentError. */
export function onlyKerasOptions(format: WeightFormat, options: unknown): void {
  if (options !== undefined && format !== 'keras') {
    throw new ArgumentError(`options (a Keras layer's scale and center) are for format 'keras'; got ${describe(options)} with format '${format}'`);
  }
}

/** The layer's scale and center, from the options (the module's `affine` where not given). */
function kerasLayer(m: Module, options: unknown): { scale: boolean; center: boolean } {
  const { scale = m.affine, center = m.affine } = checkOptions(options, 'options', KERAS_OPTIONS);
  return { scale: checkBoolean(scale, 'options.scale'), center: checkBoolean(center, 'options.center') };
}

/** A new array of the module's dtype, one `fill` a channel: the identity weight (1) or bias (0) a module without affine gives. */
function filled(m: Module, fill: number): FloatArray {
  return (m.dtype === 'float64' ? new Float64Array(m.numFeatures) : new Float32Array(m.numFeatures)).fill(fill);
}

/** The names of a Keras layer's weights, in get_weights() order. */
function kerasNames(scale: boolean, center: boolean): string[] {
  return [...(scale ? ['gamma'] : []), ...(center ? ['beta'] : []), 'moving_mean', 'moving_variance'];
}

/**
 * `values` is all `fill` (the identity gamma or beta), or an ArgumentError saying where it is
 * not: a weight or bias that a layer without it, or a module without it, cannot hold.
 */
function checkIdentity(values: ArrayLike<number>, fill: number, what: string, because: string): void {
  for (let c = 0; c < values.length; c++) {
    if (values[c] !== fill) {
      throw new ArgumentError(`${what} must be all ${fill === 1 ? 'ones' : 'zeros'}, ${because}; got ${values[c]} at channel ${c}`);
    }
  }
}

/**
 * Keras: [gamma, beta, moving_mean, moving_variance], gamma only where the layer scales and beta
 * only where it centers (`options`). A module's weight goes where the layer has no gamma only if
 * all ones, its bias only if all zeros; a module without them gives ones and zeros.
 */
export function toKeras(m: Module, options?: unknown): FloatArray[] {
  requireRunningStats(m, 'keras');
  const { scale, center } = kerasLayer(m, options);
  const sd = m.stateDict();
  const weight = sd.weight as FloatArray | undefined;
  const bias = sd.bias as FloatArray | undefined;
  if (weight !== undefined && !scale) checkIdentity(weight, 1, "the module's weight", 'as a Keras layer with scale: false has no gamma to hold it');
  if (bias !== undefined && !center) checkIdentity(bias, 0, "the module's bias", 'as a Keras layer with center: false has no beta to hold it');
  return [...(scale ? [weight ?? filled(m, 1)] : []), ...(center ? [bias ?? filled(m, 0)] : []), sd.running_mean as FloatArray, sd.running_var as FloatArray];
}

/**
 * Loads a Keras layer's get_weights() list (`toKeras`'s form, for the layer `options` names). A
 * gamma or beta the layer lacks is the identity: ones and zeros. A module without affine takes
 * them only as the identity.
 */
export function fromKeras(m: Module, weights: unknown, options?: unknown): void {
  requireRunningStats(m, 'keras');
  const { scale, center } = kerasLayer(m, options);
  const names = kerasNames(scale, center);
  if (!Array.isArray(weights) || weights.length !== names.length) {
    throw new ArgumentError(`keras weights must be an array of ${names.length} arrays [${names.join(', ')}]; got ${describe(weights)}`);
  }
  const values = weights.map((w: unknown, k) => checkChannelValues(w, `keras weights[${k}] (${names[k]})`, m.numFeatures) as ChannelValues);
  const gamma = scale ? values.shift() : undefined;
  const beta = center ? values.shift() : undefined;
  const [mean, variance] = values;
  if (!m.affine) {
    if (gamma !== undefined) checkIdentity(gamma, 1, 'keras gamma', 'as the module has affine: false (no weight)');
    if (beta !== undefined) checkIdentity(beta, 0, 'keras beta', 'as the module has affine: false (no bias)');
  }
  const current = m.stateDict().num_batches_tracked;
  m.loadStateDict(m.affine
    ? { weight: gamma ?? filled(m, 1), bias: beta ?? filled(m, 0), running_mean: mean, running_var: variance, num_batches_tracked: current }
    : { running_mean: mean, running_var: variance, num_batches_tracked: current });
}

/** ONNX: scale and B are ones and zeros when the module is not affine. */
export function toOnnx(m: Module): OnnxBatchNormInputs {
  requireRunningStats(m, 'onnx');
  const sd = m.stateDict();
  return {
    scale: (sd.weight as FloatArray | undefined) ?? filled(m, 1),
    B: (sd.bias as FloatArray | undefined) ?? filled(m, 0),
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
    if (scale !== undefined) checkIdentity(scale, 1, 'onnx scale', 'as the module has affine: false (no weight)');
    if (B !== undefined) checkIdentity(B, 0, 'onnx B', 'as the module has affine: false (no bias)');
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

/** The options' prefix ('' when not given), checked for `use`: to load a file, or to save one whose names are so written. */
function checkSafetensorsOptions(options: unknown, use: 'load' | NameEncoding): string {
  const { prefix = '' } = checkOptions(options, 'options', SAFETENSORS_OPTIONS);
  return checkPrefix(prefix, 'options.prefix', use);
}

/**
 * How a file format writes its tensors' names: as UTF-8 (a `.safetensors` header), which has no
 * lone surrogate (TextEncoder would write U+FFFD in its place, and safetensors' reader refuses the
 * JSON escape of one), or as CPython's pickler writes a str, "surrogatepass" (a torch.save
 * file): UTF-8 with a lone surrogate as its three bytes (ED A0 80 for U+D800).
 */
export type NameEncoding = 'utf-8' | 'surrogatepass';

/**
 * A prefix of a file's tensor names, checked for `use`: a string, and to save a format that writes
 * names as UTF-8, well-formed Unicode. To load, a lone surrogate is a name's like any other
 * character: a pickle's strings can hold one (torch.load and bnpool read them "surrogatepass");
 * a `.safetensors` name cannot.
 */
export function checkPrefix(value: unknown, name: string, use: 'load' | NameEncoding): string {
  if (typeof value !== 'string') throw new ArgumentError(`${name} must be a string; got ${describe(value)}`);
  if (use === 'utf-8' && holdsLoneSurrogate(value)) {
    throw new ArgumentError(`${name} must be well-formed Unicode to save in a format that writes names as UTF-8; got ${JSON.stringify(value)}, which holds a lone surrogate`);
  }
  return value;
}

/**
 * The state dict as safetensors: tensors of the module's dtype with shape [C], and
 * num_batches_tracked as an int64 scalar, as `torch.save`'s tensors would be; each key after `prefix`.
 */
export function toSafetensors(m: Module, prefix = ''): Uint8Array {
  return modulesToSafetensors([[prefix, m]]);
}

/** The module's state dict as the file writers write it, by name (each key after `prefix`). */
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
 * Several modules' state dicts as the bytes of a file at `path` that `torch.load` reads
 * (torch-save.ts), each under its prefix, in the modules' order, as `torch.save(model.state_dict(),
 * path)` writes a model's: `_metadata` gives each module's BatchNorm version under its name, the
 * prefix without its dot (`''` for a prefix `''`; a prefix that does not end in a dot names no
 * module).
 */
export function modulesToTorchFile(modules: ReadonlyArray<readonly [string, Module]>, path: string): Uint8Array {
  const tensors = modules.flatMap(([prefix, m]) => Object.entries(tensorsOf(m, prefix)));
  const names = modules.flatMap(([prefix]) => (prefix === '' ? [''] : prefix.endsWith('.') ? [prefix.slice(0, -1)] : []));
  return encodeTorchStateDict(tensors, names, archiveFolder(path));
}

/**
 * Reads the module's state from safetensors bytes held whole in memory, by the steps a file takes
 * (statesOf), and loads it (the fuzz drives this; `bn.loadSafetensors` reads a file's parts).
 */
export async function fromSafetensors(m: Module, bytes: Uint8Array, prefix = ''): Promise<void> {
  const length = headerLengthOf(bytes, bytes.length);
  const base = 8 + length;
  const { entries } = parseHeader(bytes.subarray(8, base), bytes.length - base);
  const [sd] = await statesOf(entries, [[prefix, m]], { where: 'the file', finder: FINDER }, (e) => bytes.subarray(base + e.begin, base + e.end));
  m.loadStateDict(sd);
}

/**
 * A file format's writer: `encode` gives modules' state dicts, each under its prefix, as the
 * bytes of a file at `path` (a format may name its contents after the file: torch.save's archive
 * folder), whose names it writes as `names` says.
 */
export interface ModulesWriter {
  readonly encode: (modules: ReadonlyArray<readonly [string, Module]>, path: string) => Uint8Array;
  readonly names: NameEncoding;
}

/** `.safetensors` files: names in the header's JSON, UTF-8. */
export const SAFETENSORS_WRITER: ModulesWriter = { encode: modulesToSafetensors, names: 'utf-8' };

/** torch.save files: names in the pickle, as CPython's pickler writes a str. */
export const TORCH_FILE_WRITER: ModulesWriter = { encode: modulesToTorchFile, names: 'surrogatepass' };

/**
 * A module's method that saves it to a file under `options.prefix` (`saveSafetensors`,
 * `saveTorchFile`): the path and options checked (the prefix for `writer`'s names), then the
 * bytes `writer` gives written; the save side of loadModuleFile.
 */
export async function saveModuleFile(m: Module, path: unknown, options: unknown, writer: ModulesWriter): Promise<void> {
  const target = checkPath(path);
  const prefix = checkSafetensorsOptions(options, writer.names);
  await writeFile(target, writer.encode([[prefix, m]], target));
}

/** `bn.saveSafetensors(path, options)`: the state dict to a `.safetensors` file. */
export async function saveSafetensorsFile(m: Module, path: unknown, options: unknown): Promise<void> {
  await saveModuleFile(m, path, options, SAFETENSORS_WRITER);
}

/**
 * `bn.loadSafetensors(path, options)`: the module's state from a `.safetensors` file. It reads the
 * header, checks every tensor's entry in it, and reads the module's tensors alone: a model's file
 * of gigabytes costs its header and the module's few kilobytes. A malformed file is a
 * `FormatError` and changes nothing.
 */
export async function loadSafetensorsFile(m: Module, path: unknown, options: unknown): Promise<void> {
  await loadModuleFile(m, path, options, readModulesFile);
}

/**
 * A module's method that loads it from a file under `options.prefix` (`loadSafetensors`,
 * `loadTorchFile`): the path and options checked, then the state dict `read` gives (checked),
 * then the load.
 */
export async function loadModuleFile(
  m: Module, path: unknown, options: unknown,
  read: (path: string, modules: ReadonlyArray<readonly [string, Module]>) => Promise<BatchNormStateDict[]>,
): Promise<void> {
  const source = checkPath(path);
  const prefix = checkSafetensorsOptions(options, 'load');
  const [sd] = await read(source, [[prefix, m]]);
  m.loadStateDict(sd);
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
 * Several modules' state dicts from one `.safetensors` file (a path checked by checkPath), each
 * under its prefix: the header is read once and checked whole, then statesOf; loading them is
 * left to the caller, who applies all or none.
 */
export async function readModulesFile(path: string, modules: ReadonlyArray<readonly [string, Module]>): Promise<BatchNormStateDict[]> {
  const handle = await open(path, 'r');
  try {
    const { base, entries } = await readHeader(handle);
    return await statesOf(entries, modules, { where: path, finder: FINDER }, (e) => readBytes(handle, base + e.begin, e.end - e.begin, `tensor ${JSON.stringify(e.name)}`));
  } finally {
    await handle.close();
  }
}

/** A file's header, checked whole (parseHeader), and where its byte buffer starts. */
async function readHeader(handle: FileHandle): Promise<{ base: number; entries: HeaderEntry[] }> {
  const { size } = await handle.stat();
  const length = headerLengthOf(await readBytes(handle, 0, Math.min(8, size), 'the header length'), size);
  const base = 8 + length;
  return { base, entries: parseHeader(await readBytes(handle, 8, length, 'the header'), size - base).entries };
}
