import { Pool } from '../../dist/src/index.js';
import { faultPending } from '../../dist/src/pool-internals.js';

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
