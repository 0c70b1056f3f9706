import '../src/wasm-types.js';
import { mergeChannelStats, writeChannelParams } from '../src/merge.js';
import type { Kernel } from './kernels/kernel.js';
import {
  bytesPerElement, CHANNEL_STAT_BYTES, PARAM_BYTES, PARTIAL_BYTES, partialByte, scratchLayout,
  type Task,
} from './protocol.js';

/** Typed views of the shared memory that the executor itself reads (cancel flag, parameters). */
export class MemoryViews {
  readonly #memory: WebAssembly.Memory;
  #f64: Float64Array;
  #i32: Int32Array;

  constructor(memory: WebAssembly.Memory) {
    this.#memory = memory;
    this.#f64 = new Float64Array(memory.buffer);
    this.#i32 = new Int32Array(memory.buffer);
  }

  refresh(): void {
    const buffer = this.#memory.buffer;
    if (buffer.byteLength !== this.#f64.buffer.byteLength) {
      this.#f64 = new Float64Array(buffer);
      this.#i32 = new Int32Array(buffer);
    }
  }

  get f64(): Float64Array { return this.#f64; }
  get i32(): Int32Array { return this.#i32; }
}

/**
 * Runs one task: the same code in a worker and, for small inputs, inline on the calling thread.
 * Returns false when the call's cancel flag was found set (the task stopped between blocks).
 */
export function executeTask(task: Task, kernel: Kernel, views: MemoryViews): boolean {
  views.refresh();
  const { grid, region, dtype } = task;
  const layout = scratchLayout(grid, task.scratchByte);
  const cancelIndex = layout.cancelByte / 4;
  const i32 = views.i32;
  const f64 = views.f64;
  const f64Data = dtype === 'float64';
  const bpe = bytesPerElement(dtype);
  const { S } = grid;
  const g0 = region.n0 / grid.groupRows;
  const regionGroups = Math.ceil((region.n1 - region.n0) / grid.groupRows);
  const cancelled = (): boolean => Atomics.load(i32, cancelIndex) !== 0;
  const copy = task.copyOut === null ? null : new CopyOutWriter(task, bpe, views);

  if (grid.mode === 'row') {
    const rowLen = grid.C * S;
    const rowsOf = (g: number): [number, number] => {
      const first = (g0 + g) * grid.groupRows;
      return [first, Math.min(first + grid.groupRows, region.n1) - first];
    };
    if (task.op === 'stats') {
      for (let g = task.begin; g < task.end; g++) {
        if (cancelled()) return false;
        const [first, rows] = rowsOf(g);
        kernel.statsRows(
          f64Data, region.xByte + (first - region.n0) * rowLen * bpe, rows, grid.C, S,
          task.accByte, partialByte(grid, layout.partialsByte, 0, g0 + g, 0),
          grid.blocksPerChannel * PARTIAL_BYTES,
        );
      }
    } else {
      // Normalize in the reverse order of the reduction, so the rows a worker reduced last,
      // still in cache, are the first it normalizes.
      for (let g = task.end - 1; g >= task.begin; g--) {
        if (cancelled()) return false;
        const [first, rows] = rowsOf(g);
        const yByte = region.yByte + (first - region.n0) * rowLen * bpe;
        kernel.normalizeRows(
          f64Data, region.xByte + (first - region.n0) * rowLen * bpe, yByte, rows, grid.C, S, layout.paramsByte,
          task.accByte,
        );
        copy?.rows(first - region.n0, rows, yByte);
      }
    }
    return true;
  }

  // Plane mode. Block `local` of a region channel is row group g0 + floor(local / sChunks),
  // stretch local % sChunks.
  const regionBlocks = regionGroups * grid.sChunks;
  const visit = (cl: number, local: number, fn: (rowOff: number, rows: number, sOff: number, len: number, g: number, k: number) => void): void => {
    const g = g0 + Math.floor(local / grid.sChunks);
    const k = local % grid.sChunks;
    const first = g * grid.groupRows;
    const rows = Math.min(first + grid.groupRows, region.n1) - first;
    const sOff = k * grid.sChunkLen;
    const len = Math.min(sOff + grid.sChunkLen, S) - sOff;
    fn(first - region.n0, rows, cl * S + sOff, len, g, k);
  };
  const stats = (cl: number, local: number): void => visit(cl, local, (rowOff, rows, off, len, g, k) => {
    kernel.statsPlanes(
      f64Data, region.xByte + (rowOff * region.xRowStride + off) * bpe, rows, region.xRowStride, len,
      partialByte(grid, layout.partialsByte, region.c0 + cl, g, k),
    );
  });
  const normalize = (cl: number, local: number): void => visit(cl, local, (rowOff, rows, off, len) => {
    const p = (layout.paramsByte + (region.c0 + cl) * PARAM_BYTES) / 8;
    const yByte = region.yByte + (rowOff * region.yRowStride + off) * bpe;
    kernel.normalizePlanes(
      f64Data, region.xByte + (rowOff * region.xRowStride + off) * bpe, region.xRowStride,
      yByte, region.yRowStride, rows, len, f64[p], f64[p + 1], f64[p + 2],
    );
    copy?.planes(rowOff, rows, off, len, yByte);
  });

  if (task.op === 'stats') {
    for (let b = task.begin; b < task.end; b++) {
      if (cancelled()) return false;
      stats(Math.floor(b / regionBlocks), b % regionBlocks);
    }
  } else if (task.op === 'normalize') {
    for (let b = task.end - 1; b >= task.begin; b--) {
      if (cancelled()) return false;
      normalize(Math.floor(b / regionBlocks), b % regionBlocks);
    }
  } else {
    // Fused: the region holds every row, so a channel's partials are all here. The parameters
    // area holds (unused, weight, bias) on entry; it is overwritten with (mean, scale, bias).
    for (let cl = task.begin; cl < task.end; cl++) {
      for (let local = 0; local < regionBlocks; local++) {
        if (cancelled()) return false;
        stats(cl, local);
      }
      const c = region.c0 + cl;
      mergeChannelStats(f64, grid, layout.partialsByte, c, layout.channelStatsByte);
      const st = (layout.channelStatsByte + c * CHANNEL_STAT_BYTES) / 8;
      const p = (layout.paramsByte + c * PARAM_BYTES) / 8;
      writeChannelParams(f64, layout.paramsByte, c, f64[st], f64[st + 1], task.eps, f64[p + 1], f64[p + 2]);
      for (let local = regionBlocks - 1; local >= 0; local--) {
        if (cancelled()) return false;
        normalize(cl, local);
      }
    }
  }
  return true;
}

/** Copies normalized runs from the pool's memory to a destination on another shared buffer. */
class CopyOutWriter {
  readonly #dest: Float32Array | Float64Array;
  readonly #destRowStride: number;
  readonly #yRowStrideBytes: number;
  readonly #views: MemoryViews;
  readonly #f64: boolean;

  constructor(task: Task, bpe: number, views: MemoryViews) {
    const out = task.copyOut!;
    this.#f64 = task.dtype === 'float64';
    this.#dest = this.#f64
      ? new Float64Array(out.buffer, out.byteOffset)
      : new Float32Array(out.buffer, out.byteOffset);
    this.#destRowStride = out.rowStride;
    this.#yRowStrideBytes = task.region.yRowStride * bpe;
    this.#views = views;
  }

  #source(yByte: number, length: number): Float32Array | Float64Array {
    const buffer = this.#views.f64.buffer;
    return this.#f64 ? new Float64Array(buffer, yByte, length) : new Float32Array(buffer, yByte, length);
  }

  /** `rows` runs of `len` elements starting at `yByte` on the pool, `off` into each destination row. */
  planes(rowOff: number, rows: number, off: number, len: number, yByte: number): void {
    for (let r = 0; r < rows; r++) {
      this.#dest.set(this.#source(yByte + r * this.#yRowStrideBytes, len), (rowOff + r) * this.#destRowStride + off);
    }
  }

  /** Whole rows, contiguous on both sides. */
  rows(rowOff: number, rows: number, yByte: number): void {
    this.#dest.set(this.#source(yByte, rows * this.#destRowStride), rowOff * this.#destRowStride);
  }
}
