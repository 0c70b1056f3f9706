import type { Grid } from '../workers/protocol.js';

/**
 * Target elements per block. 16 Ki elements (64 KiB of float32) keep a block in L2 while a
 * kernel works on it, and keep the partials few: a [32, 64, 112, 112] input has 2,048.
 */
export const BLOCK_ELEMENTS = 16384;
/** Below this spatial size a channel's runs are too short to stream; blocks become whole rows. */
export const PLANE_MIN_SPATIAL = 1024;
/** Row-mode row groups: at most this many per channel (enough to keep 16 threads busy)... */
const ROW_GROUPS_TARGET = 16;
/** ...and at most this many elements each, so that one group fits a staging chunk. */
const ROW_GROUP_MAX_ELEMENTS = 1 << 20;
/** A band of every row fits L2 up to this many elements (512 KiB of float32): it may be fused. */
export const BAND_BLOCK_ELEMENTS = 1 << 17;
/** Elements of a band in one row: runs of 4-32 KiB of float32 stream well. */
const BAND_MIN_ELEMENTS = 1024;
const BAND_MAX_ELEMENTS = 8192;
/** Row groups of fewer values a channel than this are thin: see planGrid. */
const THIN_GROUP_VALUES = 64;
/** A tall row group (a staging chunk's unit: whole rows) holds at most this many elements. */
const TALL_GROUP_MAX_ELEMENTS = 1 << 22;

/**
 * Cuts an (N, C, S) tensor into blocks. A function of the shape alone: see `Grid`.
 *
 * Row mode cuts the rows into row groups, at most ROW_GROUPS_TARGET of them. Each row group gives
 * every channel a partial, and each normalization of a row group reads every channel's
 * parameters: where a row group would hold only a few values a channel (thin: few rows, as
 * BatchNorm1d on [16, 4096] or [64, 65536]), those per-channel costs outweigh the data. There the
 * row groups are made tall (up to every row, a block of up to ~BAND_BLOCK_ELEMENTS): few partials
 * a channel. Rows long enough for two bands are also cut into bands of channels, each band's row
 * runs 1024-8192 elements long, so that the threads share even a few rows, and a band of every
 * row is small enough to reduce and normalize while it is in cache (`fused`).
 */
export function planGrid(N: number, C: number, S: number): Grid {
  if (S >= PLANE_MIN_SPATIAL) {
    if (S <= BLOCK_ELEMENTS) {
      const groupRows = Math.max(1, Math.floor(BLOCK_ELEMENTS / S));
      const nGroups = Math.ceil(N / groupRows);
      return { mode: 'plane', N, C, S, groupRows, nGroups, sChunks: 1, sChunkLen: S, blocksPerChannel: nGroups, bandChannels: C, bands: 1 };
    }
    // Long planes are cut into equal stretches rather than BLOCK_ELEMENTS and a short tail.
    const sChunks = Math.ceil(S / BLOCK_ELEMENTS);
    const sChunkLen = Math.ceil(S / sChunks);
    return { mode: 'plane', N, C, S, groupRows: 1, nGroups: N, sChunks, sChunkLen, blocksPerChannel: N * sChunks, bandChannels: C, bands: 1 };
  }
  const rowLen = C * S;
  const narrowRows = Math.max(1, Math.min(Math.ceil(N / ROW_GROUPS_TARGET), Math.floor(ROW_GROUP_MAX_ELEMENTS / rowLen)));
  if (narrowRows * S >= THIN_GROUP_VALUES) {
    const nGroups = Math.ceil(N / narrowRows);
    return { mode: 'row', N, C, S, groupRows: narrowRows, nGroups, sChunks: 1, sChunkLen: S, blocksPerChannel: nGroups, bandChannels: C, bands: 1 };
  }
  // Thin row groups: tall ones instead. Bands of equal width (a short last band would be a claim
  // of little work), at least two where the rows hold two of BAND_MIN_ELEMENTS, so that two
  // threads share even a few rows. Channels in lanes (S = 1): widths in whole cache lines of
  // float32 (16 channels).
  const bandTarget = Math.min(BAND_MAX_ELEMENTS, Math.max(BAND_MIN_ELEMENTS, Math.floor(BAND_BLOCK_ELEMENTS / N)));
  const granule = S === 1 ? 16 : 1;
  const granules = Math.ceil(C / granule);
  const perBand = Math.max(1, Math.floor(bandTarget / (granule * S)));
  const fewest = rowLen >= 2 * BAND_MIN_ELEMENTS ? 2 : 1;
  const bandCount = Math.min(granules, Math.max(fewest, Math.ceil(granules / perBand)));
  const bandChannels = Math.min(C, granule * Math.ceil(granules / bandCount));
  const tallest = Math.max(1, Math.min(
    N,
    Math.max(Math.ceil(N / ROW_GROUPS_TARGET), Math.floor(BAND_BLOCK_ELEMENTS / (bandChannels * S))),
    Math.floor(TALL_GROUP_MAX_ELEMENTS / rowLen),
  ));
  // Row groups of equal height too.
  const nGroups = Math.ceil(N / tallest);
  const groupRows = Math.ceil(N / nGroups);
  return {
    mode: 'row', N, C, S, groupRows, nGroups, sChunks: 1, sChunkLen: S, blocksPerChannel: nGroups,
    bandChannels, bands: Math.ceil(C / bandChannels),
  };
}

/**
 * Whether a training call should use fused tasks (each worker owns whole channels, or in row mode
 * whole bands, and normalizes one right after reducing it, while it is in cache) rather than a
 * statistics phase, a merge and a normalization phase. Fused needs every row in the staging
 * region, bands that fit the cache, and enough channels or bands to share out: at most 25%
 * imbalance between threads.
 */
export function shouldFuse(grid: Grid, regionChannels: number, regionHasAllRows: boolean, threads: number): boolean {
  if (!regionHasAllRows) return false;
  // Row mode: bands of every row that fit the cache (a row-mode region holds every channel).
  if (grid.mode === 'row' && (grid.bands === 1 || grid.N * grid.bandChannels * grid.S > BAND_BLOCK_ELEMENTS)) return false;
  const items = grid.mode === 'row' ? grid.bands : regionChannels;
  if (threads <= 1) return true;
  const perThread = items / threads;
  return Math.ceil(perThread) <= 1.25 * perThread;
}

/**
 * Channel groups for a `phased` split (see TaskOp), as boundaries [0, ..., channels], each group
 * at most `cacheBytes` of input so that its two passes (statistics, then normalization) find it
 * in the cache; a channel a group where one channel is larger than that, for the overlap of a
 * group's normalization with the next group's statistics alone ([16, 3, 512, 512], 16.8 MB a
 * channel: training 1.47-1.55 of the floor against 1.74-1.89 with one barrier, 2 threads). Null
 * when a single barrier is as good: the input fits `cacheBytes`, there is one channel, or too
 * few row groups to share between threads. The groups change which blocks a task visits when,
 * never the blocks: the bits stay the same.
 */
export function planPhases(grid: Grid, channels: number, bytesPerElement: number, threads: number, cacheBytes: number): number[] | null {
  if (grid.mode === 'row') return planRowPhases(grid, bytesPerElement, threads, cacheBytes);
  if (channels < 2 || grid.nGroups < 2 * threads) return null;
  const channelBytes = grid.N * grid.S * bytesPerElement;
  if (channelBytes * channels <= cacheBytes) return null;
  const count = Math.ceil(channels / Math.max(1, Math.floor(cacheBytes / channelBytes)));
  return Array.from({ length: count + 1 }, (_, i) => Math.round((i * channels) / count));
}

/** Channel groups of a row-mode `phased` call (see planRowPhases). */
const ROW_PHASES = 4;

/**
 * Row mode (runs of S < PLANE_MIN_SPATIAL, every channel in every row group): ROW_PHASES equal
 * groups of channels for a call larger than `cacheBytes`, so that each group's statistics go in
 * step with the normalization (backward: dx) of the group before (statsNormRows,
 * bwdStatsApplyRows: a run of each in turn). B [256, 256, 14, 14] at 2 threads, training ÷
 * floor, one barrier -> 2, 3, 4, 8 groups: 1.80-1.82 -> 1.54-1.68, 1.63, 1.54-1.69, 1.65-1.70;
 * [128, 512, 7, 7] 2.59 -> 2.48, 2.27, 1.85. B's backward, 4 groups: 2.59-2.93 -> 2.46-2.80
 * (medians 2.83 -> 2.59, seven runs each: the first machine; on the third and fourth they lost,
 * so a pool without `cacheBytes` does not ask: engine.ts, phasesOf). Null for channels in lanes (S = 1: the kernels have no
 * step to interleave, so the groups would only add barriers), for bands (fused or wide rows), for
 * fewer channels than groups or too few row groups to share.
 */
function planRowPhases(grid: Grid, bytesPerElement: number, threads: number, cacheBytes: number): number[] | null {
  const { N, C, S } = grid;
  if (S === 1 || grid.bands !== 1 || C < ROW_PHASES || grid.nGroups < 2 * threads) return null;
  if (N * C * S * bytesPerElement <= cacheBytes) return null;
  return Array.from({ length: ROW_PHASES + 1 }, (_, i) => Math.round((i * C) / ROW_PHASES));
}

/** A staging chunk: rows [n0, n1) of channels [c0, c1). */
export interface Box {
  readonly n0: number;
  readonly n1: number;
  readonly c0: number;
  readonly c1: number;
}

/**
 * Elements of the smallest staging chunk planBoxes can make: one row group of one channel in
 * plane mode, of every channel in row mode.
 */
export function smallestBox(grid: Grid): number {
  return grid.groupRows * grid.S * (grid.mode === 'plane' ? 1 : grid.C);
}

/**
 * Cuts the tensor into staging chunks of at most `budget` elements, on row-group boundaries so
 * that every block lies in one chunk and the grid, hence every bit of the result, is the same as
 * for a single chunk. Prefers chunks with every row of a few channels (they allow fused tasks),
 * then chunks of whole rows. Returns null when not even one row group of one channel fits.
 */
export function planBoxes(grid: Grid, budget: number): Box[] | null {
  const { N, C, S, groupRows } = grid;
  if (N * C * S <= budget) return [{ n0: 0, n1: N, c0: 0, c1: C }];
  const boxes: Box[] = [];
  if (grid.mode === 'plane' && N * S <= budget) {
    const perBox = Math.floor(budget / (N * S));
    for (let c0 = 0; c0 < C; c0 += perBox) boxes.push({ n0: 0, n1: N, c0, c1: Math.min(C, c0 + perBox) });
    return boxes;
  }
  const groupElements = groupRows * C * S;
  if (groupElements <= budget) {
    const rows = Math.floor(budget / groupElements) * groupRows;
    for (let n0 = 0; n0 < N; n0 += rows) boxes.push({ n0, n1: Math.min(N, n0 + rows), c0: 0, c1: C });
    return boxes;
  }
  if (grid.mode === 'plane' && groupRows * S <= budget) {
    const perBox = Math.floor(budget / (groupRows * S));
    for (let n0 = 0; n0 < N; n0 += groupRows) {
      for (let c0 = 0; c0 < C; c0 += perBox) {
        boxes.push({ n0, n1: Math.min(N, n0 + groupRows), c0, c1: Math.min(C, c0 + perBox) });
      }
    }
    return boxes;
  }
  return null;
}
