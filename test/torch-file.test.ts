/**
 * Files `torch.save` writes: `BatchNorm.findInTorchFile`, `bn.loadTorchFile` and `loadTorchFile`,
 * on files written as torch.save writes them (test/fixtures/torch-file/make_files.py: a state
 * dict, a checkpoint dict with shared, strided, half and attributed tensors, a pickled model,
 * the legacy format with a storage view, a big-endian ZIP64 deflated archive, untyped storages,
 * protocol 5, TorchScript archives scripted and traced), against the values it recorded.
 */
import {
  closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { ArgumentError, BatchNorm, FormatError, loadTorchFile, type TorchBatchNorm } from '../dist/src/index.js';
import { PyCall, PyGlobal, readPickle } from '../dist/src/pickle.js';
import { withTorchFile } from '../dist/src/torch-file.js';
import { MAX_CODE, scriptClassesOf } from '../dist/src/torch-script.js';
import { crc32 } from '../dist/src/zip.js';
import { stateOf } from './helpers/errors.js';
import { zipEnd } from './helpers/zip.js';

/** Corrupted pickles of the robustness test (`BNPOOL_TORCH_CORRUPTIONS=5000` searches longer). */
const CORRUPTIONS = Number(process.env.BNPOOL_TORCH_CORRUPTIONS ?? 200);
const fixtures = new URL('./fixtures/torch-file/', import.meta.url);
const fixture = (name: string): string => fileURLToPath(new URL(name, fixtures));
interface ExpectedModule {
  dtype: 'float32' | 'float64'; affine: boolean; numFeatures: number;
  weight?: number[]; bias?: number[]; running_mean: number[]; running_var: number[]; num_batches_tracked: number;
}
const expected = JSON.parse(readFileSync(new URL('expected.json', fixtures), 'utf8')) as Record<string, Record<string, ExpectedModule>>;
const dir = mkdtempSync(join(tmpdir(), 'bnpool-torch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The state make_files.py recorded, as `stateOf` gives it. */
function recorded(e: ExpectedModule): Record<string, unknown> {
  const { dtype: _d, affine: _a, numFeatures: _n, ...state } = e;
  return state;
}

/**
 * A stored ZIP of `records` (CRCs right), for pickles made or broken here, as chunks by position:
 * a record given as a number is that many bytes of a hole (a sparse file's; CRC 0), never written.
 */
function zipChunks(records: ReadonlyArray<readonly [string, Uint8Array | number]>): { chunks: [number, Buffer][]; size: number } {
  const chunks: [number, Buffer][] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of records) {
    const n = Buffer.from(name);
    const length = typeof data === 'number' ? data : data.length;
    const crc = typeof data === 'number' ? 0 : crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(length, 18);
    local.writeUInt32LE(length, 22);
    local.writeUInt16LE(n.length, 26);
    const header = Buffer.alloc(46);
    header.writeUInt32LE(0x02014b50, 0);
    header.writeUInt32LE(crc, 16);
    header.writeUInt32LE(length, 20);
    header.writeUInt32LE(length, 24);
    header.writeUInt16LE(n.length, 28);
    header.writeUInt32LE(offset, 42);
    chunks.push([offset, Buffer.concat([local, n, typeof data === 'number' ? Buffer.alloc(0) : Buffer.from(data)])]);
    central.push(header, n);
    offset += 30 + n.length + length;
  }
  const directory = Buffer.concat(central);
  const end = zipEnd(records.length, directory.length, offset);
  chunks.push([offset, Buffer.concat([directory, end])]);
  return { chunks, size: offset + directory.length + end.length };
}

/** zipChunks' archive written to a file, its holes left unwritten (a sparse file where the file system makes one). */
function sparseFile(name: string, records: ReadonlyArray<readonly [string, Uint8Array | number]>): string {
  const { chunks, size } = zipChunks(records);
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  try {
    for (const [at, bytes] of chunks) writeSync(fd, bytes, 0, bytes.length, at);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return path;
}

/** zipChunks' archive in memory (no holes). */
function zipOf(records: ReadonlyArray<readonly [string, Uint8Array]>): Uint8Array {
  return Buffer.concat(zipChunks(records).chunks.map(([, b]) => b));
}

/** A fixture archive's records, read with the entries' sizes its central directory gives (stored, unaligned or not). */
function recordsOf(name: string): [string, Uint8Array][] {
  const bytes = readFileSync(fixture(name));
  const records: [string, Uint8Array][] = [];
  const endAt = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  let at = bytes.readUInt32LE(endAt + 16);
  for (let i = 0; i < bytes.readUInt16LE(endAt + 10); i++) {
    const nameLength = bytes.readUInt16LE(at + 28);
    const entry = bytes.toString('utf8', at + 46, at + 46 + nameLength);
    const size = bytes.readUInt32LE(at + 20);
    const local = bytes.readUInt32LE(at + 42);
    const start = local + 30 + bytes.readUInt16LE(local + 26) + bytes.readUInt16LE(local + 28);
    records.push([entry, bytes.subarray(start, start + size)]);
    at += 46 + nameLength + bytes.readUInt16LE(at + 30) + bytes.readUInt16LE(at + 32);
  }
  return records;
}

function written(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** `findInTorchFile` refuses the file at `path` with a FormatError whose message is `message`. */
async function expectRefused(path: string, message: string, label = path): Promise<void> {
  const err = await BatchNorm.findInTorchFile(path).catch((e: unknown) => e);
  expect(err, label).toBeInstanceOf(FormatError);
  expect((err as Error).message, label).toBe(message);
}

/** `bytes` with its first run of `from` replaced by `to` (which may differ in length); `from` must be there. */
function spliced(bytes: Uint8Array, from: Uint8Array, to: Uint8Array): Buffer {
  const b = Buffer.from(bytes);
  const at = b.indexOf(from);
  expect(at, 'the bytes to replace').toBeGreaterThanOrEqual(0);
  return Buffer.concat([b.subarray(0, at), to, b.subarray(at + from.length)]);
}

/** A copy of `bytes` changed in place by `patch`, written as `name`. */
function writtenPatched(name: string, bytes: Uint8Array, patch: (b: Buffer) => void): string {
  const b = Buffer.from(bytes);
  patch(b);
  return written(name, b);
}

/** A tensor a hand-made pickle rebuilds: `_rebuild_tensor_v2(storage, offset, size, stride, False, ())`. */
interface HandTensor { name: string; type?: string; key: string; numel: number; offset: number; size: number[]; stride: number[] }

/** A protocol 2 pickle of a dict of such tensors, as torch.save writes one (opcode by opcode, no memo). */
function pickleOf(tensors: readonly HandTensor[]): Uint8Array {
  const out: number[] = [0x80, 2, 0x7d];
  const text = (s: string): void => { const b = Buffer.from(s); out.push(0x58, b.length, 0, 0, 0, ...b); };
  const int = (n: number): void => { out.push(0x4a, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff); };
  const tuple = (items: number[]): void => { out.push(0x28); items.forEach(int); out.push(0x74); };
  for (const t of tensors) {
    text(t.name);
    out.push(0x63, ...Buffer.from('torch._utils\n_rebuild_tensor_v2\n'), 0x28, 0x28);
    text('storage');
    out.push(0x63, ...Buffer.from(`${t.type ?? 'torch\nFloatStorage'}\n`));
    text(t.key);
    text('cpu');
    int(t.numel);
    out.push(0x74, 0x51); // TUPLE, BINPERSID
    int(t.offset);
    tuple(t.size);
    tuple(t.stride);
    out.push(0x89, 0x29, 0x74, 0x52, 0x73); // False, (), TUPLE, REDUCE, SETITEM
  }
  out.push(0x2e);
  return Uint8Array.from(out);
}

/** An archive of a hand-made pickle and float32 storages of the lengths given. */
function handFile(name: string, tensors: readonly HandTensor[], storages: Record<string, number>): string {
  return written(name, zipOf([['hand/data.pkl', pickleOf(tensors)], ...Object.entries(storages).map(([key, n]) => [`hand/data/${key}`, new Uint8Array(new Float32Array(n).map((_, i) => i + 1).buffer)] as const)]));
}

const outcomeOf = (e: unknown): string => (e instanceof FormatError || e instanceof ArgumentError ? e.code : `${(e as Error).name}: ${(e as Error).message}`);

describe('BatchNorm.findInTorchFile', () => {
  it('has the fixture files', () => {
    expect(Object.keys(expected)).toEqual([
      'state_dict.pt', 'checkpoint.pth', 'model.pt', 'legacy.pt', 'bigendian.pt', 'v3.pt', 'protocol5.pt', 'legacy4.pt', 'scripted.pt', 'traced.pt', 'unsafe.pt',
      'protocol4.pt', 'legacy-model.pt', 'written.pt', 'written-odd.pt',
    ]);
  });

  it('lists each file\'s BatchNorms by prefix: channels, affine, dtype, and what a pickled or TorchScript module says of itself', async () => {
    // The settings make_files.py gave the modules it pickled whole (a state dict says none).
    const settings: Record<string, Record<string, Pick<TorchBatchNorm, 'eps' | 'momentum' | 'training'>>> = {
      'model.pt': { '1.': { eps: 1e-3, momentum: null, training: false } },
      'scripted.pt': { 'bn.': { eps: 1e-3, momentum: 0.01, training: true }, 'head.0.': { eps: 1e-5, momentum: null, training: false } },
      'traced.pt': { 'bn.': { eps: 1e-3, training: false } }, // tracing records no momentum
      'protocol4.pt': { 'model.1.': { eps: 1e-4, momentum: 0.2, training: true } },
      'legacy-model.pt': { '0.': { eps: 1e-4, momentum: 0.3, training: false } },
    };
    for (const [name, modules] of Object.entries(expected)) {
      const found = await BatchNorm.findInTorchFile(fixture(name));
      const want: TorchBatchNorm[] = Object.entries(modules).map(([prefix, m]) => ({
        prefix, numFeatures: m.numFeatures, affine: m.affine, dtype: m.dtype, ...settings[name]?.[prefix],
      }));
      expect(found, name).toEqual(want);
    }
  });

  it('names a checkpoint dict\'s tensors by their keys joined with dots, and a pickled model\'s as its state_dict() would', async () => {
    expect((await BatchNorm.findInTorchFile(fixture('checkpoint.pth'))).map((f) => f.prefix)).toEqual(['state_dict.module.bn.']);
    // Sequential "0" (Conv2d) and "1" (BatchNorm2d, whose non-persistent buffer "scratch" state_dict() leaves out: else it would not load).
    const bn = new BatchNorm(3);
    await bn.loadTorchFile(fixture('model.pt'), { prefix: '1.' });
    expect(stateOf(bn)).toEqual(recorded(expected['model.pt']['1.']));
  });

  it('reads protocol 4\'s opcodes: a set by ADDITEMS, NEWOBJ_EX, bytes, an integer of 2^3000, LONG_BINGET past 256 memo entries', async () => {
    const path = fixture('protocol4.pt');
    // The non-persistent buffer's set (EMPTY_SET, ADDITEMS) keeps "scratch" out of model.1.'s state: else the module would not load.
    const bn = await BatchNorm.fromTorchFile(path, { prefix: 'model.1.' });
    expect([bn.eps, bn.momentum, bn.training]).toEqual([1e-4, 0.2, true]);
    expect(stateOf(bn)).toEqual(recorded(expected['protocol4.pt']['model.1.']));
    // late.alias is late.bn.running_var's tensor object again, by LONG_BINGET (its memo entry past 255).
    const [alias, runningVar] = await withTorchFile(path, async (file) => {
      const named = (name: string) => file.tensors.find((t) => t.name === name)!;
      return [Array.from(await file.bytesOf(named('late.alias'))), Array.from(await file.bytesOf(named('late.bn.running_var')))];
    });
    expect(alias).toEqual(runningVar);
    expect(new Float32Array(Uint8Array.from(alias).buffer)).toEqual(Float32Array.from(expected['protocol4.pt']['late.bn.'].running_var));
  });

  it('reads names of every string opcode: BINUNICODE8, SHORT_BINUNICODE, BINSTRING and SHORT_BINSTRING (Python 2 str)', async () => {
    const names = ['bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'];
    let bytes: Buffer = Buffer.from(pickleOf(names.map((name, i) => ({ name, key: String(i), numel: 2, offset: 0, size: [2], stride: [1] }))));
    const as = [
      (b: Buffer) => Buffer.concat([Buffer.of(0x8d), Buffer.from(new BigUint64Array([BigInt(b.length)]).buffer), b]),
      (b: Buffer) => Buffer.concat([Buffer.of(0x8c, b.length), b]),
      (b: Buffer) => Buffer.concat([Buffer.of(0x54), Buffer.from(new Uint32Array([b.length]).buffer), b]),
      (b: Buffer) => Buffer.concat([Buffer.of(0x55, b.length), b]),
    ];
    names.forEach((name, i) => {
      const b = Buffer.from(name);
      const binunicode = Buffer.concat([Buffer.of(0x58), Buffer.from(new Uint32Array([b.length]).buffer), b]);
      bytes = spliced(bytes, binunicode, as[i](b));
    });
    const storages = names.map((_, i) => [`hand/data/${i}`, new Uint8Array(Float32Array.of(i + 0.5, i + 1.5).buffer)] as const);
    const path = written('strings.pt', zipOf([['hand/data.pkl', bytes], ...storages]));
    const bn = new BatchNorm(2);
    await bn.loadTorchFile(path, { prefix: 'bn.' });
    expect([Array.from(bn.weight!), Array.from(bn.bias!), Array.from(bn.runningMean!), Array.from(bn.runningVar!)]).toEqual([[0.5, 1.5], [1.5, 2.5], [2.5, 3.5], [3.5, 4.5]]);
  });

  it('reads a str holding a lone surrogate\'s bytes, as CPython\'s unpickler does ("surrogatepass"), and loads its module by that prefix', async () => {
    // U+0800 is E0 A0 80; ED A0 80 is U+D800 as torch.save writes it (checked by hand: torch.load
    // gives back the key 'bn\ud800.weight').
    const hand = (prefix: string) => Buffer.from(pickleOf(['weight', 'bias', 'running_mean', 'running_var'].map((key, i) => (
      { name: `${prefix}${key}`, key: String(i), numel: 2, offset: 0, size: [2], stride: [1] }))));
    const storages = [0, 1, 2, 3].map((i) => [`hand/data/${i}`, new Uint8Array(Float32Array.of(i + 0.5, i + 1.5).buffer)] as const);
    let bytes: Buffer = hand('bn\u0800.');
    for (let i = 0; i < 4; i++) bytes = spliced(bytes, Buffer.of(0xe0, 0xa0, 0x80), Buffer.of(0xed, 0xa0, 0x80));
    const path = written('lone.pt', zipOf([['hand/data.pkl', bytes], ...storages]));
    const lone = 'bn\ud800.';
    expect((await BatchNorm.findInTorchFile(path)).map((f) => f.prefix)).toEqual([lone]);
    const bn = new BatchNorm(2);
    await bn.loadTorchFile(path, { prefix: lone });
    expect([Array.from(bn.weight!), Array.from(bn.runningVar!)]).toEqual([[0.5, 1.5], [3.5, 4.5]]);
    expect(Array.from((await BatchNorm.fromTorchFile(path, { prefix: lone })).bias!)).toEqual([1.5, 2.5]);
    // Refused: bytes that are not UTF-8 even so (CPython refuses them too), and a leading
    // surrogate's bytes then a trailing one's, which CPython reads as two characters and a
    // JavaScript string cannot tell from the one they pair to (U+10000).
    const refused: [string, Buffer, Buffer][] = [
      ['ff', Buffer.of(0xe0, 0xa0, 0x80), Buffer.of(0xff, 0xa0, 0x80)],
      ['pair', Buffer.of(0xe0, 0xa0, 0x80, 0xe0, 0xa0, 0x80), Buffer.of(0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80)],
    ];
    for (const [label, from, to] of refused) {
      const pickle = spliced(hand('bn\u0800\u0800.'), from, to);
      await expectRefused(written(`lone-${label}.pt`, zipOf([['hand/data.pkl', pickle], ...storages])),
        'BINUNICODE at byte 8 of the pickle is not UTF-8, nor a lone surrogate\'s bytes', label);
    }
  });

  it('names a TorchScript module\'s tensors by attribute, its state as its code declares its parameters and buffers', async () => {
    const names = await withTorchFile(fixture('scripted.pt'), async (file) => file.tensors.map((t) => t.name));
    // Net's plain tensor attribute "scale" (not in its __buffers__) and the tensor of "table" (a
    // Lookup, not a Module) are not state; head.0 (affine=False) has no weight or bias.
    expect(names).toEqual([
      'conv.weight', 'conv.bias', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked',
      'head.0.running_mean', 'head.0.running_var', 'head.0.num_batches_tracked',
    ]);
    // Without its class's code, bn is walked as any object (every attribute by name), and nothing is known of its settings.
    const noCode = written('nocode.pt', zipOf(recordsOf('scripted.pt').filter(([n]) => !n.endsWith('/modules/batchnorm.py'))));
    expect((await BatchNorm.findInTorchFile(noCode)).map((f) => f.prefix)).toEqual(['bn.', 'head.0.']);
    const bn = await BatchNorm.fromTorchFile(noCode, { prefix: 'bn.' });
    expect([bn.eps, bn.momentum, bn.training]).toEqual([1e-5, 0.1, true]);
    expect(stateOf(bn)).toEqual(recorded(expected['scripted.pt']['bn.']));
  });

  it('reads TorchScript code as PythonPrint prints it: state lists, Final constants, a traced batch_norm call\'s eps', () => {
    const bn = (body: string[]): string => ['class BatchNorm2d(Module):', ...body.map((l) => `  ${l}`), '  def forward(self: __torch__.M.BatchNorm2d,', '    input: Tensor) -> Tensor:'].join('\n');
    const call = (eps: string): string => `    out = torch.batch_norm(input, self.weight, self.bias, running_mean, running_var, False, 0.10000000000000001, ${eps}, True)`;
    const one = (source: string): unknown => Object.fromEntries(Object.entries(scriptClassesOf('__torch__.M', source).get('__torch__.M.BatchNorm2d') ?? {}).map(([k, v]) => [k, v instanceof Set ? [...v] : v]));
    expect(one(bn(['__parameters__ = ["weight", "bias", ]', '__buffers__ = ["running_mean", ]', 'eps : Final[float] = 1.0000000000000001e-05', 'momentum : Final[float] = 0.10000000000000001'])))
      .toEqual({ module: true, state: ['weight', 'bias', 'running_mean'], eps: 1e-5, momentum: 0.1 });
    expect(one(`${bn(['__parameters__ = []', 'momentum : Final[NoneType] = None', 'eps : Final[NoneType] = None'])}\n${call('0.001')}`))
      .toEqual({ module: true, state: [], eps: 1e-3, momentum: null }); // an eps of None is no eps: the call's is taken
    expect(one(`${bn(['eps : Final[float] = 0.0001'])}\n${call('0.001')}`)).toEqual({ module: true, state: [], eps: 1e-4 });
    expect(one(`${bn([])}\n${call('0.')}`)).toEqual({ module: true, state: [], eps: 0 }); // PythonPrint's 0.0; checkEps refuses it later
    // Calls that disagree, or one whose eps is not a literal, say nothing of eps.
    expect(one(`${bn([])}\n${call('0.001')}\n${call('1e-05')}`)).toEqual({ module: true, state: [] });
    expect(one(`${bn([])}\n${call('0.001')}\n${call('CONSTANTS.c0')}`)).toEqual({ module: true, state: [] });
    expect(one(`${bn([])}\n    out = my.torch.batch_norm(input, a, b, c, d, False, 0.1, 0.5, True)`)).toEqual({ module: true, state: [] });
    // Another class's lines are its own; a class not a Module is marked so; the file's top level is passed over.
    const two = scriptClassesOf('__torch__', `import x\nclass Lookup(object):\n  __buffers__ = ["values", ]\n  eps : Final[float] = 0.5\n${bn(['eps : Final[float] = 0.25']).replace('BatchNorm2d', 'B')}\nfoo = 1\n  eps : Final[float] = 0.125\n`);
    expect([...two.keys()]).toEqual(['__torch__.Lookup', '__torch__.B']);
    expect([two.get('__torch__.Lookup')!.module, two.get('__torch__.Lookup')!.eps, two.get('__torch__.B')!.module, two.get('__torch__.B')!.eps]).toEqual([false, 0.5, true, 0.25]);
  });
});

describe('bn.loadTorchFile', () => {
  it('loads every recorded module of every file, bit for bit', async () => {
    for (const [name, modules] of Object.entries(expected)) {
      for (const [prefix, m] of Object.entries(modules)) {
        const bn = new BatchNorm(m.numFeatures, { affine: m.affine, dtype: m.dtype });
        await bn.loadTorchFile(fixture(name), { prefix });
        expect(stateOf(bn), `${name} ${prefix}`).toEqual(recorded(m));
      }
    }
  });

  it('reads views: tensors sharing a storage, a strided one, a float16 one with attributes, a legacy storage view', async () => {
    const m = expected['checkpoint.pth']['state_dict.module.bn.'];
    // Shared: weight and bias are halves of one storage. Strided: running_var is every other element from 1.
    // A constant stride-1 read from the start would give the weight's values for the bias, the storage's first for the variance.
    expect(m.bias).not.toEqual(m.weight);
    const bn = new BatchNorm(5);
    await bn.loadTorchFile(fixture('checkpoint.pth'), { prefix: 'state_dict.module.bn.' });
    expect(Array.from(bn.bias!)).toEqual(m.bias);
    expect(Array.from(bn.runningVar!)).toEqual(m.running_var);
    expect(m.running_mean.every((v) => Math.fround(v) === v && Number.isInteger(v * 2 ** 24))).toBe(true); // half values
    expect(Array.from(bn.runningMean!)).toEqual(m.running_mean);
    const legacy = new BatchNorm(3, { dtype: 'float64' });
    await legacy.loadTorchFile(fixture('legacy.pt'), { prefix: 'bn.' });
    expect(Array.from(legacy.runningMean!)).toEqual(expected['legacy.pt']['bn.'].running_mean);
  });

  it('never runs the pickle: a file whose pickle calls posix.system loads, and the command did not run', async () => {
    const bytes = readFileSync(fixture('unsafe.pt'));
    expect(bytes.includes('posix\nsystem\n')).toBe(true);
    expect(bytes.includes('touch bnpool-pickle-ran')).toBe(true);
    const bn = new BatchNorm(2);
    await bn.loadTorchFile(fixture('unsafe.pt'), { prefix: 'bn.' });
    expect(stateOf(bn)).toEqual(recorded(expected['unsafe.pt']['bn.']));
    expect(existsSync('bnpool-pickle-ran')).toBe(false);
  });

  it('refuses what does not fit, naming the file\'s BatchNorms, and changes nothing', async () => {
    const bn = new BatchNorm(4);
    const before = stateOf(bn);
    await expect(bn.loadTorchFile(fixture('state_dict.pt'), { prefix: 'bn2.' }))
      .rejects.toThrow(/options\.prefix "bn2\." starts no tensor name in .*state_dict\.pt; its BatchNorm prefixes \(BatchNorm\.findInTorchFile\) are "bn1\.", "layer1\.0\.bn2\."$/);
    await expect(bn.loadTorchFile(fixture('state_dict.pt'), { prefix: 'layer1.0.bn2.' })).rejects.toThrow(ArgumentError);
    await expect(bn.loadTorchFile(fixture('state_dict.pt'))).rejects.toThrow(/does not fit this module/);
    await expect(bn.loadTorchFile(42 as never)).rejects.toThrow(/^path must be a string or a URL; got 42/);
    await expect(bn.loadTorchFile(fixture('state_dict.pt'), { prefix: 1 } as never)).rejects.toThrow(/^options\.prefix must be a string/);
    expect(stateOf(bn)).toEqual(before);
  });

  it('checks every tensor against its storage, and every storage against its record, before any is read', async () => {
    const bn = (key: string, over: Partial<HandTensor> = {}): HandTensor[] => ['weight', 'bias', 'running_mean', 'running_var'].map((k, i) => ({
      name: `bn.${k}`, key: `${key}${i}`, numel: 3, offset: 0, size: [3], stride: [1], ...(k === 'running_var' ? over : {}),
    }));
    const storages = { s0: 3, s1: 3, s2: 3, s3: 3 };
    const m = new BatchNorm(3);
    await m.loadTorchFile(handFile('hand.pt', bn('s'), storages), { prefix: 'bn.' });
    expect(Array.from(m.runningVar!)).toEqual([1, 2, 3]); // the hand-made file reads as written
    await m.loadTorchFile(handFile('hand-strided.pt', bn('s', { numel: 6, offset: 1, stride: [2] }), { ...storages, s3: 6 }), { prefix: 'bn.' });
    expect(Array.from(m.runningVar!)).toEqual([2, 4, 6]);
    const refusals: [Partial<HandTensor>, Record<string, number>, RegExp][] = [
      [{ numel: 5, offset: 1, stride: [2] }, { s3: 5 }, /tensor "bn\.running_var" \(size \[3\], stride \[2\], offset 1\) reaches element 5 of a 5-element storage/],
      [{ numel: 4 }, { s3: 3 }, /storage "s3" holds 4 F32 elements \(16 bytes\); its record has 12/],
      [{ key: 'gone' }, {}, /refers to storage "gone", which has no record hand\/data\/gone/],
      [{ type: 'numpy\nndarray' }, {}, /storage "s3" has type numpy\.ndarray; bnpool reads torch\.FloatStorage/],
      [{ size: [3, 1], stride: [1] }, {}, /tensor "bn\.running_var" has offset 0, size a tuple of 2 items and stride a tuple of 1 item/],
    ];
    for (const [i, [over, extra, message]] of refusals.entries()) {
      const path = handFile(`refused-${i}.pt`, bn('s', over), { ...storages, ...extra });
      await expect(BatchNorm.findInTorchFile(path), String(message)).rejects.toThrow(message);
    }
    expect(Array.from(m.runningVar!)).toEqual([2, 4, 6]);
  });

  it('refuses pickles nested past any checkpoint\'s depth, sharing containers into too many paths, or naming two tensors alike, as FormatErrors', async () => {
    const nested = [0x80, 2, ...new Array(100_000).fill(0x5d), ...new Array(99_999).fill(0x61), 0x2e]; // 100000 lists, each appended to the one before
    const deep = written('deep.pt', zipOf([['deep/data.pkl', Uint8Array.from(nested)]]));
    // One APPENDS of 300000 items (more than a call takes as arguments) reads; a SETITEMS of an odd count does not.
    const long = [0x80, 2, 0x5d, 0x28, ...new Array(300_000).fill(0x4e), 0x65, 0x2e];
    expect(await BatchNorm.findInTorchFile(written('long.pt', zipOf([['long/data.pkl', Uint8Array.from(long)]])))).toEqual([]);
    const odd = written('odd.pt', zipOf([['odd/data.pkl', Uint8Array.from([0x80, 2, 0x7d, 0x28, 0x4e, 0x75, 0x2e])]]));
    await expect(BatchNorm.findInTorchFile(odd)).rejects.toThrow(/^pickle opcode SETITEMS at byte 5 has a key without a value$/);
    await expect(BatchNorm.findInTorchFile(deep)).rejects.toThrow(/^the pickle's containers nest deeper than 1000$/);
    const shared = [0x80, 2, 0x5d, 0x71, 0, 0x30]; // L0 = []; then Li+1 = [Li, Li]: 2^40 paths to L0
    for (let i = 0; i < 40; i++) shared.push(0x5d, 0x28, 0x68, i, 0x68, i, 0x65, 0x71, i + 1, 0x30);
    shared.push(0x68, 40, 0x2e);
    const wide = written('wide.pt', zipOf([['wide/data.pkl', Uint8Array.from(shared)]]));
    await expect(BatchNorm.findInTorchFile(wide)).rejects.toThrow(/walked more than 1000000 times/);
    // _rebuild_parameter(_rebuild_parameter(...)) 100000 deep: {'p': Parameter(Parameter(...))}.
    const parameter = [...Buffer.from('ctorch._utils\n_rebuild_parameter\nq\x00')]; // GLOBAL, BINPUT 0
    const wrapped = [0x80, 2, 0x7d, 0x58, 1, 0, 0, 0, 0x70, ...parameter, 0x30];
    for (let i = 0; i < 100_000; i++) wrapped.push(0x68, 0);
    wrapped.push(0x4e); // None at the core
    for (let i = 0; i < 100_000; i++) wrapped.push(0x85, 0x52); // TUPLE1, REDUCE
    wrapped.push(0x73, 0x2e);
    const parameters = written('parameters.pt', zipOf([['parameters/data.pkl', Uint8Array.from(wrapped)]]));
    await expect(BatchNorm.findInTorchFile(parameters)).rejects.toThrow(/^tensor "p" is wrapped in more than 8 parameters or subclasses$/);
    // Two tensors of one name: a key with a dot and a nested dict that make the same one.
    const outer = pickleOf([{ name: 'bn.weight', key: '0', numel: 1, offset: 0, size: [], stride: [] }]);
    const inner = pickleOf([{ name: 'weight', key: '0', numel: 1, offset: 0, size: [], stride: [] }]);
    // {'bn.weight': t, 'bn': {'weight': t}}: the outer dict's entry, then 'bn' and the inner dict (its PROTO and STOP left out), SETITEM.
    const nestedTwice = Uint8Array.from([...outer.subarray(0, outer.length - 1), 0x58, 2, 0, 0, 0, 0x62, 0x6e, ...inner.subarray(2, inner.length - 1), 0x73, 0x2e]);
    const ambiguous = written('twice.pt', zipOf([['twice/data.pkl', nestedTwice], ['twice/data/0', new Uint8Array(4)]]));
    await expect(BatchNorm.findInTorchFile(ambiguous)).rejects.toThrow(/^two tensors of the file are named "bn\.weight"$/);
  });

  it('refuses a TorchScript code record past MAX_CODE, before reading it, as a FormatError', async () => {
    const empty = Uint8Array.of(0x80, 2, 0x29, 0x2e); // the pickle of (), as constants.pkl holds
    const records = (code: number | Uint8Array): [string, Uint8Array | number][] => [
      ['ts/data.pkl', pickleOf([{ name: 'bn.weight', key: '0', numel: 1, offset: 0, size: [], stride: [] }])], ['ts/data/0', new Uint8Array(4)],
      ['ts/constants.pkl', empty], ['ts/code/__torch__.py', code],
    ];
    await expect(BatchNorm.findInTorchFile(sparseFile('code.pt', records(MAX_CODE + 1))))
      .rejects.toThrow(new RegExp(`^the TorchScript code record "ts/code/__torch__\\.py" is ${MAX_CODE + 1} bytes; bnpool reads code of up to ${MAX_CODE}$`));
    await expect(BatchNorm.findInTorchFile(sparseFile('code.pt', records(Buffer.from('class Net(Module):\n  __parameters__ = []\n'))))).resolves.toEqual([]);
  });

  it('refuses a legacy file whose header, storage keys or storage lengths do not hold, each with its own message', async () => {
    // legacy.pt: pickles of the magic number (bytes 0-14), the protocol version (15-20), sys_info, the
    // object, the storage keys ['0', '1', '2', '4', '5'] (from byte 624), then each storage: an int64 count and its values.
    const all = readFileSync(fixture('legacy.pt'));
    const keysAt = all.indexOf(Buffer.from([0x80, 2, 0x5d]), 600);
    const countAt = all.indexOf(Buffer.from('e.'), keysAt) + 2;
    expect([keysAt, all.readBigInt64LE(countAt)]).toEqual([624, 3n]);
    const key = (from: string, to: string) => (b: Buffer): void => { b.write(to, b.indexOf(`X\x01\x00\x00\x00${from}`, keysAt, 'latin1') + 5, 'latin1'); };
    /** Writes `to` over the one place `from` is (latin1 strings of one length). */
    const patchAt = (from: string, to: string) => (b: Buffer): void => {
      const at = b.indexOf(from, 0, 'latin1');
      expect([at, b.indexOf(from, at + 1, 'latin1'), to.length]).toEqual([expect.any(Number), -1, from.length]);
      expect(at).toBeGreaterThanOrEqual(0);
      b.write(to, at, 'latin1');
    };
    const cases: [string, (b: Buffer) => void, RegExp][] = [
      ['magic', (b) => { b[6] ^= 1; }, /^the file starts with pickled \d+, not torch\.save's magic number$/],
      ['version', (b) => { b[18] = 0xea; }, /^legacy torch\.save protocol 1002 is not read \(1001 is\)$/],
      ['unknown', key('5', '7'), /^the legacy storage keys name "7", which the pickle never refers to$/],
      // The version's pickle made the int 1 and BINPERSID ('Q'), same length.
      ['header-id', (b) => { b.write('K\x01Q', 17, 'latin1'); }, /^a legacy torch\.save header pickle holds a persistent id \(1\)$/],
      // bn.bias's storage made "0" (bn.weight's) with 4 elements for its 3.
      ['twice', patchAt('X\x01\x00\x00\x001q\x0fh\x07K\x03', 'X\x01\x00\x00\x000q\x0fh\x07K\x04'), /^storage "0" is described twice, differently$/],
      // running_mean's view ("3", offset 2, 3 elements) of storage "2" (8 elements) moved to offset 6.
      ['view', patchAt('K\x02K\x03\x87', 'K\x06K\x03\x87'), /^storage "2" has a view .* outside it$/],
      // The last key, "5", made the int 5 (then None pushed and popped: same length).
      ['keys', patchAt('X\x01\x00\x00\x005q\x05e', 'K\x05N0N0q\x05e'), /^the legacy storage keys are .*, not a list of strings$/],
    ];
    for (const [name, patch, message] of cases) await expect(BatchNorm.findInTorchFile(writtenPatched(`legacy-${name}.pt`, all, patch)), name).rejects.toThrow(message);
    // Key '5' left out of the list (its 8 bytes, X len '5' BINPUT 5, cut: the storages follow the shorter pickle).
    const five = all.indexOf('X\x01\x00\x00\x005q\x05', keysAt, 'latin1');
    const missing = written('legacy-missing.pt', Buffer.concat([all.subarray(0, five), all.subarray(five + 8)]));
    await expect(BatchNorm.findInTorchFile(missing)).rejects.toThrow(/^storage "5" is not among the legacy storage keys$/);
    // A storage's count is read with its values: the file lists its modules, and loading one says what is wrong.
    const counted = writtenPatched('legacy-count.pt', all, (b) => b.writeBigInt64LE(4n, countAt));
    expect((await BatchNorm.findInTorchFile(counted)).map((f) => f.prefix)).toEqual(['bn.']);
    await expect(new BatchNorm(3, { dtype: 'float64' }).loadTorchFile(counted, { prefix: 'bn.' })).rejects.toThrow(/^storage "\d+" has 4 elements in the file; its pickle says 3$/);
  });

  it('refuses a file of neither format, and says so of one pickled with protocol 0 or 1', async () => {
    const legacy = 'L119547037146038801333356L\n.';
    const notZip = (bytes: number): string => `no ZIP end of central directory record in the file's last ${bytes} bytes: not a ZIP archive; `
      + 'a file torch.save wrote is one (or, before PyTorch 1.6, starts with a pickled magic number)';
    const text = 'weight,bias\n1,0\n'.repeat(4);
    const protocol01 = "the file is in torch.save's legacy format pickled with protocol 0 or 1, whose text opcodes bnpool does not read "
      + "(nor does torch.load's default, weights_only=True); save it again with pickle_protocol 2 or later";
    const cases: [string, string, string][] = [
      ['short', 'PK\x05', 'a 3-byte file is neither a ZIP archive nor a legacy torch.save file'],
      ['text', text, notZip(text.length)],
      // The legacy format's first two pickles as protocols 0 and 1 write them (pickle.dumps(MAGIC_NUMBER,
      // protocol=0) and the version, 1001), then the start of a dict. torch.load(weights_only=True)
      // refuses both too: "Unsupported operand 76" (LONG, the text opcode of the magic number).
      ['protocol0', `${legacy}I1001\n.(dp0\n`, protocol01],
      ['protocol1', `${legacy}M\xe9\x03.}q\x00(X`, protocol01],
      // Its first 26 bytes alone are not one.
      ['cut', legacy.slice(0, 26), notZip(26)],
    ];
    for (const [name, bytes, message] of cases) await expectRefused(written(`${name}.pt`, Buffer.from(bytes, 'latin1')), message, name);
    // An archive's pickle of protocol 0, as torch.save(..., pickle_protocol=0) begins it: GLOBAL, then PUT.
    await expectRefused(
      written('archive0.pt', zipOf([['archive0/data.pkl', Buffer.from('ccollections\nOrderedDict\np0\n(tRp1\n.', 'latin1')]])),
      'pickle opcode 0x70 ("p") at byte 25 is not read: bnpool reads the binary opcodes of protocols 2 to 5',
    );
  });

  it("reads protocol 2's bytes as CPython's unpickler does, and refuses text latin1 cannot encode", () => {
    // pickle.dumps([b'', b'\xff\x00a', bytearray(b'xy'), bytearray()], protocol=2): bytes() for the
    // empty one, _codecs.encode(text, 'latin1') for the others, and bytearray(...) around them.
    const dumped = Buffer.from(
      '80025d710028635f5f6275696c74696e5f5f0a62797465730a710129527102635f636f646563730a656e636f64650a71035804000000c3bf00617104'
      + '58060000006c6174696e317105867106527107635f5f6275696c74696e5f5f0a6279746561727261790a71086803580200000078797109680586710a'
      + '52710b85710c52710d68082952710e652e', 'hex');
    const [empty, bytes, array, emptyArray] = readPickle(dumped, () => null).value as unknown[];
    expect(empty).toEqual(new Uint8Array(0));
    expect(bytes).toEqual(Uint8Array.of(0xff, 0x00, 0x61));
    // bytearray is a call, kept as one, of the bytes it was made from.
    expect(array).toBeInstanceOf(PyCall);
    expect([(array as PyCall).func, (array as PyCall).args]).toEqual([new PyGlobal('builtins', 'bytearray'), [Uint8Array.of(0x78, 0x79)]]);
    expect((emptyArray as PyCall).args).toEqual([]);
    // _codecs.encode(text, encoding), PROTO 2 first: GLOBAL at 2, the text at 18, the encoding after it, TUPLE2, REDUCE.
    const encode = (text: string, encoding: string): Uint8Array => {
      const str = (s: string): number[] => { const b = Buffer.from(s); return [0x58, ...new Uint8Array(Uint32Array.of(b.length).buffer), ...b]; };
      return Uint8Array.from([0x80, 2, 0x63, ...Buffer.from('_codecs\nencode\n'), ...str(text), ...str(encoding), 0x86, 0x52, 0x2e]);
    };
    // Python: UnicodeEncodeError: 'latin-1' codec can't encode character '\u0101' in position 3.
    const wide = encode('a\xffa\u0101', 'latin1');
    expect(() => readPickle(wide, () => null)).toThrow(FormatError);
    expect(() => readPickle(wide, () => null)).toThrow(`pickle opcode REDUCE at byte ${wide.length - 2} encodes text as latin1 whose character 3 is U+0101, past latin1's 0xFF`);
    expect(() => readPickle(encode('a\u{1f600}', 'latin1'), () => null)).toThrow(/whose character 1 is U\+1F600, past/);
    // Another encoding is a call, never read as latin1 (pickle writes none).
    const utf8 = readPickle(encode('a\xff', 'utf-8'), () => null).value;
    expect(utf8).toBeInstanceOf(PyCall);
    expect((utf8 as PyCall).args).toEqual(['a\xff', 'utf-8']);
  });


  it('refuses a stack, MARK or memo that cannot be, or a protocol past 5, as CPython does, naming the opcode and its own byte', () => {
    // PROTO 2 takes bytes 0 and 1; each refused opcode follows. CPython refuses each too:
    // "unpickling stack underflow", "unexpected MARK found", "could not find MARK", "Memo value not
    // found at index 5", and an OverflowError or MemoryError for the lengths past 2^53.
    const cases: [number[], string][] = [
      [[0x2e], 'pickle opcode STOP at byte 2 finds its stack empty'],
      [[0x4e, 0x30, 0x30, 0x2e], 'pickle opcode POP at byte 4 finds its stack empty'],
      [[0x32, 0x2e], 'pickle opcode DUP at byte 2 finds its stack empty'],
      [[0x4e, 0x87, 0x2e], 'pickle opcode TUPLE3 at byte 3 finds its stack empty'],
      // The operands are read before the stack is: the message still names the opcode's byte.
      [[0x71, 0, 0x2e], 'pickle opcode BINPUT at byte 2 finds its stack empty'],
      [[0x72, 0, 0, 0, 0, 0x2e], 'pickle opcode LONG_BINPUT at byte 2 finds its stack empty'],
      [[0x94, 0x2e], 'pickle opcode MEMOIZE at byte 2 finds its stack empty'],
      [[0x28, 0x74, 0x74, 0x2e], 'pickle opcode TUPLE at byte 4 has no MARK before it'],
      [[0x31, 0x2e], 'pickle opcode POP_MARK at byte 2 has no MARK before it'],
      [[0x28, 0x2e], 'pickle opcode STOP at byte 3 finds its stack empty'],
      [[0x4b, 7, 0x28, 0x4b, 8, 0x30, 0x2e], 'pickle opcode STOP at byte 8 finds its stack empty'],
      [[0x4e, 0x71, 0, 0x68, 5, 0x2e], 'pickle opcode BINGET at byte 5 recalls memo 5, which was never stored'],
      [[0x6a, 0x2c, 1, 0, 0, 0x2e], 'pickle opcode LONG_BINGET at byte 2 recalls memo 300, which was never stored'],
      [[0x8d, ...new Array(8).fill(0xff), 0x2e], 'BINUNICODE8 at byte 2 has a length of 18446744073709551615 bytes'],
      [[0x4e, 0x8e, 0, 0, 0, 0, 0, 0, 0x20, 0, 0x2e], 'BINBYTES8 at byte 3 has a length of 9007199254740992 bytes'],
      // CPython: "unsupported pickle protocol: 6", at the start or later.
      [[0x80, 6, 0x4e, 0x2e], 'pickle PROTO at byte 2 names protocol 6; pickle\'s are 0 to 5'],
    ];
    for (const [ops, message] of cases) {
      const pickle = Uint8Array.from([0x80, 2, ...ops]);
      expect(() => readPickle(pickle, () => null), message).toThrow(FormatError);
      expect(() => readPickle(pickle, () => null), message).toThrow(new RegExp(`^${message.replace(/[()[\]^$]/g, '\\$&')}$`));
    }
    // STOP takes the top of the stack in use, a MARK still open or not, as CPython (and torch.load) do.
    expect(readPickle(Uint8Array.from([0x80, 2, 0x4b, 7, 0x28, 0x4b, 9, 0x2e]), () => null)).toEqual({ value: 9, end: 8 });
    // PROTO 0 to 5 anywhere, as CPython reads it.
    expect(readPickle(Uint8Array.from([0x80, 5, 0x4b, 7, 0x80, 0, 0x2e]), () => null).value).toBe(7);
    // POP on an empty stack pops the MARK open, as CPython's does: 7, MARK, POP, STOP gives 7.
    expect(readPickle(Uint8Array.from([0x80, 2, 0x4b, 7, 0x28, 0x30, 0x2e]), () => null)).toEqual({ value: 7, end: 7 });
  });
  it('refuses opcodes whose operands cannot be, naming the opcode, its byte and what it met', async () => {
    // Each pickle's last opcode (or its only one) is the one refused; PROTO 2 takes bytes 0 and 1.
    const global = (module: string, name: string): number[] => [0x63, ...Buffer.from(`${module}\n${name}\n`)];
    const cases: [string, number[], string][] = [
      ['long4', [0x8b, 0xff, 0xff, 0xff, 0xff], 'pickle LONG4 at byte 2 has a negative length'],
      ['binstring', [0x54, 0xfe, 0xff, 0xff, 0xff], 'pickle BINSTRING at byte 2 has a negative length'],
      // ADDITEMS to what is not a set: a list, an object, an integer of more than 64 bytes, bytes.
      ['list', [0x5d, 0x28, 0x4e, 0x90], 'pickle opcode ADDITEMS at byte 5 adds to a list of 0 items, not a set'],
      ['object', [...global('builtins', 'object'), 0x29, 0x52, 0x28, 0x90], 'pickle opcode ADDITEMS at byte 22 adds to a builtins.object object, not a set'],
      ['integer', [0x8b, 65, 0, 0, 0, ...new Array(65).fill(7), 0x28, 0x90], 'pickle opcode ADDITEMS at byte 73 adds to an integer of 65 bytes, not a set'],
      ['bytes', [0x43, 3, 1, 2, 3, 0x28, 0x90], 'pickle opcode ADDITEMS at byte 8 adds to 3 bytes, not a set'],
      // Protocol 2's bytes, _codecs.encode('abc', 'latin1'), are bytes too.
      ['codecs', [...global('_codecs', 'encode'), 0x58, 3, 0, 0, 0, ...Buffer.from('abc'), 0x58, 6, 0, 0, 0, ...Buffer.from('latin1'), 0x86, 0x52, 0x28, 0x90],
        'pickle opcode ADDITEMS at byte 40 adds to 3 bytes, not a set'],
    ];
    for (const [name, ops, message] of cases) {
      await expectRefused(written(`opcode-${name}.pt`, zipOf([[`${name}/data.pkl`, Uint8Array.from([0x80, 2, ...ops, 0x2e])]])), message, name);
    }
  });

  it('refuses a tensor whose storage, storage key, length or dtype cannot be, naming it', async () => {
    const hand = (numel = 1): Buffer => Buffer.from(pickleOf([{ name: 'bn.weight', key: '0', numel, offset: 0, size: [], stride: [] }]));
    const v3 = recordsOf('v3.pt');
    const v3With = (from: string, to: string): [string, Uint8Array][] =>
      v3.map(([n, d]) => [n, n.endsWith('data.pkl') ? spliced(d, Buffer.from(from), Buffer.from(to)) : d]);
    const cases: [string, ReadonlyArray<readonly [string, Uint8Array]>, string][] = [
      // The persistent id's tuple itself, BINPERSID left out.
      ['tuple', [['h/data.pkl', spliced(hand(), Buffer.of(0x74, 0x51), Buffer.of(0x74))]], 'tensor "bn.weight" is rebuilt from a tuple of 5 items, not a storage'],
      // The key an integer (BININT1 7), not a string.
      ['key', [['h/data.pkl', spliced(hand(), Buffer.of(0x58, 1, 0, 0, 0, 0x30), Buffer.of(0x4b, 7))]], 'a storage\'s key 7 or length 1 is malformed'],
      ['numel', [['h/data.pkl', hand(-1)]], 'a storage\'s key "0" or length -1 is malformed'],
      // _rebuild_tensor_v3's dtype, one torch does not have.
      ['dtype', v3With('torch\nfloat32\n', 'torch\nfloat99\n'), 'tensor "bn.weight" has dtype torch.float99, which bnpool does not know'],
      // _rebuild_tensor_v3 with a dtype, from the FloatStorage of one element a hand-made pickle gives.
      ['typed', [['h/data.pkl', spliced(spliced(hand(), Buffer.from('_rebuild_tensor_v2'), Buffer.from('_rebuild_tensor_v3')), Buffer.of(0x89, 0x29, 0x74), Buffer.from('\x89)ctorch\nfloat32\nt', 'latin1'))], ['h/data/0', new Uint8Array(4)]], 'tensor "bn.weight" is rebuilt with a dtype from a typed storage'],
    ];
    for (const [name, records, message] of cases) {
      await expectRefused(written(`tensor-${name}.pt`, zipOf(records)), message, name);
    }
    // Unpatched, the same pickles read.
    expect(await BatchNorm.findInTorchFile(written('tensor-hand.pt', zipOf([['h/data.pkl', hand()], ['h/data/0', new Uint8Array(4)]])))).toEqual([]);
    expect((await BatchNorm.findInTorchFile(written('tensor-v3.pt', zipOf(v3)))).map((f) => f.prefix)).toEqual(['bn.']);
  });

  it('names the items APPENDS gives an object (a list subclass) by their index, as its state_dict() would', async () => {
    const names = ['weight', 'bias', 'running_mean', 'running_var'];
    const inner = pickleOf(names.map((name, i) => ({ name, key: String(i), numel: 2, offset: 0, size: [2], stride: [1] })));
    // {'layers': Layers()} with Layers a list subclass, then APPENDS [None, {the four tensors}]:
    // as pickle writes a list subclass (__reduce_ex__'s listitems).
    const ops = [
      0x80, 2, 0x7d, 0x58, 6, 0, 0, 0, ...Buffer.from('layers'), 0x63, ...Buffer.from('model\nLayers\n'), 0x29, 0x81,
      0x28, 0x4e, ...inner.subarray(2, inner.length - 1), 0x65, 0x73, 0x2e,
    ];
    const storages = names.map((_, i) => [`hand/data/${i}`, new Uint8Array(Float32Array.of(i + 0.5, i + 1.5).buffer)] as const);
    const path = written('appended.pt', zipOf([['hand/data.pkl', Uint8Array.from(ops)], ...storages]));
    expect((await BatchNorm.findInTorchFile(path)).map((f) => [f.prefix, f.numFeatures])).toEqual([['layers.1.', 2]]);
    const bn = await BatchNorm.fromTorchFile(path);
    expect([Array.from(bn.weight!), Array.from(bn.bias!), Array.from(bn.runningMean!), Array.from(bn.runningVar!)]).toEqual([[0.5, 1.5], [1.5, 2.5], [2.5, 3.5], [3.5, 4.5]]);
  });

  it('refuses an archive without data.pkl, with records outside one folder, or with a byteorder of neither kind', async () => {
    const records = recordsOf('state_dict.pt');
    const archive = (name: string, rename: (n: string) => string, data?: (n: string, d: Uint8Array) => Uint8Array): string =>
      written(name, zipOf(records.map(([n, d]) => [rename(n), data ? data(n, d) : d])));
    await expect(BatchNorm.findInTorchFile(archive('no-pickle.pt', (n) => n.replace('data.pkl', 'data.pkx'))))
      .rejects.toThrow(/^the archive has no state_dict\/data\.pkl: not a file torch\.save wrote$/);
    await expect(BatchNorm.findInTorchFile(archive('no-folder.pt', (n) => n.replace('state_dict/', ''))))
      .rejects.toThrow(/^a torch\.save archive keeps its records in one folder; its first entry is "data\.pkl"$/);
    await expect(BatchNorm.findInTorchFile(archive('byteorder.pt', (n) => n, (n, d) => (n.endsWith('/byteorder') ? Buffer.from('middle') : d))))
      .rejects.toThrow(/^the archive's byteorder is "middle"; 'little' or 'big' expected$/);
  });

  it('names a quantized tensor but refuses to load its values', async () => {
    const names = ['bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'];
    const plain = Buffer.from(pickleOf(names.map((name, i) => ({ name, key: String(i), numel: 2, offset: 0, size: [2], stride: [1] }))));
    // bn.weight's call made torch._utils._rebuild_qtensor (a GLOBAL is a line: its length is free).
    const quantized = spliced(plain, Buffer.from('torch._utils\n_rebuild_tensor_v2\n'), Buffer.from('torch._utils\n_rebuild_qtensor\n'));
    const path = written('quantized.pt', zipOf([['hand/data.pkl', quantized], ...names.map((_, i) => [`hand/data/${i}`, new Uint8Array(8)] as const)]));
    const names2 = await withTorchFile(path, async (file) => file.tensors.map((t) => [t.name, t.dtype]));
    expect(names2[0]).toEqual(['bn.weight', 'torch._utils._rebuild_qtensor']);
    const bn = new BatchNorm(2);
    const before = stateOf(bn);
    await expect(bn.loadTorchFile(path, { prefix: 'bn.' })).rejects.toThrow(/^tensor "bn\.weight" is a quantized tensor, whose values bnpool does not read$/);
    expect(stateOf(bn)).toEqual(before);
  });

  it('refuses a malformed ZIP structure before reading any entry it names, each with its own message', async () => {
    const pickle = pickleOf([{ name: 'bn.weight', key: '0', numel: 1, offset: 0, size: [], stride: [] }]);
    const good = Buffer.from(zipOf([['z/data.pkl', pickle], ['z/data/0', new Uint8Array(4)]]));
    const endAt = good.length - 22;
    const directoryAt = good.readUInt32LE(endAt + 16);
    const secondAt = directoryAt + 46 + 'z/data.pkl'.length; // the central header of z/data/0
    expect((await BatchNorm.findInTorchFile(written('zip-good.pt', good))).length).toBe(0); // the archive unpatched reads
    const cases: [string, (b: Buffer) => void, RegExp][] = [
      ['encrypted', (b) => b.writeUInt16LE(1, secondAt + 8), /^ZIP entry "z\/data\/0" is encrypted$/],
      ['bzip2', (b) => b.writeUInt16LE(12, secondAt + 10), /^ZIP entry "z\/data\/0" uses compression method 12; stored \(0\) and deflated \(8\) are read$/],
      ['sizes', (b) => b.writeUInt32LE(5, secondAt + 20), /^ZIP entry "z\/data\/0" is stored, yet its sizes differ \(5 and 4\)$/],
      ['past', (b) => b.writeUInt32LE(good.length - 30, secondAt + 42), new RegExp(`^ZIP entry "z/data/0" \\(4 bytes from ${good.length - 30}\\) runs past the ${good.length}-byte file$`)],
      ['name', (b) => { b[directoryAt + 46] = 0xff; }, /^ZIP entry 0's name is not UTF-8$/],
      ['missing', (b) => b.writeUInt16LE(3, endAt + 10), /^ZIP central directory header 2 of 3 is missing at byte \d+ of the directory$/],
      ['directory', (b) => b.writeUInt32LE(b.readUInt32LE(endAt + 12) + 1000, endAt + 12), /^the ZIP central directory \(\d+ bytes at \d+\) runs past the \d+-byte file$/],
      ['disks', (b) => b.writeUInt16LE(1, endAt + 4), /^a ZIP archive split over disks \(disk 1, directory on 0\) is not read$/],
      ['zip64', (b) => b.writeUInt16LE(0xffff, endAt + 10), /^the ZIP end record defers to ZIP64 records, and no ZIP64 locator precedes it$/],
      ['wide', (b) => b.writeUInt32LE(0xffffffff, secondAt + 24), /^ZIP entry "z\/data\/0" defers its sizes or offset to a ZIP64 field it lacks$/],
      // Entries are read only when asked for: the pickle's, here.
      ['local', (b) => b.writeUInt32LE(1, directoryAt + 42), /^ZIP entry "z\/data\.pkl" has no local header at byte 1$/],
      ['inflate', (b) => b.writeUInt16LE(8, directoryAt + 10), /^ZIP entry "z\/data\.pkl" does not inflate to its \d+ bytes: /],
    ];
    for (const [name, patch, message] of cases) await expect(BatchNorm.findInTorchFile(writtenPatched(`zip-${name}.pt`, good, patch)), name).rejects.toThrow(message);
    // z/data/0's central header given an extra field (the directory's size in the end record grown to match).
    const nameEnd = secondAt + 46 + 'z/data/0'.length;
    const withExtra = (...fields: [number, Buffer][]): Buffer => {
      const extra = Buffer.concat(fields.map(([id, data]) => Buffer.concat([Buffer.from(Uint16Array.of(id, data.length).buffer), data])));
      const b = Buffer.concat([good.subarray(0, nameEnd), extra, good.subarray(nameEnd)]);
      b.writeUInt16LE(extra.length, secondAt + 30);
      b.writeUInt32LE(b.readUInt32LE(b.length - 22 + 12) + extra.length, b.length - 22 + 12);
      return b;
    };
    const u64 = (v: bigint): Buffer => Buffer.from(BigUint64Array.of(v).buffer);
    // Its size deferred to a ZIP64 field (id 1), after a field of another kind (a timestamp, id 0x5455).
    const wide = (value: Buffer): Buffer => { const b = withExtra([0x5455, Buffer.alloc(5)], [1, value]); b.writeUInt32LE(0xffffffff, secondAt + 24); return b; };
    expect(await BatchNorm.findInTorchFile(written('zip64-field.pt', wide(u64(4n))))).toEqual([]);
    // The locator of ZIP64 records, naming byte 0 (a local header) as the ZIP64 end record.
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    const located = Buffer.concat([good.subarray(0, endAt), locator, good.subarray(endAt)]);
    located.writeUInt16LE(0xffff, endAt + 20 + 10);
    // z/data.pkl deflated, its header's size 10 bytes more than the pickle's, or past what is read whole.
    const deflated = deflateRawSync(pickle);
    const packed = (size: number): Buffer => {
      const b = Buffer.from(zipOf([['z/data.pkl', deflated], ['z/data/0', new Uint8Array(4)]]));
      b.writeUInt16LE(8, b.readUInt32LE(b.length - 22 + 16) + 10);
      b.writeUInt32LE(size, b.readUInt32LE(b.length - 22 + 16) + 24);
      return b;
    };
    const more: [string, Buffer | string, string][] = [
      ['header', writtenPatched('zip-header.pt', good, (b) => b.writeUInt16LE(1000, secondAt + 28)), 'ZIP central directory header 1 runs past the directory\'s end'],
      ['zip64-short', wide(Buffer.alloc(4)), 'ZIP entry "z/data/0"\'s ZIP64 field is too short'],
      ['zip64-past', wide(u64(2n ** 60n)), 'ZIP entry "z/data/0"\'s ZIP64 field is 1152921504606846976, past any file\'s size'],
      ['zip64-sizes', wide(u64(5n)), 'ZIP entry "z/data/0" is stored, yet its sizes differ (4 and 5)'],
      ['zip64-record', located, 'no ZIP64 end of central directory record at byte 0'],
      ['directory-size', writtenPatched('zip-directory-size.pt', good, (b) => b.writeUInt32LE(0xfffffffe, endAt + 12)), 'the ZIP central directory is 4294967294 bytes; bnpool reads one of up to 268435456'],
      ['inflated', packed(pickle.length + 10), `ZIP entry "z/data.pkl" inflates to ${pickle.length} bytes; its header says ${pickle.length + 10}`],
      ['entry-size', packed(2 ** 31), 'ZIP entry "z/data.pkl" is 2147483648 bytes; bnpool reads entries of up to 2147483647 bytes'],
    ];
    for (const [name, b, message] of more) {
      await expectRefused(typeof b === 'string' ? b : written(`zip-${name}.pt`, b), message, name);
    }
    // Two entries of one name: which one a reader takes would decide what it reads.
    const twice = written('zip-twice.pt', zipOf([['z/data.pkl', pickle], ['z/data/0', new Uint8Array(4)], ['z/data/0', new Uint8Array(4).fill(7)]]));
    await expect(BatchNorm.findInTorchFile(twice)).rejects.toThrow(/^the ZIP archive holds two entries named "z\/data\/0"$/);
  });

  it('refuses a file of another format, and a damaged record, as FormatErrors', async () => {
    await expect(BatchNorm.findInTorchFile(fileURLToPath(new URL('../onnx/model.onnx', fixtures)))).rejects.toThrow(FormatError);
    // A record's bytes follow its local header's name and extra field (the length before the name).
    const all = readFileSync(fixture('state_dict.pt'));
    const dataOf = (record: string): number => all.indexOf(record) + record.length + all.readUInt16LE(all.indexOf(record) - 2);
    const damaged = writtenPatched('damaged.pt', all, (b) => { b[dataOf('state_dict/data/1')] ^= 0x40; }); // bn1.weight's storage, the second the pickle meets
    expect((await BatchNorm.findInTorchFile(damaged)).length).toBe(2); // the pickle is intact; storages are not read
    await expect(new BatchNorm(4).loadTorchFile(damaged, { prefix: 'bn1.' })).rejects.toThrow(/entry "state_dict\/data\/1"'s bytes do not match its CRC-32/);
    await new BatchNorm(6, { affine: false }).loadTorchFile(damaged, { prefix: 'layer1.0.bn2.' }); // its own storages are whole
    const broken = writtenPatched('broken.pt', all, (b) => { b[dataOf('state_dict/data.pkl') + 40] ^= 0x01; });
    await expect(BatchNorm.findInTorchFile(broken)).rejects.toThrow(/data\.pkl"'s bytes do not match its CRC-32/);
  });
});

describe('a 2 GiB archive', () => {
  it('loads a module reading its own storages alone, and from a record past 2 GiB - 1 only the parts its tensors span', async (ctx) => {
    const big = 2 ** 31 + 16;
    const tensors = ['weight', 'bias', 'running_mean', 'running_var'].map((k, i) => ({ name: `bn.${k}`, key: `s${i}`, numel: 3, offset: 0, size: [3], stride: [1] }));
    // bn2 shares bn's storages but for its running_var: three elements of a 2 GiB + 16 storage.
    tensors.push(...tensors.map((t) => ({ ...t, name: t.name.replace('bn.', 'bn2.') })));
    tensors[7] = { ...tensors[7], key: 'big', numel: big / 4 };
    // bn4's running_var: three elements of it 2^28 + 1 apart, spanning more than 2 GiB - 1 bytes of it.
    tensors.push(...tensors.slice(4).map((t) => ({ ...t, name: t.name.replace('bn2.', 'bn4.') })));
    tensors[11] = { ...tensors[11], stride: [2 ** 28 + 1] };
    const small = (i: number): Uint8Array => new Uint8Array(Float32Array.of(i + 0.5, i + 1.5, i + 2.5).buffer);
    const path = sparseFile('big.pt', [['hand/data.pkl', pickleOf(tensors)], ...[0, 1, 2, 3].map((i) => [`hand/data/s${i}`, small(i)] as const), ['hand/data/big', big]]);
    try {
      // Only where the file system leaves the 2 GiB a hole (Linux's do): no disk is written.
      if (statSync(path).blocks * 512 > 2 ** 20) ctx.skip();
      expect((await BatchNorm.findInTorchFile(path)).map((f) => f.prefix)).toEqual(['bn.', 'bn2.', 'bn4.']);
      const bn4 = new BatchNorm(3);
      await expect(bn4.loadTorchFile(path, { prefix: 'bn4.' })).rejects.toThrow(/^tensor "bn4\.running_var" spans 2147483660 bytes of its storage; bnpool reads up to 2147483647$/);
      expect(Array.from(bn4.runningVar!)).toEqual([1, 1, 1]);
      const bn = new BatchNorm(3);
      await bn.loadTorchFile(path, { prefix: 'bn.' });
      expect(Array.from(bn.runningVar!)).toEqual([3.5, 4.5, 5.5]);
      // bn2's running_var: three elements of the big record, read alone (its CRC-32, of the whole, is not checked).
      const bn2 = new BatchNorm(3);
      await loadTorchFile(path, { 'bn.': new BatchNorm(3), 'bn2.': bn2 });
      expect([Array.from(bn2.runningMean!), Array.from(bn2.runningVar!)]).toEqual([[2.5, 3.5, 4.5], [0, 0, 0]]);
      // Deflated, the record could only be read whole: refused, nothing changed.
      const fd = openSync(path, 'r+');
      try {
        const tailAt = statSync(path).size - 2048;
        const tail = Buffer.alloc(2048);
        readSync(fd, tail, 0, 2048, tailAt);
        const header = tail.lastIndexOf(Buffer.from('PK\x01\x02', 'latin1')); // the big record's central header, the last
        writeSync(fd, Buffer.of(8, 0), 0, 2, tailAt + header + 10); // its method: 8, deflated
      } finally {
        closeSync(fd);
      }
      const bn3 = new BatchNorm(3);
      await expect(bn3.loadTorchFile(path, { prefix: 'bn2.' }))
        .rejects.toThrow(/^ZIP entry "hand\/data\/big" is 2147483664 bytes, deflated: bnpool reads a deflated entry whole, of up to 2147483647 bytes$/);
      expect(Array.from(bn3.runningVar!)).toEqual([1, 1, 1]);
    } finally {
      rmSync(path, { force: true });
    }
  });

  it('reads a legacy file\'s storage past 2 GiB - 1 only where its tensors lie', async (ctx) => {
    // legacy.pt with its last storage ("5", num_batches_tracked's LongStorage of 1) made 2^28 + 1
    // elements long: its numel in the pickle (BININT1 1 at byte 598 made BININT) and its count
    // before its bytes, the file grown by a hole past them.
    const all = readFileSync(fixture('legacy.pt'));
    expect([all[598], all[599], all.readBigInt64LE(all.length - 16)]).toEqual([0x4b, 1, 1n]);
    const numel = 2 ** 28 + 1;
    const numelOp = Buffer.alloc(5);
    numelOp[0] = 0x4a;
    numelOp.writeInt32LE(numel, 1);
    const head = Buffer.concat([all.subarray(0, 598), numelOp, all.subarray(600)]);
    head.writeBigInt64LE(BigInt(numel), head.length - 16);
    const path = join(dir, 'legacy-big.pt');
    writeFileSync(path, head);
    truncateSync(path, head.length - 8 + numel * 8);
    try {
      if (statSync(path).blocks * 512 > 2 ** 20) ctx.skip();
      const bn = new BatchNorm(3, { dtype: 'float64' });
      await bn.loadTorchFile(path, { prefix: 'bn.' });
      expect(stateOf(bn)).toEqual(recorded(expected['legacy.pt']['bn.'])); // its count, the first 8 bytes of the big storage, as written
    } finally {
      rmSync(path, { force: true });
    }
  });
});

describe('BatchNorm.fromTorchFile', () => {
  it('makes the module a file holds: channels, affine, dtype and state; a pickled model\'s eps, momentum and mode too', async () => {
    const pickled = await BatchNorm.fromTorchFile(fixture('model.pt'));
    expect([pickled.numFeatures, pickled.eps, pickled.momentum, pickled.training, pickled.affine]).toEqual([3, 1e-3, null, false, true]);
    expect(stateOf(pickled)).toEqual(recorded(expected['model.pt']['1.']));
    const plain = await BatchNorm.fromTorchFile(fixture('state_dict.pt'), { prefix: 'layer1.0.bn2.' });
    expect([plain.numFeatures, plain.eps, plain.momentum, plain.training, plain.affine]).toEqual([6, 1e-5, 0.1, true, false]);
    expect(stateOf(plain)).toEqual(recorded(expected['state_dict.pt']['layer1.0.bn2.']));
    // PyTorch's momentum weights the new batch: a module of the onnx convention keeps its own (0.9 on the old value).
    const onnx = await BatchNorm.fromTorchFile(fixture('model.pt'), { convention: 'onnx' });
    expect([onnx.convention, onnx.eps, onnx.momentum]).toEqual(['onnx', 1e-3, 0.9]);
    // TorchScript: a scripted module's Final eps and momentum, a traced one's eps from its batch_norm call (its momentum is not recorded).
    const scripted = await BatchNorm.fromTorchFile(fixture('scripted.pt'), { prefix: 'bn.' });
    expect([scripted.numFeatures, scripted.eps, scripted.momentum, scripted.training, scripted.affine]).toEqual([4, 1e-3, 0.01, true, true]);
    const head = await BatchNorm.fromTorchFile(fixture('scripted.pt'), { prefix: 'head.0.' });
    expect([head.numFeatures, head.eps, head.momentum, head.training, head.affine]).toEqual([3, 1e-5, null, false, false]);
    expect(stateOf(head)).toEqual(recorded(expected['scripted.pt']['head.0.']));
    const traced = await BatchNorm.fromTorchFile(fixture('traced.pt'));
    expect([traced.numFeatures, traced.eps, traced.momentum, traced.training]).toEqual([5, 1e-3, 0.1, false]);
    const legacy = await BatchNorm.fromTorchFile(fixture('legacy.pt'), { eps: 1e-4, layout: 'channels-last' });
    expect([legacy.dtype, legacy.eps, legacy.layout]).toEqual(['float64', 1e-4, 'channels-last']);
    expect(stateOf(legacy)).toEqual(recorded(expected['legacy.pt']['bn.']));
  });

  it('refuses a file of several BatchNorms without a prefix, a prefix it lacks, and bad options before reading', async () => {
    await expect(BatchNorm.fromTorchFile(fixture('state_dict.pt'))).rejects.toThrow(/state_dict\.pt holds 2 BatchNorms \("bn1\.", "layer1\.0\.bn2\."\): options\.prefix picks one$/);
    await expect(BatchNorm.fromTorchFile(fixture('state_dict.pt'), { prefix: 'bn9.' }))
      .rejects.toThrow(/options\.prefix "bn9\." names no BatchNorm in .*; its BatchNorm prefixes \(BatchNorm\.findInTorchFile\) are "bn1\.", "layer1\.0\.bn2\."$/);
    await expect(BatchNorm.fromTorchFile(join(dir, 'missing.pt'), { eps: -1 })).rejects.toThrow(/^options\.eps must be a finite number > 0/);
    await expect(BatchNorm.fromTorchFile(fixture('state_dict.pt'), { prefix: 7 } as never)).rejects.toThrow(/^options\.prefix must be a string; got 7/);
    await expect(BatchNorm.fromTorchFile(fixture('state_dict.pt'), { prefix: 'bn1.', affine: false })).rejects.toThrow(/does not fit this module/);
    // A pickled module whose eps no module takes: model.pt's BINFLOAT 1e-3 made -1.
    const records = recordsOf('model.pt');
    const at = records.findIndex(([n]) => n.endsWith('/data.pkl'));
    const eps = Buffer.alloc(9);
    eps[0] = 0x47;
    eps.writeDoubleBE(1e-3, 1);
    const pickle = Buffer.from(records[at][1]);
    const where = pickle.indexOf(eps);
    expect(where).toBeGreaterThan(0);
    pickle.writeDoubleBE(-1, where + 1);
    const path = written('eps.pt', zipOf(records.map(([n, d], i) => [n, i === at ? pickle : d])));
    await expect(BatchNorm.fromTorchFile(path)).rejects.toThrow(/^the pickled module "1\." in .*eps\.pt: its eps must be a finite number > 0; got -1$/);
    expect((await BatchNorm.fromTorchFile(path, { eps: 0.01 })).eps).toBe(0.01); // ... unless the caller's options set it
  });
});

describe('loadTorchFile(path, modules)', () => {
  it('loads several modules of one file, or none where one does not fit', async () => {
    const a = new BatchNorm(4);
    const b = new BatchNorm(6, { affine: false });
    await loadTorchFile(fixture('state_dict.pt'), { 'bn1.': a, 'layer1.0.bn2.': b });
    expect(stateOf(a)).toEqual(recorded(expected['state_dict.pt']['bn1.']));
    expect(stateOf(b)).toEqual(recorded(expected['state_dict.pt']['layer1.0.bn2.']));
    const c = new BatchNorm(4);
    const d = new BatchNorm(5, { affine: false });
    const before = [stateOf(c), stateOf(d)];
    await expect(loadTorchFile(fixture('state_dict.pt'), { 'bn1.': c, 'layer1.0.bn2.': d })).rejects.toThrow(ArgumentError);
    expect([stateOf(c), stateOf(d)]).toEqual(before);
    await expect(loadTorchFile(fixture('state_dict.pt'), {})).rejects.toThrow(/^modules must name at least one BatchNorm to load/);
  });

  it("loads none where a later module's own array was transferred away: each is checked before any loads", async () => {
    const a = new BatchNorm(4);
    const b = new BatchNorm(6, { affine: false });
    a.runningMean!.fill(0.5);
    const before = stateOf(a);
    structuredClone(b.runningVar!.buffer, { transfer: [b.runningVar!.buffer] });
    const err = await loadTorchFile(fixture('state_dict.pt'), { 'bn1.': a, 'layer1.0.bn2.': b }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArgumentError);
    expect((err as Error).message).toMatch(/running variance/);
    expect(stateOf(a)).toEqual(before);
  });
});

/** Opcodes of a random pickle, each with well-formed arguments (memo indices 0-3, short texts, small ints). */
const RANDOM_OPS: ReadonlyArray<(rand: () => number) => number[]> = [
  () => [0x28], () => [0x29], () => [0x5d], () => [0x7d], () => [0x4e], () => [0x88], () => [0x74], () => [0x85], () => [0x86],
  () => [0x87], () => [0x61], () => [0x65], () => [0x73], () => [0x75], () => [0x52], () => [0x81], () => [0x62], () => [0x51],
  () => [0x30], () => [0x31], () => [0x32], () => [0x8f], () => [0x90], () => [0x91], () => [0x93], () => [0x94], () => [0x6c], () => [0x64],
  (r) => [0x4b, Math.floor(r() * 256)], (r) => [0x68, Math.floor(r() * 4)], (r) => [0x71, Math.floor(r() * 4)],
  (r) => [0x4a, ...[0, 0, 0, 0].map(() => Math.floor(r() * 256))], (r) => [0x8a, 1, Math.floor(r() * 256)],
  (r) => [0x8c, 1, 0x61 + Math.floor(r() * 3)], (r) => [0x58, 7, 0, 0, 0, ...Buffer.from(['storage', 'weight_', 'running'][Math.floor(r() * 3)])],
  (r) => [0x63, ...Buffer.from(['torch._utils\n_rebuild_tensor_v2\n', 'torch\nFloatStorage\n', 'collections\nOrderedDict\n',
    'torch._utils\n_rebuild_parameter\n', 'torch._tensor\n_rebuild_from_type_v2\n', 'builtins\nset\n'][Math.floor(r() * 6)])],
];

describe('robustness', () => {
  it('reads random opcode streams as a list or a typed error', async () => {
    let seed = Number(process.env.BNPOOL_TORCH_SEED ?? 5) + 1;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const outcomes = new Map<string, number>();
    const path = join(dir, 'random.pt');
    for (let t = 0; t < CORRUPTIONS * 5; t++) {
      const ops: number[] = [0x80, 2];
      for (let n = 1 + Math.floor(rand() * 40); n > 0; n--) ops.push(...RANDOM_OPS[Math.floor(rand() * RANDOM_OPS.length)](rand));
      ops.push(0x2e);
      writeFileSync(path, zipOf([['random/data.pkl', Uint8Array.from(ops)], ['random/data/0', new Uint8Array(64)]]));
      const outcome = await BatchNorm.findInTorchFile(path).then(() => 'ok', outcomeOf);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    expect([...outcomes.keys()].sort()).toEqual(['ERR_BNPOOL_FORMAT', 'ok']);
  });

  it('reads every truncation of a file, and many corruptions of its pickle (CRCs right), as a list, a module, or a typed error that changes nothing', async () => {
    const outcomes = new Map<string, number>();
    let seed = Number(process.env.BNPOOL_TORCH_SEED ?? 5);
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const cases: Uint8Array[] = [];
    for (const name of ['state_dict.pt', 'legacy.pt', 'bigendian.pt']) {
      const bytes = readFileSync(fixture(name));
      for (let cut = 0; cut < bytes.length; cut += 13) cases.push(bytes.subarray(0, cut));
    }
    const records = recordsOf('checkpoint.pth');
    const pickle = records.findIndex(([n]) => n.endsWith('/data.pkl'));
    for (let t = 0; t < CORRUPTIONS; t++) {
      const p = Uint8Array.from(records[pickle][1]);
      for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) p[Math.floor(rand() * p.length)] = Math.floor(rand() * 256);
      cases.push(zipOf(records.map(([n, d], i) => [n, i === pickle ? p : d])));
    }
    // A TorchScript archive's code and pickle, corrupted (the code is only ever matched line by line).
    const script = recordsOf('scripted.pt');
    for (let t = 0; t < CORRUPTIONS / 4; t++) {
      const suffix = rand() < 0.5 ? '/data.pkl' : 'modules/batchnorm.py';
      const at = script.findIndex(([n]) => n.endsWith(suffix));
      const p = Uint8Array.from(script[at][1]);
      for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) p[Math.floor(rand() * p.length)] = Math.floor(rand() * 256);
      cases.push(zipOf(script.map(([n, d], i) => [n, i === at ? p : d])));
    }
    const legacy = readFileSync(fixture('legacy.pt'));
    for (let t = 0; t < CORRUPTIONS / 4; t++) {
      const b = Uint8Array.from(legacy);
      b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      cases.push(b);
    }
    const path = join(dir, 'case.pt');
    for (const c of cases) {
      writeFileSync(path, c);
      const found = await BatchNorm.findInTorchFile(path).then((f) => (f.length > 0 ? 'ok' : 'none'), outcomeOf);
      outcomes.set(`find ${found}`, (outcomes.get(`find ${found}`) ?? 0) + 1);
      const target = new BatchNorm(5);
      target.runningMean!.set([1, 2, 3, 4, 5]);
      const before = stateOf(target);
      const loaded = await target.loadTorchFile(path, { prefix: 'state_dict.module.bn.' }).then(() => 'ok', outcomeOf);
      outcomes.set(`load ${loaded}`, (outcomes.get(`load ${loaded}`) ?? 0) + 1);
      if (loaded !== 'ok') expect(stateOf(target), 'a failed load changes nothing').toEqual(before);
    }
    const kinds = [...outcomes.keys()].sort();
    expect(kinds.filter((k) => !/^(find|load) (ok|none|ERR_BNPOOL_FORMAT|ERR_BNPOOL_ARG)$/.test(k))).toEqual([]);
    expect(kinds).toEqual(expect.arrayContaining(['find ERR_BNPOOL_FORMAT', 'find ok', 'load ERR_BNPOOL_ARG', 'load ERR_BNPOOL_FORMAT', 'load ok']));
  });
});
