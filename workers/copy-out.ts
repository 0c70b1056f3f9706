import type { MemoryViews } from './execute.js';
import type { BytesTask, Task } from './protocol.js';

/** Copies normalized runs from the pool's memory to a destination on another shared buffer. */
export class CopyOutWriter {
  readonly #dest: Float32Array | Float64Array;
  readonly #destRowStride: number;
  readonly #yRowStrideBytes: number;
  readonly #views: MemoryViews;
  readonly #f64: boolean;

  constructor(task: Task, bpe: number, views: MemoryViews) {
    const out = task.copyOut!;
    this.#f64 = task.dtype === 'float64';
    // To the buffer's end, with a length: without one the view must end on an element, and a
    // caller's `out` may lie in a buffer whose length is no multiple of the element size.
    const length = Math.floor((out.buffer.byteLength - out.byteOffset) / bpe);
    this.#dest = this.#view(out.buffer, out.byteOffset, length);
    this.#destRowStride = out.rowStride;
    this.#yRowStrideBytes = task.region.yRowStride * bpe;
    this.#views = views;
  }

  /** A view of the task's dtype: `length` elements at `byte` of `buffer`. */
  #view(buffer: ArrayBufferLike, byte: number, length: number): Float32Array | Float64Array {
    return this.#f64 ? new Float64Array(buffer, byte, length) : new Float32Array(buffer, byte, length);
  }

  #source(yByte: number, length: number): Float32Array | Float64Array {
    return this.#view(this.#views.f64.buffer, yByte, length);
  }

  /** `rows` runs of `len` elements starting at `yByte` on the pool, `off` into each destination row. */
  planes(rowOff: number, rows: number, off: number, len: number, yByte: number): void {
    for (let r = 0; r < rows; r++) {
      this.#dest.set(this.#source(yByte + r * this.#yRowStrideBytes, len), (rowOff + r) * this.#destRowStride + off);
    }
  }
}

/**
 * Copies what a BytesTask wrote on the pool's memory (`buffer`) to its `copyTo`: the task's n
 * elements from yByte ('planes', 'pattern'), or ('to-planes') the runs of its pixels in each
 * channel's plane of each image, yByte being the output's element 0.
 */
export function copyBytesTaskOut(t: BytesTask, buffer: ArrayBufferLike): void {
  const to = t.copyTo!;
  const copy = (at: number, length: number): void => {
    new Float32Array(to.buffer, to.byteOffset + 4 * at, length).set(new Float32Array(buffer, t.yByte + 4 * at, length));
  };
  if (t.form !== 'to-planes') {
    copy(0, t.n);
    return;
  }
  const end = t.first + t.n;
  for (let q = t.first; q < end;) {
    const image = Math.floor(q / t.S);
    const s = q - image * t.S;
    const len = Math.min(end, (image + 1) * t.S) - q;
    for (let c = 0; c < t.C; c++) copy((image * t.C + c) * t.S + s, len);
    q += len;
  }
}
