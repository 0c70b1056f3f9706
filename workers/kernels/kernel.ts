import type { BytesTask, KernelName } from '../protocol.js';

/**
 * The hot loops, as pure functions over the pool's shared memory. Every offset is in bytes and
 * every stride in elements; `f64` selects float64 data (float32 otherwise). Kernels never throw,
 * never allocate on the shared memory, and return documented values for degenerate input (NaN
 * propagates to the channel it is in; a constant run gives m2 = 0 exactly).
 *
 * A partial is three float64 values: count, mean, m2 (the sum of squared deviations from the
 * mean). Both implementations compute it with shifted sums, `S1 = Σ(x-K)`, `S2 = Σ(x-K)^2`, with
 * K the run's first value, accumulated in float64: then mean = K + S1/n and m2 = S2 - S1^2/n.
 * With K near the mean this stays accurate on data with a large offset and a small spread, where
 * plain E[x^2] - E[x]^2 loses every digit (Chan, Golub & LeVeque 1983, "Algorithms for computing
 * the sample variance", §3).
 *
 * An output may lie over an input of the same layout, the same bytes element for element: y over
 * x (a forward in place, or a staged copy of x), dx over x's or dy's staged copy or over dy itself
 * (backward's `out: dy`). Every op that writes an element reads what it needs at that element
 * first, and no op reads an element again after writing it (test/forward.test.ts's and
 * test/backward.test.ts's in-place tests hold the ops to it on every path).
 */
export interface Kernel {
  readonly name: KernelName;

  /**
   * Partials of `blocks` blocks of the same shape (the executor passes at most PLANE_BLOCKS_MAX).
   * Block i starts `i * blockStride` elements after `xByte` and is `rows` runs of `len` elements,
   * run r starting `r * rowStride` elements after the block; its partial is written to
   * `outByte + i * outStrideBytes`. `accByte`: PLANE_ACC_BYTES of scratch a block. A block's
   * partial does not depend on which blocks share the call (the WebAssembly kernel reads the
   * blocks in turns, for speed only).
   */
  statsPlanes(
    f64: boolean, xByte: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number, accByte: number,
  ): void;

  /**
   * statsPlanes over `groups` groups of blocks: group q starts `q * groupStride` elements after
   * `xByte` and writes its partials from `outByte + q * groupOutStrideBytes`. The same partials,
   * bit for bit, as one statsPlanes call a group; one call instead of many.
   */
  statsPlaneGroups(
    f64: boolean, xByte: number, groups: number, groupStride: number, groupOutStrideBytes: number,
    blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number, accByte: number,
  ): void;

  /**
   * statsPlanes over `blocks` blocks and, in step with it, normalizePlanes of as many blocks of
   * the same shape (`rows` runs of `len`) of another channel: block i of those at
   * `nxByte + i * nxBlockStride` elements, its y at `nyByte + i * nyBlockStride`, runs
   * `nxRowStride` and `nyRowStride` apart, with that channel's (mean, scale, bias). The partials
   * and outputs are those of the two ops called apart, bit for bit; the WebAssembly kernel
   * interleaves them (float32) so that one's loads and the other's stores are in flight together.
   */
  statsNormPlanes(
    f64: boolean, xByte: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
    outByte: number, outStrideBytes: number, accByte: number,
    nxByte: number, nxBlockStride: number, nxRowStride: number, nyByte: number, nyBlockStride: number, nyRowStride: number,
    mean: number, scale: number, bias: number, relu: boolean,
  ): void;

  /**
   * Partials of C channels over `rows` rows of C * S elements, `rowStride` elements apart
   * (channel c of a row is its S elements at c * S; a band of a wider row when rowStride > C * S).
   * Uses `rowScratchBytes(C)` bytes of scratch at `accByte`; writes channel c's partial at
   * `outByte + c * outStrideBytes`.
   */
  statsRows(
    f64: boolean, xByte: number, rows: number, C: number, S: number, rowStride: number,
    accByte: number, outByte: number, outStrideBytes: number,
  ): void;

  /**
   * statsRows over `rows` rows of C channels at `xByte` and, in step with it, normalizeRows of
   * `nRows` rows of `nC` channels at `nxByte` (y at `nyByte`), every row `rowStride` elements
   * apart, with `nC` channels' parameters from `paramsByte` (and the float32 ones from
   * `rowParamsByte`, as normalizeRows). `accByte`: rowScratchBytes(C + nC). The partials and
   * outputs are those of the two ops called apart, bit for bit; the WebAssembly kernel interleaves
   * them (float32, S > 1) a run of each at a time.
   */
  statsNormRows(
    f64: boolean, xByte: number, rows: number, C: number, S: number, rowStride: number, accByte: number, outByte: number,
    outStrideBytes: number, nxByte: number, nyByte: number, nRows: number, nC: number, paramsByte: number, relu: boolean,
    rowParamsByte: number, rowParamStride: number,
  ): void;

  /**
   * y = (x - mean) * scale + bias over `rows` runs of `len` elements (strided as in statsPlanes);
   * with `relu`, y = max(y, 0) in the same pass (NaN stays NaN).
   */
  normalizePlanes(
    f64: boolean, xByte: number, xRowStride: number, yByte: number, yRowStride: number,
    rows: number, len: number, mean: number, scale: number, bias: number, relu: boolean,
  ): void;

  /**
   * The same over `rows` rows of C * S elements, `rowStride` elements apart (x and y alike), with
   * channel c's (mean, scale, bias) as float64 at `paramsByte + 32 * c`; `rowScratchBytes(C)`
   * bytes of scratch at `scratchByte`. Float32 data: with `rowParamsByte` (0: none), channel c's
   * float32 row parameters (ScratchLayout.rowParamsByte), arrays `rowParamStride` floats apart,
   * are read from there instead of converted from the float64 ones (the WebAssembly kernel; the
   * TypeScript one computes in float64 and reads only those). `inOrder` (Task.inOrder): whole rows
   * of channels in lanes are walked two at a time half the call apart, for data that stream from
   * memory, rather than four a quarter apart (the WebAssembly kernel's float32 walks; the same
   * bits either way).
   */
  normalizeRows(
    f64: boolean, xByte: number, yByte: number, rows: number, C: number, S: number, rowStride: number, paramsByte: number,
    scratchByte: number, relu: boolean, rowParamsByte?: number, rowParamStride?: number, inOrder?: boolean,
  ): void;

  /**
   * For channels [c0, c1): merges each channel's `blocks` partials (contiguous, PARTIAL_BYTES each,
   * at `partialsByte + PARTIAL_BYTES * blocks * c`) in block order with Chan et al.'s pairwise
   * formula, the means relative to the first block's (src/merge.ts), writes the mean, the biased
   * variance and what rounding the mean left out to MEAN, VAR and MEAN_LO of the per-channel
   * arrays of C channels at `channelsByte` (scratch.ts), and (mean, weight / sqrt(var + eps), bias)
   * at `paramsByte + 32 * c`, with weight and bias from the arrays' WEIGHT and BIAS; with
   * `rowParamsByte` (0: none), also the float32 row parameters that `normalizeRows` reads (the
   * WebAssembly kernel; the TypeScript one writes none). Every partial counts at least one value:
   * planGrid makes no empty block, and a call of no values never reaches the kernels (engine.ts,
   * emptyCall). A first block of none would not give the same bits in both kernels: the
   * WebAssembly lanes step from it where src/merge.ts starts at the next block.
   */
  mergeChannels(
    partialsByte: number, blocks: number, c0: number, c1: number, channelsByte: number, C: number, paramsByte: number, eps: number,
    rowParamsByte?: number, rowParamStride?: number,
  ): void;

  /**
   * Backward partial of `rows` runs of `len` values (x and dy with their own row strides): writes
   * (count, Σdy, Σdy·(x - mean)) as float64 at `outByte`. With `maskByte` (a fused ReLU's output,
   * laid out like x; 0 for none), dy counts as 0 where the mask is <= 0 (a NaN mask passes it).
   */
  bwdStatsPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, rows: number, len: number, mean: number, outByte: number,
  ): void;

  /**
   * dx = a·(dy + k·(x - mean) + e) over `rows` runs of `len` (each array with its own row stride),
   * dy masked as above. Where k is 0 (eval mode) the term is dropped and x is not read, so a NaN or
   * infinite x leaves dx = a·(dy + e), as PyTorch's eval-mode gradient weight·invstd·dy.
   */
  bwdApplyPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, dxByte: number, dxRowStride: number,
    rows: number, len: number, a: number, k: number, mean: number, e: number,
  ): void;

  /**
   * bwdStatsPlanes over one block and, in step with it, bwdApplyPlanes over a block of the same
   * shape of another channel (x, dy, the mask and dx at `qxByte`, `qdyByte`, `qmByte` (0: none,
   * as `maskByte`) and `qdxByte`, row strides as the first block's and `dxRowStride`), with that
   * channel's a, k, mean and e. The partial and dx are those of the two ops called apart, bit for
   * bit; the WebAssembly kernel interleaves them (float32), as statsNormPlanes.
   */
  bwdStatsApplyPlanes(
    f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
    maskByte: number, maskRowStride: number, rows: number, len: number, mean: number, outByte: number,
    qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, dxRowStride: number, a: number, k: number, qMean: number, e: number,
  ): void;

  /**
   * Backward partials of C channels over `rows` rows of C * S values, `rowStride` apart (x, dy
   * and the mask alike), against channel c's mean at `paramsByte + 32 * c`; channel c's partial goes to
   * `outByte + c * outStrideBytes`. `rowScratchBytes(C)` bytes of scratch at `accByte`.
   */
  bwdStatsRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, rows: number, C: number, S: number, rowStride: number,
    paramsByte: number, accByte: number, outByte: number, outStrideBytes: number,
  ): void;

  /**
   * dx over `rows` rows of C * S values, `rowStride` apart (every array alike), channel c's (a, k, mean, e) at
   * `paramsByte + 32 * c`; x unread where k is 0, as in `bwdApplyPlanes`.
   */
  bwdApplyRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, dxByte: number, rows: number, C: number, S: number,
    rowStride: number, paramsByte: number, scratchByte: number,
  ): void;

  /**
   * bwdStatsRows over `rows` rows of C channels (x, dy, mask at the first three offsets) and, in
   * step with it, bwdApplyRows of `nRows` rows of `nC` channels at `qxByte`, `qdyByte`, `qmByte`
   * (dx at `qdxByte`, their coefficients at `qParamsByte`), every row `rowStride` elements apart.
   * `accByte`: rowScratchBytes(C + nC). The partials and dx are those of the two ops called
   * apart, bit for bit; the WebAssembly kernel interleaves them (float32, S > 1) a run at a time.
   */
  bwdStatsApplyRows(
    f64: boolean, xByte: number, dyByte: number, maskByte: number, rows: number, C: number, S: number, rowStride: number,
    paramsByte: number, accByte: number, outByte: number, outStrideBytes: number,
    qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, nRows: number, nC: number, qParamsByte: number,
  ): void;

  /**
   * For channels [c0, c1): sums the backward partials in block order, writes dWeight and dBias
   * over WEIGHT and BIAS of the per-channel arrays of C channels at `channelsByte`, and turns
   * `paramsByte + 32 * c` from (mean, invstd, weight, ·) into (a, k, mean, e) for
   * `bwdApplyPlanes`, training's; with `applied` (eval: the parameters made by an 'apply' prep
   * already, as every eval-mode backward's are), only dWeight and dBias, invstd read from INVSTD.
   */
  mergeBackward(
    partialsByte: number, blocks: number, c0: number, c1: number, channelsByte: number, C: number, paramsByte: number,
    count: number, applied?: boolean,
  ): void;

  /**
   * The eval prep of channels [c0, c1) (workers/prep.ts): writes (mean, weight / sqrt(var + eps),
   * bias) at `paramsByte + 32 * c` from MEAN, VAR, WEIGHT and BIAS of the per-channel arrays of C
   * channels at `channelsByte`, as `mergeChannels` writes them from batch statistics (the float32
   * row parameters too, with `rowParamsByte`).
   */
  prepareEval(
    channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number, rowParamsByte?: number, rowParamStride?: number,
  ): void;

  /**
   * The backward prep of channels [c0, c1): with `fromVar`, first INVSTD = 1 / sqrt(var + eps)
   * from VAR; then (mean, invstd, weight, 0) at `paramsByte + 32 * c` from MEAN, INVSTD, WEIGHT,
   * or with `apply` (an eval-mode backward without sums) the dx coefficients the merge would make
   * of those, (weight·invstd, 0, mean, 0).
   */
  prepareBackward(
    channelsByte: number, C: number, c0: number, c1: number, paramsByte: number, eps: number, fromVar: boolean, apply: boolean,
  ): void;

  /** y = a * x + b over n float32: the benchmark's floor, a plain streaming pass. */
  stream(xByte: number, yByte: number, n: number, a: number, b: number): void;

  /**
   * Eval normalization of 8-bit input, channels first: elements [first, first + n) of an (N, C, S)
   * tensor, n bytes at xByte to n float32 at yByte, y = max((x - hi) * sc + bs, floor) in float32
   * operations, floor 0 with `relu`. `paramsByte`: hi, sc and bs of the C channels, three float32
   * arrays one after another.
   */
  bytesPlanes(xByte: number, yByte: number, n: number, first: number, C: number, S: number, paramsByte: number, relu: boolean): void;

  /**
   * bytesPlanes for channels last: the parameters repeat with period P (a multiple of 16 and of
   * C), three float32 arrays of P values; element `first`'s parameters are at index first % P.
   */
  bytesPattern(xByte: number, yByte: number, n: number, first: number, P: number, paramsByte: number, relu: boolean): void;

  /**
   * bytesPlanes from channels last to channels first: n pixels from pixel `first` of an (N, S, C)
   * tensor, their C bytes each at xByte (pixel first's), into the (N, C, S) float32 tensor at yByte
   * (its element 0), with bytesPlanes' parameters.
   */
  bytesToPlanes(xByte: number, yByte: number, n: number, first: number, C: number, S: number, paramsByte: number, relu: boolean): void;

  /**
   * Statistics of 8-bit input, channels first: Σx and Σx² of elements [first, first + n) of an
   * (N, C, S) tensor (n bytes at xByte), added to channel c's float64 pair at outByte + 16 * c.
   * Exact: integer sums, in float64 up to 2^53.
   */
  bytesSumsPlanes(xByte: number, n: number, first: number, C: number, S: number, outByte: number): void;

  /**
   * bytesSumsPlanes for channels last: per position k of the channels' period P (a multiple of 16
   * and of C; element i's position is i % P), added to the pair at outByte + 16 * k. `scratchByte`:
   * 8 * P bytes the kernel may use.
   */
  bytesSumsPattern(xByte: number, n: number, first: number, P: number, outByte: number, scratchByte: number): void;

  /** The sum of n float32: the benchmark's read-only pass (the sum only keeps the loads). */
  read(xByte: number, n: number): number;

  /** y = v over n float32: the benchmark's write-only pass. */
  fill(yByte: number, n: number, v: number): void;
}

/**
 * The most blocks the executor gives one statsPlanes call (two streams in flight measured best
 * here: 23-26 GB/s against 17-20 for one and 12-15 for three or four), and the scratch a block.
 */
export const PLANE_BLOCKS_MAX = 2;
export const PLANE_ACC_BYTES = 64;

/**
 * The most whole channels the executor gives one normalizeRows call when it normalizes a run of
 * plane-mode blocks that lie end to end (see BlockWalker.normalizeRange): the plane-mode scratch
 * a task needs is rowScratchBytes(min(C, PLANE_RUN_CHANNELS_MAX)).
 */
export const PLANE_RUN_CHANNELS_MAX = 256;

/**
 * statsNormPlanes as its two ops called in turn, statsPlanes and then normalizePlanes a block at a
 * time: the TypeScript kernel's, and the WebAssembly kernel's for float64 data.
 */
export function statsThenNormalizePlanes(
  kernel: Kernel, f64: boolean, xByte: number, blocks: number, blockStride: number, rows: number, rowStride: number, len: number,
  outByte: number, outStrideBytes: number, accByte: number,
  nxByte: number, nxBlockStride: number, nxRowStride: number, nyByte: number, nyBlockStride: number, nyRowStride: number,
  mean: number, scale: number, bias: number, relu: boolean,
): void {
  kernel.statsPlanes(f64, xByte, blocks, blockStride, rows, rowStride, len, outByte, outStrideBytes, accByte);
  const bpe = f64 ? 8 : 4;
  for (let i = 0; i < blocks; i++) {
    kernel.normalizePlanes(
      f64, nxByte + bpe * i * nxBlockStride, nxRowStride, nyByte + bpe * i * nyBlockStride, nyRowStride, rows, len, mean, scale, bias, relu,
    );
  }
}

/** statsNormRows as its two ops called in turn (see statsThenNormalizePlanes). */
export function statsThenNormalizeRows(
  kernel: Kernel, f64: boolean, xByte: number, rows: number, C: number, S: number, rowStride: number, accByte: number, outByte: number,
  outStrideBytes: number, nxByte: number, nyByte: number, nRows: number, nC: number, paramsByte: number, relu: boolean,
  rowParamsByte: number, rowParamStride: number,
): void {
  kernel.statsRows(f64, xByte, rows, C, S, rowStride, accByte, outByte, outStrideBytes);
  kernel.normalizeRows(f64, nxByte, nyByte, nRows, nC, S, rowStride, paramsByte, accByte, relu, rowParamsByte, rowParamStride);
}

/** bwdStatsApplyRows as its two ops called in turn (see statsThenNormalizePlanes). */
export function bwdStatsThenApplyRows(
  kernel: Kernel, f64: boolean, xByte: number, dyByte: number, maskByte: number, rows: number, C: number, S: number, rowStride: number,
  paramsByte: number, accByte: number, outByte: number, outStrideBytes: number,
  qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, nRows: number, nC: number, qParamsByte: number,
): void {
  kernel.bwdStatsRows(f64, xByte, dyByte, maskByte, rows, C, S, rowStride, paramsByte, accByte, outByte, outStrideBytes);
  kernel.bwdApplyRows(f64, qxByte, qdyByte, qmByte, qdxByte, nRows, nC, S, rowStride, qParamsByte, accByte);
}

/** bwdStatsApplyPlanes as its two ops called in turn (see statsThenNormalizePlanes). */
export function bwdStatsThenApplyPlanes(
  kernel: Kernel, f64: boolean, xByte: number, xRowStride: number, dyByte: number, dyRowStride: number,
  maskByte: number, maskRowStride: number, rows: number, len: number, mean: number, outByte: number,
  qxByte: number, qdyByte: number, qmByte: number, qdxByte: number, dxRowStride: number, a: number, k: number, qMean: number, e: number,
): void {
  kernel.bwdStatsPlanes(f64, xByte, xRowStride, dyByte, dyRowStride, maskByte, maskRowStride, rows, len, mean, outByte);
  kernel.bwdApplyPlanes(f64, qxByte, xRowStride, qdyByte, dyRowStride, qmByte, maskRowStride, qdxByte, dxRowStride, rows, len, a, k, qMean, e);
}

/** Scratch a task needs for the row-mode kernels of C channels. */
export function rowScratchBytes(C: number): number {
  // 32 bytes a channel, and room for the few-channel pattern arrays (at most 60 positions).
  return 32 * C + 2048;
}

/** Runs a BytesTask with `kernel`: in a worker, or inline on the calling thread. */
export function runBytesTask(kernel: Kernel, t: BytesTask): void {
  if (t.form === 'planes') kernel.bytesPlanes(t.xByte, t.yByte, t.n, t.first, t.C, t.S, t.paramsByte, t.relu);
  else if (t.form === 'pattern') kernel.bytesPattern(t.xByte, t.yByte, t.n, t.first, t.P, t.paramsByte, t.relu);
  else if (t.form === 'to-planes') kernel.bytesToPlanes(t.xByte, t.yByte, t.n, t.first, t.C, t.S, t.paramsByte, t.relu);
  else if (t.form === 'sums-planes') kernel.bytesSumsPlanes(t.xByte, t.n, t.first, t.C, t.S, t.outByte);
  else kernel.bytesSumsPattern(t.xByte, t.n, t.first, t.P, t.outByte, t.scratchByte);
}
