/**
 * A module's calls in call order: each runs once every call made before it has settled, so it
 * sees the state they left, and none sees another half-applied.
 */
import { waitForTurn } from './abort.js';
import type { PoolInternals } from './pool-internals.js';

export class CallQueue {
  /** Settles when the latest call finished. */
  #tail: Promise<void> = Promise.resolve();

  /**
   * Runs `work` after every call queued before it has settled (or rejects as soon as `signal`
   * fires while it waits), tracked for the pool's close(); `unpin` releases the call's pinned
   * arrays once it settles. A call that left the queue early (aborted) still holds its place
   * until the one before it ends.
   */
  run<T>(ctx: PoolInternals, signal: AbortSignal | null, unpin: () => void, work: () => Promise<T>): Promise<T> {
    const turn = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => { release = resolve; });
    return ctx.track((async () => {
      try {
        await waitForTurn(turn, signal);
        return await work();
      } finally {
        unpin();
        void turn.then(release);
      }
    })());
  }
}
