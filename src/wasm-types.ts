/**
 * The few WebAssembly JS-API types bnpool uses. Node's own type definitions (v20) leave the
 * `WebAssembly` namespace to lib.dom; declaring these interfaces here keeps bnpool's public types
 * free of a DOM dependency. They merge with lib.dom's identical declarations where both are present.
 */
declare global {
  namespace WebAssembly {
    interface Memory {
      readonly buffer: ArrayBuffer;
      grow(delta: number): number;
    }
    interface Module {}
    interface Instance {
      readonly exports: Exports;
    }
    type ExportValue = Function | Global | Memory | Table;
    type Exports = Record<string, ExportValue>;
    interface Global {}
    interface Table {}
  }
}

interface MemoryDescriptor {
  initial: number;
  maximum?: number;
  shared?: boolean;
}

interface WebAssemblyApi {
  Memory: new (descriptor: MemoryDescriptor) => WebAssembly.Memory;
  Module: new (bytes: ArrayBufferView | ArrayBuffer) => WebAssembly.Module;
  Instance: new (module: WebAssembly.Module, imports?: Record<string, Record<string, unknown>>) => WebAssembly.Instance;
  validate(bytes: ArrayBufferView | ArrayBuffer): boolean;
  compile(bytes: ArrayBufferView | ArrayBuffer): Promise<WebAssembly.Module>;
}

/** The runtime `WebAssembly` object, typed by the declarations above. */
export const wasmApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
