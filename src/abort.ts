/**
 * Aborts: the AbortError a call's signal turns into, at each point where a call can stop (before
 * it starts, while queued behind the module's earlier calls, between its phases, while a
 * caller's all-reduce hook runs). Workers see the same abort through the call's cancel flag
 * (dispatch.ts).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { AbortError } from './errors.js';

/** Refuses a call whose signal fired before it was made: nothing is queued or staged. */
export function throwIfAbortedBeforeStart(signal: AbortSignal | null): void {
  if (signal?.aborted) throw new AbortError('the BatchNorm call was aborted before it started', { cause: signal.reason });
}

/** Waits for the previous call on the module, or rejects as soon as `signal` fires. */
export function waitForTurn(turn: Promise<void>, signal: AbortSignal | null): Promise<void> {
  if (signal === null) return turn;
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError('the BatchNorm call was aborted while queued', { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    void turn.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** The AbortError of a call stopped once it started, with the signal's reason as its cause. */
export function abortError(signal: AbortSignal | null): AbortError {
  return new AbortError('the BatchNorm call was aborted', { cause: signal?.reason });
}

/** Stops a running call between its steps once its signal fired. */
export function throwIfAborted(signal: AbortSignal | null): void {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * The pause between two slices of a call's steps on the calling thread (copies, per-channel
 * loops): a turn of the event loop, then throwIfAborted, so that an abort stops the call there.
 */
export function pauseFor(signal: AbortSignal | null): () => Promise<void> {
  return async () => {
    await nextTurn();
    throwIfAborted(signal);
  };
}

/**
 * Waits for a caller's hook (an all-reduce), or rejects with an AbortError as soon as `signal`
 * fires: a transport that never answers must not hold the call, and `close()`, forever. The hook's
 * late answer is then ignored.
 */
export function untilAborted<T>(hook: T | Promise<T>, signal: AbortSignal | null): Promise<T> {
  if (signal === null) return Promise.resolve(hook);
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(hook).then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
