/** Weight import and export (torch, keras, onnx) and .safetensors files, against the format's specification. */
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, BatchNorm, FormatError, loadSafetensors, Pool, saveSafetensors } from '../dist/src/index.js';
import { decodeSafetensors, encodeSafetensors, parseHeader } from '../dist/src/safetensors.js';
import { randomTensor } from './helpers/data.js';

let pool: Pool;
const dir = mkdtempSync(join(tmpdir(), 'bnpool-weights-'));
beforeAll(() => { pool = new Pool({ threads: 1 }); });
afterAll(async () => { await pool.close(); rmSync(dir, { recursive: true, force: true }); });

async function trained(C = 3, dtype: 'float32' | 'float64' = 'float32'): Promise<BatchNorm> {
  const bn = new BatchNorm(C, { pool, dtype });
  bn.weight!.set(Array.from({ length: C }, (_, c) => 1 + c / 4));
  bn.bias!.set(Array.from({ length: C }, (_, c) => c - 1));
  await bn.forward(randomTensor([4, C, 5], dtype, 1), [4, C, 5]);
  await bn.forward(randomTensor([4, C, 5], dtype, 2), [4, C, 5]);
  return bn;
}

const state = (bn: BatchNorm) => JSON.stringify(Object.entries(bn.stateDict()).map(([k, v]) => [k, typeof v === 'number' ? v : Array.from(v as Float32Array)]));

describe('exportWeights / importWeights', () => {
  it('keras order is [gamma, beta, moving_mean, moving_variance]', async () => {
    const bn = await trained();
    const [g, b, m, v] = bn.exportWeights('keras');
    expect(Array.from(g)).toEqual(Array.from(bn.weight!));
    expect(Array.from(b)).toEqual(Array.from(bn.bias!));
    expect(Array.from(m)).toEqual(Array.from(bn.runningMean!));
    expect(Array.from(v)).toEqual(Array.from(bn.runningVar!));
    const other = new BatchNorm(3, { pool });
    other.importWeights('keras', [g, b, m, v]);
    expect(Array.from(other.runningVar!)).toEqual(Array.from(bn.runningVar!));
    const plain = new BatchNorm(3, { pool, affine: false });
    expect(plain.exportWeights('keras')).toHaveLength(2);
    expect(() => plain.importWeights('keras', [g, b, m, v])).toThrow(/array of 2 arrays/);
  });

  it('keras layers with scale or center false: no gamma or beta in their list, the identity in the module', async () => {
    // Keras 3.15.1's BatchNormalization(scale=False).get_weights() is [beta, moving_mean,
    // moving_variance]; center=False leaves out beta, both leave [moving_mean, moving_variance].
    const bn = await trained();
    const [g, b, m, v] = bn.exportWeights('keras').map((a) => Array.from(a));
    const arrays = (module: BatchNorm, options?: { scale?: boolean; center?: boolean }): number[][] => module.exportWeights('keras', options).map((a) => Array.from(a));
    const cases: [{ scale?: boolean; center?: boolean }, number[][], number[], number[]][] = [
      [{ scale: false }, [b, m, v], [1, 1, 1], b],
      [{ center: false }, [g, m, v], g, [0, 0, 0]],
      [{ scale: false, center: false }, [m, v], [1, 1, 1], [0, 0, 0]],
      [{ scale: true, center: true }, [g, b, m, v], g, b],
    ];
    for (const [options, list, weight, bias] of cases) {
      const label = JSON.stringify(options);
      const module = new BatchNorm(3, { pool });
      module.importWeights('keras', list, options);
      expect([module.weight, module.bias, module.runningMean, module.runningVar].map((a) => Array.from(a!)), label).toEqual([weight, bias, m, v]);
      expect(arrays(module, options), label).toEqual(list);
    }
    // A module without affine gives and takes the identity gamma and beta.
    const plain = new BatchNorm(3, { pool, affine: false });
    plain.importWeights('keras', [[1, 1, 1], [0, -0, 0], m, v], { scale: true, center: true });
    expect([Array.from(plain.runningMean!), arrays(plain, { scale: true, center: true })]).toEqual([m, [[1, 1, 1], [0, 0, 0], m, v]]);
    // Refused whole, nothing changed: a weight or bias a layer or module cannot hold, bad options.
    const before = state(bn);
    const plainBefore = state(plain);
    const refused: [() => unknown, string][] = [
      [() => bn.exportWeights('keras', { scale: false }), `the module's weight must be all ones, as a Keras layer with scale: false has no gamma to hold it; got ${g[1]} at channel 1`],
      [() => bn.exportWeights('keras', { center: false }), `the module's bias must be all zeros, as a Keras layer with center: false has no beta to hold it; got ${b[0]} at channel 0`],
      [() => plain.importWeights('keras', [[1, 1, 1], [0, 0, 2], [7, 7, 7], v], { scale: true, center: true }), 'keras beta must be all zeros, as the module has affine: false (no bias); got 2 at channel 2'],
      [() => plain.importWeights('keras', [[1, NaN, 1], [7, 7, 7], v], { scale: true }), 'keras gamma must be all ones, as the module has affine: false (no weight); got NaN at channel 1'],
      [() => bn.importWeights('keras', [g, b, m, v], { scale: false }), 'keras weights must be an array of 3 arrays [beta, moving_mean, moving_variance]; got '],
      [() => bn.importWeights('keras', [g, b, m, v], { scale: 1 as never }), 'options.scale must be a boolean; got 1'],
      [() => bn.importWeights('keras', [g, b, m, v], { gamma: false } as never), 'options.gamma is not an option here: expected one of scale, center; got false'],
      [() => bn.exportWeights('onnx' as 'keras', { scale: false }), "options (a Keras layer's scale and center) are for format 'keras'; got "],
      [() => bn.importWeights('torch' as 'keras', bn.stateDict(), {}), "options (a Keras layer's scale and center) are for format 'keras'; got "],
    ];
    for (const [call, message] of refused) {
      expect(call, message).toThrow(ArgumentError);
      expect(call, message).toThrow(message);
    }
    expect([state(bn), state(plain)]).toEqual([before, plainBefore]);
  });

  it('onnx inputs are (scale, B, input_mean, input_var), with identity scale and B without affine', async () => {
    const bn = await trained();
    const o = bn.exportWeights('onnx');
    expect(Array.from(o.scale)).toEqual(Array.from(bn.weight!));
    expect(Array.from(o.input_var)).toEqual(Array.from(bn.runningVar!));
    const plain = new BatchNorm(3, { pool, affine: false });
    expect(Array.from(plain.exportWeights('onnx').scale)).toEqual([1, 1, 1]);
    expect(() => plain.importWeights('onnx', o)).toThrow(`onnx scale must be all ones, as the module has affine: false (no weight); got ${o.scale[1]} at channel 1`);
    expect(() => plain.importWeights('onnx', { ...o, scale: [1, 1, 1] })).toThrow(`onnx B must be all zeros, as the module has affine: false (no bias); got ${o.B[0]} at channel 0`);
    const other = new BatchNorm(3, { pool });
    other.importWeights('onnx', o);
    expect(Array.from(other.bias!)).toEqual(Array.from(bn.bias!));
  });

  it('bad keras and onnx weights are argument errors naming the array, and change nothing', async () => {
    const bn = await trained();
    const before = state(bn);
    const plain = new BatchNorm(3, { pool, affine: false });
    const plainBefore = state(plain);
    const ok = [1, 2, 3];
    const cases: [BatchNorm, string, unknown, RegExp][] = [
      [bn, 'keras', [ok, null, ok, ok], /^keras weights\[1\] \(beta\) must be a Float32Array, a Float64Array or an array of numbers; got null$/],
      [bn, 'keras', [ok, ok, ok, [1, 2]], /^keras weights\[3\] \(moving_variance\) must have length 3; got length 2$/],
      [plain, 'keras', [ok, 'abc'], /^keras weights\[1\] \(moving_variance\) must be/],
      [bn, 'onnx', { scale: ok, B: ok, input_mean: ok }, /^onnx weights.input_var must be .*; got undefined$/],
      [bn, 'onnx', { scale: ok, B: [1, NaN, '2'], input_mean: ok, input_var: ok }, /^onnx weights.B must be/],
      [plain, 'onnx', { scale: null, input_mean: ok, input_var: ok }, /^onnx weights.scale must be .*; got null$/],
      [plain, 'onnx', { scale: 5, input_mean: ok, input_var: ok }, /^onnx weights.scale must be .*; got 5$/],
    ];
    for (const [m, format, weights, message] of cases) {
      expect(() => m.importWeights(format as 'onnx', weights), String(message)).toThrow(message);
    }
    expect(state(bn)).toBe(before);
    expect(state(plain)).toBe(plainBefore);
    // Without affine, scale and B may be left out.
    plain.importWeights('onnx', { input_mean: [4, 5, 6], input_var: [1, 2, 3] });
    expect(Array.from(plain.runningMean!)).toEqual([4, 5, 6]);
  });

  it('torch is the state dict; bad formats are argument errors', async () => {
    const bn = await trained();
    const other = new BatchNorm(3, { pool });
    other.importWeights('torch', bn.exportWeights('torch'));
    expect(state(other)).toBe(state(bn));
    expect(() => bn.exportWeights('tf' as never)).toThrow(ArgumentError);
    expect(() => new BatchNorm(3, { pool, trackRunningStats: false }).exportWeights('keras')).toThrow(/running statistics/);
  });
});

/** A safetensors file built by hand from the specification, independently of the writer. */
function handMade(C: number, values: { weight: number[]; bias: number[]; mean: number[]; var: number[]; tracked: bigint }): Uint8Array {
  const header = {
    running_mean: { dtype: 'F32', shape: [C], data_offsets: [0, 4 * C] },
    weight: { dtype: 'F32', shape: [C], data_offsets: [4 * C, 8 * C] },
    num_batches_tracked: { dtype: 'I64', shape: [], data_offsets: [8 * C, 8 * C + 8] },
    bias: { dtype: 'F32', shape: [C], data_offsets: [8 * C + 8, 12 * C + 8] },
    running_var: { dtype: 'F32', shape: [C], data_offsets: [12 * C + 8, 16 * C + 8] },
    __metadata__: { format: 'pt' },
  };
  const json = Buffer.from(JSON.stringify(header));
  const data = Buffer.alloc(16 * C + 8);
  values.mean.forEach((v, i) => data.writeFloatLE(v, 4 * i));
  values.weight.forEach((v, i) => data.writeFloatLE(v, 4 * C + 4 * i));
  data.writeBigInt64LE(values.tracked, 8 * C);
  values.bias.forEach((v, i) => data.writeFloatLE(v, 8 * C + 8 + 4 * i));
  values.var.forEach((v, i) => data.writeFloatLE(v, 12 * C + 8 + 4 * i));
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([size, json, data]);
}

describe('safetensors', () => {
  it('loads a file made by hand from the specification (any tensor order, no padding)', async () => {
    const path = join(dir, 'hand.safetensors');
    writeFileSync(path, handMade(3, { weight: [1, 2, 3], bias: [-1, 0, 1], mean: [0.5, 0.25, 0.125], var: [2, 3, 4], tracked: 7n }));
    const bn = new BatchNorm(3, { pool });
    await bn.loadSafetensors(path);
    expect(Array.from(bn.weight!)).toEqual([1, 2, 3]);
    expect(Array.from(bn.bias!)).toEqual([-1, 0, 1]);
    expect(Array.from(bn.runningMean!)).toEqual([0.5, 0.25, 0.125]);
    expect(Array.from(bn.runningVar!)).toEqual([2, 3, 4]);
    expect(bn.numBatchesTracked).toBe(7);
  });

  it('takes a state without num_batches_tracked, the module keeping its count, as PyTorch does (no other key may be missing)', async () => {
    // PyTorch 2.11's load_state_dict(strict=True) with a plain dict or safetensors' load_file
    // (no version metadata) keeps the module's count where the key is missing (bench/MACHINES.md).
    const source = await trained();
    const { num_batches_tracked: _, ...rest } = source.stateDict();
    const bn = await trained(3);
    await bn.forward(randomTensor([4, 3, 5], 'float32', 3), [4, 3, 5]);
    expect(bn.numBatchesTracked).toBe(3);
    bn.loadStateDict(rest);
    expect(bn.numBatchesTracked).toBe(3);
    expect(Array.from(bn.runningMean!)).toEqual(Array.from(source.runningMean!));
    expect(Array.from(bn.weight!)).toEqual(Array.from(source.weight!));
    // The same from a file, one module's and a model's, under a prefix.
    const vector = (values: Float32Array) => ({ dtype: 'F32' as const, shape: [3], data: Array.from(values) });
    const tensors = (prefix: string) => Object.fromEntries(Object.entries(rest).map(([k, v]) => [`${prefix}${k}`, vector(v as Float32Array)]));
    for (const [file, prefix, extra] of [['uncounted.safetensors', '', {}], ['uncounted-model.safetensors', 'bn1.', { 'conv.weight': vector(new Float32Array(3)) }]] as const) {
      const path = join(dir, file);
      writeFileSync(path, encodeSafetensors({ ...tensors(prefix), ...extra }));
      const loaded = await trained(3);
      await loaded.loadSafetensors(path, { prefix });
      expect(loaded.numBatchesTracked, file).toBe(2);
      expect(Array.from(loaded.runningVar!), file).toEqual(Array.from(source.runningVar!));
    }
    // Any other key missing is refused whole, and says the count may be.
    const before = state(bn);
    const { running_var: __, ...noVar } = rest;
    expect(() => bn.loadStateDict(noVar)).toThrow(/^stateDict must have exactly the keys \["weight", "bias", "running_mean", "running_var", "num_batches_tracked"\] \(num_batches_tracked may be left out\); missing \["running_var"\], unexpected \[\]$/);
    expect(state(bn)).toBe(before);
    // A module without running statistics has no count: one given is unexpected.
    const untracked = new BatchNorm(3, { pool, trackRunningStats: false });
    expect(() => untracked.loadStateDict({ weight: [1, 1, 1], bias: [0, 0, 0], num_batches_tracked: 0 })).toThrow(/^stateDict must have exactly the keys \["weight", "bias"\]; missing \[\], unexpected \["num_batches_tracked"\]$/);
  });

  it('writes the format: u64 LE header length, padded JSON header, little-endian data', async () => {
    const bn = await trained(3, 'float64');
    const path = join(dir, 'out.safetensors');
    await bn.saveSafetensors(path);
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    expect(header.__metadata__).toEqual({ format: 'pt' });
    expect(header.weight).toEqual({ dtype: 'F64', shape: [3], data_offsets: header.weight.data_offsets });
    expect(header.num_batches_tracked.dtype).toBe('I64');
    expect(header.num_batches_tracked.shape).toEqual([]);
    const base = 8 + n;
    const [b0] = header.running_var.data_offsets;
    expect([0, 1, 2].map((i) => bytes.readDoubleLE(base + b0 + 8 * i))).toEqual(Array.from(bn.runningVar!));
    expect(bytes.readBigInt64LE(base + header.num_batches_tracked.data_offsets[0])).toBe(2n);
    const total = Object.values(header).filter((e: any) => e.data_offsets).reduce((a: number, e: any) => a + e.data_offsets[1] - e.data_offsets[0], 0);
    expect(bytes.length).toBe(base + total);
    // And it reads back.
    const back = new BatchNorm(3, { pool, dtype: 'float64' });
    await back.loadSafetensors(path);
    expect(state(back)).toBe(state(bn));
  });

  // Byte-exact vectors from the reference implementation's own unit tests (huggingface/safetensors,
  // safetensors/src/tensor.rs: test_serialization, test_serialization_forced_alignement,
  // test_empty): what its serializer writes, which its reader (behind the Python package) accepts.
  const f32Bytes = Buffer.alloc(24);
  [0, 1, 2, 3, 4, 5].forEach((v, i) => f32Bytes.writeFloatLE(v, 4 * i));
  const file = (header: string, data: Uint8Array = new Uint8Array(0)): Uint8Array => {
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(header.length));
    return new Uint8Array(Buffer.concat([size, Buffer.from(header, 'utf8'), data]));
  };
  const referenceVectors: [string, Parameters<typeof encodeSafetensors>, Uint8Array][] = [
    ['attn.0, 64-byte header, no padding', [{ 'attn.0': { dtype: 'F32', shape: [1, 2, 3], data: [0, 1, 2, 3, 4, 5] } }],
      file('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}', f32Bytes)],
    ['attn0, padded with 7 spaces', [{ attn0: { dtype: 'F32', shape: [1, 1, 2, 3], data: [0, 1, 2, 3, 4, 5] } }],
      file('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ', f32Bytes)],
    ['no tensors', [{}], file('{}      ')],
    ['no tensors, metadata', [{}, { framework: 'pt' }], file('{"__metadata__":{"framework":"pt"}}     ')],
  ];

  it('writes the reference implementation\'s test vectors byte for byte, and reads them back', () => {
    for (const [label, args, want] of referenceVectors) {
      const got = encodeSafetensors(...args);
      expect(Buffer.from(got).equals(Buffer.from(want)), label).toBe(true);
      const { tensors, metadata } = decodeSafetensors(want);
      expect(metadata, label).toEqual(args[1] ?? {});
      for (const [name, t] of Object.entries(args[0])) {
        expect(tensors[name].shape, label).toEqual(t.shape);
        expect(Array.from(tensors[name].data), label).toEqual(Array.from(t.data));
      }
    }
  });

  it('lays tensors out as the reference serializer does: dtype I64, F64, F32, I32, then name by code point', () => {
    const one = (dtype: 'F32' | 'F64' | 'I64' | 'I32') => ({ dtype, shape: [1], data: [1] });
    // "0" keeps its place after the I64 and F64 tensors (an object would put it first).
    const bytes = encodeSafetensors({ b: one('F32'), e: one('I32'), a: one('F32'), c: one('F64'), 0: one('F32'), d: one('I64') });
    const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
    const header = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8').trimEnd();
    expect(header).toBe([
      '{"d":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}', '"c":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}',
      '"0":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}', '"a":{"dtype":"F32","shape":[1],"data_offsets":[20,24]}',
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[24,28]}', '"e":{"dtype":"I32","shape":[1],"data_offsets":[28,32]}}',
    ].join(','));
    // Names by their UTF-8 bytes, which is code point order: U+FFFF before U+1F600 (JavaScript's `<` puts U+1F600 first).
    const astral = encodeSafetensors({ 'a\u{1f600}': one('F32'), 'a\uffff': one('F32') });
    const astralHeader = Buffer.from(astral.subarray(8, 8 + Number(Buffer.from(astral).readBigUInt64LE(0)))).toString('utf8');
    expect(astralHeader.trimEnd()).toBe('{"a\uffff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a\u{1f600}":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}');
    // A tensor named "__proto__" stays a tensor (an object's key would set its prototype).
    const proto = encodeSafetensors(JSON.parse('{"__proto__":{"dtype":"F32","shape":[2],"data":[3,4]}}'));
    expect(Array.from(decodeSafetensors(proto).tensors.__proto__.data)).toEqual([3, 4]);
  });

  it('reads F16 and BF16 exactly: normals, subnormals, zeros, infinities, NaN', () => {
    // F16 bits: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), 2^-14 (smallest normal), -0, +Inf, NaN.
    const half = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00, 0x7e00];
    const f16 = Buffer.alloc(16);
    half.forEach((h, i) => f16.writeUInt16LE(h, 2 * i));
    const a = decodeSafetensors(file('{"a":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}}', f16)).tensors.a;
    expect(Array.from(a.data)).toEqual([1, -2, 65504, 2 ** -24, 2 ** -14, -0, Infinity, NaN]);
    expect(Object.is(a.data[5], -0)).toBe(true);
    // BF16 bits: the upper halves of float32 1.5, -3.25, 2^-133 (subnormal), -Inf.
    const f32 = new Float32Array([1.5, -3.25, 2 ** -133, -Infinity]);
    const words = new Uint32Array(f32.buffer);
    const bf16 = Buffer.alloc(8);
    words.forEach((w, i) => bf16.writeUInt16LE(w >>> 16, 2 * i));
    const b = decodeSafetensors(file('{"b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}', bf16)).tensors.b;
    expect(Array.from(b.data)).toEqual([1.5, -3.25, 2 ** -133, -Infinity]);
  });

  it('reads by the reference reader\'s rules: offsets sorted by (begin, end), exact cover, sizes', () => {
    // An empty tensor may share its offset with the next one, listed in either order.
    const withEmpty = file('{"b":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}', f32Bytes);
    expect(decodeSafetensors(withEmpty).tensors.a.shape).toEqual([0]);
    const rejected: [string, Uint8Array][] = [
      ['overlap', file('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}', f32Bytes)],
      ['hole', file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}', f32Bytes)],
      ['buffer not covered', file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', f32Bytes)],
      ['size does not match shape and dtype', file('{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,24]}}', f32Bytes)],
      ['begin after end', file('{"a":{"dtype":"F32","shape":[6],"data_offsets":[24,0]}}', f32Bytes)],
      // The reference reader's metadata is a map of strings: an array of strings is not one.
      ['metadata an array', file('{"__metadata__":["pt"],"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', f32Bytes)],
      ['metadata a number', file('{"__metadata__":1,"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', f32Bytes)],
      ['metadata with a number', file('{"__metadata__":{"n":1},"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', f32Bytes)],
    ];
    for (const [label, bytes] of rejected) expect(() => decodeSafetensors(bytes), label).toThrow(FormatError);
    // As safetensors 0.8's safe_open reads these headers (checked by hand): null metadata is none;
    // shapes whose dimensions multiply in order within 64 bits, a 0 after 2^63 or before 2^64.
    const header = (text: string, bufferLength: number) => parseHeader(Buffer.from(text), bufferLength);
    expect(header('{"__metadata__":null,"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', 24).metadata).toEqual({});
    const zeros = header('{"a":{"dtype":"U8","shape":[4294967296,2147483648,0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}', 0);
    expect(zeros.entries.map((e) => [e.name, e.shape])).toEqual([['a', [2 ** 32, 2 ** 31, 0]], ['b', [0, 2 ** 32, 2 ** 32]]]);
    // It refuses each of these.
    const refusedHeaders: [string, string, number, string][] = [
      ['a byte order mark', '\ufeff{"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', 24, 'the header is not UTF-8 JSON: '],
      ['2^64 elements before a 0', '{"b":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}', 0,
        'tensor "b": shape [4294967296,4294967296,0] has 2^64 or more elements (its dimensions multiplied in order)'],
      ['F4 values ending within a byte', '{"b":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', 2, 'tensor "b": shape [3] of F4 is 12 bits, which end within a byte'],
      ['F6 values ending within a byte', '{"b":{"dtype":"F6_E2M3","shape":[3],"data_offsets":[0,3]}}', 3, 'tensor "b": shape [3] of F6_E2M3 is 18 bits, which end within a byte'],
    ];
    for (const [label, text, bufferLength, message] of refusedHeaders) {
      expect(() => header(text, bufferLength), label).toThrow(FormatError);
      expect(() => header(text, bufferLength), label).toThrow(message);
    }
    // Names of Object.prototype's members are neither dtypes nor lost as tensor names.
    for (const dtype of ['valueOf', '__proto__', 'constructor']) {
      expect(() => decodeSafetensors(file(`{"a":{"dtype":"${dtype}","shape":[6],"data_offsets":[0,24]}}`, f32Bytes)), dtype)
        .toThrow(`tensor "a" has dtype "${dtype}"; bnpool reads F32, F64, I64, I32, F16, BF16`);
    }
    const proto = decodeSafetensors(file('{"__proto__":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}', f32Bytes));
    expect(Object.keys(proto.tensors)).toEqual(['__proto__']);
    expect(Array.from(proto.tensors.__proto__.data)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('reads the header\'s JSON as the reference reader\'s serde_json does', () => {
    // Each verdict as safetensors 0.8.0's safe_open gives it (checked by hand).
    const header = (text: string) => parseHeader(Buffer.from(text), 8);
    const a = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
    const withA = (extra: string) => `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]${extra}}}`;
    // Fields it does not read, any JSON, named twice or not; a tensor named twice is its last
    // entry, each read, and only that one checked against the buffer; a metadata key named twice
    // is its last value; a key written with escapes is the key.
    for (const text of [
      withA(',"x":1.5,"x":[1e-400,{"k":1,"k":2}]'),
      `{"a":{"dtype":"F64","shape":[9],"data_offsets":[8,800]},${a}}`,
      `{"__metadata__":{"k":"1","k":"2"},${a}}`,
      String.raw`{"\u0061":{"\u0064type":"F\u00332","shape":[2],"data_offsets":[0,8]},"__meta\u0064ata__":{"k":"2"}}`,
      withA(`,"x":${'['.repeat(125)}${']'.repeat(125)}`),
    ]) {
      const { entries, metadata } = header(text);
      expect(entries, text).toEqual([{ name: 'a', dtype: 'F32', shape: [2], begin: 0, end: 8 }]);
      expect(metadata, text).toEqual(text.includes('__meta') ? { k: '2' } : {});
    }
    const refused: [string, string][] = [
      [withA(',"dtype":"F32"'), 'tensor "a" names dtype twice'],
      [withA(String.raw`,"\u0073hape":[2]`), 'tensor "a" names shape twice'],
      [withA(',"data_offsets":null'), 'tensor "a" names data_offsets twice'],
      [`{"__metadata__":null,"__metadata__":{"k":"v"},${a}}`, 'the header names __metadata__ twice'],
      // serde reads each of these as floating point, which a size is not.
      [withA('').replace('[2]', '[2.0]'), 'tensor "a" needs a shape of integers from 0 to 2^53 - 1, written as integers; got [2.0]'],
      [withA('').replace('[2]', '[2e0]'), 'tensor "a" needs a shape of integers from 0 to 2^53 - 1, written as integers; got [2e0]'],
      [withA('').replace('[0,8]', '[-0,8]'), 'tensor "a" needs data_offsets [begin, end], integers from 0 to 2^53 - 1 written as integers; got [-0,8]'],
      [withA('').replace('[0,8]', '[0,8.0]'), 'tensor "a" needs data_offsets [begin, end], integers from 0 to 2^53 - 1 written as integers; got [0,8.0]'],
      [withA('').replace('[0,8]', '[0,8,8]'), 'tensor "a" needs data_offsets [begin, end], integers from 0 to 2^53 - 1 written as integers; got [0,8,8]'],
      // An entry a later one replaces is read still.
      [`{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]},${a}}`, 'tensor "a" needs a shape of integers'],
      [`{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]},${a}}`, 'tensor "a" names dtype twice'],
      [`{"a":[1,2],${a}}`, 'tensor "a" is [1,2]; an entry is an object of dtype, shape and data_offsets'],
      // serde_json's own rules, in any string or number, in a field it does not read too.
      [String.raw`{"a\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, String.raw`the header is not UTF-8 JSON: a lone surrogate \ud800 in a string at character 9`],
      [String.raw`{"__metadata__":{"k":"\udc00"},` + `${a}}`, String.raw`the header is not UTF-8 JSON: a lone surrogate \udc00 in a string at character 28`],
      [withA(',"x":1e400'), 'the header is not UTF-8 JSON: number 1e400 out of range at character 57'],
      [withA(`,"x":${'['.repeat(126)}${']'.repeat(126)}`), 'the header is not UTF-8 JSON: more than 127 arrays and objects nested at character 182'],
    ];
    for (const [text, message] of refused) {
      expect(() => header(text), text).toThrow(FormatError);
      expect(() => header(text), text).toThrow(message);
    }
  });

  it('rejects malformed files with FormatError and changes nothing', async () => {
    const bn = await trained();
    const before = state(bn);
    const good = handMade(3, { weight: [1, 2, 3], bias: [0, 0, 0], mean: [0, 0, 0], var: [1, 1, 1], tracked: 1n });
    const bad: [string, Uint8Array][] = [
      ['too short', good.subarray(0, 5)],
      ['header past the end', (() => { const b = Buffer.from(good); b.writeBigUInt64LE(10n ** 6n, 0); return b; })()],
      ['truncated data', good.subarray(0, good.length - 4)],
      ['not JSON', (() => { const b = Buffer.from(good); b[8] = 0x7b + 1; return b; })()],
    ];
    for (const [label, bytes] of bad) {
      const path = join(dir, `${label}.safetensors`);
      writeFileSync(path, bytes);
      await expect(bn.loadSafetensors(path), label).rejects.toBeInstanceOf(FormatError);
      expect(state(bn)).toBe(before);
    }
    // A valid file with one tensor more, named "__proto__": refused whole, as any other extra.
    const extra = (() => {
      const n = Number(Buffer.from(good).readBigUInt64LE(0));
      const header = Buffer.from(good.subarray(8, 8 + n)).toString('utf8');
      const json = Buffer.from(`{"__proto__":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},${header.slice(1)}`);
      const size = Buffer.alloc(8);
      size.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([size, json, good.subarray(8 + n)]);
    })();
    writeFileSync(join(dir, 'proto.safetensors'), extra);
    await expect(bn.loadSafetensors(join(dir, 'proto.safetensors'))).rejects.toThrow(/unexpected \["__proto__"\]/);
    expect(state(bn)).toBe(before);
    // Valid file, wrong module: the state dict check refuses it whole.
    const path = join(dir, 'other.safetensors');
    writeFileSync(path, good);
    await expect(new BatchNorm(4, { pool }).loadSafetensors(path)).rejects.toThrow(
      `the state dict in ${path} does not fit this module: stateDict.weight must have length 4; got length 3`,
    );
    // A path that is not one (fs would take a FileHandle, a Buffer, or throw its own TypeError).
    for (const wrong of [0, null, {}, Buffer.from(path)]) {
      await expect(bn.loadSafetensors(wrong as never)).rejects.toThrow(/^path must be a string or a URL; got /);
      await expect(bn.saveSafetensors(wrong as never)).rejects.toBeInstanceOf(ArgumentError);
    }
    expect(state(bn)).toBe(before);
    // A file: URL is a path.
    await new BatchNorm(3, { pool }).saveSafetensors(pathToFileURL(join(dir, 'url.safetensors')));
    await bn.loadSafetensors(pathToFileURL(join(dir, 'url.safetensors')));
    expect(Array.from(bn.runningVar!)).toEqual([1, 1, 1]);
  });
});

// Files written by the safetensors Python package itself (safetensors.torch.save_file of a
// torch.nn.BatchNorm state dict), made by test/fixtures/safetensors/make_files.py; CI has no
// Python packages, so they are committed with the values they hold.
describe('safetensors files from the Python package', () => {
  const fixtures = new URL('./fixtures/safetensors/', import.meta.url);
  const expected = JSON.parse(readFileSync(new URL('expected.json', fixtures), 'utf8')) as {
    generator: string;
    files: Record<string, {
      channels: number; dtype: 'float32' | 'float64'; saved: 'float16' | 'bfloat16' | null;
      weight: number[]; bias: number[]; running_mean: number[]; running_var: number[]; num_batches_tracked: number;
    }>;
    models: Record<string, {
      saved: 'bfloat16' | null; tensors: number;
      modules: Record<string, {
        channels: number; weight: number[]; bias: number[]; running_mean: number[]; running_var: number[]; num_batches_tracked: number;
      }>;
    }>;
  };

  it('has the four files', () => {
    expect(expected.generator).toMatch(/^PyTorch 2\..*, safetensors 0\./);
    expect(Object.keys(expected.files)).toEqual(['torch-bn2d-f32', 'torch-bn1d-f64', 'torch-bn2d-f16', 'torch-bn2d-bf16']);
  });

  /** The header of a file: its length and its entries by name. */
  const headerOf = (bytes: Buffer) => {
    const length = Number(bytes.readBigUInt64LE(0));
    return { length, entries: JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }> };
  };

  /** Bytes read through any FileHandle while `work` runs (FileHandle.prototype.read counted). */
  async function bytesReadBy(work: () => Promise<void>): Promise<number> {
    const probe = await open(fileURLToPath(new URL('expected.json', fixtures)));
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<{ bytesRead: number }> };
    await probe.close();
    const read = proto.read;
    let total = 0;
    proto.read = async function counted(this: unknown, ...args: unknown[]) {
      const result = await read.apply(this, args);
      total += result.bytesRead;
      return result;
    };
    try {
      await work();
    } finally {
      proto.read = read;
    }
    return total;
  }

  it('has the two model files: float32 and bfloat16, each with two BatchNorms among other layers and uint8 and bool buffers', () => {
    expect(Object.keys(expected.models)).toEqual(['torch-model-f32', 'torch-model-bf16']);
    for (const [name, model] of Object.entries(expected.models)) {
      const { entries } = headerOf(readFileSync(new URL(`${name}.safetensors`, fixtures)));
      expect(Object.keys(entries).filter((k) => k !== '__metadata__')).toHaveLength(model.tensors);
      expect(Object.keys(model.modules)).toEqual(['bn1.', 'layer1.1.']);
      expect(entries.mask.dtype).toBe('U8');
      expect(entries.flags.dtype).toBe('BOOL');
      expect(entries['conv1.weight'].dtype).toBe(model.saved === null ? 'F32' : 'BF16');
    }
  });

  for (const [name, model] of Object.entries(expected.models)) {
    it(`${name}: each BatchNorm of a model's state dict loads by its prefix, reading the header and its own tensors only`, async () => {
      const path = fileURLToPath(new URL(`${name}.safetensors`, fixtures));
      const bytes = readFileSync(path);
      const { length, entries } = headerOf(bytes);
      for (const [prefix, want] of Object.entries(model.modules)) {
        const bn = new BatchNorm(want.channels, { pool });
        const read = await bytesReadBy(() => bn.loadSafetensors(path, { prefix }));
        expect(bn.weight).toEqual(Float32Array.from(want.weight));
        expect(bn.bias).toEqual(Float32Array.from(want.bias));
        expect(bn.runningMean).toEqual(Float32Array.from(want.running_mean));
        expect(bn.runningVar).toEqual(Float32Array.from(want.running_var));
        expect(bn.numBatchesTracked).toBe(want.num_batches_tracked);
        const own = Object.entries(entries).filter(([k]) => k.startsWith(prefix)).reduce((a, [, e]) => a + e.data_offsets[1] - e.data_offsets[0], 0);
        expect(own).toBeGreaterThan(0);
        expect(read).toBe(8 + length + own);
        // Saved under its prefix: the model's keys for it, the values it loaded, in float32.
        const out = join(dir, `${name}-${prefix}safetensors`);
        await bn.saveSafetensors(out, { prefix });
        const { tensors } = decodeSafetensors(readFileSync(out));
        expect(Object.keys(tensors).sort()).toEqual(Object.keys(entries).filter((k) => k.startsWith(prefix)).sort());
        for (const key of ['weight', 'bias', 'running_mean', 'running_var'] as const) {
          expect(tensors[prefix + key].dtype).toBe('F32');
          expect(Float32Array.from(tensors[prefix + key].data), key).toEqual(Float32Array.from(want[key]));
        }
        expect(Array.from(tensors[`${prefix}num_batches_tracked`].data)).toEqual([want.num_batches_tracked]);
        const back = new BatchNorm(want.channels, { pool });
        await back.loadSafetensors(out, { prefix });
        expect(state(back)).toBe(state(bn));
      }
    });
  }

  it('a 3 GiB model file (a sparse uint8 tensor after the model\'s data) loads a BatchNorm by its prefix, reading a few kilobytes', async (ctx) => {
    const bytes = readFileSync(new URL('torch-model-f32.safetensors', fixtures));
    const { length, entries } = headerOf(bytes);
    const dataLength = bytes.length - 8 - length;
    const big = 3 * 2 ** 30;
    const header = Buffer.from(JSON.stringify({ ...entries, 'big.blob': { dtype: 'U8', shape: [big], data_offsets: [dataLength, dataLength + big] } }));
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(header.length));
    const path = join(dir, 'big.safetensors');
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, Buffer.concat([size, header, bytes.subarray(8 + length)]));
      ftruncateSync(fd, 8 + header.length + dataLength + big);
    } finally {
      closeSync(fd);
    }
    try {
      // Only where the file system leaves the 3 GiB a hole (Linux's do): no disk is written.
      if (statSync(path).blocks * 512 > 2 ** 20) ctx.skip();
      expect(statSync(path).size).toBeGreaterThan(big);
      const bn = new BatchNorm(6, { pool });
      const read = await bytesReadBy(() => bn.loadSafetensors(path, { prefix: 'layer1.1.' }));
      expect(bn.runningVar).toEqual(Float32Array.from(expected.models['torch-model-f32'].modules['layer1.1.'].running_var));
      const own = Object.entries(entries).filter(([k]) => k.startsWith('layer1.1.')).reduce((a, [, e]) => a + e.data_offsets[1] - e.data_offsets[0], 0);
      expect(read).toBe(8 + header.length + own);
    } finally {
      rmSync(path, { force: true });
    }
  });

  it('BatchNorm.findInSafetensors lists the BatchNorms a file holds by prefix, reading its header alone; each then loads', async () => {
    for (const [name, model] of Object.entries(expected.models)) {
      const path = fileURLToPath(new URL(`${name}.safetensors`, fixtures));
      const { length } = headerOf(readFileSync(path));
      let found: Awaited<ReturnType<typeof BatchNorm.findInSafetensors>> = [];
      const read = await bytesReadBy(async () => { found = await BatchNorm.findInSafetensors(path); });
      expect(read).toBe(8 + length);
      expect(found).toEqual(Object.entries(model.modules).map(([prefix, m]) => ({ prefix, numFeatures: m.channels, affine: true, dtype: 'float32' })));
      for (const { prefix, numFeatures, affine } of found) {
        const bn = new BatchNorm(numFeatures, { affine, pool });
        await bn.loadSafetensors(path, { prefix });
        expect(bn.runningVar).toEqual(Float32Array.from(model.modules[prefix].running_var));
      }
    }
    // Files of one module: prefix '', and the dtype a float64 checkpoint loads into.
    for (const [name, want] of Object.entries(expected.files)) {
      const found = await BatchNorm.findInSafetensors(fileURLToPath(new URL(`${name}.safetensors`, fixtures)));
      expect(found, name).toEqual([{ prefix: '', numFeatures: want.channels, affine: true, dtype: want.dtype }]);
    }
    // Without affine: no weight and bias; without running statistics: nothing found.
    const plain = join(dir, 'plain.safetensors');
    await new BatchNorm(7, { pool, affine: false }).saveSafetensors(plain, { prefix: 'norm.' });
    expect(await BatchNorm.findInSafetensors(plain)).toEqual([{ prefix: 'norm.', numFeatures: 7, affine: false, dtype: 'float32' }]);
    const untracked = join(dir, 'untracked.safetensors');
    await new BatchNorm(7, { pool, trackRunningStats: false }).saveSafetensors(untracked);
    expect(await BatchNorm.findInSafetensors(untracked)).toEqual([]);
    // Found by running statistics in pairs of one length only, listed by prefix.
    const vector = (n: number) => ({ dtype: 'F32' as const, shape: [n], data: new Array(n).fill(1) });
    const mixed = join(dir, 'mixed.safetensors');
    writeFileSync(mixed, encodeSafetensors({
      'z.running_mean': vector(2), 'z.running_var': vector(2), 'a.running_var': vector(3), 'c.running_mean': vector(2),
      'c.running_var': vector(3), 'b.running_var': vector(4), 'b.running_mean': vector(4), 'b.weight': vector(4),
    }));
    expect(await BatchNorm.findInSafetensors(mixed)).toEqual([
      { prefix: 'b.', numFeatures: 4, affine: false, dtype: 'float32' }, { prefix: 'z.', numFeatures: 2, affine: false, dtype: 'float32' },
    ]);
    // A malformed header is a FormatError; a path that is not one an ArgumentError.
    const bad = join(dir, 'bad-header.safetensors');
    writeFileSync(bad, Buffer.from(readFileSync(plain)).fill(0x20, 8, 12));
    await expect(BatchNorm.findInSafetensors(bad)).rejects.toBeInstanceOf(FormatError);
    await expect(BatchNorm.findInSafetensors(7 as never)).rejects.toThrow(/^path must be a string or a URL; got 7$/);
    const file = (name: string, header: unknown, data: Uint8Array): string => {
      const json = Buffer.from(JSON.stringify(header));
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(json.length));
      const path = join(dir, name);
      writeFileSync(path, Buffer.concat([length, json, data]));
      return path;
    };
    await expect(BatchNorm.findInSafetensors(file('array.safetensors', [1, 2], new Uint8Array(0)))).rejects.toThrow(/^the header must be a JSON object; got \[1,2\]$/);
    // A BatchNorm's num_batches_tracked is a scalar (or one element): a vector of two is a FormatError when the module loads.
    const pair = (offset: number) => ({ dtype: 'F32', shape: [2], data_offsets: [offset, offset + 8] });
    const counted = file('counted.safetensors', {
      running_mean: pair(0), running_var: pair(8), num_batches_tracked: { dtype: 'I64', shape: [2], data_offsets: [16, 32] },
    }, new Uint8Array(32));
    const two = new BatchNorm(2, { pool, affine: false });
    const kept = state(two);
    await expect(two.loadSafetensors(counted)).rejects.toThrow(/^num_batches_tracked must be a scalar; got shape \[2\]$/);
    expect(state(two)).toBe(kept);
  });

  it('a model file without the right prefix is refused whole, saying which BatchNorm prefixes it holds', async () => {
    const path = fileURLToPath(new URL('torch-model-f32.safetensors', fixtures));
    const bn = new BatchNorm(4, { pool });
    const before = state(bn);
    const refusals: [unknown, string | RegExp][] = [
      // No prefix: the file is not one module's state dict.
      [undefined, `the state dict in ${path} does not fit this module (its BatchNorm prefixes (BatchNorm.findInSafetensors) are "bn1.", "layer1.1.": options.prefix picks one): stateDict must have exactly the keys`],
      [{ prefix: 'bn2.' }, `options.prefix "bn2." starts no tensor name in ${path}; its BatchNorm prefixes (BatchNorm.findInSafetensors) are "bn1.", "layer1.1."`],
      [{ prefix: 'bn1' }, `the state dict under prefix "bn1" in ${path} does not fit this module (its names go on with a dot: options.prefix "bn1."?)`],
      // A prefix of more than one module: every key after it is counted.
      [{ prefix: 'layer1.' }, /\(num_batches_tracked may be left out\); missing \["weight", "bias", "running_mean", "running_var"\], unexpected \[(?=.*"0\.weight")(?=.*"1\.running_var")[^\]]*\]$/],
      // Another BatchNorm of the file, of 6 channels.
      [{ prefix: 'layer1.1.' }, `the state dict under prefix "layer1.1." in ${path} does not fit this module: stateDict.weight must have length 4; got length 6`],
    ];
    for (const [options, message] of refusals) {
      const err = await bn.loadSafetensors(path, options as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(options)).toBeInstanceOf(ArgumentError);
      if (typeof message === 'string') expect((err as Error).message, JSON.stringify(options)).toContain(message);
      else expect((err as Error).message, JSON.stringify(options)).toMatch(message);
      expect(state(bn)).toBe(before);
    }
  });

  it('loadSafetensors(path, modules) loads a model\'s BatchNorms from one reading of its header and their own tensors', async () => {
    for (const [name, model] of Object.entries(expected.models)) {
      const path = fileURLToPath(new URL(`${name}.safetensors`, fixtures));
      const { length, entries } = headerOf(readFileSync(path));
      const found = await BatchNorm.findInSafetensors(path);
      const modules = Object.fromEntries(found.map((f) => [f.prefix, new BatchNorm(f.numFeatures, { affine: f.affine, pool })]));
      const read = await bytesReadBy(() => loadSafetensors(path, modules));
      const own = Object.entries(entries).filter(([k]) => found.some((f) => k.startsWith(f.prefix)))
        .reduce((a, [, e]) => a + e.data_offsets[1] - e.data_offsets[0], 0);
      expect(read, name).toBe(8 + length + own);
      for (const [prefix, want] of Object.entries(model.modules)) {
        const bn = modules[prefix];
        expect(bn.weight, prefix).toEqual(Float32Array.from(want.weight));
        expect(bn.runningMean, prefix).toEqual(Float32Array.from(want.running_mean));
        expect(bn.runningVar, prefix).toEqual(Float32Array.from(want.running_var));
        expect(bn.numBatchesTracked, prefix).toBe(want.num_batches_tracked);
      }
    }
  });

  it('saveSafetensors(path, modules) writes several modules under their prefixes, as a model names them; they load back', async () => {
    const a = await trained(4);
    const b = await trained(6, 'float64');
    await b.forward(randomTensor([2, 6, 3], 'float64', 5), [2, 6, 3]);
    const plain = new BatchNorm(5, { pool, affine: false });
    plain.runningMean!.set([1, 2, 3, 4, 5]);
    const path = join(dir, 'three-modules.safetensors');
    await saveSafetensors(path, { 'bn1.': a, 'layer1.1.': b, 'head.norm.': plain });
    const { tensors, metadata } = decodeSafetensors(readFileSync(path));
    expect(metadata).toEqual({ format: 'pt' });
    const keys = (prefix: string, affine: boolean) => [...(affine ? ['weight', 'bias'] : []), 'running_mean', 'running_var', 'num_batches_tracked'].map((k) => prefix + k);
    expect(Object.keys(tensors).sort()).toEqual([...keys('bn1.', true), ...keys('layer1.1.', true), ...keys('head.norm.', false)].sort());
    expect(tensors['bn1.running_var'].dtype).toBe('F32');
    expect(tensors['layer1.1.running_var'].dtype).toBe('F64');
    expect(Float64Array.from(tensors['layer1.1.running_var'].data)).toEqual(b.runningVar);
    expect(Array.from(tensors['layer1.1.num_batches_tracked'].data)).toEqual([3]);
    expect(await BatchNorm.findInSafetensors(path)).toEqual([
      { prefix: 'bn1.', numFeatures: 4, affine: true, dtype: 'float32' },
      { prefix: 'head.norm.', numFeatures: 5, affine: false, dtype: 'float32' },
      { prefix: 'layer1.1.', numFeatures: 6, affine: true, dtype: 'float64' },
    ]);
    // Back in one call, and each by its prefix.
    const back = { 'bn1.': new BatchNorm(4, { pool }), 'layer1.1.': new BatchNorm(6, { pool, dtype: 'float64' }), 'head.norm.': new BatchNorm(5, { pool, affine: false }) };
    await loadSafetensors(path, back);
    expect([state(back['bn1.']), state(back['layer1.1.']), state(back['head.norm.'])]).toEqual([state(a), state(b), state(plain)]);
    const one = new BatchNorm(6, { pool, dtype: 'float64' });
    await one.loadSafetensors(path, { prefix: 'layer1.1.' });
    expect(state(one)).toBe(state(b));
    // The same module under two prefixes is written twice.
    const twice = join(dir, 'twice.safetensors');
    await saveSafetensors(twice, { 'x.': a, 'y.': a });
    expect(Object.keys(decodeSafetensors(readFileSync(twice)).tensors)).toHaveLength(10);
  });

  it('loadSafetensors(path, modules) changes no module when one does not fit; bad arguments are refused before the file is opened', async () => {
    const path = fileURLToPath(new URL('torch-model-f32.safetensors', fixtures));
    const first = new BatchNorm(4, { pool });
    const wrong = new BatchNorm(5, { pool });
    const before = [state(first), state(wrong)];
    // layer1.1. holds 6 channels: checked before bn1. loads.
    await expect(loadSafetensors(path, { 'bn1.': first, 'layer1.1.': wrong })).rejects.toThrow(
      /^the state dict under prefix "layer1\.1\." in .* does not fit this module: stateDict\.weight must have length 5; got length 6$/,
    );
    await expect(loadSafetensors(path, { 'bn1.': first, 'bn9.': wrong })).rejects.toThrow(/options\.prefix "bn9\." starts no tensor name/);
    expect([state(first), state(wrong)]).toEqual(before);
    const missing = join(dir, 'no-such-model.safetensors');
    const refusals: [() => Promise<void>, RegExp][] = [
      [() => loadSafetensors(missing, first as never), /^modules must be an object of BatchNorms by prefix \(\{ 'bn1\.': bn1, \.\.\. \}\); got a BatchNorm$/],
      [() => loadSafetensors(missing, [first] as never), /^modules must be an object of BatchNorms by prefix .*; got \[a BatchNorm\]$/],
      [() => loadSafetensors(missing, undefined as never), /^modules must be an object .*; got undefined$/],
      [() => loadSafetensors(missing, {}), /^modules must name at least one BatchNorm to load; got an empty object$/],
      [() => saveSafetensors(missing, {}), /^modules must name at least one BatchNorm to save; got an empty object$/],
      [() => loadSafetensors(missing, { 'bn1.': first, 'bn2.': {} as never }), /^modules\["bn2\."\] must be a BatchNorm; got an object$/],
      [() => loadSafetensors(missing, { 'a.': first, 'b.': first }), /^modules\["b\."\] is the module of modules\["a\."\] too: one module loads from one prefix$/],
      [() => saveSafetensors(3 as never, { 'a.': first }), /^path must be a string or a URL; got 3$/],
    ];
    for (const [call, message] of refusals) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ArgumentError);
      expect((err as Error).message).toMatch(message);
    }
    expect(() => readFileSync(missing)).toThrow(/ENOENT/);
  });

  it('checks every tensor of a model file\'s header, read or not, and options before the file is opened', async () => {
    const bytes = readFileSync(new URL('torch-model-f32.safetensors', fixtures));
    const { length, entries } = headerOf(bytes);
    /** The file with its header edited (its data as they are). */
    let files = 0;
    const edited = (edit: (header: Record<string, any>) => void): string => {
      const header = structuredClone(entries) as Record<string, any>;
      edit(header);
      const json = Buffer.from(JSON.stringify(header));
      const size = Buffer.alloc(8);
      size.writeBigUInt64LE(BigInt(json.length));
      const path = join(dir, `edited-${files++}.safetensors`);
      writeFileSync(path, Buffer.concat([size, json, bytes.subarray(8 + length)]));
      return path;
    };
    const bn = new BatchNorm(4, { pool });
    // An unread tensor of a type newer than this reader: its span cannot be checked, and it is not read.
    await bn.loadSafetensors(edited((h) => { h.mask.dtype = 'F2_FUTURE'; }), { prefix: 'bn1.' });
    expect(bn.weight).toEqual(Float32Array.from(expected.models['torch-model-f32'].modules['bn1.'].weight));
    const before = state(bn);
    const malformed: [string, string][] = [
      ['an unread uint8 tensor whose span is not its shape\'s', edited((h) => { h.mask.shape = [4]; })],
      ['an unread tensor overlapping another', edited((h) => { h.flags.data_offsets = [h.flags.data_offsets[0] - 1, h.flags.data_offsets[1] - 1]; })],
      ['an unread tensor with no shape', edited((h) => { delete h['head.weight'].shape; })],
    ];
    for (const [label, path] of malformed) {
      await expect(bn.loadSafetensors(path, { prefix: 'bn1.' }), label).rejects.toBeInstanceOf(FormatError);
      expect(state(bn), label).toBe(before);
    }
    // A BatchNorm's own tensor in a type bnpool does not read: refused by its name.
    await expect(bn.loadSafetensors(edited((h) => { h['bn1.bias'].dtype = 'U32'; }), { prefix: 'bn1.' }))
      .rejects.toThrow('tensor "bn1.bias" has dtype "U32"; bnpool reads F32, F64, I64, I32, F16, BF16');
    expect(state(bn)).toBe(before);
    // Options are checked before the file is opened: a missing file is not what they report.
    const missing = join(dir, 'no-such-file.safetensors');
    await expect(bn.loadSafetensors(missing, { prefix: 3 } as never)).rejects.toThrow(/^options\.prefix must be a string; got 3$/);
    await expect(bn.loadSafetensors(missing, { prefx: 'bn1.' } as never)).rejects.toThrow(/^options\.prefx is not an option here: expected one of prefix; got/);
    await expect(bn.saveSafetensors(missing, { prefix: null } as never)).rejects.toBeInstanceOf(ArgumentError);
    expect(() => readFileSync(missing)).toThrow(/ENOENT/);
  });

  for (const [name, want] of Object.entries(expected.files)) {
    const saved = want.saved === null ? 'saves the same bytes' : `saves them as ${want.dtype}`;
    it(`${name}: loads the values torch saved, and ${saved}`, async () => {
      const path = new URL(`${name}.safetensors`, fixtures);
      const bn = new BatchNorm(want.channels, { pool, dtype: want.dtype });
      await bn.loadSafetensors(path.pathname);
      // expected.json holds float32 values in their shortest form: exact once rounded to float32.
      const Float = want.dtype === 'float32' ? Float32Array : Float64Array;
      expect(bn.weight).toEqual(Float.from(want.weight));
      expect(bn.bias).toEqual(Float.from(want.bias));
      expect(bn.runningMean).toEqual(Float.from(want.running_mean));
      expect(bn.runningVar).toEqual(Float.from(want.running_var));
      expect(bn.numBatchesTracked).toBe(want.num_batches_tracked);
      const out = join(dir, `${name}.safetensors`);
      await bn.saveSafetensors(out);
      if (want.saved === null) {
        expect(readFileSync(out).equals(readFileSync(path))).toBe(true);
        return;
      }
      // A half-precision checkpoint loads into a float32 module, as load_state_dict copies it,
      // and saves back in the module's dtype with the same values.
      const { tensors } = decodeSafetensors(readFileSync(out));
      expect(tensors.weight.dtype).toBe('F32');
      expect(Array.from(tensors.running_var.data)).toEqual(Array.from(bn.runningVar!));
    });
  }
});
