/**
 * The few WebAssembly JS-API types bnpool uses. Node's own type definitions (v20) leave the
 * `WebAssembly` namespace to lib.dom; declaring these interfaces here keeps bnpool's public types
 * free of a DOM dependency. They merge with lib.dom's identical declarations where both are
 * present: interfaces only, as type aliases do not merge (lib.dom's `Exports` beside one declared
 * here was a duplicate identifier in a consumer's DOM build).
 */
declare global {
  namespace WebAssembly {
    interface Memory {
      readonly buffer: ArrayBuffer;
      grow(delta: number): number;
    }
    interface Module {}
  }
}

/** An instance of a module, as far as bnpool reads one: its exports (cast where they are used). */
interface InstanceExports {
  readonly exports: Record<string, unknown>;
}

interface MemoryDescriptor {
  initial: number;
  maximum?: number;
  shared?: boolean;
}

interface WebAssemblyApi {
  Memory: new (descriptor: MemoryDescriptor) => WebAssembly.Memory;
  Module: new (bytes: ArrayBufferView | ArrayBuffer) => WebAssembly.Module;
  Instance: new (module: WebAssembly.Module, imports?: Record<string, Record<string, unknown>>) => InstanceExports;
  validate(bytes: ArrayBufferView | ArrayBuffer): boolean;
  compile(bytes: ArrayBufferView | ArrayBuffer): Promise<WebAssembly.Module>;
}

/** The runtime `WebAssembly` object, typed by the declarations above. */
export const wasmApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
