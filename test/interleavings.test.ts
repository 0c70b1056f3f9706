/**
 * Random interleavings of calls, aborts, frees and close() on fresh pools (seeded): every call
 * settles; one that completes has the bits of the same call on an open reference pool; one that
 * fails does so with an AbortError (its signal fired) or a ClosedError (it was made after close());
 * no array a call uses can be freed while it runs. `BNPOOL_INTERLEAVINGS=200` searches longer.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BatchNorm, batchNorm, BnPoolError, ChannelStats, Pool } from '../dist/src/index.js';
import { randomTensor, rng, sameBits } from './helpers/data.js';

const TRIALS = Number(process.env.BNPOOL_INTERLEAVINGS ?? 40);
const SEED = Number(process.env.BNPOOL_INTERLEAVINGS_SEED ?? 1);
/** Inline and worker sizes (with the thresholds below), rank 2 to 4. */
const SHAPES = [[4, 3], [8, 3, 5, 5], [16, 8, 33], [8, 16, 16, 16], [2, 4, 60, 60]];
const KINDS = ['training', 'eval', 'backward', 'statistics', 'functional'] as const;

let reference: Pool;
beforeAll(() => { reference = new Pool({ threads: 1 }); });
afterAll(() => reference.close());

interface Made {
  readonly kind: (typeof KINDS)[number];
  readonly got: Promise<ArrayLike<number>[]>;
  readonly want: Promise<ArrayLike<number>[]>;
  readonly afterClose: boolean;
  readonly signalled: boolean;
}

/** One call of `kind` on `pool`, with `signal`: its results (outputs and per-channel state). */
function call(kind: Made['kind'], pool: Pool, x: Float32Array, dy: Float32Array, shape: number[], signal?: AbortSignal): Promise<ArrayLike<number>[]> {
  const bn = new BatchNorm(shape[1], { pool });
  switch (kind) {
    case 'training':
      return bn.forward(x, shape, { signal }).then((y) => [y, bn.runningMean!, bn.runningVar!]);
    case 'eval':
      bn.runningMean!.fill(0.5);
      bn.eval();
      return bn.forward(x, shape, { signal }).then((y) => [y]);
    case 'backward': {
      // Queued behind its forward on the module: both are made now.
      bn.forward(x, shape).catch(() => {});
      return bn.backward(dy, { signal }).then((g) => [g.dx, g.dWeight!, g.dBias!]);
    }
    case 'statistics':
      return ChannelStats.fromBatch(x, shape, { pool, signal }).then((s) => [s.mean(), s.variance()]);
    case 'functional':
      return batchNorm(x, shape, { training: true, pool, signal }).then((r) => [r.y, r.mean, r.var]);
  }
}

it(`${TRIALS} random interleavings of calls, aborts, frees and close() settle as they should (seed ${SEED})`, async () => {
  const rand = rng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  let completed = 0;
  let refused = 0;
  for (let trial = 0; trial < TRIALS; trial++) {
    const pool = new Pool({ threads: pick([1, 2, 3]), inlineThreshold: pick([0, 4096, 786432]) });
    const made: Made[] = [];
    let closing: Promise<void> | null = null;
    const steps = 4 + Math.floor(rand() * 10);
    for (let step = 0; step < steps; step++) {
      const shape = pick(SHAPES);
      const onPool = closing === null && rand() < 0.5;
      const data = randomTensor(shape, 'float32', 100 * trial + step) as Float32Array;
      const x = onPool ? pool.alloc(data.length) : new Float32Array(data.length);
      x.set(data);
      const dy = randomTensor(shape, 'float32', 7 + step) as Float32Array;
      const ac = rand() < 0.3 ? new AbortController() : null;
      const kind = pick(KINDS);
      const got = call(kind, pool, x, dy, shape, ac?.signal);
      const want = call(kind, reference, x.slice(), dy, shape);
      got.catch(() => {});
      want.catch(() => {});
      made.push({ kind, got, want, afterClose: closing !== null, signalled: ac !== null });
      if (ac !== null) {
        const when = rand();
        if (when < 0.3) ac.abort();
        else setTimeout(() => ac.abort(), Math.floor(rand() * 3));
      }
      if (onPool && rand() < 0.3) {
        // Every call pins its arrays from the moment it is made until it settles.
        expect(() => pool.free(x)).toThrow(/in use by a call in flight/);
      }
      if (closing === null && rand() < 0.12) closing = pool.close();
      if (rand() < 0.3) await new Promise((resolve) => setTimeout(resolve, Math.floor(rand() * 3)));
    }
    await Promise.allSettled(made.map((m) => m.got));
    await (closing ?? pool.close());
    for (const [i, m] of made.entries()) {
      const [got, want] = await Promise.allSettled([m.got, m.want]);
      const label = `trial ${trial}, call ${i} (${m.kind})`;
      expect(want.status, label).toBe('fulfilled');
      if (got.status === 'fulfilled') {
        const w = (want as PromiseFulfilledResult<ArrayLike<number>[]>).value;
        expect(got.value.length, label).toBe(w.length);
        for (let k = 0; k < w.length; k++) expect(sameBits(got.value[k], w[k]), `${label}, result ${k}`).toBe(true);
        completed++;
      } else {
        const err = got.reason as BnPoolError;
        expect(err, label).toBeInstanceOf(BnPoolError);
        const allowed = [...(m.signalled ? ['ABORT_ERR'] : []), ...(m.afterClose ? ['ERR_BNPOOL_CLOSED'] : [])];
        expect(allowed, `${label}: ${err.code} ${err.message}`).toContain(err.code);
        refused++;
      }
    }
  }
  // Both outcomes happened (the seeds give both; a search that only ever refused would prove little).
  expect(completed).toBeGreaterThan(TRIALS);
  expect(refused).toBeGreaterThan(0);
}, Math.max(60_000, TRIALS * 5_000));
