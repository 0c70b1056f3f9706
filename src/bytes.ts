/**
 * Eval BatchNorm of 8-bit input (a Uint8Array, Uint8ClampedArray or Buffer of pixels, as an image
 * decoder gives them) into float32 on the workers: y = (x - mean) / sqrt(var + eps) * weight +
 * bias with running statistics, each byte converted to float32 by the kernel as it is read. The
 * calling thread makes the C channels' parameters, copies the bytes onto the pool unless they
 * are there (pool.alloc(n, 'uint8'); a quarter of the bytes of the float32 input they replace)
 * and, for an output off the pool, copies the output back: in slices, between turns of the
 * event loop, as the engine's copies go. Channels-last
 * input may be written channels first (outLayout): a decoder's HWC pixels as a model's CHW input.
 * Also the exact per-channel sums of 8-bit input behind ChannelStats.fromBatch (runBytesStats).
 * A call is cancelled between chunks and between slices of its copies (the engine's, between
 * blocks): its tasks are single passes. Its per-channel steps (the parameters; the sums' channel
 * values) go in slices between turns of the event loop where there are more than CHANNEL_SLICE
 * (inChannelSlices), as the engine's do.
 */
import { types } from 'node:util';
import type { BytesTask } from '../workers/protocol.js';
import { pauseFor, throwIfAborted } from './abort.js';
import { FRESH_SLICE, inChannelSlices } from './channels.js';
import { throwTaskFailure } from './dispatch.js';
import { ArgumentError, OutOfMemoryError } from './errors.js';
import { stepDue, whenAdmitted } from './turns.js';
import { ALIGN } from './memory.js';
import { takeBlocks } from './memory-line.js';
import { allocOrThrow, COPY_SLICE_BYTES, type CopyBudget, copyBudget, sliceDue } from './placement.js';
import { callThreads, type PoolInternals } from './pool-internals.js';
import { checkDtype, checkIntact, type Dims, type FloatArray, type Layout, lengthGiven } from './validate.js';

/** 8-bit input: what `batchNorm` accepts besides float arrays (Buffer is a Uint8Array). */
export type ByteArray = Uint8Array | Uint8ClampedArray;

/** Whether `value` is a Uint8Array (a Buffer too) or a Uint8ClampedArray, of any realm. */
export function isByteArray(value: unknown): value is ByteArray {
  return value instanceof Uint8Array || value instanceof Uint8ClampedArray || types.isUint8Array(value) || types.isUint8ClampedArray(value);
}

/** `options.out` of 8-bit input: a Float32Array of x's length that does not overlap x, or null. */
export function checkBytesOut(out: unknown, x: ByteArray): Float32Array | null {
  if (out === undefined || out === null) return null;
  checkDtype(out, 'options.out', 'float32');
  const y = out as Float32Array;
  if (y.length !== x.length) throw new ArgumentError(`options.out must have the input's length ${x.length}; got ${lengthGiven(y)}`);
  if (y.buffer === x.buffer && y.byteOffset < x.byteOffset + x.byteLength && x.byteOffset < y.byteOffset + y.byteLength) {
    throw new ArgumentError(`options.out must not overlap x, 8-bit input read as the output is written; got an array overlapping it at a byte offset of ${y.byteOffset - x.byteOffset}`);
  }
  return y;
}

export interface BytesRequest {
  readonly x: ByteArray;
  readonly dims: Dims;
  readonly runningMean: FloatArray;
  readonly runningVar: FloatArray;
  readonly weight: FloatArray | null;
  readonly bias: FloatArray | null;
  readonly eps: number;
  /** A Float32Array of x's length (checked), or null for a new one. */
  readonly out: Float32Array | null;
  readonly signal: AbortSignal | null;
  readonly relu: boolean;
  /**
   * The output's layout: dims.layout, or 'channels-first' for channels-last input (HWC pixels to
   * a model's CHW input). Channels-first input to channels-last output is refused by the caller.
   */
  readonly outLayout: Layout;
}

/**
 * Elements of a part a task takes, at least: parts are cut at multiples of this (and of the
 * channels-last period), so that every part but the last streams whole vectors.
 */
const PART_ALIGN = 64;

/**
 * The longest channels-last period (positions of parameters) the pattern kernel is given, beyond
 * a period of C itself: 4096 positions are 48 KiB of parameters, made on the calling thread.
 */
const PATTERN_MAX = 4096;

/** Runs an eval forward of 8-bit input; resolves to the output (out, or a new Float32Array). */
export async function runBytes(ctx: PoolInternals, req: BytesRequest): Promise<Float32Array> {
  const { dims, signal } = req;
  const n = dims.length;
  await ctx.starting();
  throwIfAborted(signal);
  const y = req.out ?? new Float32Array(new SharedArrayBuffer(4 * n));
  // An empty batch: nothing to normalize (engine.ts, emptyCall).
  if (n === 0) return y;
  // Inline calls run one at a time, with turns of the event loop between them (turns.ts).
  return n <= ctx.inlineThreshold ? whenAdmitted(signal, false, () => normalizeBytes(ctx, req, y, true)) : normalizeBytes(ctx, req, y, false);
}

/** runBytes once the call may run: on the workers, or (`inline`) admitted on the calling thread. */
async function normalizeBytes(ctx: PoolInternals, req: BytesRequest, y: Float32Array, inline: boolean): Promise<Float32Array> {
  const { x, dims, signal } = req;
  const n = dims.length;
  const yOnPool = ctx.arena.owns(y);
  // Bytes from this pool's alloc(n, 'uint8') are read where they lie: nothing is copied in.
  const xOnPool = ctx.arena.owns(x);
  // Channels last to channels first: an image is C * S elements in both layouts, so chunks of
  // whole images are the same elements in and out. One channel: the same order either way.
  const transpose = dims.layout === 'channels-last' && req.outLayout === 'channels-first' && dims.C > 1;
  const pattern = !transpose && usesPattern(dims);
  const imageSize = n / dims.shape[0];
  const P = pattern ? periodOf(dims.C) : dims.C;
  const pause = pauseFor(signal);
  // The call's copy budget; on the workers it also stands for the call in the thread's turns
  // (turns.ts, stepDue): calls started together start one after another.
  const budget = copyBudget(!inline);
  if (!inline) while (stepDue(budget)) await pause();
  // Bytes a staged element takes: its byte (off the pool), and its float32 output where that is
  // off the pool.
  const perElement = (xOnPool ? 0 : 1) + (yOnPool ? 0 : 4);
  const unit = transpose ? imageSize : pattern ? lcm(P, PART_ALIGN) : PART_ALIGN;
  // The call's blocks, all or none (it waits in the pool's line for those other calls hold:
  // memory-line.ts): the parameters, and the staged chunk of x and of y where off the pool.
  const held = await takeBlocks(ctx.arena, signal, (allocated) => {
    const paramsByte = allocOrThrow(ctx, 12 * P, `the parameters of ${dims.C} channels`);
    allocated.push(paramsByte);
    const chunk = perElement === 0
      ? n
      : chunkElements(ctx, n, perElement, unit, `${unit} elements${transpose ? ' (an image)' : ''} of ${xOnPool ? 'float32 output' : '8-bit input and its output'}`);
    const stagedX = xOnPool ? -1 : allocOrThrow(ctx, chunk, `${chunk} bytes of 8-bit input`);
    if (!xOnPool) allocated.push(stagedX);
    const stagedY = yOnPool ? -1 : allocOrThrow(ctx, 4 * chunk, `the float32 output of ${chunk} elements`);
    if (!yOnPool) allocated.push(stagedY);
    return { paramsByte, chunk, stagedX, stagedY };
  });
  try {
    const { paramsByte, chunk, stagedX, stagedY } = held.value;
    await writeParameters(req, P, () => new Float32Array(ctx.arena.memory.buffer, paramsByte, 3 * P), pause);
    // An output on another shared buffer (a new one, or such an out) is copied there by the
    // workers, each its own part, off this thread; an ordinary out by this thread.
    const workersCopy = !yOnPool && !inline && types.isSharedArrayBuffer(y.buffer);
    await forEachChunk(ctx, x, n, chunk, stagedX, pause, budget, async (first, len, xByte) => {
      const yByte = yOnPool ? y.byteOffset + 4 * first : stagedY;
      // copyTo's byte for a task whose output starts at element e of the chunk.
      const copyTo = (e: number): BytesTask['copyTo'] => (
        workersCopy ? { buffer: y.buffer as SharedArrayBuffer, byteOffset: y.byteOffset + 4 * (first + e) } : null
      );
      const parts = callThreads(ctx, n);
      const tasks = transpose
        ? split(len / dims.C, parts, PART_ALIGN).map(([pixel, count]): BytesTask => ({
          op: 'bytes', form: 'to-planes', xByte: xByte + pixel * dims.C, yByte, n: count, first: pixel,
          C: dims.C, S: imageSize / dims.C, P, paramsByte, relu: req.relu, outByte: 0, scratchByte: 0, copyTo: copyTo(0),
        }))
        : split(len, parts, unit).map(([start, count]): BytesTask => ({
          op: 'bytes', form: pattern ? 'pattern' : 'planes', xByte: xByte + start, yByte: yByte + 4 * start, n: count,
          first: first + start, C: dims.C, S: dims.S, P, paramsByte, relu: req.relu, outByte: 0, scratchByte: 0, copyTo: copyTo(start),
        }));
      // On the workers, posting waits where other calls' steps held the thread (stepDue).
      if (!inline) while (stepDue(budget)) await pause();
      throwTaskFailure(await ctx.runBytes(tasks, inline));
      throwIfAborted(signal);
      if (!yOnPool && !workersCopy) {
        await copySliced(y, first, len, n, 'options.out', () => new Float32Array(ctx.arena.memory.buffer, stagedY, len), 'out', pause, budget);
      }
    });
    return y;
  } finally {
    held.release();
  }
}

/**
 * Runs `body` on the `n` elements of x `chunk` at a time (the last may be shorter): on each
 * chunk's first element and length, and the byte where the workers read it. x is copied onto the
 * pool at `stagedX` first, chunk by chunk, with `pause` (a turn of the event loop, then a check
 * of the signal) between slices of the call's `budget`, which every copy of every chunk shares
 * (placement.ts, CopyBudget); with `stagedX` -1 it is on the pool already (this pool's alloc) and
 * read where it lies.
 */
async function forEachChunk(
  ctx: PoolInternals, x: ByteArray, n: number, chunk: number, stagedX: number, pause: () => Promise<void>, budget: CopyBudget,
  body: (first: number, len: number, xByte: number) => Promise<void>,
): Promise<void> {
  for (let first = 0; first < n; first += chunk) {
    const len = Math.min(chunk, n - first);
    if (stagedX >= 0) {
      await copySliced(x, first, len, n, 'x', () => new Uint8Array(ctx.arena.memory.buffer, stagedX, len), 'in', pause, budget);
    }
    await body(first, len, stagedX >= 0 ? stagedX : x.byteOffset + first);
  }
}

/**
 * Elements of a staging chunk of `n` elements taking `perElement` bytes each: all of them where
 * the pool's memory can hold them, else as many whole `unit`s as it can; an OutOfMemoryError
 * naming `what` (one unit) where it cannot hold one.
 */
function chunkElements(ctx: PoolInternals, n: number, perElement: number, unit: number, what: string): number {
  const room = Math.floor(ctx.arena.largestAllocatable() / perElement / ALIGN) * ALIGN;
  const chunk = n <= room ? n : Math.floor(room / unit) * unit;
  if (chunk === 0) {
    throw new OutOfMemoryError(
      `the pool's memory (${ctx.arena.byteLength} of at most ${ctx.arena.maxBytes} bytes, ${ctx.arena.liveBytes} in use) cannot hold a chunk of ${what}: ${unit * perElement} bytes`,
    );
  }
  return chunk;
}

/** What runBytesStats takes: 8-bit x and its dims. */
interface BytesStatsRequest {
  readonly x: ByteArray;
  readonly dims: Dims;
  readonly signal: AbortSignal | null;
}

/**
 * Per-channel statistics of 8-bit input (ChannelStats.fromBatch): Σx and Σx² of each channel,
 * exact (integers; float64 holds them exactly up to 2^53, past any input a pool can hold), so the
 * result does not depend on the thread count or the chunks. Each task sums its part of every
 * chunk into its own pairs (a channel's, or channels last a position's of the period); the
 * calling thread adds the tasks' pairs (threads x positions) and makes count, mean and m2 =
 * Σx² - (Σx)²/count with the subtraction exact.
 */
export async function runBytesStats(
  ctx: PoolInternals, req: BytesStatsRequest,
): Promise<{ count: Float64Array; mean: Float64Array; m2: Float64Array }> {
  const { dims, signal } = req;
  const n = dims.length;
  const C = dims.C;
  await ctx.starting();
  throwIfAborted(signal);
  // An empty batch: count 0, mean 0 and m2 0 in every channel, what a merge takes as nothing.
  if (n === 0) return { count: new Float64Array(C), mean: new Float64Array(C), m2: new Float64Array(C) };
  return n <= ctx.inlineThreshold ? whenAdmitted(signal, false, () => sumBytes(ctx, req, true)) : sumBytes(ctx, req, false);
}

/** runBytesStats once the call may run: on the workers, or (`inline`) admitted on the calling thread. */
async function sumBytes(
  ctx: PoolInternals, req: BytesStatsRequest, inline: boolean,
): Promise<{ count: Float64Array; mean: Float64Array; m2: Float64Array }> {
  const { x, dims, signal } = req;
  const n = dims.length;
  const C = dims.C;
  const pattern = usesPattern(dims);
  // Pairs a task sums into: one a channel, or channels last (pattern) one a position of the period.
  const P = pattern ? periodOf(C) : C;
  const parts = callThreads(ctx, n);
  const unit = pattern ? lcm(P, PART_ALIGN) : PART_ALIGN;
  // Bytes from this pool's alloc(n, 'uint8') are summed where they lie, in one chunk.
  const xOnPool = ctx.arena.owns(x);
  const pause = pauseFor(signal);
  const budget = copyBudget(!inline);
  if (!inline) while (stepDue(budget)) await pause();
  // The call's blocks, all or none (it waits for those other calls hold: memory-line.ts).
  const held = await takeBlocks(ctx.arena, signal, (allocated) => {
    const outByte = allocOrThrow(ctx, 16 * P * parts, `the sums of ${parts} tasks`);
    allocated.push(outByte);
    const scratchByte = pattern ? allocOrThrow(ctx, 8 * P * parts, `the scratch of ${parts} tasks`) : 0;
    if (pattern) allocated.push(scratchByte);
    const chunk = xOnPool ? n : chunkElements(ctx, n, 1, unit, `${unit} elements of 8-bit input`);
    const stagedX = xOnPool ? -1 : allocOrThrow(ctx, chunk, `${chunk} bytes of 8-bit input`);
    if (!xOnPool) allocated.push(stagedX);
    return { outByte, scratchByte, chunk, stagedX };
  });
  try {
    const { outByte, scratchByte, chunk, stagedX } = held.value;
    new Float64Array(ctx.arena.memory.buffer, outByte, 2 * P * parts).fill(0);
    await forEachChunk(ctx, x, n, chunk, stagedX, pause, budget, async (first, len, xByte) => {
      // Task j of every chunk adds into pairs j: up to `parts` parts of whole units.
      const tasks = split(len, parts, unit).map(([start, count], j): BytesTask => ({
        op: 'bytes', form: pattern ? 'sums-pattern' : 'sums-planes', xByte: xByte + start, yByte: 0, n: count, first: first + start,
        C, S: dims.S, P, paramsByte: 0, relu: false, outByte: outByte + 16 * P * j, scratchByte: scratchByte + 8 * P * j, copyTo: null,
      }));
      if (!inline) while (stepDue(budget)) await pause();
      throwTaskFailure(await ctx.runBytes(tasks, inline));
      throwIfAborted(signal);
    });
    return await fromSums(() => new Float64Array(ctx.arena.memory.buffer, outByte, 2 * P * parts), P, parts, C, n / C, pause);
  } finally {
    held.release();
  }
}

/**
 * count, mean and m2 of C channels from `parts` tasks' pairs (Σx, Σx²) of P positions each
 * (position k: channel k % C), read where they lie (`sums` makes the view, again for each slice:
 * the memory may grow during a turn), in slices of positions and of channels between `pause`s
 * where there are many (inChannelSlices; over CHANNEL_SLICE positions, P is C). The sums are
 * integers, exact in float64: their order does not change them.
 */
async function fromSums(
  sums: () => Float64Array, P: number, parts: number, C: number, count: number, pause: () => Promise<void>,
): Promise<{ count: Float64Array; mean: Float64Array; m2: Float64Array }> {
  const s1 = new Float64Array(C);
  const s2 = new Float64Array(C);
  // New arrays, written a FRESH_SLICE at a time (their page faults).
  await inChannelSlices(P, (k0, k1) => {
    const view = sums();
    for (let j = 0; j < parts; j++) {
      for (let k = k0, c = k0 % C; k < k1; k++) {
        s1[c] += view[2 * (j * P + k)];
        s2[c] += view[2 * (j * P + k) + 1];
        if (++c === C) c = 0;
      }
    }
  }, pause, FRESH_SLICE);
  const counts = new Float64Array(C);
  const mean = new Float64Array(C);
  const m2 = new Float64Array(C);
  await inChannelSlices(C, (c0, c1) => {
    counts.fill(count, c0, c1);
    for (let c = c0; c < c1; c++) {
      mean[c] = s1[c] / count;
      // m2 = (count·Σx² - (Σx)²) / count: the numerator exactly (in BigInt where float64 could not
      // hold it), so no cancellation; then rounded to float64 and divided.
      const exact = count * s2[c] <= Number.MAX_SAFE_INTEGER && s1[c] * s1[c] <= Number.MAX_SAFE_INTEGER;
      m2[c] = exact
        ? (count * s2[c] - s1[c] * s1[c]) / count
        : Number(BigInt(count) * BigInt(s2[c]) - BigInt(s1[c]) ** 2n) / count;
    }
  }, pause, FRESH_SLICE);
  return { count: counts, mean, m2 };
}

/**
 * The float32 parameters hi, sc, bs of `count` positions, as the float32 kernels make them
 * (prepareEvalChannels, then normParams32: hi = fround(mean), sc = fround(weight / sqrt(var +
 * eps)), bs = fround(bias - (mean - hi) * sc in float64)): channels first, one a channel;
 * channels last, position k has channel k % C. Written into the view `at` makes (three arrays of
 * `count` on the pool's memory, made again for each slice: the memory may grow during a turn), in
 * slices of positions with `pause` before each where there are many (inChannelSlices; over
 * CHANNEL_SLICE positions, count is C), each array checked whole in each slice: it was checked at
 * the call's start, which may have waited for the pool's start since, and its owner may detach
 * it during a turn (channels.ts, putChannels).
 */
async function writeParameters(req: BytesRequest, count: number, at: () => Float32Array, pause: () => Promise<void>): Promise<void> {
  const { runningMean, runningVar, weight, bias, eps, dims } = req;
  const named = [[runningMean, 'the running mean'], [runningVar, 'the running variance'], [weight, 'weight'], [bias, 'bias']] as const;
  await inChannelSlices(count, (k0, k1) => {
    for (const [array, name] of named) if (array !== null) checkIntact(array, dims.C, name);
    const out = at();
    for (let k = k0, c = k0 % dims.C; k < k1; k++) {
      const mean = runningMean[c];
      const scale = (weight === null ? 1 : weight[c]) / Math.sqrt(runningVar[c] + eps);
      const hi = Math.fround(mean);
      out[k] = hi;
      out[count + k] = scale;
      out[2 * count + k] = (bias === null ? 0 : bias[c]) - (mean - hi) * scale;
      if (++c === dims.C) c = 0;
    }
  }, pause);
}

/**
 * Whether channels-last input in its own layout goes by position in the channels' period (the
 * pattern kernels), not value by value as runs of one (dims.S is 1): unless the period is long
 * (many channels, not a multiple of 16).
 */
function usesPattern(dims: Dims): boolean {
  const P = periodOf(dims.C);
  return dims.layout === 'channels-last' && (P <= PATTERN_MAX || P === dims.C);
}

/** Channels last: the period of the parameters' pattern, a multiple of C and of 16 (a vector of bytes). */
export function periodOf(C: number): number {
  return lcm(C, 16);
}

function lcm(a: number, b: number): number {
  let [p, q] = [a, b];
  while (q !== 0) [p, q] = [q, p % q];
  return (a / p) * b;
}

/** Cuts n elements into up to `parts` parts of whole `unit`s (the last takes the rest): [start, count] each. */
function split(n: number, parts: number, unit: number): [number, number][] {
  const step = Math.max(unit, Math.ceil(n / parts / unit) * unit);
  const out: [number, number][] = [];
  for (let start = 0; start < n; start += step) out.push([start, Math.min(step, n - start)]);
  return out;
}

/**
 * Copies elements [first, first + len) of `full` (of `n` elements, named `name` in errors) into
 * the staged view (or, 'out', the staged view into them), `budget`'s bytes of `full` at a time
 * with `pause` between slices (COPY_SLICE_BYTES each, carried across the call's copies); the view
 * is made again after each pause, as the memory may have grown meanwhile, and `full` is checked
 * whole before each slice (`checkIntact`).
 */
async function copySliced(
  full: ByteArray | Float32Array, first: number, len: number, n: number, name: string,
  staged: () => ByteArray | Float32Array, direction: 'in' | 'out', pause: () => Promise<void>, budget: CopyBudget,
): Promise<void> {
  const bpe = full.BYTES_PER_ELEMENT;
  for (let i = 0; i < len;) {
    if (sliceDue(budget, bpe)) {
      await pause();
      budget.left = COPY_SLICE_BYTES;
      continue;
    }
    const end = Math.min(len, i + Math.floor(budget.left / bpe));
    checkIntact(full, n, name);
    const view = staged();
    if (direction === 'in') view.set(full.subarray(first + i, first + end), i);
    else (full as Float32Array).set((view as Float32Array).subarray(i, end), first + i);
    budget.left -= (end - i) * bpe;
    i = end;
  }
}
