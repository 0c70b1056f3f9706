import '../../src/wasm-types.js';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { wasmApi } from '../../src/wasm-types.js';
import type { KernelName } from '../protocol.js';
import { JsKernel } from './js.js';
import type { Kernel } from './kernel.js';
import { WasmKernel } from './wasm.js';

/** Where `npm run build` writes the compiled kernels (from workers/wasm/assembly/index.ts). */
const WASM_FILE = new URL('../wasm/kernels.wasm', import.meta.url);

let cached: WebAssembly.Module | null | undefined;
let cachedPrivate: WebAssembly.Module | null | undefined;
/** The file's bytes, read once for both modules (null: missing). */
let cachedBytes: Uint8Array | null | undefined;
let cachedValid: boolean | undefined;

function wasmBytes(): Uint8Array | null {
  if (cachedBytes === undefined) {
    try {
      cachedBytes = readFileSync(WASM_FILE);
    } catch {
      cachedBytes = null;
    }
  }
  return cachedBytes;
}

/** Whether this runtime can run the WebAssembly kernels: it has WebAssembly, and the file is there and validates (SIMD128). */
export function wasmSupported(): boolean {
  if (cachedValid === undefined) {
    const bytes = wasmApi === undefined ? null : wasmBytes();
    cachedValid = bytes !== null && wasmApi!.validate(bytes);
  }
  return cachedValid;
}

/**
 * The compiled WebAssembly kernels, or null when this runtime cannot run them (no SIMD128, or the
 * file is missing). Compiled once per process, on the calling thread (~40-60 ms here, during
 * which it runs nothing else); workers get the module itself, which is shared, not recompiled.
 * Pools use `loadWasmModules`, which compiles off the calling thread.
 */
export function loadWasmModule(): WebAssembly.Module | null {
  if (cached !== undefined) return cached;
  try {
    cached = wasmSupported() ? compileOptimized(wasmBytes()!) : null;
  } catch {
    cached = null;
  }
  return cached;
}

/**
 * The same kernels over an ordinary (non-shared) memory, for calls that run inline with every
 * array off the pool: V8 copies between ordinary arrays and a shared memory 1.6-2.5x slower than
 * between ordinary memories (bench/copies.mjs; README, "Small inputs"). The code is byte for byte
 * the shared module's; only the memory import's `shared` flag is cleared (a wasm memory import
 * must match the memory's sharedness). Null where `loadWasmModule()` is null.
 */
export function loadPrivateWasmModule(): WebAssembly.Module | null {
  if (cachedPrivate !== undefined) return cachedPrivate;
  cachedPrivate = null;
  if (loadWasmModule() !== null) cachedPrivate = compileOptimized(unsharedMemoryImport(wasmBytes()!));
  return cachedPrivate;
}

/** Both modules of the WebAssembly kernels: over the pool's shared memory, and over a private one. */
export interface WasmModules {
  readonly shared: WebAssembly.Module;
  readonly private: WebAssembly.Module;
}

let pendingModules: Promise<WasmModules> | undefined;

/** Both modules if this process compiled them already, else null. */
export function cachedWasmModules(): WasmModules | null {
  return cached && cachedPrivate ? { shared: cached, private: cachedPrivate } : null;
}

/**
 * The two modules, compiled once per process by V8's background threads: a pool made before them
 * does not hold its thread for the ~100 ms that compiling both there took (a server's first call
 * creates the default pool). The calling thread only starts the compile (~0.1 ms). Modules already
 * compiled (`loadWasmModule`) are reused, and those compiled here become theirs. Rejects where
 * compiling fails, and a later call tries again; call it only where `wasmSupported()`.
 */
export function loadWasmModules(): Promise<WasmModules> {
  const done = cachedWasmModules();
  if (done !== null) return Promise.resolve(done);
  if (pendingModules === undefined) {
    pendingModules = (async () => {
      const [shared, unshared] = await withOptimizedCompile(() => Promise.all([
        cached ?? wasmApi!.compile(wasmBytes()!),
        cachedPrivate ?? wasmApi!.compile(unsharedMemoryImport(wasmBytes()!)),
      ]));
      cached ??= shared;
      cachedPrivate ??= unshared;
      return { shared: cached, private: cachedPrivate };
    })();
    pendingModules.catch(() => { pendingModules = undefined; });
  }
  return pendingModules;
}

/**
 * A copy of a WebAssembly binary whose memory imports are not shared: the `shared` bit (0x02) of
 * each imported memory's limits flags cleared, nothing else changed (the binary format's import
 * section: a vector of module name, field name, kind and type).
 */
export function unsharedMemoryImport(binary: Uint8Array): Uint8Array {
  const b = Uint8Array.from(binary);
  let at = 8; // magic and version
  const leb = (): number => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = b[at++];
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
  };
  const limits = (): void => {
    const flags = b[at++];
    leb();
    if ((flags & 0x01) !== 0) leb();
  };
  while (at < b.length) {
    const id = b[at++];
    const size = leb();
    const end = at + size;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        for (let name = 0; name < 2; name++) { // module name, field name
          const length = leb();
          at += length;
        }
        const kind = b[at++];
        if (kind === 0x00) leb(); // function: type index
        else if (kind === 0x01) { at++; limits(); } // table: element type, limits
        else if (kind === 0x02) { b[at] &= ~0x02; limits(); } // memory: limits
        else if (kind === 0x03) at += 2; // global: value type, mutability
        else throw new Error(`unsharedMemoryImport: unknown import kind ${kind}`);
      }
    }
    at = end;
  }
  return b;
}

/** V8 flags `withOptimizedCompile` turns off, and the compiles in flight that hold them off. */
const LAZY_FLAGS = ['liftoff', 'wasm-lazy-compilation'];
let optimizedHolds = 0;

/**
 * A flag V8 turns off with Liftoff (its flag implication `--no-liftoff` => `--no-wasm-dynamic-
 * tiering`) and that `--liftoff` leaves off. Without it V8 compiles each wasm function by the
 * optimizing compiler too, in the background, once the baseline compiler has (on its first call),
 * hot or not: until 2026-12-06 it did so for all the wasm of a process whose pool had compiled
 * the kernels.
 */
const IMPLIED_BY_LIFTOFF = 'wasm-dynamic-tiering';

/**
 * Whether the process was started with V8's `flag` set either way, in any of V8's spellings
 * (`--flag`, `--no-flag`, `--noflag`, `_` for `-`). The whole argument is matched: `node -e`'s
 * script is an argument of `process.execArgv` too, and one that merely held the word `liftoff`
 * had kept V8's baseline compiler on for the kernels until 2026-12-06.
 */
function startedWith(flag: string): boolean {
  const pattern = new RegExp(`^--(?:no-?|no_)?${flag.replace(/-/g, '[-_]')}(?:=|$)`);
  return process.execArgv.some((a) => pattern.test(a));
}

/**
 * Runs `compile` (sync or async) with V8's optimizing compiler up front. By default V8 runs new
 * wasm code through its baseline compiler (Liftoff), lazily, and tiers hot functions up later in
 * the background: measured here, the first calls then ran the kernels (and the floor) at half
 * speed or worse. The flags stay off until the compile settles (an async compile reads them as it
 * goes: turned back on at once, it compiled lazily), then Node's defaults come back, so other
 * modules compile as usual (IMPLIED_BY_LIFTOFF with them); wasm that other code compiles
 * meanwhile is compiled up front too. A flag the process was started with is left as the user
 * set it (startedWith).
 */
function withOptimizedCompile<T>(compile: () => T): T {
  const flags = LAZY_FLAGS.filter((flag) => !startedWith(flag));
  const restored = flags.includes('liftoff') && !startedWith(IMPLIED_BY_LIFTOFF) ? [...flags, IMPLIED_BY_LIFTOFF] : flags;
  if (optimizedHolds++ === 0) for (const flag of flags) setFlagsFromString(`--no-${flag}`);
  const release = (): void => {
    if (--optimizedHolds === 0) for (const flag of restored) setFlagsFromString(`--${flag}`);
  };
  let result: T;
  try {
    result = compile();
  } catch (err) {
    release();
    throw err;
  }
  if (result instanceof Promise) result.then(release, release);
  else release();
  return result;
}

function compileOptimized(bytes: Uint8Array): WebAssembly.Module {
  return withOptimizedCompile(() => new wasmApi!.Module(bytes));
}

/** Builds the named kernel over the pool's memory, in a worker or on the main thread. */
export function createKernel(name: KernelName, memory: WebAssembly.Memory, wasmModule: WebAssembly.Module | null): Kernel {
  if (name === 'wasm') {
    if (wasmModule === null) throw new Error('the wasm kernel needs its compiled module');
    return new WasmKernel(memory, wasmModule);
  }
  return new JsKernel(memory);
}
