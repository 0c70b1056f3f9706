/** Seeded random test data: never all zeros or ones. */
export type FloatArray = Float32Array | Float64Array;

/** mulberry32: a small, fast, seedable PRNG; good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function normal(rand: () => number): number {
  const u = 1 - rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

export function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** An array of `length` zeros of `dtype` on a SharedArrayBuffer of its own (not the pool's memory). */
export function sharedArray(dtype: 'float32' | 'float64', length: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(new SharedArrayBuffer(8 * length)) : new Float32Array(new SharedArrayBuffer(4 * length));
}

/**
 * Per-channel random data: channel c has its own offset and spread, so channels differ and a
 * mixed-up channel shows.
 */
export function randomTensor(
  shape: readonly number[], dtype: 'float32' | 'float64', seed: number,
  channel?: (c: number) => { offset: number; spread: number },
): FloatArray {
  const rand = rng(seed);
  const [N, C] = shape;
  const S = elements(shape.slice(2));
  const x = dtype === 'float64' ? new Float64Array(N * C * S) : new Float32Array(N * C * S);
  const params = Array.from({ length: C }, (_, c) => channel?.(c) ?? { offset: 4 * rand() - 2, spread: 0.5 + 2 * rand() });
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const { offset, spread } = params[c];
      for (let s = 0; s < S; s++) x[(n * C + c) * S + s] = offset + spread * normal(rand);
    }
  }
  return x;
}

export function randomVector(length: number, dtype: 'float32' | 'float64', seed: number, lo: number, hi: number): FloatArray {
  const rand = rng(seed);
  const v = dtype === 'float64' ? new Float64Array(length) : new Float32Array(length);
  for (let i = 0; i < length; i++) v[i] = lo + (hi - lo) * rand();
  return v;
}

/** Sets element (n, c, s) for every n and s of channel c. */
export function fillChannel(x: FloatArray, shape: readonly number[], c: number, value: (i: number) => number): void {
  const [N, C] = shape;
  const S = elements(shape.slice(2));
  let k = 0;
  for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) x[(n * C + c) * S + s] = value(k++);
}

export function sameBits(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** The first `rows` rows (along N) of a channels-first tensor, and the rest. */
export function splitRows(x: Float64Array, shape: number[], rows: number): [Float64Array, Float64Array] {
  const per = x.length / shape[0];
  return [x.slice(0, rows * per), x.slice(rows * per)];
}

/**
 * Moves the channel axis of (N, C, *spatial) data [shape] to the end, or (`back`) of
 * (N, *spatial, C) data back to axis 1.
 */
export function permute(x: Float32Array | Float64Array, shape: number[], back = false): Float32Array | Float64Array {
  const [N, C] = shape;
  const S = x.length / (N * C);
  const y = new (x.constructor as Float32ArrayConstructor)(x.length);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let s = 0; s < S; s++) {
        const first = (n * C + c) * S + s;
        const last = (n * S + s) * C + c;
        if (back) y[first] = x[last];
        else y[last] = x[first];
      }
    }
  }
  return y;
}

/** `array`, its buffer transferred away (empty, as its owner would leave it after a postMessage). */
export function detached<T extends ArrayBufferView>(array: T): T {
  structuredClone(array.buffer, { transfer: [array.buffer as ArrayBuffer] });
  return array;
}
