/**
 * How a task's work items map to blocks of its region, and the kernel calls that reduce,
 * normalize or apply the gradient to them (plane mode here; row mode's in row-blocks.ts); the
 * merge of a channel range, which fused tasks and the barriers run.
 */
import { type Kernel, PLANE_BLOCKS_MAX, PLANE_RUN_CHANNELS_MAX } from './kernels/kernel.js';
import type { Claims, MemoryViews } from './execute.js';
import { CopyOutWriter } from './copy-out.js';
import { backwardMeanByte, bytesPerElement, PARAM_BYTES, PARTIAL_BYTES, partialByte, type ScratchLayout, type Task } from './protocol.js';
import { rowParamsOf, RowBlocks } from './row-blocks.js';

/**
 * Merges channels [c0, c1) with the kernel's merge (in block order: the same bits wherever it
 * runs), writing their statistics to the per-channel arrays and their parameters.
 */
export function mergeChannels(
  kernel: Kernel, task: Pick<Task, 'grid' | 'eps' | 'dtype'> & Partial<Pick<Task, 'backward'>>, layout: ScratchLayout, c0: number, c1: number,
): void {
  const { grid } = task;
  if (task.backward) {
    kernel.mergeBackward(
      layout.partialsByte, grid.blocksPerChannel, c0, c1, layout.channelsByte, grid.C, layout.paramsByte,
      grid.N * grid.S, task.backward === 'train', task.backward === 'eval-applied',
    );
    return;
  }
  const [rowParams, stride] = rowParamsOf(task, layout);
  kernel.mergeChannels(
    layout.partialsByte, grid.blocksPerChannel, c0, c1, layout.channelsByte, grid.C, layout.paramsByte, task.eps, rowParams, stride,
  );
}

/** Maps a task's work items to blocks of its region and runs the kernels on them. */
export class BlockWalker {
  readonly #task: Task;
  readonly #kernel: Kernel;
  readonly #views: MemoryViews;
  readonly #layout: ScratchLayout;
  readonly #f64Data: boolean;
  readonly #bpe: number;
  readonly #g0: number;
  readonly #regionBlocks: number;
  /** Blocks per row group of the region: channels x stretches. */
  readonly #rowBlocks: number;
  readonly #copy: CopyOutWriter | null;
  readonly #rows: RowBlocks;

  constructor(task: Task, kernel: Kernel, views: MemoryViews, layout: ScratchLayout) {
    const { grid, region } = task;
    this.#task = task;
    this.#kernel = kernel;
    this.#views = views;
    this.#layout = layout;
    this.#f64Data = task.dtype === 'float64';
    this.#bpe = bytesPerElement(task.dtype);
    this.#g0 = region.n0 / grid.groupRows;
    this.#regionBlocks = Math.ceil((region.n1 - region.n0) / grid.groupRows) * grid.sChunks;
    this.#rowBlocks = (region.c1 - region.c0) * grid.sChunks;
    this.#copy = task.copyOut === null ? null : new CopyOutWriter(task, this.#bpe, views);
    this.#rows = new RowBlocks(task, kernel, layout, this.#bpe, this.#g0, this.#copy, (g) => this.#rowGroup(g));
  }

  /**
   * Statistics of work items [lo, hi): row groups in row mode; in plane mode blocks in memory
   * order, which with one row a row group lie end to end and go in runs of equal blocks, one
   * kernel call a run (statsPlaneGroups: the same partials as a call a block). False when
   * cancelled.
   */
  statsRange(lo: number, hi: number, cancelled: () => boolean): boolean {
    const { grid, backward } = this.#task;
    if (grid.mode === 'row' || grid.groupRows !== 1 || backward) {
      for (let i = lo; i < hi; i++) {
        if (cancelled()) return false;
        if (grid.mode === 'row') this.#rows.stats(Math.floor(i / grid.bands), ...this.#rows.band(i % grid.bands));
        else this.#planeBlock(this.#channelOf(i), this.#localOf(i), false);
      }
      return true;
    }
    const { sChunks } = grid;
    const last = grid.S - (sChunks - 1) * grid.sChunkLen;
    for (let i = lo; i < hi;) {
      if (cancelled()) return false;
      const k = i % sChunks;
      const cl = this.#channelOf(i);
      const local = this.#localOf(i);
      let n: number;
      if (sChunks === 1) {
        // Whole channels of one row, S elements apart, partials a row group's apart.
        n = Math.min(hi - i, this.#task.region.c1 - this.#task.region.c0 - cl);
        this.#planeStatsRun(cl, local, n, grid.S, grid.nGroups * PARTIAL_BYTES, grid.S);
      } else {
        // Stretches of one channel of the same length (the plane's last may be shorter).
        const equal = last === grid.sChunkLen ? sChunks : sChunks - 1;
        n = k < equal ? Math.min(hi - i, equal - k) : 1;
        const len = k < equal ? grid.sChunkLen : last;
        this.#planeStatsRun(cl, local, n, grid.sChunkLen, PARTIAL_BYTES, len);
      }
      i += n;
    }
    return true;
  }

  /**
   * Statistics of `n` one-row blocks of `len` elements from block `local` of region channel cl,
   * block j `stride` elements after the first, its partial `outStride` bytes after the first's.
   */
  #planeStatsRun(cl: number, local: number, n: number, stride: number, outStride: number, len: number): void {
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
   * Normalizes (or, backward, applies the gradient to) work items [lo, hi), last first when
   * `reverse`. False when cancelled.
   *
   * Plane-mode items with one row a row group lie end to end in memory, a channel's stretches
   * and then the next channel's: they go in runs, one kernel call a run (normalizeRows for whole
   * channels, with each channel's parameters; normalizePlanes, or backward bwdApplyPlanes, for the
   * stretches of one channel), not one call a block. A call ends its stream of loads: 2048 calls
   * of 50 KB took 5.6-5.9 ms where 4-block calls took 5.0-5.4 and one call 4.9-5.1 (A's 100 MB,
   * one thread). Both kernels compute an element the same way either way: the bits do not change.
   */
  normalizeRange(lo: number, hi: number, reverse: boolean, cancelled: () => boolean): boolean {
    const { grid } = this.#task;
    if (grid.mode === 'plane' && grid.groupRows !== 1 && !reverse) return this.#rowGroupsInOrder(lo, hi, cancelled);
    if (grid.mode === 'row' || grid.groupRows !== 1) {
      for (let j = 0; j < hi - lo; j++) {
        if (cancelled()) return false;
        const i = reverse ? hi - 1 - j : lo + j;
        if (grid.mode === 'row') this.#rows.normalize(Math.floor(i / grid.bands), ...this.#rows.band(i % grid.bands));
        else this.#planeBlock(this.#channelOf(i), this.#localOf(i), true);
      }
      return true;
    }
    const { sChunks } = grid;
    let i = reverse ? hi : lo;
    while (reverse ? i > lo : i < hi) {
      if (cancelled()) return false;
      // The run that starts (forward) or ends (reverse) at item i, within one row group.
      const first = reverse ? i - 1 : i;
      const k = first % sChunks;
      const cl = this.#channelOf(first);
      const left = reverse ? i - lo : hi - i;
      const partial = reverse ? k !== sChunks - 1 : k !== 0;
      if (partial || left < sChunks) {
        // Stretches of channel cl only.
        const n = Math.min(reverse ? k + 1 : sChunks - k, left);
        const k0 = reverse ? k - n + 1 : k;
        this.#planeRun(cl, this.#localOf(first) - (k - k0), k0, n);
        i += reverse ? -n : n;
      } else {
        // Whole channels, up to the row group's edge and PLANE_RUN_CHANNELS_MAX.
        const channels = this.#task.region.c1 - this.#task.region.c0;
        const room = reverse ? cl + 1 : channels - cl;
        const n = Math.min(room, Math.floor(left / sChunks), PLANE_RUN_CHANNELS_MAX);
        this.#channelsRun(reverse ? cl - n + 1 : cl, n, this.#localOf(first) - k, reverse);
        i += reverse ? -n * sChunks : n * sChunks;
      }
    }
    return true;
  }

  /**
   * Eval-mode backward with applied coefficients (Task.backward 'eval-applied'): work items
   * [lo, hi) one at a time, each block's sums and then its dx, while its x and dy are in cache
   * (one pass over the tensor instead of two). The same kernel calls on the same blocks as the
   * two passes: the same bits. False when cancelled.
   */
  statsApplyRange(lo: number, hi: number, cancelled: () => boolean): boolean {
    const { grid } = this.#task;
    for (let i = lo; i < hi; i++) {
      if (cancelled()) return false;
      if (grid.mode === 'row') {
        const g = Math.floor(i / grid.bands);
        const [c0, c1] = this.#rows.band(i % grid.bands);
        this.#rows.stats(g, c0, c1);
        this.#rows.normalize(g, c0, c1);
      } else {
        const cl = this.#channelOf(i);
        const local = this.#localOf(i);
        this.#planeBlock(cl, local, false);
        this.#planeBlock(cl, local, true);
      }
    }
    return true;
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
   * each run; see normalizeRange for normalizeRows).
   */
  #rowGroupsInOrder(lo: number, hi: number, cancelled: () => boolean): boolean {
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

  /** Whether reduceChannel can normalize another channel alongside (see there). */
  get pipelines(): boolean {
    const { grid } = this.#task;
    return grid.mode === 'plane' && grid.sChunks === 1;
  }

  /**
   * Reduces channel cl's blocks and merges them; normalizeChannel does the rest of a fused
   * channel. The statistics take up to PLANE_BLOCKS_MAX row groups at a time (same stretch, so
   * same shape): a channel's blocks lie a row of the tensor apart, and the kernel reads them in
   * turns. With `prev` (a region channel reduced and merged before; -1 for none, and only where
   * `pipelines`), prev is normalized (backward: gets its dx) in step with them, last row groups
   * first (statsNormPlanes, bwdStatsApplyPlanes: its stores go with cl's loads), and needs no
   * normalizeChannel.
   */
  reduceChannel(cl: number, prev: number, cancelled: () => boolean): boolean {
    const { grid } = this.#task;
    const groups = this.#regionBlocks / grid.sChunks;
    for (let g = 0; g < groups;) {
      if (cancelled()) return false;
      const count = this.#groupsAt(g, groups);
      if (prev < 0) this.#planeStretches(cl, g, count);
      else this.#planeStatsNorm(cl, g, prev, groups - g - count, count);
      g += count;
    }
    const c = this.#task.region.c0 + cl;
    mergeChannels(this.#kernel, this.#task, this.#layout, c, c + 1);
    return true;
  }

  /** Normalizes channel cl (reduced and merged), last block first, while it is still in cache. */
  normalizeChannel(cl: number, cancelled: () => boolean): boolean {
    for (let local = this.#regionBlocks - 1; local >= 0; local--) {
      if (cancelled()) return false;
      this.#planeBlock(cl, local, true);
    }
    return true;
  }

  /**
   * Row mode: reduces band b over every row group, merges its channels, and normalizes it, last
   * row group first, while the band (at most BAND_BLOCK_ELEMENTS) is still in cache.
   */
  fuseBand(b: number, cancelled: () => boolean): boolean {
    const groups = this.#regionBlocks;
    const [c0, c1] = this.#rows.band(b);
    for (let g = 0; g < groups; g++) {
      if (cancelled()) return false;
      this.#rows.stats(g, c0, c1);
    }
    mergeChannels(this.#kernel, this.#task, this.#layout, c0, c1);
    for (let g = groups - 1; g >= 0; g--) {
      if (cancelled()) return false;
      this.#rows.normalize(g, c0, c1);
    }
    return true;
  }

  /**
   * `phased`: statistics of region channels [cl0, cl1) over the row groups this task claims, a
   * claim at a time, row group by row group (two at a time, read in turns, as in reduceChannel).
   * False when cancelled.
   */
  statsGroups(cl0: number, cl1: number, claims: Claims, cancelled: () => boolean): boolean {
    for (let g = claims.next(); g >= 0; g = claims.next()) {
      for (const end = claims.end(); g < end;) {
        if (cancelled()) return false;
        g += this.#reduceGroups(cl0, cl1, g, end);
      }
    }
    return true;
  }

  /**
   * `phased`: statistics of region channels [cl0, cl1) over row groups from g (before `end`): in
   * plane mode as many as #groupsAt allows, in row mode one (a row group of every row's channels
   * [cl0, cl1), one statsRows call). Returns how many.
   */
  #reduceGroups(cl0: number, cl1: number, g: number, end: number): number {
    if (this.#task.grid.mode === 'row') {
      this.#rows.stats(g, cl0, cl1);
      return 1;
    }
    const count = this.#groupsAt(g, end);
    for (let cl = cl0; cl < cl1; cl++) this.#planeStretches(cl, g, count);
    return count;
  }

  /**
   * `phased`: normalizes what statsGroups reduced, each range's last row group first (Claims.mirror).
   * False when cancelled.
   */
  normalizeGroups(cl0: number, cl1: number, claims: Claims, cancelled: () => boolean): boolean {
    for (let i = claims.next(); i >= 0; i = claims.next()) {
      for (const end = claims.end(); i < end; i++) {
        if (cancelled()) return false;
        this.#normalizeGroup(cl0, cl1, claims.mirror(i));
      }
    }
    return true;
  }

  /**
   * `phased`, a phase after the first: statistics of region channels [cl0, cl1) over the row
   * groups claimed from `stats` (as statsGroups), and in step with them the normalization
   * (backward: dx) of channels [pl0, pl1), the phase before, reduced and merged at the last
   * barrier, over the row groups claimed from `norm` (as normalizeGroups, last first). Where a
   * task holds a claim of each, the i-th channel of one phase goes with the i-th of the other, a
   * row group of each at a time, in one kernel call (statsNormPlanes, bwdStatsApplyPlanes; row
   * mode: a row group of each group's channels, statsNormRows): the statistics are compute-bound
   * and the normalization waits on memory, so the two overlap. When
   * one counter runs dry, the rest of the other goes alone. The same blocks, partials and outputs
   * as the two passes apart: the bits do not change. False when cancelled.
   */
  statsNormGroups(cl0: number, cl1: number, stats: Claims, pl0: number, pl1: number, norm: Claims, cancelled: () => boolean): boolean {
    let g = stats.next();
    let gEnd = g < 0 ? 0 : stats.end();
    let i = norm.next();
    let iEnd = i < 0 ? 0 : norm.end();
    while (g >= 0 || i >= 0) {
      if (cancelled()) return false;
      if (i < 0) {
        g += this.#reduceGroups(cl0, cl1, g, gEnd);
      } else if (g < 0) {
        this.#normalizeGroup(pl0, pl1, norm.mirror(i));
        i++;
      } else if (this.#task.grid.mode === 'row') {
        this.#rows.statsNorm(g, cl0, cl1, norm.mirror(i), pl0, pl1);
        g++;
        i++;
      } else {
        // Row groups g .. g + count - 1 reduced; h .. h + count - 1 (the claim's last first) normalized.
        const count = Math.min(this.#groupsAt(g, gEnd), iEnd - i);
        const h = norm.mirror(i + count - 1);
        const pairs = Math.min(cl1 - cl0, pl1 - pl0);
        for (let j = 0; j < pairs; j++) this.#pairStatsNorm(cl0 + j, g, pl0 + j, h, count);
        for (let cl = cl0 + pairs; cl < cl1; cl++) this.#planeStretches(cl, g, count);
        for (let q = count - 1; q >= 0; q--) this.#normalizeGroup(pl0 + pairs, pl1, h + q);
        g += count;
        i += count;
      }
      if (g >= gEnd && g >= 0) {
        g = stats.next();
        gEnd = g < 0 ? 0 : stats.end();
      }
      if (i >= iEnd && i >= 0) {
        i = norm.next();
        iEnd = i < 0 ? 0 : norm.end();
      }
    }
    return true;
  }

  /** Normalizes region channels [cl0, cl1) of region row group g (see normalizeGroups). */
  #normalizeGroup(cl0: number, cl1: number, g: number): void {
    const { grid } = this.#task;
    if (grid.mode === 'row') {
      this.#rows.normalize(g, cl0, cl1);
      return;
    }
    if (grid.groupRows === 1) {
      // One row: the group's channels lie end to end, one run (see normalizeRange).
      for (let cl = cl0; cl < cl1; cl += PLANE_RUN_CHANNELS_MAX) {
        this.#channelsRun(cl, Math.min(PLANE_RUN_CHANNELS_MAX, cl1 - cl), g * grid.sChunks, false);
      }
      return;
    }
    for (let cl = cl1 - 1; cl >= cl0; cl--) {
      for (let k = grid.sChunks - 1; k >= 0; k--) this.#planeBlock(cl, g * grid.sChunks + k, true);
    }
  }

  /**
   * Statistics of region channel cl's row groups g .. g + count - 1 and the normalization (dx) of
   * channel prev's row groups h .. h + count - 1 in step: #planeStatsNorm for one stretch a plane;
   * for planes in stretches (one row a row group), a row group of each at a time, two stretches
   * of equal length a call (the backward op, one).
   */
  #pairStatsNorm(cl: number, g: number, prev: number, h: number, count: number): void {
    const { grid, region } = this.#task;
    if (grid.sChunks === 1) {
      this.#planeStatsNorm(cl, g, prev, h, count);
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

  /**
   * How many row groups from g (before `end`) one statsPlanes call takes: up to PLANE_BLOCKS_MAX
   * of the same shape. Only the region's last row group can be short; it goes alone.
   */
  #groupsAt(g: number, end: number): number {
    const count = Math.min(PLANE_BLOCKS_MAX, end - g);
    return count > 1 && this.#rowGroup(g + count - 1).rows !== this.#task.grid.groupRows ? count - 1 : count;
  }

  /**
   * Statistics of region channel cl's row groups g .. g + count - 1, every stretch: the stretches
   * of equal length in one kernel call (statsPlaneGroups), the plane's shorter last one alone.
   */
  #planeStretches(cl: number, g: number, count: number): void {
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
   * Statistics of region channel cl's row groups g .. g + count - 1 (one stretch: `pipelines`),
   * and the normalization (backward: dx) of region channel prev's row groups h .. h + count - 1 in
   * step with them: one statsNormPlanes call (backward, one bwdStatsApplyPlanes call a row group)
   * where every one of those row groups is whole; where one is the region's short last row group,
   * the two apart.
   */
  #planeStatsNorm(cl: number, g: number, prev: number, h: number, count: number): void {
    const { grid, region } = this.#task;
    const full = (first: number): boolean => this.#rowGroup(first + count - 1).rows === grid.groupRows;
    if (!full(g) || !full(h)) {
      this.#planeStretches(cl, g, count);
      for (let i = count - 1; i >= 0; i--) this.#planeBlock(prev, h + i, true);
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

  /** Byte offset of region channel cl's run in the first row of region row group g, in an array at `base` (row stride `stride`). */
  #at(base: number, stride: number, g: number, cl: number): number {
    return base + (this.#rowGroup(g).rowOff * stride + cl * this.#task.grid.S) * this.#bpe;
  }

  /** Index in the float64 view of region channel cl's four parameters (as the merge or the prep left them). */
  #paramsIndex(cl: number): number {
    return (this.#layout.paramsByte + (this.#task.region.c0 + cl) * PARAM_BYTES) / 8;
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

  #channelOf(b: number): number {
    return Math.floor((b % this.#rowBlocks) / this.#task.grid.sChunks);
  }

  #localOf(b: number): number {
    const { sChunks } = this.#task.grid;
    return Math.floor(b / this.#rowBlocks) * sChunks + (b % sChunks);
  }

  /** Plane mode: block `local` of region channel `cl` is row group g0 + floor(local / sChunks), stretch local % sChunks. */
  #planeBlock(cl: number, local: number, normalize: boolean): void {
    const { grid, region } = this.#task;
    const g = this.#g0 + Math.floor(local / grid.sChunks);
    const k = local % grid.sChunks;
    const first = g * grid.groupRows;
    const rows = Math.min(first + grid.groupRows, region.n1) - first;
    const sOff = k * grid.sChunkLen;
    const len = Math.min(sOff + grid.sChunkLen, grid.S) - sOff;
    const rowOff = first - region.n0;
    const off = cl * grid.S + sOff;
    const c = region.c0 + cl;
    this.#run(c, rowOff, off, rows, len, partialByte(grid, this.#layout.partialsByte, c, g, k), normalize);
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

  /** Stretches k0 .. k0 + n - 1 of region channel cl in the one-row row group of block `local` (its stretch k0). */
  #planeRun(cl: number, local: number, k0: number, n: number): void {
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
  #channelsRun(cl: number, n: number, local: number, reverse: boolean): void {
    const { grid, region } = this.#task;
    if (this.#task.backward) {
      for (let j = 0; j < n; j++) this.#planeRun(reverse ? cl + n - 1 - j : cl + j, local, 0, grid.sChunks);
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

  #rowGroup(g: number): { rowOff: number; rows: number } {
    const { grid, region } = this.#task;
    const first = (this.#g0 + g) * grid.groupRows;
    return { rowOff: first - region.n0, rows: Math.min(first + grid.groupRows, region.n1) - first };
  }
}
