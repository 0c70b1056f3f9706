/**
 * Runs one BatchNorm call on a pool (forward, statistics only, or backward): places the data on
 * the shared memory, plans the tasks, dispatches them, merges the statistics and collects the
 * output. It changes no module state; callers apply running-statistics updates only after it
 * resolved.
 */
import { availableParallelism } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  bytesPerElement, CHANNEL_BIAS, CHANNEL_INVSTD, CHANNEL_MEAN, CHANNEL_VAR, CHANNEL_WEIGHT, channelArrayByte, PARAM_BYTES,
  type Dtype, type Grid, type Region, scratchLayout, type ScratchLayout, type Task, type TaskOp,
} from '../workers/protocol.js';
import { PLANE_ACC_BYTES, PLANE_BLOCKS_MAX, PLANE_RUN_CHANNELS_MAX, rowScratchBytes } from '../workers/kernels/kernel.js';
import { AbortError, type BnPoolError, deserializeError, WorkerError } from './errors.js';
import { planGrid, planPhases, shouldFuse } from './plan.js';
import { allocOrThrow, copyIn, copyInByChannel, copyOutOnMain, type CopyPause, PIPELINE_CHUNK_ELEMENTS, place, type Placement } from './placement.js';
import { type Pool, type PoolInternals, poolInternals } from './pool.js';
import type { GradientSums } from './sync.js';
import type { Dims, FloatArray } from './validate.js';

/**
 * How long a `split` task may spin at its barrier before sleeping. The tasks of a call start
 * within ~0.1 ms of each other normally and a few ms apart at worst on this VM (measured), while
 * a sleep costs ~90 µs to wake from.
 */
const SPIN_MS = 2;
/** Read once: `availableParallelism()` asks the OS for the affinity mask each time. */
const CORES = availableParallelism();

/**
 * Whether the calling thread has a core beside the pool's workers: only then does a copy on it
 * overlap their pass rather than take a core from them (README, "What copies").
 */
function hasSpareCore(ctx: PoolInternals): boolean {
  return ctx.threads < CORES;
}

export interface EngineRequest {
  readonly x: FloatArray;
  readonly dims: Dims;
  readonly dtype: Dtype;
  /** Normalize with the batch statistics (training, or a module without running statistics). */
  readonly useBatchStats: boolean;
  readonly weight: FloatArray | null;
  readonly bias: FloatArray | null;
  /** Read when `useBatchStats` is false. */
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
  readonly eps: number;
  readonly out: FloatArray | null;
  readonly signal: AbortSignal | null;
  /** Compute the batch statistics only: no output (`y` of the result is then empty). */
  readonly statsOnly?: boolean;
  /** Set for a backward call (see `runBatchNormBackward`). */
  readonly backward?: BackwardRequest;
  /** Forward: apply ReLU to the output in the same pass. */
  readonly relu?: boolean;
  /**
   * Forward: arrays of C values to copy the per-channel results into, instead of new ones (a
   * module reuses its own: a fresh 32 MB array took ~11 ms to allocate and fill, a copy into a
   * warm one 1.5, for 4M channels here).
   */
  readonly into?: ChannelResults | null;
}

/** A forward's per-channel results. */
export interface ChannelResults {
  /** The mean used: the batch mean, or a copy of the running mean. */
  readonly mean: Float64Array;
  /** The variance used: the biased batch variance, or a copy of the running variance. */
  readonly var: Float64Array;
}

export interface BackwardRequest {
  /** The incoming gradient, laid out like x. */
  readonly dy: FloatArray;
  /** Per-channel mean and invstd the forward normalized with. */
  readonly mean: ArrayLike<number>;
  /** Null: the workers make invstd = 1 / sqrt(var + eps) from `var` and `eps`. */
  readonly invstd: ArrayLike<number> | null;
  readonly var?: ArrayLike<number>;
  readonly eps?: number;
  /** 'train': batch statistics (the full gradient); 'eval': fixed statistics, dx = weight·invstd·dy. */
  readonly mode: 'train' | 'eval';
  /** After a fused ReLU: the forward's output; dy passes only where it is > 0. */
  readonly mask?: FloatArray | null;
  /**
   * SyncBatchNorm (training mode only): the all-reduce of the gradient sums, called once this
   * shard's are merged; dx then uses the sums over every shard and `count`.
   */
  readonly reduce?: (local: GradientSums) => Promise<GradientSums>;
  /** With `reduce`: the values per channel over every shard, as the forward's statistics counted them. */
  readonly count?: number;
  /** The element type of dWeight and dBias (default float64). */
  readonly gradDtype?: Dtype;
}

/** A call's output and its per-channel results. */
export type EngineResult = ChannelResults & { readonly y: FloatArray };

/**
 * The per-channel batch mean and biased variance of x, without normalizing: a statistics pass,
 * the merge in block order, nothing written but the call's scratch.
 */
export async function runChannelStats(
  pool: Pool, request: Pick<EngineRequest, 'x' | 'dims' | 'dtype' | 'signal'>,
): Promise<{ mean: Float64Array; var: Float64Array }> {
  // Not the module's result arrays (`into`): they are left for the forward that follows.
  const r = await runBatchNorm(pool, {
    x: request.x, dims: request.dims, dtype: request.dtype, signal: request.signal, useBatchStats: true,
    weight: null, bias: null, runningMean: null, runningVar: null, eps: 1, out: null, statsOnly: true, into: null,
  });
  return { mean: r.mean, var: r.var };
}

/**
 * BatchNorm's backward: with x̂ = (x - mean)·invstd, dWeight = Σdy·x̂, dBias = Σdy, and
 * dx = weight·invstd·(dy - mean(dy) - x̂·mean(dy·x̂)) in training mode, weight·invstd·dy in eval
 * mode. The same grid, tasks and block-order merge as the forward, so the same bits at any thread
 * count. `out` receives dx.
 */
export async function runBatchNormBackward(
  pool: Pool,
  request: Pick<EngineRequest, 'x' | 'dims' | 'dtype' | 'weight' | 'out' | 'signal'> & { backward: BackwardRequest },
): Promise<Gradients> {
  const { x, dims, dtype, weight, out, signal, backward } = request;
  return execute(poolInternals(pool), {
    x, dims, dtype, weight, out, signal, backward,
    useBatchStats: true, bias: null, runningMean: null, runningVar: null, eps: backward.eps ?? 1,
  }) as Promise<Gradients>;
}

/** What a backward call resolves to: dx, and dWeight and dBias of `gradDtype`. */
interface Gradients {
  readonly dx: FloatArray;
  readonly dWeight: FloatArray;
  readonly dBias: FloatArray;
}

/**
 * Runs the forward. Weight, bias and running statistics are read when the call starts running.
 * Like runBatchNormBackward, it neither checks that the pool is open nor tracks the call for
 * close(): the public call that leads here did both, from its start (PoolInternals.track), so
 * that close() also waits while it is queued or between two engine calls.
 */
export function runBatchNorm(pool: Pool, request: EngineRequest): Promise<EngineResult> {
  return execute(poolInternals(pool), request) as Promise<EngineResult>;
}

/** Resolves to Gradients exactly when the request has `backward`. */
async function execute(shared: PoolInternals, req: EngineRequest): Promise<EngineResult | Gradients> {
  const { dims, signal } = req;
  throwIfAborted(signal);
  // A new pool's kernels may still be compiling (off this thread): nothing is read or staged before.
  const starting = shared.starting();
  if (starting !== null) {
    await starting;
    throwIfAborted(signal);
  }
  const grid = planGrid(dims.N, dims.C, dims.S);
  const inline = dims.length <= shared.inlineThreshold;
  // Inline with nothing on the pool: everything is staged anyway, so stage it on the private
  // memory, where the copies are plain memcpys (the same kernels, so the same bits).
  const ctx = inline && offPool(shared, req) ? shared.privateInline() : shared;
  const threads = inline ? 1 : ctx.threads;
  // Per-task scratch: the row kernels' accumulators; in plane mode the statistics' (64 bytes a
  // block) or the float32 parameters of a run of channels normalized in one call.
  const accBytes = grid.mode === 'row'
    ? rowScratchBytes(grid.bandChannels)
    : Math.max(PLANE_BLOCKS_MAX * PLANE_ACC_BYTES, rowScratchBytes(Math.min(grid.C, PLANE_RUN_CHANNELS_MAX)));
  const scratchBytes = Math.ceil(scratchLayout(grid, 0).totalBytes / 64) * 64;
  const scratchByte = allocOrThrow(ctx, scratchBytes + threads * accBytes, 'its scratch area');
  const owned = [scratchByte];
  const layout = scratchLayout(grid, scratchByte);
  const cancel = (): void => cancelCall(ctx, layout);
  try {
    ctx.views.refresh();
    for (const byte of [layout.cancelByte, layout.doneByte, layout.readyByte, layout.prepClaimByte, layout.prepDoneByte]) {
      Atomics.store(ctx.views.i32, byte / 4, 0);
    }
    signal?.addEventListener('abort', cancel, { once: true });

    const pipeline = !inline && !req.useBatchStats && req.backward === undefined && hasSpareCore(ctx);
    const placed = place(ctx, req, grid, owned, inline, req.statsOnly, pipeline);
    const y = placed.y ?? req.x.subarray(0, 0);
    const placements = placed.placements;
    // Between slices of a main-thread copy in, an abort stops the call before more work starts.
    const pauseIn = async (): Promise<void> => {
      await nextTurn();
      throwIfAborted(signal);
    };
    const call: Call = {
      ctx, req, grid, layout, inline, threads, accBase: scratchByte + scratchBytes, accBytes, cancel, pauseIn, prep: null,
    };
    // The per-channel inputs go onto the pool as whole arrays; the workers make the interleaved
    // parameters from them (the prep, or a training forward's merge).
    const put = (k: number, values: ArrayLike<number> | null, fill: number): void => putChannels(ctx, layout, grid.C, k, values, fill);
    ctx.views.refresh();
    put(CHANNEL_WEIGHT, req.weight, 1);
    put(CHANNEL_BIAS, req.bias, 0);
    if (!req.useBatchStats) {
      put(CHANNEL_MEAN, req.runningMean, 0);
      put(CHANNEL_VAR, req.runningVar, 1);
      call.prep = 'eval';
      if (placed.pipelined) await normalizePipelined(call, placements);
      else for (const p of placements) await normalizeChunk(call, p, 'normalize', false);
    } else {
      if (req.backward) {
        const { mean, invstd } = req.backward;
        put(CHANNEL_MEAN, mean, 0);
        if (invstd === null) put(CHANNEL_VAR, req.backward.var!, 1);
        else put(CHANNEL_INVSTD, invstd, 1);
        call.prep = invstd === null ? 'backward-var' : 'backward';
      }
      // A synced backward waits for the caller's all-reduce between its two passes, on this thread.
      const synced = req.backward?.reduce !== undefined;
      const fused = !req.statsOnly && !synced
        && placements.every((p) => shouldFuse(grid, p.box.c1 - p.box.c0, p.box.n0 === 0 && p.box.n1 === grid.N, threads));
      if (fused && pipelinesFused(call, placements)) {
        await fusedPipelined(call, placements[0]);
      } else if (fused) {
        for (const p of placements) await normalizeChunk(call, p, 'fused', false);
      } else if (placements.length === 1 && !req.statsOnly && !synced) {
        // One dispatch: the tasks reduce the blocks they claim, meet at a barrier where the last
        // one merges, then claim the blocks again, last first, while they are still in cache.
        // Too large for the cache between the passes: one group of channels at a time (phased).
        const [p] = placements;
        await copyIn(ctx, req, p, call.pauseIn);
        const phases = planPhases(grid, p.box.c1 - p.box.c0, bytesPerElement(req.dtype), threads, ctx.cacheBytes);
        await runPhase(call, tasksFor(call, p, phases === null ? 'split' : 'phased', { phases }));
        if (p.copyOutOnMain !== null) await copyOutOnMain(ctx, req, p, pauseOut);
      } else {
        // Chunks (or statistics only): every chunk's statistics, merged by the last task to finish
        // the last chunk's, then every chunk again to normalize.
        for (let i = 0; i < placements.length; i++) {
          await copyIn(ctx, req, placements[i], call.pauseIn);
          await runPhase(call, tasksFor(call, placements[i], 'stats', { merge: i === placements.length - 1 }));
        }
        if (synced) await reduceGradients(ctx, grid, req.backward!, layout, signal);
        // One chunk is still staged from its statistics pass; several share the staging area.
        for (let i = 0; i < placements.length && !req.statsOnly; i++) {
          await normalizeChunk(call, placements[i], 'normalize', true, placements.length === 1);
        }
      }
    }
    ctx.views.refresh();
    const view = (k: number): Float64Array => channelsView(ctx, layout, grid.C, k);
    if (req.backward) {
      const Grad = req.backward.gradDtype === 'float32' ? Float32Array : Float64Array;
      return { dx: y, dWeight: new Grad(view(CHANNEL_WEIGHT)), dBias: new Grad(view(CHANNEL_BIAS)) };
    }
    const into = req.into ?? { mean: new Float64Array(grid.C), var: new Float64Array(grid.C) };
    into.mean.set(view(CHANNEL_MEAN));
    into.var.set(view(CHANNEL_VAR));
    return { y, mean: into.mean, var: into.var };
  } finally {
    signal?.removeEventListener('abort', cancel);
    for (const offset of owned) ctx.arena.free(offset);
  }
}

/** True when none of a call's arrays (x, out, dy, the ReLU mask) lies on the pool's memory. */
function offPool(ctx: PoolInternals, req: EngineRequest): boolean {
  const arrays = [req.x, req.out, req.backward?.dy, req.backward?.mask];
  return arrays.every((a) => a === null || a === undefined || !ctx.arena.owns(a));
}

/** Raises the call's cancel flag and wakes any task waiting on it, on the ready flag or on the prep. */
function cancelCall(ctx: PoolInternals, layout: ScratchLayout): void {
  Atomics.store(ctx.views.i32, layout.cancelByte / 4, 1);
  for (const byte of [layout.cancelByte, layout.readyByte, layout.prepDoneByte, layout.stagedByte]) Atomics.notify(ctx.views.i32, byte / 4);
}

interface Call {
  readonly ctx: PoolInternals;
  readonly req: EngineRequest;
  readonly grid: Grid;
  readonly layout: ScratchLayout;
  readonly inline: boolean;
  readonly threads: number;
  readonly accBase: number;
  readonly accBytes: number;
  /** Cancels the call's remaining tasks (abort, or a task that failed). */
  readonly cancel: () => void;
  /** Between the slices of a copy onto the pool: a turn of the event loop, then the abort check. */
  readonly pauseIn: CopyPause;
  /** The prep the next dispatch's tasks do first (see `Task.prep`); the call's first dispatch clears it. */
  prep: Task['prep'];
}

/**
 * Eval over chunks staged in two buffers in turn (`place` with `pipeline`): while the workers
 * normalize chunk i, the calling thread copies chunk i - 1 out (to an ordinary destination; its
 * buffer is then free) and chunk i + 1 in, into that buffer.
 */
async function normalizePipelined(call: Call, placements: readonly Placement[]): Promise<void> {
  const { ctx, req } = call;
  await copyIn(ctx, req, placements[0], call.pauseIn);
  for (let i = 0; i < placements.length; i++) {
    await copyWhileRunning(call, tasksFor(call, placements[i], 'normalize'), async () => {
      if (i > 0 && placements[i - 1].copyOutOnMain !== null) await copyOutOnMain(ctx, req, placements[i - 1], pauseOut);
      if (i + 1 < placements.length) await copyIn(ctx, req, placements[i + 1], call.pauseIn);
    });
  }
  const last = placements[placements.length - 1];
  if (last.copyOutOnMain !== null) await copyOutOnMain(ctx, req, last, pauseOut);
}

/**
 * Runs a phase's tasks while this thread does `copies`, and settles when both are done. When the
 * copies fail (an abort between slices, or an array detached by its owner meanwhile), the call is
 * cancelled, so that no task goes on with the work or waits for data that will not come, and the
 * phase is waited for (its workers may be writing the staging memory) before the error is thrown.
 */
async function copyWhileRunning(call: Call, tasks: Task[], copies: () => Promise<void>): Promise<void> {
  const running = runPhase(call, tasks);
  // Handled now: it may fail while the copies yield to the event loop, before it is awaited.
  running.catch(() => {});
  try {
    await copies();
  } catch (err) {
    call.cancel();
    await running.catch(() => {});
    throw err;
  }
  await running;
}

/**
 * Whether a fused call (a training forward or a backward) copies its staged arrays in while its
 * workers reduce them: one chunk, plane mode (the workers claim channels in order), at least two
 * pipeline chunks of input, and, as for eval (normalizePipelined), a core for the calling thread
 * beside the workers.
 */
function pipelinesFused(call: Call, placements: readonly Placement[]): boolean {
  const [p] = placements;
  return placements.length === 1 && (p.copyIn || p.copyDyIn || p.copyMaskIn) && !call.inline
    && call.grid.mode === 'plane' && hasSpareCore(call.ctx) && call.req.dims.length >= 2 * PIPELINE_CHUNK_ELEMENTS;
}

/**
 * A fused call whose tasks start before its arrays are on the pool: this thread copies them a
 * channel at a time (x, and for backward dy and the mask) and counts the channels in at
 * `stagedByte`; each task waits there for the channel it claims (Task.awaitStaged).
 */
async function fusedPipelined(call: Call, p: Placement): Promise<void> {
  const { ctx, req, layout } = call;
  ctx.views.refresh();
  Atomics.store(ctx.views.i32, layout.stagedByte / 4, 0);
  await copyWhileRunning(call, tasksFor(call, p, 'fused', { awaitStaged: true }), () => copyInByChannel(ctx, req, p, call.pauseIn, (done) => {
    ctx.views.refresh();
    Atomics.store(ctx.views.i32, layout.stagedByte / 4, done);
    Atomics.notify(ctx.views.i32, layout.stagedByte / 4);
  }));
  if (p.copyOutOnMain !== null) await copyOutOnMain(ctx, req, p, pauseOut);
}

/** Between the slices of a copy out: a turn of the event loop. The output is complete by then. */
function pauseOut(): Promise<void> {
  return nextTurn();
}

/**
 * Stages a chunk if needed (unless it is still `staged`), runs `op` over it, and copies its output
 * where it belongs. After a statistics pass over the chunk (`afterStats`), it normalizes
 * backwards, starting on what is still cached.
 */
async function normalizeChunk(call: Call, p: Placement, op: TaskOp, afterStats: boolean, staged = false): Promise<void> {
  if (!staged) await copyIn(call.ctx, call.req, p, call.pauseIn);
  await runPhase(call, tasksFor(call, p, op, { reverse: afterStats }));
  if (p.copyOutOnMain !== null) await copyOutOnMain(call.ctx, call.req, p, pauseOut);
}

/**
 * Elements a task claims at a time (see `Task.chunk`): ~1 MiB of float32, so that a call's tasks
 * finish within ~50 µs of each other however late one started, for ~100 claims (atomic adds on
 * one shared word) per 100 MB.
 */
const CLAIM_ELEMENTS = 1 << 18;

/** The number of work items of `op` over a region (see `TaskOp`). */
function itemCount(grid: Grid, region: Region, op: TaskOp): number {
  const groups = Math.ceil((region.n1 - region.n0) / grid.groupRows);
  if (op === 'phased') return groups;
  // Row mode: bands (fused), or (row group, band) pairs; a row-mode region holds every band.
  if (grid.mode === 'row') return op === 'fused' ? grid.bands : groups * grid.bands;
  const channels = region.c1 - region.c0;
  if (op === 'fused') return channels;
  // Memory order: row group, then channel, then stretch.
  return groups * channels * grid.sChunks;
}

/**
 * The tasks of one dispatch: as many as threads (fewer when there are fewer items), all over the
 * region's items, which they claim `chunk` at a time. `split` and `phased` tasks meet at barriers,
 * so they are all counted in `gang`; so are `stats` tasks that `merge` (the last to finish does).
 */
function tasksFor(
  call: Call, p: Placement, op: TaskOp,
  opts: { reverse?: boolean; phases?: readonly number[] | null; merge?: boolean; awaitStaged?: boolean } = {},
): Task[] {
  const { grid } = call;
  const { region } = p;
  const items = itemCount(grid, region, op);
  const elements = (region.n1 - region.n0) * (region.c1 - region.c0) * grid.S;
  // phased: plane-mode row groups are read two at a time (PLANE_BLOCKS_MAX), so they are claimed
  // in twos; a row-mode row group (about a sixteenth of the rows: over 1 MiB of a phased call
  // with the default cacheBytes) is one kernel call a claim.
  // A small input is shared out in one claim per thread, as many tasks as before claims existed.
  const chunk = op === 'phased'
    ? (grid.mode === 'row' ? 1 : PLANE_BLOCKS_MAX)
    : Math.max(1, Math.min(Math.floor(CLAIM_ELEMENTS / (elements / items)), Math.ceil(items / call.threads)));
  const count = Math.min(call.threads, Math.ceil(items / chunk));
  const tasks: Task[] = [];
  for (let i = 0; i < count; i++) {
    tasks.push({
      op,
      dtype: call.req.dtype,
      grid,
      region,
      items,
      chunk,
      reverse: opts.reverse ?? false,
      scratchByte: call.layout.cancelByte,
      accByte: call.accBase + i * call.accBytes,
      eps: call.req.eps,
      backward: call.req.backward?.mode ?? null,
      relu: call.req.relu ?? false,
      gang: op === 'split' || op === 'phased' || opts.merge === true ? count : 0,
      phases: opts.phases ?? null,
      spinMs: call.ctx.threads <= CORES ? SPIN_MS : 0,
      awaitStaged: opts.awaitStaged ?? false,
      copyOut: p.copyOut,
      prep: call.prep,
    });
  }
  call.prep = null;
  return tasks;
}

/**
 * Runs a phase's tasks and waits for all of them, failed or not, before it returns or throws:
 * no task may still be writing when the call's scratch and staging memory are freed.
 */
async function runPhase(call: Call, tasks: Task[]): Promise<void> {
  // No task of this call runs now (runPhase waits for all of them): the claims start again.
  const { i32 } = call.ctx.views;
  Atomics.store(i32, call.layout.claimByte / 4, 0);
  Atomics.store(i32, call.layout.claim2Byte / 4, 0);
  const settled = await call.ctx.runTasks(tasks, call.inline, call.cancel);
  let failure: BnPoolError | null = null;
  let cancelled = false;
  for (const s of settled) {
    if (s.status === 'rejected') {
      failure ??= new WorkerError(`a worker failed during the call: ${errorMessage(s.reason)}`, { cause: s.reason });
    } else if (!s.value.ok) {
      failure ??= deserializeError(s.value.error);
    } else if (s.value.cancelled) {
      cancelled = true;
    }
  }
  if (failure !== null) throw failure;
  if (cancelled) throw abortError(call.req.signal);
  throwIfAborted(call.req.signal);
}

/**
 * Per-channel array k of the call (CHANNEL_MEAN ...) from `values`, or filled with `fill` when
 * null: one typed-array `set` (or `fill`), native code whatever C is, never a loop here.
 */
function putChannels(ctx: PoolInternals, layout: ScratchLayout, C: number, k: number, values: ArrayLike<number> | null, fill: number): void {
  const at = channelArrayByte(layout.channelsByte, C, k) / 8;
  if (values === null) ctx.views.f64.fill(fill, at, at + C);
  else ctx.views.f64.set(values, at);
}

/** Per-channel array k of the call, a view of the pool's memory (copy it before the call ends). */
function channelsView(ctx: PoolInternals, layout: ScratchLayout, C: number, k: number): Float64Array {
  const at = channelArrayByte(layout.channelsByte, C, k) / 8;
  return ctx.views.f64.subarray(at, at + C);
}

/**
 * A synced backward's all-reduce: hands the merged local sums (Σdy, Σdy·x̂) to the caller, then
 * rewrites each channel's dx coefficients b and d from the sums over every shard and their count,
 * as mergeBackwardChannel does from local ones (a = weight·invstd stays). dWeight and dBias stay
 * this shard's, as in PyTorch's SyncBatchNorm, whose parameter gradients are reduced with the
 * model's others.
 */
async function reduceGradients(
  ctx: PoolInternals, grid: Grid, bwd: BackwardRequest, layout: ScratchLayout, signal: AbortSignal | null,
): Promise<void> {
  ctx.views.refresh();
  const take = (k: number): Float64Array => channelsView(ctx, layout, grid.C, k).slice();
  const dWeight = take(CHANNEL_WEIGHT);
  const dBias = take(CHANNEL_BIAS);
  // Given or made by the prep.
  const invstd = take(CHANNEL_INVSTD);
  const { sumDy, sumDyXhat } = await untilAborted(bwd.reduce!({ sumDy: dBias, sumDyXhat: dWeight }), signal);
  const count = bwd.count!;
  ctx.views.refresh();
  const f64 = ctx.views.f64;
  for (let c = 0; c < grid.C; c++) {
    const q = (layout.paramsByte + c * PARAM_BYTES) / 8;
    const a = f64[q];
    f64[q + 1] = -a * invstd[c] * sumDyXhat[c] / count;
    f64[q + 3] = -a * sumDy[c] / count;
  }
}

function abortError(signal: AbortSignal | null): AbortError {
  return new AbortError('the BatchNorm call was aborted', { cause: signal?.reason });
}

function throwIfAborted(signal: AbortSignal | null): void {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * Waits for a caller's hook (an all-reduce), or rejects with an AbortError as soon as `signal`
 * fires: a transport that never answers must not hold the call, and `close()`, forever. The hook's
 * late answer is then ignored.
 */
export function untilAborted<T>(hook: T | Promise<T>, signal: AbortSignal | null): Promise<T> {
  if (signal === null) return Promise.resolve(hook);
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(hook).then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function errorMessage(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
