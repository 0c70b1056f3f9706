/**
 * The other half of the contract between the main thread and the workers (protocol.ts has the
 * messages): the layout of a call's scratch area on the pool's shared memory, its flags and claim
 * counters, the interleaved parameters, the per-channel arrays the main thread copies in and out,
 * and the partial statistics. Offsets are in bytes.
 */
import type { Grid, Task } from './protocol.js';

/**
 * Bytes of one partial, four float64: (count, mean, m2, lo), the mean rounded to float64 and lo
 * what that rounding left out (the block's mean is mean + lo, exactly: a TwoSum of its shift and
 * its shifted mean), so that merging can take the blocks' means relative to one another without
 * the rounding of their common offset (src/merge.ts). A backward partial is (count, Σdy,
 * Σdy·(x - mean), unused).
 */
export const PARTIAL_BYTES = 32;
/**
 * Bytes of one channel's parameters, four float64, interleaved for the kernels: (mean, scale, bias,
 * unused) for normalizing; for backward, (mean, invstd, weight, 0) in and (a, k, mean, e) out.
 */
export const PARAM_BYTES = 32;

/**
 * Where a backward's statistics ops read each channel's mean within its parameters: the first
 * word of (mean, invstd, weight, 0), the third of the dx coefficients (a, 0, mean, 0) that an
 * 'apply' prep writes for Task.backward 'eval-applied'. In bytes.
 */
export function backwardMeanByte(backward: Task['backward']): number {
  return backward === 'eval-applied' ? 16 : 0;
}

/**
 * The per-channel float64 arrays of a call, C values each, one after another at
 * `ScratchLayout.channelsByte` in this order (index k starts at channelsByte + 8 * C * k). They are
 * what the main thread copies in and out, one typed-array copy an array, so that no loop over the
 * channels runs there (2^25 channels are allowed); the workers turn them into the interleaved
 * parameters and back:
 * - MEAN, VAR: forward: the batch mean and biased variance, written by the merge; eval: the
 *   running statistics, read by the prep. Backward: MEAN, and VAR where invstd is not given, are
 *   read by its prep.
 * - INVSTD: backward: 1 / sqrt(var + eps), given or made by its prep, read by it.
 * - WEIGHT, BIAS: forward: read by the merge or the eval prep (1 and 0 without affine). Backward:
 *   WEIGHT is read by its prep, and the merge writes dWeight over WEIGHT and dBias over BIAS.
 * - MEAN_LO: forward: what rounding the batch mean to MEAN left out (MEAN + MEAN_LO is exactly
 *   the merge's K + r, the mean without the rounding of its offset; 0 where the merge fell back to
 *   the rounded means), written by the merge, read into `ChannelStats` (src/merge.ts).
 */
export const CHANNEL_MEAN = 0;
export const CHANNEL_VAR = 1;
export const CHANNEL_INVSTD = 2;
export const CHANNEL_WEIGHT = 3;
export const CHANNEL_BIAS = 4;
export const CHANNEL_MEAN_LO = 5;
export const CHANNEL_ARRAYS = 6;

/**
 * Layout of the per-call scratch area. The first 32 bytes hold six Int32 words: the cancel flag
 * (set when the call's signal fires or a task failed), the count of arrivals at the `split` or
 * `phased` barriers, the number of channel groups whose parameters are ready (the flag the tasks
 * at a barrier wait on), the prep's claim counter and count of channels prepared (see
 * `Task.prep`), and the count of channels staged. Then the interleaved parameters, the
 * per-channel arrays (CHANNEL_MEAN ...), the partials, the float32 row parameters (row mode),
 * each 8-byte aligned, and last the claim counters (see `claimCounter`).
 */
export interface ScratchLayout {
  readonly cancelByte: number;
  readonly doneByte: number;
  readonly readyByte: number;
  readonly prepClaimByte: number;
  readonly prepDoneByte: number;
  /**
   * A pipelined training forward (Task.awaitStaged): how many of the region's channels the calling
   * thread has copied onto the pool so far.
   */
  readonly stagedByte: number;
  readonly paramsByte: number;
  /** The CHANNEL_ARRAYS per-channel arrays, C float64 each. */
  readonly channelsByte: number;
  readonly partialsByte: number;
  /**
   * Row mode: the float32 normalization parameters (hi, scale, shift) of every channel, three
   * arrays `rowParamStride(C)` floats apart, written once a channel by the WebAssembly merge or
   * eval prep of a float32 call, so that the row kernels need not convert a band's float64
   * parameters for every item. 0 in plane mode. The TypeScript kernels neither write nor read it.
   */
  readonly rowParamsByte: number;
  /**
   * The claim counters of the work items (Task.ranges): two Int32 words a range, the first pass's
   * (the only pass of `stats`, `normalize` and `fused`; the statistics of `split` and `phased`)
   * and the second's (their normalization).
   */
  readonly claimsByte: number;
  /** Bytes of the area, with claim counters for `ranges` ranges (scratchLayout's argument). */
  readonly totalBytes: number;
}

/** The claim counter of range `range` of pass `pass` (0 or 1), as an Int32 index. */
export function claimCounter(layout: ScratchLayout, pass: 0 | 1, range: number): number {
  return layout.claimsByte / 4 + 2 * range + pass;
}

/**
 * Raises a call's cancel flag and wakes any task waiting on it, on the ready flag, on the prep or
 * on the staged count: the calling thread's cancel (an abort, or a task that failed), and a
 * worker's where a test's fault has it cancel the call (`Fault` 'cancel').
 */
export function raiseCancel(i32: Int32Array, layout: ScratchLayout): void {
  Atomics.store(i32, layout.cancelByte / 4, 1);
  for (const byte of [layout.cancelByte, layout.readyByte, layout.prepDoneByte, layout.stagedByte]) Atomics.notify(i32, byte / 4);
}

/** Zeroes both passes' claim counters of `ranges` ranges. */
export function resetClaims(i32: Int32Array, layout: ScratchLayout, ranges: number): void {
  for (let r = 0; r < ranges; r++) {
    Atomics.store(i32, claimCounter(layout, 0, r), 0);
    Atomics.store(i32, claimCounter(layout, 1, r), 0);
  }
}

/**
 * Floats between the three arrays of the row parameters of C channels: C rounded up to 1024,
 * plus 336, so that the arrays start 1344 bytes apart modulo 4096. A prototype normalization read
 * 100 MB 40% slower (6.7 against 4.7 ms) when its parameter arrays and y shared their addresses
 * modulo 4096.
 */
export function rowParamStride(C: number): number {
  return Math.ceil(C / 1024) * 1024 + 336;
}

/**
 * The scratch layout of a call on `grid` at `scratchByte`. Only `totalBytes` depends on `ranges`
 * (the most ranges any of the call's dispatches cuts its items into: its thread count), so a
 * worker that reads the other offsets need not give it.
 */
export function scratchLayout(grid: Grid, scratchByte: number, ranges = 1): ScratchLayout {
  const paramsByte = scratchByte + 32;
  const channelsByte = paramsByte + grid.C * PARAM_BYTES;
  const partialsByte = channelsByte + grid.C * CHANNEL_ARRAYS * 8;
  const partialsEnd = partialsByte + grid.C * grid.blocksPerChannel * PARTIAL_BYTES;
  const rowParamsByte = grid.mode === 'row' ? Math.ceil(partialsEnd / 64) * 64 : 0;
  const claimsByte = grid.mode === 'row' ? rowParamsByte + 3 * rowParamStride(grid.C) * 4 : partialsEnd;
  return {
    cancelByte: scratchByte, doneByte: scratchByte + 4, readyByte: scratchByte + 8,
    prepClaimByte: scratchByte + 12, prepDoneByte: scratchByte + 16, stagedByte: scratchByte + 20,
    paramsByte, channelsByte, partialsByte, rowParamsByte, claimsByte, totalBytes: claimsByte + 8 * ranges - scratchByte,
  };
}

/** Byte offset of per-channel array k (CHANNEL_MEAN ...) of a call with C channels. */
export function channelArrayByte(channelsByte: number, C: number, k: number): number {
  return channelsByte + 8 * C * k;
}

/** Byte offset of the partial of channel `c`, row group `g`, stretch `k`. */
export function partialByte(grid: Grid, partialsByte: number, c: number, g: number, k: number): number {
  return partialsByte + ((c * grid.nGroups + g) * grid.sChunks + k) * PARTIAL_BYTES;
}
