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

/**
 * The compiled WebAssembly kernels, or null when this runtime cannot run them (no SIMD128, or the
 * file is missing). Compiled once per process; workers get the module itself, which is shared,
 * not recompiled.
 */
export function loadWasmModule(): WebAssembly.Module | null {
  if (cached !== undefined) return cached;
  try {
    const bytes = readFileSync(WASM_FILE);
    cached = wasmApi.validate(bytes) ? compileOptimized(bytes) : null;
  } catch {
    cached = null;
  }
  return cached;
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
