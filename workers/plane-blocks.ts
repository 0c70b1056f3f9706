/**
 * Plane mode (runs of S >= 1024 elements: a channel's plane, or stretches of it): the kernel calls
 * on a task's blocks, one channel's runs of one row group (statsPlanes, normalizePlanes,
 * bwdStatsPlanes, bwdApplyPlanes), runs of blocks that lie end to end (statsPlaneGroups,
 * normalizeRows), and the fused and phased pipelines' pairs (statsNormPlanes, bwdStatsApplyPlanes).
 * BlockWalker (blocks.ts) maps work items to them.
 */
import type { CopyOutWriter } from './copy-out.js';
import type { MemoryViews } from './execute.js';
import { type Kernel, PLANE_BLOCKS_MAX, PLANE_RUN_CHANNELS_MAX } from './kernels/kernel.js';
import { regionRowGroup, type Task } from './protocol.js';
import { backwardMeanByte, PARAM_BYTES, PARTIAL_BYTES, partialByte, type ScratchLayout } from './scratch.js';

/** The kernel calls of a plane-mode task's blocks. */
export class PlaneBlocks {
  readonly #task: Task;
  readonly #kernel: Kernel;
  readonly #views: MemoryViews;
  readonly #layout: ScratchLayout;
  readonly #f64Data: boolean;
  readonly #bpe: number;
  /** The region's first row group in the grid. */
  readonly #g0: number;
  /** Blocks per row group of the region: channels x stretches. */
  readonly #rowBlocks: number;
  readonly #copy: CopyOutWriter | null;

  constructor(task: Task, kernel: Kernel, views: MemoryViews, layout: ScratchLayout, bpe: number, g0: number, copy: CopyOutWriter | null) {
    const { grid, region } = task;
    this.#task = task;
    this.#kernel = kernel;
    this.#views = views;
    this.#layout = layout;
    this.#f64Data = task.dtype === 'float64';
    this.#bpe = bpe;
    this.#g0 = g0;
    this.#rowBlocks = (region.c1 - region.c0) * grid.sChunks;
    this.#copy = copy;
  }

  /**
   * Statistics of `n` one-row blocks of `len` elements from block `local` of region channel cl,
   * block j `stride` elements after the first, its partial `outStride` bytes after the first's.
   */
  statsRun(cl: number, local: number, n: number, stride: number, outStride: number, len: number): void {
    const { grid, region } = this.#task;
    const gl = Math.floor(local / grid.sChunks);
    const k = local % grid.sChunks;
    const c = region.c0 + cl;
    const { rowOff } = this.#rowGroup(gl);
    const xByte = region.xByte + (rowOff * region.xRowStride + cl * grid.S + k * grid.sChunkLen) * this.#bpe;
    const outByte = partialByte(grid, this.#layout.partialsByte, c, this.#g0 + gl, k);
    // One block at a time, each run read at once (statsPlanes32 with one block): the blocks lie end
    // to end, so this is one stream in memory order. On this project's fourth machine (AMD EPYC,
    // Zen 5) that took 0.67-0.85 of the time of pairs read in 512-byte turns for A's statistics
    // (ChannelStats.fromBatch, 2 threads; four runs of bench/alternate.mjs planes, two in each
    // order) and 0.69-0.75 for C's; a plane-mode `split` training forward, [16, 3, 224, 224],
    // 1.00 and 0.84 (alternate.mjs fused, one run in each order). bench/patterns.mjs, A's
    // statistics alone: 0.74-0.80 -> 0.60-0.62 of the floor. (On the first machine pairs had won:
    // 8.1 GB/s against 6.3, one thread.) Same partials either way.
    this.#kernel.statsPlaneGroups(this.#f64Data, xByte, n, stride, outStride, 1, stride, 1, 0, len, outByte, outStride, this.#task.accByte);
  }

  /**
   * Plane-mode blocks [lo, hi) of row groups of several rows (planes of 1-8 Ki elements, as
   * [N, 64, 32, 32] or [N, 256, 56, 56]), normalized (backward: given their dx) in address order:
   * the claimed channels of a row group row by row, one normalizeRows (bwdApplyRows) call a row
   * group (a row, where the arrays' rows are not all the same distance apart). A block a call
   * walks one channel's planes a row of the tensor apart instead, runs of 4-32 KB that the
   * prefetchers follow badly; where no statistics pass came first (eval, and an eval-mode
   * backward without sums), no block is in cache to be taken last first either. The same bits:
   * the row kernels compute each element as the plane ones (bwdApplyRows calls bwdApplyPlanes on
   * each run; see BlockWalker.normalizeRange for normalizeRows).
   */
  normalizeInOrder(lo: number, hi: number, cancelled: () => boolean): boolean {
    const { grid, region, relu, backward } = this.#task;
    const bpe = this.#bpe;
    const stride = region.xRowStride;
    const rowsAtOnce = region.yRowStride === stride
      && (!backward || (region.dyRowStride === stride && (region.maskByte === 0 || region.maskRowStride === stride)));
    for (let i = lo; i < hi;) {
      if (cancelled()) return false;
      // One stretch a plane here (sChunks 1): item i is region channel i % rowBlocks of row group floor(i / rowBlocks).
      const cl = i % this.#rowBlocks;
      const n = Math.min(this.#rowBlocks - cl, hi - i, PLANE_RUN_CHANNELS_MAX);
      const { rowOff, rows } = this.#rowGroup(Math.floor(i / this.#rowBlocks));
      const off = cl * grid.S;
      const paramsByte = this.#layout.paramsByte + (region.c0 + cl) * PARAM_BYTES;
      const step = rowsAtOnce ? rows : 1;
      for (let r = rowOff; r < rowOff + rows; r += step) {
        const xByte = region.xByte + (r * stride + off) * bpe;
        const yByte = region.yByte + (r * region.yRowStride + off) * bpe;
        if (backward) {
          const maskByte = region.maskByte === 0 ? 0 : region.maskByte + (r * region.maskRowStride + off) * bpe;
          this.#kernel.bwdApplyRows(
            this.#f64Data, xByte, region.dyByte + (r * region.dyRowStride + off) * bpe, maskByte, yByte, step, n, grid.S, stride, paramsByte,
            this.#task.accByte,
          );
        } else {
          this.#kernel.normalizeRows(this.#f64Data, xByte, yByte, step, n, grid.S, stride, paramsByte, this.#task.accByte, relu);
        }
        this.#copy?.planes(r, step, off, n * grid.S, yByte);
      }
      i += n;
    }
    return true;
  }

  /**
   * How many row groups from g (before `end`) one statsPlanes call takes: up to PLANE_BLOCKS_MAX
   * of the same shape. Only the region's last row group can be short; it goes alone.
   */
  groupsAt(g: number, end: number): number {
    const count = Math.min(PLANE_BLOCKS_MAX, end - g);
    return count > 1 && this.#rowGroup(g + count - 1).rows !== this.#task.grid.groupRows ? count - 1 : count;
  }

  /**
   * Statistics of region channel cl's row groups g .. g + count - 1, every stretch: the stretches
   * of equal length in one kernel call (statsPlaneGroups), the plane's shorter last one alone.
   */
  stretches(cl: number, g: number, count: number): void {
    const { grid } = this.#task;
    const equal = grid.S === grid.sChunks * grid.sChunkLen ? grid.sChunks : grid.sChunks - 1;
    if (this.#task.backward) {
      for (let k = 0; k < grid.sChunks; k++) this.#planeStats(cl, g, count, k, 1);
      return;
    }
    if (equal > 0) this.#planeStats(cl, g, count, 0, equal);
    if (equal < grid.sChunks) this.#planeStats(cl, g, count, equal, 1);
  }

  /**
   * Statistics of region channel cl's row groups g .. g + count - 1 (one stretch: BlockWalker.pipelines),
   * and the normalization (backward: dx) of region channel prev's row groups h .. h + count - 1 in
   * step with them: one statsNormPlanes call (backward, one bwdStatsApplyPlanes call a row group)
   * where every one of those row groups is whole; where one is the region's short last row group,
   * the two apart.
   */
  statsNorm(cl: number, g: number, prev: number, h: number, count: number): void {
    const { grid, region } = this.#task;
    const full = (first: number): boolean => this.#rowGroup(first + count - 1).rows === grid.groupRows;
    if (!full(g) || !full(h)) {
      this.stretches(cl, g, count);
      for (let i = count - 1; i >= 0; i--) this.block(prev, h + i, true);
      return;
    }
    if (this.#task.backward) {
      for (let i = 0; i < count; i++) this.#bwdStatsApply(cl, g + i, prev, h + i);
      return;
    }
    const { xByte, xRowStride, yByte, yRowStride } = region;
    const f64 = this.#views.f64;
    const q = this.#paramsIndex(prev);
    const y = this.#at(yByte, yRowStride, h, prev);
    this.#kernel.statsNormPlanes(
      this.#f64Data, this.#at(xByte, xRowStride, g, cl), count, grid.groupRows * xRowStride, grid.groupRows, xRowStride, grid.S,
      partialByte(grid, this.#layout.partialsByte, region.c0 + cl, this.#g0 + g, 0), PARTIAL_BYTES, this.#task.accByte,
      this.#at(xByte, xRowStride, h, prev), grid.groupRows * xRowStride, xRowStride, y, grid.groupRows * yRowStride, yRowStride,
      f64[q], f64[q + 1], f64[q + 2], this.#task.relu,
    );
    this.#copy?.planes(this.#rowGroup(h).rowOff, count * grid.groupRows, prev * grid.S, grid.S, y);
  }

  /**
   * Statistics of region channel cl's row groups g .. g + count - 1 and the normalization (dx) of
   * channel prev's row groups h .. h + count - 1 in step: statsNorm for one stretch a plane;
   * for planes in stretches (one row a row group), a row group of each at a time, two stretches
   * of equal length a call (the backward op, one).
   */
  pairStatsNorm(cl: number, g: number, prev: number, h: number, count: number): void {
    const { grid, region } = this.#task;
    if (grid.sChunks === 1) {
      this.statsNorm(cl, g, prev, h, count);
      return;
    }
    const c = region.c0 + cl;
    const bpe = this.#bpe;
    const f64 = this.#views.f64;
    const q = this.#paramsIndex(prev);
    const last = grid.S - (grid.sChunks - 1) * grid.sChunkLen;
    const lenOf = (k: number): number => (k === grid.sChunks - 1 ? last : grid.sChunkLen);
    for (let r = 0; r < count; r++) {
      const x = this.#at(region.xByte, region.xRowStride, g + r, cl);
      const nx = this.#at(region.xByte, region.xRowStride, h + r, prev);
      const ny = this.#at(region.yByte, region.yRowStride, h + r, prev);
      const out = partialByte(grid, this.#layout.partialsByte, c, this.#g0 + g + r, 0);
      for (let k = 0; k < grid.sChunks;) {
        const len = lenOf(k);
        const off = k * grid.sChunkLen * bpe;
        if (this.#task.backward) {
          const dy = this.#at(region.dyByte, region.dyRowStride, g + r, cl);
          const ndy = this.#at(region.dyByte, region.dyRowStride, h + r, prev);
          const mask = (group: number, channel: number): number => (
            region.maskByte === 0 ? 0 : this.#at(region.maskByte, region.maskRowStride, group, channel) + off
          );
          this.#kernel.bwdStatsApplyPlanes(
            this.#f64Data, x + off, region.xRowStride, dy + off, region.dyRowStride, mask(g + r, cl), region.maskRowStride, 1, len,
            f64[this.#paramsIndex(cl)], out + k * PARTIAL_BYTES,
            nx + off, ndy + off, mask(h + r, prev), ny + off, region.yRowStride, f64[q], f64[q + 1], f64[q + 2], f64[q + 3],
          );
          this.#copy?.planes(this.#rowGroup(h + r).rowOff, 1, prev * grid.S + k * grid.sChunkLen, len, ny + off);
          k++;
        } else {
          // Two stretches a call where the next is as long (PLANE_BLOCKS_MAX).
          const n = k + 1 < grid.sChunks && lenOf(k + 1) === len ? 2 : 1;
          this.#kernel.statsNormPlanes(
            this.#f64Data, x + off, n, grid.sChunkLen, 1, region.xRowStride, len, out + k * PARTIAL_BYTES, PARTIAL_BYTES, this.#task.accByte,
            nx + off, grid.sChunkLen, region.xRowStride, ny + off, grid.sChunkLen, region.yRowStride, f64[q], f64[q + 1], f64[q + 2], this.#task.relu,
          );
          this.#copy?.planes(this.#rowGroup(h + r).rowOff, 1, prev * grid.S + k * grid.sChunkLen, n === 2 ? 2 * len : len, ny + off);
          k += n;
        }
      }
    }
  }

  /** Backward partial of region channel cl's row group g, and dx of prev's row group h in step (both whole). */
  #bwdStatsApply(cl: number, g: number, prev: number, h: number): void {
    const { grid, region } = this.#task;
    const { xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride } = region;
    const mask = (group: number, channel: number): number => (maskByte === 0 ? 0 : this.#at(maskByte, maskRowStride, group, channel));
    const f64 = this.#views.f64;
    const q = this.#paramsIndex(prev);
    const dx = this.#at(region.yByte, region.yRowStride, h, prev);
    this.#kernel.bwdStatsApplyPlanes(
      this.#f64Data, this.#at(xByte, xRowStride, g, cl), xRowStride, this.#at(dyByte, dyRowStride, g, cl), dyRowStride,
      mask(g, cl), maskRowStride, grid.groupRows, grid.S, f64[this.#paramsIndex(cl)],
      partialByte(grid, this.#layout.partialsByte, region.c0 + cl, this.#g0 + g, 0),
      this.#at(xByte, xRowStride, h, prev), this.#at(dyByte, dyRowStride, h, prev), mask(h, prev), dx, region.yRowStride,
      f64[q], f64[q + 1], f64[q + 2], f64[q + 3],
    );
    this.#copy?.planes(this.#rowGroup(h).rowOff, grid.groupRows, prev * grid.S, grid.S, dx);
  }

  /**
   * Statistics of `count` blocks of region channel cl: row groups g0 + g, g0 + g + 1, ..., for
   * `n` stretches of the same length from stretch k.
   */
  #planeStats(cl: number, g: number, count: number, k: number, n: number): void {
    const { grid, region } = this.#task;
    const { rowOff, rows } = this.#rowGroup(g);
    const sOff = k * grid.sChunkLen;
    const len = Math.min(sOff + grid.sChunkLen, grid.S) - sOff;
    const c = region.c0 + cl;
    const xByte = region.xByte + (rowOff * region.xRowStride + cl * grid.S + sOff) * this.#bpe;
    const outByte = partialByte(grid, this.#layout.partialsByte, c, this.#g0 + g, k);
    if (this.#task.backward) {
      for (let i = 0; i < count; i++) {
        this.#run(c, rowOff + i * grid.groupRows, cl * grid.S + sOff, rows, len, outByte + i * grid.sChunks * PARTIAL_BYTES, false);
      }
      return;
    }
    this.#kernel.statsPlaneGroups(
      this.#f64Data, xByte, n, grid.sChunkLen, PARTIAL_BYTES,
      count, grid.groupRows * region.xRowStride, rows, region.xRowStride, len,
      outByte, grid.sChunks * PARTIAL_BYTES, this.#task.accByte,
    );
  }

  /** Plane mode: block `local` of region channel `cl` is row group g0 + floor(local / sChunks), stretch local % sChunks. */
  block(cl: number, local: number, normalize: boolean): void {
    const { grid, region } = this.#task;
    const gl = Math.floor(local / grid.sChunks);
    const k = local % grid.sChunks;
    const { rowOff, rows } = this.#rowGroup(gl);
    const sOff = k * grid.sChunkLen;
    const len = Math.min(sOff + grid.sChunkLen, grid.S) - sOff;
    const off = cl * grid.S + sOff;
    const c = region.c0 + cl;
    this.#run(c, rowOff, off, rows, len, partialByte(grid, this.#layout.partialsByte, c, this.#g0 + gl, k), normalize);
  }

  /** Stretches k0 .. k0 + n - 1 of region channel cl in the one-row row group of block `local` (its stretch k0). */
  stretchRun(cl: number, local: number, k0: number, n: number): void {
    const { grid, region } = this.#task;
    const { rowOff } = this.#rowGroup(Math.floor(local / grid.sChunks));
    const sOff = k0 * grid.sChunkLen;
    const len = Math.min((k0 + n) * grid.sChunkLen, grid.S) - sOff;
    this.#run(region.c0 + cl, rowOff, cl * grid.S + sOff, 1, len, 0, true);
  }

  /**
   * Region channels [cl, cl + n), whole, in the one-row row group of block `local` (stretch 0):
   * one normalizeRows call; backward, a bwdApplyPlanes call a channel (last first if `reverse`).
   */
  channelsRun(cl: number, n: number, local: number, reverse: boolean): void {
    const { grid, region } = this.#task;
    if (this.#task.backward) {
      for (let j = 0; j < n; j++) this.stretchRun(reverse ? cl + n - 1 - j : cl + j, local, 0, grid.sChunks);
      return;
    }
    const bpe = this.#bpe;
    const { rowOff } = this.#rowGroup(Math.floor(local / grid.sChunks));
    const off = cl * grid.S;
    const xByte = region.xByte + (rowOff * region.xRowStride + off) * bpe;
    const yByte = region.yByte + (rowOff * region.yRowStride + off) * bpe;
    this.#kernel.normalizeRows(
      this.#f64Data, xByte, yByte, 1, n, grid.S, n * grid.S, this.#layout.paramsByte + (region.c0 + cl) * PARAM_BYTES, this.#task.accByte, this.#task.relu,
    );
    this.#copy?.planes(rowOff, 1, off, n * grid.S, yByte);
  }

  /**
   * One run set of channel c: `rows` runs of `len` at element `off` of each region row from
   * `rowOff`. Reduces into the partial at `outByte`, or normalizes (forward) or applies the
   * gradient (backward) with the channel's parameters.
   */
  #run(c: number, rowOff: number, off: number, rows: number, len: number, outByte: number, normalize: boolean): void {
    const { region, backward } = this.#task;
    const bpe = this.#bpe;
    const xByte = region.xByte + (rowOff * region.xRowStride + off) * bpe;
    const dyByte = region.dyByte + (rowOff * region.dyRowStride + off) * bpe;
    const maskByte = region.maskByte === 0 ? 0 : region.maskByte + (rowOff * region.maskRowStride + off) * bpe;
    const f64 = this.#views.f64;
    const p = (this.#layout.paramsByte + c * PARAM_BYTES) / 8;
    if (!normalize) {
      const mean = f64[p + backwardMeanByte(backward) / 8];
      if (backward) this.#kernel.bwdStatsPlanes(this.#f64Data, xByte, region.xRowStride, dyByte, region.dyRowStride, maskByte, region.maskRowStride, rows, len, mean, outByte);
      else this.#kernel.statsPlanes(this.#f64Data, xByte, 1, 0, rows, region.xRowStride, len, outByte, 0, this.#task.accByte);
      return;
    }
    const yByte = region.yByte + (rowOff * region.yRowStride + off) * bpe;
    if (backward) {
      this.#kernel.bwdApplyPlanes(
        this.#f64Data, xByte, region.xRowStride, dyByte, region.dyRowStride, maskByte, region.maskRowStride,
        yByte, region.yRowStride, rows, len, f64[p], f64[p + 1], f64[p + 2], f64[p + 3],
      );
    } else {
      this.#kernel.normalizePlanes(this.#f64Data, xByte, region.xRowStride, yByte, region.yRowStride, rows, len, f64[p], f64[p + 1], f64[p + 2], this.#task.relu);
    }
    this.#copy?.planes(rowOff, rows, off, len, yByte);
  }

  /** Byte offset of region channel cl's run in the first row of region row group g, in an array at `base` (row stride `stride`). */
  #at(base: number, stride: number, g: number, cl: number): number {
    return base + (this.#rowGroup(g).rowOff * stride + cl * this.#task.grid.S) * this.#bpe;
  }

  /** Index in the float64 view of region channel cl's four parameters (as the merge or the prep left them). */
  #paramsIndex(cl: number): number {
    return (this.#layout.paramsByte + (this.#task.region.c0 + cl) * PARAM_BYTES) / 8;
  }

  #rowGroup(g: number): { rowOff: number; rows: number } {
    return regionRowGroup(this.#task.grid, this.#task.region, g);
  }
}
