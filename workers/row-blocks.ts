/**
 * Row mode (runs of S < 1024 elements, rank 2 and channels-last among them): every row group holds
 * every channel, so a block is a row group's band of channels [c0, c1), reduced, normalized or
 * given its dx by one row kernel call (statsRows, normalizeRows, bwdStatsRows, bwdApplyRows, and
 * the phased path's statsNormRows and bwdStatsApplyRows). BlockWalker (blocks.ts) hands row-mode
 * work items here.
 */
import type { CopyOutWriter } from './copy-out.js';
import type { Kernel } from './kernels/kernel.js';
import { regionRowGroup, type Task } from './protocol.js';
import { backwardMeanByte, PARAM_BYTES, PARTIAL_BYTES, partialByte, rowParamStride, type ScratchLayout } from './scratch.js';

/**
 * The float32 row parameters of a row-mode float32 call (ScratchLayout.rowParamsByte) and the
 * stride of their arrays, or [0, 0] where the row kernels convert the float64 parameters instead.
 */
export function rowParamsOf(task: Pick<Task, 'grid' | 'dtype'>, layout: ScratchLayout): [number, number] {
  return task.grid.mode === 'row' && task.dtype === 'float32' ? [layout.rowParamsByte, rowParamStride(task.grid.C)] : [0, 0];
}

/**
 * Rows of a region from its row `rowOff` on, from element `off` of each row, at `bytes` from the
 * start of any of the region's arrays (row-mode regions hold whole rows).
 */
interface RowBlock { readonly rowOff: number; readonly rows: number; readonly off: number; readonly bytes: number }

/** The kernel calls of a row-mode task's blocks. */
export class RowBlocks {
  readonly #task: Task;
  readonly #kernel: Kernel;
  readonly #layout: ScratchLayout;
  readonly #f64Data: boolean;
  readonly #bpe: number;
  readonly #g0: number;
  readonly #copy: CopyOutWriter | null;

  constructor(task: Task, kernel: Kernel, layout: ScratchLayout, bpe: number, g0: number, copy: CopyOutWriter | null) {
    this.#task = task;
    this.#kernel = kernel;
    this.#layout = layout;
    this.#f64Data = task.dtype === 'float64';
    this.#bpe = bpe;
    this.#g0 = g0;
    this.#copy = copy;
  }

  /** Row mode: band b's channels [c0, c1). */
  band(b: number): [number, number] {
    const { grid } = this.#task;
    const c0 = b * grid.bandChannels;
    return [c0, Math.min(grid.C, c0 + grid.bandChannels)];
  }

  /**
   * Row mode: the band of region row group g that starts at channel c0, as its rows, the offset
   * of its first element within a row, and its byte offset from the start of any of the region's
   * arrays. Row-mode regions hold whole rows (C * S elements: every array's row stride), so a
   * band is an offset and a width (its channels', which the callers pass the kernels).
   */
  #bandBlock(g: number, c0: number): RowBlock {
    const { grid } = this.#task;
    const { rowOff, rows } = regionRowGroup(grid, this.#task.region, g);
    const off = c0 * grid.S;
    return { rowOff, rows, off, bytes: (rowOff * grid.C * grid.S + off) * this.#bpe };
  }

  /** Row mode: where channel c0's partial of region row group g goes, and the bytes between channels' partials. */
  #rowOut(g: number, c0: number): [number, number] {
    const { grid } = this.#task;
    return [partialByte(grid, this.#layout.partialsByte, c0, this.#g0 + g, 0), grid.blocksPerChannel * PARTIAL_BYTES];
  }

  /** Row mode: the mask's byte at `bytes` from the start of the region's arrays, or 0 without one. */
  #rowMask(bytes: number): number {
    const { maskByte } = this.#task.region;
    return maskByte === 0 ? 0 : maskByte + bytes;
  }

  /** Row mode: the partials of channels [c0, c1) (band b's, or a `phased` group's) over region row group g. */
  stats(g: number, c0: number, c1: number): void {
    const { grid, region, accByte } = this.#task;
    const { rows, bytes } = this.#bandBlock(g, c0);
    const [outByte, outStride] = this.#rowOut(g, c0);
    if (this.#task.backward) {
      // The kernel reads each channel's mean from the first word of its parameters: applied ones
      // are read from their mean on (backwardMeanByte).
      const params = this.#layout.paramsByte + c0 * PARAM_BYTES + backwardMeanByte(this.#task.backward);
      this.#kernel.bwdStatsRows(
        this.#f64Data, region.xByte + bytes, region.dyByte + bytes, this.#rowMask(bytes),
        rows, c1 - c0, grid.S, grid.C * grid.S, params, accByte, outByte, outStride,
      );
      return;
    }
    this.#kernel.statsRows(this.#f64Data, region.xByte + bytes, rows, c1 - c0, grid.S, grid.C * grid.S, accByte, outByte, outStride);
  }

  /**
   * Row mode, `phased`: the partials of channels [c0, c1) over region row group g and, in step,
   * the normalization (dx) of channels [p0, p1) of row group h: one statsNormRows (backward,
   * bwdStatsApplyRows) call.
   */
  statsNorm(g: number, c0: number, c1: number, h: number, p0: number, p1: number): void {
    const { grid, region, accByte } = this.#task;
    const stats = this.#bandBlock(g, c0);
    const norm = this.#bandBlock(h, p0);
    if (this.#task.backward) {
      const dx = region.yByte + norm.bytes;
      this.#kernel.bwdStatsApplyRows(
        this.#f64Data, region.xByte + stats.bytes, region.dyByte + stats.bytes, this.#rowMask(stats.bytes), stats.rows, c1 - c0, grid.S,
        grid.C * grid.S, this.#layout.paramsByte + c0 * PARAM_BYTES, accByte, ...this.#rowOut(g, c0),
        region.xByte + norm.bytes, region.dyByte + norm.bytes, this.#rowMask(norm.bytes), dx, norm.rows, p1 - p0,
        this.#layout.paramsByte + p0 * PARAM_BYTES,
      );
      this.#copy?.planes(norm.rowOff, norm.rows, norm.off, (p1 - p0) * grid.S, dx);
      return;
    }
    const [rowParams, stride] = rowParamsOf(this.#task, this.#layout);
    const yByte = region.yByte + norm.bytes;
    this.#kernel.statsNormRows(
      this.#f64Data, region.xByte + stats.bytes, stats.rows, c1 - c0, grid.S, grid.C * grid.S, accByte, ...this.#rowOut(g, c0),
      region.xByte + norm.bytes, yByte, norm.rows, p1 - p0, this.#layout.paramsByte + p0 * PARAM_BYTES, this.#task.relu,
      rowParams === 0 ? 0 : rowParams + 4 * p0, stride,
    );
    this.#copy?.planes(norm.rowOff, norm.rows, norm.off, (p1 - p0) * grid.S, yByte);
  }

  /**
   * Row mode, whole rows (normalizesRows): normalizes rows [r0, r1) of the region, every channel,
   * in one call.
   */
  normalizeRows(r0: number, r1: number): void {
    const { C, S } = this.#task.grid;
    this.#normalizeForward({ rowOff: r0, rows: r1 - r0, off: 0, bytes: r0 * C * S * this.#bpe }, 0, C);
  }

  /** Row mode: normalizes (backward: applies the gradient to) channels [c0, c1) of region row group g. */
  normalize(g: number, c0: number, c1: number): void {
    const { grid, region, accByte } = this.#task;
    const block = this.#bandBlock(g, c0);
    if (!this.#task.backward) {
      this.#normalizeForward(block, c0, c1);
      return;
    }
    const { rowOff, rows, off, bytes } = block;
    const yByte = region.yByte + bytes;
    this.#kernel.bwdApplyRows(
      this.#f64Data, region.xByte + bytes, region.dyByte + bytes, this.#rowMask(bytes),
      yByte, rows, c1 - c0, grid.S, grid.C * grid.S, this.#layout.paramsByte + c0 * PARAM_BYTES, accByte,
    );
    this.#copy?.planes(rowOff, rows, off, (c1 - c0) * grid.S, yByte);
  }

  /** Forward: normalizes channels [c0, c1) of a block of region rows (see #bandBlock), in one kernel call. */
  #normalizeForward({ rowOff, rows, off, bytes }: RowBlock, c0: number, c1: number): void {
    const { grid, region, accByte } = this.#task;
    const yByte = region.yByte + bytes;
    const [rowParams, stride] = rowParamsOf(this.#task, this.#layout);
    this.#kernel.normalizeRows(
      this.#f64Data, region.xByte + bytes, yByte, rows, c1 - c0, grid.S, grid.C * grid.S, this.#layout.paramsByte + c0 * PARAM_BYTES,
      accByte, this.#task.relu, rowParams === 0 ? 0 : rowParams + 4 * c0, stride, this.#task.inOrder,
    );
    this.#copy?.planes(rowOff, rows, off, (c1 - c0) * grid.S, yByte);
  }
}
