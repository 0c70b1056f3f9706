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

/**
 * The runtime `WebAssembly` object, typed by the declarations above; undefined where the runtime
 * has none (Node started with `--jitless`, which turns `--expose-wasm` off). Its users check
 * `wasmSupported()` (workers/kernels/select.ts) first, and make memories with `newMemory`.
 */
export const wasmApi = (globalThis as unknown as { WebAssembly?: WebAssemblyApi }).WebAssembly;

/** Bytes in a page of WebAssembly memory, the unit of `initial`, `maximum` and `grow`. */
export const PAGE = 65536;

/** ES2024's growable SharedArrayBuffer and resizable ArrayBuffer, which Node 20 has (lib ES2022 lacks them). */
interface GrowableBuffer {
  readonly byteLength: number;
  grow?(byteLength: number): void;
  resize?(byteLength: number): void;
}
type GrowableBufferConstructor = new (byteLength: number, options: { maxByteLength: number }) => ArrayBufferLike;

/**
 * The part of `WebAssembly.Memory` bnpool uses (`buffer`, `grow`), over a growable
 * SharedArrayBuffer (a resizable ArrayBuffer for a private memory), where the runtime has no
 * WebAssembly, or cannot reserve a WebAssembly memory (`Pool`'s `reserveArena`): the pool then
 * runs the TypeScript kernels, which read the memory through typed arrays alone. Its buffer is
 * one object that grows in place, where a WebAssembly memory's `buffer` is a new object after
 * each growth: views made with a length keep theirs, as over a grown shared memory, and the
 * kernels make theirs again once the buffer's length differs (`wholeView`). A private memory's
 * old views are not detached, which nothing relies on (its users make their views again after
 * any growth). Workers get the buffer itself (`memoryForWorkers`), and wrap it again
 * (`memoryFromWorkers`).
 */
export class BufferMemory {
  readonly buffer: ArrayBuffer;

  constructor(buffer: ArrayBufferLike) {
    this.buffer = buffer as ArrayBuffer;
  }

  /** Grows by `delta` pages, as `WebAssembly.Memory.grow`: returns the pages before; a RangeError past the maximum. */
  grow(delta: number): number {
    const pages = this.buffer.byteLength / PAGE;
    if (delta === 0) return pages;
    const buffer = this.buffer as GrowableBuffer;
    const bytes = (pages + delta) * PAGE;
    if (buffer.grow !== undefined) buffer.grow(bytes);
    else buffer.resize!(bytes);
    return pages;
  }
}

/**
 * A memory of `initial` pages that grows to `maximum`: a `WebAssembly.Memory`, or where `wasm` is
 * false (by default: where the runtime has no WebAssembly) a `BufferMemory` of the same sizes
 * (its buffer shared where `shared`). Throws a RangeError where the address space cannot be
 * reserved (see `Pool`'s `reserveArena`).
 */
export function newMemory(initial: number, maximum: number, shared: boolean, wasm = wasmApi !== undefined): WebAssembly.Memory {
  if (wasm) return new wasmApi!.Memory({ initial, maximum, shared });
  const Buffer = (shared ? SharedArrayBuffer : ArrayBuffer) as unknown as GrowableBufferConstructor;
  return new BufferMemory(new Buffer(initial * PAGE, { maxByteLength: maximum * PAGE })) as unknown as WebAssembly.Memory;
}

/** Whether `memory` is a `BufferMemory` (typed as the `WebAssembly.Memory` it stands in for). */
export function isBufferMemory(memory: WebAssembly.Memory): boolean {
  return (memory as unknown) instanceof BufferMemory;
}

/** What a pool posts to its workers for `memory`: a `WebAssembly.Memory` itself, a `BufferMemory`'s buffer. */
export function memoryForWorkers(memory: WebAssembly.Memory): WebAssembly.Memory | SharedArrayBuffer {
  return isBufferMemory(memory) ? memory.buffer as unknown as SharedArrayBuffer : memory;
}

/** The memory a worker got from `memoryForWorkers`. */
export function memoryFromWorkers(posted: WebAssembly.Memory | SharedArrayBuffer): WebAssembly.Memory {
  return posted instanceof SharedArrayBuffer ? new BufferMemory(posted) as unknown as WebAssembly.Memory : posted;
}

/** A typed array constructor, as `wholeView` calls it. */
interface ViewConstructor<T> {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/**
 * A view of the whole of `buffer` with a fixed length; its owner makes it again once its
 * `byteLength` differs from the buffer's (the memory grew; a detached view's is 0). A view made
 * without a length over a `BufferMemory`'s growable SharedArrayBuffer, whose object stays the
 * same as it grows, tracks its length, and Node 20's V8 runs loops over such views ~30x slower:
 * a training forward of [8, 64, 56, 56] on two workers took 154-181 ms on a BufferMemory against
 * 4.6-5.4 on a WebAssembly memory, until 50f1eb3 (README, "Kernels"; bench/buffer-memory.mjs).
 */
export function wholeView<T>(Type: ViewConstructor<T>, buffer: ArrayBufferLike): T {
  return new Type(buffer, 0, buffer.byteLength / Type.BYTES_PER_ELEMENT);
}
