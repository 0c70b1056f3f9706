import { Pool } from '../../dist/src/index.js';
import { faultPending, poolInternals } from '../../dist/src/pool-internals.js';

/**
 * The pool configurations every numeric suite runs under: on every worker for every size
 * (inlineThreshold 0, grainSize 1), and inline on the calling thread for every size.
 */
export const POOL_CONFIGS = [
  { name: '2 workers', options: { threads: 2, inlineThreshold: 0, grainSize: 1 } },
  { name: 'inline', options: { threads: 1, inlineThreshold: Number.MAX_SAFE_INTEGER } },
] as const;

export function openPools(kernel: 'js' | 'wasm'): Map<string, Pool> {
  return new Map(POOL_CONFIGS.map((c) => [c.name, new Pool({ ...c.options, kernel })]));
}

export async function closePools(pools: Map<string, Pool>): Promise<void> {
  await Promise.all([...pools.values()].map((p) => p.close()));
}

/**
 * Pools whose results must agree bit for bit: 1, 2 and 3 workers, inline, and 2 workers in a pool
 * of `stagedMaxMemory` bytes, too small to hold the suite's inputs at once, so they are staged in
 * chunks.
 */
export function openAgreeingPools(kernel: 'js' | 'wasm', stagedMaxMemory: number): Pool[] {
  return [
    ...[1, 2, 3].map((threads) => new Pool({ threads, inlineThreshold: 0, grainSize: 1, kernel })),
    new Pool({ threads: 2, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel }),
    new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: stagedMaxMemory, initialMemory: 1 << 20 }),
  ];
}

/** Kernels the suites are parameterised over. */
export const KERNELS = ['js', 'wasm'] as const;

/**
 * Resolves once `call`, which takes the fault injected on `pool`, has posted its tasks (the fault
 * taken: the take and the posts are one synchronous stretch), so that they are certainly running:
 * a timer could fire before a pool that is still starting has dispatched. A call that settles
 * first (it failed before its tasks) ends the wait too, for the test to report.
 */
export async function untilDispatched(pool: Pool, call: Promise<unknown>): Promise<void> {
  let settled = false;
  call.then(() => { settled = true; }, () => { settled = true; });
  while (faultPending(pool) && !settled) await new Promise((resolve) => setTimeout(resolve, 1));
}

/**
 * Aborts `ac` once `call` has posted its tasks (untilDispatched), so that the abort finds them
 * running, and the fault does not stall the next call instead.
 */
export async function abortOnceDispatched(pool: Pool, ac: AbortController, call: Promise<unknown>): Promise<void> {
  await untilDispatched(pool, call);
  ac.abort();
}

/**
 * The in-place tests' cases (forward.test.ts's `out: x`, backward.test.ts's `out: dy`): row mode
 * (interleaved channels, lanes, short runs, phased given a small cacheBytes), plane mode (row
 * groups, fused, split, phased) and channels-last.
 */
const IN_PLACE_CASES: [number[], 'channels-first' | 'channels-last'][] = [
  [[7, 3], 'channels-first'], [[203, 15], 'channels-first'], [[5, 37], 'channels-first'], [[20000, 16], 'channels-first'],
  [[3, 5, 17], 'channels-first'], [[64, 8, 9, 9], 'channels-first'], [[4, 6, 40, 41], 'channels-first'],
  [[3, 2, 130, 130], 'channels-first'], [[2, 3, 16385], 'channels-first'], [[64, 4, 32, 32], 'channels-first'],
  [[4, 7, 7, 6], 'channels-last'], [[2, 9, 9, 20], 'channels-last'],
];

/** One case of the in-place tests: a pool, a shape, a dtype, a ReLU or none, training or eval. */
export interface InPlaceCase {
  readonly pool: Pool;
  readonly shape: number[];
  readonly layout: 'channels-first' | 'channels-last';
  readonly dtype: 'float32' | 'float64';
  readonly C: number;
  readonly n: number;
  readonly activation: 'relu' | null;
  readonly training: boolean;
  readonly label: string;
  /** Where the case records the ops of the in-place call's tasks (`recordingOps`). */
  readonly ops: Set<string>;
}

/**
 * Runs `body` on every in-place case, under each kernel, on three pools of it: 2 workers; 2 with
 * a 64 KiB cacheBytes (the phased paths); 1 worker, small calls inline. Returns how many cases ran
 * and, by kernel, the ops the cases recorded.
 */
export async function eachInPlaceCase(body: (c: InPlaceCase) => Promise<void>): Promise<{ count: number; ops: Map<string, Set<string>> }> {
  let count = 0;
  const ops = new Map<string, Set<string>>();
  for (const kernel of KERNELS) {
    const pools = [
      new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel }),
      new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, cacheBytes: 1 << 16 }),
      new Pool({ threads: 1, kernel }),
    ];
    const seen = new Set<string>();
    ops.set(kernel, seen);
    try {
      for (const [i, pool] of pools.entries()) {
        for (const [shape, layout] of IN_PLACE_CASES) {
          const C = layout === 'channels-last' ? shape.at(-1)! : shape[1];
          const n = shape.reduce((a, b) => a * b, 1);
          for (const dtype of ['float32', 'float64'] as const) {
            for (const activation of [null, 'relu'] as const) {
              for (const training of [true, false]) {
                const label = `${kernel} pool ${i} [${shape}] ${layout} ${dtype} ${activation} ${training ? 'training' : 'eval'}`;
                await body({ pool, shape, layout, dtype, C, n, activation, training, label, ops: seen });
                count++;
              }
            }
          }
        }
      }
    } finally {
      await Promise.all(pools.map((p) => p.close()));
    }
  }
  return { count, ops };
}

type Tasks = Parameters<ReturnType<typeof poolInternals>['runTasks']>[0];

/** Hands `seen` every batch of tasks `pool` dispatches during `call`, then stops. */
export async function recordingTasks<T>(pool: Pool, seen: (tasks: Tasks) => void, call: () => Promise<T>): Promise<T> {
  const ctx = poolInternals(pool);
  const runTasks = ctx.runTasks;
  ctx.runTasks = (tasks, ...rest) => {
    seen(tasks);
    return runTasks(tasks, ...rest);
  };
  try {
    return await call();
  } finally {
    ctx.runTasks = runTasks;
  }
}

/** Adds to `ops` the op of every task `pool` runs during `call`. */
export function recordingOps<T>(pool: Pool, ops: Set<string>, call: () => Promise<T>): Promise<T> {
  return recordingTasks(pool, (tasks) => { for (const t of tasks) ops.add(t.op); }, call);
}
