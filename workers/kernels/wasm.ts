import '../../src/wasm-types.js';
import { wasmApi } from '../../src/wasm-types.js';
import { bwdStatsThenApplyPlanes, bwdStatsThenApplyRows, type Kernel, statsThenNormalizePlanes, statsThenNormalizeRows } from './kernel.js';

/** The exports of workers/wasm/assembly/index.ts. Pointers are byte offsets. */
interface WasmExports {
  statsPlanes32(x: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number, out: number, outStride: number, acc: number): void;
  statsPlanes64(x: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number, out: number, outStride: number, acc: number): void;
  statsPlaneGroups(wide: number, x: number, groups: number, groupStride: number, groupOutStride: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number, out: number, outStride: number, acc: number): void;
  statsNormPlanes32(
    x: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number, out: number, outStride: number, acc: number,
    nx: number, nxBlockStride: number, nxRowStride: number, ny: number, nyBlockStride: number, nyRowStride: number,
    mean: number, scale: number, bias: number, relu: number,
  ): void;
  statsRows32(x: number, rows: number, C: number, S: number, rowStride: number, acc: number, out: number, outStride: number): void;
  statsNormRows32(
    x: number, rows: number, C: number, S: number, rowStride: number, acc: number, out: number, outStride: number,
    nx: number, ny: number, nRows: number, nC: number, params: number, relu: number, rowParams: number, rowParamStride: number,
  ): void;
  statsRows64(x: number, rows: number, C: number, S: number, rowStride: number, acc: number, out: number, outStride: number): void;
  normalizePlanes32(x: number, xs: number, y: number, ys: number, rows: number, len: number, mean: number, scale: number, bias: number, relu: number): void;
  normalizePlanes64(x: number, xs: number, y: number, ys: number, rows: number, len: number, mean: number, scale: number, bias: number, relu: number): void;
  normalizeRows32(x: number, y: number, rows: number, C: number, S: number, rowStride: number, params: number, scratch: number, relu: number, rowParams: number, rowParamStride: number, inOrder: number): void;
  normalizeRows64(x: number, y: number, rows: number, C: number, S: number, rowStride: number, params: number, scratch: number, relu: number): void;
  stream32(x: number, y: number, n: number, a: number, b: number): void;
  bytesPlanes32(x: number, y: number, n: number, first: number, C: number, S: number, params: number, floor: number): void;
  bytesPattern32(x: number, y: number, n: number, first: number, P: number, params: number, floor: number): void;
  bytesToPlanes32(x: number, y: number, n: number, first: number, C: number, S: number, params: number, floor: number): void;
  bytesSumsPlanes(x: number, n: number, first: number, C: number, S: number, out: number): void;
  bytesSumsPattern(x: number, n: number, first: number, P: number, out: number, scratch: number): void;
  read32(x: number, n: number): number;
  fill32(y: number, n: number, v: number): void;
  mergeChannels(partials: number, blocks: number, c0: number, c1: number, channels: number, C: number, params: number, eps: number, rowParams: number, rowParamStride: number): void;
  bwdStatsPlanes32(x: number, xs: number, dy: number, dys: number, m: number, ms: number, rows: number, len: number, mean: number, out: number): void;
  bwdStatsPlanes64(x: number, xs: number, dy: number, dys: number, m: number, ms: number, rows: number, len: number, mean: number, out: number): void;
  bwdStatsApplyPlanes32(
    x: number, xs: number, dy: number, dys: number, m: number, ms: number, rows: number, len: number, mean: number, out: number,
    qx: number, qdy: number, qm: number, qdx: number, dxs: number, a: number, k: number, qMean: number, e: number,
  ): void;
  bwdApplyPlanes32(x: number, xs: number, dy: number, dys: number, m: number, ms: number, dx: number, dxs: number, rows: number, len: number, a: number, k: number, mean: number, e: number): void;
  bwdApplyPlanes64(x: number, xs: number, dy: number, dys: number, m: number, ms: number, dx: number, dxs: number, rows: number, len: number, a: number, k: number, mean: number, e: number): void;
  mergeBackward(partials: number, blocks: number, c0: number, c1: number, channels: number, C: number, params: number, count: number, applied: number): void;
  prepEval(channels: number, C: number, c0: number, c1: number, params: number, eps: number, rowParams: number, rowParamStride: number): void;
  prepBackward(channels: number, C: number, c0: number, c1: number, params: number, eps: number, fromVar: number, apply: number): void;
  bwdStatsRows32(x: number, dy: number, m: number, rows: number, C: number, S: number, rowStride: number, params: number, acc: number, out: number, outStride: number): void;
  bwdStatsRows64(x: number, dy: number, m: number, rows: number, C: number, S: number, rowStride: number, params: number, acc: number, out: number, outStride: number): void;
  bwdApplyRows32(x: number, dy: number, m: number, dx: number, rows: number, C: number, S: number, rowStride: number, params: number, scratch: number): void;
  bwdStatsApplyRows32(
    x: number, dy: number, m: number, rows: number, C: number, S: number, rowStride: number, params: number, acc: number, out: number, outStride: number,
    qx: number, qdy: number, qm: number, qdx: number, nRows: number, nC: number, qParams: number,
  ): void;
  bwdApplyRows64(x: number, dy: number, m: number, dx: number, rows: number, C: number, S: number, rowStride: number, params: number, scratch: number): void;
}

/**
 * The WebAssembly SIMD kernels: one instance of the shared compiled module per thread, over the
 * pool's memory. They need no views and so nothing to refresh when the memory grows.
 */
export class WasmKernel implements Kernel {
  readonly name = 'wasm' as const;
  readonly #k: WasmExports;

  constructor(memory: WebAssembly.Memory, module: WebAssembly.Module) {
    const instance = new wasmApi!.Instance(module, { env: { memory } });
    this.#k = instance.exports as unknown as WasmExports;
  }

  statsPlanes(
    f64: boolean, xByte: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number, accByte: number,
  ): void {
    if (f64) this.#k.statsPlanes64(xByte, blocks, blockStride, rows, rowStride, len, outByte, outStrideBytes, accByte);
    else this.#k.statsPlanes32(xByte, blocks, blockStride, rows, rowStride, len, outByte, outStrideBytes, accByte);
  }

  statsPlaneGroups(
    f64: boolean, xByte: number, groups: number, groupStride: number, groupOutStrideBytes: number,
    blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number, accByte: number,
  ): void {
    this.#k.statsPlaneGroups(f64 ? 1 : 0, xByte, groups, groupStride, groupOutStrideBytes, blocks, blockStride, rows, rowStride, len, outByte, outStrideBytes, accByte);
  }

  statsNormPlanes(
    f64: boolean, xByte: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number, accByte: number,
    nxByte: number, nxBlockStride: number, nxRowStride: number, nyByte: number, nyBlockStride: number, nyRowStride: number,
    mean: number, scale: number, bias: number, relu: boolean,
  ): void {
    if (!f64) {
      this.#k.statsNormPlanes32(
        xByte, blocks, blockStride, rows, rowStride, len, outByte, outStrideBytes, accByte,
        nxByte, nxBlockStride, nxRowStride, nyByte, nyBlockStride, nyRowStride, mean, scale, bias, relu ? 1 : 0,
      );
      return;
    }
    statsThenNormalizePlanes(
      this, f64, xByte, blocks, blockStride, rows, rowStride, len, outByte, outStrideBytes, accByte,
      nxByte, nxBlockStride, nxRowStride, nyByte, nyBlockStride, nyRowStride, mean, scale, bias, relu,
    );
  }

  statsRows(
    f64: boolean, xByte: number, rows: number, C: number, S: number, rowStride: number,
    accByte: number, outByte: number, outStrideBytes: number,
  ): void {
    if (f64) this.#k.statsRows64(xByte, rows, C, S, rowStride, accByte, outByte, outStrideBytes);
    else this.#k.statsRows32(xByte, rows, C, S, rowStride, accByte, outByte, outStrideBytes);
  }

  statsNormRows(
    f64: boolean, xByte: number, rows: number, C: number, S: number, rowStride: number, accByte: number, outByte: number,
    outStrideBytes: number, nxByte: number, nyByte: number, nRows: number, nC: number, paramsByte: number, relu: boolean,
    rowParamsByte: number, rowParamStride: number,
  ): void {
    if (f64) {
      statsThenNormalizeRows(
        this, f64, xByte, rows, C, S, rowStride, accByte, outByte, outStrideBytes, nxByte, nyByte, nRows, nC, paramsByte, relu,
        rowParamsByte, rowParamStride,
      );
      return;
    }
    this.#k.statsNormRows32(
      xByte, rows, C, S, rowStride, accByte, outByte, outStrideBytes, nxByte, nyByte, nRows, nC, paramsByte, relu ? 1 : 0,
      rowParamsByte, rowParamStride,
    );
  }

  normalizePlanes(
    f64: boolean, xByte: number, xRowStride: number, yByte: number, yRowStride: number,
    rows: number, len: number, mean: number, scale: number, bias: number, relu: boolean,
  ): void {
    if (f64) this.#k.normalizePlanes64(xByte, xRowStride, yByte, yRowStride, rows, len, mean, scale, bias, relu ? 1 : 0);
    else this.#k.normalizePlanes32(xByte, xRowStride, yByte, yRowStride, rows, len, mean, scale, bias, relu ? 1 : 0);
  }

  normalizeRows(
    f64: boolean, xByte: number, yByte: number, rows: number, C: number, S: number, rowStride: number, paramsByte: number,
    scratchByte: number, relu: boolean, rowParamsByte = 0, rowParamStride = 0, inOrder = false,
  ): void {
    if (f64) this.#k.normalizeRows64(xByte, yByte, rows, C, S, rowStride, paramsByte, scratchByte, relu ? 1 : 0);
    else {
      this.#k.normalizeRows32(
        xByte, yByte, rows, C, S, rowStride, paramsByte, scratchByte, relu ? 1 : 0, rowParamsByte, rowParamStride, inOrder ? 1 : 0,
      );
    }
  }

  mergeChannels(
    partialsByte: number, blocks: number, c0: number, c1: number, channelsByte: number, C: number, paramsByte: number, eps: number,
    rowParamsByte = 0, rowParamStride = 0,
  ): void {
    this.#k.mergeChannels(partialsByte, blocks, c0, c1, channelsByte, C, paramsByte, eps, rowParamsByte, rowParamStride);
  }

  bwdStatsPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, rows: number, len: number, mean: number, outByte: number,
  ): void {
    if (f64) this.#k.bwdStatsPlanes64(xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride, rows, len, mean, outByte);
    else this.#k.bwdStatsPlanes32(xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride, rows, len, mean, outByte);
  }

  bwdStatsApplyPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, rows: number, len: number, mean: number, outByte: number,
    qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, dxRowStride: number, a: number, k: number, qMean: number, e: number,
  ): void {
    if (!f64) {
      this.#k.bwdStatsApplyPlanes32(
        xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride, rows, len, mean, outByte,
        qxByte, qdyByte, qmByte, qdxByte, dxRowStride, a, k, qMean, e,
      );
      return;
    }
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
    if (f64) this.#k.bwdApplyPlanes64(xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride, dxByte, dxRowStride, rows, len, a, k, mean, e);
    else this.#k.bwdApplyPlanes32(xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride, dxByte, dxRowStride, rows, len, a, k, mean, e);
  }

  bwdStatsRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, rows: number, C: number, S: number, rowStride: number,
    paramsByte: number, accByte: number, outByte: number, outStrideBytes: number,
  ): void {
    if (f64) this.#k.bwdStatsRows64(xByte, dyByte, maskByte, rows, C, S, rowStride, paramsByte, accByte, outByte, outStrideBytes);
    else this.#k.bwdStatsRows32(xByte, dyByte, maskByte, rows, C, S, rowStride, paramsByte, accByte, outByte, outStrideBytes);
  }

  bwdStatsApplyRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, rows: number, C: number, S: number, rowStride: number,
    paramsByte: number, accByte: number, outByte: number, outStrideBytes: number,
    qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, nRows: number, nC: number, qParamsByte: number,
  ): void {
    if (f64) {
      bwdStatsThenApplyRows(
      this, f64, xByte, dyByte, maskByte, rows, C, S, rowStride, paramsByte, accByte, outByte, outStrideBytes,
      qxByte, qdyByte, qmByte, qdxByte, nRows, nC, qParamsByte,
    );
      return;
    }
    this.#k.bwdStatsApplyRows32(
      xByte, dyByte, maskByte, rows, C, S, rowStride, paramsByte, accByte, outByte, outStrideBytes,
      qxByte, qdyByte, qmByte, qdxByte, nRows, nC, qParamsByte,
    );
  }

  bwdApplyRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, dxByte: number, rows: number, C: number, S: number,
    rowStride: number, paramsByte: number, scratchByte: number,
  ): void {
    if (f64) this.#k.bwdApplyRows64(xByte, dyByte, maskByte, dxByte, rows, C, S, rowStride, paramsByte, scratchByte);
    else this.#k.bwdApplyRows32(xByte, dyByte, maskByte, dxByte, rows, C, S, rowStride, paramsByte, scratchByte);
  }

  mergeBackward(
    partialsByte: number, blocks: number, c0: number, c1: number, channelsByte: number, C: number, paramsByte: number,
    count: number, applied = false,
  ): void {
    this.#k.mergeBackward(partialsByte, blocks, c0, c1, channelsByte, C, paramsByte, count, applied ? 1 : 0);
  }

  prepareEval(
    channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number, rowParamsByte = 0, rowParamStride = 0,
  ): void {
    this.#k.prepEval(channelsByte, C, c0, c1, paramsByte, eps, rowParamsByte, rowParamStride);
  }

  prepareBackward(
    channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number, fromVar: boolean, apply: boolean,
  ): void {
    this.#k.prepBackward(channelsByte, C, c0, c1, paramsByte, eps, fromVar ? 1 : 0, apply ? 1 : 0);
  }

  stream(xByte: number, yByte: number, n: number, a: number, b: number): void {
    this.#k.stream32(xByte, yByte, n, a, b);
  }

  bytesPlanes(xByte: number, yByte: number, n: number, first: number, C: number, S: number, paramsByte: number, relu: boolean): void {
    this.#k.bytesPlanes32(xByte, yByte, n, first, C, S, paramsByte, relu ? 0 : -Infinity);
  }

  bytesPattern(xByte: number, yByte: number, n: number, first: number, P: number, paramsByte: number, relu: boolean): void {
    this.#k.bytesPattern32(xByte, yByte, n, first, P, paramsByte, relu ? 0 : -Infinity);
  }

  bytesToPlanes(xByte: number, yByte: number, n: number, first: number, C: number, S: number, paramsByte: number, relu: boolean): void {
    this.#k.bytesToPlanes32(xByte, yByte, n, first, C, S, paramsByte, relu ? 0 : -Infinity);
  }

  bytesSumsPlanes(xByte: number, n: number, first: number, C: number, S: number, outByte: number): void {
    this.#k.bytesSumsPlanes(xByte, n, first, C, S, outByte);
  }

  bytesSumsPattern(xByte: number, n: number, first: number, P: number, outByte: number, scratchByte: number): void {
    this.#k.bytesSumsPattern(xByte, n, first, P, outByte, scratchByte);
  }

  read(xByte: number, n: number): number {
    return this.#k.read32(xByte, n);
  }

  fill(yByte: number, n: number, v: number): void {
    this.#k.fill32(yByte, n, v);
  }
}
