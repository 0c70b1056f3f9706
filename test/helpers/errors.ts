import { expect } from 'vitest';
import { BatchNorm, BnPoolError, type Pool } from '../../dist/src/index.js';
import { randomTensor } from './data.js';

/** A module trained once on `pool`, and a snapshot of everything a failed call must leave alone. */
export async function trainedModule(pool: Pool): Promise<{ bn: BatchNorm; snapshot: () => unknown }> {
  const bn = new BatchNorm(3, { pool });
  await bn.forward(randomTensor([4, 3, 5], 'float32', 1), [4, 3, 5]);
  const snapshot = () => JSON.stringify({
    sd: Object.fromEntries(Object.entries(bn.stateDict()).map(([k, v]) => [k, typeof v === 'number' ? v : Array.from(v as Float32Array)])),
    training: bn.training,
  });
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
