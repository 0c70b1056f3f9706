/**
 * Files for `torch.load`: `bn.saveTorchFile` and `saveTorchFile` write a state dict as
 * `torch.save(model.state_dict(), path)` does. Checked against the bytes CPython's own pickler
 * writes for the same state dict (test/fixtures/torch-file/make_files.py, written.pt), against
 * the archive's layout (records, their order, 64-byte alignment, CRCs), and by reading the files
 * back with bnpool's torch-file reader; random sets of modules written and read back, by this
 * writer and by saveSafetensors. test/fixtures/torch-file/check_with_torch.py checks them
 * against PyTorch itself where it is installed.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError, BatchNorm, loadSafetensors, loadTorchFile, Pool, saveSafetensors, saveTorchFile,
} from '../dist/src/index.js';
import { PickleWriter } from '../dist/src/pickler.js';
import { PyCall, PyDict, readPickle } from '../dist/src/pickle.js';
import { archiveFolder } from '../dist/src/torch-save.js';
import { crc32, zipStored } from '../dist/src/zip.js';
import { detached, randomVector, sameBits } from './helpers/data.js';
import { zipEnd } from './helpers/zip.js';

let pool: Pool;
const dir = mkdtempSync(join(tmpdir(), 'bnpool-torch-save-'));
beforeAll(() => { pool = new Pool({ threads: 1 }); });
afterAll(async () => { await pool.close(); rmSync(dir, { recursive: true, force: true }); });
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/torch-file/${name}`, import.meta.url));

/** A module whose state is make_files.py's exact_state(c, dtype, k, ...): values exact in float32. */
function exact(c: number, dtype: 'float32' | 'float64', k: number, { affine = true, running = true, count = 1 } = {}): BatchNorm {
  const m = new BatchNorm(c, { dtype, affine, trackRunningStats: running, pool });
  const r = (f: (i: number) => number) => Array.from({ length: c }, (_, i) => f(i));
  m.loadStateDict({
    ...(affine ? { weight: r((i) => 0.5 + (k + i) / 8), bias: r((i) => (k - i) / 4) } : {}),
    ...(running ? { running_mean: r((i) => -(k + i) / 16), running_var: r((i) => 1 + (k * i) / 32), num_batches_tracked: count } : {}),
  });
  return m;
}

/** A module of random state: channels, dtype, affine, running statistics and a count as given. */
function random(c: number, dtype: 'float32' | 'float64', seed: number, { affine = true, running = true, count = 5 } = {}): BatchNorm {
  const m = new BatchNorm(c, { dtype, affine, trackRunningStats: running, pool });
  m.loadStateDict({
    ...(affine ? { weight: randomVector(c, dtype, seed, -2, 2), bias: randomVector(c, dtype, seed + 1, -1, 1) } : {}),
    ...(running ? { running_mean: randomVector(c, dtype, seed + 2, -3, 3), running_var: randomVector(c, dtype, seed + 3, 0.01, 4), num_batches_tracked: count } : {}),
  });
  return m;
}

/** The records of a ZIP archive as a local-header walk finds them: name, data, where the data starts; the central directory checked against them. */
function recordsOf(bytes: Uint8Array): { name: string; data: Uint8Array; start: number }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.length - 22;
  expect(view.getUint32(end, true)).toBe(0x06054b50);
  const count = view.getUint16(end + 10, true);
  let central = view.getUint32(end + 16, true);
  const out: { name: string; data: Uint8Array; start: number }[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    expect(view.getUint32(at, true)).toBe(0x04034b50);
    expect(view.getUint16(at + 8, true)).toBe(0); // stored
    const size = view.getUint32(at + 18, true);
    expect(view.getUint32(at + 22, true)).toBe(size);
    const nameLength = view.getUint16(at + 26, true);
    const start = at + 30 + nameLength + view.getUint16(at + 28, true);
    const name = Buffer.from(bytes.subarray(at + 30, at + 30 + nameLength)).toString();
    const data = bytes.subarray(start, start + size);
    expect(view.getUint32(at + 14, true)).toBe(crc32(data));
    // The central directory's entry says the same.
    expect(view.getUint32(central, true)).toBe(0x02014b50);
    expect(view.getUint32(central + 16, true)).toBe(crc32(data));
    expect(view.getUint32(central + 24, true)).toBe(size);
    expect(view.getUint32(central + 42, true)).toBe(at);
    expect(Buffer.from(bytes.subarray(central + 46, central + 46 + nameLength)).toString()).toBe(name);
    central += 46 + nameLength;
    out.push({ name, data, start });
    at = start + size;
  }
  expect(central).toBe(end);
  return out;
}

/**
 * The opcodes of a pickle of the ones PickleWriter writes, in order, with the memo index of each
 * BINPUT, LONG_BINPUT, BINGET and LONG_BINGET.
 */
function opcodesOf(pickle: Uint8Array): { op: number; memo?: number }[] {
  const view = new DataView(pickle.buffer, pickle.byteOffset, pickle.byteLength);
  const out: { op: number; memo?: number }[] = [];
  for (let at = 0; at < pickle.length;) {
    const op = pickle[at++];
    if (op === 0x71 || op === 0x68) out.push({ op, memo: pickle[at++] });
    else if (op === 0x72 || op === 0x6a) { out.push({ op, memo: view.getUint32(at, true) }); at += 4; }
    else {
      out.push({ op });
      if (op === 0x80 || op === 0x4b) at += 1;
      else if (op === 0x4d) at += 2;
      else if (op === 0x4a) at += 4;
      else if (op === 0x8a) at += 1 + pickle[at];
      else if (op === 0x58) at += 4 + view.getUint32(at, true);
      else if (op === 0x63) at = pickle.indexOf(0x0a, pickle.indexOf(0x0a, at) + 1) + 1;
      else expect([0x28, 0x2e, 0x29, 0x51, 0x52, 0x62, 0x73, 0x74, 0x75, 0x7d, 0x85, 0x89]).toContain(op);
    }
  }
  return out;
}

const text = (data: Uint8Array): string => Buffer.from(data).toString('latin1');
const stateOf = (bn: BatchNorm) => Object.entries(bn.stateDict()).map(([k, v]) => [k, typeof v === 'number' ? v : Array.from(v as ArrayLike<number>)]);

describe('saveTorchFile', () => {
  it("writes the bytes CPython's pickler and PyTorch's record layout give the same state dict", async () => {
    // make_files.py's written.pt: ten modules (the memo passes 256 entries), one named '0', a
    // float64 one, one without running statistics, keys as a model's state_dict() names them.
    const modules: Record<string, BatchNorm> = {
      'bn1.': exact(3, 'float32', 1, { count: 7 }),
      '0.': exact(2, 'float64', 2, { affine: false, count: 300 }),
      'head.': exact(4, 'float32', 3, { running: false }),
    };
    for (let k = 4; k <= 10; k++) modules[`layer${k}.bn.`] = exact(2, 'float32', k, { count: k });
    mkdirSync(join(dir, 'same'));
    const path = join(dir, 'same', 'written.pt');
    await saveTorchFile(path, modules);
    const ours = readFileSync(path);
    const theirs = readFileSync(fixture('written.pt'));
    expect(ours.length).toBe(theirs.length);
    expect(ours.equals(theirs)).toBe(true);
  });

  it('writes any name as CPython\'s pickler writes a str, a lone surrogate "surrogatepass", byte for byte', async () => {
    // make_files.py's written-odd.pt (whose records torch.save writes too, checked by hand with
    // PyTorch 2.13, all but the serialization id).
    const modules: Record<string, BatchNorm> = {
      'bn\ud800.': exact(2, 'float32', 1, { count: 3 }),
      'é.': exact(3, 'float64', 2),
      '\udc80.': exact(2, 'float32', 3, { affine: false }),
      'a\u{1f600}.': exact(2, 'float32', 4),
      'a\ufffd.': exact(2, 'float32', 5),
      'q\0\t\n"\\\u2028✓.': exact(1, 'float32', 6),
    };
    mkdirSync(join(dir, 'odd'));
    const path = join(dir, 'odd', 'written-odd.pt');
    await saveTorchFile(path, modules);
    expect(readFileSync(path).equals(readFileSync(fixture('written-odd.pt')))).toBe(true);
    const pickle = Buffer.from(recordsOf(readFileSync(path))[0].data);
    expect(pickle.includes(Buffer.from('bn\xed\xa0\x80.weight', 'latin1'))).toBe(true);
    expect(pickle.includes(Buffer.from('\xed\xb2\x80.running_var', 'latin1'))).toBe(true);
    // Read back, listed by code point (U+FFFD before U+1F600) and each module's own state.
    const found = await BatchNorm.findInTorchFile(path);
    expect(found.map((f) => f.prefix)).toEqual(['a\ufffd.', 'a\u{1f600}.', 'bn\ud800.', 'q\0\t\n"\\\u2028✓.', 'é.', '\udc80.']);
    for (const f of found) {
      const back = new BatchNorm(f.numFeatures, { dtype: f.dtype, affine: f.affine, pool });
      await back.loadTorchFile(path, { prefix: f.prefix });
      expect(stateOf(back), f.prefix).toEqual(stateOf(modules[f.prefix]));
    }
  });

  it('lays the archive out as torch.save does: its records in order, each 64-byte aligned', async () => {
    const bn = random(5, 'float64', 11, { count: 2 ** 40 + 3 });
    const path = join(dir, 'layout.pt');
    await bn.saveTorchFile(path);
    const records = recordsOf(readFileSync(path));
    expect(records.map((r) => r.name)).toEqual([
      'layout/data.pkl', 'layout/.format_version', 'layout/.storage_alignment', 'layout/byteorder',
      'layout/data/0', 'layout/data/1', 'layout/data/2', 'layout/data/3', 'layout/data/4',
      'layout/version', 'layout/.data/serialization_id',
    ]);
    for (const r of records) expect(r.start % 64).toBe(0);
    const by = Object.fromEntries(records.map((r) => [r.name.slice('layout/'.length), r.data]));
    expect(text(by['.format_version'])).toBe('1');
    expect(text(by['.storage_alignment'])).toBe('64');
    expect(text(by.byteorder)).toBe('little');
    expect(text(by.version)).toBe('3\n');
    expect(text(by['.data/serialization_id'])).toMatch(/^\d{40}$/);
    // Storages in the state dict's order, little-endian; the count an int64 scalar.
    const sd = bn.stateDict();
    const doubles = (data: Uint8Array) => Array.from(new Float64Array(new Uint8Array(data).buffer));
    expect(doubles(by['data/0'])).toEqual(Array.from(sd.weight!));
    expect(doubles(by['data/1'])).toEqual(Array.from(sd.bias!));
    expect(doubles(by['data/2'])).toEqual(Array.from(sd.running_mean!));
    expect(doubles(by['data/3'])).toEqual(Array.from(sd.running_var!));
    expect(Buffer.from(by['data/4']).readBigInt64LE(0)).toBe(2n ** 40n + 3n);

    // The pickle: an OrderedDict of _rebuild_tensor_v2 calls on ('storage', torch.DoubleStorage, key, 'cpu', numel),
    // and _metadata giving the module ('' here: no prefix) BatchNorm's version 2.
    const pids: unknown[] = [];
    const { value } = readPickle(by['data.pkl'], (pid) => { pids.push(pid); return pid; });
    expect(value).toBeInstanceOf(PyDict);
    const dict = value as PyDict;
    expect(dict.kind).toBe('collections.OrderedDict');
    expect([...dict.entries.keys()]).toEqual(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
    const weight = dict.entries.get('weight') as PyCall;
    expect(String((weight.func as { path: string }).path)).toBe('torch._utils._rebuild_tensor_v2');
    expect(weight.args.slice(1, 5)).toEqual([0, [5], [1], false]);
    const count = dict.entries.get('num_batches_tracked') as PyCall;
    expect(count.args.slice(1, 4)).toEqual([0, [], []]);
    expect(pids.map((p) => [(p as unknown[])[0], ((p as unknown[])[1] as { path: string }).path, ...(p as unknown[]).slice(2)])).toEqual([
      ['storage', 'torch.DoubleStorage', '0', 'cpu', 5], ['storage', 'torch.DoubleStorage', '1', 'cpu', 5],
      ['storage', 'torch.DoubleStorage', '2', 'cpu', 5], ['storage', 'torch.DoubleStorage', '3', 'cpu', 5],
      ['storage', 'torch.LongStorage', '4', 'cpu', 1],
    ]);
    const metadata = (dict.state as PyDict).entries.get('_metadata') as PyDict;
    expect(metadata.kind).toBe('collections.OrderedDict');
    expect([...metadata.entries]).toEqual([['', expect.any(PyDict)]]);
    expect([...(metadata.entries.get('') as PyDict).entries]).toEqual([['version', 2]]);
  });

  it('reads back bit for bit: float32 and float64, affine or not, with and without running statistics', async () => {
    const cases = [
      ['float32', true, true], ['float32', false, true], ['float64', true, true], ['float64', false, true], ['float32', true, false], ['float64', true, false],
    ] as const;
    for (const [i, [dtype, affine, running]] of cases.entries()) {
      const C = [1, 3, 17, 300, 70_000, 7][i]; // sizes pickled by BININT1, BININT2 and BININT
      const bn = random(C, dtype, 100 + i, { affine, running, count: 1000 + i });
      const path = join(dir, `rt${i}.pt`);
      await bn.saveTorchFile(path, { prefix: 'features.4.' });
      const back = new BatchNorm(C, { dtype, affine, trackRunningStats: running, pool });
      await back.loadTorchFile(path, { prefix: 'features.4.' });
      const a = bn.stateDict();
      const b = back.stateDict();
      expect(Object.keys(b)).toEqual(Object.keys(a));
      for (const key of Object.keys(a) as (keyof typeof a)[]) {
        if (key === 'num_batches_tracked') expect(b[key]).toBe(a[key]);
        else expect(sameBits(b[key] as ArrayLike<number>, a[key] as ArrayLike<number>)).toBe(true);
      }
      if (running) expect(await BatchNorm.findInTorchFile(path)).toEqual([{ prefix: 'features.4.', numFeatures: C, affine, dtype }]);
    }
  });

  it('puts several modules in one file under their prefixes, past a SETITEMS batch of 1000', async () => {
    // 201 modules of 5 tensors: 1005 items, so two batches; the memo past 256 entries.
    const modules: Record<string, BatchNorm> = {};
    for (let i = 0; i < 201; i++) modules[`blocks.${i}.norm.`] = random(2 + (i % 3), i % 2 ? 'float64' : 'float32', 1000 + i, { count: i });
    const path = join(dir, 'many.pt');
    await saveTorchFile(path, modules);
    const found = await BatchNorm.findInTorchFile(path);
    expect(found).toHaveLength(201);
    const back = Object.fromEntries(found.map((f) => [f.prefix, new BatchNorm(f.numFeatures, { dtype: f.dtype, pool })]));
    await loadTorchFile(path, back);
    for (const [prefix, m] of Object.entries(modules)) expect(stateOf(back[prefix])).toEqual(stateOf(m));
    const pickle = recordsOf(readFileSync(path))[0].data;
    // As CPython's _batch_setitems: the 1005 tensors in batches of 1000 and 5, the 201 modules' versions in one, each
    // version's dict and the instance's state by SETITEM; memo indices put in order, 0, 1, 2, ..., past 255.
    const ops = opcodesOf(pickle);
    expect(ops.filter((o) => o.op === 0x75)).toHaveLength(3);
    expect(ops.filter((o) => o.op === 0x73)).toHaveLength(202);
    const puts = ops.filter((o) => o.op === 0x71 || o.op === 0x72).map((o) => o.memo);
    expect(puts).toEqual(puts.map((_, i) => i));
    expect(ops.filter((o) => o.op === 0x72)[0].memo).toBe(256);
    expect(Math.max(...ops.filter((o) => o.op === 0x6a).map((o) => o.memo!))).toBeGreaterThan(255); // 'version', fetched late
    const { value } = readPickle(pickle, (pid) => pid);
    const metadata = ((value as PyDict).state as PyDict).entries.get('_metadata') as PyDict;
    expect([...metadata.entries.keys()]).toEqual(Object.keys(modules).map((p) => p.slice(0, -1)));
  });

  it('names the archive folder as torch.save does: the file name without its extension', () => {
    expect(archiveFolder('/a/b/resnet.v2.pt')).toBe('resnet.v2');
    expect(archiveFolder('model')).toBe('model');
    expect(archiveFolder('C:\\runs\\bn.pth')).toBe('bn');
    expect(archiveFolder('/tmp/x/ckpt.tar')).toBe('ckpt');
    // Non-ASCII paths go through a Python stream in torch.save, whose writer names the folder 'archive'; so does an empty name.
    expect(archiveFolder('/tmp/modèle.pt')).toBe('archive');
    expect(archiveFolder('/tmp/.pt')).toBe('archive');
  });

  it('gives files of different records different serialization ids', async () => {
    await random(3, 'float32', 1).saveTorchFile(join(dir, 'id.pt'));
    const first = text(recordsOf(readFileSync(join(dir, 'id.pt'))).at(-1)!.data);
    await random(3, 'float32', 2).saveTorchFile(join(dir, 'id.pt'));
    const second = text(recordsOf(readFileSync(join(dir, 'id.pt'))).at(-1)!.data);
    expect(first).toMatch(/^\d{40}$/);
    expect(second).not.toBe(first);
  });

  it('refuses bad arguments before writing anything', async () => {
    const bn = random(3, 'float32', 5);
    const path = join(dir, 'never.pt');
    for (const wrong of [0, null, {}, Buffer.from(path)]) {
      await expect(bn.saveTorchFile(wrong as never)).rejects.toThrow(/^path must be a string or a URL; got /);
      await expect(saveTorchFile(wrong as never, { 'bn.': bn })).rejects.toBeInstanceOf(ArgumentError);
    }
    await expect(bn.saveTorchFile(path, { prefix: 3 } as never)).rejects.toThrow('options.prefix must be a string; got 3');
    await expect(bn.saveTorchFile(path, { perfix: 'a.' } as never)).rejects.toBeInstanceOf(ArgumentError);
    await expect(saveTorchFile(path, {})).rejects.toThrow('modules must name at least one BatchNorm to save; got an empty object');
    await expect(saveTorchFile(path, bn as never)).rejects.toThrow(/^modules must be an object of BatchNorms by prefix/);
    await expect(saveTorchFile(path, { 'a.': 1 } as never)).rejects.toThrow('modules["a."] must be a BatchNorm; got 1');
    expect(existsSync(path)).toBe(false);
    // A prefix with a lone surrogate has no UTF-8, which a .safetensors header's names are in:
    // both its saves refuse it (a torch file takes it: the test above).
    const lone = 'bn\ud800.';
    const message = `must be well-formed Unicode to save in a format that writes names as UTF-8; got ${JSON.stringify(lone)}, which holds a lone surrogate`;
    await expect(bn.saveSafetensors(path, { prefix: lone })).rejects.toThrow(`options.prefix ${message}`);
    await expect(saveSafetensors(path, { 'a.': bn, [lone]: bn })).rejects.toThrow(`a key of modules ${message}`);
    expect(existsSync(path)).toBe(false);
    await bn.saveTorchFile(path, { prefix: 'bn\u{1f600}.' }); // a surrogate pair is one character, written as UTF-8
    expect((await BatchNorm.findInTorchFile(path)).map((f) => f.prefix)).toEqual(['bn\u{1f600}.']);
    // To load, it is a name's character like any other (a pickle can hold one: torch-file.test.ts),
    // and this file has no module under it.
    const before = stateOf(bn);
    await expect(bn.loadTorchFile(path, { prefix: lone })).rejects.toThrow(`options.prefix ${JSON.stringify(lone)} starts no tensor name in`);
    await expect(loadTorchFile(path, { [lone]: bn })).rejects.toThrow(`options.prefix ${JSON.stringify(lone)} starts no tensor name in`);
    await expect(BatchNorm.fromTorchFile(path, { prefix: lone })).rejects.toThrow(`options.prefix ${JSON.stringify(lone)} names no BatchNorm in`);
    await bn.saveSafetensors(`${path}.safetensors`, { prefix: 'bn\u{1f600}.' });
    await expect(bn.loadSafetensors(`${path}.safetensors`, { prefix: lone })).rejects.toThrow(`options.prefix ${JSON.stringify(lone)} starts no tensor name in`);
    rmSync(`${path}.safetensors`);
    expect(stateOf(bn)).toEqual(before);
    rmSync(path);
    // A module whose weight its owner detached: refused as stateDict() refuses it, no file written.
    const gone = random(3, 'float32', 6);
    detached(gone.weight!);
    await expect(gone.saveTorchFile(path)).rejects.toBeInstanceOf(ArgumentError);
    await expect(saveTorchFile(path, { 'a.': bn, 'b.': gone })).rejects.toThrow(/^weight /);
    expect(existsSync(path)).toBe(false);
    // One module under two prefixes is two modules' worth of keys, as saveSafetensors allows.
    await saveTorchFile(path, { 'a.': bn, 'b.': bn });
    expect((await BatchNorm.findInTorchFile(path)).map((f) => f.prefix)).toEqual(['a.', 'b.']);
  });
});

/**
 * The records of an archive in the ZIP PyTorch's miniz writer makes of them (MZ_ZIP_FLAG_WRITE_ZIP64):
 * local headers with bit 3 (and UTF-8's bit 11) set and no CRC or sizes, a data descriptor after
 * each record's data (sizes of 8 bytes), the central directory, then the ZIP64 end record and its
 * locator before the end record, which still holds the counts.
 */
function minizZip(records: readonly { name: string; data: Uint8Array }[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const { name, data } of records) {
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(45, 4);
    local.writeUInt16LE(0x0808, 6);
    local.writeUInt16LE(n.length, 26);
    const descriptor = Buffer.alloc(24);
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc32(data), 4);
    descriptor.writeBigUInt64LE(BigInt(data.length), 8);
    descriptor.writeBigUInt64LE(BigInt(data.length), 16);
    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt16LE(45, 4);
    header.writeUInt16LE(45, 6);
    header.writeUInt16LE(0x0808, 8);
    header.writeUInt32LE(crc32(data), 16);
    header.writeUInt32LE(data.length, 20);
    header.writeUInt32LE(data.length, 24);
    header.writeUInt16LE(n.length, 28);
    header.writeUInt32LE(offset, 42);
    central.push(header, n);
    parts.push(local, n, Buffer.from(data), descriptor);
    offset += 30 + n.length + data.length + 24;
  }
  const directory = Buffer.concat(central);
  const record = Buffer.alloc(56);
  record.writeUInt32LE(0x06064b50, 0);
  record.writeBigUInt64LE(44n, 4);
  record.writeUInt16LE(45, 12);
  record.writeUInt16LE(45, 14);
  record.writeBigUInt64LE(BigInt(records.length), 24);
  record.writeBigUInt64LE(BigInt(records.length), 32);
  record.writeBigUInt64LE(BigInt(directory.length), 40);
  record.writeBigUInt64LE(BigInt(offset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(offset + directory.length), 8);
  locator.writeUInt32LE(1, 16);
  return Buffer.concat([...parts, directory, record, locator, zipEnd(records.length, directory.length, offset)]);
}

describe("the ZIP PyTorch's own writer makes", () => {
  it('is read by bnpool as its plain one: data descriptors after the records, ZIP64 end records', async () => {
    const modules = { 'bn1.': random(3, 'float32', 31, { count: 4 }), 'layer2.0.bn.': random(5, 'float64', 32, { affine: false, count: 9 }) };
    const plain = join(dir, 'plain.pt');
    await saveTorchFile(plain, modules);
    const miniz = join(dir, 'miniz.pt');
    writeFileSync(miniz, minizZip(recordsOf(readFileSync(plain))));
    expect(await BatchNorm.findInTorchFile(miniz)).toEqual(await BatchNorm.findInTorchFile(plain));
    const back = { 'bn1.': new BatchNorm(3, { pool }), 'layer2.0.bn.': new BatchNorm(5, { dtype: 'float64', affine: false, pool }) };
    await loadTorchFile(miniz, back);
    for (const [p, m] of Object.entries(modules)) expect(stateOf(back[p as keyof typeof back])).toEqual(stateOf(m));
  });
});

describe('saveTorchFile and saveSafetensors, random modules', () => {
  it.each(['torch', 'safetensors'] as const)('%s: reads back every module of any set, under any well-formed prefixes, bit for bit', async (format) => {
    const prefix = fc.oneof(
      fc.string({ maxLength: 12 }).map((p) => `${p}.`),
      fc.string({ unit: 'grapheme', maxLength: 6 }),
      fc.constantFrom('', '0.', 'a', 'features.10.', 'x'.repeat(300)),
    );
    const spec = fc.record({
      C: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 250, max: 70_000 })),
      dtype: fc.constantFrom('float32' as const, 'float64' as const),
      affine: fc.boolean(), running: fc.boolean(), count: fc.nat({ max: 2 ** 53 - 1 }), seed: fc.integer({ min: 1, max: 2 ** 30 }),
    });
    let n = 0;
    // Prefixes as a model's are: none begins another (a BatchNorm has no submodules).
    const set = fc.uniqueArray(fc.tuple(prefix, spec), { minLength: 1, maxLength: 6, selector: ([p]) => p })
      .filter((entries) => entries.every(([p], i) => entries.every(([q], j) => i === j || !p.startsWith(q))));
    await fc.assert(fc.asyncProperty(set, async (entries) => {
      const modules = Object.fromEntries(entries.map(([p, m]) => [p, random(m.C, m.dtype, m.seed, m)]));
      const path = join(dir, `random-${n++}.${format === 'torch' ? 'pt' : 'safetensors'}`);
      await (format === 'torch' ? saveTorchFile : saveSafetensors)(path, modules);
      const back = Object.fromEntries(entries.map(([p, m]) => [p, new BatchNorm(m.C, { dtype: m.dtype, affine: m.affine, trackRunningStats: m.running, pool })]));
      await (format === 'torch' ? loadTorchFile : loadSafetensors)(path, back);
      for (const [p, m] of Object.entries(modules)) {
        const a = m.stateDict();
        const b = back[p].stateDict();
        expect(Object.keys(b)).toEqual(Object.keys(a));
        for (const key of Object.keys(a) as (keyof typeof a)[]) {
          if (key === 'num_batches_tracked') expect(b[key]).toBe(a[key]);
          else expect(sameBits(b[key] as ArrayLike<number>, a[key] as ArrayLike<number>)).toBe(true);
        }
      }
      if (format === 'torch') {
        // The pickle puts its memo entries as CPython does, in order, and fetches only those put.
        const ops = opcodesOf(recordsOf(readFileSync(path))[0].data);
        const puts = ops.filter((o) => o.op === 0x71 || o.op === 0x72).map((o) => o.memo);
        expect(puts).toEqual(puts.map((_, i) => i));
        for (const o of ops) if (o.op === 0x68 || o.op === 0x6a) expect(o.memo).toBeLessThan(puts.length);
      }
      rmSync(path);
    }), { numRuns: 60, seed: 1205 });
  });
});

describe('paths', () => {
  it('every file call refuses, with an ArgumentError before any work, a path fs would refuse with a TypeError of its own', async () => {
    const bn = random(3, 'float32', 9);
    const before = stateOf(bn);
    const calls: [string, (path: never) => Promise<unknown>][] = [
      ['bn.saveTorchFile', (p) => bn.saveTorchFile(p)], ['bn.loadTorchFile', (p) => bn.loadTorchFile(p)],
      ['saveTorchFile', (p) => saveTorchFile(p, { 'a.': bn })], ['loadTorchFile', (p) => loadTorchFile(p, { 'a.': bn })],
      ['bn.saveSafetensors', (p) => bn.saveSafetensors(p)], ['bn.loadSafetensors', (p) => bn.loadSafetensors(p)],
      ['saveSafetensors', (p) => saveSafetensors(p, { 'a.': bn })], ['loadSafetensors', (p) => loadSafetensors(p, { 'a.': bn })],
      ['findInTorchFile', (p) => BatchNorm.findInTorchFile(p)], ['fromTorchFile', (p) => BatchNorm.fromTorchFile(p)],
      ['findInSafetensors', (p) => BatchNorm.findInSafetensors(p)], ['findInOnnx', (p) => BatchNorm.findInOnnx(p)],
      ['fromOnnx', (p) => BatchNorm.fromOnnx(p)],
    ];
    const wrongs: [unknown, RegExp][] = [
      [new URL('https://example.com/bn.pt'), /^path, a URL, must be a file: URL of this machine; got "https:\/\/example.com\/bn.pt" \(/],
      [new URL('file://elsewhere/tmp/bn.pt'), /^path, a URL, must be a file: URL of this machine; got "file:\/\/elsewhere\/tmp\/bn.pt" \(/],
      [join(dir, 'bn\0.pt'), /^path must not hold a NUL character; got ".*bn\\u0000\.pt"$/],
      [pathToFileURL(join(dir, 'bn\0.pt')), /^path must not hold a NUL character; got /],
    ];
    for (const [name, call] of calls) {
      for (const [wrong, message] of wrongs) {
        const err = await call(wrong as never).then(() => null, (e: unknown) => e);
        expect(err, `${name}(${String(wrong)})`).toBeInstanceOf(ArgumentError);
        expect((err as Error).message, name).toMatch(message);
      }
    }
    expect(stateOf(bn)).toEqual(before);
    // A file: URL is its path: the file written and read back through one.
    const url = pathToFileURL(join(dir, 'by url.pt'));
    await bn.saveTorchFile(url);
    expect(recordsOf(readFileSync(join(dir, 'by url.pt')))[0].name).toBe('by url/data.pkl');
    await expect(BatchNorm.findInTorchFile(url)).resolves.toEqual([{ prefix: '', numFeatures: 3, affine: true, dtype: 'float32' }]);
  });
});

describe('PickleWriter and zipStored', () => {
  it('writes integers as save_long does, and pickle.ts reads them back', () => {
    const values = [0, 1, 255, 256, 65_535, 65_536, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40 + 5, 2 ** 53 - 1];
    const w = new PickleWriter();
    w.mark();
    for (const v of values) w.int(v);
    w.tuple();
    const bytes = w.end();
    expect(readPickle(bytes, () => null).value).toEqual(values);
    // The opcodes: BININT1 (K), BININT2 (M), BININT (J), LONG1 (0x8a) with (bit length >> 3) + 1 bytes.
    const ops = (v: number) => { const x = new PickleWriter(); x.int(v); return Array.from(x.end().subarray(2, -1)); };
    expect(ops(255)).toEqual([0x4b, 0xff]);
    expect(ops(256)).toEqual([0x4d, 0x00, 0x01]);
    expect(ops(65_536)).toEqual([0x4a, 0x00, 0x00, 0x01, 0x00]);
    expect(ops(2 ** 31)).toEqual([0x8a, 5, 0, 0, 0, 0x80, 0]);
    expect(ops(2 ** 32)).toEqual([0x8a, 5, 0, 0, 0, 0, 1]);
    expect(() => ops(-1)).toThrow(RangeError);
    expect(() => ops(0.5)).toThrow(RangeError);
  });

  it('fetches a shared string from the memo, and a fresh one never', () => {
    const w = new PickleWriter();
    w.mark();
    w.str('cpu', true);
    w.str('cpu', true);
    w.str('cpu', false);
    w.tuple();
    const bytes = w.end();
    // PROTO 2, MARK, X 'cpu' BINPUT 0, BINGET 0, X 'cpu' BINPUT 1, TUPLE, BINPUT 2, STOP
    expect(Array.from(bytes)).toEqual([
      0x80, 2, 0x28, 0x58, 3, 0, 0, 0, 0x63, 0x70, 0x75, 0x71, 0, 0x68, 0, 0x58, 3, 0, 0, 0, 0x63, 0x70, 0x75, 0x71, 1, 0x74, 0x71, 2, 0x2e,
    ]);
    expect(readPickle(bytes, () => null).value).toEqual(['cpu', 'cpu', 'cpu']);
  });

  it('refuses an archive that would need ZIP64', () => {
    const empty = new Uint8Array(0);
    expect(() => zipStored(Array.from({ length: 65_535 }, (_, i) => [`r/${i}`, empty] as const))).toThrow(ArgumentError);
    expect(recordsOf(zipStored(Array.from({ length: 3 }, (_, i) => [`r/${i}`, new Uint8Array([i])] as const))).map((r) => r.data[0])).toEqual([0, 1, 2]);
  });
});
