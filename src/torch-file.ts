/**
 * The tensors of a file `torch.save` wrote, by the names a state dict gives them, read without
 * PyTorch and without running its pickle (torch/serialization.py, `_save` and `_load`).
 *
 * Since PyTorch 1.6 such a file is a ZIP archive (zip.ts) of records under one folder: `data.pkl`,
 * the pickled object, whose tensors refer to their storages by persistent ids
 * `('storage', torch.FloatStorage, key, location, numel)`; the storages' bytes in `data/<key>`;
 * and `byteorder` ('little' or 'big'; little where absent, as `torch.load` assumes). A tensor is a
 * call of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` (or a variant)
 * in the pickle, read here as data (pickle.ts). Files in the format before 1.6
 * (`_use_new_zipfile_serialization=False`) are a run of pickles followed by the storages: read
 * too. So are TorchScript archives (`torch.jit.save`): the same records and storages, with
 * constants.pkl and the model's code beside (torch-script.ts).
 *
 * Names: a dict's tensors by key, nested containers' joined with dots (`{'state_dict': sd}` gives
 * `state_dict.bn1.weight`), list items by index, other objects' by attribute, and a pickled
 * `nn.Module`'s as its `state_dict()` would give them (parameters, persistent buffers,
 * submodules'); a TorchScript module's as its code declares its parameters and buffers. Two
 * tensors of one name are a `FormatError`, as are pickles nested or shared past what a
 * checkpoint needs (MAX_DEPTH, MAX_VISITS).
 */
import { type FileHandle, open } from 'node:fs/promises';
import { FormatError } from './errors.js';
import { readBytes } from './files.js';
import { kindOf, PyCall, PyDict, PyGlobal, PySet, readPickle } from './pickle.js';
import type { TensorEntry } from './safetensors.js';
import { readScriptClasses, type ScriptClass } from './torch-script.js';
import { MAX_ENTRY, readZipDirectory, readZipEntry, readZipRange, type ZipEntry } from './zip.js';

/** A storage a pickle refers to: its record's key, element type and length in elements. */
interface StorageRef {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: string;
  readonly itemBytes: number;
  readonly numel: number;
  /** Legacy views: the element this storage starts at in its root storage. */
  readonly viewOffset: number;
}

/** A tensor of the file: its name, dtype and shape, and where its values lie in its storage. */
export interface TorchTensor extends TensorEntry {
  readonly storage: StorageRef | null;
  readonly offset: number;
  readonly stride: readonly number[];
  /** Why its values cannot be read (a quantized or sparse tensor, ...), or null. */
  readonly unreadable: string | null;
}

/**
 * What a pickled nn.Module or a TorchScript module says of itself beside its state (attributes a
 * BatchNorm has; absent where not a number, null or boolean as expected, or not recorded).
 */
export interface TorchModuleSettings {
  /** A pickled model's eps, a scripted module's `Final` eps, or a traced one's batch_norm call's. */
  readonly eps?: number;
  /** A pickled model's or a scripted module's momentum (null: None, a cumulative average). */
  readonly momentum?: number | null;
  /** Whether the module was saved in training mode. */
  readonly training?: boolean;
}

/** A `torch.save` file opened: its tensors, and their values' bytes on demand. */
export interface TorchFile {
  readonly tensors: readonly TorchTensor[];
  /** The settings of each pickled nn.Module, by the prefix of its keys (`'1.'`; `''` for the root): none where the file holds no modules. */
  readonly modules: ReadonlyMap<string, TorchModuleSettings>;
  /** A tensor's values, contiguous and little-endian, as decodeTensor takes them. */
  bytesOf(tensor: TorchTensor): Promise<Uint8Array>;
}

/** Element types of PyTorch's storage classes (torch/storage.py), by their safetensors names and sizes. */
const STORAGE_TYPES: Readonly<Record<string, readonly [string, number]>> = {
  FloatStorage: ['F32', 4], DoubleStorage: ['F64', 8], HalfStorage: ['F16', 2], BFloat16Storage: ['BF16', 2],
  LongStorage: ['I64', 8], IntStorage: ['I32', 4], ShortStorage: ['I16', 2], CharStorage: ['I8', 1],
  ByteStorage: ['U8', 1], BoolStorage: ['BOOL', 1], ComplexFloatStorage: ['C64', 8], ComplexDoubleStorage: ['C128', 16],
  QInt8Storage: ['QINT8', 1], QUInt8Storage: ['QUINT8', 1], QInt32Storage: ['QINT32', 4],
  QUInt4x2Storage: ['QUINT4X2', 1], QUInt2x4Storage: ['QUINT2X4', 1], UntypedStorage: ['U8', 1],
};

/** Element types of `torch.<dtype>` globals (`_rebuild_tensor_v3`'s dtype argument). */
const DTYPES: Readonly<Record<string, readonly [string, number]>> = {
  float32: ['F32', 4], float: ['F32', 4], float64: ['F64', 8], double: ['F64', 8], float16: ['F16', 2], half: ['F16', 2],
  bfloat16: ['BF16', 2], int64: ['I64', 8], long: ['I64', 8], int32: ['I32', 4], int: ['I32', 4], int16: ['I16', 2],
  short: ['I16', 2], int8: ['I8', 1], uint8: ['U8', 1], bool: ['BOOL', 1], uint16: ['U16', 2], uint32: ['U32', 4],
  uint64: ['U64', 8], complex64: ['C64', 8], complex128: ['C128', 16], float8_e4m3fn: ['F8_E4M3', 1], float8_e5m2: ['F8_E5M2', 1],
};

/** Tensor rebuild functions whose tensors have no dense storage to read (torch._utils). */
const UNREADABLE: Readonly<Record<string, string>> = {
  'torch._utils._rebuild_qtensor': 'a quantized tensor',
  'torch._utils._rebuild_sparse_tensor': 'a sparse tensor',
  'torch._utils._rebuild_meta_tensor_no_storage': 'a meta tensor (no data)',
  'torch._utils._rebuild_wrapper_subclass': 'a tensor subclass without storage',
  'torch._utils._rebuild_device_tensor_from_numpy': 'a tensor pickled as a NumPy array',
  'torch._utils._rebuild_device_tensor_from_cpu_tensor': 'a device tensor',
  'torch._utils._rebuild_nested_tensor': 'a nested tensor',
};

/** The legacy format's first pickle: the magic number 0x1950a86a20f9469cfc6c (torch/serialization.py MAGIC_NUMBER). */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
/** ... and its second: the legacy format's protocol version. */
const LEGACY_VERSION = 1001;
/** A legacy file's first byte: a pickle's PROTO (torch.save's pickle_protocol, 2 by default); a ZIP archive starts "PK". */
const PROTO = 0x80;
/** How a legacy file pickled with protocol 0 or 1 (no PROTO) starts: the magic number as text, `L<digits>L\n`. */
const LEGACY_TEXT_MAGIC = `L${LEGACY_MAGIC}L\n`;
/** The most containers a file's names are walked through (a pickle can share containers to make exponentially many paths). */
const MAX_VISITS = 1_000_000;
/** The deepest nesting walked (a pickle of a few bytes per level can nest past the call stack's depth). */
const MAX_DEPTH = 1000;

/**
 * Opens a `torch.save` file and reads its pickle: the tensors it holds, each checked to lie
 * within its storage and each storage within the file (a `FormatError` where one does not), their
 * values left unread. `use` runs with the file open, and it is closed after.
 */
export async function withTorchFile<T>(path: string, use: (file: TorchFile) => Promise<T>): Promise<T> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const head = await readBytes(handle, 0, Math.min(size, LEGACY_TEXT_MAGIC.length), 'the first bytes');
    if (String.fromCharCode(...head) === LEGACY_TEXT_MAGIC) {
      throw new FormatError(
        "the file is in torch.save's legacy format pickled with protocol 0 or 1, whose text opcodes bnpool does not read "
        + "(nor does torch.load's default, weights_only=True); save it again with pickle_protocol 2 or later",
      );
    }
    const file = head[0] === PROTO ? await openLegacy(handle, size) : await openArchive(handle, size);
    return await use(file);
  } finally {
    await handle.close();
  }
}

/** The ZIP format (PyTorch 1.6 and later). */
async function openArchive(handle: FileHandle, size: number): Promise<TorchFile> {
  if (size < 4) throw new FormatError(`a ${size}-byte file is neither a ZIP archive nor a legacy torch.save file`);
  let records: Map<string, ZipEntry>;
  try {
    records = await readZipDirectory(handle, size);
  } catch (err) {
    if (err instanceof FormatError && err.message.includes('not a ZIP archive')) {
      throw new FormatError(`${err.message}; a file torch.save wrote is one (or, before PyTorch 1.6, starts with a pickled magic number)`);
    }
    throw err;
  }
  // As PyTorch's reader does: every record sits under the first one's folder.
  const first = records.keys().next().value;
  const slash = first?.indexOf('/') ?? -1;
  if (first === undefined || slash <= 0) throw new FormatError(`a torch.save archive keeps its records in one folder; its first entry is ${JSON.stringify(first ?? null)}`);
  const folder = first.slice(0, slash + 1);
  const record = (name: string): ZipEntry | undefined => records.get(folder + name);
  // A TorchScript archive (torch.jit.save) has constants.pkl, and its classes' code.
  const classes = record('constants.pkl') !== undefined ? await readScriptClasses(handle, records, folder) : new Map<string, ScriptClass>();
  const pickle = record('data.pkl');
  if (pickle === undefined) throw new FormatError(`the archive has no ${folder}data.pkl: not a file torch.save wrote`);
  const order = record('byteorder');
  let littleEndian = true;
  if (order !== undefined) {
    const text = new TextDecoder().decode(await readZipEntry(handle, order));
    if (text !== 'little' && text !== 'big') throw new FormatError(`the archive's byteorder is ${JSON.stringify(text.slice(0, 20))}; 'little' or 'big' expected`);
    littleEndian = text === 'little';
  }
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): StorageRef => {
    const ref = storageOf(pid, 5);
    const known = storages.get(ref.key);
    if (known !== undefined) return known;
    const entry = record(`data/${ref.key}`);
    if (entry === undefined) throw new FormatError(`the pickle refers to storage ${JSON.stringify(ref.key)}, which has no record ${folder}data/${ref.key}`);
    if (entry.size < ref.numel * ref.itemBytes) {
      throw new FormatError(`storage ${JSON.stringify(ref.key)} holds ${ref.numel} ${ref.dtype} elements (${ref.numel * ref.itemBytes} bytes); its record has ${entry.size}`);
    }
    storages.set(ref.key, ref);
    return ref;
  };
  const { value } = readPickle(await readZipEntry(handle, pickle), persistentLoad);
  const storageBytes = (ref: StorageRef): Promise<Uint8Array> => readZipEntry(handle, record(`data/${ref.key}`)!);
  // A record too large to read whole (a flat storage that many tensors view): the part a tensor needs.
  const partOf = (ref: StorageRef): StoragePart | null => {
    const entry = record(`data/${ref.key}`)!;
    return entry.size > MAX_ENTRY ? (from, length) => readZipRange(handle, entry, from, length) : null;
  };
  return opened(tensorsIn(value, classes), storageBytes, partOf, littleEndian);
}

/**
 * The legacy format (before PyTorch 1.6): pickles of the magic number, the protocol version,
 * sys_info, the object (storages by ids `('storage', type, root_key, location, numel,
 * view_metadata)`), and the storage keys; then each root storage in that order, as an int64
 * element count and its bytes. The pickles are read from a growing prefix of the file, so the
 * storages' bytes are read only where asked for.
 */
async function openLegacy(handle: FileHandle, size: number): Promise<TorchFile> {
  const most = Math.min(size, MAX_ENTRY);
  for (let length = Math.min(most, 1 << 20); ; length = Math.min(most, length * 4)) {
    const bytes = await readBytes(handle, 0, length, 'the pickles');
    try {
      return legacyFrom(handle, bytes, size);
    } catch (err) {
      if (!(err instanceof FormatError) || !err.message.startsWith('the pickle ends within') || length === most) throw err;
    }
  }
}

function legacyFrom(handle: FileHandle, bytes: Uint8Array, size: number): TorchFile {
  const noIds = (pid: unknown): never => {
    throw new FormatError(`a legacy torch.save header pickle holds a persistent id (${kindOf(pid)})`);
  };
  const magic = readPickle(bytes, noIds);
  if (magic.value !== LEGACY_MAGIC) throw new FormatError(`the file starts with pickled ${kindOf(magic.value)}, not torch.save's magic number`);
  const version = readPickle(bytes, noIds, magic.end);
  if (version.value !== LEGACY_VERSION) throw new FormatError(`legacy torch.save protocol ${kindOf(version.value)} is not read (${LEGACY_VERSION} is)`);
  const sysInfo = readPickle(bytes, noIds, version.end);
  const littleEndian = !(sysInfo.value instanceof PyDict && sysInfo.value.entries.get('little_endian') === false);
  const roots = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): unknown => {
    if (Array.isArray(pid) && pid[0] === 'module') return pid[1]; // a pickled nn.Module's class, with its source
    const ref = storageOf(pid, 6);
    const known = roots.get(ref.key);
    if (known !== undefined && (known.dtype !== ref.dtype || known.numel !== ref.numel)) {
      throw new FormatError(`storage ${JSON.stringify(ref.key)} is described twice, differently`);
    }
    if (known === undefined) roots.set(ref.key, ref);
    const view = (pid as unknown[])[5];
    if (view === null || view === undefined) return known ?? ref;
    // view_metadata (view_key, offset, view_size): a storage inside the root one.
    if (!Array.isArray(view) || view.length !== 3 || !isCount(view[1]) || !isCount(view[2]) || view[1] + view[2] > ref.numel) {
      throw new FormatError(`storage ${JSON.stringify(ref.key)} has a view ${kindOf(view)} outside it`);
    }
    return { ...ref, numel: view[2] as number, viewOffset: view[1] as number };
  };
  const object = readPickle(bytes, persistentLoad, sysInfo.end);
  const keys = readPickle(bytes, noIds, object.end);
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === 'string')) {
    throw new FormatError(`the legacy storage keys are ${kindOf(keys.value)}, not a list of strings`);
  }
  // Each root storage: an int64 element count, then its bytes.
  const offsets = new Map<string, number>();
  let at = keys.end;
  for (const key of keys.value as string[]) {
    const ref = roots.get(key);
    if (ref === undefined) throw new FormatError(`the legacy storage keys name ${JSON.stringify(key)}, which the pickle never refers to`);
    offsets.set(key, at + 8);
    at += 8 + ref.numel * ref.itemBytes;
    if (at > size) throw new FormatError(`storage ${JSON.stringify(key)} (${ref.numel} ${ref.dtype} elements) runs past the ${size}-byte file`);
  }
  for (const key of roots.keys()) {
    if (!offsets.has(key)) throw new FormatError(`storage ${JSON.stringify(key)} is not among the legacy storage keys`);
  }
  // Each root storage's count, checked before any of its bytes are read.
  const counted = async (key: string): Promise<number> => {
    const root = roots.get(key)!;
    const start = offsets.get(key)!;
    const count = new DataView((await readBytes(handle, start - 8, 8, `storage ${JSON.stringify(key)}'s length`)).buffer).getBigInt64(0, littleEndian);
    if (count !== BigInt(root.numel)) throw new FormatError(`storage ${JSON.stringify(key)} has ${count} elements in the file; its pickle says ${root.numel}`);
    return start;
  };
  const storageBytes = async (ref: StorageRef): Promise<Uint8Array> => {
    const root = roots.get(ref.key)!;
    return readBytes(handle, await counted(ref.key), root.numel * root.itemBytes, `storage ${JSON.stringify(ref.key)}`);
  };
  const partOf = (ref: StorageRef): StoragePart | null => {
    const root = roots.get(ref.key)!;
    if (root.numel * root.itemBytes <= MAX_ENTRY) return null;
    return async (from, length) => readBytes(handle, (await counted(ref.key)) + from, length, `storage ${JSON.stringify(ref.key)}`);
  };
  return opened(tensorsIn(object.value, new Map()), storageBytes, partOf, littleEndian);
}

/** A persistent id `('storage', storage_type, key, location, numel, ...)` of `length` items, checked. */
function storageOf(pid: unknown, length: number): StorageRef {
  if (!Array.isArray(pid) || pid.length !== length || pid[0] !== 'storage') {
    throw new FormatError(`the pickle's persistent id ${kindOf(pid)} is not a storage's ('storage', type, key, location, numel${length > 5 ? ', view' : ''})`);
  }
  const [, type, key, , numel] = pid as unknown[];
  const name = type instanceof PyGlobal && type.module.startsWith('torch') ? type.name : null;
  const known = name !== null && Object.hasOwn(STORAGE_TYPES, name) ? STORAGE_TYPES[name] : null;
  if (known === null) throw new FormatError(`storage ${kindOf(key)} has type ${kindOf(type)}; bnpool reads ${Object.keys(STORAGE_TYPES).map((t) => `torch.${t}`).join(', ')}`);
  if (typeof key !== 'string' || !isCount(numel)) throw new FormatError(`a storage's key ${kindOf(key)} or length ${kindOf(numel)} is malformed`);
  return { kind: 'storage', key, dtype: known[0], itemBytes: known[1], numel, viewOffset: 0 };
}

function isStorage(value: unknown): value is StorageRef {
  return value !== null && typeof value === 'object' && (value as { kind?: unknown }).kind === 'storage' && !(value instanceof PyCall);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** `length` bytes of a storage from byte `from`, read alone. */
type StoragePart = (from: number, length: number) => Promise<Uint8Array>;

/** Bytes of a storage, and the storage byte the first of them is. */
interface StorageBytes {
  readonly bytes: Uint8Array;
  readonly at: number;
}

/**
 * A file opened, of either format: its tensors and modules, and their values read through
 * `storageBytes`, once a storage (tensors that share one, as views of it, read it once); or,
 * from a storage too large to read whole (`partOf` gives its reader), the part each tensor spans.
 */
function opened(
  named: Pick<TorchFile, 'tensors' | 'modules'>, storageBytes: (ref: StorageRef) => Promise<Uint8Array>,
  partOf: (ref: StorageRef) => StoragePart | null, littleEndian: boolean,
): TorchFile {
  const cache = new Map<string, Promise<Uint8Array>>();
  const read = async (ref: StorageRef, from: number, length: number): Promise<StorageBytes> => {
    const part = partOf(ref);
    if (part !== null) return { bytes: await part(from, length), at: from };
    let bytes = cache.get(ref.key);
    if (bytes === undefined) {
      bytes = storageBytes(ref);
      cache.set(ref.key, bytes);
    }
    return { bytes: await bytes, at: 0 };
  };
  return { ...named, bytesOf: (t) => valuesOf(t, read, littleEndian) };
}

/** A tensor's values, gathered from its storage by its strides into little-endian order. */
async function valuesOf(
  t: TorchTensor, read: (ref: StorageRef, from: number, length: number) => Promise<StorageBytes>, littleEndian: boolean,
): Promise<Uint8Array> {
  if (t.storage === null) throw new FormatError(`tensor ${JSON.stringify(t.name)} is ${t.unreadable}, whose values bnpool does not read`);
  const item = t.storage.itemBytes;
  const count = t.shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(count * item);
  if (count === 0) return out;
  // The elements it spans (tensorOf checked them within the storage).
  const first = t.storage.viewOffset + t.offset;
  const last = first + t.shape.reduce((sum, n, d) => sum + (n - 1) * t.stride[d], 0);
  const span = (last - first + 1) * item;
  if (span > MAX_ENTRY) throw new FormatError(`tensor ${JSON.stringify(t.name)} spans ${span} bytes of its storage; bnpool reads up to ${MAX_ENTRY}`);
  const { bytes: storage, at } = await read(t.storage, first * item, span);
  const index = new Array<number>(t.shape.length).fill(0);
  for (let i = 0; i < count; i++) {
    let element = first;
    for (let d = 0; d < index.length; d++) element += index[d] * t.stride[d];
    const from = element * item - at;
    for (let b = 0; b < item; b++) out[i * item + b] = storage[from + (littleEndian ? b : item - 1 - b)];
    for (let d = index.length - 1; d >= 0 && ++index[d] === t.shape[d]; d--) index[d] = 0;
  }
  return out;
}

/**
 * The tensors of an unpickled object, named as this file's header says, and its nn.Modules'
 * settings; `classes`: a TorchScript archive's, by qualified name (none for torch.save's files).
 */
function tensorsIn(root: unknown, classes: ReadonlyMap<string, ScriptClass>): { tensors: TorchTensor[]; modules: Map<string, TorchModuleSettings> } {
  const found: TorchTensor[] = [];
  const modules = new Map<string, TorchModuleSettings>();
  const names = new Set<string>();
  const path = new Set<unknown>();
  let visits = 0;
  const join = (prefix: string, key: string): string => (prefix === '' ? key : `${prefix}.${key}`);
  // A module's settings, by the prefix of its keys: those of the expected types (else left out).
  const recordModule = (name: string, eps: unknown, momentum: unknown, training: unknown): void => {
    modules.set(name === '' ? '' : `${name}.`, {
      ...(typeof eps === 'number' ? { eps } : {}),
      ...(typeof momentum === 'number' || momentum === null ? { momentum } : {}),
      ...(typeof training === 'boolean' ? { training } : {}),
    });
  };
  const walk = (value: unknown, name: string): void => {
    if (++visits > MAX_VISITS) throw new FormatError(`the pickle's containers are walked more than ${MAX_VISITS} times (shared containers nested deep)`);
    if (path.size > MAX_DEPTH) throw new FormatError(`the pickle's containers nest deeper than ${MAX_DEPTH}`);
    if (value instanceof PyCall) {
      const tensor = tensorOf(value, name, 0);
      if (tensor !== null) {
        if (names.has(name)) throw new FormatError(`two tensors of the file are named ${JSON.stringify(name)}`);
        names.add(name);
        found.push(tensor);
        return;
      }
    }
    if (value === null || typeof value !== 'object' || path.has(value)) return; // a cycle names nothing new
    path.add(value);
    if (value instanceof PyDict) {
      for (const [k, v] of value.entries) if (typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint') walk(v, join(name, String(k)));
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => walk(v, join(name, String(i))));
    } else if (value instanceof PyCall) {
      const script = scriptClassOf(value);
      if (script !== undefined) {
        walkScript(value, name, script);
      } else {
        walk(value.items, name);
        value.appended.forEach((v, i) => walk(v, join(name, String(i))));
        walkState(value.state, name);
      }
    }
    path.delete(value);
  };
  const isScriptObject = (value: unknown): value is PyCall =>
    value instanceof PyCall && value.func instanceof PyGlobal && value.func.module.startsWith('__torch__');
  const scriptClassOf = (call: PyCall): ScriptClass | undefined => (isScriptObject(call) ? classes.get((call.func as PyGlobal).path) : undefined);
  // A TorchScript object (NEWOBJ, then BUILD with a dict of every attribute), its class's code
  // read: a module's state is the attributes its code lists as parameters and buffers, and its
  // submodules', under their attributes' names; an object of another class holds no state. (An
  // object whose class has no code is walked as any other object: every attribute by name.)
  const walkScript = (object: PyCall, name: string, script: ScriptClass): void => {
    const attributes = object.state;
    if (!script.module || !(attributes instanceof PyDict)) return;
    recordModule(name, script.eps, script.momentum, attributes.entries.get('training'));
    for (const [k, v] of attributes.entries) {
      if (typeof k === 'string' && (script.state.has(k) || isScriptObject(v))) walk(v, join(name, k));
    }
  };
  // An object's attributes by name; but an nn.Module's (an object with _parameters) as its
  // state_dict() names them: its parameters, its buffers less those it marks non-persistent, and
  // its submodules', under its own name; its other attributes, tensors among them, are not state.
  const walkState = (state: unknown, name: string): void => {
    const attributes = Array.isArray(state) && state.length === 2 ? state[0] : state; // (dict, slots)
    if (!(attributes instanceof PyDict)) return walk(state, name);
    if (!(attributes.entries.get('_parameters') instanceof PyDict)) {
      for (const [k, v] of attributes.entries) if (typeof k === 'string') walk(v, join(name, k));
      return;
    }
    recordModule(name, attributes.entries.get('eps'), attributes.entries.get('momentum'), attributes.entries.get('training'));
    const skipped = attributes.entries.get('_non_persistent_buffers_set');
    const nonPersistent = new Set(skipped instanceof PySet ? skipped.items : []);
    walk(attributes.entries.get('_parameters'), name);
    const buffers = attributes.entries.get('_buffers');
    if (buffers instanceof PyDict) {
      for (const [k, v] of buffers.entries) if (typeof k === 'string' && !nonPersistent.has(k)) walk(v, join(name, k));
    }
    walk(attributes.entries.get('_modules'), name);
  };
  walk(root, '');
  return { tensors: found, modules };
}

/** The tensor a call rebuilds, checked, or null where the call is not a tensor's (`depth`: the wrappers around it so far). */
function tensorOf(call: PyCall, name: string, depth: number): TorchTensor | null {
  const func = call.func instanceof PyGlobal ? call.func.path : null;
  const args = call.args;
  if (depth > 8) throw new FormatError(`tensor ${JSON.stringify(name)} is wrapped in more than 8 parameters or subclasses`);
  switch (func) {
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
    case 'torch.nn.parameter.Parameter':
      return args[0] instanceof PyCall ? tensorOf(args[0], name, depth + 1) : null;
    case 'torch._tensor._rebuild_from_type_v2': // (func, type, args, state): a subclass, or a tensor with attributes
      return Array.isArray(args[2]) ? tensorOf(new PyCall(args[0], args[2]), name, depth + 1) : null;
    case 'torch._utils._rebuild_tensor':
    case 'torch._utils._rebuild_tensor_v2':
    case 'torch._utils._rebuild_tensor_v3':
      break;
    default:
      if (func !== null && Object.hasOwn(UNREADABLE, func)) {
        return { name, dtype: func, shape: [], storage: null, offset: 0, stride: [], unreadable: UNREADABLE[func] };
      }
      return null;
  }
  const [storage, offset, size, stride] = args;
  const what = `tensor ${JSON.stringify(name)}`;
  if (!isStorage(storage)) throw new FormatError(`${what} is rebuilt from ${kindOf(storage)}, not a storage`);
  let ref = storage;
  if (func === 'torch._utils._rebuild_tensor_v3') {
    // (untyped storage, offset, size, stride, requires_grad, hooks, dtype): the dtype says how to read its bytes.
    const dtype = args[6];
    const known = dtype instanceof PyGlobal && dtype.module === 'torch' && Object.hasOwn(DTYPES, dtype.name) ? DTYPES[dtype.name] : null;
    if (known === null) throw new FormatError(`${what} has dtype ${kindOf(dtype)}, which bnpool does not know`);
    if (ref.itemBytes !== 1 || ref.viewOffset !== 0) throw new FormatError(`${what} is rebuilt with a dtype from a typed storage`);
    ref = { ...ref, dtype: known[0], itemBytes: known[1], numel: Math.floor(ref.numel / known[1]) };
  }
  if (!isCount(offset) || !Array.isArray(size) || !size.every(isCount) || !Array.isArray(stride) || stride.length !== size.length || !stride.every(isCount)) {
    throw new FormatError(`${what} has offset ${kindOf(offset)}, size ${kindOf(size)} and stride ${kindOf(stride)}; non-negative integers, size and stride of one length, expected`);
  }
  const sizes = size as number[];
  const strides = stride as number[];
  if (!sizes.includes(0)) {
    const last = offset + sizes.reduce((sum, n, d) => sum + (n - 1) * strides[d], 0);
    if (last >= ref.numel) throw new FormatError(`${what} (size ${JSON.stringify(sizes)}, stride ${JSON.stringify(strides)}, offset ${offset}) reaches element ${last} of a ${ref.numel}-element storage`);
  }
  return { name, dtype: ref.dtype, shape: sizes, storage: ref, offset, stride: strides, unreadable: null };
}
