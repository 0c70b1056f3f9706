import { Pool } from '../../dist/src/index.js';

/**
 * The pool configurations every numeric suite runs under: on the workers for every size
 * (inlineThreshold 0), and inline on the calling thread for every size.
 */
export const POOL_CONFIGS = [
  { name: '2 workers', options: { threads: 2, inlineThreshold: 0 } },
  { name: 'inline', options: { threads: 1, inlineThreshold: Number.MAX_SAFE_INTEGER } },
] as const;

export function openPools(kernel: 'js' | 'wasm'): Map<string, Pool> {
  return new Map(POOL_CONFIGS.map((c) => [c.name, new Pool({ ...c.options, kernel })]));
}

export async function closePools(pools: Map<string, Pool>): Promise<void> {
  await Promise.all([...pools.values()].map((p) => p.close()));
}

/** Kernels the suites are parameterised over. */
export const KERNELS = ['js', 'wasm'] as const;
