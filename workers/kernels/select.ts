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

/**
 * The compiled WebAssembly kernels, or null when this runtime cannot run them (no SIMD128, or the
 * file is missing). Compiled once per process; workers get the module itself, which is shared,
 * not recompiled.
 */
export function loadWasmModule(): WebAssembly.Module | null {
  if (cached !== undefined) return cached;
  const bytes = wasmBytes();
  try {
    cached = bytes !== null && wasmApi.validate(bytes) ? compileOptimized(bytes) : null;
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

/**
 * Compiles with V8's optimizing compiler up front. By default V8 runs new wasm code through its
 * baseline compiler (Liftoff), lazily, and tiers hot functions up later in the background:
 * measured here, the first calls then ran the kernels (and the floor) at half speed or worse.
 * Node's defaults are restored at once, so other modules compile as usual; a flag the process was
 * started with is left as the user set it.
 */
function compileOptimized(bytes: Uint8Array): WebAssembly.Module {
  const flags = ['liftoff', 'wasm-lazy-compilation'].filter((flag) => !process.execArgv.some((a) => a.includes(flag)));
  for (const flag of flags) setFlagsFromString(`--no-${flag}`);
  try {
    return new wasmApi.Module(bytes);
  } finally {
    for (const flag of flags) setFlagsFromString(`--${flag}`);
  }
}

/** Builds the named kernel over the pool's memory, in a worker or on the main thread. */
export function createKernel(name: KernelName, memory: WebAssembly.Memory, wasmModule: WebAssembly.Module | null): Kernel {
  if (name === 'wasm') {
    if (wasmModule === null) throw new Error('the wasm kernel needs its compiled module');
    return new WasmKernel(memory, wasmModule);
  }
  return new JsKernel(memory);
}
