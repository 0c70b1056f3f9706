/**
 * `new Pool()`'s options: their checks, and their defaults with the measurements behind them.
 */
import { availableParallelism } from 'node:os';
import { wasmSupported } from '../workers/kernels/select.js';
import type { KernelName } from '../workers/protocol.js';
import { ArgumentError, describe } from './errors.js';
import { checkOptions, checkPositiveInteger, type OptionKeys } from './validate.js';
import { PAGE, wasmApi } from './wasm-types.js';

/** Options of `new Pool()`. */
export interface PoolOptions {
  /** Worker threads. Default: `os.availableParallelism()`. */
  threads?: number;
  /**
   * Which kernels run the loops: `'wasm'` (WebAssembly SIMD128), `'js'` (TypeScript loops), or
   * `'auto'` (default): wasm where SIMD validates and the process can reserve a WebAssembly
   * memory (README, "Kernels": a limited address space), else js.
   */
  kernel?: 'auto' | KernelName;
  /** Bytes the shared memory starts with. Default 16 MiB; it grows on demand. */
  initialMemory?: number;
  /**
   * Most bytes the shared memory may grow to. Default and upper bound: 4 GiB, the wasm32 cap, or
   * N pages of 64 KiB under `node --wasm-max-mem-pages=N` (`wasmMemoryLimit`). Inputs that are
   * not on the pool and do not fit are processed in chunks.
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
   * lanes (rank 2, channels-last) two at a time, as data streaming from memory go fastest
   * (README, "Kernels").
   */
  cacheBytes?: number;
  /**
   * How many of the pool's threads a call over `length` elements of input runs on, so that it
   * does not post more tasks than their share of the work wins back (the calling thread posts
   * them one after another, each for tens of µs). `'auto'` (default): `min(threads,
   * ceil(sqrt(length / AUTO_GRAIN)))`, the count at which the posts and each thread's share grow
   * alike (`AUTO_GRAIN` has why). A number: PyTorch's `at::parallel_for` grain size, at most one
   * thread per `grainSize` elements, `min(threads, ceil(length / grainSize))`; 1 puts every call
   * on every thread. Calls at or below `inlineThreshold` run inline whatever this is.
   */
  grainSize?: number | 'auto';
}

const POOL_OPTIONS: OptionKeys<PoolOptions> = {
  threads: true, kernel: true, initialMemory: true, maxMemory: true, inlineThreshold: true, cacheBytes: true, grainSize: true,
};

const MAX_MEMORY = 65536 * 65536;
const DEFAULT_INITIAL_MEMORY = 16 * 1024 * 1024;
/** The first 64 KiB of the memory are never handed out: a null guard and room for static data. */
export const RESERVED_BYTES = 65536;
/**
 * The most worker threads a pool starts. Each holds a V8 isolate (6.7 MB of RSS a thread here,
 * 65 threads against 1): `threads: 2 ** 31`, a positive integer, ended the process in a fatal
 * out-of-memory error while piscina spawned them.
 */
const MAX_THREADS = 1024;
/** The private memory of inline calls starts at 1 MiB (or maxMemory) and grows with the largest call it stages. */
export const PRIVATE_INITIAL_MEMORY = 1 << 20;
/**
 * Elements at or below which a call runs inline, per kernel: the crossover measured by
 * bench/inline-threshold.ts on this project's first 2-core machine (bench/DESIGN.md, "Small inputs"), in
 * finer steps around it. With the JS kernels, 2 workers took 0.99-1.43x the inline time at 65,536
 * elements and 0.76-0.80x at 81,920; with the WASM kernels, 1.07-1.08x at 786,432 and 0.79-0.80x
 * at 917,504. On the Intel machine (2026-12-01): JS 0.77-0.79x at 65,536 and 1.37-1.75x at 32,768, WASM
 * 0.87-0.98x at 786,432 and 1.02-1.19x at 1,048,576 (two runs each). On the third (2026-12-02):
 * JS 1.81-1.82x at 65,536 and 0.69-0.80x at 98,304 (two runs), WASM 0.74-1.31x at 786,432 and
 * 0.81-1.20x at 1,048,576 (three runs). On the sixth (2026-12-04): WASM 1.09-1.55x at 1,048,576
 * and 0.70-0.75x at 2,097,152 (three runs). Kept: bench/DESIGN.md, "Small inputs", has why.
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

/** Default of `PoolOptions.grainSize`: `'auto'`, the square-root rule of `AUTO_GRAIN`. */
export const DEFAULT_GRAIN_SIZE = 'auto';

/**
 * The elements of `grainSize: 'auto'`: a call over n elements runs on ceil(sqrt(n / AUTO_GRAIN))
 * threads, at most the pool's. A call on t threads costs about t·c + n / (t·r): the calling
 * thread posts its t tasks one after another at c each (25-87 µs on this project's machines:
 * README, "Small inputs"), and the last one starts that late, while each thread streams its n / t
 * elements at r. The sum is least at t = sqrt(n / (c·r)), and c·r, the elements a thread streams
 * in one post's time, is about 64 Ki for the WebAssembly kernels (30 µs at 2 G elements a second,
 * float32 read and written at 16 GB/s). So E [4096, 1024], 4 Mi elements, gets 8 threads, C
 * [64, 3, 224, 224] 13, A 16 of 16, and a 1 Mi call 4. On a 16-core Xeon (bench/MACHINES.md,
 * "Sixteen cores, again") the fastest thread counts of seven shapes from 1 Mi to 24.5 Mi elements
 * were these, within the noise of two sweeps, where one thread per 512 Ki elements (the default
 * before) gave C 16 threads and the 1 Mi shape 2. Against it, this rule took 0.87-0.90x the time
 * of the 1 Mi and 2 Mi shapes' training and backward (their eval 1.03 and 1.09; E's calls, on 8
 * threads either way, 0.91-1.02: the noise), medians of three runs of each in turn; C's (13
 * threads) 0.68-0.82x in that run but even with the control in two more, B's (14) 0.92-1.11x,
 * within the noise (`bench/grain-pairs.mjs`). With two threads every call past
 * the WebAssembly inline threshold gets both either way; with the JavaScript kernels (inline
 * threshold 64 Ki) a call of 64-512 Ki elements now gets two workers instead of one, which took
 * 0.39-0.66x one worker's time from 128 Ki elements up here, and 0.95-1.13x at 80 and 96 Ki,
 * where both were mostly slower than inline (`node dist/bench/inline-threshold.js js`, two runs).
 */
export const AUTO_GRAIN = 65536;

/** A pool's options, checked, with the defaults filled in. */
export interface PoolSettings {
  readonly threads: number;
  /** The kernels the pool runs: `'auto'` resolved. */
  readonly kernel: KernelName;
  readonly initialMemory: number;
  readonly maxMemory: number;
  readonly inlineThreshold: number;
  readonly cacheBytes: number;
  readonly grainSize: number | 'auto';
  /** Whether `cacheBytes` was given (see `PoolInternals.cacheBytesGiven`). */
  readonly cacheBytesGiven: boolean;
  /** The kernel the options named (`'auto'` by default): a pool asked for `'wasm'` runs no other. */
  readonly requested: 'auto' | KernelName;
  /** Whether `inlineThreshold` was given: else it is the kernel's default, and follows a change of kernel. */
  readonly inlineThresholdGiven: boolean;
}

/**
 * Checks `new Pool()`'s options, throwing an `ArgumentError` that names the first bad one, and
 * fills in the defaults. Nothing is started before it returns.
 */
export function resolvePoolOptions(options: PoolOptions | undefined): PoolSettings {
  const opts = checkOptions(options, 'options', POOL_OPTIONS);
  const threads = opts.threads === undefined ? Math.min(availableParallelism(), MAX_THREADS) : checkPositiveInteger(opts.threads, 'options.threads');
  if (threads > MAX_THREADS) {
    throw new ArgumentError(`options.threads must be at most ${MAX_THREADS} (each is a worker thread with its own V8 heap); got ${threads}`);
  }
  const requested = opts.kernel ?? 'auto';
  if (requested !== 'auto' && requested !== 'js' && requested !== 'wasm') {
    throw new ArgumentError(`options.kernel must be 'auto', 'js' or 'wasm'; got ${describe(requested)}`);
  }
  if (requested === 'wasm' && !wasmSupported()) {
    const why = wasmApi === undefined ? 'this runtime has no WebAssembly (node --jitless or --no-expose-wasm)' : 'which this runtime does not validate';
    throw new ArgumentError(`options.kernel 'wasm' needs WebAssembly SIMD128, ${why}; use 'auto' or 'js'`);
  }
  const kernel: KernelName = requested !== 'js' && wasmSupported() ? 'wasm' : 'js';
  const maxGiven = opts.maxMemory === undefined ? MAX_MEMORY : checkPositiveInteger(opts.maxMemory, 'options.maxMemory');
  if (maxGiven > MAX_MEMORY || maxGiven < 2 * RESERVED_BYTES) {
    throw new ArgumentError(`options.maxMemory must be between ${2 * RESERVED_BYTES} and ${MAX_MEMORY} bytes; got ${maxGiven}`);
  }
  // A WebAssembly memory stops where V8's flag says, whatever maxMemory says (wasmMemoryLimit).
  const limit = wasmApi === undefined ? MAX_MEMORY : wasmMemoryLimit();
  const flag = `node --wasm-max-mem-pages=${limit / PAGE}`;
  if (limit < 2 * RESERVED_BYTES) {
    throw new ArgumentError(`a pool's memory needs at least ${2 * RESERVED_BYTES} bytes, more than the ${limit} V8 lets a WebAssembly memory have in this process (${flag})`);
  }
  const maxMemory = Math.min(maxGiven, limit);
  const initialMemory = opts.initialMemory === undefined
    ? Math.min(DEFAULT_INITIAL_MEMORY, maxMemory)
    : checkPositiveInteger(opts.initialMemory, 'options.initialMemory');
  if (initialMemory > limit) {
    throw new ArgumentError(`options.initialMemory must be at most ${limit} bytes, the most V8 lets a WebAssembly memory have in this process (${flag}); got ${initialMemory}`);
  }
  if (initialMemory > maxMemory) {
    throw new ArgumentError(`options.initialMemory must be at most options.maxMemory (${maxMemory}); got ${initialMemory}`);
  }
  const inlineThreshold = opts.inlineThreshold === undefined
    ? DEFAULT_INLINE_THRESHOLD[kernel]
    : checkNonNegativeInteger(opts.inlineThreshold, 'options.inlineThreshold');
  const cacheBytes = opts.cacheBytes === undefined ? DEFAULT_CACHE_BYTES : checkPositiveInteger(opts.cacheBytes, 'options.cacheBytes');
  const grainSize = opts.grainSize === undefined || opts.grainSize === 'auto' ? 'auto' : checkGrainSize(opts.grainSize);
  return {
    threads, kernel, initialMemory, maxMemory, inlineThreshold, cacheBytes, grainSize,
    cacheBytesGiven: opts.cacheBytes !== undefined, requested, inlineThresholdGiven: opts.inlineThreshold !== undefined,
  };
}

/**
 * The most bytes V8 lets a WebAssembly memory have in this process: `MAX_MEMORY` (wasm32's 65536
 * pages), or fewer pages where Node runs with `--wasm-max-mem-pages=N` (also spelled with
 * underscores; the last one counts, as for V8; NODE_OPTIONS may not carry it). V8 takes a memory
 * whose `maximum` is larger, then refuses to grow it past N pages: a pool reported 4 GiB and sized
 * its staging chunks to that, so under N = 300 a training forward of a 24 MB array failed with an
 * OutOfMemoryError, where `maxMemory: 300 * 65536` staged it in chunks (until 2026-12-06). Read
 * from `process.execArgv`: a flag set at run time (`v8.setFlagsFromString`) is not seen here, and
 * a pool learns it where its memory's growth is first refused (src/memory.ts, Arena's `#grow`).
 */
export function wasmMemoryLimit(argv: readonly string[] = process.execArgv): number {
  let pages = MAX_MEMORY / PAGE;
  for (const arg of argv) {
    const match = /^--wasm[-_]max[-_]mem[-_]pages=(\d+)$/.exec(arg);
    if (match !== null) pages = Math.min(Number(match[1]), MAX_MEMORY / PAGE);
  }
  return pages * PAGE;
}

function checkGrainSize(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ArgumentError(`options.grainSize must be 'auto' or a positive integer; got ${describe(value)}`);
  }
  return value;
}

function checkNonNegativeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ArgumentError(`${name} must be a non-negative integer; got ${describe(value)}`);
  }
  return value;
}
