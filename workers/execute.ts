/**
 * Runs one task, in a worker or inline: its prep, then its passes over the work items it claims
 * from the call's counters, meeting the call's other tasks at barriers where the op has them.
 * `blocks.ts` maps items to blocks, whose kernel calls are `plane-blocks.ts`'s and
 * `row-blocks.ts`'s; `prep.ts` makes the parameters.
 */
import '../src/wasm-types.js';
import { wholeView } from '../src/wasm-types.js';
import { BlockWalker, mergeChannels } from './blocks.js';
import type { Kernel } from './kernels/kernel.js';
import { prepare } from './prep.js';
import type { Task } from './protocol.js';
import { claimCounter, raiseCancel, resetClaims, scratchLayout, type ScratchLayout } from './scratch.js';
import { waitOn } from './wait.js';

/** Typed views of the shared memory that the executor itself reads (flags, parameters). */
export class MemoryViews {
  readonly #memory: WebAssembly.Memory;
  #f64: Float64Array;
  #i32: Int32Array;

  constructor(memory: WebAssembly.Memory) {
    this.#memory = memory;
    this.#f64 = wholeView(Float64Array, memory.buffer);
    this.#i32 = wholeView(Int32Array, memory.buffer);
  }

  /** Re-creates the views after the memory grew (`wholeView`). */
  refresh(): void {
    const buffer = this.#memory.buffer;
    if (buffer.byteLength !== this.#f64.byteLength) {
      this.#f64 = wholeView(Float64Array, buffer);
      this.#i32 = wholeView(Int32Array, buffer);
    }
  }

  get f64(): Float64Array { return this.#f64; }
  get i32(): Int32Array { return this.#i32; }
}

/**
 * Makes this thread's `memory.buffer` at least `bytes` long. V8 tells a shared memory's other
 * threads that it grew by an interrupt each handles later, and a worker that was starting while
 * the calling thread grew the memory can miss that growth and later ones: its `memory.buffer`
 * keeps the length it had. Seen on pools whose memory grew while their 16 workers started: the
 * last worker's buffer 19.9 MB long against 31.1 MB, its first Atomics access to the call's
 * scratch a RangeError ("Invalid atomic access index"), in 5 of 180 such pools on 2 vCPUs
 * (bench/growth-race.mjs) and twice in bench/scaling.ts's check on a 16-core machine. `grow(0)`
 * made that worker's buffer 31.1 MB long: it makes this thread's memory object take the memory's
 * current length. (emnapi met the same in Chrome: toyobayashi/emnapi#217.)
 */
export function coverMemory(memory: WebAssembly.Memory, bytes: number): void {
  if (memory.buffer.byteLength >= bytes) return;
  memory.grow(0);
  const length = memory.buffer.byteLength;
  if (length < bytes) throw new RangeError(`the shared memory is ${length} bytes long on this worker after grow(0), short of the ${bytes} its task was posted with`);
}

/**
 * Runs one task: the same code in a worker and, for small inputs, inline on the calling thread.
 * Returns false when the call's cancel flag was found set (the task stopped between blocks).
 */
export function executeTask(task: Task, kernel: Kernel, views: MemoryViews): boolean {
  views.refresh();
  const layout = scratchLayout(task.grid, task.scratchByte);
  const i32 = views.i32;
  const cancelIndex = layout.cancelByte / 4;
  const flag = (): boolean => Atomics.load(i32, cancelIndex) !== 0;
  const cancelled = task.fault?.kind === 'cancel' ? cancelsAfter(task.fault.afterPolls, i32, layout) : flag;
  if (task.prep !== null && !prepare(task, kernel, views, layout, cancelled)) return false;
  const walk = new BlockWalker(task, kernel, views, layout);
  const first = new Claims(task, i32, layout, 0);
  if (task.op === 'fused') {
    const row = task.grid.mode === 'row';
    // Plane mode: a channel reduced and merged, normalized while the next one is reduced (where
    // the walker pipelines), or right away.
    let pending = -1;
    for (let i = first.next(); i >= 0; i = first.next()) {
      for (const end = first.end(); i < end; i++) {
        // Task.awaitStaged: the calling thread counts the channels it has copied in at stagedByte.
        if (task.awaitStaged && !waitOn(i32, layout.stagedByte / 4, (staged) => staged > i, task.spinMs, cancelled)) return false;
        if (row) {
          if (!walk.fuseBand(i, cancelled)) return false;
        } else if (walk.pipelines) {
          if (!walk.reduceChannel(i, pending, cancelled)) return false;
          pending = i;
        } else if (!walk.reduceChannel(i, -1, cancelled) || !walk.normalizeChannel(i, cancelled)) {
          return false;
        }
      }
    }
    return pending < 0 || walk.normalizeChannel(pending, cancelled);
  }
  if (task.op === 'phased') {
    // Phase p's statistics go with the normalization of phase p - 1 (merged at barrier p - 1).
    const phases = task.phases!;
    const c0 = task.region.c0;
    const second = new Claims(task, i32, layout, 1);
    for (let p = 0; p + 1 < phases.length; p++) {
      const done = p === 0
        ? walk.statsGroups(phases[0], phases[1], first, cancelled)
        : walk.statsNormGroups(phases[p], phases[p + 1], first, phases[p - 1], phases[p], second, cancelled);
      if (!done || !barrier(task, kernel, views, layout, p, c0 + phases[p], c0 + phases[p + 1])) return false;
    }
    const last = phases.length - 1;
    return walk.normalizeGroups(phases[last - 1], phases[last], second, cancelled);
  }
  let normalizeClaims = first;
  if (task.op !== 'normalize') {
    const applied = task.backward === 'eval-applied';
    for (let i = first.next(); i >= 0; i = first.next()) {
      if (!(applied ? walk.statsApplyRange(i, first.end(), cancelled) : walk.statsRange(i, first.end(), cancelled))) return false;
    }
    if (task.op === 'stats') {
      // Every partial of the call is written once the gang's last task gets here: it merges.
      if (task.gang > 0 && Atomics.add(i32, layout.doneByte / 4, 1) + 1 === task.gang) mergeChannels(kernel, task, layout, 0, task.grid.C);
      return true;
    }
    if (!barrier(task, kernel, views, layout, 0, 0, task.grid.C)) return false;
    // The second pass's claims: only `split` and `phased` have one.
    normalizeClaims = new Claims(task, i32, layout, 1);
  }
  // Last item first after a statistics pass: the items reduced last are still in cache.
  const reverse = task.op === 'split' || task.reverse;
  for (let i = normalizeClaims.next(); i >= 0; i = normalizeClaims.next()) {
    const end = normalizeClaims.end();
    // Reverse: claim [i, end) stands for its range's items mirrored, visited last first.
    const done = reverse
      ? walk.normalizeRange(normalizeClaims.mirror(end - 1), normalizeClaims.mirror(i) + 1, true, cancelled)
      : walk.normalizeRange(i, end, false, cancelled);
    if (!done) return false;
  }
  return true;
}

/**
 * A test's fault (`Fault` 'cancel'): the task's polls of the cancel flag, of which the first
 * `polls` read none and the next raises it, as the calling thread's cancel would, and finds it.
 */
function cancelsAfter(polls: number, i32: Int32Array, layout: ScratchLayout): () => boolean {
  let left = polls;
  return () => {
    if (left-- > 0) return false;
    raiseCancel(i32, layout);
    return true;
  };
}

/**
 * A pass's work items, handed out `task.chunk` at a time (tapered by `task.taper`) from the
 * pass's claim counters (`claimCounter`), which count each range's claims. The items are cut
 * into `task.ranges` equal contiguous ranges; a task claims from its own (`task.slot`) until it
 * is empty, then from the next ranges in turn, so that where the tasks keep pace each goes over
 * its own part of the tensor, and where one falls behind the others take over the rest of its
 * part a claim at a time. The main thread zeroes the counters before it dispatches a call's
 * tasks; between the passes of `split` and `phased`, the task that merges at a barrier does (no
 * task claims from either counter while the others are still arriving).
 */
export class Claims {
  readonly #i32: Int32Array;
  readonly #layout: ScratchLayout;
  readonly #pass: 0 | 1;
  readonly #task: Task;
  /** The range claimed from now, and how many ranges were tried. */
  #range: number;
  #tried = 0;
  /** The current range's items [#lo, #hi), and (tapered claims) its claims' bounds relative to #lo. */
  #lo = 0;
  #hi = 0;
  #bounds: readonly number[] | null = null;
  /** The end of the claim `next` handed out last. */
  #end = 0;
  /** The pass's items and items a claim: `Task.second`'s for a split's second pass that has its own. */
  readonly #items: number;
  readonly #chunk: number;

  constructor(task: Task, i32: Int32Array, layout: ScratchLayout, pass: 0 | 1) {
    this.#i32 = i32;
    this.#layout = layout;
    this.#pass = pass;
    this.#task = task;
    const own = pass === 1 ? task.second : undefined;
    this.#items = own?.items ?? task.items;
    this.#chunk = own?.chunk ?? task.chunk;
    this.#range = task.slot % task.ranges;
    this.#enter();
  }

  #enter(): void {
    [this.#lo, this.#hi] = rangeBounds(this.#items, this.#task.ranges, this.#range);
    this.#bounds = this.#task.taper > 0 ? claimBounds(this.#hi - this.#lo, this.#chunk, this.#task.taper) : null;
  }

  /** The first item of the next claim, or -1 when every item is taken. */
  next(): number {
    const chunk = this.#chunk;
    const { ranges } = this.#task;
    for (;;) {
      const claim = Atomics.add(this.#i32, claimCounter(this.#layout, this.#pass, this.#range), 1);
      if (this.#bounds !== null) {
        if (claim + 1 < this.#bounds.length) {
          this.#end = this.#lo + this.#bounds[claim + 1];
          return this.#lo + this.#bounds[claim];
        }
      } else if (this.#lo + claim * chunk < this.#hi) {
        const item = this.#lo + claim * chunk;
        this.#end = Math.min(item + chunk, this.#hi);
        return item;
      }
      if (++this.#tried >= ranges) return -1;
      this.#range = (this.#range + 1) % ranges;
      this.#enter();
    }
  }

  /** The end of the claim `next` handed out last. */
  end(): number {
    return this.#end;
  }

  /**
   * Item i walked last to first within its range: the range's items in reverse. A pass over the
   * items a pass before it claimed (`split`'s and `phased`'s normalization after their
   * statistics) visits each range's items reduced last first, on the task that reduced them.
   * A claim's items [i, end) so stand for [mirror(end - 1), mirror(i)], which are contiguous.
   */
  mirror(i: number): number {
    return this.#lo + this.#hi - 1 - i;
  }
}

/** Items [lo, hi) of range `range` of `items` items cut into `ranges`: equal parts, the larger ones last. */
export function rangeBounds(items: number, ranges: number, range: number): [number, number] {
  return [Math.floor((range * items) / ranges), Math.floor(((range + 1) * items) / ranges)];
}

/**
 * The claims of `items` items tapered by `taper` (see `Task.taper`), as their bounds: claim k is
 * [bounds[k], bounds[k + 1]). A function of its arguments alone, so every task of a call cuts
 * the items alike.
 */
export function claimBounds(items: number, chunk: number, taper: number): number[] {
  const bounds = [0];
  for (let at = 0; at < items;) {
    at += Math.max(1, Math.min(chunk, Math.ceil((items - at) / taper)));
    bounds.push(Math.min(at, items));
  }
  return bounds;
}

/** How many claims range `range` of a pass of `task` hands out. */
export function claimCount(task: Task, range: number): number {
  const [lo, hi] = rangeBounds(task.items, task.ranges, range);
  return task.taper > 0 ? claimBounds(hi - lo, task.chunk, task.taper).length - 1 : Math.ceil((hi - lo) / task.chunk);
}

/**
 * Barrier `phase` of a `split` (its only one) or `phased` call: the last task to arrive merges
 * channels [c0, c1) and wakes the others, which spin for up to `task.spinMs`, then sleep.
 * Spinning beats sleeping for short waits: a futex wake-up costs ~90 µs on this project's VM, a
 * spin ~1 µs (design notes). A task passes barrier p before it can arrive at p + 1, so the arrivals
 * at p are the count's values p * gang + 1 to (p + 1) * gang, and `ready`, the number of barriers
 * released, only grows: one pair of words serves every phase. False when the call was cancelled
 * first.
 *
 * Deadlock-free because a call's tasks are queued back to back, there are at most as many as
 * workers, and the pool's queue is strictly FIFO: when one of them starts, every task queued
 * before it has started, so the workers the others need are held only by tasks that finish.
 */
function barrier(task: Task, kernel: Kernel, views: MemoryViews, layout: ScratchLayout, phase: number, c0: number, c1: number): boolean {
  const i32 = views.i32;
  const ready = layout.readyByte / 4;
  if (Atomics.add(i32, layout.doneByte / 4, 1) + 1 === task.gang * (phase + 1)) {
    mergeChannels(kernel, task, layout, c0, c1);
    // Every task has finished the statistics of this phase and the normalization of the one
    // before (they arrived): both passes' claim counters are free to start again.
    resetClaims(i32, layout, task.ranges);
    Atomics.store(i32, ready, phase + 1);
    Atomics.notify(i32, ready);
    return true;
  }
  const cancel = layout.cancelByte / 4;
  return waitOn(i32, ready, (value) => value > phase, task.spinMs, () => Atomics.load(i32, cancel) !== 0);
}
