/**
 * What a call decides by whether the calling thread keeps a core beside the workers that hold
 * tasks (src/dispatch.ts, hasSpareCore): its tasks spin at their waits (SPIN_MS) before they
 * sleep, and its staged copies onto the pool overlap its tasks. Those workers are the call's own
 * and every other call's in flight on this thread's pools (src/pool-internals.ts, WorkerLoad),
 * read off the tasks each call posts (piscina's `run` wrapped: helpers/posting.ts).
 */
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { AbortError, BatchNorm, Pool } from '../dist/src/index.js';
import { injectFault, WorkerLoad } from '../dist/src/pool-internals.js';
import { randomTensor } from './helpers/data.js';
import { untilDispatched } from './helpers/pools.js';
import { posting, type Sent } from './helpers/posting.js';

const cores = availableParallelism();

/** What these tests read of a posted task. */
type Waits = Sent & { spinMs: number; awaitStaged: boolean };

/** The tasks of `bn`'s training forward of `x`, after one call to warm the pool up. */
async function tasksOf(bn: BatchNorm, x: Float32Array, shape: number[]): Promise<Waits[]> {
  await bn.forward(x, shape);
  return await posting(async () => { await bn.forward(x, shape); }) as Waits[];
}

describe('WorkerLoad', () => {
  it('counts each pool\'s tasks in flight, at most its threads, across pools', () => {
    const a = new WorkerLoad(2);
    const b = new WorkerLoad(3);
    // Other suites' pools in this process are idle between tests, but count from where they are.
    const base = a.busyWith(0);
    const settleA = [a.posted(), a.posted(), a.posted()];
    expect(a.busyWith(0)).toBe(base + 2);
    expect(a.busyWith(5)).toBe(base + 2);
    expect(b.busyWith(0)).toBe(base + 2);
    expect(b.busyWith(2)).toBe(base + 4);
    expect(b.busyWith(9)).toBe(base + 5);
    const settleB = b.posted();
    expect(a.busyWith(0)).toBe(base + 3);
    // A task settles once, however often it is counted settled; the third task still holds a's second worker.
    settleA[0]();
    settleA[0]();
    expect(a.busyWith(0)).toBe(base + 3);
    settleA[1]();
    expect(a.busyWith(0)).toBe(base + 2);
    expect(a.busyWith(1)).toBe(base + 3);
    settleA[2]();
    settleB();
    expect(a.busyWith(0)).toBe(base);
    expect(b.busyWith(0)).toBe(base);
  });
});

describe('waits', () => {
  it('spin only where the call leaves a core free beside its tasks', async () => {
    const shape = [8, 4, 32, 32];
    const n = 8 * 4 * 32 * 32;
    const x = randomTensor(shape, 'float32', 44) as Float32Array;
    // A task on every core, then one task: by the grain alone.
    const pools = [new Pool({ threads: cores, inlineThreshold: 0, grainSize: 1 }), new Pool({ threads: cores, inlineThreshold: 0, grainSize: n })];
    try {
      const spins: number[][] = [];
      for (const pool of pools) spins.push((await tasksOf(new BatchNorm(4, { pool }), x, shape)).map((t) => t.spinMs));
      expect(spins[0].length).toBeGreaterThan(0);
      expect(new Set(spins[0])).toEqual(new Set([0]));
      // One task: it spins (SPIN_MS) where there is a second core.
      expect(spins[1]).toHaveLength(1);
      expect(spins[1][0] > 0).toBe(cores > 1);
    } finally {
      await Promise.all(pools.map((p) => p.close()));
    }
  });

  // Other calls hold every core but one (counted as another pool's tasks in flight would be:
  // the pool's own count is checked below): a one-task call, which alone would spin and overlap
  // its copy in, does neither then.
  it.skipIf(cores < 2)('spin, and the copies in overlap the tasks, only where other calls in flight leave a core free', async () => {
    const pool = new Pool({ threads: 1, inlineThreshold: 0 });
    try {
      // Two pipeline chunks of plain-array input (PIPELINE_CHUNK_ELEMENTS, src/placement.ts): the
      // copy in overlaps the tasks, which wait for each channel staged (Task.awaitStaged).
      const shape = [2, 4, 512, 512];
      const x = randomTensor(shape, 'float32', 45) as Float32Array;
      const bn = new BatchNorm(4, { pool });
      const alone = await tasksOf(bn, x, shape);
      const others = new WorkerLoad(cores - 1);
      const settle = Array.from({ length: cores - 1 }, () => others.posted());
      let during: Waits[];
      try {
        during = await tasksOf(bn, x, shape);
      } finally {
        for (const settled of settle) settled();
      }
      const after = await tasksOf(bn, x, shape);

      for (const tasks of [alone, after]) {
        expect(tasks.map((t) => [t.spinMs > 0, t.awaitStaged])).toEqual([[true, true]]);
      }
      expect(during.map((t) => [t.spinMs, t.awaitStaged])).toEqual([[0, false]]);
    } finally {
      await pool.close();
    }
  });

  it('a pool counts its tasks while they are in flight, and no longer', async () => {
    const pool = new Pool({ threads: 1, inlineThreshold: 0 });
    const probe = new WorkerLoad(1);
    try {
      const shape = [8, 4, 32, 32];
      const bn = new BatchNorm(4, { pool });
      await bn.forward(randomTensor(shape, 'float32', 46), shape);
      const base = probe.busyWith(0);
      // A task stalled in its worker until the call is aborted: certainly in flight meanwhile.
      const ac = new AbortController();
      injectFault(pool, { kind: 'stall' });
      const held = bn.forward(randomTensor(shape, 'float32', 47), shape, { signal: ac.signal });
      await untilDispatched(pool, held);
      const during = probe.busyWith(0);
      ac.abort();
      expect(await held.catch((e: unknown) => e)).toBeInstanceOf(AbortError);
      expect([during, probe.busyWith(0)]).toEqual([base + 1, base]);
    } finally {
      await pool.close();
    }
  });
});
