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

/** The calls' callbacks on one signal, and the one 'abort' listener that runs them. */
interface SignalCallbacks {
  readonly callbacks: Set<{ readonly run: () => void }>;
  readonly listener: () => void;
}

/** Each signal in use by a call in flight: its callbacks (onAbort). */
const watched = new WeakMap<AbortSignal, SignalCallbacks>();

/**
 * Runs `callback` when `signal` fires, until the returned function is called; a callback added
 * after the signal fired never runs (as an 'abort' listener would not: callers check `aborted`).
 *
 * However many calls share a signal (a server's shutdown signal, passed to every call), bnpool
 * puts one listener on it, which runs the callbacks in the order they were added: one listener
 * a call would make Node 20 print a MaxListenersExceededWarning ("Possible EventTarget memory
 * leak detected") at the eleventh concurrent call, though each is removed when its call settles.
 * (Newer Node lines stop counting an AbortSignal's listeners, nodejs/node#55816; Node 20 counts.)
 */
export function onAbort(signal: AbortSignal, callback: () => void): () => void {
  let entry = watched.get(signal);
  if (entry === undefined) {
    const callbacks = new Set<{ readonly run: () => void }>();
    const listener = (): void => {
      watched.delete(signal);
      // Each callback runs, as separate listeners would, even where one before it threw; the
      // first error is thrown once all have run.
      let failure: { readonly error: unknown } | null = null;
      for (const c of [...callbacks]) {
        try {
          c.run();
        } catch (error) {
          failure ??= { error };
        }
      }
      if (failure !== null) throw failure.error;
    };
    entry = { callbacks, listener };
    watched.set(signal, entry);
    signal.addEventListener('abort', listener, { once: true });
  }
  const { callbacks, listener } = entry;
  const own = { run: callback };
  callbacks.add(own);
  return () => {
    if (!callbacks.delete(own) || callbacks.size > 0) return;
    signal.removeEventListener('abort', listener);
    if (watched.get(signal) === entry) watched.delete(signal);
  };
}

/** Waits for the previous call on the module, or rejects as soon as `signal` fires. */
export function waitForTurn(turn: Promise<void>, signal: AbortSignal | null): Promise<void> {
  if (signal === null) return turn;
  return new Promise<void>((resolve, reject) => {
    const stopWatching = onAbort(signal, () => reject(new AbortError('the BatchNorm call was aborted while queued', { cause: signal.reason })));
    void turn.then(() => {
      stopWatching();
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
    const stopWatching = onAbort(signal, () => reject(abortError(signal)));
    Promise.resolve(hook).then(resolve, reject).finally(stopWatching);
  });
}
