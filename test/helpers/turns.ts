/**
 * Turns of the event loop while a call runs, counted by setImmediate ticks: a count, which does
 * not depend on timing, for tests of where a call lets a server's other work run.
 */

/** Counts turns of the event loop until `stop` is called. */
export function turnCounter(): { readonly turns: () => number; stop: () => void } {
  let turns = 0;
  let running = true;
  const tick = (): void => {
    if (!running) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  return { turns: () => turns, stop: () => { running = false; } };
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
