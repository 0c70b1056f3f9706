import { isBufferMemory, memoryForWorkers, PAGE, wasmApi } from './wasm-types.js';
import { Piscina } from 'piscina';
import { executeTask, MemoryViews } from '../workers/execute.js';
import { type Kernel, runBytesTask } from '../workers/kernels/kernel.js';
import { cachedWasmModules, createKernel, loadPrivateWasmModule, loadWasmModules } from '../workers/kernels/select.js';
import {
  type BytesTask, type Dtype, faultError, type KernelName, type Posted, type StreamTask, type Task, type TaskResult,
} from '../workers/protocol.js';
import { scratchLayout } from '../workers/scratch.js';
import type { WorkerData } from '../workers/worker.js';
import { ArgumentError, BnPoolError, ClosedError, describe, deserializeError, OutOfMemoryError, serializeError, WorkerError } from './errors.js';
import { Arena } from './memory.js';
import { type PoolInternals, registerPool, takeFault, WorkerLoad } from './pool-internals.js';
import {
  DEFAULT_INLINE_THRESHOLD, PRIVATE_INITIAL_MEMORY, type PoolOptions, type PoolSettings, RESERVED_BYTES, resolvePoolOptions,
} from './pool-options.js';
import { checkNonNegativeInteger, type FloatArray, lockFields } from './validate.js';

/** What `pool.alloc` makes: the modules' dtypes, and 8-bit input (pixels). */
export type AllocDtype = Dtype | 'uint8';

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
  /** How many threads a call takes: `'auto'`, or the elements of input it takes a thread for (`PoolOptions.grainSize`). */
  readonly grainSize: number | 'auto';
  readonly #arena: Arena;
  readonly #load: WorkerLoad;
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
    const resolved = resolvePoolOptions(options);
    if (workersDenied()) {
      throw new WorkerError(
        "new Pool() needs worker threads, and Node's permission model denies them to this process (it is on, by --experimental-permission or --permission, without --allow-worker); add --allow-worker to Node's flags",
      );
    }
    const { arena, settings } = reserveArena(resolved);
    this.threads = settings.threads;
    this.kernel = settings.kernel;
    this.inlineThreshold = settings.inlineThreshold;
    this.cacheBytes = settings.cacheBytes;
    this.grainSize = settings.grainSize;
    const { maxMemory } = settings;
    lockFields(this, ['threads', 'kernel', 'inlineThreshold', 'cacheBytes', 'grainSize']);

    this.#arena = arena;
    this.#load = new WorkerLoad(this.threads);
    const views = new MemoryViews(arena.memory);
    const ctx: PoolInternals = {
      arena,
      views,
      threads: this.threads,
      inlineThreshold: this.inlineThreshold,
      cacheBytes: this.cacheBytes,
      grainSize: this.grainSize,
      cacheBytesGiven: settings.cacheBytesGiven,
      load: this.#load,
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
    registerPool(this, ctx);
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
    const workerData: WorkerData = { memory: memoryForWorkers(this.#arena.memory), kernel: this.kernel, wasmModule };
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
   * (copyBox; newCopy and copyInto, a slice at a time).
   */
  #privateContext(ctx: PoolInternals, maxMemory: number): PoolInternals {
    const module = this.kernel === 'wasm' ? loadPrivateWasmModule() : null;
    if (this.kernel === 'wasm' && module === null) return ctx;
    let arena: Arena;
    try {
      // Of the shared memory's kind: a BufferMemory where the shared one is (reserveArena).
      arena = new Arena(Math.min(PRIVATE_INITIAL_MEMORY, maxMemory), maxMemory, RESERVED_BYTES, false, !isBufferMemory(this.#arena.memory));
    } catch (err) {
      // The address space cannot take a second memory (reserveArena): the calls stage on the
      // shared one, as they do where the kernels cannot run on a private memory.
      if (err instanceof RangeError) return ctx;
      throw err;
    }
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

  /**
   * The shared memory the workers and `alloc`'s arrays live on: a `WebAssembly.Memory`, or where
   * the runtime has no WebAssembly (`node --jitless`) or cannot reserve a WebAssembly memory (a
   * limited address space: `reserveArena`) a `BufferMemory` with the same `buffer` and `grow`
   * over a growable SharedArrayBuffer.
   */
  get memory(): WebAssembly.Memory {
    return this.#arena.memory;
  }

  /**
   * Sizes of the shared memory: its current length, bytes allocated, and its cap (`maxMemory`, or
   * less once the runtime refused to grow it further: README, "Kernels"); the length of
   * the calling thread's private staging memory, where inline calls with every array off the
   * pool run (0 until the first such call; it keeps the size of the largest one); and `waiting`,
   * the calls waiting in line for memory that other calls hold (on either memory: README, "What
   * copies"), a server's sign that `maxMemory` holds its calls back.
   */
  get memoryStats(): {
    byteLength: number; liveBytes: number; maxBytes: number; privateByteLength: number; waiting: number;
  } {
    // The shared context itself where the kernels cannot run on a private memory: none made.
    const privateArena = this.#private === null || this.#private.arena === this.#arena ? null : this.#private.arena;
    return {
      byteLength: this.#arena.byteLength,
      liveBytes: this.#arena.liveBytes,
      maxBytes: this.#arena.maxBytes,
      privateByteLength: privateArena?.byteLength ?? 0,
      waiting: this.#arena.line.waiting + (privateArena?.line.waiting ?? 0),
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
   * `length` may be 0, for an empty batch (it still takes a block, to `free` as any other).
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
    checkNonNegativeInteger(length, 'length');
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
    const array = dtype === 'uint8'
      ? new Uint8Array(buffer, offset, length)
      : dtype === 'float64' ? new Float64Array(buffer, offset, length) : new Float32Array(buffer, offset, length);
    // Known as this block's: a call given it after pool.free is refused, even once the block is handed out again.
    this.#arena.tag(array);
    return array;
  }

  /**
   * Returns an array from `alloc` to the pool. Freeing anything else is an `ArgumentError`, as is
   * freeing an array twice (its block may be another array's by then), and so is freeing an array
   * a call in flight uses (as x, out, dy, or a ReLU output it reads), until that call settles: its
   * workers would read or write memory handed out again. A call given a freed array refuses it.
   *
   * @example
   * const x = pool.alloc(n);
   * try { await bn.forward(x, shape, { out: x }); } finally { pool.free(x); }
   */
  free(array: FloatArray | Uint8Array): void {
    const size = ArrayBuffer.isView(array) && this.#arena.owns(array) ? this.#arena.sizeAt(array.byteOffset) : undefined;
    // An array freed before, whose block was handed out again since: not the live one's to free.
    if (size === undefined || (this.#arena.tagged(array) && this.#arena.allocation(array) === 0)) {
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

  /**
   * `close()`, for `await using` (TypeScript 5.2+, as piscina's pools take it): the pool closes
   * at the end of its block, once the calls made in it have settled.
   *
   * @example
   * {
   *   await using pool = new Pool({ threads: 2 });
   *   await new BatchNorm(64, { pool }).forward(x, shape);
   * } // pool.close() awaited here, as the block ends or throws
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
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
    return Promise.allSettled(tasks.map((task) => this.#post(task)));
  }

  /**
   * Sends a task to a worker, with the memory's length now (workers/execute.ts, `coverMemory`).
   * Never throws: where piscina's `run` throws at once (a `postMessage` that fails), the task is a
   * rejection like any worker's failure, so that a call's other tasks are still posted and awaited
   * (Promise.allSettled) before the call frees the blocks they work on.
   */
  #post(task: Task | StreamTask | BytesTask): Promise<TaskResult> {
    const posted: Posted<typeof task> = { ...task, memoryBytes: this.#arena.byteLength };
    const settled = this.#load.posted();
    try {
      return (this.#piscina!.run(posted) as Promise<TaskResult>).finally(settled);
    } catch (err) {
      settled();
      return Promise.reject(err);
    }
  }

  async #runTasks(
    tasks: Task[], inline: boolean, onFailure: () => void, inlineKernel: Kernel, views: MemoryViews,
  ): Promise<PromiseSettledResult<TaskResult>[]> {
    if (inline) {
      // Of the test hook's faults, a thrown one alone can apply on this thread.
      const fault = tasks.length > 0 ? takeFault(this, 'throw') : undefined;
      return settleInline(tasks, (task) => {
        if (fault?.kind === 'throw' && task === tasks[0]) throw faultError(fault);
        return { ok: true, cancelled: !executeTask(task, inlineKernel, views) };
      });
    }
    const fault = tasks.length > 0 ? takeFault(this) : undefined;
    if (fault !== undefined) {
      tasks = [{ ...tasks[0], fault }, ...tasks.slice(1)];
      if ('holdsPrep' in fault && fault.holdsPrep === true) {
        views.refresh();
        Atomics.add(views.i32, scratchLayout(tasks[0].grid, tasks[0].scratchByte).prepClaimByte / 4, 1);
      }
    }
    return Promise.allSettled(tasks.map(async (task) => {
      try {
        const result = await this.#post(task);
        if (!result.ok) onFailure();
        return result;
      } catch (err) {
        onFailure();
        throw err;
      }
    }));
  }
}

/**
 * Runs each task with `run` on this thread, settled as Promise.allSettled reports a worker's. A
 * task that throws is rejected with the error the call throws (throwTaskFailure): the one a
 * worker's task that threw the same would give (deserializeError: a bnpool error by its code),
 * but for one of no bnpool code a WorkerError that says no worker ran it.
 */
function settleInline<T>(tasks: readonly T[], run: (task: T) => TaskResult): PromiseSettledResult<TaskResult>[] {
  return tasks.map((task): PromiseSettledResult<TaskResult> => {
    try {
      return { status: 'fulfilled', value: run(task) };
    } catch (reason) {
      return {
        status: 'rejected',
        reason: reason instanceof BnPoolError
          ? reason
          : deserializeError(serializeError(reason), 'the kernels failed on the calling thread, where the call ran inline', reason),
      };
    }
  });
}

/** Whether a pool of this process has warned that it runs without a WebAssembly memory (once per process). */
let warnedNoWasmMemory = false;

/**
 * The pool's shared memory, and the settings the pool runs with. V8 reserves about 10 GiB of
 * address space for each WebAssembly memory whatever its maximum (guard regions, so that its
 * code need not check bounds), which a process whose virtual memory is limited (`ulimit -v`, as
 * some HPC jobs and shared hosts are) may not have: `new WebAssembly.Memory()` then throws a
 * RangeError, which came out of `new Pool()` until 2026-12-06. Now a pool that may run the
 * TypeScript kernels (`'auto'`, `'js'`) takes a growable SharedArrayBuffer instead (a
 * `BufferMemory`, which reserves `maxMemory` only), and an `'auto'` pool runs those kernels and
 * says so, once per process, in a process warning. A pool asked for `'wasm'`, or one whose
 * `maxMemory` the address space cannot take either, is an `OutOfMemoryError` that names the way
 * out (`--disable-wasm-trap-handler`: V8 then checks bounds in the code, and reserves only the
 * memory's maximum).
 */
function reserveArena(settings: PoolSettings): { arena: Arena; settings: PoolSettings } {
  const { initialMemory, maxMemory } = settings;
  if (wasmApi !== undefined) {
    try {
      return { arena: new Arena(initialMemory, maxMemory, RESERVED_BYTES), settings };
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      if (initialRefused(maxMemory)) {
        throw new OutOfMemoryError(
          `V8 would not make the pool's WebAssembly memory of ${initialMemory} bytes (options.initialMemory), though it makes one that starts smaller (${err.message}): its --wasm-max-mem-pages, set at run time (v8.setFlagsFromString), or the OS's memory limits allow less. Lower options.initialMemory`,
        );
      }
      if (settings.requested === 'wasm') {
        throw new OutOfMemoryError(
          `options.kernel 'wasm' needs a WebAssembly memory, and V8 could not reserve one (${err.message}): it reserves about 10 GiB of address space for each, more than this process's virtual memory limit (ulimit -v) leaves. Start Node with --disable-wasm-trap-handler, raise the limit, or use kernel 'auto' or 'js'`,
        );
      }
    }
  }
  let arena: Arena;
  try {
    arena = new Arena(initialMemory, maxMemory, RESERVED_BYTES, true, false);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw new OutOfMemoryError(
      `new Pool() cannot reserve its shared memory of up to ${maxMemory} bytes (options.maxMemory): ${err.message}. Lower options.maxMemory, or raise the process's virtual memory limit (ulimit -v)`,
    );
  }
  if (settings.kernel === 'js') return { arena, settings };
  if (!warnedNoWasmMemory) {
    warnedNoWasmMemory = true;
    process.emitWarning(
      "bnpool: V8 could not reserve a WebAssembly memory (about 10 GiB of address space each: is this process's virtual memory limited, ulimit -v?), so pools run the TypeScript kernels, several times slower. Start Node with --disable-wasm-trap-handler to keep the WebAssembly kernels.",
      { code: 'BNPOOL_NO_WASM_MEMORY' },
    );
  }
  const inlineThreshold = settings.inlineThresholdGiven ? settings.inlineThreshold : DEFAULT_INLINE_THRESHOLD.js;
  return { arena, settings: { ...settings, kernel: 'js', inlineThreshold } };
}

/**
 * Whether V8 makes a WebAssembly memory of one page that may grow to `maxMemory` (then discarded):
 * where the pool's own memory failed, its initial size was refused, not the address space it
 * reserves (`reserveArena`). A flag given at start is checked before (`wasmMemoryLimit`).
 */
function initialRefused(maxMemory: number): boolean {
  try {
    new wasmApi!.Memory({ initial: 1, maximum: Math.floor(maxMemory / PAGE), shared: true });
    return true;
  } catch (err) {
    if (err instanceof RangeError) return false;
    throw err;
  }
}

/**
 * Whether Node's permission model (`--experimental-permission`, Node 20; `--permission` later) is
 * on without `--allow-worker`. Piscina's first `new Worker` then threw a plain ERR_ACCESS_DENIED:
 * from `new Pool()` with `kernel: 'js'`, from every call otherwise (until 2026-12-06).
 */
function workersDenied(): boolean {
  const permission = (process as { permission?: { has(scope: string): boolean } }).permission;
  return permission !== undefined && !permission.has('worker');
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
