import '../../src/wasm-types.js';
import type { KernelName } from '../protocol.js';
import { JsKernel } from './js.js';
import type { Kernel } from './kernel.js';

/** Builds the named kernel over the pool's memory, in a worker or on the main thread. */
export function createKernel(name: KernelName, memory: WebAssembly.Memory, wasmModule: WebAssembly.Module | null): Kernel {
  if (name === 'wasm') {
    void wasmModule;
    throw new Error('the wasm kernel is not built yet');
  }
  return new JsKernel(memory);
}
