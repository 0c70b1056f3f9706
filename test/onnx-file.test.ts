/**
 * BatchNormalization nodes of ONNX model files: `BatchNorm.findInOnnx` and `BatchNorm.fromOnnx`,
 * on models the `onnx` Python package wrote (test/fixtures/onnx/make_files.py: initializers as
 * raw_data and as float_data, a Constant node's value and value_floats, external data, float64, float16 as
 * int32_data bits), against the values it recorded, and against onnxruntime running a model; and
 * on models PyTorch's exporters wrote (test/fixtures/torch-onnx/make_files.py), against PyTorch.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchNormModel, bytes as message, concat, float32, int, key, str } from '../dist/bench/peers/onnx-model.js';
import { ArgumentError, BatchNorm, FormatError, Pool } from '../dist/src/index.js';
import { randomTensor } from './helpers/data.js';

/** Corrupted models of the robustness test (`BNPOOL_ONNX_CORRUPTIONS=5000` searches longer). */
const CORRUPTIONS = Number(process.env.BNPOOL_ONNX_CORRUPTIONS ?? 150);
const fixtures = new URL('./fixtures/onnx/', import.meta.url);
const fixture = (name: string): string => fileURLToPath(new URL(name, fixtures));
interface ExpectedNode {
  name: string; output: string; epsilon: number; momentum: number; trainingMode: boolean; numFeatures: number; dtype: 'float32' | 'float64';
  scale: number[]; B: number[]; mean: number[]; var: number[];
}
const expected = JSON.parse(readFileSync(new URL('expected.json', fixtures), 'utf8')) as { generator: string; files: Record<string, ExpectedNode[]> };

let pool: Pool;
const dir = mkdtempSync(join(tmpdir(), 'bnpool-onnx-'));
beforeAll(() => { pool = new Pool({ threads: 1 }); });
afterAll(async () => { await pool.close(); rmSync(dir, { recursive: true, force: true }); });

/** A copy of a fixture with every `from` replaced by `to` (same length, so every protobuf length holds). */
function patched(name: string, from: Uint8Array, to: Uint8Array): string {
  const bytes = Buffer.from(readFileSync(fixture(name)));
  let found = 0;
  for (let at = bytes.indexOf(from); at >= 0; at = bytes.indexOf(from, at + 1), found++) bytes.set(to, at);
  expect(found, `${name} holds the bytes to patch`).toBeGreaterThan(0);
  const path = join(dir, `patched-${name}`);
  writeFileSync(path, bytes);
  return path;
}

const float32Bytes = (v: number): Uint8Array => new Uint8Array(Float32Array.of(v).buffer);

// Hand-made models. TensorProto: dims 1, data_type 2, float_data 4, raw_data 9, name 8.
// AttributeProto: name 1, f 2, i 3. NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.

/** An initializer of FLOAT `values`, each part replaceable by another encoding (a broken one, too). */
const handTensor = (name: string, values: number[], parts: { dims?: Uint8Array; type?: Uint8Array; data?: Uint8Array[] } = {}): Uint8Array =>
  message(5, concat([parts.dims ?? int(1, values.length), parts.type ?? int(2, 1), ...(parts.data ?? values.map((v) => float32(4, v))), str(8, name)]));

/** A node's attribute: its name, then its value's field (`float32(2, f)`, `int(3, i)`). */
const handAttribute = (name: string, value: Uint8Array): Uint8Array => message(5, concat([str(1, name), value]));

/** X -> BatchNormalization "bn" -> Y (opset 15), its state as initializers: scale [3, 0.25], B [0.5, -0.5], mean [1, 2], var [4, 9]. */
function handModel(o: { scale?: Uint8Array; B?: Uint8Array; attributes?: Uint8Array[] } = {}): Uint8Array {
  const node = concat([
    ...['X', 'scale', 'B', 'mean', 'var'].map((n) => str(1, n)), str(2, 'Y'), str(3, 'bn'), str(4, 'BatchNormalization'), ...(o.attributes ?? []),
  ]);
  const graph = concat([
    message(1, node), o.scale ?? handTensor('scale', [3, 0.25]), o.B ?? handTensor('B', [0.5, -0.5]), handTensor('mean', [1, 2]), handTensor('var', [4, 9]),
  ]);
  return concat([int(1, 8), message(7, graph), message(8, concat([str(1, ''), int(2, 15)]))]);
}

/** `bytes` written as `name` in the test's folder. */
function writtenModel(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Each model, written, must be refused by fromOnnx with a FormatError whose message holds its text. */
async function expectFormatErrors(cases: ReadonlyArray<readonly [string, Uint8Array, string]>): Promise<void> {
  for (const [name, bytes, text] of cases) {
    const err = await BatchNorm.fromOnnx(writtenModel(name, bytes), { pool }).then(() => null, (e: unknown) => e);
    expect(err, name).toBeInstanceOf(FormatError);
    expect((err as FormatError).message, name).toContain(text);
  }
}

describe('BatchNorm.findInOnnx', () => {
  it('has the seven fixture files', () => {
    expect(expected.generator).toMatch(/^onnx 1\./);
    expect(Object.keys(expected.files)).toEqual(['model.onnx', 'external.onnx', 'double.onnx', 'half.onnx', 'bn-only.onnx', 'floats.onnx', 'ambiguous.onnx']);
  });

  it('lists the nodes whose state is constant, with their attributes (defaults where absent), in graph order', async () => {
    for (const [name, nodes] of Object.entries(expected.files)) {
      const found = await BatchNorm.findInOnnx(fixture(name));
      expect(found, name).toEqual(nodes.map(({ name: n, output, numFeatures, epsilon, momentum, trainingMode, dtype }) => ({
        name: n, output, numFeatures, epsilon, momentum, trainingMode, dtype,
      })));
    }
    // model.onnx's "bn3" takes its mean from a graph input: not listed. Nor a model whose state is
    // all fed at run time (bench's one-node model).
    const fed = join(dir, 'fed.onnx');
    writeFileSync(fed, batchNormModel([2, 3, 4], { training: false, epsilon: 1e-5, momentum: 0.9 }));
    expect(await BatchNorm.findInOnnx(fed)).toEqual([]);
  });
});

describe('BatchNorm.fromOnnx', () => {
  it('makes a module of each node: its channels, eps, momentum, dtype and values, in the ONNX convention', async () => {
    for (const [name, nodes] of Object.entries(expected.files)) {
      for (const want of nodes) {
        // By name, or by output where it has none or its name is another node's output.
        const id = want.name === '' || nodes.some((n) => n.output === want.name) ? want.output : want.name;
        const bn = await BatchNorm.fromOnnx(fixture(name), { node: id, pool });
        const label = `${name} ${id}`;
        const array = want.dtype === 'float64' ? Float64Array : Float32Array;
        expect([bn.numFeatures, bn.eps, bn.momentum, bn.convention, bn.dtype, bn.numBatchesTracked, bn.training], label)
          .toEqual([want.numFeatures, want.epsilon, want.momentum, 'onnx', want.dtype, 0, want.trainingMode]);
        expect(bn.weight, label).toEqual(array.from(want.scale));
        expect(bn.bias, label).toEqual(array.from(want.B));
        expect(bn.runningMean, label).toEqual(array.from(want.mean));
        expect(bn.runningVar, label).toEqual(array.from(want.var));
      }
    }
    // A node is also named by its output; a model of one node needs no name.
    const byOutput = await BatchNorm.fromOnnx(fixture('model.onnx'), { node: 'b1', pool });
    expect(byOutput.weight).toEqual(Float32Array.from(expected.files['model.onnx'][0].scale));
    const only = await BatchNorm.fromOnnx(fixture('double.onnx'));
    expect(only.runningVar).toEqual(Float64Array.from(expected.files['double.onnx'][0].var));
  });

  it('gives onnxruntime\'s outputs for the model it came from, in eval mode', async () => {
    const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof import('onnxruntime-node');
    const shape = [3, 6, 5];
    const x = randomTensor(shape, 'float32', 91) as Float32Array;
    const session = await ort.InferenceSession.create(readFileSync(fixture('bn-only.onnx')));
    const { Y } = await session.run({ X: new ort.Tensor('float32', x, shape) });
    await session.release();
    const bn = await BatchNorm.fromOnnx(fixture('bn-only.onnx'), { pool });
    expect(bn.training).toBe(false); // training_mode 0: an inference graph
    const y = await bn.forward(x, shape);
    const want = Y.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i] - want[i]) / Math.max(Math.abs(want[i]), 1));
    expect(worst).toBeLessThan(1e-6);
    // The module's options override the node's, but not its state.
    const last = await BatchNorm.fromOnnx(fixture('bn-only.onnx'), { pool, layout: 'channels-last', eps: 1e-3 });
    expect([last.layout, last.eps, last.momentum]).toEqual(['channels-last', 1e-3, Math.fround(0.9)]);
  });

  it('reads the models PyTorch\'s two exporters wrote: the state bit for bit, eps and momentum as ONNX holds them, PyTorch\'s outputs', async () => {
    interface TorchState { numFeatures: number; eps: number; momentum: number; weight: number[]; bias: number[]; running_mean: number[]; running_var: number[] }
    const torch = JSON.parse(readFileSync(new URL('./fixtures/torch-onnx/expected.json', import.meta.url), 'utf8')) as {
      generator: string; files: string[]; bn: TorchState; bn1d: TorchState;
      x: { shape: number[]; values: number[] }; z: { shape: number[]; values: number[] }; y: number[]; yz: number[];
    };
    expect(torch.generator).toMatch(/^PyTorch 2\./);
    expect(torch.files).toEqual(['legacy.onnx', 'dynamo.onnx']);
    for (const file of torch.files) {
      const path = fileURLToPath(new URL(`./fixtures/torch-onnx/${file}`, import.meta.url));
      const found = await BatchNorm.findInOnnx(path);
      expect(found.map((n) => [n.numFeatures, n.trainingMode, n.dtype]), file).toEqual([[5, false, 'float32'], [3, false, 'float32']]);
      for (const [i, key] of (['bn', 'bn1d'] as const).entries()) {
        const want = torch[key];
        const bn = await BatchNorm.fromOnnx(path, { node: found[i].name, pool });
        const label = `${file} ${key}`;
        // ONNX holds eps as a float32 and momentum as ONNX's: 1 - PyTorch's.
        expect([bn.numFeatures, bn.eps, bn.momentum, bn.convention, bn.training], label)
          .toEqual([want.numFeatures, Math.fround(want.eps), Math.fround(1 - want.momentum), 'onnx', false]);
        for (const [got, values] of [[bn.weight!, want.weight], [bn.bias!, want.bias], [bn.runningMean!, want.running_mean], [bn.runningVar!, want.running_var]] as const) {
          expect(got, label).toEqual(Float32Array.from(values));
        }
        const input = key === 'bn' ? torch.x : torch.z;
        const y = await bn.forward(Float32Array.from(input.values), input.shape);
        const expectedY = key === 'bn' ? torch.y : torch.yz;
        let worst = 0;
        for (let j = 0; j < y.length; j++) {
          const got = key === 'bn' ? Math.max(y[j], 0) : y[j]; // the model's ReLU after bn
          worst = Math.max(worst, Math.abs(got - expectedY[j]) / Math.max(Math.abs(expectedY[j]), 1));
        }
        expect(worst, label).toBeLessThan(1e-6);
      }
    }
  });

  it('refuses a model without the node named, or with several and none named, listing its nodes; options before the file is read', async () => {
    const model = fixture('model.onnx');
    await expect(BatchNorm.fromOnnx(model, { pool })).rejects.toThrow(
      new ArgumentError(`${model} holds 2 BatchNormalization nodes whose state is constant; options.node picks one of "bn1", "Y"`),
    );
    await expect(BatchNorm.fromOnnx(model, { node: 'bn3', pool })).rejects.toThrow(
      new ArgumentError(`options.node "bn3" names none of the BatchNormalization nodes of ${model} whose state is constant (by name or output): "bn1", "Y"`),
    );
    // "h" is one node's name and the other's output: by name or output, it names both.
    const ambiguous = fixture('ambiguous.onnx');
    await expect(BatchNorm.fromOnnx(ambiguous, { node: 'h', pool })).rejects.toThrow(
      new ArgumentError(`options.node "h" names more than one of the BatchNormalization nodes of ${ambiguous} whose state is constant (by name or output): "first", "h"`),
    );
    expect((await BatchNorm.fromOnnx(ambiguous, { node: 'first', pool })).numFeatures).toBe(2);
    const fed = join(dir, 'fed-only.onnx');
    writeFileSync(fed, batchNormModel([2, 3], { training: true, epsilon: 1e-5, momentum: 0.9 }));
    await expect(BatchNorm.fromOnnx(fed)).rejects.toThrow(new ArgumentError(`${fed} holds no BatchNormalization node whose state is constant`));
    const missing = join(dir, 'no-such-model.onnx');
    const refusals: [unknown, RegExp][] = [
      [{ node: 3 }, /^options\.node must be a string; got 3$/],
      [{ affine: false }, /^options\.affine must stay true: an ONNX BatchNormalization has scale, B and running statistics; got false$/],
      [{ trackRunningStats: false }, /^options\.trackRunningStats must stay true/],
      [{ momentum: 2 }, /^options\.momentum/],
      [{ nodes: 'bn1' }, /^options\.nodes is not an option here/],
      ['bn1', /^options must be an object; got "bn1"$/],
    ];
    for (const [options, message] of refusals) {
      const err = await BatchNorm.fromOnnx(missing, options as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(options)).toBeInstanceOf(ArgumentError);
      expect((err as Error).message).toMatch(message);
    }
    await expect(BatchNorm.fromOnnx(7 as never)).rejects.toThrow(/^path must be a string or a URL; got 7$/);
    await expect(BatchNorm.findInOnnx(missing)).rejects.toThrow(/ENOENT/);
  });

  it('refuses, as FormatErrors, a node no module can take and external data outside the model\'s folder', async () => {
    // bn1's momentum 0.8 made 1.5; its epsilon 1e-3 made -1.
    const momentum = patched('model.onnx', float32Bytes(0.8), float32Bytes(1.5));
    await expect(BatchNorm.fromOnnx(momentum, { node: 'bn1' })).rejects.toThrow(new FormatError(`node "bn1" of ${momentum} has momentum 1.5; a module's is in [0, 1]`));
    const epsilon = patched('model.onnx', float32Bytes(1e-3), float32Bytes(-1));
    await expect(BatchNorm.fromOnnx(epsilon, { node: 'bn1' })).rejects.toBeInstanceOf(FormatError);
    expect((await BatchNorm.findInOnnx(epsilon))[0].epsilon).toBe(-1);
    // external.data renamed to a path that leaves the folder (same length).
    const escaping = patched('external.onnx', new TextEncoder().encode('external.data'), new TextEncoder().encode('../ernal.data'));
    await expect(BatchNorm.fromOnnx(escaping, { node: 'bn1' })).rejects.toThrow(/is stored at "\.\.\/ernal\.data", outside the model's folder$/);
  });

  it('refuses external data that names no location, a file that cannot be opened, a length or offset it does not have', async () => {
    copyFileSync(fixture('external.data'), join(dir, 'external.data')); // beside the patched copies
    const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
    const cases: [Uint8Array, Uint8Array, RegExp][] = [
      [bytes('\x08location'), bytes('\x08locatioX'), /^scale \("bn1\.scale"\) of node "bn1" is stored outside the model but names no location$/],
      [bytes('external.data'), bytes('externa2.data'), /is stored in "externa2\.data" beside the model, which cannot be opened \(ENOENT\)$/],
      [bytes('\x06length\x12\x0216'), bytes('\x06length\x12\x0217'), /: external_data length 17 for 16 bytes of values$/],
      [bytes('\x06offset\x12\x03432'), bytes('\x06offset\x12\x034x2'), /: external_data offset "4x2" is not a byte count$/],
      [bytes('\x06offset\x12\x03432'), bytes('\x06offset\x12\x03999'), /: "external\.data" has 512 bytes, not the 16 from byte 999 it names$/],
      // As onnx.load refuses it (a path is text).
      [bytes('external.data'), Uint8Array.of(...bytes('external.dat'), 0xff), /^scale \("bn1\.scale"\) of node "bn1" is stored at "external\.dat\\udcff", which is not UTF-8$/],
    ];
    expect((await BatchNorm.fromOnnx(patched('external.onnx', bytes('bnpool'), bytes('bnpool')), { node: 'bn1', pool })).numFeatures).toBe(4);
    for (const [from, to, message] of cases) {
      await expect(BatchNorm.fromOnnx(patched('external.onnx', from, to), { node: 'bn1', pool }), new TextDecoder().decode(to)).rejects.toThrow(message);
    }
  });

  it('matches names byte for byte, as onnxruntime does: two that differ only in bytes that are not UTF-8 stay two', async () => {
    // Each character one byte: '\xffA' is the bytes ff 41, which are not UTF-8.
    const raw = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
    const named = (field: number, text: string) => message(field, raw(text));
    const tensor = (name: string, values: number[]) => message(5, concat([int(1, 2), int(2, 1), ...values.map((v) => float32(4, v)), named(8, name)]));
    const shape = [2, 2, 3];
    const info = (name: string) => concat([str(1, name), message(2, message(1, concat([int(1, 1), message(2, concat(shape.map((d) => message(1, int(1, d)))))])))]);
    const node = concat([...['X', '\xffA', 'B', 'mean', 'var'].map((n) => named(1, n)), str(2, 'Y'), named(3, 'bn\xff'), str(4, 'BatchNormalization')]);
    // A lenient decoder read both scales' names as '\ufffdA', and the node's scale as the second.
    const graph = concat([
      message(1, node), tensor('\xffA', [1, 2]), tensor('\xfeA', [3, 4]), tensor('B', [0.5, -0.5]), tensor('mean', [1, 2]), tensor('var', [4, 9]),
      message(11, info('X')), message(12, info('Y')),
    ]);
    const model = concat([int(1, 8), message(7, graph), message(8, concat([str(1, ''), int(2, 15)]))]);
    const path = writtenModel('not-utf8.onnx', model);
    // A byte that is not UTF-8 reads as U+DC80 + the byte, as Python's "surrogateescape" (utf8.test.ts).
    expect((await BatchNorm.findInOnnx(path)).map((n) => n.name)).toEqual(['bn\udcff']);
    const bn = await BatchNorm.fromOnnx(path, { node: 'bn\udcff', pool });
    expect([bn.weight, bn.bias, bn.runningMean, bn.runningVar].map((a) => Array.from(a!))).toEqual([[1, 2], [0.5, -0.5], [1, 2], [4, 9]]);
    const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof import('onnxruntime-node');
    const session = await ort.InferenceSession.create(model);
    const x = randomTensor(shape, 'float32', 92) as Float32Array;
    const { Y } = await session.run({ X: new ort.Tensor('float32', x, shape) });
    await session.release();
    const y = await bn.forward(x, shape);
    const want = Y.data as Float32Array;
    for (let i = 0; i < y.length; i++) expect(Math.abs(y[i] - want[i]), `element ${i}`).toBeLessThan(1e-6 * Math.max(1, Math.abs(want[i])));
  });

  it('refuses, as FormatErrors that say where, a hand-made model whose protobuf breaks its schema', async () => {
    // Well formed, it loads: the same encoders then break one field each.
    const good = await BatchNorm.fromOnnx(writtenModel('hand.onnx', handModel()), { pool });
    expect([good.weight, good.bias, good.runningMean, good.runningVar].map((a) => Array.from(a!))).toEqual([[3, 0.25], [0.5, -0.5], [1, 2], [4, 9]]);
    await expectFormatErrors([
      // A varint of eleven bytes where the model's first key is.
      ['varint.onnx', Uint8Array.of(...Array(10).fill(0xff), 0x01), 'the model: a varint longer than 10 bytes'],
      // dims as a fixed32.
      ['dims.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { dims: concat([key(1, 5), [2, 0, 0, 0]]) }) }), 'an initializer "scale": field 1 has wire type 5, not an integer\'s'],
      // float_data as varints.
      ['floats.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { data: [int(4, 3), int(4, 1)] }) }), 'field 4 has wire type 0, not a float\'s'],
    ]);
  });

  it('skips a group with the fields inside it, as protobuf does, and refuses the keys and groups protobuf refuses', async () => {
    // A group: its start key (wire type 3), fields, its end key (4). No ONNX field is one, so a
    // parser skips it as an unknown field, whatever its number; onnx.ModelProto.ParseFromString
    // (protobuf 7.36) reads these models alike, and refuses each of the broken ones below.
    const group = (field: number, ...inside: Uint8Array[]): Uint8Array => concat([key(field, 3), ...inside, key(field, 4)]);
    // float_data (field 4) inside groups numbered 4 and 99, nested: read, they would be extra values.
    const data = [group(4, float32(4, 7)), float32(4, 3), group(99, group(98, float32(4, 8)), int(1, 5)), float32(4, 0.25), group(4)];
    const grouped = await BatchNorm.fromOnnx(writtenModel('grouped.onnx', concat([group(99), handModel({ scale: handTensor('scale', [3, 0.25], { data }) })])), { pool });
    expect([grouped.weight, grouped.bias, grouped.runningMean, grouped.runningVar].map((a) => Array.from(a!))).toEqual([[3, 0.25], [0.5, -0.5], [1, 2], [4, 9]]);
    await expectFormatErrors([
      ['field-0.onnx', concat([handModel(), [0, 0]]), "the model: a field numbered 0, outside protobuf's 1 to 2^29 - 1"],
      ['field-2-29.onnx', concat([handModel(), key(2 ** 29, 0), [1]]), "the model: a field numbered 536870912, outside protobuf's 1 to 2^29 - 1"],
      ['wire-6.onnx', concat([handModel(), key(99, 6)]), "the model: wire type 6 in field 99; protobuf's are 0 to 5"],
      ['wire-7.onnx', concat([handModel(), key(99, 7)]), "the model: wire type 7 in field 99; protobuf's are 0 to 5"],
      ['lone-end.onnx', concat([handModel(), key(99, 4)]), 'the model: the end of group 99 where no group is open'],
      ['crossed.onnx', concat([key(99, 3), key(98, 3), key(99, 4), key(98, 4), handModel()]), 'the model: the end of group 99 where group 98 is open'],
      ['open-group.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { data: [key(99, 3), float32(4, 3), float32(4, 0.25)].map((p) => Uint8Array.from(p)) }) }),
        'an initializer: group 99 runs past the end of its message'],
    ]);
  });

  it('reads a message written in parts as protobuf merges them, and a bytes field written twice as its last', async () => {
    // The graph in two parts (a Constant node and scale; then the BatchNormalization node, B and
    // mean), the Constant's tensor in two (dims and type; then float_data), scale's raw_data twice
    // ([7, 7], then [3, 0.25]). onnx.load reads the file so: both parts' nodes and initializers,
    // the Constant's value [4, 9], scale [3, 0.25].
    const bn = concat([...['X', 'scale', 'B', 'mean', 'var'].map((n) => str(1, n)), str(2, 'Y'), str(3, 'bn'), str(4, 'BatchNormalization')]);
    const value = concat([str(1, 'value'), message(5, concat([int(1, 2), int(2, 1)])), int(20, 4), message(5, concat([float32(4, 4), float32(4, 9)]))]);
    const constant = concat([str(2, 'var'), str(4, 'Constant'), message(5, value)]);
    const scale = handTensor('scale', [], { dims: int(1, 2), data: [message(9, concat([float32Bytes(7), float32Bytes(7)])), message(9, concat([float32Bytes(3), float32Bytes(0.25)]))] });
    const path = writtenModel('merged.onnx', concat([
      int(1, 8), message(7, concat([message(1, constant), scale])), message(8, concat([str(1, ''), int(2, 15)])),
      message(7, concat([message(1, bn), handTensor('B', [0.5, -0.5]), handTensor('mean', [1, 2])])),
    ]));
    expect(await BatchNorm.findInOnnx(path)).toEqual([{ name: 'bn', output: 'Y', numFeatures: 2, epsilon: Math.fround(1e-5), momentum: Math.fround(0.9), trainingMode: false, dtype: 'float32' }]);
    const merged = await BatchNorm.fromOnnx(path, { pool });
    expect([merged.weight, merged.bias, merged.runningMean, merged.runningVar].map((a) => Array.from(a!))).toEqual([[3, 0.25], [0.5, -0.5], [1, 2], [4, 9]]);
  });

  it('refuses each field a reader cannot take, naming it, and passes over nodes no module can be', async () => {
    // An int64 of -1 as protobuf writes it: ten bytes, 2^64 - 1 unsigned.
    const minusOne = int(1, -1);
    expect(Array.from(minusOne)).toEqual([0x08, ...Array(9).fill(0xff), 0x01]);
    const what = 'scale ("scale") of node "bn"';
    await expectFormatErrors([
      // The model's first key, then a varint cut short.
      ['short-varint.onnx', Uint8Array.of(0x08, 0x80), 'the model: a varint runs past the end of its message'],
      // A float (fixed32) of two bytes.
      ['short-fixed.onnx', concat([key(1, 5), [1, 2]]), 'the model: field 1 runs past the end of its message'],
      ['negative-dims.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { dims: minusOne }) }), 'an initializer "scale": an integer out of range (18446744073709552000)'],
      // float_data packed into six bytes.
      ['packed.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { data: [message(4, Uint8Array.of(0, 0, 0x40, 0x40, 0, 0))] }) }), `${what}: packed field 4 of 6 bytes, not a multiple of 4`],
      ['int64.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { type: int(2, 7), data: [message(9, new Uint8Array(16))] }) }), `${what} has type INT64; a BatchNormalization's state is FLOAT, DOUBLE, FLOAT16 or BFLOAT16`],
      ['raw.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { data: [message(9, new Uint8Array(6))] }) }), `${what}: 6 bytes of raw data for 2 values of 4 bytes`],
      // A segment (begin 0, end 2), which onnx.numpy_helper.to_array refuses too.
      ['segment.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { data: [float32(4, 3), float32(4, 0.25), message(3, concat([int(1, 0), int(2, 2)]))] }) }),
        `${what} is a segment of a tensor (TensorProto field 3), which bnpool does not join, as onnx's numpy_helper does not`],
      ['one-float.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { data: [float32(4, 3)] }) }), `${what} holds 1 value; its dims [2] give 2`],
      ['three-floats.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { data: [3, 0.25, 1].map((v) => float32(4, v)) }) }), `${what} holds 3 values; its dims [2] give 2`],
      ['int-epsilon.onnx', handModel({ attributes: [handAttribute('epsilon', int(3, 1))] }), 'BatchNormalization node 0: attribute epsilon holds no float'],
      ['float-mode.onnx', handModel({ attributes: [handAttribute('training_mode', float32(2, 1))] }), 'BatchNormalization node 0: attribute training_mode holds no int'],
    ]);
    // The same encoders, well formed: the attributes as given.
    const attributed = writtenModel('attributed.onnx', handModel({ attributes: [handAttribute('epsilon', float32(2, 0.5)), handAttribute('training_mode', int(3, 1)), handAttribute('spatial', int(3, 1))] }));
    expect(await BatchNorm.findInOnnx(attributed)).toEqual([{ name: 'bn', output: 'Y', numFeatures: 2, epsilon: 0.5, momentum: Math.fround(0.9), trainingMode: true, dtype: 'float32' }]);
    // Nodes no module can be are not listed: state per element (opset 6-8's spatial 0), a B of
    // another length, a 2-D scale.
    const skipped: [string, Uint8Array][] = [
      ['spatial.onnx', handModel({ attributes: [handAttribute('spatial', int(3, 0))] })],
      ['long-b.onnx', handModel({ B: handTensor('B', [0.5, -0.5, 1]) })],
      ['matrix.onnx', handModel({ scale: handTensor('scale', [3, 0.25], { dims: concat([int(1, 1), int(1, 2)]) }) })],
    ];
    for (const [name, b] of skipped) {
      const path = writtenModel(name, b);
      expect(await BatchNorm.findInOnnx(path), name).toEqual([]);
      await expect(BatchNorm.fromOnnx(path, { pool }), name).rejects.toThrow(new ArgumentError(`${path} holds no BatchNormalization node whose state is constant`));
    }
  });

  it('reads external data from byte 0 where its offset is absent', async () => {
    copyFileSync(fixture('external.data'), join(dir, 'external.data'));
    // bn1.scale's offset 432: its key renamed, the entry is one the reader does not know.
    const path = patched('external.onnx', new TextEncoder().encode('\x06offset\x12\x03432'), new TextEncoder().encode('\x06offsex\x12\x03432'));
    const bn = await BatchNorm.fromOnnx(path, { node: 'bn1', pool });
    const data = readFileSync(fixture('external.data'));
    expect(Array.from(bn.weight!)).toEqual(Array.from(new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + 16))));
    expect(Array.from(bn.bias!)).toEqual(expected.files['external.onnx'][0].B);
  });

  it('reads every truncation and many corruptions of a model as a list, a module, or a typed error', async () => {
    const bytes = readFileSync(fixture('model.onnx'));
    const path = join(dir, 'broken.onnx');
    const outcomes = new Map<string, number>();
    let seed = Number(process.env.BNPOOL_ONNX_SEED ?? 7);
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const cases: Uint8Array[] = [];
    for (let cut = 0; cut < bytes.length; cut += 7) cases.push(bytes.subarray(0, cut));
    for (let t = 0; t < CORRUPTIONS; t++) {
      const b = Uint8Array.from(bytes);
      for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      cases.push(b);
    }
    for (const c of cases) {
      writeFileSync(path, c);
      for (const call of [() => BatchNorm.findInOnnx(path), () => BatchNorm.fromOnnx(path, { node: 'bn1', pool })]) {
        const outcome = await call().then(() => 'ok', (e: unknown) => (e instanceof FormatError || e instanceof ArgumentError ? (e as FormatError).code : `${(e as Error).name}: ${(e as Error).message}`));
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }
    expect([...outcomes.keys()].sort()).toEqual(['ERR_BNPOOL_ARG', 'ERR_BNPOOL_FORMAT', 'ok']);
  });
});
