import { expect } from 'vitest';
import { BatchNorm, BnPoolError, type Pool } from '../../dist/src/index.js';
import { randomTensor } from './data.js';

/** The state a module holds (its `stateDict()`), as plain numbers: to compare, or to snapshot as JSON. */
export function stateOf(bn: BatchNorm): Record<string, unknown> {
  return Object.fromEntries(Object.entries(bn.stateDict()).map(([k, v]) => [k, typeof v === 'number' ? v : Array.from(v as ArrayLike<number>)]));
}

/**
 * A module trained once on `pool` (one batch of `shape`, float32), and a snapshot of everything a
 * failed call must leave alone.
 */
export async function trainedModule(
  pool: Pool, shape: readonly number[] = [4, 3, 5],
): Promise<{ bn: BatchNorm; snapshot: () => unknown }> {
  const bn = new BatchNorm(shape[1], { pool });
  await bn.forward(randomTensor(shape, 'float32', 1), shape);
  const snapshot = () => JSON.stringify({ sd: stateOf(bn), training: bn.training });
  return { bn, snapshot };
}

/** Awaits `p`'s rejection and checks it: of `Ctor`, a BnPoolError, with `code`, its message holding each fragment. */
export async function expectRejection(p: Promise<unknown>, Ctor: Function, code: string, ...fragments: string[]): Promise<BnPoolError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(Ctor);
  expect(err).toBeInstanceOf(BnPoolError);
  const e = err as BnPoolError;
  expect(e.code).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
  return e;
}
