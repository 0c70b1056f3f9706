import '../../src/wasm-types.js';
import { wholeView } from '../../src/wasm-types.js';
import { mergeBackwardChannel, mergeChannel, prepareBackwardChannels, prepareEvalChannels } from '../../src/merge.js';
import { byteSums, bytesNormalized, bytesToPlanes } from './js-bytes.js';
import { writeChecked } from './js-partials.js';
import { bwdStatsThenApplyPlanes, bwdStatsThenApplyRows, type Kernel, statsThenNormalizePlanes, statsThenNormalizeRows } from './kernel.js';

/**
 * The TypeScript kernels: scalar loops over typed-array views of the shared memory. They are the
 * reference the WebAssembly kernels are checked against and the fallback where WebAssembly SIMD
 * does not validate. About 3 GB/s on this project's machine (design notes).
 */
export class JsKernel implements Kernel {
  readonly name = 'js' as const;
  readonly #memory: WebAssembly.Memory;
  #f32: Float32Array;
  #f64: Float64Array;

  constructor(memory: WebAssembly.Memory) {
    this.#memory = memory;
    this.#f32 = wholeView(Float32Array, memory.buffer);
    this.#f64 = wholeView(Float64Array, memory.buffer);
  }

  /**
   * Re-creates the views after the memory grew. A shared memory never detaches old views; they
   * only keep their old length, so a view is stale exactly when the buffer got longer. A private
   * (non-shared) memory detaches them: their length is then 0, stale too. Their length is fixed
   * (`wholeView` says why).
   */
  #views(): void {
    const buffer = this.#memory.buffer;
    if (buffer.byteLength !== this.#f64.byteLength) {
      this.#f32 = wholeView(Float32Array, buffer);
      this.#f64 = wholeView(Float64Array, buffer);
    }
  }

  statsPlanes(
    f64: boolean, xByte: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number,
  ): void {
    // Accumulates in locals: needs no scratch. One block after another: scalar loops gain
    // nothing from reading several streams at once.
    this.#views();
    const x = f64 ? this.#f64 : this.#f32;
    for (let b = 0; b < blocks; b++) {
      const base = (f64 ? xByte / 8 : xByte / 4) + b * blockStride;
      const shift = x[base];
      let s1 = 0;
      let s2 = 0;
      for (let r = 0; r < rows; r++) {
        const start = base + r * rowStride;
        const stop = start + len;
        for (let i = start; i < stop; i++) {
          const d = x[i] - shift;
          s1 += d;
          s2 += d * d;
        }
      }
      writeChecked(this.#f64, (outByte + b * outStrideBytes) / 8, rows * len, shift, s1, s2, x, base, rows, rowStride, len);
    }
  }

  statsPlaneGroups(
    f64: boolean, xByte: number, groups: number, groupStride: number, groupOutStrideBytes: number,
    blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number,
  ): void {
    const bpe = f64 ? 8 : 4;
    for (let q = 0; q < groups; q++) {
      this.statsPlanes(f64, xByte + q * groupStride * bpe, blocks, blockStride, rows, rowStride, len, outByte + q * groupOutStrideBytes, outStrideBytes);
    }
  }

  statsNormPlanes(
    f64: boolean, xByte: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number, accByte: number,
    nxByte: number, nxBlockStride: number, nxRowStride: number, nyByte: number, nyBlockStride: number, nyRowStride: number,
    mean: number, scale: number, bias: number, relu: boolean,
  ): void {
    statsThenNormalizePlanes(
      this, f64, xByte, blocks, blockStride, rows, rowStride, len, outByte, outStrideBytes, accByte,
      nxByte, nxBlockStride, nxRowStride, nyByte, nyBlockStride, nyRowStride, mean, scale, bias, relu,
    );
  }

  statsRows(
    f64: boolean, xByte: number, rows: number, C: number, S: number, rowStride: number,
    accByte: number, outByte: number, outStrideBytes: number,
  ): void {
    this.#views();
    const x = f64 ? this.#f64 : this.#f32;
    const acc = this.#f64;
    const base = f64 ? xByte / 8 : xByte / 4;
    const a = accByte / 8;
    for (let c = 0; c < C; c++) {
      acc[a + 3 * c] = x[base + c * S];
      acc[a + 3 * c + 1] = 0;
      acc[a + 3 * c + 2] = 0;
    }
    for (let r = 0; r < rows; r++) {
      const row = base + r * rowStride;
      for (let c = 0; c < C; c++) {
        const shift = acc[a + 3 * c];
        let s1 = acc[a + 3 * c + 1];
        let s2 = acc[a + 3 * c + 2];
        const start = row + c * S;
        for (let i = start; i < start + S; i++) {
          const d = x[i] - shift;
          s1 += d;
          s2 += d * d;
        }
        acc[a + 3 * c + 1] = s1;
        acc[a + 3 * c + 2] = s2;
      }
    }
    const count = rows * S;
    for (let c = 0; c < C; c++) {
      writeChecked(
        acc, (outByte + c * outStrideBytes) / 8, count, acc[a + 3 * c], acc[a + 3 * c + 1], acc[a + 3 * c + 2],
        x, base + c * S, rows, rowStride, S,
      );
    }
  }

  statsNormRows(
    f64: boolean, xByte: number, rows: number, C: number, S: number, rowStride: number, accByte: number, outByte: number,
    outStrideBytes: number, nxByte: number, nyByte: number, nRows: number, nC: number, paramsByte: number, relu: boolean,
    rowParamsByte: number, rowParamStride: number,
  ): void {
    statsThenNormalizeRows(
      this, f64, xByte, rows, C, S, rowStride, accByte, outByte, outStrideBytes, nxByte, nyByte, nRows, nC, paramsByte, relu,
      rowParamsByte, rowParamStride,
    );
  }

  normalizePlanes(
    f64: boolean, xByte: number, xRowStride: number, yByte: number, yRowStride: number,
    rows: number, len: number, mean: number, scale: number, bias: number, relu: boolean,
  ): void {
    // Math.max keeps NaN, as WebAssembly's max does.
    const floor = relu ? 0 : -Infinity;
    this.#views();
    const v = f64 ? this.#f64 : this.#f32;
    const bpe = f64 ? 8 : 4;
    const xBase = xByte / bpe;
    const yBase = yByte / bpe;
    for (let r = 0; r < rows; r++) {
      const xs = xBase + r * xRowStride;
      const ys = yBase + r * yRowStride;
      for (let i = 0; i < len; i++) v[ys + i] = Math.max((v[xs + i] - mean) * scale + bias, floor);
    }
  }

  normalizeRows(
    f64: boolean, xByte: number, yByte: number, rows: number, C: number, S: number, rowStride: number, paramsByte: number,
    _scratchByte: number, relu: boolean,
  ): void {
    // Needs no scratch: the parameters are read in place.
    const floor = relu ? 0 : -Infinity;
    this.#views();
    const v = f64 ? this.#f64 : this.#f32;
    const p = this.#f64;
    const bpe = f64 ? 8 : 4;
    const xBase = xByte / bpe;
    const yBase = yByte / bpe;
    const pBase = paramsByte / 8;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < C; c++) {
        const mean = p[pBase + 4 * c];
        const scale = p[pBase + 4 * c + 1];
        const bias = p[pBase + 4 * c + 2];
        const off = r * rowStride + c * S;
        for (let i = off; i < off + S; i++) v[yBase + i] = Math.max((v[xBase + i] - mean) * scale + bias, floor);
      }
    }
  }

  mergeChannels(
    partialsByte: number, blocks: number, c0: number, c1: number, channelsByte: number, C: number, paramsByte: number, eps: number,
  ): void {
    this.#views();
    for (let c = c0; c < c1; c++) mergeChannel(this.#f64, partialsByte, blocks, c, channelsByte, C, paramsByte, eps);
  }

  bwdStatsPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, rows: number, len: number, mean: number, outByte: number,
  ): void {
    this.#views();
    const v = f64 ? this.#f64 : this.#f32;
    const bpe = f64 ? 8 : 4;
    let sdy = 0;
    let sdx = 0;
    for (let r = 0; r < rows; r++) {
      const xs = xByte / bpe + r * xRowStride;
      const gs = dyByte / bpe + r * dyRowStride;
      const ms = maskByte / bpe + r * maskRowStride;
      for (let i = 0; i < len; i++) {
        // A fused ReLU zeroes the gradient where its output is <= 0 (a NaN output passes it).
        const g = maskByte !== 0 && v[ms + i] <= 0 ? 0 : v[gs + i];
        sdy += g;
        sdx += g * (v[xs + i] - mean);
      }
    }
    const o = outByte / 8;
    this.#f64[o] = rows * len;
    this.#f64[o + 1] = sdy;
    this.#f64[o + 2] = sdx;
  }

  bwdStatsApplyPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, rows: number, len: number, mean: number, outByte: number,
    qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, dxRowStride: number, a: number, k: number, qMean: number, e: number,
  ): void {
    bwdStatsThenApplyPlanes(
      this, f64, xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride, rows, len, mean, outByte,
      qxByte, qdyByte, qmByte, qdxByte, dxRowStride, a, k, qMean, e,
    );
  }

  bwdApplyPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, dxByte: number, dxRowStride: number,
    rows: number, len: number, a: number, k: number, mean: number, e: number,
  ): void {
    this.#views();
    const v = f64 ? this.#f64 : this.#f32;
    const bpe = f64 ? 8 : 4;
    for (let r = 0; r < rows; r++) {
      const xs = xByte / bpe + r * xRowStride;
      const gs = dyByte / bpe + r * dyRowStride;
      const os = dxByte / bpe + r * dxRowStride;
      const ms = maskByte / bpe + r * maskRowStride;
      for (let i = 0; i < len; i++) {
        const g = maskByte !== 0 && v[ms + i] <= 0 ? 0 : v[gs + i];
        // k = 0 (eval mode): dx = a·(dy + e), x unread, as in the WebAssembly kernel.
        v[os + i] = k === 0 ? a * (g + e) : a * ((g + e) + k * (v[xs + i] - mean));
      }
    }
  }

  bwdStatsRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, rows: number, C: number, S: number, rowStride: number,
    paramsByte: number, _accByte: number, outByte: number, outStrideBytes: number,
  ): void {
    this.#views();
    const bpe = f64 ? 8 : 4;
    for (let c = 0; c < C; c++) {
      const mean = this.#f64[(paramsByte + 32 * c) / 8];
      const off = c * S * bpe;
      this.bwdStatsPlanes(f64, xByte + off, rowStride, dyByte + off, rowStride, maskByte === 0 ? 0 : maskByte + off, rowStride, rows, S, mean, outByte + c * outStrideBytes);
    }
  }

  bwdStatsApplyRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, rows: number, C: number, S: number, rowStride: number,
    paramsByte: number, accByte: number, outByte: number, outStrideBytes: number,
    qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, nRows: number, nC: number, qParamsByte: number,
  ): void {
    bwdStatsThenApplyRows(
      this, f64, xByte, dyByte, maskByte, rows, C, S, rowStride, paramsByte, accByte, outByte, outStrideBytes,
      qxByte, qdyByte, qmByte, qdxByte, nRows, nC, qParamsByte,
    );
  }

  bwdApplyRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, dxByte: number, rows: number, C: number, S: number,
    rowStride: number, paramsByte: number,
  ): void {
    this.#views();
    const bpe = f64 ? 8 : 4;
    for (let c = 0; c < C; c++) {
      const q = (paramsByte + 32 * c) / 8;
      const p = this.#f64;
      const off = c * S * bpe;
      this.bwdApplyPlanes(
        f64, xByte + off, rowStride, dyByte + off, rowStride, maskByte === 0 ? 0 : maskByte + off, rowStride,
        dxByte + off, rowStride, rows, S, p[q], p[q + 1], p[q + 2], p[q + 3],
      );
    }
  }

  mergeBackward(
    partialsByte: number, blocks: number, c0: number, c1: number, channelsByte: number, C: number, paramsByte: number,
    count: number, applied = false,
  ): void {
    this.#views();
    for (let c = c0; c < c1; c++) mergeBackwardChannel(this.#f64, partialsByte, blocks, c, channelsByte, C, paramsByte, count, applied);
  }

  prepareEval(channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number): void {
    this.#views();
    prepareEvalChannels(this.#f64, channelsByte, C, c0, c1, paramsByte, eps);
  }

  prepareBackward(
    channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number, fromVar: boolean, apply: boolean,
  ): void {
    this.#views();
    prepareBackwardChannels(this.#f64, channelsByte, C, c0, c1, paramsByte, eps, fromVar, apply);
  }

  stream(xByte: number, yByte: number, n: number, a: number, b: number): void {
    this.#views();
    const v = this.#f32;
    const x = xByte / 4;
    const y = yByte / 4;
    for (let i = 0; i < n; i++) v[y + i] = v[x + i] * a + b;
  }

  bytesPlanes(xByte: number, yByte: number, n: number, first: number, C: number, S: number, paramsByte: number, relu: boolean): void {
    this.#views();
    const params = paramsByte / 4;
    this.#bytes(xByte, yByte, n, relu, (i) => {
      const c = Math.floor((first + i) / S) % C;
      return params + c;
    }, C);
  }

  bytesPattern(xByte: number, yByte: number, n: number, first: number, P: number, paramsByte: number, relu: boolean): void {
    this.#views();
    const params = paramsByte / 4;
    this.#bytes(xByte, yByte, n, relu, (i) => params + ((first + i) % P), P);
  }

  bytesToPlanes(xByte: number, yByte: number, n: number, first: number, C: number, S: number, paramsByte: number, relu: boolean): void {
    this.#views();
    bytesToPlanes(new Uint8Array(this.#memory.buffer, xByte, n * C), this.#f32, yByte / 4, n, first, C, S, paramsByte / 4, relu);
  }

  bytesSumsPlanes(xByte: number, n: number, first: number, C: number, S: number, outByte: number): void {
    this.#views();
    this.#byteSums(xByte, n, outByte, (i) => Math.floor((first + i) / S) % C);
  }

  bytesSumsPattern(xByte: number, n: number, first: number, P: number, outByte: number): void {
    this.#views();
    this.#byteSums(xByte, n, outByte, (i) => (first + i) % P);
  }

  /** Adds x and x² of n bytes at xByte to the float64 pair of `at(i)` at outByte (exact: integers). */
  #byteSums(xByte: number, n: number, outByte: number, at: (i: number) => number): void {
    byteSums(new Uint8Array(this.#memory.buffer, xByte, n), this.#f64, outByte / 8, at);
  }

  /** bytesNormalized over n bytes at xByte into float32 at yByte (`at` and `count` as there). */
  #bytes(xByte: number, yByte: number, n: number, relu: boolean, at: (i: number) => number, count: number): void {
    bytesNormalized(new Uint8Array(this.#memory.buffer, xByte, n), this.#f32, yByte / 4, relu, at, count);
  }

  read(xByte: number, n: number): number {
    this.#views();
    const v = this.#f32;
    const x = xByte / 4;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += v[x + i];
    return sum;
  }

  fill(yByte: number, n: number, v: number): void {
    this.#views();
    this.#f32.fill(v, yByte / 4, yByte / 4 + n);
  }
}
