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

/**
 * Cuts an (N, C, S) tensor into blocks. A function of the shape alone: see `Grid`.
 */
export function planGrid(N: number, C: number, S: number): Grid {
  if (S >= PLANE_MIN_SPATIAL) {
    if (S <= BLOCK_ELEMENTS) {
      const groupRows = Math.max(1, Math.floor(BLOCK_ELEMENTS / S));
      const nGroups = Math.ceil(N / groupRows);
      return { mode: 'plane', N, C, S, groupRows, nGroups, sChunks: 1, sChunkLen: S, blocksPerChannel: nGroups };
    }
    // Long planes are cut into equal stretches rather than BLOCK_ELEMENTS and a short tail.
    const sChunks = Math.ceil(S / BLOCK_ELEMENTS);
    const sChunkLen = Math.ceil(S / sChunks);
    return { mode: 'plane', N, C, S, groupRows: 1, nGroups: N, sChunks, sChunkLen, blocksPerChannel: N * sChunks };
  }
  const rowLen = C * S;
  const groupRows = Math.max(1, Math.min(Math.ceil(N / ROW_GROUPS_TARGET), Math.floor(ROW_GROUP_MAX_ELEMENTS / rowLen)));
  const nGroups = Math.ceil(N / groupRows);
  return { mode: 'row', N, C, S, groupRows, nGroups, sChunks: 1, sChunkLen: S, blocksPerChannel: nGroups };
}

/**
 * Whether a training call should use fused tasks (each worker owns whole channels and normalizes
 * a channel right after reducing it, while it is in cache) rather than a statistics phase, a
 * merge on the main thread and a normalization phase. Fused needs whole channels in the staging
 * region and enough channels to share out: at most 25% imbalance between threads.
 */
export function shouldFuse(grid: Grid, regionChannels: number, regionHasAllRows: boolean, threads: number): boolean {
  if (grid.mode !== 'plane' || !regionHasAllRows) return false;
  if (threads <= 1) return true;
  const perThread = regionChannels / threads;
  return Math.ceil(perThread) <= 1.25 * perThread;
}

/**
 * Channel groups for a `phased` split (see TaskOp), as boundaries [0, ..., channels], each group
 * at most `cacheBytes` of input so that its two passes (statistics, then normalization) find it
 * in the cache. Null when a single barrier is as good: the input fits `cacheBytes` anyway, a
 * single channel does not, there is one channel, or too few row groups to share between threads.
 * The groups change which blocks a task visits when, never the blocks: the bits stay the same.
 */
export function planPhases(grid: Grid, channels: number, bytesPerElement: number, threads: number, cacheBytes: number): number[] | null {
  if (grid.mode !== 'plane' || channels < 2 || grid.nGroups < 2 * threads) return null;
  const channelBytes = grid.N * grid.S * bytesPerElement;
  if (channelBytes * channels <= cacheBytes || channelBytes > cacheBytes) return null;
  const count = Math.ceil(channels / Math.floor(cacheBytes / channelBytes));
  return Array.from({ length: count + 1 }, (_, i) => Math.round((i * channels) / count));
}

/** A staging chunk: rows [n0, n1) of channels [c0, c1). */
export interface Box {
  readonly n0: number;
  readonly n1: number;
  readonly c0: number;
  readonly c1: number;
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
