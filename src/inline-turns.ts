/**
 * Turns of the event loop between inline calls made at once. Each inline call holds the calling
 * thread a fraction of a millisecond, but calls made together (a server's burst of small
 * requests, awaited together) follow one another on microtasks alone: 64 evals of 224x224 RGB
 * images held the event loop 10-13 ms in one piece here. So the calling thread counts the elements
 * of its inline calls since its last turn, and a call that would take the count past
 * INLINE_TURN_ELEMENTS waits for a turn first, as its copies wait between slices of
 * COPY_SLICE_BYTES (placement.ts). A lone call never waits: the count starts again at each turn.
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

/** Elements of inline calls started since the calling thread's last turn. */
let spent = 0;
/** Whether an immediate is set to start the count again at the next turn. */
let watching = false;

/** Counts a call of `elements` where it fits what is left until the next turn (or is the first since it). */
function fits(elements: number): boolean {
  if (!watching) {
    watching = true;
    setImmediate(() => {
      spent = 0;
      watching = false;
    }).unref();
  }
  if (spent > 0 && spent + elements > INLINE_TURN_ELEMENTS) return false;
  spent += elements;
  return true;
}

/**
 * Null where an inline call of `elements` may run now; else a promise that resolves once it may,
 * after one or more turns of the event loop, or rejects with an AbortError where `signal` fired
 * meanwhile (the call has done nothing yet).
 */
export function inlineTurn(elements: number, signal: AbortSignal | null): Promise<void> | null {
  if (fits(elements)) return null;
  return (async () => {
    do {
      await nextTurn();
      throwIfAborted(signal);
    } while (!fits(elements));
  })();
}
