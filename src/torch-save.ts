/**
 * Files `torch.load` reads, written: modules' state dicts as `torch.save(model.state_dict(), path)`
 * writes them (torch/serialization.py `_save`, PyTorch 2.6 and later, on PyTorchStreamWriter):
 * a ZIP archive (zip.ts `zipStored`: PyTorch's record layout in a plain ZIP) of
 * `<folder>/data.pkl`, the pickle (protocol 2) of an OrderedDict of tensors with its `_metadata`,
 * then `.format_version`, `.storage_alignment`, `byteorder`, each tensor's storage as
 * `data/<key>`, `version` and `.data/serialization_id`.
 * `torch.load(path)` (weights_only, its default) and `model.load_state_dict(...)` take it; so do
 * bnpool's own torch-file readers.
 */
import { basename } from 'node:path';
import { BATCH_SIZE, PickleWriter } from './pickler.js';
import { DTYPES, type SafeTensor } from './safetensors.js';
import { crc32, RECORD_ALIGNMENT, zipStored } from './zip.js';

/** The storage class of each element type written, as a tensor's pickle names it (`torch.FloatStorage`). */
const STORAGE_CLASSES: Readonly<Record<SafeTensor['dtype'], string>> = {
  F32: 'FloatStorage', F64: 'DoubleStorage', I64: 'LongStorage', I32: 'IntStorage',
};
/** The module version `_metadata` records for a BatchNorm (`_BatchNorm._version`: 2 since num_batches_tracked). */
const BATCH_NORM_VERSION = 2;
/** torch.save's file format version (caffe2's kProducedFileFormatVersion), as its `version` record says it. */
const FILE_FORMAT_VERSION = '3\n';

/**
 * The name torch.save gives the archive's one folder for a file at `path`: the file's name
 * without its extension (PyTorchStreamWriter's `basename`), or `archive` where the path is not
 * ASCII (torch.save then writes through a Python stream, whose writer names it so) or the name
 * is empty.
 */
export function archiveFolder(path: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(path)) return 'archive';
  const name = basename(path.replaceAll('\\', '/'));
  const dot = name.lastIndexOf('.');
  const stem = dot >= 0 ? name.slice(0, dot) : name;
  return stem === '' ? 'archive' : stem;
}

/**
 * The bytes of a torch.save file of a state dict: `tensors` (name, tensor; rank 0 or 1, in the
 * state dict's order), each its own storage, keyed '0', '1', ... in that order, and `_metadata`
 * giving each of `modules` (a module's name in the state dict, `''` for the root) BatchNorm's
 * version.
 */
export function encodeTorchStateDict(
  tensors: ReadonlyArray<readonly [string, SafeTensor]>, modules: readonly string[], folder: string,
): Uint8Array {
  const records: [string, Uint8Array][] = [[`${folder}/data.pkl`, pickleStateDict(tensors, modules)]];
  const text = (name: string, value: string): void => {
    records.push([`${folder}/${name}`, new TextEncoder().encode(value)]);
  };
  text('.format_version', '1');
  text('.storage_alignment', String(RECORD_ALIGNMENT));
  text('byteorder', 'little');
  for (const [i, [, t]] of tensors.entries()) records.push([`${folder}/data/${i}`, storageBytes(t)]);
  text('version', FILE_FORMAT_VERSION);
  text('.data/serialization_id', serializationId(records));
  return zipStored(records);
}

/**
 * data.pkl: what `pickle.Pickler(f, protocol=2)` with torch.save's `persistent_id` writes for an
 * OrderedDict of tensors whose `_metadata` is an OrderedDict of `{'version': 2}` by module name.
 */
function pickleStateDict(tensors: ReadonlyArray<readonly [string, SafeTensor]>, modules: readonly string[]): Uint8Array {
  const w = new PickleWriter();
  w.global('collections', 'OrderedDict');
  w.emptyTuple();
  w.reduce();
  // `_batch_setitems`: batches of up to 1000 items, SETITEM for a batch of one.
  dictItems(w, tensors, ([name, t], key) => {
    w.str(name, isShared(name));
    pickleTensor(w, t, String(key));
  });
  // BUILD with the instance's __dict__: {'_metadata': OrderedDict(...)}.
  w.emptyDict();
  w.str('_metadata', true);
  w.global('collections', 'OrderedDict');
  w.emptyTuple();
  w.reduce();
  dictItems(w, modules, (name) => {
    w.str(name, isShared(name));
    w.emptyDict();
    w.str('version', true);
    w.int(BATCH_NORM_VERSION);
    w.setItem();
  });
  w.setItem();
  w.build();
  return w.end();
}

/** `Pickler._batch_setitems` over `items`, each key and value written by `write` (with the item's index). */
function dictItems<T>(w: PickleWriter, items: readonly T[], write: (item: T, index: number) => void): void {
  for (let from = 0; from < items.length; from += BATCH_SIZE) {
    const batch = items.slice(from, from + BATCH_SIZE);
    if (batch.length > 1) w.mark();
    batch.forEach((item, i) => write(item, from + i));
    if (batch.length > 1) w.setItems();
    else w.setItem();
  }
}

/**
 * A tensor as `torch.Tensor.__reduce_ex__` gives it, `_rebuild_tensor_v2(storage, 0, size, stride,
 * False, OrderedDict())`, its storage by torch.save's persistent id `('storage', torch.<Type>Storage,
 * key, 'cpu', numel)`.
 */
function pickleTensor(w: PickleWriter, t: SafeTensor, key: string): void {
  w.global('torch._utils', '_rebuild_tensor_v2');
  w.mark();
  w.mark();
  w.str('storage', true);
  w.global('torch', STORAGE_CLASSES[t.dtype]);
  w.str(key, false); // str(n): a new object, even for one digit
  w.str('cpu', true);
  w.int(t.data.length);
  w.tuple();
  w.persistentId();
  w.int(0);
  sizeTuple(w, t.shape);
  sizeTuple(w, t.shape.length === 0 ? [] : [1]);
  w.false();
  w.global('collections', 'OrderedDict');
  w.emptyTuple();
  w.reduce();
  w.tuple();
  w.reduce();
}

/** A tuple of a scalar's or a vector's size (or stride): () or (n,). */
function sizeTuple(w: PickleWriter, values: readonly number[]): void {
  if (values.length > 1) throw new RangeError(`the torch file writer writes tensors of rank 0 or 1; got rank ${values.length}`);
  if (values.length === 0) {
    w.emptyTuple();
    return;
  }
  w.int(values[0]);
  w.tuple1();
}

/**
 * Strings made by slicing or joining that CPython keeps one object of: the empty one and those of
 * one Latin-1 character (`'0.'[:-1]`; `str(0)` makes a new one).
 */
function isShared(text: string): boolean {
  return text.length === 0 || (text.length === 1 && text.charCodeAt(0) < 256);
}

/** A storage's bytes, little-endian, as safetensors' are. */
function storageBytes(t: SafeTensor): Uint8Array {
  const { bytes, write } = DTYPES[t.dtype];
  const out = new Uint8Array(t.data.length * bytes);
  const view = new DataView(out.buffer);
  for (let i = 0; i < t.data.length; i++) write(view, i * bytes, t.data[i]);
  return out;
}

/**
 * `.data/serialization_id`: 40 digits that differ between files, as PyTorchStreamWriter's do (a
 * hash of the records' names, then a checksum of their bytes, 20 digits each). PyTorch's hashes
 * its names with the C++ library's string hash, so the digits are not PyTorch's own for the same
 * records: here FNV-1a (64-bit) of the names, one after another with a newline after each, and
 * the CRC-32 of the records' bytes one after another. Only its presence and length matter to a
 * reader; torch.load does not check it.
 */
export function serializationId(records: ReadonlyArray<readonly [string, Uint8Array]>): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(records.map(([name]) => `${name}\n`).join(''))) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  const all = new Uint8Array(records.reduce((n, [, data]) => n + data.length, 0));
  let at = 0;
  for (const [, data] of records) {
    all.set(data, at);
    at += data.length;
  }
  return hash.toString().padStart(20, '0') + String(crc32(all)).padStart(20, '0');
}
