import './wasm-types.js';
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { executeTask, MemoryViews } from '../workers/execute.js';
import { type Kernel, runBytesTask } from '../workers/kernels/kernel.js';
import { cachedWasmModules, createKernel, loadPrivateWasmModule, loadWasmModules, wasmSupported } from '../workers/kernels/select.js';
import { type BytesTask, type Dtype, type Fault, type KernelName, scratchLayout, type StreamTask, type Task, type TaskResult } from '../workers/protocol.js';
import type { WorkerData } from '../workers/worker.js';
import { ArgumentError, ClosedError, describe, OutOfMemoryError, WorkerError } from './errors.js';
import { Arena } from './memory.js';
import { checkOptions, checkPositiveInteger, type FloatArray, lockFields, type OptionKeys } from './validate.js';

/** What `pool.alloc` makes: the modules' dtypes, and 8-bit input (pixels). */
export type AllocDtype = Dtype | 'uint8';

/** Options of `new Pool()`. */
export interface PoolOptions {
  /** Worker threads. Default: `os.availableParallelism()`. */
  threads?: number;
  /**
   * Which kernels run the loops: `'wasm'` (WebAssembly SIMD128), `'js'` (TypeScript loops), or
   * `'auto'` (default): wasm where SIMD validates, else js.
   */
  kernel?: 'auto' | KernelName;
  /** Bytes the shared memory starts with. Default 16 MiB; it grows on demand. */
  initialMemory?: number;
  /**
   * Most bytes the shared memory may grow to. Default and upper bound: 4 GiB, the wasm32 cap.
   * Inputs that are not on the pool and do not fit are processed in chunks.
   */
  maxMemory?: number;
  /**
   * Inputs of at most this many elements run inline on the calling thread, where a worker round
   * trip (100-150 µs here) would cost more than it saves. Default: `DEFAULT_INLINE_THRESHOLD[kernel]`.
   */
  inlineThreshold?: number;
  /**
   * Bytes of input the planner counts on the last-level cache to keep between a training call's
   * statistics pass and its normalization pass. When given, larger training forwards and
   * backwards whose channels cannot be shared out whole between the threads are done a group of
   * channels of at most this size at a time; when not, none is: one barrier won on the third and
   * fourth machines (bench/DESIGN.md, "How the work is split"). A call
   * whose input and output together are larger than it (`DEFAULT_CACHE_BYTES` when not given:
   * 16 MiB, half the 32 MiB L3 of this project's first machine) normalizes rows of channels in
   * lanes (rank 2, channels-last) in address order, as data streaming from memory go fastest
   * (README, "Kernels").
   */
  cacheBytes?: number;
}

const POOL_OPTIONS: OptionKeys<PoolOptions> = {
  threads: true, kernel: true, initialMemory: true, maxMemory: true, inlineThreshold: true, cacheBytes: true,
};

const MAX_MEMORY = 65536 * 65536;
const DEFAULT_INITIAL_MEMORY = 16 * 1024 * 1024;
/** The first 64 KiB of the memory are never handed out: a null guard and room for static data. */
const RESERVED_BYTES = 65536;
/**
 * The most worker threads a pool starts. Each holds a V8 isolate (6.7 MB of RSS a thread here,
 * 65 threads against 1): `threads: 2 ** 31`, a positive integer, ended the process in a fatal
 * out-of-memory error while piscina spawned them.
 */
const MAX_THREADS = 1024;
/** The private memory of inline calls starts at 1 MiB (or maxMemory) and grows with the largest call it stages. */
const PRIVATE_INITIAL_MEMORY = 1 << 20;
/**
 * Elements at or below which a call runs inline, per kernel: the crossover measured by
 * bench/inline-threshold.ts on this project's first 2-core machine (bench/DESIGN.md, "Small inputs"), in
 * finer steps around it. With the JS kernels, 2 workers took 0.99-1.43x the inline time at 65,536
 * elements and 0.76-0.80x at 81,920; with the WASM kernels, 1.07-1.08x at 786,432 and 0.79-0.80x
 * at 917,504. On the Intel machine (2026-12-01): JS 0.77-0.79x at 65,536 and 1.37-1.75x at 32,768, WASM
 * 0.87-0.98x at 786,432 and 1.02-1.19x at 1,048,576 (two runs each). On the third (2026-12-02):
 * JS 1.81-1.82x at 65,536 and 0.69-0.80x at 98,304 (two runs), WASM 0.74-1.31x at 786,432 and
 * 0.81-1.20x at 1,048,576 (three runs). Kept: bench/DESIGN.md, "Small inputs", has why.
 */
export const DEFAULT_INLINE_THRESHOLD: Readonly<Record<KernelName, number>> = Object.freeze({ js: 65536, wasm: 786432 });

/**
 * Default of `PoolOptions.cacheBytes`: half the L3 of this project's first machine, the other half
 * for the output the normalization writes. Measured there on [64, 3, 224, 224] at 2 threads: one
 * 12.8 MB channel at a time took the training forward from 2.98-3.12 ms to 2.70-2.75 ms (same
 * run). On the third machine (same L3) the phases it brought lost on B [256, 256, 14, 14]
 * (2.08-2.15 of the floor against 1.40-1.61 with one barrier) and changed nothing on C, and on
 * the fourth they lost on B, on backwards and (since 2026-12-02 23:30 UTC) on C: so a pool without
 * the option makes no phases (engine.ts, phasesOf), and the default decides only the in-order
 * walk of rows of channels in lanes (Task.inOrder). `node bench/cache-bytes.mjs` measures a
 * machine (bench/DESIGN.md, "How the work is split").
 */
export const DEFAULT_CACHE_BYTES = 16 << 20;

/** What the engine needs of a pool; kept off the public class. */
export interface PoolInternals {
  readonly arena: Arena;
  readonly views: MemoryViews;
  readonly threads: number;
  readonly inlineThreshold: number;
  readonly cacheBytes: number;
  /**
   * Whether `cacheBytes` was given: then it applies to every training forward and backward;
   * without it no call goes in phases (engine.ts, phasesOf).
   */
  readonly cacheBytesGiven: boolean;
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

const internals = new WeakMap<Pool, PoolInternals>();
/** Every pool's arena, weakly held: a call pins its arrays on whichever pool they live (see `pin`). */
const arenas = new Set<WeakRef<Arena>>();

/** The arena `view` lives on, if any pool's. */
function arenaOf(view: ArrayBufferView): Arena | null {
  for (const ref of arenas) {
    const arena = ref.deref();
    if (arena === undefined) arenas.delete(ref);
    else if (arena.owns(view)) return arena;
  }
  return null;
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
const pendingFaults = new WeakMap<Pool, Fault>();

/** @internal Engine access to a pool's internals. */
export function poolInternals(pool: Pool): PoolInternals {
  return internals.get(pool)!;
}

/**
 * @internal Test hook: the next task sent to a worker carries `fault`, making that worker exit
 * or throw instead of working.
 */
export function injectFault(pool: Pool, fault: Fault): void {
  pendingFaults.set(pool, fault);
}

/**
 * A pool of worker threads over one shared `WebAssembly.Memory`, with an allocator for arrays on
 * that memory. Arrays from `alloc` are read and written by the workers in place: an input or an
 * `out` on the pool costs no copy.
 *
 * Workers are kept alive between calls (spawning one costs ~30 ms) but unreferenced while idle,
 * so a script that never calls `close()` still exits. The first pool of a process compiles the
 * WebAssembly kernels off the calling thread; calls wait for them (see `ready`).
 *
 * @example
 * const pool = new Pool({ threads: 2 });
 * await pool.ready; // optional: calls made before wait for the start themselves
 * const x = pool.alloc(32 * 64 * 112 * 112);
 * // ... fill x, run BatchNorm calls with { pool } ...
 * pool.free(x);
 * await pool.close();
 */
export class Pool {
  /** Worker threads. */
  readonly threads: number;
  /** The kernels this pool runs. */
  readonly kernel: KernelName;
  /** Elements at or below which a call runs inline. */
  readonly inlineThreshold: number;
  /** Input bytes the planner counts on the cache to keep between two passes. */
  readonly cacheBytes: number;
  readonly #arena: Arena;
  /** The context of `PoolInternals.privateInline`, once made. */
  #private: PoolInternals | null = null;
  /** The workers, and the calling thread's kernel for inline calls: made by `#start`. */
  #piscina: Piscina | null = null;
  #inlineKernel: Kernel | null = null;
  /** Until the pool has started (its kernels compiled): settles then, and is null from then on. */
  #starting: Promise<void> | null = null;
  readonly #active = new Set<Promise<unknown>>();
  #closing: Promise<void> | null = null;

  constructor(options?: PoolOptions) {
    const opts = checkOptions(options, 'options', POOL_OPTIONS);
    this.threads = opts.threads === undefined ? Math.min(availableParallelism(), MAX_THREADS) : checkPositiveInteger(opts.threads, 'options.threads');
    if (this.threads > MAX_THREADS) {
      throw new ArgumentError(`options.threads must be at most ${MAX_THREADS} (each is a worker thread with its own V8 heap); got ${this.threads}`);
    }
    const kernel = opts.kernel ?? 'auto';
    if (kernel !== 'auto' && kernel !== 'js' && kernel !== 'wasm') {
      throw new ArgumentError(`options.kernel must be 'auto', 'js' or 'wasm'; got ${describe(kernel)}`);
    }
    if (kernel === 'wasm' && !wasmSupported()) {
      throw new ArgumentError(`options.kernel 'wasm' needs WebAssembly SIMD128, which this runtime does not validate; use 'auto' or 'js'`);
    }
    this.kernel = kernel !== 'js' && wasmSupported() ? 'wasm' : 'js';
    const maxMemory = opts.maxMemory === undefined ? MAX_MEMORY : checkPositiveInteger(opts.maxMemory, 'options.maxMemory');
    if (maxMemory > MAX_MEMORY || maxMemory < 2 * RESERVED_BYTES) {
      throw new ArgumentError(`options.maxMemory must be between ${2 * RESERVED_BYTES} and ${MAX_MEMORY} bytes; got ${maxMemory}`);
    }
    const initialMemory = opts.initialMemory === undefined
      ? Math.min(DEFAULT_INITIAL_MEMORY, maxMemory)
      : checkPositiveInteger(opts.initialMemory, 'options.initialMemory');
    if (initialMemory > maxMemory) {
      throw new ArgumentError(`options.initialMemory must be at most options.maxMemory (${maxMemory}); got ${initialMemory}`);
    }
    this.inlineThreshold = opts.inlineThreshold === undefined
      ? DEFAULT_INLINE_THRESHOLD[this.kernel]
      : checkNonNegativeInteger(opts.inlineThreshold, 'options.inlineThreshold');
    this.cacheBytes = opts.cacheBytes === undefined ? DEFAULT_CACHE_BYTES : checkPositiveInteger(opts.cacheBytes, 'options.cacheBytes');
    lockFields(this, ['threads', 'kernel', 'inlineThreshold', 'cacheBytes']);

    const arena = new Arena(initialMemory, maxMemory, RESERVED_BYTES);
    this.#arena = arena;
    arenas.add(new WeakRef(arena));
    const views = new MemoryViews(arena.memory);
    const ctx: PoolInternals = {
      arena,
      views,
      threads: this.threads,
      inlineThreshold: this.inlineThreshold,
      cacheBytes: this.cacheBytes,
      cacheBytesGiven: opts.cacheBytes !== undefined,
      assertOpen: () => this.#assertOpen(),
      starting: () => this.#starting,
      runTasks: (tasks, inline, onFailure) => this.#runTasks(tasks, inline, onFailure, this.#inlineKernel!, views),
      track: (work) => this.#track(work),
      runStream: (tasks) => this.#track((async () => {
        await this.#starting;
        return this.#runOnWorkers(tasks);
      })()),
      runBytes: async (tasks, inline) => {
        await this.#starting;
        if (!inline) return this.#runOnWorkers(tasks);
        return settleInline(tasks, (task) => {
          runBytesTask(this.#inlineKernel!, task);
          return { ok: true, cancelled: false };
        });
      },
      privateInline: () => {
        this.#private ??= this.#privateContext(ctx, maxMemory);
        return this.#private;
      },
    };
    internals.set(this, ctx);
    // The kernels compile off this thread (loadWasmModules) unless a pool compiled them already:
    // calls made meanwhile wait for them (PoolInternals.starting).
    const modules = this.kernel === 'wasm' ? cachedWasmModules() : null;
    if (this.kernel === 'js' || modules !== null) {
      this.#start(modules?.shared ?? null);
    } else {
      const starting = loadWasmModules().then(
        (compiled) => {
          // Closed before it started, with no call waiting for it: no workers to spawn. Where
          // #start throws, #starting stays rejected: every call fails the same way.
          if (this.#closing === null || this.#active.size > 0) this.#start(compiled.shared);
          this.#starting = null;
        },
        (err: unknown) => {
          throw new WorkerError(`the pool cannot start: compiling its WebAssembly kernels failed (${(err as Error)?.message ?? err})`, { cause: err });
        },
      );
      // Its rejection reaches every call; unobserved (no call), it must not end the process.
      starting.catch(() => {});
      this.#starting = starting;
    }
  }

  /** Starts the workers and builds the calling thread's kernel, once the module is compiled. */
  #start(wasmModule: WebAssembly.Module | null): void {
    const workerData: WorkerData = { memory: this.#arena.memory, kernel: this.kernel, wasmModule };
    this.#piscina = new Piscina({
      // A CommonJS entry that imports workers/worker.js (workers/entry.cts says why).
      filename: new URL('../workers/entry.cjs', import.meta.url).href,
      minThreads: this.threads,
      maxThreads: this.threads,
      // Keep workers: a respawn costs ~30 ms. Idle workers are unref'd by piscina.
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      // Strict FIFO: a training call queues its normalize tasks behind its statistics tasks and
      // they wait for those to finish (workers/execute.ts). That is deadlock-free only if every
      // task queued before one has started when it starts; piscina's default requeues a task it
      // could not place at the tail, which breaks that (seen: 50 concurrent calls hung).
      stricterFIFO: true,
      atomics: 'sync',
      // bnpool exposes no run-time histograms: recording them cost a few µs a task.
      recordTiming: false,
      workerData,
    });
    this.#inlineKernel = createKernel(this.kernel, this.#arena.memory, wasmModule);
  }

  /**
   * Builds `PoolInternals.privateInline`'s context; `ctx` itself where its kernel cannot run on
   * one. Growing this memory detaches its buffer. The calls on it share one `MemoryViews`, and a
   * call refreshes it right after it allocates (execute, place), in the same synchronous stretch,
   * so no call finds it stale after an await; an array view held across an await is made again
   * (copyBox).
   */
  #privateContext(ctx: PoolInternals, maxMemory: number): PoolInternals {
    const module = this.kernel === 'wasm' ? loadPrivateWasmModule() : null;
    if (this.kernel === 'wasm' && module === null) return ctx;
    const arena = new Arena(Math.min(PRIVATE_INITIAL_MEMORY, maxMemory), maxMemory, RESERVED_BYTES, false);
    const views = new MemoryViews(arena.memory);
    const kernel = createKernel(this.kernel, arena.memory, module);
    const context: PoolInternals = {
      ...ctx,
      arena,
      views,
      runTasks: (tasks, _inline, onFailure) => this.#runTasks(tasks, true, onFailure, kernel, views),
      privateInline: () => context,
    };
    return context;
  }

  /** The shared memory the workers and `alloc`'s arrays live on. */
  get memory(): WebAssembly.Memory {
    return this.#arena.memory;
  }

  /**
   * Sizes of the shared memory: its current length, bytes allocated, and its cap; and the length
   * of the calling thread's private staging memory, where inline calls with every array off the
   * pool run (0 until the first such call; it keeps the size of the largest one).
   */
  get memoryStats(): { byteLength: number; liveBytes: number; maxBytes: number; privateByteLength: number } {
    return {
      byteLength: this.#arena.byteLength,
      liveBytes: this.#arena.liveBytes,
      maxBytes: this.#arena.maxBytes,
      // The shared context itself where the kernels cannot run on a private memory: none made.
      privateByteLength: this.#private === null || this.#private.arena === this.#arena ? 0 : this.#private.arena.byteLength,
    };
  }

  /**
   * Resolves once the pool has started: its kernels compiled and its worker threads spawned. A
   * new pool compiles the WebAssembly kernels off the calling thread (once per process, ~50-100
   * ms here), so `new Pool()` returns at once; calls made before wait for the start themselves.
   * Await it to keep that wait out of a first call (a benchmark, a server's warm-up). Rejects with
   * a `WorkerError` where the kernels do not compile.
   */
  get ready(): Promise<void> {
    return this.#starting ?? Promise.resolve();
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /**
   * Allocates an array of `length` elements on the pool's memory, zero-filled the first time its
   * bytes are used (reused bytes keep old contents, as with `Buffer.allocUnsafe`). It stays valid
   * after the memory grows. Give it back with `free`. `'uint8'` makes a Uint8Array for 8-bit
   * input (pixels): a batch assembled there is read by the workers where it lies, not copied in.
   *
   * @example
   * const x = pool.alloc(1024);            // Float32Array
   * const d = pool.alloc(1024, 'float64'); // Float64Array
   * const rgb = pool.alloc(16 * 224 * 224 * 3, 'uint8'); // Uint8Array
   */
  alloc(length: number, dtype?: 'float32'): Float32Array;
  alloc(length: number, dtype: 'float64'): Float64Array;
  alloc(length: number, dtype: 'uint8'): Uint8Array;
  alloc(length: number, dtype: Dtype): FloatArray;
  alloc(length: number, dtype?: AllocDtype): FloatArray | Uint8Array;
  alloc(length: number, dtype: AllocDtype = 'float32'): FloatArray | Uint8Array {
    this.#assertOpen();
    checkPositiveInteger(length, 'length');
    if (dtype !== 'float32' && dtype !== 'float64' && dtype !== 'uint8') {
      throw new ArgumentError(`dtype must be 'float32', 'float64' or 'uint8'; got ${describe(dtype)}`);
    }
    const bpe = dtype === 'float64' ? 8 : dtype === 'uint8' ? 1 : 4;
    const offset = this.#arena.alloc(length * bpe);
    if (offset < 0) {
      throw new OutOfMemoryError(
        `pool.alloc(${length}, '${dtype}') needs ${length * bpe} bytes; the pool's memory is ${this.#arena.byteLength} of at most ${this.#arena.maxBytes} bytes, ${this.#arena.liveBytes} in use`,
      );
    }
    const buffer = this.#arena.buffer();
    if (dtype === 'uint8') return new Uint8Array(buffer, offset, length);
    return dtype === 'float64' ? new Float64Array(buffer, offset, length) : new Float32Array(buffer, offset, length);
  }

  /**
   * Returns an array from `alloc` to the pool. Freeing anything else is an `ArgumentError`, and
   * so is freeing an array a call in flight uses (as x, out, dy, or a ReLU output it reads), until
   * that call settles: its workers would read or write memory handed out again.
   *
   * @example
   * const x = pool.alloc(n);
   * try { await bn.forward(x, shape, { out: x }); } finally { pool.free(x); }
   */
  free(array: FloatArray | Uint8Array): void {
    const size = ArrayBuffer.isView(array) && this.#arena.owns(array) ? this.#arena.sizeAt(array.byteOffset) : undefined;
    if (size === undefined) {
      throw new ArgumentError(`array must be a live array from this pool's alloc(); got ${describe(array)}${ArrayBuffer.isView(array) ? ` at byte offset ${array.byteOffset}` : ''}`);
    }
    if (this.#arena.inUse(array.byteOffset, size)) {
      throw new ArgumentError(`array (${describe(array)} at byte offset ${array.byteOffset}) is in use by a call in flight; free it once that call has settled`);
    }
    this.#arena.free(array.byteOffset);
  }

  /**
   * Waits for every call made before it (queued behind a module's earlier calls, running, or
   * waiting on a `reduceStats` / `reduceGrads` hook), then stops the workers. Later calls fail
   * with `ClosedError`.
   *
   * @example
   * process.once('SIGTERM', () => { void pool.close(); }); // in-flight calls finish first
   */
  close(): Promise<void> {
    if (this.#closing === null) {
      this.#closing = (async () => {
        await Promise.allSettled([...this.#active]);
        await this.#starting?.catch(() => {});
        // A call settles once every task it sent has: no task is queued or running now, so
        // piscina has nothing to flush. destroy(), not close(): close() leaves a timer of its
        // closeTimeout (30 s) that holds the piscina pool and its workers' data, this memory.
        await this.#piscina?.destroy();
      })();
    }
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closing !== null) throw new ClosedError('the pool is closed; create a new Pool');
  }

  async #track<T>(work: Promise<T>): Promise<T> {
    this.#active.add(work);
    try {
      return await work;
    } finally {
      this.#active.delete(work);
    }
  }

  /** Sends each task (a floor pass or 8-bit input's) to a worker; settles when all have. */
  #runOnWorkers(tasks: readonly (StreamTask | BytesTask)[]): Promise<PromiseSettledResult<TaskResult>[]> {
    return Promise.allSettled(tasks.map((task) => this.#piscina!.run(task) as Promise<TaskResult>));
  }

  async #runTasks(
    tasks: Task[], inline: boolean, onFailure: () => void, inlineKernel: Kernel, views: MemoryViews,
  ): Promise<PromiseSettledResult<TaskResult>[]> {
    if (inline) return settleInline(tasks, (task) => ({ ok: true, cancelled: !executeTask(task, inlineKernel, views) }));
    const fault = pendingFaults.get(this);
    if (fault !== undefined && tasks.length > 0) {
      pendingFaults.delete(this);
      tasks = [{ ...tasks[0], fault }, ...tasks.slice(1)];
      if ('holdsPrep' in fault && fault.holdsPrep === true) {
        views.refresh();
        Atomics.add(views.i32, scratchLayout(tasks[0].grid, tasks[0].scratchByte).prepClaimByte / 4, 1);
      }
    }
    return Promise.allSettled(tasks.map(async (task) => {
      try {
        const result = await (this.#piscina!.run(task) as Promise<TaskResult>);
        if (!result.ok) onFailure();
        return result;
      } catch (err) {
        onFailure();
        throw err;
      }
    }));
  }
}

/** Runs each task with `run` on this thread, settled as Promise.allSettled reports a worker's. */
function settleInline<T>(tasks: readonly T[], run: (task: T) => TaskResult): PromiseSettledResult<TaskResult>[] {
  return tasks.map((task): PromiseSettledResult<TaskResult> => {
    try {
      return { status: 'fulfilled', value: run(task) };
    } catch (reason) {
      return { status: 'rejected', reason };
    }
  });
}

function checkNonNegativeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ArgumentError(`${name} must be a non-negative integer; got ${describe(value)}`);
  }
  return value;
}

let defaultPool: Pool | null = null;

/**
 * The pool used by calls that pass none: created on first use with the default options, and
 * shared. Its idle workers do not keep the process alive.
 */
export function getDefaultPool(): Pool {
  if (defaultPool === null || defaultPool.closed) defaultPool = new Pool();
  return defaultPool;
}
