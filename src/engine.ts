/**
 * Runs one BatchNorm call on a pool (forward, statistics only, or backward): places the data on
 * the shared memory, plans the grid and chooses the path (fused, split, phased, chunks), has its
 * phases dispatched (dispatch.ts), and collects the output and the per-channel results. It
 * changes no module state; callers apply running-statistics updates only after it resolved.
 */
import { bytesPerElement, type Dtype, type Grid } from '../workers/protocol.js';
import {
  CHANNEL_BIAS, CHANNEL_INVSTD, CHANNEL_MEAN, CHANNEL_MEAN_LO, CHANNEL_VAR, CHANNEL_WEIGHT, PARAM_BYTES, scratchLayout, type ScratchLayout,
} from '../workers/scratch.js';
import { PLANE_ACC_BYTES, PLANE_BLOCKS_MAX, PLANE_RUN_CHANNELS_MAX, rowScratchBytes } from '../workers/kernels/kernel.js';
import { onAbort, pauseFor, throwIfAborted, untilAborted } from './abort.js';
import { type ChannelPut, channelsView, copyInto, FRESH_SLICE, inChannelSlices, newCopy, putChannels } from './channels.js';
import {
  type Call, cancelCall, fusedPipelined, hasSpareCore, normalizeChunk, normalizePipelined, pipelinesFused, runChunk, runPhase, tasksFor,
} from './dispatch.js';
import { stepDue, whenAdmitted } from './turns.js';
import { takeBlocks } from './memory-line.js';
import { planGrid, planPhases, shouldFuse } from './plan.js';
import { allocOrThrow, copyBudget, copyIn, freshOutput, place } from './placement.js';
import { callThreads, type PoolInternals, poolInternals } from './pool-internals.js';
import type { Pool } from './pool.js';
import type { GradientSums } from './sync.js';
import { checkIntact, type Dims, type FloatArray } from './validate.js';

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
  /**
   * Set when `runningVar` holds sums of squared deviations (a synced forward's merged m2) rather
   * than variances: the variance normalized with is runningVar[c] / runningVarDivisor, made as it
   * goes onto the pool, with no array of its own.
   */
  readonly runningVarDivisor?: number;
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
   * warm one 1.5, for 4M channels here). A new array for each left null.
   */
  readonly into?: { readonly mean: Float64Array | null; readonly var: Float64Array | null } | null;
  /**
   * The second part of a call that ran one already (a synced forward's normalization after its
   * statistics): inline, it never waits for a turn of the event loop, as the call was admitted at
   * its start (turns.ts).
   */
  readonly continued?: boolean;
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
  readonly mean: FloatArray;
  /** Null: the workers make invstd = 1 / sqrt(var + eps) from `var` and `eps`. */
  readonly invstd: FloatArray | null;
  readonly var?: FloatArray;
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
  /**
   * False where dWeight and dBias are not wanted (a module without affine): in eval mode dx then
   * needs no sums, and the call makes only its dx pass (the prep writes the coefficients the merge
   * would), where it otherwise reads x and dy once more first. Default true.
   */
  readonly sums?: boolean;
  /** The element type of dWeight and dBias (default float64). */
  readonly gradDtype?: Dtype;
  /**
   * Arrays of `gradDtype` and length C to write dWeight and dBias into, instead of new ones (a
   * fresh array's pages fault in on first write: two new arrays of 262,144 channels cost a
   * backward of [16, 262144] 2-9 ms of its 15-18 here; README, "Backward and fused ReLU").
   */
  readonly dWeightOut?: FloatArray | null;
  readonly dBiasOut?: FloatArray | null;
}

/**
 * A call's output and its per-channel results; a statistics-only call's also what rounding each
 * batch mean left out (MEAN_LO: workers/scratch.ts).
 */
export type EngineResult = ChannelResults & { readonly y: FloatArray; readonly meanLo?: Float64Array };

/**
 * The per-channel batch mean and biased variance of x, and what rounding each mean left out,
 * without normalizing: a statistics pass, the merge in block order, nothing written but the
 * call's scratch.
 */
export async function runChannelStats(
  pool: Pool, request: Pick<EngineRequest, 'x' | 'dims' | 'dtype' | 'signal'>,
): Promise<{ mean: Float64Array; var: Float64Array; meanLo: Float64Array }> {
  // Not the module's result arrays (`into`): they are left for the forward that follows.
  const r = await runBatchNorm(pool, {
    x: request.x, dims: request.dims, dtype: request.dtype, signal: request.signal, useBatchStats: true,
    weight: null, bias: null, runningMean: null, runningVar: null, eps: 1, out: null, statsOnly: true, into: null,
  });
  return { mean: r.mean, var: r.var, meanLo: r.meanLo! };
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

/** What a backward call resolves to: dx, and dWeight and dBias of `gradDtype` (null where `sums` was false). */
interface Gradients {
  readonly dx: FloatArray;
  readonly dWeight: FloatArray | null;
  readonly dBias: FloatArray | null;
}

/**
 * Runs the forward. Weight, bias and running statistics are read when the call starts running
 * (putChannels: over many channels, during its first turns of the event loop).
 * Like runBatchNormBackward, it neither checks that the pool is open nor tracks the call for
 * close(): the public call that leads here did both, from its start (PoolInternals.track), so
 * that close() also waits while it is queued or between two engine calls.
 */
export function runBatchNorm(pool: Pool, request: EngineRequest): Promise<EngineResult> {
  return execute(poolInternals(pool), request) as Promise<EngineResult>;
}

/** Whether a call is an eval-mode backward that wants no sums: dx alone (BackwardRequest.sums). */
function applyOnly(req: EngineRequest): boolean {
  return req.backward !== undefined && req.backward.mode === 'eval' && req.backward.sums === false && req.backward.reduce === undefined;
}

/** Resolves to Gradients exactly when the request has `backward`. */
async function execute(shared: PoolInternals, req: EngineRequest): Promise<EngineResult | Gradients> {
  const { dims, signal } = req;
  throwIfAborted(signal);
  if (dims.length === 0) return emptyCall(req);
  // A new pool's kernels may still be compiling (off this thread): nothing is read or staged before.
  const starting = shared.starting();
  if (starting !== null) {
    await starting;
    throwIfAborted(signal);
  }
  const grid = planGrid(dims.N, dims.C, dims.S);
  const inline = dims.length <= shared.inlineThreshold;
  // Inline calls run one at a time, with turns of the event loop between them (turns.ts).
  return inline ? whenAdmitted(signal, req.continued === true, () => run(shared, req, grid, true)) : run(shared, req, grid, false);
}

/** A call once it may run: on the workers, or (`inline`) admitted on the calling thread. */
async function run(shared: PoolInternals, req: EngineRequest, grid: Grid, inline: boolean): Promise<EngineResult | Gradients> {
  const { dims, signal } = req;
  // What this thread may copy before its next pause; on the workers it also stands for the call
  // in the thread's turns (turns.ts, stepDue), where calls started together start one
  // after another, a turn between them where they hold the thread long enough, before any
  // takes its blocks.
  const copies = copyBudget(!inline);
  const pauseIn = pauseFor(signal);
  if (!inline) while (stepDue(copies)) await pauseIn();
  // Inline with nothing on the pool: everything is staged anyway, so stage it on the private
  // memory, where the copies are plain memcpys (the same kernels, so the same bits).
  const ctx = inline && offPool(shared, req) ? shared.privateInline() : shared;
  const threads = callThreads(ctx, dims.length);
  // Per-task scratch: the row kernels' accumulators; in plane mode the statistics' (64 bytes a
  // block) or the float32 parameters of a run of channels normalized in one call.
  const accBytes = grid.mode === 'row'
    ? rowScratchBytes(grid.bandChannels)
    : Math.max(PLANE_BLOCKS_MAX * PLANE_ACC_BYTES, rowScratchBytes(Math.min(grid.C, PLANE_RUN_CHANNELS_MAX)));
  const scratchBytes = Math.ceil(scratchLayout(grid, 0, threads).totalBytes / 64) * 64;
  // A new output is made once, however many times the blocks are tried for.
  let fresh: FloatArray | null = null;
  // The call's blocks, its scratch and its staging, all or none (it waits in the pool's line for
  // those other calls hold: memory-line.ts). Nothing is read, written or staged before.
  const taken = takeBlocks(ctx.arena, signal, (owned) => {
    const scratchByte = allocOrThrow(ctx, scratchBytes + threads * accBytes, 'its scratch area');
    owned.push(scratchByte);
    const y = req.statsOnly ? null : req.out ?? (fresh ??= freshOutput(req.dtype, dims.length));
    const pipeline = !inline && !req.useBatchStats && req.backward === undefined && hasSpareCore(ctx, threads);
    return { scratchByte, placed: place(ctx, req, y, grid, owned, inline, pipeline) };
  });
  // Awaited only where the call waits in line: taken at once, there is nothing to wait for.
  const held = taken instanceof Promise ? await taken : taken;
  const { scratchByte, placed } = held.value;
  const layout = scratchLayout(grid, scratchByte, threads);
  const cancel = (): void => cancelCall(ctx, layout);
  const stopWatching = signal === null ? (): void => {} : onAbort(signal, cancel);
  try {
    ctx.views.refresh();
    for (const byte of [layout.cancelByte, layout.doneByte, layout.readyByte, layout.prepClaimByte, layout.prepDoneByte]) {
      Atomics.store(ctx.views.i32, byte / 4, 0);
    }

    const y = placed.y ?? req.x.subarray(0, 0);
    const placements = placed.placements;
    // Between slices of a main-thread copy in, an abort stops the call before more work starts.
    const call: Call = {
      ctx, req, grid, layout, inline, threads, accBase: scratchByte + scratchBytes, accBytes, cancel, pauseIn, copies, prep: null,
    };
    // The per-channel inputs go onto the pool as whole arrays, in slices of channels between
    // turns where there are many (an abort stops the call there); the workers make the
    // interleaved parameters from them (the prep, or a training forward's merge).
    const puts: ChannelPut[] = [
      { k: CHANNEL_WEIGHT, values: req.weight, fill: 1, name: 'weight' },
      { k: CHANNEL_BIAS, values: req.bias, fill: 0, name: 'bias' },
    ];
    if (!req.useBatchStats) {
      puts.push(
        { k: CHANNEL_MEAN, values: req.runningMean, fill: 0, name: 'the running mean' },
        req.runningVarDivisor === undefined
          ? { k: CHANNEL_VAR, values: req.runningVar, fill: 1, name: 'the running variance' }
          : { k: CHANNEL_VAR, values: req.runningVar!, fill: 1, name: 'the merged m2', divisor: req.runningVarDivisor },
      );
    } else if (req.backward) {
      // A backward's statistics: the mean, and invstd or the variance it is made from (the prep
      // turns that into INVSTD first).
      const { mean, invstd, var: variance } = req.backward;
      puts.push({ k: CHANNEL_MEAN, values: mean, fill: 0, name: 'the mean' });
      puts.push(invstd === null
        ? { k: CHANNEL_VAR, values: variance!, fill: 1, name: 'the variance' }
        : { k: CHANNEL_INVSTD, values: invstd, fill: 1, name: 'invstd' });
    }
    await putChannels(ctx, layout, grid.C, puts, call.pauseIn);
    const fromVar = req.backward?.invstd === null;
    if (!req.useBatchStats) {
      call.prep = 'eval';
      if (placed.pipelined) await normalizePipelined(call, placements);
      else for (const p of placements) await normalizeChunk(call, p, 'normalize', false);
    } else if (req.backward?.mode === 'eval' && req.backward.reduce === undefined) {
      // Eval-mode backward: dx = a·dy needs none of the sums, so its coefficients come from the
      // prep, as the merge would make them. Without sums (BackwardRequest.sums), dx alone: a pass
      // of the normalize op over dy; with them, each block's sums and then its dx, in one pass
      // (Task.backward 'eval-applied'), merged by the last task of the last chunk.
      call.prep = fromVar ? 'apply-var' : 'apply';
      if (applyOnly(req)) {
        for (const p of placements) await normalizeChunk(call, p, 'normalize', false);
      } else {
        for (let i = 0; i < placements.length; i++) {
          await runChunk(call, placements[i], 'stats', { merge: i === placements.length - 1, applied: true });
        }
      }
    } else {
      if (req.backward) call.prep = fromVar ? 'backward-var' : 'backward';
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
        const phases = phasesOf(ctx, grid, req, p.box.c1 - p.box.c0, threads);
        await runChunk(call, p, phases === null ? 'split' : 'phased', { phases });
      } else {
        // Chunks (or statistics only): every chunk's statistics, merged by the last task to finish
        // the last chunk's, then every chunk again to normalize.
        for (let i = 0; i < placements.length; i++) {
          await copyIn(ctx, req, placements[i], call.pauseIn, call.copies);
          await runPhase(call, tasksFor(call, placements[i], 'stats', { merge: i === placements.length - 1 }));
        }
        if (synced) await reduceGradients(ctx, grid, req.backward!, layout, signal, call.pauseIn);
        // One chunk is still staged from its statistics pass; several share the staging area.
        for (let i = 0; i < placements.length && !req.statsOnly; i++) {
          await normalizeChunk(call, placements[i], 'normalize', true, placements.length === 1);
        }
      }
    }
    // Per-channel array k's view, made again for each slice of its copy (channelsView).
    const view = (k: number) => (): Float64Array => channelsView(ctx, layout, grid.C, k);
    if (req.backward) {
      const Grad = req.backward.gradDtype === 'float32' ? Float32Array : Float64Array;
      if (applyOnly(req)) return { dx: y, dWeight: null, dBias: null };
      return {
        dx: y,
        dWeight: await copyInto(view(CHANNEL_WEIGHT), req.backward.dWeightOut, Grad, 'options.dWeight'),
        dBias: await copyInto(view(CHANNEL_BIAS), req.backward.dBiasOut, Grad, 'options.dBias'),
      };
    }
    if (req.statsOnly) {
      // New arrays, each written for the first time (page faults), in slices between turns of
      // the event loop where they are large (newCopy).
      const mean = await newCopy(view(CHANNEL_MEAN));
      const variance = await newCopy(view(CHANNEL_VAR));
      return { y, mean, var: variance, meanLo: await newCopy(view(CHANNEL_MEAN_LO)) };
    }
    return {
      y,
      mean: await copyInto(view(CHANNEL_MEAN), req.into?.mean, Float64Array, 'options.meanOut'),
      var: await copyInto(view(CHANNEL_VAR), req.into?.var, Float64Array, 'options.varOut'),
    };
  } finally {
    stopWatching();
    held.release();
  }
}

/**
 * The channel groups of a split call's single chunk (`planPhases`), or null for one barrier: by
 * the pool's `cacheBytes` when given, else one barrier. On the first machine phases won; on the
 * third and fourth a row-mode forward's and every backward's lost to one barrier, and since
 * 2026-12-02 23:30 UTC a plane-mode forward's too (bench/DESIGN.md, "How the work is split").
 */
export function phasesOf(
  ctx: Pick<PoolInternals, 'cacheBytes' | 'cacheBytesGiven'>, grid: Grid, req: Pick<EngineRequest, 'dtype' | 'backward'>, channels: number, threads: number,
): number[] | null {
  if (!ctx.cacheBytesGiven) return null;
  return planPhases(grid, channels, bytesPerElement(req.dtype), threads, ctx.cacheBytes);
}

/** True when none of a call's arrays (x, out, dy, the ReLU mask) lies on the pool's memory. */
function offPool(ctx: PoolInternals, req: EngineRequest): boolean {
  const arrays = [req.x, req.out, req.backward?.dy, req.backward?.mask];
  return arrays.every((a) => a === null || a === undefined || !ctx.arena.owns(a));
}

/**
 * A call on a batch of no values (a dimension of size 0, as PyTorch takes: an empty batch, or a
 * synced batch's shard that holds none): nothing to place or dispatch, and the pool's memory is
 * not touched. The output is empty. The per-channel results, in slices between turns where the
 * channels are many (inChannelSlices, each caller's array checked whole in each):
 * - a forward with batch statistics: NaN, the mean and variance of no values (their count, 0,
 *   leaves the running statistics as they were, in the torch convention: BatchNorm's commit);
 * - statistics only: 0 and 0, what Chan's merge takes as nothing (a `ChannelStats` of count 0);
 * - a forward with given statistics (eval, or a synced forward's merged ones): those;
 * - a backward: dWeight and dBias 0, sums over no values, as PyTorch's; a synced one's local sums
 *   (0) still go through the caller's all-reduce, which the other shards wait on.
 */
async function emptyCall(req: EngineRequest): Promise<EngineResult | Gradients> {
  const { C } = req.dims;
  const pause = pauseFor(req.signal);
  const y = req.out ?? (req.statsOnly ? req.x.subarray(0, 0) : freshOutput(req.dtype, 0));
  if (req.backward) {
    const bwd = req.backward;
    if (bwd.reduce !== undefined) {
      await untilAborted(bwd.reduce({ sumDy: new Float64Array(C), sumDyXhat: new Float64Array(C) }), req.signal);
    }
    if (applyOnly(req)) return { dx: y, dWeight: null, dBias: null };
    const Grad = bwd.gradDtype === 'float32' ? Float32Array : Float64Array;
    return {
      dx: y,
      dWeight: await channelValues(C, bwd.dWeightOut, Grad, 'options.dWeight', 0, pause),
      dBias: await channelValues(C, bwd.dBiasOut, Grad, 'options.dBias', 0, pause),
    };
  }
  if (req.statsOnly) return { y, mean: new Float64Array(C), var: new Float64Array(C), meanLo: new Float64Array(C) };
  const { into } = req;
  if (req.useBatchStats) {
    return {
      y,
      mean: await channelValues(C, into?.mean, Float64Array, 'options.meanOut', NaN, pause),
      var: await channelValues(C, into?.var, Float64Array, 'options.varOut', NaN, pause),
    };
  }
  const runningMean = req.runningMean!;
  const runningVar = req.runningVar!;
  const divisor = req.runningVarDivisor ?? 1;
  return {
    y,
    mean: await channelValues(C, into?.mean, Float64Array, 'options.meanOut', (c) => runningMean[c], pause, [runningMean, 'the running mean']),
    var: await channelValues(C, into?.var, Float64Array, 'options.varOut', (c) => runningVar[c] / divisor, pause, [runningVar, 'the running variance']),
  };
}

/**
 * `value` (a number, or `value(c)`) for every channel, into `into` or a new array of `Ctor` (as
 * made, where that is 0), in slices with `pause` before each where the channels are many
 * (inChannelSlices); `into` and the array `from` that `value` reads are checked whole in each
 * slice (their owners may detach them during a turn).
 */
function channelValues(
  C: number, into: Float64Array | null | undefined, Ctor: Float64ArrayConstructor, name: string,
  value: number | ((c: number) => number), pause: () => Promise<void>, from?: readonly [FloatArray, string],
): Promise<Float64Array>;
function channelValues(
  C: number, into: FloatArray | null | undefined, Ctor: Float32ArrayConstructor | Float64ArrayConstructor, name: string,
  value: number | ((c: number) => number), pause: () => Promise<void>, from?: readonly [FloatArray, string],
): Promise<FloatArray>;
async function channelValues(
  C: number, into: FloatArray | null | undefined, Ctor: Float32ArrayConstructor | Float64ArrayConstructor, name: string,
  value: number | ((c: number) => number), pause: () => Promise<void>, from?: readonly [FloatArray, string],
): Promise<FloatArray> {
  if (into == null && value === 0) return new Ctor(C);
  const to = into ?? new Ctor(C);
  await inChannelSlices(C, (c0, c1) => {
    if (into != null) checkIntact(into, C, name);
    if (from !== undefined) checkIntact(from[0], C, from[1]);
    if (typeof value === 'number') to.fill(value, c0, c1);
    else for (let c = c0; c < c1; c++) to[c] = value(c);
  }, pause, into == null ? FRESH_SLICE : undefined);
  return to;
}

/**
 * A synced backward's all-reduce: hands the merged local sums (Σdy, Σdy·x̂) to the caller, then
 * rewrites each channel's dx coefficients k and e from the sums over every shard and their count,
 * as mergeBackwardChannel does from local ones (a = weight·invstd stays). dWeight and dBias stay
 * this shard's, as in PyTorch's SyncBatchNorm, whose parameter gradients are reduced with the
 * model's others. The rewrite goes in slices of channels with `pause` (the call's `pauseIn`: a
 * turn of the event loop, then the abort check) before each where there are many
 * (inChannelSlices): a loop over 4M channels held the loop 34-50 ms in one piece (a probe,
 * [2, 4194304], one worker). The answer's arrays are checked whole again in each slice
 * (`checkIntact`): the caller may detach one during a turn; the views of the memory are made again
 * in each (another call may grow a private one). invstd is read on the pool, not copied: a new
 * array of 4M float64 is 8192 page faults.
 */
async function reduceGradients(
  ctx: PoolInternals, grid: Grid, bwd: BackwardRequest, layout: ScratchLayout, signal: AbortSignal | null,
  pause: () => Promise<void>,
): Promise<void> {
  const { C } = grid;
  const take = (k: number): Promise<Float64Array> => newCopy(() => channelsView(ctx, layout, C, k));
  const dWeight = await take(CHANNEL_WEIGHT);
  const dBias = await take(CHANNEL_BIAS);
  const answer = untilAborted(bwd.reduce!({ sumDy: dBias, sumDyXhat: dWeight }), signal);
  // Its blocks are not waited for meanwhile: the hook may wait for a call in the line (memory-line.ts).
  const { sumDy, sumDyXhat } = await ctx.arena.line.parked(answer);
  const count = bwd.count!;
  await inChannelSlices(C, (c0, c1) => {
    checkIntact(sumDy, C, 'options.reduceGrads(...).sumDy');
    checkIntact(sumDyXhat, C, 'options.reduceGrads(...).sumDyXhat');
    // invstd, given or made by the prep, read where it lies (channelsView refreshes the views).
    const invstd = channelsView(ctx, layout, C, CHANNEL_INVSTD);
    const f64 = ctx.views.f64;
    for (let c = c0; c < c1; c++) {
      const q = (layout.paramsByte + c * PARAM_BYTES) / 8;
      f64[q + 1] = -invstd[c] * sumDyXhat[c] / count;
      f64[q + 3] = -sumDy[c] / count;
    }
  }, pause);
}
