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
      // A timer holds the event loop open until the compile settles. Node 24 does not count V8's
      // optimizing compile on its background threads as work to wait for: a script whose only
      // pending work was `await pool.ready` (or a first call) exited there, with code 13
      // ("unsettled top-level await"). Node 20 and 22 wait by themselves.
      const open = setInterval(() => {}, 2 ** 30);
      try {
        const [shared, unshared] = await withOptimizedCompile(() => Promise.all([
          cached ?? wasmApi!.compile(wasmBytes()!),
          cachedPrivate ?? wasmApi!.compile(unsharedMemoryImport(wasmBytes()!)),
        ]));
        cached ??= shared;
        cachedPrivate ??= unshared;
        return { shared: cached, private: cachedPrivate };
      } finally {
        clearInterval(open);
      }
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

/** The compiles in flight that hold V8's flags as `optimizedCompileFlags` says. */
let optimizedHolds = 0;

/**
 * The V8 flags `withOptimizedCompile` turns off while the kernels compile, and turns back on
 * once they have: `liftoff` (V8's baseline compiler) and `wasm-lazy-compilation`, each unless
 * the process was started with it (`execArgv`, in any of V8's spellings; left as its user set
 * it), and with `liftoff` the flags that `--no-liftoff` turns off at startup by V8's flag
 * implications, where they are on: `wasm-dynamic-tiering` (which `--liftoff` alone leaves off
 * again: until 2026-12-06 each function of the wasm a process compiled after the kernels was
 * then compiled again by the optimizing compiler, hot or not) and, from V8 14 (Node 25) where it
 * is on by default, `wasm-deopt`, whose optimized code needs the feedback only the baseline
 * compiler collects. A flag set at run time brings no implication with it there: Node 26 (V8
 * 14.6) aborted the process ("Check failed: function_feedback != ...") compiling the kernels
 * with `--no-liftoff` and deopts on. V8 12.9-13.6 (Node 23, 24) have `wasm-deopt` off by
 * default, and V8 before 12.9 has no such flag, which setting would print an error.
 */
export function optimizedCompileFlags(v8Version: string, execArgv: readonly string[]): string[] {
  const flags: string[] = [];
  if (startedWith('liftoff', execArgv) === undefined) {
    flags.push('liftoff');
    if (startedWith('wasm-dynamic-tiering', execArgv) !== false) flags.push('wasm-dynamic-tiering');
    if (startedWith('wasm-deopt', execArgv) ?? Number.parseInt(v8Version, 10) >= 14) flags.push('wasm-deopt');
  }
  if (startedWith('wasm-lazy-compilation', execArgv) === undefined) flags.push('wasm-lazy-compilation');
  return flags;
}

/**
 * The value the process was started with for V8's boolean `flag` (`--flag` true; `--no-flag`,
 * `--noflag` false; `_` for `-`; the last one given counts, as in V8), or undefined where none
 * names it. The whole argument is matched: `node -e`'s script is an argument of
 * `process.execArgv` too, and one that merely held the word `liftoff` had kept V8's baseline
 * compiler on for the kernels until 2026-12-06.
 */
function startedWith(flag: string, execArgv: readonly string[]): boolean | undefined {
  const pattern = new RegExp(`^--(no-?|no_)?${flag.replace(/-/g, '[-_]')}(?:=|$)`);
  let value: boolean | undefined;
  for (const arg of execArgv) {
    const match = pattern.exec(arg);
    if (match !== null) value = match[1] === undefined;
  }
  return value;
}

/**
 * Runs `compile` (sync or async) with V8's optimizing compiler up front. By default V8 runs new
 * wasm code through its baseline compiler (Liftoff), lazily, and tiers hot functions up later in
 * the background: measured here, the first calls then ran the kernels (and the floor) at half
 * speed or worse. The flags (`optimizedCompileFlags`) stay off until the compile settles (an
 * async compile reads them as it goes: turned back on at once, it compiled lazily), then come
 * back on, so other modules compile as usual; wasm that other code compiles meanwhile is
 * compiled up front too.
 */
function withOptimizedCompile<T>(compile: () => T): T {
  const flags = optimizedCompileFlags(process.versions.v8, process.execArgv);
  if (optimizedHolds++ === 0) for (const flag of flags) setFlagsFromString(`--no-${flag}`);
  const release = (): void => {
    if (--optimizedHolds === 0) for (const flag of flags) setFlagsFromString(`--${flag}`);
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
