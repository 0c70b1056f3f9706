/**
 * Modules' state dicts from a file's named tensors (a `.safetensors` header's entries, or the
 * tensors a `torch.save` file pickles), as PyTorch's `state_dict()` names them: each module's keys
 * found under its prefix and checked before any tensor is read, each state dict checked before
 * any module loads; and the BatchNorms such a file holds, found by their running statistics.
 */
import type { Dtype } from '../workers/protocol.js';
import type { BatchNormStateDict } from './batch-norm-types.js';
import { ArgumentError, FormatError } from './errors.js';
import { decodeTensor, type DecodedTensor, type TensorEntry } from './safetensors.js';
import { checkStateDict, keysError, missingKeys, type Module, stateDictKeys } from './state-dict.js';
import { compareCodePoints } from './utf8.js';

/** Where named tensors come from, for messages: the file, and the call that lists its BatchNorms. */
export interface TensorSource {
  /** The file's path (or "the file" for bytes in memory). */
  readonly where: string;
  /** `'BatchNorm.findInSafetensors'` or `'BatchNorm.findInTorchFile'`. */
  readonly finder: string;
}

/** A BatchNorm's state in a file, as `BatchNorm.findInSafetensors` or `BatchNorm.findInTorchFile` finds it. */
export interface SafetensorsBatchNorm {
  /** What its keys start with: `'layer1.0.bn1.'`, or `''` in a file of one module (the loaders' `options.prefix`). */
  readonly prefix: string;
  /** Its channels: the length of its running statistics. */
  readonly numFeatures: number;
  /** Whether it has a weight and a bias. */
  readonly affine: boolean;
  /** `'float64'` where its running variance is F64, else `'float32'` (F32, F16 and BF16 load into a float32 module). */
  readonly dtype: Dtype;
}

/**
 * The entries of a file's header that hold the module's state: every one where `prefix` is '',
 * else those whose names start with it (the rest of a model's file), checked to be exactly the
 * module's keys (prefix taken off) before any is read. Where they are not, an ArgumentError says
 * what the file holds. A module without state (affine and trackRunningStats both false) takes
 * none, as PyTorch's `load_state_dict` expects none of it: under a prefix no name starts, that is
 * no error.
 */
function moduleEntries(m: Module, entries: readonly TensorEntry[], prefix: string, source: TensorSource): TensorEntry[] {
  const { where } = source;
  const chosen = entries.filter((e) => e.name.startsWith(prefix));
  const { expected } = stateDictKeys(m);
  if (prefix !== '' && chosen.length === 0 && expected.length > 0) {
    throw new ArgumentError(`options.prefix ${JSON.stringify(prefix)} starts no tensor name in ${where}; ${heldModules(entries, source.finder).held}`);
  }
  const names = chosen.map((e) => e.name.slice(prefix.length));
  const missing = missingKeys(expected, (key) => names.includes(key));
  const unexpected = names.filter((key) => !expected.includes(key));
  if (missing.length > 0 || unexpected.length > 0) {
    const { prefixes, held } = heldModules(entries, source.finder);
    const hint = prefix !== '' && !prefix.endsWith('.') && names.every((name) => name.startsWith('.'))
      ? ` (its names go on with a dot: options.prefix ${JSON.stringify(`${prefix}.`)}?)`
      : prefixes.length > 0 && !prefixes.includes(prefix) ? ` (${held}: options.prefix picks one)` : '';
    throw notFit(keysError(expected, missing, unexpected), prefix, where, hint);
  }
  return chosen;
}

/** The prefixes of a file's BatchNorms (batchNormsIn), listed (the first 8), and a phrase that says them. */
export function heldModules(entries: readonly TensorEntry[], finder: string): { prefixes: string[]; listed: string; held: string } {
  const prefixes = batchNormsIn(entries).map((b) => b.prefix);
  const listed = prefixes.slice(0, 8).map((p) => JSON.stringify(p)).join(', ') + (prefixes.length > 8 ? `, ... (${prefixes.length})` : '');
  const held = prefixes.length > 0
    ? `its BatchNorm prefixes (${finder}) are ${listed}`
    : `it holds ${entries.length} tensors, none a BatchNorm's running statistics`;
  return { prefixes, listed, held };
}

/** A state dict that does not fit the module, from the file `where` (under `prefix`): what the check found, with `hint`. */
function notFit(err: ArgumentError, prefix: string, where: string, hint = ''): ArgumentError {
  const under = prefix === '' ? '' : ` under prefix ${JSON.stringify(prefix)}`;
  return new ArgumentError(`the state dict${under} in ${where} does not fit this module${hint}: ${err.message}`);
}

/** A state dict from tensors by key (the prefix taken off); the module's loadStateDict then checks it whole. */
function stateDictOf(tensors: Iterable<readonly [string, DecodedTensor]>): BatchNormStateDict {
  // No prototype: every name in the file is a key the check sees (a "__proto__" too).
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
 * Each module's state dict from a header's entries under its prefix: every module's keys checked
 * (moduleEntries) before any tensor's bytes are asked of `bytesOf`, and every state dict
 * (checkStateDict) before any is returned; what does not fit is refused whole (notFit).
 */
export async function statesOf<E extends TensorEntry>(
  entries: readonly E[], modules: ReadonlyArray<readonly [string, Module]>, source: TensorSource,
  bytesOf: (e: E) => Uint8Array | Promise<Uint8Array>,
): Promise<BatchNormStateDict[]> {
  const chosen = modules.map(([prefix, m]) => moduleEntries(m, entries, prefix, source) as E[]);
  const states: BatchNormStateDict[] = [];
  for (const [i, [prefix, m]] of modules.entries()) {
    const tensors: [string, DecodedTensor][] = [];
    for (const e of chosen[i]) tensors.push([e.name.slice(prefix.length), decodeTensor(e, await bytesOf(e))]);
    const sd = stateDictOf(tensors);
    try {
      checkStateDict(m, sd);
    } catch (err) {
      throw err instanceof ArgumentError ? notFit(err, prefix, source.where) : err;
    }
    states.push(sd);
  }
  return states;
}

/**
 * The BatchNorms among a header's entries, by prefix: P + running_var and P + running_mean,
 * vectors of one length; affine where P + weight and P + bias are vectors of that length too.
 * Listed by prefix, in code point order, as Python's `sorted()` lists a state dict's keys.
 */
export function batchNormsIn(entries: readonly TensorEntry[]): SafetensorsBatchNorm[] {
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
  return found.sort((a, b) => compareCodePoints(a.prefix, b.prefix));
}
