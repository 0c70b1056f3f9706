/**
 * `npm run bench`'s command line: `--quick`, `--shapes=A,C,16x64x32x32` (those shapes only: the
 * suite's by id, in its order, then any others given, channels first) and `--threads=1,2,8`
 * (those thread counts only). A run of some shapes or thread counts writes
 * bench/results/partial.*, so that the committed full results stay.
 */
import { type BenchShape, benchShapeOf, SHAPES } from './shapes.js';

export interface BenchOptions {
  readonly quick: boolean;
  readonly shapes: readonly BenchShape[];
  /** bnpool's thread counts, ascending; the floor's halves and the statistics pass run at the last. */
  readonly threadCounts: readonly number[];
  /** Which results files the run writes: quick, partial or full. */
  readonly tag: 'quick' | 'partial' | 'full';
}

/**
 * Every thread count from 1 to `max` up to 4 threads; past that 1, 2, 4, ... and `max` (a full
 * run per count on 16 threads would take ~8 times the 2-thread machine's 2 minutes).
 */
export function defaultThreadCounts(max: number): number[] {
  if (max <= 4) return Array.from({ length: max }, (_, i) => i + 1);
  const counts: number[] = [];
  for (let t = 1; t < max; t *= 2) counts.push(t);
  return [...counts, max];
}

export function benchOptions(argv: readonly string[], maxThreads: number): BenchOptions {
  const quick = argv.includes('--quick');
  const value = (flag: string): string | undefined => argv.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
  const ids = value('--shapes')?.split(',');
  const given = ids?.map((id) => benchShapeOf(id, '--shapes'));
  const threadsArg = value('--threads');
  let threadCounts: number[];
  if (threadsArg === undefined) {
    threadCounts = quick ? [maxThreads] : defaultThreadCounts(maxThreads);
  } else {
    threadCounts = threadsArg.split(',').map(Number);
    if (threadsArg === '' || threadCounts.some((t) => !Number.isInteger(t) || t < 1 || t > 1024)) {
      throw new Error(`--threads: expected thread counts from 1 to 1024, separated by commas; got ${JSON.stringify(threadsArg)}`);
    }
    threadCounts = [...new Set(threadCounts)].sort((a, b) => a - b);
  }
  const partial = ids !== undefined || threadsArg !== undefined;
  return {
    quick,
    shapes: given === undefined ? SHAPES : [
      ...SHAPES.filter((s) => given.includes(s)),
      ...given.filter((s, i) => !SHAPES.includes(s) && given.findIndex((t) => t.id === s.id) === i),
    ],
    threadCounts,
    tag: quick ? 'quick' : partial ? 'partial' : 'full',
  };
}
