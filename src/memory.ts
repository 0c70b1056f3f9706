import { MemoryLine } from './memory-line.js';
import { newMemory, PAGE } from './wasm-types.js';
/**
 * A first-fit allocator with coalescing over one `WebAssembly.Memory`: a pool's shared memory, or
 * the private, non-shared one of its calling thread (see `PoolInternals.privateInline`), which
 * hands out nothing but a call's own scratch and staging blocks.
 *
 * Why the shared one can grow safely: growing a shared memory never detaches the views already
 * made over it. Old `SharedArrayBuffer`s keep their old length and still alias the same bytes, so
 * an array a user got from `pool.alloc` stays valid forever; only `memory.buffer` returns a new,
 * longer buffer.
 *
 * Recognising views on the memory: the arena records the buffer object of every view it makes.
 * It cannot simply record `memory.buffer` after its own grows: when any shared memory of the
 * isolate grows, V8 may give the others new buffer objects too (seen with two pools: arrays
 * allocated after the other pool grew got an unrecorded buffer; test/memory.test.ts).
 */
/** Every block starts on a cache line; also keeps float64 and SIMD accesses aligned. */
export const ALIGN = 64;

interface FreeRange { offset: number; size: number }

export class Arena {
  readonly memory: WebAssembly.Memory;
  /** Bytes the memory may grow to: maxMemory's pages, until a growth is refused (`#grow`). */
  #maxBytes: number;
  readonly #buffers = new WeakSet<ArrayBufferLike>();
  /** Free ranges, sorted by offset, never adjacent (adjacent ones are coalesced). */
  readonly #free: FreeRange[] = [];
  /**
   * Live blocks: offset to size, and the serial `alloc` gave the block (a block handed out again
   * gets a new one).
   */
  readonly #live = new Map<number, { readonly size: number; readonly serial: number }>();
  #nextSerial = 1;
  /** The views made of blocks (`tag`): the serial of their block when they were made. */
  readonly #views = new WeakMap<ArrayBufferView, number>();
  /** Byte ranges [start, end) that calls in flight use, one entry per use (see `pin`). */
  readonly #pins = new Set<readonly [number, number]>();
  /** Calls waiting for blocks that other calls hold: each free wakes the first (memory-line.ts). */
  readonly line = new MemoryLine();
  #end: number;

  /**
   * @param reservedBytes - bytes at the start never handed out (a null guard, and room for any
   *   data segment a WebAssembly kernel might declare)
   * @param shared - false for a private memory, whose growth detaches its old buffer
   * @param wasm - false for a `BufferMemory` where the runtime has WebAssembly (`newMemory`)
   */
  constructor(initialBytes: number, maxBytes: number, reservedBytes: number, shared = true, wasm?: boolean) {
    const initialPages = Math.max(1, Math.ceil(Math.max(initialBytes, reservedBytes) / PAGE));
    const maxPages = Math.max(initialPages, Math.floor(maxBytes / PAGE));
    this.memory = newMemory(initialPages, maxPages, shared, wasm);
    this.#maxBytes = maxPages * PAGE;
    this.#end = roundUp(reservedBytes, ALIGN);
    const size = this.memory.buffer.byteLength - this.#end;
    if (size > 0) this.#free.push({ offset: this.#end, size });
  }

  /**
   * The most bytes the memory may grow to: its maximum, or less once the runtime refused to grow
   * it that far (`#grow`).
   */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** Current size of the memory in bytes. */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** Bytes handed out and not yet freed. */
  get liveBytes(): number {
    let total = 0;
    for (const { size } of this.#live.values()) total += size;
    return total;
  }

  /** The memory's current buffer, recorded as ours: make every view handed out from this. */
  buffer(): ArrayBufferLike {
    const buffer = this.memory.buffer;
    this.#buffers.add(buffer);
    return buffer;
  }

  /** True when `view` is a view of this memory made from `buffer()` (or of its current buffer). */
  owns(view: ArrayBufferView): boolean {
    return this.#buffers.has(view.buffer) || view.buffer === this.buffer();
  }

  /**
   * Marks the bytes of `view` as in use until the returned function is called: `inUse` then
   * reports any block they overlap. Several pins may cover the same bytes. An empty view (an
   * empty batch's, from `alloc(0)`) pins the byte at its offset: its block, as any other array's.
   */
  pin(view: ArrayBufferView): () => void {
    const range = [view.byteOffset, view.byteOffset + Math.max(view.byteLength, 1)] as const;
    this.#pins.add(range);
    return () => { this.#pins.delete(range); };
  }

  /** True when a pinned range overlaps the `size` bytes at `offset`. */
  inUse(offset: number, size: number): boolean {
    for (const [start, end] of this.#pins) if (start < offset + size && offset < end) return true;
    return false;
  }

  /** Size of the live block starting at `offset`, or undefined. */
  sizeAt(offset: number): number | undefined {
    return this.#live.get(offset)?.size;
  }

  /** The largest block `alloc` could return now, growth included. */
  largestAllocatable(): number {
    const current = this.memory.buffer.byteLength;
    let best = 0;
    for (const range of this.#free) best = Math.max(best, range.size);
    const last = this.#free.at(-1);
    const tail = last !== undefined && last.offset + last.size === current ? last.size : 0;
    return Math.max(best, tail + this.maxBytes - current);
  }

  /** Returns the offset of `bytes` fresh bytes, growing the memory if needed, or -1 when it can't. */
  alloc(bytes: number): number {
    const size = roundUp(Math.max(bytes, 1), ALIGN);
    let offset = this.#take(size);
    if (offset < 0 && this.#grow(size)) offset = this.#take(size);
    if (offset >= 0) this.#live.set(offset, { size, serial: this.#nextSerial++ });
    return offset;
  }

  /** Records `view`, made of the live block at its byteOffset, as that block's (see `allocation`). */
  tag(view: ArrayBufferView): void {
    this.#views.set(view, this.#live.get(view.byteOffset)!.serial);
  }

  /** True when `view` was made of a block (`tag`), live or not. */
  tagged(view: ArrayBufferView): boolean {
    return this.#views.has(view);
  }

  /**
   * The serial of the live block that holds every byte of `view`, or 0 where none does, or where
   * `view` was made of another block (`tag`) that was freed since and this one handed out in its
   * place. Equal for a view at two moments only while its block was not freed between them.
   */
  allocation(view: ArrayBufferView): number {
    // An array alloc() made (the common case) starts its block: one lookup, not a scan.
    const made = this.#views.get(view);
    if (made !== undefined) return this.#live.get(view.byteOffset)?.serial === made ? made : 0;
    const start = view.byteOffset;
    const end = start + view.byteLength;
    for (const [offset, { size, serial }] of this.#live) {
      if (offset <= start && end <= offset + size) return serial;
    }
    return 0;
  }

  /** Releases the block at `offset`. Returns false when no live block starts there. */
  free(offset: number): boolean {
    const block = this.#live.get(offset);
    if (block === undefined) return false;
    this.#live.delete(offset);
    this.#release(offset, block.size);
    this.line.freed();
    return true;
  }

  #take(size: number): number {
    for (let i = 0; i < this.#free.length; i++) {
      const range = this.#free[i];
      if (range.size < size) continue;
      const offset = range.offset;
      if (range.size === size) this.#free.splice(i, 1);
      else {
        range.offset += size;
        range.size -= size;
      }
      return offset;
    }
    return -1;
  }

  #release(offset: number, size: number): void {
    let i = 0;
    while (i < this.#free.length && this.#free[i].offset < offset) i++;
    this.#free.splice(i, 0, { offset, size });
    const next = this.#free[i + 1];
    if (next !== undefined && offset + size === next.offset) {
      this.#free[i].size += next.size;
      this.#free.splice(i + 1, 1);
    }
    const prev = this.#free[i - 1];
    if (prev !== undefined && prev.offset + prev.size === offset) {
      prev.size += this.#free[i].size;
      this.#free.splice(i, 1);
    }
  }

  /**
   * Grows by what `size` needs beyond a free range at the end, plus a quarter for headroom. Where
   * the runtime refuses even the bare need below the maximum (V8's `--wasm-max-mem-pages` set at
   * run time with `v8.setFlagsFromString`, which `wasmMemoryLimit` cannot see; or the OS), it
   * grows as far as it may, in halving steps, and that length becomes `maxBytes` for good (V8
   * fixes a memory's cap when it makes it: the flag raised later did not lift it; an OS's refusal
   * is taken as lasting too): the planners size their chunks to it, and `takeBlocks` plans a call
   * again that counted on more.
   */
  #grow(size: number): boolean {
    const current = this.memory.buffer.byteLength;
    const last = this.#free.at(-1);
    const tail = last !== undefined && last.offset + last.size === current ? last.size : 0;
    const needed = size - tail;
    const maxPages = this.#maxBytes / PAGE;
    const currentPages = current / PAGE;
    const minPages = Math.ceil(needed / PAGE);
    if (currentPages + minPages > maxPages) return false;
    const pages = Math.min(maxPages - currentPages, Math.max(minPages, Math.ceil(currentPages / 4)));
    for (const attempt of [pages, minPages]) {
      if (this.#tryGrow(attempt)) {
        this.#release(current, attempt * PAGE);
        return true;
      }
      // The headroom may be more than the runtime grants; try the bare need next.
    }
    let grown = 0;
    for (let step = 2 ** Math.floor(Math.log2(minPages)); step >= 1; step /= 2) {
      if (grown + step < minPages && this.#tryGrow(step)) grown += step;
    }
    if (grown > 0) this.#release(current, grown * PAGE);
    this.#maxBytes = current + grown * PAGE;
    return false;
  }

  /** Grows the memory by `pages`, or returns false where the runtime refuses (a RangeError). */
  #tryGrow(pages: number): boolean {
    try {
      this.memory.grow(pages);
      return true;
    } catch (err) {
      if (err instanceof RangeError) return false;
      throw err;
    }
  }
}

function roundUp(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}
