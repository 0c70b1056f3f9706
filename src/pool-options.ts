/**
 * `new Pool()`'s options: their checks, and their defaults with the measurements behind them.
 */
import { availableParallelism } from 'node:os';
import { wasmSupported } from '../workers/kernels/select.js';
import type { KernelName } from '../workers/protocol.js';
import { ArgumentError, describe } from './errors.js';
import { checkOptions, checkPositiveInteger, type OptionKeys } from './validate.js';

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
   * lanes (rank 2, channels-last) two at a time, as data streaming from memory go fastest
   * (README, "Kernels").
   */
  cacheBytes?: number;
  /**
   * Elements of input a call takes a thread for, as PyTorch's `at::parallel_for` grain size: a
   * call runs on `min(threads, ceil(length / grainSize))` of the pool's threads, so that it does
   * not post more tasks than their share of the work wins back (each post costs the calling
   * thread tens of µs). Calls at or below `inlineThreshold` run inline whatever this is.
   * Default: `DEFAULT_GRAIN_SIZE`; 1 puts every call on every thread.
   */
  grainSize?: number;
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

/**
 * Default of `PoolOptions.grainSize`: 512 Ki elements (2 MiB of float32). On a 16-core Xeon
 * (bench/MACHINES.md, "Sixteen cores": a pool of each size, 2026-12-04) E [4096, 1024], 4 Mi
 * elements, was fastest at 8 threads, 512 Ki a thread: eval 0.565 ms against 0.657 at 4 and
 * 0.892 at 16, training 0.96-1.22 against 1.36 at 4 and 1.25 at 16 (the spin as now); a probe
 * capping calls at one thread per 1 Mi elements put E on 4 threads and made an 8-thread pool's
 * training slower (1.40 against 0.96-1.11). A, B and C (9.2-24.5 Mi elements) get 16 threads
 * either way. Not yet measured as a cap there (`bench/scaling.ts --pool-threads`). On this
 * project's 2 vCPUs it changes nothing: every call past the inline threshold has two grains
 * (and one worker alone was slower than the calling thread here: bench/DESIGN.md, "Small
 * inputs").
 */
export const DEFAULT_GRAIN_SIZE = 524288;

/** A pool's options, checked, with the defaults filled in. */
export interface PoolSettings {
  readonly threads: number;
  /** The kernels the pool runs: `'auto'` resolved. */
  readonly kernel: KernelName;
  readonly initialMemory: number;
  readonly maxMemory: number;
  readonly inlineThreshold: number;
  readonly cacheBytes: number;
  readonly grainSize: number;
  /** Whether `cacheBytes` was given (see `PoolInternals.cacheBytesGiven`). */
  readonly cacheBytesGiven: boolean;
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
    throw new ArgumentError(`options.kernel 'wasm' needs WebAssembly SIMD128, which this runtime does not validate; use 'auto' or 'js'`);
  }
  const kernel: KernelName = requested !== 'js' && wasmSupported() ? 'wasm' : 'js';
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
  const inlineThreshold = opts.inlineThreshold === undefined
    ? DEFAULT_INLINE_THRESHOLD[kernel]
    : checkNonNegativeInteger(opts.inlineThreshold, 'options.inlineThreshold');
  const cacheBytes = opts.cacheBytes === undefined ? DEFAULT_CACHE_BYTES : checkPositiveInteger(opts.cacheBytes, 'options.cacheBytes');
  const grainSize = opts.grainSize === undefined ? DEFAULT_GRAIN_SIZE : checkPositiveInteger(opts.grainSize, 'options.grainSize');
  return { threads, kernel, initialMemory, maxMemory, inlineThreshold, cacheBytes, grainSize, cacheBytesGiven: opts.cacheBytes !== undefined };
}

function checkNonNegativeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ArgumentError(`${name} must be a non-negative integer; got ${describe(value)}`);
  }
  return value;
}
