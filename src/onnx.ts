/**
 * BatchNormalization nodes of an ONNX model file, and the constants that hold their state. An ONNX
 * file is a protocol buffer (onnx/onnx.proto: ModelProto, its GraphProto, NodeProto, TensorProto);
 * this reads the handful of fields a BatchNormalization's state needs, and skips every other
 * field by its wire type, as a protobuf parser must. Only the model's main graph is read (not
 * functions, nor the subgraphs of If, Loop or Scan).
 */
import { open, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import type { Dtype } from '../workers/protocol.js';
import type { BatchNormOptions } from './batch-norm-types.js';
import { ArgumentError, describe, FormatError } from './errors.js';
import { bfloat16ToNumber, halfToNumber } from './safetensors.js';
import { checkObject } from './validate.js';
import { checkPath, readBytes } from './files.js';
import { decodeSurrogateEscape, hasEscapedBytes } from './utf8.js';

/** Wire types of the protobuf encoding. */
const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;
/** The largest field number protobuf allows (2^29 - 1); a parser refuses a key past it. */
const MAX_FIELD = 2 ** 29 - 1;

/** One field of a message: its number, wire type, and value (a number, or the bytes of a length-delimited field). */
interface Field {
  readonly field: number;
  readonly wire: number;
  readonly value: number;
  readonly bytes: Uint8Array;
}

/** Reads a varint at `at[0]` (advancing it); past 2^53 its value is inexact, which callers check. */
function readVarint(bytes: Uint8Array, at: [number], what: string): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (at[0] >= bytes.length) throw new FormatError(`${what}: a varint runs past the end of its message`);
    const b = bytes[at[0]++];
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return value;
  }
  throw new FormatError(`${what}: a varint longer than 10 bytes`);
}

/**
 * The fields of a protobuf message in order (unknown ones included; the caller picks). A group
 * (wire types 3 and 4, proto2's groups, which no ONNX field is) is skipped with the fields inside
 * it, as protobuf skips any field its schema does not declare.
 */
function fieldsOf(bytes: Uint8Array, what: string): Field[] {
  const fields: Field[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at: [number] = [0];
  // The field numbers of the groups open, the innermost last.
  const groups: number[] = [];
  while (at[0] < bytes.length) {
    const key = readVarint(bytes, at, what);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0 || field > MAX_FIELD) throw new FormatError(`${what}: a field numbered ${field}, outside protobuf's 1 to 2^29 - 1`);
    let value = 0;
    let body: Uint8Array = EMPTY;
    if (wire === VARINT) {
      value = readVarint(bytes, at, what);
    } else if (wire === FIXED64 || wire === FIXED32) {
      const size = wire === FIXED64 ? 8 : 4;
      if (at[0] + size > bytes.length) throw new FormatError(`${what}: field ${field} runs past the end of its message`);
      value = wire === FIXED32 ? view.getFloat32(at[0], true) : view.getFloat64(at[0], true);
      body = bytes.subarray(at[0], at[0] + size);
      at[0] += size;
    } else if (wire === BYTES) {
      value = readVarint(bytes, at, what);
      if (value > bytes.length - at[0]) throw new FormatError(`${what}: field ${field} of ${value} bytes runs past the end of its message`);
      body = bytes.subarray(at[0], at[0] + value);
      at[0] += value;
    } else if (wire === START_GROUP) {
      groups.push(field);
      continue;
    } else if (wire === END_GROUP) {
      const open = groups.pop();
      if (open !== field) throw new FormatError(`${what}: the end of group ${field} where ${open === undefined ? 'no group' : `group ${open}`} is open`);
      continue;
    } else {
      throw new FormatError(`${what}: wire type ${wire} in field ${field}; protobuf's are 0 to 5`);
    }
    if (groups.length === 0) fields.push({ field, wire, value, bytes: body });
  }
  if (groups.length > 0) throw new FormatError(`${what}: group ${groups[groups.length - 1]} runs past the end of its message`);
  return fields;
}

const EMPTY = new Uint8Array(0);

/**
 * The string fields numbered `field`, in order. A byte that is not UTF-8 reads as U+DC80 + the
 * byte (Python's "surrogateescape"), so names match as onnxruntime matches them, byte for byte:
 * two that differ only in such bytes stay two (a lenient decoder made both U+FFFD, and an input
 * took the other's values), and none can match a valid name.
 */
const stringsOf = (fields: readonly Field[], field: number): string[] =>
  fields.filter((f) => f.field === field && f.wire === BYTES).map((f) => decodeSurrogateEscape(f.bytes));

/** The last string field numbered `field` (protobuf: the last one wins), or ''. */
const stringOf = (fields: readonly Field[], field: number): string => stringsOf(fields, field).at(-1) ?? '';

/** A repeated integer field, packed (one length-delimited field) or not, as safe integers. */
function integersOf(fields: readonly Field[], field: number, what: string): number[] {
  const values: number[] = [];
  for (const f of fields) {
    if (f.field !== field) continue;
    if (f.wire === VARINT) {
      values.push(f.value);
    } else if (f.wire === BYTES) {
      for (const at: [number] = [0]; at[0] < f.bytes.length;) values.push(readVarint(f.bytes, at, what));
    } else {
      throw new FormatError(`${what}: field ${field} has wire type ${f.wire}, not an integer's`);
    }
  }
  for (const v of values) if (!Number.isSafeInteger(v)) throw new FormatError(`${what}: an integer out of range (${v})`);
  return values;
}

/** A repeated float (fixed32) or double (fixed64) field, packed or not. */
function floatsOf(fields: readonly Field[], field: number, size: 4 | 8, what: string): number[] {
  const values: number[] = [];
  for (const f of fields) {
    if (f.field !== field) continue;
    if (f.wire === (size === 4 ? FIXED32 : FIXED64)) {
      values.push(f.value);
    } else if (f.wire === BYTES) {
      if (f.bytes.length % size !== 0) throw new FormatError(`${what}: packed field ${field} of ${f.bytes.length} bytes, not a multiple of ${size}`);
      const view = new DataView(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength);
      for (let at = 0; at < f.bytes.length; at += size) values.push(size === 4 ? view.getFloat32(at, true) : view.getFloat64(at, true));
    } else {
      throw new FormatError(`${what}: field ${field} has wire type ${f.wire}, not a ${size === 4 ? 'float' : 'double'}'s`);
    }
  }
  return values;
}

/**
 * The single message field numbered `field`, or null. Written more than once, protobuf merges its
 * occurrences (repeated fields joined, the last of each other field), which for their encoding is
 * their bytes joined in order.
 */
function messageOf(fields: readonly Field[], field: number): Uint8Array | null {
  const found = fields.filter((f) => f.field === field && f.wire === BYTES);
  if (found.length <= 1) return found.length === 0 ? null : found[0].bytes;
  const merged = new Uint8Array(found.reduce((n, f) => n + f.bytes.length, 0));
  let at = 0;
  for (const f of found) {
    merged.set(f.bytes, at);
    at += f.bytes.length;
  }
  return merged;
}

/** The single bytes field numbered `field` (protobuf: the last one written), or null. */
function bytesOf(fields: readonly Field[], field: number): Uint8Array | null {
  return fields.filter((f) => f.field === field && f.wire === BYTES).at(-1)?.bytes ?? null;
}

/** TensorProto.DataType values a BatchNormalization's state may have (the operator's T1 and T2). */
const FLOAT = 1;
const FLOAT16 = 10;
const DOUBLE = 11;
const BFLOAT16 = 16;
const TYPE_NAMES: Record<number, string> = {
  0: 'UNDEFINED', 1: 'FLOAT', 2: 'UINT8', 3: 'INT8', 4: 'UINT16', 5: 'INT16', 6: 'INT32', 7: 'INT64', 8: 'STRING', 9: 'BOOL',
  10: 'FLOAT16', 11: 'DOUBLE', 12: 'UINT32', 13: 'UINT64', 14: 'COMPLEX64', 15: 'COMPLEX128', 16: 'BFLOAT16',
};

/** A TensorProto as found: what decodeOnnxTensor needs to read its values. */
interface OnnxTensor {
  readonly name: string;
  readonly dims: readonly number[];
  readonly dataType: number;
  readonly fields: readonly Field[];
  /** A Constant node's `value_floats`, which are the values themselves. */
  readonly floats?: readonly number[];
}

function tensorOf(bytes: Uint8Array, what: string): OnnxTensor {
  const fields = fieldsOf(bytes, what);
  const name = stringOf(fields, 8);
  const at = name === '' ? what : `${what} ${JSON.stringify(name)}`;
  const dataType = integersOf(fields, 2, at).at(-1) ?? 0;
  return { name, dims: integersOf(fields, 1, at), dataType, fields };
}

/**
 * A tensor's values as numbers, from raw_data (little-endian), the typed field of its type
 * (float_data; double_data; int32_data holding FLOAT16 and BFLOAT16 bits), or a file beside the
 * model (data_location EXTERNAL: external_data's location, offset and length).
 */
async function decodeOnnxTensor(t: OnnxTensor, modelPath: string, what: string): Promise<Float64Array> {
  if (t.floats !== undefined) return Float64Array.from(t.floats);
  const count = t.dims.reduce((a, b) => a * b, 1);
  const size = t.dataType === FLOAT ? 4 : t.dataType === DOUBLE ? 8 : t.dataType === FLOAT16 || t.dataType === BFLOAT16 ? 2 : 0;
  if (size === 0) throw new FormatError(`${what} has type ${TYPE_NAMES[t.dataType] ?? t.dataType}; a BatchNormalization's state is FLOAT, DOUBLE, FLOAT16 or BFLOAT16`);
  // TensorProto.segment: one part of a tensor split across several, which onnx's numpy_helper
  // refuses to load ("Currently not supporting loading segments") and no exporter writes.
  if (bytesOf(t.fields, 3) !== null) throw new FormatError(`${what} is a segment of a tensor (TensorProto field 3), which bnpool does not join, as onnx's numpy_helper does not`);
  const location = integersOf(t.fields, 14, what).at(-1) ?? 0;
  const raw = location === 1 ? await externalBytes(t, modelPath, count * size, what) : bytesOf(t.fields, 9);
  if (raw !== null) {
    if (raw.length !== count * size) throw new FormatError(`${what}: ${raw.length} bytes of raw data for ${count} values of ${size} bytes`);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const values = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      values[i] = size === 4 ? view.getFloat32(4 * i, true) : size === 8 ? view.getFloat64(8 * i, true)
        : t.dataType === FLOAT16 ? halfToNumber(view.getUint16(2 * i, true)) : bfloat16ToNumber(view.getUint16(2 * i, true));
    }
    return values;
  }
  // Typed fields: float_data (4), int32_data (5) for the 16-bit types, double_data (10).
  const typed = t.dataType === FLOAT ? floatsOf(t.fields, 4, 4, what)
    : t.dataType === DOUBLE ? floatsOf(t.fields, 10, 8, what)
      : integersOf(t.fields, 5, what).map((bits) => (t.dataType === FLOAT16 ? halfToNumber(bits & 0xffff) : bfloat16ToNumber(bits & 0xffff)));
  if (typed.length !== count) {
    throw new FormatError(`${what} holds ${typed.length} value${typed.length === 1 ? '' : 's'}; its dims ${JSON.stringify(t.dims)} give ${count}`);
  }
  return Float64Array.from(typed);
}

/**
 * An external tensor's bytes: `location` (a path relative to the model's folder, which it may not
 * leave, as onnx's own loader requires), from `offset` (0 where absent) for `length` bytes (the
 * values' size where absent; any other length is refused).
 */
async function externalBytes(t: OnnxTensor, modelPath: string, expected: number, what: string): Promise<Uint8Array> {
  const entries = new Map<string, string>();
  for (const f of t.fields) {
    if (f.field !== 13 || f.wire !== BYTES) continue;
    const entry = fieldsOf(f.bytes, `${what} external_data`);
    entries.set(stringOf(entry, 1), stringOf(entry, 2));
  }
  const location = entries.get('location');
  if (location === undefined || location === '') throw new FormatError(`${what} is stored outside the model but names no location`);
  // A path is text: onnx.load refuses a location that is not UTF-8.
  if (hasEscapedBytes(location)) throw new FormatError(`${what} is stored at ${JSON.stringify(location)}, which is not UTF-8`);
  const relative = normalize(location);
  if (isAbsolute(relative) || relative === '..' || relative.startsWith(`..${sep}`)) {
    throw new FormatError(`${what} is stored at ${JSON.stringify(location)}, outside the model's folder`);
  }
  const number = (key: string, fallback: number | null): number | null => {
    const text = entries.get(key);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(value)) throw new FormatError(`${what}: external_data ${key} ${JSON.stringify(text)} is not a byte count`);
    return value;
  };
  const offset = number('offset', 0)!;
  const length = number('length', null) ?? expected;
  if (length !== expected) throw new FormatError(`${what}: external_data length ${length} for ${expected} bytes of values`);
  const handle = await open(join(dirname(modelPath), relative), 'r').catch((err: NodeJS.ErrnoException) => {
    throw new FormatError(`${what} is stored in ${JSON.stringify(location)} beside the model, which cannot be opened (${err.code ?? err.message})`);
  });
  try {
    const { size } = await handle.stat();
    if (offset + length > size) throw new FormatError(`${what}: ${JSON.stringify(location)} has ${size} bytes, not the ${length} from byte ${offset} it names`);
    return await readBytes(handle, offset, length, `${what}'s values in ${JSON.stringify(location)}`);
  } finally {
    await handle.close();
  }
}

/** A BatchNormalization node of a model file, as `BatchNorm.findInOnnx` lists it. */
export interface OnnxBatchNorm {
  /** The node's name ('' where the model gives none; a byte that is not UTF-8 as U+DC80 + the byte, as Python's "surrogateescape"). */
  readonly name: string;
  /** Its output Y's name: unique in the graph, so it names the node where `name` is empty. */
  readonly output: string;
  /** The length of its scale, B, mean and variance. */
  readonly numFeatures: number;
  /** Its attributes, with the operator's defaults where absent (1e-5, 0.9, false). */
  readonly epsilon: number;
  readonly momentum: number;
  readonly trainingMode: boolean;
  /** `'float64'` where its variance is DOUBLE, else `'float32'`. */
  readonly dtype: Dtype;
}

/** A node found, with the tensors that hold its state (scale, B, mean, var). */
interface FoundNode extends OnnxBatchNorm {
  readonly state: readonly [OnnxTensor, OnnxTensor, OnnxTensor, OnnxTensor];
}

/**
 * The BatchNormalization nodes of a model's main graph whose scale, B, mean and variance are
 * constants (initializers, or Constant nodes' `value` or `value_floats`) of one length: the nodes a module's state
 * can come from. A node whose state is computed or fed at run time is not one; nor a node of
 * opset 6-8 with `spatial` 0 (state per element, not per channel).
 */
function batchNormsOf(bytes: Uint8Array): FoundNode[] {
  const model = fieldsOf(bytes, 'the model');
  const graphBytes = messageOf(model, 7);
  if (graphBytes === null) throw new FormatError('the model has no graph (ModelProto field 7)');
  const graph = fieldsOf(graphBytes, 'the graph');
  const constants = new Map<string, OnnxTensor>();
  for (const f of graph) {
    if (f.field === 5 && f.wire === BYTES) {
      const t = tensorOf(f.bytes, 'an initializer');
      constants.set(t.name, t);
    }
  }
  const nodes = graph.filter((f) => f.field === 1 && f.wire === BYTES).map((f, i) => ({ index: i, fields: fieldsOf(f.bytes, `node ${i}`) }));
  for (const { index, fields } of nodes) {
    if (stringOf(fields, 4) !== 'Constant' || !isDefaultDomain(stringOf(fields, 7))) continue;
    const attributes = attributesOf(fields, `node ${index}`);
    const value = attributes.get('value');
    const output = stringsOf(fields, 2)[0];
    const t = value === undefined ? null : messageOf(value, 5);
    if (t !== null && output !== undefined) constants.set(output, tensorOf(t, `the value of Constant node ${index}`));
    // value_floats: a 1-D FLOAT tensor given as the attribute's floats (field 7).
    const floats = attributes.get('value_floats');
    if (floats !== undefined && output !== undefined) {
      const values = floatsOf(floats, 7, 4, `the value_floats of Constant node ${index}`);
      constants.set(output, { name: output, dims: [values.length], dataType: FLOAT, fields: [], floats: values });
    }
  }
  const found: FoundNode[] = [];
  for (const { index, fields } of nodes) {
    if (stringOf(fields, 4) !== 'BatchNormalization' || !isDefaultDomain(stringOf(fields, 7))) continue;
    const what = `BatchNormalization node ${index}`;
    const inputs = stringsOf(fields, 1);
    const output = stringsOf(fields, 2)[0] ?? '';
    const state = inputs.slice(1, 5).map((name) => constants.get(name));
    if (inputs.length < 5 || state.some((t) => t === undefined)) continue;
    const attributes = attributesOf(fields, what);
    if (intAttribute(attributes, 'spatial', 1, what) === 0) continue;
    const [scale, B, mean, variance] = state as [OnnxTensor, OnnxTensor, OnnxTensor, OnnxTensor];
    const C = scale.dims.length === 1 ? scale.dims[0] : -1;
    if (C <= 0 || [B, mean, variance].some((t) => t.dims.length !== 1 || t.dims[0] !== C)) continue;
    found.push({
      name: stringOf(fields, 3), output, numFeatures: C,
      epsilon: floatAttribute(attributes, 'epsilon', 1e-5, what), momentum: floatAttribute(attributes, 'momentum', 0.9, what),
      trainingMode: intAttribute(attributes, 'training_mode', 0, what) !== 0,
      dtype: variance.dataType === DOUBLE ? 'float64' : 'float32', state: [scale, B, mean, variance],
    });
  }
  return found;
}

const isDefaultDomain = (domain: string): boolean => domain === '' || domain === 'ai.onnx';

/** A node's attributes by name, each its AttributeProto's fields. */
function attributesOf(node: readonly Field[], what: string): Map<string, Field[]> {
  const attributes = new Map<string, Field[]>();
  for (const f of node) {
    if (f.field !== 5 || f.wire !== BYTES) continue;
    const fields = fieldsOf(f.bytes, `${what}'s attribute`);
    attributes.set(stringOf(fields, 1), fields);
  }
  return attributes;
}

function floatAttribute(attributes: Map<string, Field[]>, name: string, fallback: number, what: string): number {
  const fields = attributes.get(name);
  if (fields === undefined) return Math.fround(fallback);
  const value = fields.filter((f) => f.field === 2 && f.wire === FIXED32).at(-1);
  if (value === undefined) throw new FormatError(`${what}: attribute ${name} holds no float`);
  return value.value;
}

function intAttribute(attributes: Map<string, Field[]>, name: string, fallback: number, what: string): number {
  const fields = attributes.get(name);
  if (fields === undefined) return fallback;
  const value = fields.filter((f) => f.field === 3 && f.wire === VARINT).at(-1);
  if (value === undefined) throw new FormatError(`${what}: attribute ${name} holds no int`);
  return value.value;
}

/** Options of `BatchNorm.fromOnnx`: the node, and the module's options (BatchNormOptions). */
export interface FromOnnxOptions extends BatchNormOptions {
  /**
   * Which BatchNormalization node: its name, or its output's name (`findInOnnx` lists both).
   * Needed only where the model has more than one node whose state is constant.
   */
  node?: string;
}

/**
 * `BatchNorm.fromOnnx`'s options, split: the node, and the module's options, which must leave it
 * affine and tracking running statistics (an ONNX BatchNormalization has scale, B and both).
 */
export function splitFromOnnxOptions(options: unknown): { node: string | undefined; moduleOptions: BatchNormOptions } {
  const { node, ...moduleOptions } = checkObject(options, 'options') as FromOnnxOptions;
  if (node !== undefined && typeof node !== 'string') throw new ArgumentError(`options.node must be a string; got ${describe(node)}`);
  for (const key of ['affine', 'trackRunningStats'] as const) {
    if (moduleOptions[key] === false) throw new ArgumentError(`options.${key} must stay true: an ONNX BatchNormalization has scale, B and running statistics; got false`);
  }
  return { node, moduleOptions };
}

/** A model file's bytes, as a plain Uint8Array (not a Buffer, whose `slice` shares memory). */
async function readModel(file: string): Promise<Uint8Array> {
  const bytes = await readFile(file);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** `BatchNorm.findInOnnx(path)`: the model's BatchNormalization nodes whose state is constant, in graph order. */
export async function findBatchNormsInOnnxFile(path: unknown): Promise<OnnxBatchNorm[]> {
  const file = checkPath(path);
  return batchNormsOf(await readModel(file)).map(({ state: _, ...node }) => node);
}

/** The state of one node (by `node`: its name or its output's name; none where the model has one such node). */
export async function readOnnxBatchNorm(path: unknown, node: string | undefined): Promise<{ node: OnnxBatchNorm; values: Float64Array[] }> {
  const file = checkPath(path);
  const found = batchNormsOf(await readModel(file));
  const listed = found.map((n) => JSON.stringify(n.name || n.output)).join(', ');
  const chosen = node === undefined ? found : found.filter((n) => (n.name !== '' && n.name === node) || n.output === node);
  if (found.length === 0) throw new ArgumentError(`${file} holds no BatchNormalization node whose state is constant`);
  if (node === undefined && chosen.length > 1) {
    throw new ArgumentError(`${file} holds ${found.length} BatchNormalization nodes whose state is constant; options.node picks one of ${listed}`);
  }
  if (chosen.length !== 1) {
    const why = chosen.length === 0 ? 'names none' : 'names more than one';
    throw new ArgumentError(`options.node ${JSON.stringify(node)} ${why} of the BatchNormalization nodes of ${file} whose state is constant (by name or output): ${listed}`);
  }
  const { state, ...info } = chosen[0];
  const which = `node ${JSON.stringify(info.name || info.output)} of ${file}`;
  if (!(info.epsilon > 0 && Number.isFinite(info.epsilon))) throw new FormatError(`${which} has epsilon ${info.epsilon}; a module's eps is a finite number > 0`);
  if (!(info.momentum >= 0 && info.momentum <= 1)) throw new FormatError(`${which} has momentum ${info.momentum}; a module's is in [0, 1]`);
  const names = ['scale', 'B', 'input_mean', 'input_var'];
  const values = await Promise.all(state.map((t, i) => decodeOnnxTensor(t, file, `${names[i]} (${JSON.stringify(t.name)}) of node ${JSON.stringify(info.name || info.output)}`)));
  return { node: info, values };
}
