/**
 * The safetensors format (huggingface/safetensors, "Format"): an unsigned 64-bit little-endian
 * header length N; N bytes of JSON mapping each tensor name to {dtype, shape, data_offsets:
 * [begin, end]} (offsets into the byte buffer that follows), plus an optional "__metadata__" map
 * of strings; then the byte buffer, little-endian, with the tensors covering it exactly. The header
 * is padded with spaces to a multiple of 8 bytes, as the reference writer does.
 */
import { FormatError } from './errors.js';
import { JsonObject, jsonText, type JsonValue, parseJson } from './json-text.js';
import { compareCodePoints } from './utf8.js';

/** The tensor types bnpool writes (and reads): bytes a value, and its little-endian read and write. */
export const DTYPES = {
  F32: { bytes: 4, read: (v: DataView, at: number) => v.getFloat32(at, true), write: (v: DataView, at: number, x: number) => v.setFloat32(at, x, true) },
  F64: { bytes: 8, read: (v: DataView, at: number) => v.getFloat64(at, true), write: (v: DataView, at: number, x: number) => v.setFloat64(at, x, true) },
  I64: { bytes: 8, read: (v: DataView, at: number) => Number(v.getBigInt64(at, true)), write: (v: DataView, at: number, x: number) => v.setBigInt64(at, BigInt(x), true) },
  I32: { bytes: 4, read: (v: DataView, at: number) => v.getInt32(at, true), write: (v: DataView, at: number, x: number) => v.setInt32(at, x, true) },
} as const;

export type SafetensorsDtype = keyof typeof DTYPES;

/** Scratch for BF16: its 16 bits are the upper half of a float32. */
const bf16Scratch = new DataView(new ArrayBuffer(4));

/**
 * The tensor types bnpool reads: those it writes, and the half-precision ones PyTorch and
 * Hugging Face checkpoints often hold (every value converts exactly), as
 * `torch.nn.Module.load_state_dict` copies them into a float32 or float64 module.
 */
const READERS = {
  ...DTYPES,
  F16: { bytes: 2, read: (v: DataView, at: number) => halfToNumber(v.getUint16(at, true)) },
  BF16: { bytes: 2, read: (v: DataView, at: number) => bfloat16ToNumber(v.getUint16(at, true)) },
} as const;

export type SafetensorsReadDtype = keyof typeof READERS;

/** bfloat16 bits as a number (exact): the upper half of a float32's. */
export function bfloat16ToNumber(bits: number): number {
  bf16Scratch.setUint32(0, bits << 16);
  return bf16Scratch.getFloat32(0);
}

/** IEEE binary16 bits as a number (exact). */
export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (0x400 + fraction) * 2 ** (exponent - 25);
}

export interface SafeTensor {
  readonly dtype: SafetensorsDtype;
  /** [] for a scalar. */
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** A tensor read from a file: any dtype bnpool reads, its values as numbers. */
export interface DecodedTensor {
  readonly dtype: SafetensorsReadDtype;
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

/** Largest header accepted when reading (the reference reader's limit is 100 MB). */
const MAX_HEADER = 100_000_000;

/**
 * Rank of each dtype in the reference implementation's `Dtype` enum (..., I32, U32, F32, F64, I64,
 * U64): its serializer lays tensors out by this rank, highest first, then by name.
 */
const DTYPE_RANK: Record<SafetensorsDtype, number> = { I32: 0, F32: 1, F64: 2, I64: 3 };

/**
 * Encodes tensors with optional string metadata, in the reference serializer's order (dtype rank
 * descending, then name as UTF-8 bytes, which is code point order), so that the bytes are those
 * `safetensors.torch.save_file` writes for the same tensors and metadata.
 */
export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): Uint8Array {
  const ordered = Object.entries(tensors).sort(([a, ta], [b, tb]) => (
    DTYPE_RANK[tb.dtype] - DTYPE_RANK[ta.dtype] || compareCodePoints(a, b)
  ));
  // The header's entries in that order, written out one by one: an object would move names that
  // look like integers to the front, and a name "__proto__" would set its prototype instead.
  const entries = metadata === undefined ? [] : [`"__metadata__":${JSON.stringify(metadata)}`];
  const begins: number[] = [];
  let offset = 0;
  for (const [name, t] of ordered) {
    const size = t.data.length * DTYPES[t.dtype].bytes;
    entries.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] })}`);
    begins.push(offset);
    offset += size;
  }
  let json = `{${entries.join(',')}}`;
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  ordered.forEach(([, t], j) => {
    const { bytes, write } = DTYPES[t.dtype];
    for (let i = 0; i < t.data.length; i++) write(view, base + begins[j] + i * bytes, t.data[i]);
  });
  return out;
}

/**
 * Bits a value of each tensor type the format names (the reference implementation's `Dtype`, as
 * safetensors 0.8 writes them: `F4` packs two values a byte). A tensor of one of these types must
 * span exactly its values' bytes, whether bnpool reads it or not; a type not listed here (a newer
 * one) is checked only where bnpool reads it, which it then refuses.
 */
const BITS: Readonly<Record<string, number>> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E4M3FNUZ: 8, F8_E5M2FNUZ: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, I64: 64, U64: 64, F64: 64, C64: 64,
};

/** A named tensor of a file: its type as safetensors names it (F32, BF16, I64, ...) and its shape. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

/** A tensor's entry in a file's header: its type as written, its shape, and its bytes [begin, end) in the buffer after the header. */
export interface HeaderEntry extends TensorEntry {
  readonly begin: number;
  readonly end: number;
}

/** The header's length, from a file's first 8 bytes (`first`), checked against the file's length. */
export function headerLengthOf(first: Uint8Array, fileLength: number): number {
  if (first.length < 8 || fileLength < 8) throw new FormatError(`a safetensors file needs at least 8 bytes; got ${Math.min(first.length, fileLength)}`);
  const length = Number(new DataView(first.buffer, first.byteOffset, 8).getBigUint64(0, true));
  if (length > MAX_HEADER || 8 + length > fileLength) {
    throw new FormatError(`header length ${length} does not fit a ${fileLength}-byte file`);
  }
  return length;
}

/**
 * Parses a header (the JSON after the first 8 bytes) and checks every tensor's entry in it by the
 * format's rules, those bnpool will not read as well (as the reference reader does on opening a
 * file): a shape of non-negative integers, offsets within the `bufferLength` bytes after the
 * header, a span of exactly the bytes its shape and type take, and spans that cover the buffer
 * with no overlap or hole; or a `FormatError`.
 */
export function parseHeader(header: Uint8Array, bufferLength: number): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  let parsed: JsonValue;
  try {
    // A byte order mark is kept, so it is refused as the reference reader's parser refuses it.
    parsed = parseJson(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(header));
  } catch (err) {
    throw new FormatError(`the header is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (!(parsed instanceof JsonObject)) {
    throw new FormatError(`the header must be a JSON object; got ${jsonText(parsed).slice(0, 40)}`);
  }
  // Each entry is read as serde reads it, even one a later entry of the same name replaces (the
  // reference reader's map keeps the last); __metadata__ named twice is refused, as serde refuses
  // a field named twice. The checks against the buffer are the reference's too, on the map.
  const tensors = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> | null = null;
  for (const [name, value] of parsed.members) {
    if (name !== '__metadata__') {
      tensors.set(name, readEntry(name, value));
    } else {
      if (metadata !== null) throw new FormatError('the header names __metadata__ twice');
      metadata = metadataOf(value);
    }
  }
  const entries = [...tensors.values()];
  for (const entry of entries) checkEntry(entry, bufferLength);
  // The tensors must cover the buffer exactly: no overlap, no hole. Sorted by (begin, end), as the
  // reference reader does, so an empty tensor may share its offset with the next one.
  const spans = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let end = 0;
  for (const span of spans) {
    if (span.begin !== end) throw new FormatError(`tensor ${JSON.stringify(span.name)} starts at byte ${span.begin}; the previous one ends at ${end}`);
    end = span.end;
  }
  if (end !== bufferLength) throw new FormatError(`the tensors end at byte ${end} of a ${bufferLength}-byte buffer`);
  return { entries, metadata: metadata ?? {} };
}

/** The metadata: a map of strings, the last value of a key named twice; null is none, as in the reference reader. */
function metadataOf(value: JsonValue): Record<string, string> {
  if (value === null) return {};
  if (!(value instanceof JsonObject) || value.members.some(([, v]) => typeof v !== 'string')) {
    throw new FormatError(`__metadata__ must map strings to strings; got ${jsonText(value).slice(0, 40)}`);
  }
  // fromEntries defines each key, so one named "__proto__" stays a key.
  return Object.fromEntries(value.members) as Record<string, string>;
}

/** The fields of a tensor's entry that the reference reader reads; it skips any other. */
const FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

/** One tensor's entry (`value`) as serde reads it: its fields, each named once, and their types. */
function readEntry(name: string, value: JsonValue): HeaderEntry {
  const tensor = JSON.stringify(name);
  if (!(value instanceof JsonObject)) {
    throw new FormatError(`tensor ${tensor} is ${jsonText(value).slice(0, 40)}; an entry is an object of dtype, shape and data_offsets`);
  }
  const fields: Partial<Record<(typeof FIELDS)[number], JsonValue>> = {};
  for (const [key, field] of value.members) {
    const known = FIELDS.find((f) => f === key);
    if (known === undefined) continue;
    if (Object.hasOwn(fields, known)) throw new FormatError(`tensor ${tensor} names ${known} twice`);
    fields[known] = field;
  }
  const shown = (field: JsonValue | undefined) => (field === undefined ? 'none' : jsonText(field));
  const dtype = fields.dtype;
  if (typeof dtype !== 'string') {
    throw new FormatError(`tensor ${tensor} has dtype ${shown(dtype)}; a dtype is a string (F32, BF16, I64, ...)`);
  }
  const shape = naturals(fields.shape);
  if (shape === null) {
    throw new FormatError(`tensor ${tensor} needs a shape of integers from 0 to 2^53 - 1, written as integers; got ${shown(fields.shape)}`);
  }
  const offsets = naturals(fields.data_offsets);
  if (offsets === null || offsets.length !== 2) {
    throw new FormatError(`tensor ${tensor} needs data_offsets [begin, end], integers from 0 to 2^53 - 1 written as integers; got ${shown(fields.data_offsets)}`);
  }
  return { name, dtype, shape, begin: offsets[0], end: offsets[1] };
}

/** Checks an entry against the `bufferLength` bytes after the header: its span, and its size by shape and dtype. */
function checkEntry({ name, dtype, shape, begin, end }: HeaderEntry, bufferLength: number): void {
  const tensor = JSON.stringify(name);
  if (begin > end || end > bufferLength) {
    throw new FormatError(`tensor ${tensor} has data_offsets [${begin},${end}] outside the ${bufferLength}-byte buffer`);
  }
  const bits = Object.hasOwn(BITS, dtype) ? BITS[dtype] : null;
  const count = elementCount(shape);
  if (count === null) {
    throw new FormatError(`tensor ${tensor}: shape ${JSON.stringify(shape)} has 2^64 or more elements (its dimensions multiplied in order)`);
  }
  if (bits !== null) {
    const total = count * bits;
    if (total % 8 !== 0) {
      throw new FormatError(`tensor ${tensor}: shape ${JSON.stringify(shape)} of ${dtype} is ${total} bits, which end within a byte`);
    }
    if ((end - begin) * 8 !== total) {
      throw new FormatError(`tensor ${tensor}: shape ${JSON.stringify(shape)} of ${dtype} needs ${total / 8} bytes; data_offsets span ${end - begin}`);
    }
  }
}

/**
 * `value`'s numbers where it is an array of integers from 0 to 2^53 - 1 written as integers, or
 * null: serde reads `2.0`, `2e0` and `-0` as floating point, which it refuses for a size.
 */
function naturals(value: JsonValue | undefined): number[] | null {
  // Those written otherwise than String() writes them are JsonNumbers, not numbers.
  const all = Array.isArray(value) && value.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0);
  return all ? (value as number[]) : null;
}

/**
 * The elements of `shape`, its dimensions multiplied in order as the reference reader does, in 64
 * bits: null where a product overflows them (a later dimension of 0 does not undo it there).
 */
function elementCount(shape: readonly number[]): number | null {
  let count = 1n;
  for (const d of shape) {
    count *= BigInt(d);
    if (count >= 2n ** 64n) return null;
  }
  return Number(count);
}

/** One tensor's values from its bytes (`data`: its values in order, little-endian), in a type bnpool reads, or a `FormatError`. */
export function decodeTensor(entry: TensorEntry, data: Uint8Array): DecodedTensor {
  if (!Object.hasOwn(READERS, entry.dtype)) {
    throw new FormatError(`tensor ${JSON.stringify(entry.name)} has dtype ${JSON.stringify(entry.dtype)}; bnpool reads ${Object.keys(READERS).join(', ')}`);
  }
  const dtype = entry.dtype as SafetensorsReadDtype;
  const { bytes: size, read } = READERS[dtype];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const values = new Float64Array(data.byteLength / size);
  for (let i = 0; i < values.length; i++) values[i] = read(view, i * size);
  return { dtype, shape: entry.shape, data: values };
}

/** Decodes and validates a whole safetensors file in memory: every rule of the format, or a `FormatError`. */
export function decodeSafetensors(bytes: Uint8Array): { tensors: Record<string, DecodedTensor>; metadata: Record<string, string> } {
  const length = headerLengthOf(bytes, bytes.length);
  const base = 8 + length;
  const { entries, metadata } = parseHeader(bytes.subarray(8, base), bytes.length - base);
  // No prototype: a tensor named "__proto__" (a name like any other in the header) stays a tensor.
  const tensors: Record<string, DecodedTensor> = Object.create(null);
  for (const entry of entries) tensors[entry.name] = decodeTensor(entry, bytes.subarray(base + entry.begin, base + entry.end));
  return { tensors, metadata };
}
