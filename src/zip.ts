/**
 * A ZIP archive's directory, and its entries' bytes, read through a file handle (PKWARE's
 * APPNOTE.TXT: the end of central directory record, its ZIP64 form, the central directory's file
 * headers, and the local headers their data follows). `torch.save` writes its files this way
 * (PyTorch's PyTorchStreamWriter, on miniz): entries stored uncompressed, ZIP64 where an entry or
 * the archive passes 4 GiB. Entries deflated by another tool are inflated; other methods, and
 * encrypted entries, are refused. Only the directory and the entries asked for are read, so a
 * checkpoint of gigabytes costs its directory and the few entries wanted.
 */
import type { FileHandle } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';
import { ArgumentError, FormatError } from './errors.js';
import { readBytes } from './files.js';

/** One file of the archive, as its central directory header describes it. */
export interface ZipEntry {
  readonly name: string;
  /** 0: stored; 8: deflated. */
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  /** Its bytes once read (uncompressed). */
  readonly size: number;
  /** Where its local header starts. */
  readonly headerOffset: number;
}

const END_OF_DIRECTORY = 0x06054b50;
const ZIP64_END_OF_DIRECTORY = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const DIRECTORY_HEADER = 0x02014b50;
const LOCAL_HEADER = 0x04034b50;
/** The end record's fixed part; a comment of up to 65535 bytes may follow it. */
const END_SIZE = 22;
const LOCATOR_SIZE = 20;
/** Marks a 16- or 32-bit field whose value is in the ZIP64 records instead. */
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
/** The largest central directory read (some five million entries): a larger one is a damaged or hostile file. */
const MAX_DIRECTORY = 256 * 2 ** 20;
/** The largest entry read whole (its CRC-32 checked): past this a typed array could not hold it anyway. */
export const MAX_ENTRY = 2 ** 31 - 1;

/**
 * The archive's entries by name, from its central directory; or a `FormatError` where the file is
 * not a ZIP archive, spans several disks, or has a directory that does not fit the file.
 */
export async function readZipDirectory(handle: FileHandle, fileSize: number): Promise<Map<string, ZipEntry>> {
  const tailSize = Math.min(fileSize, END_SIZE + U16_MAX + LOCATOR_SIZE);
  const tailStart = fileSize - tailSize;
  const tail = await readBytes(handle, tailStart, tailSize, 'the end of the file');
  const view = viewOf(tail);
  // The end record is the last one whose comment ends the file exactly (a comment may hold the signature too).
  let at = -1;
  for (let i = tail.length - END_SIZE; i >= 0; i--) {
    if (view.getUint32(i, true) === END_OF_DIRECTORY && i + END_SIZE + view.getUint16(i + 20, true) === tail.length) {
      at = i;
      break;
    }
  }
  if (at < 0) throw new FormatError(`no ZIP end of central directory record in the file's last ${tailSize} bytes: not a ZIP archive`);
  let disk = view.getUint16(at + 4, true);
  let directoryDisk = view.getUint16(at + 6, true);
  let count = view.getUint16(at + 10, true);
  let directorySize = view.getUint32(at + 12, true);
  let directoryOffset = view.getUint32(at + 16, true);
  if (count === U16_MAX || directorySize === U32_MAX || directoryOffset === U32_MAX) {
    if (at < LOCATOR_SIZE || view.getUint32(at - LOCATOR_SIZE, true) !== ZIP64_LOCATOR) {
      throw new FormatError('the ZIP end record defers to ZIP64 records, and no ZIP64 locator precedes it');
    }
    const recordAt = u64(view, at - LOCATOR_SIZE + 8, 'the ZIP64 end record\'s offset');
    const record = viewOf(await readBytes(handle, recordAt, 56, 'the ZIP64 end of central directory record'));
    if (record.getUint32(0, true) !== ZIP64_END_OF_DIRECTORY) throw new FormatError(`no ZIP64 end of central directory record at byte ${recordAt}`);
    disk = record.getUint32(16, true);
    directoryDisk = record.getUint32(20, true);
    count = u64(record, 32, 'the ZIP64 entry count');
    directorySize = u64(record, 40, 'the ZIP64 central directory size');
    directoryOffset = u64(record, 48, 'the ZIP64 central directory offset');
  }
  if (disk !== 0 || directoryDisk !== 0) throw new FormatError(`a ZIP archive split over disks (disk ${disk}, directory on ${directoryDisk}) is not read`);
  if (directorySize > MAX_DIRECTORY) throw new FormatError(`the ZIP central directory is ${directorySize} bytes; bnpool reads one of up to ${MAX_DIRECTORY}`);
  if (directoryOffset + directorySize > fileSize) {
    throw new FormatError(`the ZIP central directory (${directorySize} bytes at ${directoryOffset}) runs past the ${fileSize}-byte file`);
  }
  return parseDirectory(await readBytes(handle, directoryOffset, directorySize, 'the ZIP central directory'), count, fileSize);
}

/** The central directory's `count` file headers, each checked to point inside the file. */
function parseDirectory(directory: Uint8Array, count: number, fileSize: number): Map<string, ZipEntry> {
  const view = viewOf(directory);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const entries = new Map<string, ZipEntry>();
  let at = 0;
  for (let n = 0; n < count; n++) {
    if (at + 46 > directory.length || view.getUint32(at, true) !== DIRECTORY_HEADER) {
      throw new FormatError(`ZIP central directory header ${n} of ${count} is missing at byte ${at} of the directory`);
    }
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    const crc32 = view.getUint32(at + 16, true);
    let compressedSize = view.getUint32(at + 20, true);
    let size = view.getUint32(at + 24, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    let headerOffset = view.getUint32(at + 42, true);
    const end = at + 46 + nameLength + extraLength + commentLength;
    if (end > directory.length) throw new FormatError(`ZIP central directory header ${n} runs past the directory's end`);
    let name: string;
    try {
      name = decoder.decode(directory.subarray(at + 46, at + 46 + nameLength));
    } catch {
      throw new FormatError(`ZIP entry ${n}'s name is not UTF-8`);
    }
    // The ZIP64 extra field holds, in this order, those of the three that read as all ones.
    const extra = directory.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength);
    const wide = [size === U32_MAX, compressedSize === U32_MAX, headerOffset === U32_MAX];
    if (wide.some(Boolean)) {
      const values = zip64Values(extra, wide.filter(Boolean).length, name);
      if (wide[0]) size = values.shift()!;
      if (wide[1]) compressedSize = values.shift()!;
      if (wide[2]) headerOffset = values.shift()!;
    }
    if (flags & 1) throw new FormatError(`ZIP entry ${JSON.stringify(name)} is encrypted`);
    if (method !== 0 && method !== 8) throw new FormatError(`ZIP entry ${JSON.stringify(name)} uses compression method ${method}; stored (0) and deflated (8) are read`);
    if (method === 0 && compressedSize !== size) {
      throw new FormatError(`ZIP entry ${JSON.stringify(name)} is stored, yet its sizes differ (${compressedSize} and ${size})`);
    }
    if (headerOffset + 30 + compressedSize > fileSize) {
      throw new FormatError(`ZIP entry ${JSON.stringify(name)} (${compressedSize} bytes from ${headerOffset}) runs past the ${fileSize}-byte file`);
    }
    if (entries.has(name)) throw new FormatError(`the ZIP archive holds two entries named ${JSON.stringify(name)}`);
    entries.set(name, { name, method, crc32, compressedSize, size, headerOffset });
    at = end;
  }
  return entries;
}

/** The first `count` 64-bit values of an extra field's ZIP64 block (id 1). */
function zip64Values(extra: Uint8Array, count: number, name: string): number[] {
  const view = viewOf(extra);
  for (let at = 0; at + 4 <= extra.length;) {
    const id = view.getUint16(at, true);
    const length = view.getUint16(at + 2, true);
    if (id === 1) {
      if (length < 8 * count || at + 4 + length > extra.length) throw new FormatError(`ZIP entry ${JSON.stringify(name)}'s ZIP64 field is too short`);
      return Array.from({ length: count }, (_, i) => u64(view, at + 4 + 8 * i, `ZIP entry ${JSON.stringify(name)}'s ZIP64 field`));
    }
    at += 4 + length;
  }
  throw new FormatError(`ZIP entry ${JSON.stringify(name)} defers its sizes or offset to a ZIP64 field it lacks`);
}

/** Where an entry's data start: after its local header, its name and its extra field. */
async function dataStart(handle: FileHandle, entry: ZipEntry, what: string): Promise<number> {
  const local = viewOf(await readBytes(handle, entry.headerOffset, 30, `${what}'s local header`));
  if (local.getUint32(0, true) !== LOCAL_HEADER) throw new FormatError(`${what} has no local header at byte ${entry.headerOffset}`);
  return entry.headerOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
}

/** An entry's bytes: its local header read for where they start, inflated where deflated, and checked against its CRC-32. */
export async function readZipEntry(handle: FileHandle, entry: ZipEntry): Promise<Uint8Array> {
  const what = `ZIP entry ${JSON.stringify(entry.name)}`;
  if (entry.size > MAX_ENTRY || entry.compressedSize > MAX_ENTRY) throw new FormatError(`${what} is ${entry.size} bytes; bnpool reads entries of up to ${MAX_ENTRY} bytes`);
  const start = await dataStart(handle, entry, what);
  const raw = await readBytes(handle, start, entry.compressedSize, what);
  let bytes = raw;
  if (entry.method === 8) {
    try {
      bytes = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
    } catch (err) {
      throw new FormatError(`${what} does not inflate to its ${entry.size} bytes: ${(err as Error).message}`);
    }
    if (bytes.length !== entry.size) throw new FormatError(`${what} inflates to ${bytes.length} bytes; its header says ${entry.size}`);
  }
  if (crc32(bytes) !== entry.crc32) throw new FormatError(`${what}'s bytes do not match its CRC-32: the file is damaged`);
  return bytes;
}

/**
 * `length` bytes of a stored entry's data from byte `from`, read alone: for an entry too large
 * to read whole (past MAX_ENTRY), of which a caller needs a part. The CRC-32, of the whole entry,
 * is not checked. A deflated entry is only ever read whole.
 */
export async function readZipRange(handle: FileHandle, entry: ZipEntry, from: number, length: number): Promise<Uint8Array> {
  const what = `ZIP entry ${JSON.stringify(entry.name)}`;
  if (entry.method !== 0) throw new FormatError(`${what} is ${entry.size} bytes, deflated: bnpool reads a deflated entry whole, of up to ${MAX_ENTRY} bytes`);
  if (from < 0 || length < 0 || from + length > entry.size) throw new FormatError(`bytes ${from} to ${from + length} of ${what} lie past its ${entry.size}`);
  return readBytes(handle, (await dataStart(handle, entry, what)) + from, length, what);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An unsigned 64-bit little-endian value that must be a safe integer (a file offset or size). */
function u64(view: DataView, at: number, what: string): number {
  const value = view.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`${what} is ${value}, past any file's size`);
  return Number(value);
}

/** CRC-32 (ISO 3309, the polynomial ZIP uses), table-driven. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Where PyTorchStreamWriter aligns each record's data: "to 64-byte boundaries to allow for direct memory mapping". */
export const RECORD_ALIGNMENT = 64;
/** The extra field's id PyTorchStreamWriter pads a local header with ('FB'), its size, then that many 'Z's. */
const PADDING_FIELD = 0x4246;
/** 1980-01-01, 00:00, every entry's date: a fixed one, so that an archive's bytes depend on its records alone. */
const DOS_DATE = 0x21;

/**
 * A ZIP archive of `records` (name, bytes), in that order, laid out as PyTorchStreamWriter lays
 * its records: each stored (method 0), its data aligned to RECORD_ALIGNMENT bytes in the file by
 * an 'FB' extra field in its local header. The ZIP around them is the plain one: CRC and sizes in
 * each local header, no data descriptor, no ZIP64 record (an archive of 4 GiB or more is refused,
 * as are 65535 records or more: a module's state is far smaller), where PyTorch's miniz writer
 * (inline_container.cc: `MZ_ZIP_FLAG_WRITE_ZIP64`) follows each record with a data descriptor and
 * always ends with ZIP64 records; every ZIP reader, miniz's (torch.load's) among them, reads
 * either. Names are ASCII, as PyTorch's are.
 */
export function zipStored(records: ReadonlyArray<readonly [string, Uint8Array]>): Uint8Array {
  const names = records.map(([name]) => new TextEncoder().encode(name));
  const at: number[] = [];
  const pads: number[] = [];
  let size = 0;
  for (const [i, [, data]] of records.entries()) {
    at.push(size);
    const start = size + 30 + names[i].length + 4;
    pads.push((RECORD_ALIGNMENT - (start % RECORD_ALIGNMENT)) % RECORD_ALIGNMENT);
    size = start + pads[i] + data.length;
  }
  const directoryAt = size;
  for (const name of names) size += 46 + name.length;
  if (size + END_SIZE > U32_MAX || records.length >= U16_MAX) {
    throw new ArgumentError(`the modules' state makes a ZIP archive of ${records.length} records and ${size + END_SIZE} bytes; without ZIP64, which bnpool does not write, an archive holds fewer than ${U16_MAX} records and 4 GiB`);
  }
  const out = new Uint8Array(size + END_SIZE);
  const view = viewOf(out);
  const crcs = records.map(([, data]) => crc32(data));
  for (const [i, [, data]] of records.entries()) {
    let p = at[i];
    view.setUint32(p, LOCAL_HEADER, true);
    view.setUint16(p + 4, 20, true);
    view.setUint16(p + 12, DOS_DATE, true);
    view.setUint32(p + 14, crcs[i], true);
    view.setUint32(p + 18, data.length, true);
    view.setUint32(p + 22, data.length, true);
    view.setUint16(p + 26, names[i].length, true);
    view.setUint16(p + 28, 4 + pads[i], true);
    out.set(names[i], p + 30);
    p += 30 + names[i].length;
    view.setUint16(p, PADDING_FIELD, true);
    view.setUint16(p + 2, pads[i], true);
    out.fill(0x5a, p + 4, p + 4 + pads[i]);
    out.set(data, p + 4 + pads[i]);
  }
  let p = directoryAt;
  for (const [i, [, data]] of records.entries()) {
    view.setUint32(p, DIRECTORY_HEADER, true);
    view.setUint16(p + 4, 20, true);
    view.setUint16(p + 6, 20, true);
    view.setUint16(p + 14, DOS_DATE, true);
    view.setUint32(p + 16, crcs[i], true);
    view.setUint32(p + 20, data.length, true);
    view.setUint32(p + 24, data.length, true);
    view.setUint16(p + 28, names[i].length, true);
    view.setUint32(p + 42, at[i], true);
    out.set(names[i], p + 46);
    p += 46 + names[i].length;
  }
  view.setUint32(p, END_OF_DIRECTORY, true);
  view.setUint16(p + 8, records.length, true);
  view.setUint16(p + 10, records.length, true);
  view.setUint32(p + 12, p - directoryAt, true);
  view.setUint32(p + 16, directoryAt, true);
  return out;
}
