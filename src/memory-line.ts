/**
 * Calls that wait for memory other calls hold. A call's scratch and staging blocks live from its
 * start to its end. On a pool with a `maxMemory`, concurrent calls (other modules', the functional
 * forms') can hold so much of it that the next cannot stage even its smallest chunk: that call
 * waits for theirs instead of failing, in line (first come, first served: a call that finds others
 * waiting goes behind them), and tries again each time a block is freed. It fails with the
 * OutOfMemoryError only where waiting cannot help: no other call holds blocks that it will free
 * by itself (the memory is held by `pool.alloc` arrays, or the call needs more than the cap).
 *
 * A call waiting on a caller's hook (a synced backward's `reduceGrads`) does not count as one that
 * will free its blocks: that hook may itself wait for the call in line (an all-reduce between two
 * modules of one process), so the call in line fails as it did before calls waited, rather than
 * the two waiting for each other for ever.
 */
import { onAbort } from './abort.js';
import { AbortError, OutOfMemoryError } from './errors.js';
import type { Arena } from './memory.js';

/** A call in line; `wake` is set while it waits. */
interface Waiter {
  wake: (() => void) | null;
}

/** A call's blocks, taken: what `take` returned, and `release`, to run once it has freed them. */
export interface Held<T> {
  readonly value: T;
  readonly release: () => void;
}

export class MemoryLine {
  /** Calls holding blocks they will free by themselves, less those waiting on a caller's hook (`parked`). */
  #holders = 0;
  /** The calls waiting, first in line first. */
  readonly #line: Waiter[] = [];

  /** The arena freed a block: the call at the head of the line tries again. */
  freed(): void {
    this.#line[0]?.wake?.();
  }

  /** How many calls wait (Pool.memoryStats.waiting). */
  get waiting(): number {
    return this.#line.length;
  }

  /**
   * Runs `take` (synchronous: it allocates a call's blocks, or frees what it took and throws)
   * where no call waits before this one. Returns what it took, or null where the call must wait
   * (others are in line, or it threw an OutOfMemoryError while other calls hold blocks); throws
   * whatever else `take` throws, and its OutOfMemoryError where no other call holds any.
   */
  takeNow<T>(take: () => T): Held<T> | null {
    if (this.#line.length > 0) return null;
    return this.#attempt(take);
  }

  /**
   * Waits in line, then runs `take` each time a block is freed until it succeeds (see takeNow),
   * or until `signal` fires: an AbortError, the call left the line and took nothing.
   */
  async takeInTurn<T>(take: () => T, signal: AbortSignal | null): Promise<Held<T>> {
    if (signal?.aborted) throw aborted(signal);
    const me: Waiter = { wake: null };
    this.#line.push(me);
    try {
      while (this.#line[0] !== me) await this.#wait(me, signal);
      for (;;) {
        const held = this.#attempt(take);
        if (held !== null) return held;
        await this.#wait(me, signal);
      }
    } finally {
      const first = this.#line[0] === me;
      this.#line.splice(this.#line.indexOf(me), 1);
      // The next in line tries at once: what this call left may be enough for it.
      if (first) this.#line[0]?.wake?.();
    }
  }

  /** Counts blocks taken outside `take` (a running-statistics update's scratch) as held; the result releases them. */
  hold(): () => void {
    this.#holders++;
    let held = true;
    return () => {
      if (held) this.#holders--;
      held = false;
    };
  }

  /**
   * Waits for a caller's hook, during which the call's blocks do not count as ones it will free
   * (see above). The first call in line tries again at once: where this call's blocks are all it
   * was waiting for, it fails now rather than wait for a hook that may wait for it.
   */
  async parked<T>(hook: Promise<T>): Promise<T> {
    this.#holders--;
    this.#line[0]?.wake?.();
    try {
      return await hook;
    } finally {
      this.#holders++;
    }
  }

  #attempt<T>(take: () => T): Held<T> | null {
    let value: T;
    try {
      value = take();
    } catch (error) {
      if (error instanceof OutOfMemoryError && this.#holders > 0) return null;
      throw error;
    }
    return { value, release: this.hold() };
  }

  /** Resolves when `me` is woken (a block freed, or its turn at the head), or rejects as `signal` fires. */
  #wait(me: Waiter, signal: AbortSignal | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(aborted(signal));
        return;
      }
      const stopWatching = signal === null ? null : onAbort(signal, () => {
        me.wake = null;
        reject(aborted(signal));
      });
      me.wake = () => {
        me.wake = null;
        stopWatching?.();
        resolve();
      };
    });
  }
}

function aborted(signal: AbortSignal): AbortError {
  return new AbortError('the BatchNorm call was aborted while it waited for pool memory', { cause: signal.reason });
}

/**
 * A call's blocks on `arena`, all or none: `take` allocates them, pushing each offset onto the list
 * it is given (on a throw, those are freed): at once where it can, with no promise to await, else
 * in the arena's line (MemoryLine.takeInTurn), a promise. Gives what `take` returned; `release`
 * frees the blocks. A `take` that fails where the arena learned that it cannot grow as far as it
 * said runs again (Arena's `#grow`).
 */
export function takeBlocks<T>(
  arena: Arena, signal: AbortSignal | null, take: (allocated: number[]) => T,
): Held<T> | Promise<Held<T>> {
  const allocated: number[] = [];
  const attempt = (): T => {
    for (;;) {
      const maxBytes = arena.maxBytes;
      try {
        return take(allocated);
      } catch (error) {
        for (const offset of allocated.splice(0)) arena.free(offset);
        // The memory could not grow as far as the plan counted on, and now says how far it can
        // (Arena's #grow): plan again. maxBytes only falls, and not below the memory's length.
        if (!(error instanceof OutOfMemoryError) || arena.maxBytes === maxBytes) throw error;
      }
    }
  };
  const freeing = (held: Held<T>): Held<T> => ({
    value: held.value,
    release: () => {
      for (const offset of allocated) arena.free(offset);
      held.release();
    },
  });
  const now = arena.line.takeNow(attempt);
  return now !== null ? freeing(now) : arena.line.takeInTurn(attempt, signal).then(freeing);
}
