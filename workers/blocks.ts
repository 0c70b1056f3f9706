/**
 * How a task's work items map to blocks of its region, in the order of its path (a range of
 * items, a fused channel or band, a phase), and the merge of a channel range, which fused tasks
 * and the barriers run. The kernel calls on the blocks are plane-blocks.ts's (plane mode) and
 * row-blocks.ts's (row mode).
 */
import { type Kernel, PLANE_RUN_CHANNELS_MAX } from './kernels/kernel.js';
import type { Claims, MemoryViews } from './execute.js';
import { CopyOutWriter } from './copy-out.js';
import { PlaneBlocks } from './plane-blocks.js';
import { bytesPerElement, type Task } from './protocol.js';
import { PARTIAL_BYTES, type ScratchLayout } from './scratch.js';
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
      grid.N * grid.S, task.backward === 'eval-applied',
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
  readonly #layout: ScratchLayout;
  readonly #regionBlocks: number;
  /** Blocks per row group of the region: channels x stretches. */
  readonly #rowBlocks: number;
  readonly #planes: PlaneBlocks;
  readonly #rows: RowBlocks;

  constructor(task: Task, kernel: Kernel, views: MemoryViews, layout: ScratchLayout) {
    const { grid, region } = task;
    this.#task = task;
    this.#kernel = kernel;
    this.#layout = layout;
    const bpe = bytesPerElement(task.dtype);
    const g0 = region.n0 / grid.groupRows;
    this.#regionBlocks = Math.ceil((region.n1 - region.n0) / grid.groupRows) * grid.sChunks;
    this.#rowBlocks = (region.c1 - region.c0) * grid.sChunks;
    const copy = task.copyOut === null ? null : new CopyOutWriter(task, bpe, views);
    this.#planes = new PlaneBlocks(task, kernel, views, layout, bpe, g0, copy);
    this.#rows = new RowBlocks(task, kernel, layout, bpe, g0, copy);
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
        else this.#planes.block(this.#channelOf(i), this.#localOf(i), false);
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
        this.#planes.statsRun(cl, local, n, grid.S, grid.nGroups * PARTIAL_BYTES, grid.S);
      } else {
        // Stretches of one channel of the same length (the plane's last may be shorter).
        const equal = last === grid.sChunkLen ? sChunks : sChunks - 1;
        n = k < equal ? Math.min(hi - i, equal - k) : 1;
        const len = k < equal ? grid.sChunkLen : last;
        this.#planes.statsRun(cl, local, n, grid.sChunkLen, PARTIAL_BYTES, len);
      }
      i += n;
    }
    return true;
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
    if (this.#task.wholeRows) {
      // Items are rows: the claim's rows in one call (the same operations on every element).
      if (cancelled()) return false;
      this.#rows.normalizeRows(lo, hi);
      return true;
    }
    if (grid.mode === 'plane' && grid.groupRows !== 1 && !reverse) return this.#planes.normalizeInOrder(lo, hi, cancelled);
    if (grid.mode === 'row' || grid.groupRows !== 1) {
      for (let j = 0; j < hi - lo; j++) {
        if (cancelled()) return false;
        const i = reverse ? hi - 1 - j : lo + j;
        if (grid.mode === 'row') this.#rows.normalize(Math.floor(i / grid.bands), ...this.#rows.band(i % grid.bands));
        else this.#planes.block(this.#channelOf(i), this.#localOf(i), true);
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
        this.#planes.stretchRun(cl, this.#localOf(first) - (k - k0), k0, n);
        i += reverse ? -n : n;
      } else {
        // Whole channels, up to the row group's edge and PLANE_RUN_CHANNELS_MAX.
        const channels = this.#task.region.c1 - this.#task.region.c0;
        const room = reverse ? cl + 1 : channels - cl;
        const n = Math.min(room, Math.floor(left / sChunks), PLANE_RUN_CHANNELS_MAX);
        this.#planes.channelsRun(reverse ? cl - n + 1 : cl, n, this.#localOf(first) - k, reverse);
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
        this.#planes.block(cl, local, false);
        this.#planes.block(cl, local, true);
      }
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
      const count = this.#planes.groupsAt(g, groups);
      if (prev < 0) this.#planes.stretches(cl, g, count);
      else this.#planes.statsNorm(cl, g, prev, groups - g - count, count);
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
      this.#planes.block(cl, local, true);
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
   * plane mode as many as PlaneBlocks.groupsAt allows, in row mode one (a row group of every row's channels
   * [cl0, cl1), one statsRows call). Returns how many.
   */
  #reduceGroups(cl0: number, cl1: number, g: number, end: number): number {
    if (this.#task.grid.mode === 'row') {
      this.#rows.stats(g, cl0, cl1);
      return 1;
    }
    const count = this.#planes.groupsAt(g, end);
    for (let cl = cl0; cl < cl1; cl++) this.#planes.stretches(cl, g, count);
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
        const count = Math.min(this.#planes.groupsAt(g, gEnd), iEnd - i);
        const h = norm.mirror(i + count - 1);
        const pairs = Math.min(cl1 - cl0, pl1 - pl0);
        for (let j = 0; j < pairs; j++) this.#planes.pairStatsNorm(cl0 + j, g, pl0 + j, h, count);
        for (let cl = cl0 + pairs; cl < cl1; cl++) this.#planes.stretches(cl, g, count);
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
        this.#planes.channelsRun(cl, Math.min(PLANE_RUN_CHANNELS_MAX, cl1 - cl), g * grid.sChunks, false);
      }
      return;
    }
    for (let cl = cl1 - 1; cl >= cl0; cl--) {
      for (let k = grid.sChunks - 1; k >= 0; k--) this.#planes.block(cl, g * grid.sChunks + k, true);
    }
  }

  #channelOf(b: number): number {
    return Math.floor((b % this.#rowBlocks) / this.#task.grid.sChunks);
  }

  #localOf(b: number): number {
    const { sChunks } = this.#task.grid;
    return Math.floor(b / this.#rowBlocks) * sChunks + (b % sChunks);
  }

}
