/**
 * Turns of the event loop between inline calls made at once. Each inline call holds the calling
 * thread a fraction of a millisecond, but calls made together (a server's burst of small
 * requests, awaited together) follow one another on microtasks alone: 64 evals of 224x224 RGB
 * images held the event loop 10-13 ms in one piece here. So the calling thread counts the elements
 * of its inline calls since its last turn, and the time since the first of them: a call that
 * would take the count past INLINE_TURN_ELEMENTS, or that comes INLINE_TURN_MS or more after the
 * first, waits for a turn first, as its copies wait between slices of COPY_SLICE_BYTES
 * (placement.ts). A lone call never waits: the count and the clock start again at each turn.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { throwIfAborted } from './abort.js';

/**
 * The inline work, in elements, between two turns of the event loop: 2.7 calls at the default
 * inline threshold (786,432 elements, 0.2-0.4 ms each here). A turn cost a loop of awaited calls
 * ~40 µs here: at half this budget, forward and backward pairs of [1, 3, 224, 224] in a loop
 * took 1.07-1.08x their time without turns; at this one, within the noise (README, "Small inputs").
 */
export const INLINE_TURN_ELEMENTS = 1 << 21;

/**
 * The longest the calling thread runs inline calls between two turns, measured from the first
 * call after a turn to the start of the next: the element count alone assumes data in cache,
 * and calls over arrays of their own (a burst's distinct requests) took 0.98-1.92 ns an element
 * here, 2-4 ms for INLINE_TURN_ELEMENTS (README, "Small inputs").
 */
export const INLINE_TURN_MS = 1;

/** Elements of inline calls started since the calling thread's last turn. */
let spent = 0;
/** When the first of them started (performance.now()). */
let since = 0;
/** Whether an immediate is set to start the count again at the next turn. */
let watching = false;

/**
 * Counts a call of `elements` where it fits what is left until the next turn (or is the first
 * since it), or where it is `continued`.
 */
function fits(elements: number, continued: boolean): boolean {
  const now = performance.now();
  if (!watching) {
    watching = true;
    since = now;
    setImmediate(() => {
      spent = 0;
      watching = false;
    }).unref();
  }
  if (!continued && spent > 0 && (spent + elements > INLINE_TURN_ELEMENTS || now - since >= INLINE_TURN_MS)) return false;
  spent += elements;
  return true;
}

/**
 * Null where an inline call of `elements` may run now; else a promise that resolves once it may,
 * after one or more turns of the event loop, or rejects with an AbortError where `signal` fired
 * meanwhile (the call has done nothing yet). A `continued` call (the second part of one that
 * passed this check at its start) is counted and runs now: a lone call never waits.
 */
export function inlineTurn(elements: number, signal: AbortSignal | null, continued = false): Promise<void> | null {
  if (fits(elements, continued)) return null;
  return (async () => {
    do {
      await nextTurn();
      throwIfAborted(signal);
    } while (!fits(elements, false));
  })();
}
