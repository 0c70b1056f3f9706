/**
 * What the engine needs of a pool, kept off the public class: each pool's internals, every
 * pool's arena (a call pins its arrays on whichever pool they live), and the tests' fault hook.
 */
import type { MemoryViews } from '../workers/execute.js';
import type { BytesTask, Fault, StreamTask, Task, TaskResult } from '../workers/protocol.js';
import { ArgumentError, describe } from './errors.js';
import type { Arena } from './memory.js';
import type { Pool } from './pool.js';
import { AUTO_GRAIN } from './pool-options.js';

/** What the engine needs of a pool. */
export interface PoolInternals {
  readonly arena: Arena;
  readonly views: MemoryViews;
  readonly threads: number;
  readonly inlineThreshold: number;
  /** `PoolOptions.grainSize`: see workerThreads. */
  readonly grainSize: number | 'auto';
  readonly cacheBytes: number;
  /**
   * Whether `cacheBytes` was given: then it applies to every training forward and backward;
   * without it no call goes in phases (engine.ts, phasesOf).
   */
  readonly cacheBytesGiven: boolean;
  /** Its tasks in flight, counted among every pool's (hasSpareCore, src/dispatch.ts). */
  readonly load: WorkerLoad;
  assertOpen(): void;
  /**
   * Null once the pool has started; until then, a promise that settles when it has (rejects when
   * it cannot: its kernels did not compile). A call awaits it before it reads or stages anything.
   */
  starting(): Promise<void> | null;
  /**
   * Runs tasks on the workers (or inline) and settles every one of them before returning.
   * `onFailure` runs as soon as one task fails, so that tasks waiting on it can give up.
   */
  runTasks(tasks: Task[], inline: boolean, onFailure: () => void): Promise<PromiseSettledResult<TaskResult>[]>;
  /** Runs benchmark floor tasks on the workers. */
  runStream(tasks: StreamTask[]): Promise<PromiseSettledResult<TaskResult>[]>;
  /**
   * Runs the tasks of an 8-bit input's normalization (src/bytes.ts) on the workers, or with
   * `inline` one after another on the calling thread, and settles every one of them.
   */
  runBytes(tasks: BytesTask[], inline: boolean): Promise<PromiseSettledResult<TaskResult>[]>;
  /**
   * Tracks a call so that `close()` waits for it. The public calls track themselves from the
   * moment they pass `assertOpen` (the engine then runs without checking again), so that a call
   * made before close() runs to the end even while it waits for its turn or on a hook.
   */
  track<T>(work: Promise<T>): Promise<T>;
  /**
   * The context of calls that run inline with every array off the pool: the same pool, but a
   * private, non-shared memory of the calling thread (created on first use, grown as needed up
   * to the pool's `maxMemory`) with its own kernel instance. Staging there is copying between
   * ordinary memories, which V8 does 1.6-2.5x faster than into or out of a shared memory
   * (bench/copies.mjs).
   */
  privateInline(): PoolInternals;
}

/**
 * The threads a call over `elements` of input runs on: one (the calling thread) at or below the
 * pool's inline threshold, else its share of the workers (workerThreads).
 */
export function callThreads(ctx: Pick<PoolInternals, 'threads' | 'inlineThreshold' | 'grainSize'>, elements: number): number {
  return elements <= ctx.inlineThreshold ? 1 : workerThreads(ctx, elements);
}

/**
 * The pool's threads, but at most ceil(sqrt(elements / AUTO_GRAIN)) of them (`grainSize`
 * 'auto'), or one per `grainSize` elements, rounded up.
 */
export function workerThreads(ctx: Pick<PoolInternals, 'threads' | 'grainSize'>, elements: number): number {
  const byGrain = ctx.grainSize === 'auto' ? Math.ceil(Math.sqrt(elements / AUTO_GRAIN)) : Math.ceil(elements / ctx.grainSize);
  return Math.min(ctx.threads, byGrain);
}

/**
 * Worker threads of this thread's pools that hold a task now: posted to piscina and not settled.
 * A pool counts at most its `threads` (piscina queues the rest). Beside the calling thread, they
 * are the cores the process's calls take (hasSpareCore, src/dispatch.ts).
 */
let busyWorkers = 0;

/** A pool's tasks in flight, kept in `busyWorkers`. */
export class WorkerLoad {
  readonly #threads: number;
  #inFlight = 0;

  constructor(threads: number) {
    this.#threads = threads;
  }

  /** The busy workers of this thread's pools, were `more` tasks of this pool in flight beside its own. */
  busyWith(more: number): number {
    return busyWorkers - this.#busy(0) + this.#busy(more);
  }

  /** Counts a task posted to a worker; the function returned counts it settled (once). */
  posted(): () => void {
    busyWorkers += this.#busy(1) - this.#busy(0);
    this.#inFlight++;
    let settled = false;
    return () => {
      if (settled) return;
      settled = true;
      busyWorkers += this.#busy(-1) - this.#busy(0);
      this.#inFlight--;
    };
  }

  #busy(more: number): number {
    return Math.min(this.#inFlight + more, this.#threads);
  }
}

const internals = new WeakMap<Pool, PoolInternals>();
/** Every pool's arena, weakly held: a call pins its arrays on whichever pool they live (`pinArrays`). */
const arenas = new Set<WeakRef<Arena>>();
const pendingFaults = new WeakMap<Pool, Fault>();

/** Records a new pool's internals, and its arena among those `pinArrays` looks in. */
export function registerPool(pool: Pool, ctx: PoolInternals): void {
  internals.set(pool, ctx);
  arenas.add(new WeakRef(ctx.arena));
}

/** @internal Engine access to a pool's internals. */
export function poolInternals(pool: Pool): PoolInternals {
  return internals.get(pool)!;
}

/**
 * The arena `view` lives on, if any pool's. A pool's arrays are views of its shared memory, made
 * in this realm (`Pool.alloc`): a view of any other buffer is none of them, told without the loop
 * (a call asks for each of its arrays, and inline calls take ~10 µs).
 */
function arenaOf(view: ArrayBufferView): Arena | null {
  if (!(view.buffer instanceof SharedArrayBuffer)) return null;
  for (const ref of arenas) {
    const arena = ref.deref();
    if (arena === undefined) arenas.delete(ref);
    else if (arena.owns(view)) return arena;
  }
  return null;
}

/**
 * Which pool allocation `view` lies in: null where it is on no pool's memory, else the serial of
 * the live block holding it (`Arena.allocation`: 0 once that block was freed). A module records it
 * for the arrays its backward reads again, which the backward compares: a block freed and handed
 * out again since reads as another allocation.
 */
export function allocationOf(view: ArrayBufferView): number | null {
  const arena = arenaOf(view);
  return arena === null ? null : arena.allocation(view);
}

/**
 * A call's arrays that lie on a pool's memory, each in a live allocation: one that `pool.free`
 * returned is an ArgumentError naming it, before the call does anything. Its block may have been
 * handed out again, and the call would read another array's values as its own, or write its
 * output over them. Entries: [the argument, its name]; null, undefined and arrays on no pool
 * pass.
 */
export function checkLive(entries: ReadonlyArray<readonly [unknown, string]>): void {
  for (const [value, name] of entries) {
    if (!ArrayBuffer.isView(value)) continue;
    const arena = arenaOf(value);
    if (arena !== null && arena.allocation(value) === 0) {
      const where = arena.tagged(value) ? 'which pool.free returned' : 'outside every live one';
      throw new ArgumentError(
        `${name} must lie within a live array from its pool's alloc() (not freed since); got ${describe(value)} at byte offset ${value.byteOffset}, ${where}`,
      );
    }
  }
}

/**
 * Pins a call's arrays (x, out, dy, a mask) that lie on any pool's memory, from the call's start,
 * queued or not, until it settles: that pool's `free` refuses them meanwhile. Any pool: a call
 * copies another pool's arrays in (in slices, between turns of the event loop) or has its
 * workers write its output into their buffer. Returns the release.
 */
export function pinArrays(arrays: readonly unknown[]): () => void {
  const releases: (() => void)[] = [];
  for (const a of arrays) {
    const owner = ArrayBuffer.isView(a) ? arenaOf(a) : null;
    if (owner !== null) releases.push(owner.pin(a as ArrayBufferView));
  }
  return () => { for (const release of releases) release(); };
}

/**
 * @internal Test hook: the next task sent to a worker carries `fault`, making that worker exit
 * or throw instead of working; a `throw` fault applies to the next task run inline too.
 */
export function injectFault(pool: Pool, fault: Fault): void {
  pendingFaults.set(pool, fault);
}

/**
 * @internal Test hook: whether the fault `injectFault` left for `pool` still waits for a task.
 * Once it is taken, the call that took it has posted its tasks (`takeFault` and the posts are one
 * synchronous stretch), so a test can cancel that call while its tasks are certainly running.
 */
export function faultPending(pool: Pool): boolean {
  return pendingFaults.has(pool);
}

/**
 * Takes the fault `injectFault` left for `pool`'s next task, if any (and of `kind`, where given:
 * the other kinds wait for a task a worker runs): it applies once.
 */
export function takeFault(pool: Pool, kind?: Fault['kind']): Fault | undefined {
  const fault = pendingFaults.get(pool);
  if (fault === undefined || (kind !== undefined && fault.kind !== kind)) return undefined;
  pendingFaults.delete(pool);
  return fault;
}
