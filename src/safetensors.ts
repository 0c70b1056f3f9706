/**
 * The safetensors format (huggingface/safetensors, "Format"): an unsigned 64-bit little-endian
 * header length N; N bytes of JSON mapping each tensor name to {dtype, shape, data_offsets:
 * [begin, end]} (offsets into the byte buffer that follows), plus an optional "__metadata__" map
 * of strings; then the byte buffer, little-endian, with the tensors covering it exactly. The header
 * is padded with spaces to a multiple of 8 bytes, as the reference writer does.
 */
import { FormatError } from './errors.js';

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
 * descending, then name as UTF-8 bytes), so that the bytes are those `safetensors.torch.save_file`
 * writes for the same tensors and metadata.
 */
export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): Uint8Array {
  const ordered = Object.entries(tensors).sort(([a, ta], [b, tb]) => (
    DTYPE_RANK[tb.dtype] - DTYPE_RANK[ta.dtype] || Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
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
  let parsed: unknown;
  try {
    // A byte order mark is kept, so JSON.parse refuses it as the reference reader's parser does.
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(header));
  } catch (err) {
    throw new FormatError(`the header is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new FormatError(`the header must be a JSON object; got ${JSON.stringify(parsed).slice(0, 40)}`);
  }
  const entries: HeaderEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      // The reference reader's metadata is optional: null is none.
      if (entry === null) continue;
      if (typeof entry !== 'object' || Array.isArray(entry) || Object.values(entry).some((v) => typeof v !== 'string')) {
        throw new FormatError('__metadata__ must map strings to strings');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e?.dtype !== 'string') {
      throw new FormatError(`tensor ${JSON.stringify(name)} has dtype ${JSON.stringify(e?.dtype)}; a dtype is a string (F32, BF16, I64, ...)`);
    }
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FormatError(`tensor ${JSON.stringify(name)} needs a shape of non-negative integers; got ${JSON.stringify(e.shape)}`);
    }
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1] || offsets[1] > bufferLength) {
      throw new FormatError(`tensor ${JSON.stringify(name)} has data_offsets ${JSON.stringify(offsets)} outside the ${bufferLength}-byte buffer`);
    }
    const [begin, end] = offsets as [number, number];
    const bits = Object.hasOwn(BITS, e.dtype) ? BITS[e.dtype] : null;
    const count = elementCount(e.shape as number[]);
    if (count === null) {
      throw new FormatError(`tensor ${JSON.stringify(name)}: shape ${JSON.stringify(e.shape)} has 2^64 or more elements (its dimensions multiplied in order)`);
    }
    if (bits !== null) {
      const total = count * bits;
      if (total % 8 !== 0) {
        throw new FormatError(`tensor ${JSON.stringify(name)}: shape ${JSON.stringify(e.shape)} of ${e.dtype} is ${total} bits, which end within a byte`);
      }
      if ((end - begin) * 8 !== total) {
        throw new FormatError(`tensor ${JSON.stringify(name)}: shape ${JSON.stringify(e.shape)} of ${e.dtype} needs ${total / 8} bytes; data_offsets span ${end - begin}`);
      }
    }
    entries.push({ name, dtype: e.dtype, shape: e.shape as number[], begin, end });
  }
  // The tensors must cover the buffer exactly: no overlap, no hole. Sorted by (begin, end), as the
  // reference reader does, so an empty tensor may share its offset with the next one.
  const spans = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let end = 0;
  for (const span of spans) {
    if (span.begin !== end) throw new FormatError(`tensor ${JSON.stringify(span.name)} starts at byte ${span.begin}; the previous one ends at ${end}`);
    end = span.end;
  }
  if (end !== bufferLength) throw new FormatError(`the tensors end at byte ${end} of a ${bufferLength}-byte buffer`);
  return { entries, metadata };
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
  // No prototype: a tensor named "__proto__" (JSON.parse makes it an own key) stays a tensor.
  const tensors: Record<string, DecodedTensor> = Object.create(null);
  for (const entry of entries) tensors[entry.name] = decodeTensor(entry, bytes.subarray(base + entry.begin, base + entry.end));
  return { tensors, metadata };
}
