/**
 * Where a call's arrays live on the pool's memory: arrays from `pool.alloc` in place, anything
 * else staged through chunks of the pool (in as many chunks as the memory needs, on row-group
 * boundaries so the grid and the bits do not change), and how outputs get back.
 */
import { types } from 'node:util';
import {
  bytesPerElement, type CopyOut, type Dtype, type Grid, type Region,
} from '../workers/protocol.js';
import type { EngineRequest } from './engine.js';
import { OutOfMemoryError } from './errors.js';
import { stepDue } from './turns.js';
import { ALIGN } from './memory.js';
import { type Box, planBoxes, smallestBox } from './plan.js';
import type { PoolInternals } from './pool-internals.js';
import { checkIntact, type Dims, type FloatArray } from './validate.js';

/** Where the data of one staging chunk live, and where its output goes. */
export interface Placement {
  readonly box: Box;
  readonly region: Region;
  /** Set when x must be copied onto the pool first. */
  readonly copyIn: boolean;
  /** Backward: set when dy (and the ReLU mask) must be copied onto the pool first. */
  readonly copyDyIn: boolean;
  readonly copyMaskIn: boolean;
  /** Set when workers copy the output to a shared buffer off the pool. */
  readonly copyOut: CopyOut | null;
  /**
   * The array the calling thread copies the output to once the chunk is done (a plain `out`, or
   * any destination off the pool of an inline call), or null.
   */
  readonly copyOutOnMain: FloatArray | null;
}

/**
 * Decides where x and y live (y: the call's output, `out` or a new array, or null for a call of
 * statistics only, whose y locations are never written). Arrays on the pool are used in place.
 * Anything else goes through a staging buffer on the pool, in chunks when it does not fit; the
 * output is normalized in place on the staged copy and copied to its destination. With
 * `pipeline` (an eval call, see PIPELINE_CHUNK_ELEMENTS), an x off the pool that is the only
 * array staged goes in chunks of that size through two buffers in turn (`pipelined` in the
 * result), so that the calling thread can copy one chunk in while the workers normalize the other.
 */
export function place(
  ctx: PoolInternals, req: Pick<EngineRequest, 'x' | 'dims' | 'dtype' | 'backward'>, y: FloatArray | null, grid: Grid, owned: number[],
  inline: boolean, pipeline = false,
): { y: FloatArray | null; placements: Placement[]; pipelined: boolean } {
  const { x, dims, dtype } = req;
  const dy = req.backward?.dy ?? null;
  const mask = req.backward?.mask ?? null;
  const bpe = bytesPerElement(dtype);
  const xOnPool = ctx.arena.owns(x);
  const dyOnPool = dy === null || ctx.arena.owns(dy);
  const maskOnPool = mask === null || ctx.arena.owns(mask);
  const yOnPool = y !== null && ctx.arena.owns(y);
  const dest = y === null || yOnPool ? null : y;
  const rowStride = dims.C * dims.S;
  const at = (array: FloatArray, box: Box): number => array.byteOffset + (box.n0 * rowStride + box.c0 * dims.S) * bpe;

  if (xOnPool && dyOnPool && maskOnPool && dest === null) {
    const box = { n0: 0, n1: dims.N, c0: 0, c1: dims.C };
    const yByte = (y ?? x).byteOffset;
    // Regions are spelled out, not spread from the box: `{ ...box, more }` took ~7 µs a call here.
    const region: Region = {
      n0: box.n0, n1: box.n1, c0: box.c0, c1: box.c1, xByte: x.byteOffset, xRowStride: rowStride, yByte, yRowStride: rowStride,
      dyByte: dy === null ? 0 : dy.byteOffset, dyRowStride: dy === null ? 0 : rowStride,
      maskByte: mask === null ? 0 : mask.byteOffset, maskRowStride: mask === null ? 0 : rowStride,
    };
    return { y, placements: [{ box, region, copyIn: false, copyDyIn: false, copyMaskIn: false, copyOut: null, copyOutOnMain: null }], pipelined: false };
  }
  // A backward whose x is on the pool and whose dy and dx are not writes dx over dy's staged copy,
  // as it does over dy itself given `out: dy` (test/backward.test.ts, in place): one array staged,
  // not two.
  const dxOverDy = dy !== null && xOnPool && !dyOnPool && dest !== null;
  // The arrays staged per chunk, in their order in it, by name (for the count and for a refusal):
  // x (its output in place there), or the output alone where x is on the pool and it is not (but
  // for dx over dy); dy and the mask when off the pool.
  const xChunk = (!xOnPool || dest !== null) && !dxOverDy;
  const stagedNames = [
    !xChunk ? null : !xOnPool ? 'x' : dy === null ? 'the output' : 'dx',
    dyOnPool ? null : dxOverDy ? 'dy (dx in place there)' : 'dy',
    maskOnPool ? null : 'the ReLU mask',
  ].filter((name) => name !== null);
  const staged = stagedNames.length;
  // Bytes each staged array (each buffer, piped) may take, in whole ALIGN units: its part of the
  // chunk is rounded up to ALIGN below, so a share rounded down keeps the parts' sum within what is
  // free (a share of 2 MiB / 3 had let three rounded-up parts pass it by 64 bytes).
  const roomFor = (parts: number): number => Math.floor(ctx.arena.largestAllocatable() / parts / ALIGN) * ALIGN;
  // A pipelined chunk holds at least the grid's smallest box, which may be larger than
  // PIPELINE_CHUNK_ELEMENTS (a row group of [4, 2000000], a plane of [1, 3, 2048, 2048]: such calls
  // failed with an OutOfMemoryError, every box too large for the chunk), where two fit.
  const pipedChunk = Math.max(PIPELINE_CHUNK_ELEMENTS, smallestBox(grid));
  const piped = pipeline && !xOnPool && staged === 1 && dims.length >= 2 * pipedChunk && pipedChunk * bpe <= roomFor(2);
  const room = roomFor(piped ? 2 : staged);
  const budget = Math.floor(Math.min(room, (piped ? pipedChunk : dims.length) * bpe) / bpe);
  const boxes = planBoxes(grid, budget);
  if (boxes === null) throw unitTooLarge(ctx, grid, dims, bpe, stagedNames);
  const chunkBytes = Math.ceil(Math.max(...boxes.map((b) => (b.n1 - b.n0) * (b.c1 - b.c0) * dims.S)) * bpe / ALIGN) * ALIGN;
  // Pipelined: two buffers, chunk i in buffer i % 2 (x and y in place there).
  const buffers = piped && boxes.length > 1 ? 2 : 1;
  const staging = allocOrThrow(ctx, chunkBytes * staged * buffers, 'a staging chunk');
  owned.push(staging);
  let next = staging + (xChunk ? chunkBytes : 0);
  const dyStaging = dyOnPool ? 0 : next;
  if (!dyOnPool) next += chunkBytes;
  const maskStaging = maskOnPool ? 0 : next;
  // Workers copy each block to a shared destination while it is in their cache, beside their
  // other work; an inline call has none to overlap, and one copy at the end is cheaper than a
  // copy a block (3-9% of a plain-array call of 16K-786K elements, builds alternated).
  const shared = !inline && dest !== null && types.isSharedArrayBuffer(dest.buffer);
  const placements = boxes.map((box, i): Placement => {
    // Whatever is not on the pool lives in the staging chunk (x and y share it: in place).
    const stagedStride = (box.c1 - box.c0) * dims.S;
    const chunk = staging + (i % buffers) * chunkBytes;
    const region: Region = {
      n0: box.n0, n1: box.n1, c0: box.c0, c1: box.c1,
      xByte: xOnPool ? at(x, box) : chunk,
      xRowStride: xOnPool ? rowStride : stagedStride,
      yByte: yOnPool ? at(y, box) : dxOverDy ? dyStaging : chunk,
      yRowStride: yOnPool ? rowStride : stagedStride,
      dyByte: dy === null ? 0 : dyOnPool ? at(dy, box) : dyStaging,
      dyRowStride: dy === null ? 0 : dyOnPool ? rowStride : stagedStride,
      maskByte: mask === null ? 0 : maskOnPool ? at(mask, box) : maskStaging,
      maskRowStride: mask === null ? 0 : maskOnPool ? rowStride : stagedStride,
    };
    const copyOut = shared ? { buffer: dest.buffer as SharedArrayBuffer, byteOffset: at(dest, box), rowStride } : null;
    return { box, region, copyIn: !xOnPool, copyDyIn: !dyOnPool, copyMaskIn: !maskOnPool, copyOut, copyOutOnMain: shared ? null : dest };
  });
  return { y, placements, pipelined: buffers === 2 };
}

/**
 * The refusal of `place`: not even the smallest staging chunk, one row group of the grid (one
 * channel of it in plane mode), fits the pool's free memory once per array staged with it (`names`).
 */
function unitTooLarge(ctx: PoolInternals, grid: Grid, dims: Dims, bpe: number, names: readonly string[]): OutOfMemoryError {
  const n = grid.groupRows;
  const unit = smallestBox(grid);
  const what = grid.mode === 'plane' ? `one channel of ${n} ${n === 1 ? 'sample' : 'samples'}` : `${n} ${n === 1 ? 'row' : 'rows'} of every channel`;
  const { arena } = ctx;
  return new OutOfMemoryError(
    `the pool's memory (${arena.byteLength} of at most ${arena.maxBytes} bytes, ${arena.liveBytes} in use, `
    + `${arena.largestAllocatable()} free in one piece) cannot stage shape ${JSON.stringify(dims.shape)}: its smallest `
    + `chunk, ${what} (${unit} elements, ${unit * bpe} bytes), is needed once for each of ${names.join(', ')}`,
  );
}

/**
 * A new output array on its own `SharedArrayBuffer`, so that workers fill it directly (and take
 * its page faults) while the main thread stays free. Nothing else ever writes to it.
 */
export function freshOutput(dtype: Dtype, length: number): FloatArray {
  const buffer = new SharedArrayBuffer(length * bytesPerElement(dtype));
  return dtype === 'float64' ? new Float64Array(buffer) : new Float32Array(buffer);
}

function stagedView(ctx: PoolInternals, req: EngineRequest, p: Placement, byte: number): FloatArray {
  const length = (p.box.n1 - p.box.n0) * (p.box.c1 - p.box.c0) * req.dims.S;
  const buffer = ctx.arena.memory.buffer;
  return req.dtype === 'float64' ? new Float64Array(buffer, byte, length) : new Float32Array(buffer, byte, length);
}

/**
 * The most the calling thread copies between two turns of the event loop: ~0.25 ms at the
 * ~16-18 GB/s of TypedArray.prototype.set on the first machine, 0.7-0.9 ms on the Intel one
 * (~5 GB/s into a shared memory; `node bench/copies.mjs`). A 100 MB ordinary input would otherwise hold the main thread
 * for the whole copy (~6 ms there, 19-25 ms here); a server's other requests wait at most one
 * slice instead.
 */
export const COPY_SLICE_BYTES = 4 << 20;

/**
 * Elements of a chunk when an eval call pipelines its copy in with the workers' pass (see
 * `place`): 4 MB of float32, ~0.3-1 ms of a worker's pass here, several times a dispatch's
 * ~0.1-0.15 ms round trip; or the grid's smallest box where that is larger. Inputs of fewer
 * than two chunks are not pipelined.
 */
export const PIPELINE_CHUNK_ELEMENTS = 1 << 20;

/** Called between two slices of a copy: yields to the event loop (and may throw to stop the copy). */
export type CopyPause = () => Promise<void>;

/**
 * What the calling thread may still copy before its next pause: one for all of a call's copies,
 * in and out, chunk after chunk. A budget a copy ends with the copy: where a call's chunks are
 * no larger than a slice (a pipelined call's 4 MB), nothing paused between them, and the
 * workers' answers, which a waiting call takes in the same pass of the event loop over their
 * messages, gave no turn either (a 100 MB eval from and to ordinary arrays with one worker held
 * the event loop up to 20-23 ms here, some calls whole: `node bench/loop-gaps.mjs 1`).
 */
export interface CopyBudget {
  left: number;
  /**
   * A call on the workers: before each slice it also checks `stepDue` (turns.ts), the
   * budget standing for the call, and pauses where other calls' steps took the thread long
   * enough since the last turn. Inline calls run one at a time already.
   */
  readonly shared: boolean;
}

/** A call's copy budget, a full slice; `shared` for a call on the workers. */
export function copyBudget(shared: boolean): CopyBudget {
  return { left: COPY_SLICE_BYTES, shared };
}

/**
 * Whether a copy pauses before its next slice of `bpe`-byte elements: its call's budget is spent,
 * or (a call on the workers) its step is due (stepDue). Every copy loop of a call asks this.
 */
export function sliceDue(budget: CopyBudget, bpe: number): boolean {
  return budget.left < bpe || (budget.shared && stepDue(budget));
}

/**
 * Copies a chunk of x (and of dy and the mask, for backward) onto the pool, in slices of at most
 * COPY_SLICE_BYTES of the call's `budget` with `pause` between them.
 */
export async function copyIn(ctx: PoolInternals, req: EngineRequest, p: Placement, pause: CopyPause, budget: CopyBudget): Promise<void> {
  for (const [full, name, byte] of stagedInputs(req, p)) {
    await copyBox(req, p.box, full, name, () => stagedView(ctx, req, p, byte), 'in', pause, budget);
  }
}

/**
 * The arrays a placement copies in (x; for backward dy and the ReLU mask), with the names errors
 * give them and their staging bytes.
 */
function stagedInputs(req: EngineRequest, p: Placement): [FloatArray, string, number][] {
  const arrays: [FloatArray, string, number][] = [];
  if (p.copyIn) arrays.push([req.x, req.backward === undefined ? 'x' : 'the forward input x', p.region.xByte]);
  if (p.copyDyIn) arrays.push([req.backward!.dy, 'dy', p.region.dyByte]);
  if (p.copyMaskIn) arrays.push([req.backward!.mask!, "the forward's output (the ReLU mask)", p.region.maskByte]);
  return arrays;
}

/**
 * Copies what copyIn copies (x; for backward dy and the ReLU mask too), but a channel at a time,
 * in order, calling `onChannel(k)` once the placement's first k channels are in (a pipelined
 * fused call: the workers reduce each channel as soon as it is there).
 */
export async function copyInByChannel(
  ctx: PoolInternals, req: EngineRequest, p: Placement, pause: CopyPause, budget: CopyBudget, onChannel: (done: number) => void,
): Promise<void> {
  const arrays = stagedInputs(req, p);
  const { box } = p;
  for (let c = box.c0; c < box.c1; c++) {
    for (const [full, name, byte] of arrays) {
      await copyBox(req, { ...box, c0: c, c1: c + 1 }, full, name, () => stagedView(ctx, req, p, byte), 'in', pause, budget, box.c1 - box.c0, c - box.c0);
    }
    onChannel(c - box.c0 + 1);
  }
}

/** Copies a chunk's output from the pool to `p.copyOutOnMain`, in slices as copyIn does. */
export async function copyOutOnMain(ctx: PoolInternals, req: EngineRequest, p: Placement, pause: CopyPause, budget: CopyBudget): Promise<void> {
  await copyBox(req, p.box, p.copyOutOnMain!, 'options.out', () => stagedView(ctx, req, p, p.region.yByte), 'out', pause, budget);
}

/**
 * Copies between a full-layout array and a chunk's dense staging layout. `budget.left` is what
 * may still be copied before the next pause; it carries over from one array to the next. The
 * staged view is made again after each pause: another call may have grown a private memory
 * meanwhile, which detaches its old buffer. `full` is checked whole before each slice
 * (`checkIntact`: its owner may have detached or shrunk it during a pause, or while the call
 * waited for its turn), where a shorter view would copy fewer values without an error.
 */
async function copyBox(
  req: EngineRequest, box: Box, full: FloatArray, name: string, stagedAt: () => FloatArray, direction: 'in' | 'out',
  pause: CopyPause, budget: CopyBudget, stagedChannels = box.c1 - box.c0, stagedC0 = 0,
): Promise<void> {
  // The staged layout holds `stagedChannels` channels a row, `box` from its channel `stagedC0`
  // (a copyInByChannel channel inside its placement's box); by default, the box itself.
  let staged = stagedAt();
  const { C, S } = req.dims;
  const bpe = full.BYTES_PER_ELEMENT;
  const width = (box.c1 - box.c0) * S;
  const stagedWidth = stagedChannels * S;
  const rows = box.n1 - box.n0;
  const runs = box.c0 === 0 && box.c1 === C ? 1 : rows;
  const runLength = runs === 1 ? rows * width : width;
  for (let r = 0; r < runs; r++) {
    const start = ((box.n0 + r) * C + box.c0) * S;
    const at = r * stagedWidth + stagedC0 * S;
    for (let i = 0; i < runLength;) {
      if (sliceDue(budget, bpe)) {
        await pause();
        staged = stagedAt();
        budget.left = COPY_SLICE_BYTES;
        continue;
      }
      const len = Math.min(runLength - i, Math.floor(budget.left / bpe));
      checkIntact(full, req.dims.length, name);
      if (direction === 'in') staged.set(full.subarray(start + i, start + i + len), at + i);
      else full.set(staged.subarray(at + i, at + i + len), start + i);
      i += len;
      budget.left -= len * bpe;
    }
  }
}

export function allocOrThrow(ctx: PoolInternals, bytes: number, what: string): number {
  const offset = ctx.arena.alloc(bytes);
  if (offset < 0) {
    throw new OutOfMemoryError(
      `the pool's memory (${ctx.arena.byteLength} of at most ${ctx.arena.maxBytes} bytes, ${ctx.arena.liveBytes} in use) cannot hold ${what}: ${bytes} bytes`,
    );
  }
  return offset;
}
