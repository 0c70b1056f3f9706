/**
 * The contract between the main thread and the workers: the block grid and the task messages.
 * scratch.ts has the other half, the layout of a call's scratch area on the pool's shared memory.
 * Both sides import these two files, and nothing else describes a message or a shared-memory field.
 *
 * Offsets into the shared memory are in bytes, so that the TypeScript and the WebAssembly kernels
 * read the same message. Strides are in elements.
 */

/** Element type of a tensor. */
export type Dtype = 'float32' | 'float64';

/** Which implementation of the hot loops a pool runs. */
export type KernelName = 'js' | 'wasm';

/**
 * How a (N, C, S) tensor is cut into blocks, each yielding one partial statistic per channel.
 *
 * The grid is a function of the shape alone, never of the thread count or of the pool's memory,
 * and partials are merged in block order. That is what makes every result bitwise identical
 * whatever the number of threads or staging chunks.
 *
 * - `plane` mode (S >= PLANE_MIN_SPATIAL): a block is one channel's `groupRows` consecutive
 *   rows (n) of one `sChunkLen`-long stretch of its spatial plane.
 * - `row` mode (small S, rank 2 among them): a block is `groupRows` rows of one band of
 *   `bandChannels` channels (every channel, one band, unless the rows are wide: see planGrid),
 *   reduced with one accumulator per channel.
 */
export interface Grid {
  readonly mode: 'plane' | 'row';
  readonly N: number;
  readonly C: number;
  readonly S: number;
  /** Rows (indices along N) per block. */
  readonly groupRows: number;
  /** Number of row groups: ceil(N / groupRows). */
  readonly nGroups: number;
  /** Stretches each spatial plane is cut into (always 1 in row mode). */
  readonly sChunks: number;
  /** Length of each stretch but the last. */
  readonly sChunkLen: number;
  /** Partials per channel: nGroups * sChunks. */
  readonly blocksPerChannel: number;
  /** Row mode: channels per band (the last band may have fewer). C in plane mode. */
  readonly bandChannels: number;
  /** ceil(C / bandChannels): 1 in plane mode and for rows that are not cut into bands. */
  readonly bands: number;
}

/**
 * A region of the tensor that one staging chunk holds: rows [n0, n1) of channels [c0, c1), with
 * n0 and n1 on row-group boundaries. Its data sit at `xByte` with `xRowStride` elements between
 * (n, c, s) and (n + 1, c, s); the output goes to `yByte`/`yRowStride`. Within a row, channel
 * planes are S elements apart.
 */
export interface Region {
  readonly n0: number;
  readonly n1: number;
  readonly c0: number;
  readonly c1: number;
  readonly xByte: number;
  readonly xRowStride: number;
  readonly yByte: number;
  readonly yRowStride: number;
  /** Backward only: the incoming gradient dy, laid out like x (0 for forward calls). */
  readonly dyByte: number;
  readonly dyRowStride: number;
  /** Backward after a fused ReLU: the forward's output, laid out like x, as the mask (0: none). */
  readonly maskByte: number;
  readonly maskRowStride: number;
}

/** Where a worker copies its output after normalizing, when the destination is off the pool. */
export interface CopyOut {
  /** The destination's shared buffer (plain `SharedArrayBuffer`, not the pool's memory). */
  readonly buffer: SharedArrayBuffer;
  /** Byte offset of element (region.n0, region.c0, 0) of the destination. */
  readonly byteOffset: number;
  /** Elements between consecutive rows of the destination: C * S. */
  readonly rowStride: number;
}

/**
 * What a call's tasks do over the work items they claim (see `Task.items`):
 * - `stats`: partial statistics of blocks; in the call's last statistics dispatch (`gang` > 0),
 *   the last of its tasks to finish merges every channel, without waiting for anyone;
 * - `normalize`: y = (x - mean) * scale + bias with the per-channel parameters;
 * - `fused`: for whole channels (row mode: whole bands, every row), partials, their merge, the
 *   parameters, then the normalization while the channel or band is still in cache;
 * - `split`: `stats`, then a barrier with the other `gang - 1` tasks of the call (the last to
 *   arrive merges every channel), then `normalize` of the items, claimed again, last first, so
 *   the ones reduced last are normalized while still in cache. One dispatch instead of two.
 * - `phased`: `split` one group of channels at a time (`phases`), with a barrier per group: for
 *   tensors too large to stay in cache between the two passes, whose channels are too few to
 *   share out whole (`fused`), and forward row-mode calls of short runs. A group's blocks are
 *   normalized while the cache still holds them, in step with the statistics of the next group
 *   (BlockWalker.statsNormGroups): the statistics of group p and the normalization of group
 *   p - 1 go between barriers p - 1 and p.
 *
 * Work items: in plane mode, `stats`, `normalize` and `split` count blocks of the region in memory
 * order (row group, then channel, then stretch), `fused` counts channels of the region and
 * `phased` row groups of the region; in row mode `phased` counts row groups too, `fused` bands,
 * and the others (row group, band) pairs in memory order: item i is row group floor(i / bands),
 * band i % bands; but where the normalization walks whole rows (`Task.wholeRows`), its items
 * (`normalize`'s, and `split`'s second pass's: `Task.second`) are the region's rows.
 */
export type TaskOp = 'stats' | 'normalize' | 'fused' | 'split' | 'phased';

/**
 * Test-only fault injection: makes the worker die or throw instead of working, stall until the
 * call is cancelled (so a test can abort a call that is certainly running), start only once
 * the other tasks have claimed every item of the first pass (`late`: a task that lost its core),
 * or cancel the call itself at its poll of the cancel flag number `afterPolls` + 1, the polls
 * before it reading no flag (`cancel`: as an abort that came between two of its blocks, at a
 * place a test chooses, so that it sees what a task cancelled there has written).
 * With `holdsPrep`, the first prep claim of the dispatch (see `Task.prep`) is taken for the task
 * before it is posted and never completed, as by a task that claimed a slice of the prep and then
 * died or stalled: the other tasks wait at the prep until the call is cancelled.
 */
export type Fault =
  | { readonly kind: 'exit'; readonly exitCode: number; readonly holdsPrep?: boolean }
  | { readonly kind: 'stall'; readonly holdsPrep?: boolean }
  | { readonly kind: 'late' }
  | { readonly kind: 'cancel'; readonly afterPolls: number }
  | { readonly kind: 'throw'; readonly name: string; readonly message: string; readonly code?: string };

/** The error a `throw` fault raises, alike in a worker and on the calling thread (an inline call). */
export function faultError(fault: Extract<Fault, { kind: 'throw' }>): Error {
  const err = new Error(fault.message) as Error & { code?: string };
  err.name = fault.name;
  if (fault.code !== undefined) err.code = fault.code;
  return err;
}

/** One message from the main thread to a worker. */
export interface Task {
  readonly op: TaskOp;
  readonly dtype: Dtype;
  readonly grid: Grid;
  readonly region: Region;
  /**
   * Work items 0 .. items - 1 of the region, shared by the call's tasks: each task claims
   * `chunk` items at a time from counters in the scratch area until none are left, so a task
   * that starts late or is preempted does less, and none waits for it at the end (or at a
   * barrier). The items are cut into `ranges` equal contiguous ranges, each with its own counter:
   * a task claims from range `slot` first, and then from the others in turn (see `Claims`).
   * Every item's work is the same whichever task does it: the bits do not depend on the claims.
   */
  readonly items: number;
  /**
   * The task's own range of items (its place among the dispatch's tasks), claimed before any
   * other: each pass of a task goes over the same part of the tensor as the task's other passes,
   * and as the same task of the next call, which the pool runs on the same worker while it is
   * otherwise idle. That worker's caches still hold it (see `ranges`).
   */
  readonly slot: number;
  /**
   * How many ranges the items are cut into: the dispatch's task count, or 1 where the tasks
   * must claim items in order (`awaitStaged`: the calling thread copies the channels in, in
   * order). One counter a range a pass. With one shared counter (the way until 2026-12-02) the
   * tasks took turns along the tensor, and each call put parts of it on another thread than the
   * call before had: the floor's pass took 1.21-1.53x as long on the benchmark shapes when its
   * two halves swapped threads every call as when they kept them (`node bench/affinity.mjs`;
   * bench/MACHINES.md, "Why, on the fourth machine").
   */
  readonly ranges: number;
  /** Items per claim: about a MiB of data, or one item where an item is larger. */
  readonly chunk: number;
  /**
   * `split` whose normalization walks whole rows (`wholeRows`): the items of its second
   * pass, the region's rows, and how many a claim takes; undefined where both passes share
   * `items` and `chunk`.
   */
  readonly second?: { readonly items: number; readonly chunk: number };
  /**
   * 0: every claim takes `chunk` items. n > 0: claims shrink toward the end (guided
   * self-scheduling): a claim takes ceil(left / n) of the items left, at most `chunk`, at least
   * one, so that the tasks finish close together however large `chunk` is (see `claimBounds`).
   */
  readonly taper: number;
  /**
   * `normalize`: visit each range's items last to first (Claims.mirror). After a statistics
   * phase over the same items, each task normalizes first what it reduced last, still in its
   * cache.
   */
  readonly reverse: boolean;
  /** Per-call scratch area (see `scratchLayout`). */
  readonly scratchByte: number;
  /** Per-task scratch: `rowScratchBytes(bandChannels)` bytes in row mode, PLANE_BLOCKS_MAX * PLANE_ACC_BYTES in plane mode. */
  readonly accByte: number;
  /** Used by `fused`, and by the last `stats` task, to compute the per-channel parameters. */
  readonly eps: number;
  /**
   * Set for a backward call: the statistics ops reduce (Σdy, Σdy·(x - mean)) against the mean in
   * the parameters, the merge produces the training dx coefficients ('train'), and the normalize
   * ops write dx = a·(dy + k·(x - mean) + e) to the region's y. An eval-mode backward's
   * coefficients come from its 'apply' prep: 'eval' marks its dx tasks, and 'eval-applied' an
   * eval-mode `stats` op whose 'apply' prep made the dx coefficients (a, 0, mean, 0) before the
   * sums; each item gets its dx right after its sums (the mean is read from the third word of the
   * parameters), and the merge writes only dWeight and dBias.
   */
  readonly backward: 'train' | 'eval' | 'eval-applied' | null;
  /**
   * The normalization's items (`normalize`'s, and `split`'s second pass's: `second`) are the
   * region's rows, each claim's rows one kernel call (`normalizesRows`), not the grid's blocks.
   */
  readonly wholeRows: boolean;
  /** Forward: apply ReLU in the normalize pass. */
  readonly relu: boolean;
  /**
   * The region's input and output together are larger than the pool's `cacheBytes`, so a pass
   * over them streams from memory (or from the L3 at best): the normalization walks whole rows of
   * channels in lanes of 128 bytes or more (32 float32 channels) two at a time half the call
   * apart, each in address order, rather than four a quarter apart (Kernel.normalizeRows). E [4096, 1024] (16 MiB in, 16 out) is such a call: its eval took
   * 0.88-1.01 of the time that way at 2 threads (`node bench/cache-bytes.mjs E default,1024`, both
   * orders, two runs each).
   */
  readonly inOrder: boolean;
  /**
   * `split`, `phased`: the number of tasks of the call that meet at each barrier; `stats`: the
   * number of tasks of the dispatch, when the last to finish merges (else 0).
   */
  readonly gang: number;
  /**
   * `phased`: the channel groups, as boundaries [0, b1, ..., channels of the region] relative to
   * region.c0; null for the other ops.
   */
  readonly phases: readonly number[] | null;
  /**
   * `split`: how long a task at the barrier may spin before it sleeps, in ms. Spinning costs a
   * core, so the pool allows it only when it has no more threads than cores.
   */
  readonly spinMs: number;
  /**
   * `fused`, plane mode: x is still being copied onto the pool, a channel at a time in order, by
   * the calling thread, which counts the channels done at `stagedByte`; a task waits there until
   * the channel it is about to reduce is in.
   */
  readonly awaitStaged: boolean;
  readonly copyOut: CopyOut | null;
  /**
   * Set on the tasks of a call's first dispatch when the interleaved parameters are made from the
   * per-channel arrays before any pass (a training forward's merge makes its own): 'eval' writes
   * (mean, weight / sqrt(var + eps), bias) from MEAN, VAR, WEIGHT, BIAS and `eps`; 'backward'
   * writes (mean, invstd, weight, 0) from MEAN, INVSTD, WEIGHT; 'backward-var' first makes
   * INVSTD = 1 / sqrt(var + eps) from VAR and `eps`; 'apply' and 'apply-var' (an eval-mode
   * backward that needs no sums: a module without affine) write the dx coefficients
   * (weight·invstd, 0, mean, 0) that the merge would, for a normalize pass alone. The tasks claim PREP_CHANNELS at a time and
   * each waits until every channel is prepared, so a task that starts late finds the work done and
   * does not hold the others.
   */
  readonly prep: 'eval' | 'backward' | 'backward-var' | 'apply' | 'apply-var' | null;
  readonly fault?: Fault;
}

/**
 * Channels a task prepares a claim (see `Task.prep`): a few µs of work, so that a task that loses
 * its core holding a claim keeps the others waiting briefly (8192 measured ~0.3 ms slower per eval
 * or backward call of 262,144 channels, 2 threads).
 */
export const PREP_CHANNELS = 2048;

/** A benchmark pass: y = a * x + b ('stream', the floor), reading x only, or writing y = a only. */
export type StreamPass = 'stream' | 'read' | 'write';

/**
 * The benchmark's floor, or its read-only or write-only sibling, over n float32 at the given
 * offsets, with the pool's kernel. Not part of BatchNorm; it measures what one streaming pass
 * costs on these threads.
 */
export interface StreamTask {
  readonly op: 'stream';
  readonly pass: StreamPass;
  readonly xByte: number;
  readonly yByte: number;
  readonly n: number;
  readonly a: number;
  readonly b: number;
}

/**
 * Eval normalization of 8-bit input into float32 (src/bytes.ts), with the parameters at
 * paramsByte: 'planes' (channels first) and 'pattern' (channels last, period P), elements
 * [first, first + n) of the flattened tensor, n bytes at xByte to n float32 at yByte
 * (Kernel.bytesPlanes, Kernel.bytesPattern); 'to-planes' (channels last in, channels first out),
 * n pixels from pixel `first`, their bytes at xByte, into the output whose element 0 is at yByte
 * (Kernel.bytesToPlanes). 'sums-planes' and 'sums-pattern': the statistics' sums of those
 * elements into the task's pairs at outByte, with 8 * P bytes of scratch at scratchByte
 * (Kernel.bytesSumsPlanes, Kernel.bytesSumsPattern); yByte and paramsByte unused.
 */
export interface BytesTask {
  readonly op: 'bytes';
  readonly form: 'planes' | 'pattern' | 'to-planes' | 'sums-planes' | 'sums-pattern';
  readonly xByte: number;
  readonly yByte: number;
  readonly n: number;
  readonly first: number;
  readonly C: number;
  readonly S: number;
  readonly P: number;
  readonly paramsByte: number;
  readonly relu: boolean;
  readonly outByte: number;
  readonly scratchByte: number;
  /**
   * Where the worker copies what it wrote at yByte, for an output on another shared buffer: the
   * byte there that yByte stands for (src/bytes.ts); null where the calling thread copies.
   */
  readonly copyTo: { readonly buffer: SharedArrayBuffer; readonly byteOffset: number } | null;
}

/**
 * What a worker is sent: a task, and the shared memory's length in bytes on the calling thread
 * when it was posted. Every byte the task touches lies below it; the worker makes its own view of
 * the memory that long first (workers/execute.ts, `coverMemory`).
 */
export type Posted<T extends Task | StreamTask | BytesTask> = T & { readonly memoryBytes: number };

/** A worker's answer. Errors travel flattened, since structured clone drops `code`. */
export type TaskResult =
  | { readonly ok: true; readonly cancelled: boolean }
  | { readonly ok: false; readonly error: { name: string; code?: string; message: string } };

/**
 * Row group g of a region (counted from the region's first, `region.n0 / grid.groupRows` of the
 * grid): its first row relative to the region, and its row count (the region's last may be short).
 */
export function regionRowGroup(grid: Grid, region: Region, g: number): { rowOff: number; rows: number } {
  const first = (region.n0 / grid.groupRows + g) * grid.groupRows;
  return { rowOff: first - region.n0, rows: Math.min(first + grid.groupRows, region.n1) - first };
}

/**
 * Rows a claim of a pass that walks whole rows (`normalizesRows`) takes at least: the kernel
 * walks rows four at a time a quarter of the call apart, loading each line's parameters once for
 * the four. One row a call loads them with every vector of data.
 */
export const ROWS_CLAIM_MIN = 4;

/**
 * Whether a pass that normalizes walks whole rows, its items the region's rows and a claim's rows
 * one kernel call, rather than (row group, band) blocks (`Task.wholeRows`): forward float32
 * row-mode calls whose rows are cut into bands (wide rows: planGrid), where the region's `rows`
 * give each of `threads` tasks a claim of ROWS_CLAIM_MIN. The bands keep a block's partials and
 * the parameters of its band in the cache for the statistics; the normalization needs neither,
 * and a band's run of each row (4-32 KiB, a row of up to MiBs apart from the next) streamed from
 * memory at about half the speed of the same bytes in address order. Fewer rows keep the bands,
 * which the threads share however few the rows ([2, 1048576]'s eval at 2 threads took 9.5 ms
 * as one claim of whole rows, 7.3 in bands). The float64 row kernel makes its own parameter
 * arrays a call, as large as its channels: those calls keep their bands. Either walk computes
 * every element the same way: the same bits.
 */
export function normalizesRows(grid: Grid, dtype: Dtype, backward: Task['backward'], rows: number, threads: number): boolean {
  return grid.mode === 'row' && grid.bands > 1 && dtype === 'float32' && backward === null && rows >= ROWS_CLAIM_MIN * threads;
}

export function bytesPerElement(dtype: Dtype): number {
  return dtype === 'float64' ? 8 : 4;
}
