/**
 * Waits until the int32 at `index` satisfies `reached`: spins for up to `spinMs` (a wait that
 * ends within it costs no sleep and wake-up), then sleeps on the word, which whoever changes it
 * notifies; the main thread also notifies it when it cancels the call. False when `cancelled()`
 * turned true first. The tasks' barrier, their prep and their wait for staged channels all wait
 * this way.
 */
export function waitOn(
  i32: Int32Array, index: number, reached: (value: number) => boolean, spinMs: number, cancelled: () => boolean,
): boolean {
  const spinUntil = performance.now() + spinMs;
  for (let seen = Atomics.load(i32, index); !reached(seen); seen = Atomics.load(i32, index)) {
    if (cancelled()) return false;
    if (performance.now() > spinUntil) Atomics.wait(i32, index, seen, 50);
  }
  return true;
}
