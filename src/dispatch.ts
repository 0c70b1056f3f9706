/**
 * How a call's work reaches the workers: the tasks of a dispatch (how many, which items each
 * claims), the phases that run them and turn their failures into the call's error, and the
 * copies onto and off the pool that the calling thread makes while the workers run.
 */
import { availableParallelism } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { bytesPerElement, normalizesRows, ROWS_CLAIM_MIN, type Grid, type Region, type Task, type TaskOp, type TaskResult } from '../workers/protocol.js';
import { raiseCancel, resetClaims, type ScratchLayout } from '../workers/scratch.js';
import { PLANE_BLOCKS_MAX } from '../workers/kernels/kernel.js';
import { abortError, throwIfAborted } from './abort.js';
import type { EngineRequest } from './engine.js';
import { BnPoolError, deserializeError, WorkerError } from './errors.js';
import { stepDue } from './turns.js';
import {
  type CopyBudget, copyIn, copyInByChannel, copyOutOnMain, type CopyPause, PIPELINE_CHUNK_ELEMENTS, type Placement,
} from './placement.js';
import type { PoolInternals } from './pool-internals.js';

/**
 * How long a task may spin at a wait (a `split` or `phased` barrier, the prep, a staged channel)
 * before sleeping, when the call leaves a core free (hasSpareCore). The tasks of a call start
 * within ~0.1 ms of each other normally and a few ms apart at worst on this VM (measured), while
 * a sleep costs ~90 µs to wake from. A call with a task on every core (its own and those of the
 * other calls in flight) does not spin: there the spinning workers took the cores that the
 * calling thread and the late tasks needed. On a
 * 16-core machine (bench/MACHINES.md, "Sixteen cores") 16 threads that spun took B, C and E's
 * training forwards 1.6-3.6 ms in three runs against 1.2-1.6 without the spin (and 1.1-2.1 at 15
 * threads, spinning); on this project's 2 vCPUs, 2 threads with and without it were alike within
 * the noise (`PAIRED=1 node bench/alternate.mjs ... planes`, B, C and E, four runs).
 */
const SPIN_MS = 2;
/** Read once: `availableParallelism()` asks the OS for the affinity mask each time. */
const CORES = availableParallelism();

/**
 * Whether the calling thread has a core beside a call's `threads` tasks on `ctx`'s pool and the
 * tasks of every call in flight on this thread's pools (WorkerLoad: a pool counts at most its
 * threads): only then does a copy on it overlap their pass rather than take a core from them
 * (README, "What copies"), and do the tasks spin at their waits (SPIN_MS). Asked as a call's
 * tasks are made: calls that start later do not change what earlier ones decided.
 */
export function hasSpareCore(ctx: Pick<PoolInternals, 'load'>, threads: number): boolean {
  return ctx.load.busyWith(threads) < CORES;
}

/** Raises the call's cancel flag and wakes any task waiting on it, on the ready flag or on the prep. */
export function cancelCall(ctx: PoolInternals, layout: ScratchLayout): void {
  raiseCancel(ctx.views.i32, layout);
}

/** A call in progress, as its dispatches see it. */
export interface Call {
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
  /** What this thread may copy before its next pause, across all of the call's copies. */
  readonly copies: CopyBudget;
  /** The prep the next dispatch's tasks do first (see `Task.prep`); the call's first dispatch clears it. */
  prep: Task['prep'];
}

/**
 * Eval over chunks staged in two buffers in turn (`place` with `pipeline`): while the workers
 * normalize chunk i, the calling thread copies chunk i - 1 out (to an ordinary destination; its
 * buffer is then free) and chunk i + 1 in, into that buffer.
 */
export async function normalizePipelined(call: Call, placements: readonly Placement[]): Promise<void> {
  const { ctx, req } = call;
  await copyIn(ctx, req, placements[0], call.pauseIn, call.copies);
  for (let i = 0; i < placements.length; i++) {
    await copyWhileRunning(call, tasksFor(call, placements[i], 'normalize'), async () => {
      if (i > 0 && placements[i - 1].copyOutOnMain !== null) await copyOutOnMain(ctx, req, placements[i - 1], pauseOut, call.copies);
      if (i + 1 < placements.length) await copyIn(ctx, req, placements[i + 1], call.pauseIn, call.copies);
    });
  }
  const last = placements[placements.length - 1];
  if (last.copyOutOnMain !== null) await copyOutOnMain(ctx, req, last, pauseOut, call.copies);
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
export function pipelinesFused(call: Call, placements: readonly Placement[]): boolean {
  const [p] = placements;
  return placements.length === 1 && (p.copyIn || p.copyDyIn || p.copyMaskIn) && !call.inline
    && call.grid.mode === 'plane' && hasSpareCore(call.ctx, call.threads) && call.req.dims.length >= 2 * PIPELINE_CHUNK_ELEMENTS;
}

/**
 * A fused call whose tasks start before its arrays are on the pool: this thread copies them a
 * channel at a time (x, and for backward dy and the mask) and counts the channels in at
 * `stagedByte`; each task waits there for the channel it claims (Task.awaitStaged).
 */
export async function fusedPipelined(call: Call, p: Placement): Promise<void> {
  const { ctx, req, layout } = call;
  ctx.views.refresh();
  Atomics.store(ctx.views.i32, layout.stagedByte / 4, 0);
  await copyWhileRunning(call, tasksFor(call, p, 'fused', { awaitStaged: true }), () => copyInByChannel(ctx, req, p, call.pauseIn, call.copies, (done) => {
    ctx.views.refresh();
    Atomics.store(ctx.views.i32, layout.stagedByte / 4, done);
    Atomics.notify(ctx.views.i32, layout.stagedByte / 4);
  }));
  if (p.copyOutOnMain !== null) await copyOutOnMain(ctx, req, p, pauseOut, call.copies);
}

/** Between the slices of a copy out: a turn of the event loop. The output is complete by then. */
export function pauseOut(): Promise<void> {
  return nextTurn();
}

/**
 * Stages a chunk if needed (unless it is still `staged`), runs `op` over it, and copies its output
 * where it belongs. After a statistics pass over the chunk (`afterStats`), it normalizes
 * backwards, starting on what is still cached.
 */
export function normalizeChunk(call: Call, p: Placement, op: TaskOp, afterStats: boolean, staged = false): Promise<void> {
  return runChunk(call, p, op, { reverse: afterStats }, staged);
}

/**
 * Stages a chunk if needed (unless it is still `staged`), runs the tasks of `op` over it (`opts`
 * as tasksFor's), and copies its output where it belongs.
 */
export async function runChunk(call: Call, p: Placement, op: TaskOp, opts: TaskOptions = {}, staged = false): Promise<void> {
  if (!staged) await copyIn(call.ctx, call.req, p, call.pauseIn, call.copies);
  await runPhase(call, tasksFor(call, p, op, opts));
  if (p.copyOutOnMain !== null) await copyOutOnMain(call.ctx, call.req, p, pauseOut, call.copies);
}

/**
 * Elements a task claims at a time (see `Task.chunk`): ~1 MiB of float32, so that a call's tasks
 * finish within ~50 µs of each other however late one started, for ~100 claims (atomic adds on
 * one shared word) per 100 MB.
 */
const CLAIM_ELEMENTS = 1 << 18;

/**
 * A plane-mode fused task claims at least this fraction of its share at a time: runs of adjacent
 * channels. In claims of one channel (~1 MiB or more), two tasks that keep pace take turns, so
 * they walk neighbouring channels at once and each walks every other one: on the fourth machine
 * (bench/MACHINES.md, "Why, on the fourth machine") that cost A's fused kernel walk 12-21% against
 * a contiguous range of channels a thread, and claims of 4 or 8 channels took it back (bench notes
 * in the commit). A late task's share is still taken over, a quarter at a time, and the claims
 * shrink toward the end (FUSED_TAPER). Row-mode fused tasks (bands of wide rows) claim bands as
 * any pass claims its items, about a MiB at a time (claims of 4 bands were no faster there),
 * tapered too.
 */
const FUSED_CLAIMS_PER_TASK = 4;

/**
 * Fused claims are tapered (`Task.taper`): a claim takes at most 1 / (FUSED_TAPER * tasks) of
 * the channels (or bands) left, so the runs of FUSED_CLAIMS_PER_TASK shrink to single channels at
 * the end, where a claim of a quarter share (A: 8 channels, ~0.7 ms) left the other task idle
 * for up to that long: the gap between A's two tasks' ends went from 0.93-1.02 ms to 0.09-0.11
 * for training, 0.80-1.08 to 0.22-0.31 for backward (`node bench/timeline.mjs A`, README). Bands
 * of wide rows, claimed two at a time (a MiB), likewise: `node bench/timeline.mjs 64,65536
 * train,backward-into` (and 16,262144), two runs of the build before and after, gap 0.16-0.19 ->
 * 0.10 ms (training) and 0.31-0.39 -> 0.12-0.13 (backward); 0.34-0.38 -> 0.14-0.18 and
 * 0.51-0.58 -> 0.22-0.30.
 */
const FUSED_TAPER = 2;

/** The number of work items of `op` over a region (see `TaskOp`). */
function itemCount(grid: Grid, region: Region, op: TaskOp, wholeRows: boolean): number {
  const groups = Math.ceil((region.n1 - region.n0) / grid.groupRows);
  if (op === 'phased') return groups;
  if (op === 'normalize' && wholeRows) return region.n1 - region.n0;
  // Row mode: bands (fused), or (row group, band) pairs; a row-mode region holds every band.
  if (grid.mode === 'row') return op === 'fused' ? grid.bands : groups * grid.bands;
  const channels = region.c1 - region.c0;
  if (op === 'fused') return channels;
  // Memory order: row group, then channel, then stretch.
  return groups * channels * grid.sChunks;
}

/** tasksFor's options (see Task: `reverse`, `phases`, `gang` for `merge`, `awaitStaged`, `backward` for `applied`). */
export interface TaskOptions {
  readonly reverse?: boolean;
  readonly phases?: readonly number[] | null;
  readonly merge?: boolean;
  readonly awaitStaged?: boolean;
  /** An eval-mode backward's `stats` tasks give each item its dx after its sums ('eval-applied'). */
  readonly applied?: boolean;
}

/**
 * The tasks of one dispatch: as many as threads (fewer when there are fewer items), all over the
 * region's items, which they claim `chunk` at a time. `split` and `phased` tasks meet at barriers,
 * so they are all counted in `gang`; so are `stats` tasks that `merge` (the last to finish does).
 */
export function tasksFor(call: Call, p: Placement, op: TaskOp, opts: TaskOptions = {}): Task[] {
  const { grid } = call;
  const { region } = p;
  const backward = opts.applied === true ? 'eval-applied' : call.req.backward?.mode ?? null;
  const rows = region.n1 - region.n0;
  const wholeRows = normalizesRows(grid, call.req.dtype, backward, rows, call.threads);
  const items = itemCount(grid, region, op, wholeRows);
  const elements = rows * (region.c1 - region.c0) * grid.S;
  // phased: plane-mode row groups are read two at a time (PLANE_BLOCKS_MAX), so they are claimed
  // in twos; a row-mode row group (about a sixteenth of the rows: over 1 MiB of a phased call
  // with the default cacheBytes) is one kernel call a claim.
  // A small input is shared out in one claim per thread, as many tasks as before claims existed.
  const share = Math.ceil(items / call.threads);
  const planeFused = op === 'fused' && grid.mode === 'plane';
  // Whole rows (`normalize`'s items, or a split's second pass's) go at least ROWS_CLAIM_MIN a claim.
  const rowsChunk = Math.max(ROWS_CLAIM_MIN, Math.min(Math.floor(CLAIM_ELEMENTS / (elements / rows)), Math.ceil(rows / call.threads)));
  const chunk = op === 'phased'
    ? (grid.mode === 'row' ? 1 : PLANE_BLOCKS_MAX)
    : op === 'normalize' && wholeRows
      ? rowsChunk
      : Math.max(
        1, Math.min(Math.floor(CLAIM_ELEMENTS / (elements / items)), share),
        planeFused ? Math.ceil(share / FUSED_CLAIMS_PER_TASK) : 1,
      );
  const second = op === 'split' && wholeRows ? { items: rows, chunk: rowsChunk } : undefined;
  const count = Math.min(call.threads, Math.ceil(items / chunk));
  // Tasks that wait for channels the calling thread copies in order claim them in that order.
  const ranges = opts.awaitStaged === true ? 1 : count;
  // Fused claims of several channels or bands shrink toward the end: see FUSED_TAPER.
  const taper = op === 'fused' && chunk > 1 ? FUSED_TAPER * count : 0;
  const spinMs = hasSpareCore(call.ctx, call.threads) ? SPIN_MS : 0;
  const tasks: Task[] = [];
  for (let i = 0; i < count; i++) {
    tasks.push({
      op,
      dtype: call.req.dtype,
      grid,
      region,
      items,
      slot: i,
      ranges,
      chunk,
      second,
      taper,
      reverse: opts.reverse ?? false,
      scratchByte: call.layout.cancelByte,
      accByte: call.accBase + i * call.accBytes,
      eps: call.req.eps,
      backward,
      wholeRows,
      relu: call.req.relu ?? false,
      inOrder: 2 * elements * bytesPerElement(call.req.dtype) > call.ctx.cacheBytes,
      gang: op === 'split' || op === 'phased' || opts.merge === true ? count : 0,
      phases: opts.phases ?? null,
      spinMs,
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
export async function runPhase(call: Call, tasks: Task[]): Promise<void> {
  // On the workers, posting waits for a turn where other calls' steps held the thread long
  // enough since the last (turns.ts, stepDue): calls started together post together.
  if (!call.inline) while (stepDue(call.copies)) await call.pauseIn();
  // No task of this call runs now (runPhase waits for all of them): the claims start again.
  if (tasks.length > 0) resetClaims(call.ctx.views.i32, call.layout, tasks[0].ranges);
  const settled = await call.ctx.runTasks(tasks, call.inline, call.cancel);
  throwTaskFailure(settled);
  const cancelled = settled.some((s) => s.status === 'fulfilled' && s.value.ok && s.value.cancelled);
  if (cancelled) throw abortError(call.req.signal);
  throwIfAborted(call.req.signal);
}

/**
 * Throws the first failure among settled tasks: a task that threw in its worker as the error it
 * threw (deserializeError), one that threw inline as settleInline made it (a BnPoolError), a
 * worker that died or could not take it as a WorkerError.
 */
export function throwTaskFailure(settled: readonly PromiseSettledResult<TaskResult>[]): void {
  for (const s of settled) {
    if (s.status === 'rejected') {
      if (s.reason instanceof BnPoolError) throw s.reason;
      throw new WorkerError(`a worker failed during the call: ${errorMessage(s.reason)}`, { cause: s.reason });
    }
    if (!s.value.ok) throw deserializeError(s.value.error);
  }
}

function errorMessage(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
