/**
 * Turns of the event loop while a call runs, counted by setImmediate ticks: a count, which does
 * not depend on timing, for tests of where a call lets a server's other work run; and a deferred
 * promise, for hooks that wait on each other's answers.
 */

/** Resolves after one turn of the event loop (a setImmediate). */
export function oneTurn(): Promise<void> {
  return new Promise((resolve) => { setImmediate(resolve); });
}

/** Calls `fn` at every turn of the event loop (setImmediate) until the function it returns is called. */
export function everyTurn(fn: () => void): () => void {
  let running = true;
  const tick = (): void => {
    if (!running) return;
    fn();
    setImmediate(tick);
  };
  setImmediate(tick);
  return () => { running = false; };
}

/** Counts turns of the event loop until `stop` is called. */
export function turnCounter(): { readonly turns: () => number; stop: () => void } {
  let turns = 0;
  const stop = everyTurn(() => { turns++; });
  return { turns: () => turns, stop };
}

/** Runs `call`, counting the turns of the event loop until it settles. */
export async function turnsOf<T>(call: () => Promise<T>): Promise<{ value: T; turns: number }> {
  const counter = turnCounter();
  try {
    const value = await call();
    return { value, turns: counter.turns() };
  } finally {
    counter.stop();
  }
}

/** A promise and the functions that settle it: a hook that waits for another's answer. */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}
