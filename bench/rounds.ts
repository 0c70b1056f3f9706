/**
 * Sampling shared by the benchmark scripts: implementations measured in alternating rounds, and
 * the median of what they took.
 */
import { Bench } from 'tinybench';

/** Per-item totals over all rounds (tinybench's time and iterations), and the first round's warm-up. */
export interface Timing {
  readonly rounds: number;
  readonly time: number;
  readonly iterations: number;
  readonly warmupIterations: number;
  readonly warmupTime: number;
}

/**
 * Samples (ms) of each function, taken in rounds: each round runs every function for its share of
 * the time, in turn, so the floor and what is compared with it are sampled in alternating windows
 * of the same stretch of time. Measured one after another, a shared VM's memory bandwidth drifted
 * between the floor's window and the next item's (floors of one shape 0.86 and 1.95 ms in two runs).
 */
export async function sampleInRounds(fns: readonly (() => unknown)[], timing: Timing): Promise<number[][]> {
  const samples: number[][] = fns.map(() => []);
  for (let round = 0; round < timing.rounds; round++) {
    const first = round === 0;
    const bench = new Bench({
      time: timing.time / timing.rounds,
      iterations: Math.ceil(timing.iterations / timing.rounds),
      warmupIterations: first ? timing.warmupIterations : 1,
      warmupTime: first ? timing.warmupTime : 5,
      retainSamples: true,
      throws: true,
    });
    for (const [i, fn] of fns.entries()) bench.add(String(i), fn);
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
