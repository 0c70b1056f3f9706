/**
 * Failure semantics: a worker that dies or throws rejects that call with a typed error and leaves
 * the module unchanged, and the pool goes on serving; a task that starts late; memory that runs
 * out. abort.test.ts has the aborts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamFloor } from '../dist/src/floor.js';
import { BatchNorm, BnPoolError, ChannelStats, OutOfMemoryError, Pool, ShapeError, WorkerError } from '../dist/src/index.js';
import { faultPending, injectFault, poolInternals } from '../dist/src/pool-internals.js';
import { randomBytes } from './helpers/bytes.js';
import { randomTensor, randomVector, rng, sameBits } from './helpers/data.js';
import { trainedModule } from './helpers/errors.js';
import { type Run, wrappingRun } from './helpers/posting.js';
import { outputErrorRatio, referenceForward } from './helpers/reference.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

const shape = [8, 6, 30, 31];

async function expectCorrectCall(bn: BatchNorm, seed: number): Promise<void> {
  const x = randomTensor(shape, 'float32', seed);
  const ref = referenceForward(x, shape, { training: true });
  const y = await bn.forward(x, shape);
  expect(outputErrorRatio(y, x, shape, ref, null, 'float32')).toBeLessThanOrEqual(1);
}

describe('worker faults', () => {
  it('a worker killed mid-call rejects with ERR_BNPOOL_WORKER, changes nothing, and the next call succeeds', async () => {
    const { bn, snapshot } = await trainedModule(pool, shape);
    const before = snapshot();
    const out = new Float32Array(randomTensor(shape, 'float32', 2).length);
    injectFault(pool, { kind: 'exit', exitCode: 7 });
    const err = await bn.forward(randomTensor(shape, 'float32', 2), shape, { out }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as BnPoolError).code).toBe('ERR_BNPOOL_WORKER');
    expect((err as Error).message).toContain('worker exited with code: 7');
    expect(snapshot()).toBe(before);
    expect(bn.numBatchesTracked).toBe(1);
    await expectCorrectCall(bn, 3);
    expect(bn.numBatchesTracked).toBe(2);
  });

  it("a worker's typed error arrives with name, code and message intact", async () => {
    const { bn, snapshot } = await trainedModule(pool, shape);
    const before = snapshot();
    injectFault(pool, { kind: 'throw', name: 'ShapeError', code: 'ERR_BNPOOL_SHAPE', message: 'injected: shape trouble' });
    const err = await bn.forward(randomTensor(shape, 'float32', 4), shape).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as BnPoolError).name).toBe('ShapeError');
    expect((err as BnPoolError).code).toBe('ERR_BNPOOL_SHAPE');
    expect((err as Error).message).toBe('injected: shape trouble');
    expect(snapshot()).toBe(before);
    await expectCorrectCall(bn, 5);
  });

  it("a worker's plain error becomes a WorkerError that keeps its message", async () => {
    const { bn, snapshot } = await trainedModule(pool, shape);
    const before = snapshot();
    injectFault(pool, { kind: 'throw', name: 'TypeError', message: 'injected: boom' });
    const err = await bn.forward(randomTensor(shape, 'float32', 6), shape).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as Error).message).toContain('TypeError: injected: boom');
    expect(snapshot()).toBe(before);
    await expectCorrectCall(bn, 7);
  });

  it('a kernel that throws inline (no worker) fails the call as a worker\'s would, and says where it ran', async () => {
    const inline = new Pool({ threads: 2 }); // [8, 6, 30, 31] is under the inline threshold
    try {
      const { bn, snapshot } = await trainedModule(inline, shape);
      const before = snapshot();
      injectFault(inline, { kind: 'throw', name: 'ShapeError', code: 'ERR_BNPOOL_SHAPE', message: 'injected: shape trouble' });
      const typed = await bn.forward(randomTensor(shape, 'float32', 8), shape).catch((e: unknown) => e);
      expect(typed).toBeInstanceOf(ShapeError);
      expect([(typed as BnPoolError).code, (typed as Error).message]).toEqual(['ERR_BNPOOL_SHAPE', 'injected: shape trouble']);
      expect(faultPending(inline)).toBe(false);
      injectFault(inline, { kind: 'throw', name: 'RangeError', message: 'injected: memory access out of bounds' });
      const plain = await bn.forward(randomTensor(shape, 'float32', 9), shape).catch((e: unknown) => e);
      expect(plain).toBeInstanceOf(WorkerError);
      expect((plain as Error).message).toBe('the kernels failed on the calling thread, where the call ran inline: RangeError: injected: memory access out of bounds');
      expect(((plain as Error).cause as Error).name).toBe('RangeError');
      expect(snapshot()).toBe(before);
      // A fault of another kind waits for a task a worker runs: none here.
      injectFault(inline, { kind: 'exit', exitCode: 3 });
      const x = randomTensor(shape, 'float32', 10);
      const ref = referenceForward(x, shape, { training: true });
      expect(outputErrorRatio(await bn.forward(x, shape), x, shape, ref, null, 'float32')).toBeLessThanOrEqual(1);
      expect(faultPending(inline)).toBe(true);
    } finally {
      await inline.close();
    }
  });
});

describe("piscina's run throwing where it posts a task", () => {
  /**
   * Runs `call` with piscina's `run` (every pool's: the prototype's) throwing at once, as a
   * `postMessage` that fails would, on the call's second task; every other task is posted, and
   * whether each has settled is in `settled`. Resolves to what the call rejected with and
   * whether every posted task had settled by then.
   */
  async function refusingSecond(call: () => Promise<unknown>): Promise<{ err: unknown; allSettled: boolean; posted: number }> {
    const settled: boolean[] = [];
    let tasks = 0;
    return wrappingRun((task, options, run) => {
      if (++tasks === 2) throw new Error('injected: post refused');
      const i = settled.push(false) - 1;
      const p = run(task, options);
      p.then(() => { settled[i] = true; }, () => { settled[i] = true; });
      return p;
    }, async () => {
      const err = await call().then(() => null, (e: unknown) => e);
      return { err, allSettled: settled.every(Boolean), posted: tasks };
    });
  }

  function expectRefused(got: { err: unknown; allSettled: boolean; posted: number }): void {
    expect(got.posted).toBeGreaterThanOrEqual(2);
    expect(got.err).toBeInstanceOf(WorkerError);
    expect((got.err as BnPoolError).code).toBe('ERR_BNPOOL_WORKER');
    expect((got.err as Error).message).toContain('injected: post refused');
    // The call settles after the tasks it did post: their blocks are not freed under them.
    expect(got.allSettled).toBe(true);
    // No task counted in flight (the spare-core and grain-size decisions read it).
    expect(poolInternals(pool).load.busyWith(0)).toBe(0);
  }

  it('a training forward rejects with a WorkerError, changes nothing, and the next call succeeds', async () => {
    const { bn, snapshot } = await trainedModule(pool, shape);
    const before = snapshot();
    expectRefused(await refusingSecond(() => bn.forward(randomTensor(shape, 'float32', 41), shape)));
    expect(snapshot()).toBe(before);
    await expectCorrectCall(bn, 42);
  });

  it('an 8-bit forward: the same, after every task it posted has settled', async () => {
    const C = 3;
    const bytesShape = [4, C, 64, 65];
    const bn = new BatchNorm(C, { pool }).eval();
    bn.runningMean!.set([100, 120, 90]);
    bn.runningVar!.set([900, 1600, 400]);
    const x = randomBytes(4 * C * 64 * 65, 43);
    const want = await bn.forward(x, bytesShape);
    expectRefused(await refusingSecond(() => bn.forward(x, bytesShape)));
    expect(sameBits(await bn.forward(x, bytesShape), want)).toBe(true);
  });

  it('a floor pass: the same', async () => {
    const a = pool.alloc(1 << 18);
    const b = pool.alloc(1 << 18);
    a.set(randomVector(1 << 18, 'float32', 44, -2, 2));
    expectRefused(await refusingSecond(() => streamFloor(pool, a, b)));
    await streamFloor(pool, a, b);
    // The floor's y = 1.5x + 0.25, in float32.
    for (const i of [0, 12345, (1 << 18) - 1]) expect(b[i]).toBe(Math.fround(Math.fround(1.5 * a[i]) + 0.25));
    pool.free(a);
    pool.free(b);
  });

  const rounds = Number(process.env.BNPOOL_REFUSALS ?? 40);
  // 300 phased rounds took 37 s alone and ran past 60 s beside CI.
  const refusalTimeout = Math.max(60_000, rounds * 1_000);

  /**
   * Rounds of one to six concurrent calls of every kind on `on`, run first as they are and then
   * with 8% of the posts refused at random, half by a throw and half by a rejected promise: each
   * call must give the same bits or fail with a WorkerError that names the refusal, and the pool
   * end with nothing held. BNPOOL_REFUSALS=300 searches longer; BNPOOL_REFUSALS_SEED draws others.
   */
  async function refusalRounds(on: Pool, shapes: number[][], seed: number): Promise<void> {
    const rand = rng(Number(process.env.BNPOOL_REFUSALS_SEED ?? 1) * 1000 + seed);
    let refusing = false;
    let refused = 0;
    const sometimesRefusing = (task: unknown, options: object | undefined, run: Run): Promise<unknown> => {
      if (refusing) {
        const r = rand();
        if (r < 0.08) {
          refused++;
          if (r < 0.04) throw new Error('injected: refused at once');
          return Promise.reject(new Error('injected: refused later'));
        }
      }
      return run(task, options);
    };
    const kinds = ['training', 'eval', '8-bit', 'statistics', 'floor'] as const;
    type Call = { kind: typeof kinds[number]; shape: number[]; x: Float32Array; dy: Float32Array };
    const calls = async ({ kind, shape, x, dy }: Call): Promise<ArrayLike<number>[]> => {
      const C = shape[1];
      if (kind === 'training') {
        const bn = new BatchNorm(C, { pool: on });
        const y = await bn.forward(x, shape);
        const { dx } = await bn.backward(dy);
        return [y, dx, bn.runningMean!, bn.runningVar!];
      }
      if (kind === 'eval') return [await new BatchNorm(C, { pool: on }).eval().forward(x, shape)];
      if (kind === '8-bit') return [await new BatchNorm(C, { pool: on }).eval().forward(Uint8Array.from(x, (v) => 40 * v), shape)];
      if (kind === 'statistics') {
        const stats = await ChannelStats.fromBatch(x, shape, { pool: on });
        return [stats.mean(), stats.variance()];
      }
      const [a, b] = [on.alloc(x.length), on.alloc(x.length)];
      try {
        a.set(x);
        await streamFloor(on, a, b);
        return [b.slice()];
      } finally {
        on.free(a);
        on.free(b);
      }
    };
    const live = on.memoryStats.liveBytes;
    const outcomes = { ok: 0, failed: 0 };
    await wrappingRun(sometimesRefusing, async () => {
      for (let round = 0; round < rounds; round++) {
        const made = Array.from({ length: 1 + Math.floor(rand() * 6) }, (): Call => {
          const shape = shapes[Math.floor(rand() * shapes.length)];
          const n = shape.reduce((p, d) => p * d, 1);
          return { kind: kinds[Math.floor(rand() * kinds.length)], shape, x: randomVector(n, 'float32', 1000 * round + n, 3, 5) as Float32Array, dy: randomVector(n, 'float32', n, -1, 1) as Float32Array };
        });
        const want = await Promise.all(made.map(calls));
        refusing = true;
        const got = await Promise.allSettled(made.map(calls));
        refusing = false;
        got.forEach((g, i) => {
          const label = `round ${round}, ${made[i].kind} ${made[i].shape}`;
          if (g.status === 'rejected') {
            outcomes.failed++;
            expect(g.reason, label).toBeInstanceOf(WorkerError);
            expect((g.reason as Error).message, label).toMatch(/injected: refused (at once|later)/);
            return;
          }
          outcomes.ok++;
          g.value.forEach((values, j) => expect(sameBits(values, want[i][j]), `${label}, result ${j}`).toBe(true));
        });
      }
    });
    // Both outcomes seen, and nothing left held: blocks, tasks in flight.
    expect(outcomes.ok).toBeGreaterThan(0);
    expect(outcomes.failed).toBeGreaterThan(0);
    expect(refused).toBeGreaterThanOrEqual(outcomes.failed);
    expect(on.memoryStats.liveBytes).toBe(live);
    expect(poolInternals(on).load.busyWith(0)).toBe(0);
  }

  it('refusals at random, at once and later, under concurrent calls of every kind: typed failures or the bits of a run without them', async () => {
    await refusalRounds(pool, [[8, 6, 30, 31], [4, 3, 64, 70], [64, 33], [2, 5, 9, 9, 9], [16, 40, 20], [3, 2, 200, 200]], 1);
  }, refusalTimeout);

  it('the same on three workers with cacheBytes given, where training goes a group of channels at a time (phased)', async () => {
    // [8, 5, 100, 101] float32 goes in six groups there (planPhases; phased.test.ts has it).
    const phased = new Pool({ threads: 3, inlineThreshold: 0, grainSize: 1, cacheBytes: 400_000 });
    try {
      await refusalRounds(phased, [[8, 5, 100, 101], [4, 3, 100, 101], [61, 8, 9, 10], [4, 3, 7, 5743]], 2);
    } finally {
      await phased.close();
    }
  }, refusalTimeout);
});

describe('work claimed from counters on the shared memory, each task its own range first', () => {
  // One task of the call starts only once the others have claimed every item of the first pass,
  // its own range's included (as if its worker had lost its core): the call still completes, with
  // the same bits. Were a range left to its own task, the others would wait for it (here: the
  // 30 s fault limit).
  const cases: [string, number[], 'train' | 'eval' | 'backward', { cacheBytes?: number }][] = [
    ['fused', [4, 8, 32, 32], 'train', {}],
    ['split, plane mode', [4, 3, 64, 64], 'train', {}],
    ['split, row mode', [8, 6, 30, 31], 'train', {}],
    ['phased', [16, 3, 64, 64], 'train', { cacheBytes: 16 * 4096 * 4 }],
    ['phased, row mode', [61, 8, 9, 10], 'train', { cacheBytes: 100_000 }],
    ['phased, row mode, backward', [61, 8, 9, 10], 'backward', { cacheBytes: 100_000 }],
    ['normalize (eval)', [8, 6, 30, 31], 'eval', {}],
    ['backward (split)', [8, 6, 30, 31], 'backward', {}],
  ];
  for (const [label, shape, mode, options] of cases) {
    it(`${label}: a task that starts after every item was claimed leaves the call complete and the same`, async () => {
      const p = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, ...options });
      const C = shape[1];
      const x = randomTensor(shape, 'float32', 21);
      const dy = randomTensor(shape, 'float32', 22);
      const run = async (late: boolean): Promise<Float32Array[]> => {
        const bn = new BatchNorm(C, { pool: p });
        if (mode === 'eval') bn.eval();
        if (mode === 'backward') await bn.forward(x, shape);
        if (late) injectFault(p, { kind: 'late' });
        if (mode === 'backward') {
          const g = await bn.backward(dy);
          return [g.dx as Float32Array, Float32Array.from(g.dWeight!), Float32Array.from(g.dBias!)];
        }
        const y = await bn.forward(x, shape);
        return [y as Float32Array, Float32Array.from(bn.runningMean!), Float32Array.from(bn.runningVar!)];
      };
      const want = await run(false);
      const got = await run(true);
      for (let i = 0; i < want.length; i++) expect(sameBits(got[i], want[i])).toBe(true);
      await p.close();
    }, 10_000);
  }
});

describe('out of memory', () => {
  it('alloc beyond maxMemory throws OutOfMemoryError', async () => {
    const small = new Pool({ threads: 1, maxMemory: 262144, initialMemory: 131072 });
    expect(() => small.alloc(1e6)).toThrow(OutOfMemoryError);
    const a = small.alloc(1000);
    expect(a.length).toBe(1000);
    small.free(a);
    await small.close();
  });

  // README, "What copies": a staging chunk holds at least one row group of the grid, once for each
  // array staged (x; for backward dy and the ReLU mask too). Where that does not fit, the call is
  // refused before any work, with the unit and the arrays named, and leaves the pool as it was.
  for (const c of [
    { mode: 'plane', shape: [1, 2, 96, 999], unit: 'one channel of 1 sample (95904 elements, 767232 bytes)' },
    { mode: 'row', shape: [2, 1207, 64], unit: '1 row of every channel (77248 elements, 617984 bytes)' },
  ]) {
    it(`${c.mode} mode: a backward staging x, dy and the ReLU mask through a 2 MB pool is refused; x and dy alone run`, async () => {
      const small = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, maxMemory: 1 << 21, initialMemory: 1 << 17 });
      const big = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
      const C = c.shape[1];
      const x = randomTensor(c.shape, 'float64', 11);
      const dy = randomTensor(c.shape, 'float64', 12);
      const relu = new BatchNorm(C, { pool: small, dtype: 'float64', activation: 'relu' });
      await relu.forward(x, c.shape);
      const live = small.memoryStats.liveBytes;
      const err = await relu.backward(dy).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OutOfMemoryError);
      expect((err as BnPoolError).code).toBe('ERR_BNPOOL_OUT_OF_MEMORY');
      expect((err as Error).message).toContain(
        `cannot stage shape ${JSON.stringify(c.shape)}: its smallest chunk, ${c.unit}, is needed once for each of x, dy, the ReLU mask`,
      );
      expect(small.memoryStats.liveBytes).toBe(live);
      // Without the mask the same chunk fits twice: the same bits as on a pool with room.
      const results: Float64Array[][] = [];
      for (const p of [big, small]) {
        const bn = new BatchNorm(C, { pool: p, dtype: 'float64' });
        const y = await bn.forward(x, c.shape) as Float64Array;
        const g = await bn.backward(dy);
        results.push([y, g.dx as Float64Array, g.dWeight as Float64Array, g.dBias as Float64Array]);
      }
      for (let i = 0; i < 4; i++) expect(sameBits(results[1][i], results[0][i])).toBe(true);
      await Promise.all([small.close(), big.close()]);
    });
  }

  it('three staged arrays whose share of the free memory is not a multiple of 64 bytes still fit: the chunks are cut smaller', async () => {
    // Found by the random cases (seed 9012): a ReLU backward staging x, dy and the mask through a
    // 2 MB pool took a third of the free bytes per array, rounded each part up to 64 bytes, and
    // asked for 64 bytes more than there were: an OutOfMemoryError for a call whose unit (a row
    // group of 3 channels) is a few KB.
    const shape = [6, 107, 107, 3];
    const small = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, maxMemory: 1 << 21, initialMemory: 1 << 17 });
    const big = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const x = randomTensor(shape, 'float32', 13);
    const dy = randomTensor(shape, 'float32', 14);
    const results: Float32Array[][] = [];
    for (const p of [big, small]) {
      const bn = new BatchNorm(3, { pool: p, layout: 'channels-last', activation: 'relu' }).eval();
      bn.runningMean!.set([0.1, -0.2, 0.3]);
      const y = await bn.forward(x, shape) as Float32Array;
      const g = await bn.backward(dy);
      results.push([y, g.dx as Float32Array, g.dWeight as Float32Array, g.dBias as Float32Array]);
    }
    for (let i = 0; i < 4; i++) expect(sameBits(results[1][i], results[0][i])).toBe(true);
    expect(results[1][1].some((v) => v !== 0)).toBe(true);
    expect(small.memoryStats.liveBytes).toBe(0);
    await Promise.all([small.close(), big.close()]);
  });

  it('an output off the pool is staged where x is on it, and a refusal names it: the output, or dy with dx written over it', async () => {
    // Found by the random cases (seed 138): x and out on a 2 MB pool, an eval forward, then a
    // backward, whose dx (a new array) then needed a chunk of its own beside dy's although x needs
    // none. The refusal named x, which was not staged. Since 2026-12-08 dx goes over dy's copy.
    const small = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, maxMemory: 1 << 21, initialMemory: 1 << 17 });
    const big = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    const refusal = async (call: () => Promise<unknown>, names: string): Promise<void> => {
      const live = small.memoryStats.liveBytes;
      const err = await call().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(OutOfMemoryError);
      const { message } = err as Error;
      expect(message.slice(message.indexOf('is needed'))).toBe(`is needed once for each of ${names}`);
      expect(small.memoryStats.liveBytes).toBe(live);
    };

    // Forward: x of 1.12 MB on the pool leaves less than its output's one-channel chunk.
    const wide = [1, 1, 140_000];
    const xWide = small.alloc(140_000, 'float64');
    xWide.set(randomTensor(wide, 'float64', 15));
    const training = new BatchNorm(1, { pool: small, dtype: 'float64' });
    await refusal(() => training.forward(xWide, wide, { out: new Float64Array(140_000) }), 'the output');
    await refusal(() => training.forward(xWide, wide), 'the output');
    // Refused before any work: the running statistics and the count as they were.
    expect([training.numBatchesTracked, training.runningMean![0], training.runningVar![0]]).toEqual([0, 0, 1]);
    small.free(xWide);

    // Backward: x and out on the pool (1.02 MB, leaving 1.08); dy needs 0.51 MB, and dx is written
    // over it there (dx and dy in chunks of their own, 1.02 MB, with the call's scratch, had been
    // refused).
    const shape = [1, 1, 18, 15, 236];
    const n = 18 * 15 * 236;
    const x0 = randomTensor(shape, 'float64', 16);
    const dy = randomTensor(shape, 'float64', 17);
    const x = small.alloc(n, 'float64');
    x.set(x0);
    const out = small.alloc(n, 'float64');
    const bn = new BatchNorm(1, { pool: small, dtype: 'float64' }).eval();
    bn.runningMean![0] = 0.25;
    await bn.forward(x, shape, { out });
    const g = await bn.backward(dy);
    // With 0.6 MB more held, not even dy's chunk fits: the refusal names it, dx there with it.
    const held = small.alloc(75_000, 'float64');
    await refusal(() => bn.backward(dy), 'dy (dx in place there)');
    small.free(held);
    small.free(out);
    const ref = new BatchNorm(1, { pool: big, dtype: 'float64' }).eval();
    ref.runningMean![0] = 0.25;
    await ref.forward(x0, shape);
    const want = await ref.backward(dy);
    expect(sameBits(g.dx as Float64Array, want.dx as Float64Array)).toBe(true);
    expect(sameBits(g.dWeight as Float64Array, want.dWeight as Float64Array)).toBe(true);
    expect(g.dx.some((v) => v !== 0)).toBe(true);
    small.free(x);
    expect(small.memoryStats.liveBytes).toBe(0);
    await Promise.all([small.close(), big.close()]);
  });
});
