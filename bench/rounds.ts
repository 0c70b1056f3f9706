/**
 * Sampling shared by the benchmark scripts: implementations measured in alternating rounds, and
 * the median of what they took.
 */
import { Bench } from 'tinybench';

/** Per-item totals over all rounds (tinybench's time and iterations), and the warm-up. */
export interface Timing {
  readonly rounds: number;
  /** ms an item is sampled for, over all rounds (tinybench's `time`, split evenly). */
  readonly time: number;
  /** Fewest samples an item gets, over all rounds (tinybench's `iterations`, split evenly). */
  readonly iterations: number;
  /** ms each item runs for before the first round; at least two calls however long they take. */
  readonly warmupTime: number;
}

/**
 * A call at least this long (ms) is not run again before each round's samples: a peer or the
 * JavaScript kernel on a large shape (up to ~1 s a call here), which one call more would not make
 * any warmer, and whose ten warm-up calls took the full suite past four minutes on its own.
 */
const REWARM_MAX_MS = 50;

/**
 * Samples (ms) of each function, taken in rounds: each round runs every function for its share of
 * the time, in turn, so the floor and what is compared with it are sampled in alternating windows
 * of the same stretch of time. Measured one after another, a shared VM's memory bandwidth drifted
 * between the floor's window and the next item's (floors of one shape 0.86 and 1.95 ms in two runs).
 *
 * Before the first round each function runs for `warmupTime` ms (thousands of calls for a fast
 * one, enough for V8 to optimize the JavaScript around the kernels; two for a slow one); in each
 * round, a function shorter than REWARM_MAX_MS is called once more just before its samples, which
 * warms the caches and the workers that the other items' turns left cold.
 */
export async function sampleInRounds(fns: readonly (() => unknown)[], timing: Timing): Promise<number[][]> {
  const samples: number[][] = fns.map(() => []);
  const rewarm: boolean[] = [];
  for (const fn of fns) {
    const start = performance.now();
    let calls = 0;
    while (calls < 2 || performance.now() - start < timing.warmupTime) {
      await fn();
      calls++;
    }
    rewarm.push((performance.now() - start) / calls < REWARM_MAX_MS);
  }
  for (let round = 0; round < timing.rounds; round++) {
    const bench = new Bench({
      time: timing.time / timing.rounds,
      iterations: Math.ceil(timing.iterations / timing.rounds),
      warmup: false,
      retainSamples: true,
      throws: true,
    });
    for (const [i, fn] of fns.entries()) {
      // `async` said, not detected: tinybench detects it by calling the function once without
      // waiting for it, and that call ran on into the first samples (a floor of 10 ms sampled as
      // 10 and 20).
      bench.add(String(i), fn, { async: true, beforeAll: rewarm[i] ? async () => { await fn(); } : undefined });
    }
    await bench.run();
    for (const [i, task] of bench.tasks.entries()) {
      const result = task.result as { latency?: { samples?: readonly number[] } } | undefined;
      samples[i].push(...(result?.latency?.samples ?? []));
    }
  }
  return samples;
}

export function medianOf(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The longest the event loop was held in one piece while `call` ran, in ms: the longest gap
 * between setImmediate ticks, counting the call's own synchronous start and the piece from the
 * last tick to the call's settling (a call's last step, such as a module's running update, may
 * run there).
 */
export async function longestHold(call: () => Promise<unknown>): Promise<number> {
  const { from, to } = await longestStretch(call);
  return to - from;
}

/**
 * The longest stretch without a turn of the event loop while `call` ran (longestHold), as its
 * start and end in performance.now() time, and the call's own time in ms: where a stretch is
 * laid beside something else timed on the same clock (the garbage collector's pauses).
 */
export async function longestStretch(call: () => Promise<unknown>): Promise<{ from: number; to: number; ms: number }> {
  const start = performance.now();
  let longest = { from: start, to: start };
  let last = start;
  let running = true;
  const stretch = (now: number): void => {
    if (now - last > longest.to - longest.from) longest = { from: last, to: now };
    last = now;
  };
  const tick = (): void => {
    stretch(performance.now());
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  // The call's synchronous start is in the first stretch: `last` is this start until a tick.
  const done = call();
  try {
    await done;
  } finally {
    running = false;
  }
  const end = performance.now();
  stretch(end);
  return { ...longest, ms: end - start };
}
