/**
 * A one-node ONNX model, `BatchNormalization` (opset 15), encoded by hand: ONNX files are protocol
 * buffers, and this needs only a handful of fields (onnx/onnx.proto3), so no protobuf library.
 * The encoders are exported for test/onnx-file.test.ts's hand-made malformed models.
 */

type Field = Uint8Array;

/** A protobuf varint; a negative value as int64 fields hold one, its 64-bit two's complement (ten bytes). */
export function varint(value: number): number[] {
  const bytes: number[] = [];
  let v = BigInt.asUintN(64, BigInt(value));
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    bytes.push(byte);
  } while (v !== 0n);
  return bytes;
}

export function key(field: number, wireType: number): number[] {
  // Multiplied, not shifted: a shift wraps at 32 bits, and field numbers reach 2^29 - 1 (tests write 2^29).
  return varint(field * 8 + wireType);
}

export function concat(parts: (Field | number[])[]): Field {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const int = (field: number, value: number): Field => concat([key(field, 0), varint(value)]);
export const bytes = (field: number, value: Field): Field => concat([key(field, 2), varint(value.length), value]);
export const str = (field: number, value: string): Field => bytes(field, new TextEncoder().encode(value));
export const float32 = (field: number, value: number): Field => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, value, true);
  return concat([key(field, 5), b]);
};

const FLOAT = 1;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;

function valueInfo(name: string, shape: readonly number[]): Field {
  const dims = shape.map((d) => bytes(1, int(1, d)));
  const tensorType = concat([int(1, FLOAT), bytes(2, concat(dims))]);
  return concat([str(1, name), bytes(2, bytes(1, tensorType))]);
}

/**
 * The model: inputs X (shape), scale, B, input_mean, input_var (C); output Y, and with
 * training_mode 1 also running_mean and running_var.
 */
export function batchNormModel(shape: readonly number[], opts: { training: boolean; epsilon: number; momentum: number }): Uint8Array {
  const C = shape[1];
  const inputs = ['X', 'scale', 'B', 'input_mean', 'input_var'];
  const outputs = opts.training ? ['Y', 'running_mean', 'running_var'] : ['Y'];
  const node = concat([
    ...inputs.map((n) => str(1, n)),
    ...outputs.map((n) => str(2, n)),
    str(3, 'bn'),
    str(4, 'BatchNormalization'),
    bytes(5, concat([str(1, 'epsilon'), float32(2, opts.epsilon), int(20, ATTR_FLOAT)])),
    bytes(5, concat([str(1, 'momentum'), float32(2, opts.momentum), int(20, ATTR_FLOAT)])),
    bytes(5, concat([str(1, 'training_mode'), int(3, opts.training ? 1 : 0), int(20, ATTR_INT)])),
  ]);
  const graph = concat([
    bytes(1, node),
    str(2, 'batchnorm'),
    bytes(11, valueInfo('X', shape)),
    ...['scale', 'B', 'input_mean', 'input_var'].map((n) => bytes(11, valueInfo(n, [C]))),
    bytes(12, valueInfo('Y', shape)),
    ...(opts.training ? ['running_mean', 'running_var'].map((n) => bytes(12, valueInfo(n, [C]))) : []),
  ]);
  const opset = concat([str(1, ''), int(2, 15)]);
  return concat([int(1, 8), str(2, 'bnpool-bench'), bytes(7, graph), bytes(8, opset)]);
}
