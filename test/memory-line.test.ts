/**
 * Calls that wait for pool memory other calls hold (src/memory-line.ts): on a pool with a
 * `maxMemory`, concurrent calls from ordinary arrays each get the bits they get alone, where they
 * had failed with an OutOfMemoryError; a call that cannot fit even alone still fails; an abort
 * takes a call out of the line; a call parked on its all-reduce hook is not waited for.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  AbortError, BatchNorm, batchNorm, batchNormBackward, ChannelStats, type GradientSums, OutOfMemoryError, Pool,
} from '../dist/src/index.js';
import { MemoryLine } from '../dist/src/memory-line.js';
import { rng, randomTensor, sameBits } from './helpers/data.js';
import { expectRejection, stateOf } from './helpers/errors.js';
import { deferred, oneTurn } from './helpers/turns.js';

const pools: Pool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

function bounded(maxMemory: number, threads = 2): Pool {
  const pool = new Pool({ threads, maxMemory, inlineThreshold: 0 });
  pools.push(pool);
  return pool;
}

/** Resolves once `pool`'s line holds `n` calls (no timing: a turn of the event loop at a time). */
async function untilWaiting(pool: Pool, n: number): Promise<void> {
  for (let turns = 0; pool.memoryStats.waiting < n; turns++) {
    if (turns > 10_000) throw new Error(`no ${n} calls in line after 10000 turns; ${pool.memoryStats.waiting} there`);
    await oneTurn();
  }
}

/** A model of a memory of `capacity` units for MemoryLine's own rules: `take(k)` takes k or throws. */
function model(capacity: number) {
  const line = new MemoryLine();
  let free = capacity;
  const order: string[] = [];
  const take = (name: string, k: number) => (): number => {
    if (k > free) throw new OutOfMemoryError(`${name}: ${k} units, ${free} free`);
    free -= k;
    order.push(name);
    return k;
  };
  const give = (k: number): void => {
    free += k;
    line.freed();
  };
  return { line, take, give, order };
}

describe('MemoryLine', () => {
  it('takes at once while no call waits; the OutOfMemoryError stands where no other call holds blocks', () => {
    const { line, take } = model(10);
    const held = line.takeNow(take('a', 8))!;
    expect(held.value).toBe(8);
    // b does not fit while a holds its blocks: it must wait.
    expect(line.takeNow(take('b', 4))).toBeNull();
    held.release();
    held.release();
    // Nothing held by a call (a's 8 units are still gone: the user's, say): the error stands.
    expect(() => line.takeNow(take('c', 4))).toThrow(OutOfMemoryError);
    // Errors other than running out of memory stand at once.
    const other = line.takeNow(take('d', 1))!;
    expect(() => line.takeNow(() => { throw new RangeError('not memory'); })).toThrow(RangeError);
    other.release();
  });

  it('serves the line first come first served, waking the first at each free, and lets no new call pass it', async () => {
    const { line, take, give, order } = model(10);
    const a = line.takeNow(take('a', 9))!;
    const b = line.takeInTurn(take('b', 6), null);
    const c = line.takeInTurn(take('c', 1), null);
    await Promise.resolve();
    expect(line.waiting).toBe(2);
    // c would fit now (1 unit free), but b is before it; a new call goes behind both.
    expect(line.takeNow(take('d', 1))).toBeNull();
    give(2); // b (6) still does not fit: it waits on; c stays behind it
    await oneTurn();
    expect(order).toEqual(['a']);
    give(7); a.release();
    const heldB = await b;
    const heldC = await c;
    expect(order).toEqual(['a', 'b', 'c']);
    expect(line.waiting).toBe(0);
    heldB.release(); heldC.release();
  });

  it('a call in line fails once no other call holds blocks, and the next in line then tries', async () => {
    const { line, take, give, order } = model(10);
    const a = line.takeNow(take('a', 5))!;
    const big = line.takeInTurn(take('big', 20), null);
    const small = line.takeInTurn(take('small', 3), null);
    give(5); a.release();
    await expect(big).rejects.toThrow(OutOfMemoryError);
    (await small).release();
    expect(order).toEqual(['a', 'small']);
  });

  it('an abort takes a call out of the line at once, with an AbortError, and the next moves up', async () => {
    const { line, take, give, order } = model(10);
    const a = line.takeNow(take('a', 10))!;
    const controller = new AbortController();
    const b = line.takeInTurn(take('b', 10), controller.signal);
    const c = line.takeInTurn(take('c', 4), null);
    await Promise.resolve();
    controller.abort(new Error('shutting down'));
    const err = await b.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).cause).toEqual(new Error('shutting down'));
    expect(line.waiting).toBe(1);
    give(10); a.release();
    (await c).release();
    expect(order).toEqual(['a', 'c']);
    // A signal that fired before: refused at once, nothing taken.
    await expect(line.takeInTurn(take('e', 1), controller.signal)).rejects.toBeInstanceOf(AbortError);
    expect(order).toEqual(['a', 'c']);
    // An abort between a wake and the try it leads to (g holds blocks): that try fails, and the
    // wait after it is refused.
    const g = line.takeNow(take('g', 1))!;
    const late = new AbortController();
    const f = line.takeInTurn(take('f', 100), late.signal);
    await Promise.resolve();
    give(0);
    late.abort();
    await expect(f).rejects.toBeInstanceOf(AbortError);
    expect(line.waiting).toBe(0);
    expect(order).toEqual(['a', 'c', 'g']);
    g.release();
  });

  it('does not count a call parked on a hook as one that will free its blocks', async () => {
    const { line, take } = model(10);
    const a = line.takeNow(take('a', 8))!;
    let answer!: () => void;
    const hook = line.parked(new Promise<void>((resolve) => { answer = resolve; }));
    expect(() => line.takeNow(take('b', 4))).toThrow(OutOfMemoryError);
    answer();
    await hook;
    expect(line.takeNow(take('c', 4))).toBeNull();
    // A call already waiting for a's blocks when a parks: it fails then, not once the hook answers.
    const d = line.takeInTurn(take('d', 4), null);
    await Promise.resolve();
    expect(line.waiting).toBe(1);
    let answerAgain!: () => void;
    const again = line.parked(new Promise<void>((resolve) => { answerAgain = resolve; }));
    await expect(d).rejects.toThrow(OutOfMemoryError);
    answerAgain();
    await again;
    a.release();
  });
});

describe('concurrent calls on a bounded pool', () => {
  // [4, 4, 256, 256] float32 is 4 MiB; its smallest staging chunk, one channel of one sample, 256 KiB.
  const shape = [4, 4, 256, 256];
  const C = shape[1];

  it('each get the bits they get alone, where a pool too small for all at once had failed some', async () => {
    const pool = bounded(10 << 20);
    const rand = rng(41);
    const xs = Array.from({ length: 9 }, (_, i) => randomTensor(shape, 'float32', 100 + i) as Float32Array);
    const dy = randomTensor(shape, 'float32', 99) as Float32Array;
    const pixels = Uint8Array.from({ length: xs[0].length }, () => Math.floor(256 * rand()));
    const runningMean = Float64Array.from({ length: C }, () => rand() - 0.5);
    const runningVar = Float64Array.from({ length: C }, () => 0.5 + rand());
    const module = (training: boolean): BatchNorm => {
      const bn = new BatchNorm(C, { pool });
      bn.runningMean!.set(runningMean);
      bn.runningVar!.set(runningVar);
      if (!training) bn.eval();
      return bn;
    };
    // Each call resolves to every array it makes or changes.
    const calls: (() => Promise<ArrayLike<number>[]>)[] = [
      async () => { const bn = module(true); return [await bn.forward(xs[0], shape), bn.runningMean!, bn.runningVar!]; },
      async () => { const bn = module(true); return [await bn.forward(xs[1], shape), bn.runningMean!, bn.runningVar!]; },
      async () => [await module(false).forward(xs[2], shape)],
      async () => {
        const bn = module(true);
        const y = await bn.forward(xs[3], shape);
        const g = await bn.backward(dy);
        return [y, g.dx, g.dWeight!, g.dBias!];
      },
      async () => {
        const rm = runningMean.slice(), rv = runningVar.slice();
        const r = await batchNorm(xs[4], shape, { pool, training: true, runningMean: rm, runningVar: rv });
        return [r.y, r.mean, r.var, rm, rv];
      },
      async () => [(await batchNorm(xs[5], shape, { pool, runningMean, runningVar })).y],
      async () => {
        const g = await batchNormBackward(xs[6], dy, shape, { pool, mean: runningMean, var: runningVar, training: true });
        return [g.dx, g.dWeight, g.dBias];
      },
      async () => [await module(false).forward(pixels, shape)],
      async () => { const s = await ChannelStats.fromBatch(xs[7], shape, { pool }); return [s.count, s.mean(), s.variance()]; },
      async () => { const s = await ChannelStats.fromBatch(pixels, shape, { pool }); return [s.count, s.mean(), s.variance()]; },
    ];
    const together = await Promise.allSettled(calls.map((call) => call()));
    const failed = together.flatMap((r, i) => (r.status === 'rejected' ? [`call ${i}: ${String(r.reason)}`] : []));
    expect(failed).toEqual([]);
    expect(pool.memoryStats.maxBytes).toBe(10 << 20);
    for (let i = 0; i < calls.length; i++) {
      const alone = await calls[i]();
      const got = (together[i] as PromiseFulfilledResult<ArrayLike<number>[]>).value;
      expect(got.length).toBe(alone.length);
      got.forEach((array, j) => expect(sameBits(array, alone[j]), `call ${i}, array ${j}`).toBe(true));
    }
    expect(pool.memoryStats.waiting).toBe(0);
    expect(pool.memoryStats.liveBytes).toBe(0);
  });

  it('a call that cannot fit even alone fails with the OutOfMemoryError once the calls before it end, and changes nothing', async () => {
    const pool = bounded(4 << 20);
    // The user's arrays keep all but ~0.9 MiB: less than one channel of one sample of
    // [1, 2, 512, 512] (1 MiB), the smallest chunk it stages; a smaller call holds some of it.
    const kept = pool.alloc((3 << 20) / 4);
    const small = new BatchNorm(4, { pool });
    const big = new BatchNorm(2, { pool });
    const before = JSON.stringify(stateOf(big));
    const smallShape = [4, 4, 64, 64];
    const first = small.forward(randomTensor(smallShape, 'float32', 5), smallShape);
    const second = big.forward(randomTensor([1, 2, 512, 512], 'float32', 6), [1, 2, 512, 512]);
    await untilWaiting(pool, 1);
    const [a, b] = await Promise.allSettled([first, second]);
    expect(a.status).toBe('fulfilled');
    expect(b.status).toBe('rejected');
    expect((b as PromiseRejectedResult).reason).toBeInstanceOf(OutOfMemoryError);
    expect(JSON.stringify(stateOf(big))).toBe(before);
    expect(big.numBatchesTracked).toBe(0);
    pool.free(kept);
    // Alone with the memory free, it runs.
    await big.forward(randomTensor([1, 2, 512, 512], 'float32', 6), [1, 2, 512, 512]);
    expect(big.numBatchesTracked).toBe(1);
  });

  it('an abort takes a waiting call out of the line: an AbortError, its module unchanged, the calls behind it run', async () => {
    // The first call stages all of its 4 MiB; what is left is less than a chunk of 256 KiB.
    const pool = bounded((4 << 20) + (256 << 10));
    const x = (seed: number): Float32Array => randomTensor(shape, 'float32', seed) as Float32Array;
    const first = new BatchNorm(C, { pool });
    const waiting = new BatchNorm(C, { pool });
    const after = new BatchNorm(C, { pool });
    const before = JSON.stringify(stateOf(waiting));
    const controller = new AbortController();
    const calls = [
      first.forward(x(1), shape),
      waiting.forward(x(2), shape, { signal: controller.signal }),
      after.forward(x(3), shape),
    ];
    await untilWaiting(pool, 2);
    controller.abort();
    await expectRejection(calls[1], AbortError, 'ABORT_ERR', 'waited for pool memory');
    expect(JSON.stringify(stateOf(waiting))).toBe(before);
    await Promise.all([calls[0], calls[2]]);
    expect([first.numBatchesTracked, waiting.numBatchesTracked, after.numBatchesTracked]).toEqual([1, 0, 1]);
    expect(pool.memoryStats.liveBytes).toBe(0);
  });

  it('a call is not held waiting for a synced backward parked on its reduceGrads hook: it fails, as the hook may wait for it', async () => {
    const pool = bounded(5 << 20);
    const bigShape = [8, 4, 256, 256];
    const synced = new BatchNorm(C, { pool });
    const x = randomTensor(bigShape, 'float32', 7);
    // A forward with a reduceStats that returns the local statistics (one shard), then a backward
    // whose all-reduce waits for the test.
    await synced.forward(x, bigShape, { reduceStats: (local) => local });
    let inHook!: () => void;
    const hookCalled = new Promise<void>((resolve) => { inHook = resolve; });
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => { answer = resolve; });
    const backward = synced.backward(randomTensor(bigShape, 'float32', 8), {
      reduceGrads: async (local) => {
        inHook();
        await answered;
        return local;
      },
    });
    await hookCalled;
    const otherShape = [1, 2, 512, 512];
    const other = new BatchNorm(2, { pool });
    try {
      // The backward stages x and dy in chunks of 2 MiB each: less than 1 MiB is left, one
      // channel of one sample of [1, 2, 512, 512].
      expect(pool.memoryStats.liveBytes).toBeGreaterThan(4 << 20);
      await expectRejection(other.forward(randomTensor(otherShape, 'float32', 9), otherShape), OutOfMemoryError, 'ERR_BNPOOL_OUT_OF_MEMORY');
      expect(pool.memoryStats.waiting).toBe(0);
    } finally {
      answer();
    }
    const { dx } = await backward;
    expect(dx.length).toBe(x.length);
    await other.forward(randomTensor(otherShape, 'float32', 9), otherShape);
    expect(other.numBatchesTracked).toBe(1);
  });

  it('two synced backwards that all-reduce with each other, one waiting for the memory of the other: both settle', async () => {
    const pool = bounded(5 << 20);
    const [shapeA, shapeB] = [[8, 4, 256, 256], [2, 2, 512, 512]];
    const a = new BatchNorm(4, { pool });
    const b = new BatchNorm(2, { pool });
    await a.forward(randomTensor(shapeA, 'float32', 10), shapeA, { reduceStats: (local) => local });
    await b.forward(randomTensor(shapeB, 'float32', 11), shapeB, { reduceStats: (local) => local });
    // Each hook hands its sums to the other and waits for the other's: an all-reduce of two ranks
    // (channel counts differ, but neither gets that far).
    const fromA = deferred<GradientSums>();
    const fromB = deferred<GradientSums>();
    // a stages x and dy in chunks of 2 MiB each; b's smallest chunks (1 MiB each) do not fit beside
    // them: b waits in line until a parks on its hook, then fails.
    const backA = a.backward(randomTensor(shapeA, 'float32', 12), {
      reduceGrads: async (local) => { fromA.resolve(local); await fromB.promise; return local; },
    });
    const backB = b.backward(randomTensor(shapeB, 'float32', 13), {
      reduceGrads: async (local) => { fromB.resolve(local); await fromA.promise; return local; },
    });
    backB.catch((error: unknown) => fromB.reject(error));
    await untilWaiting(pool, 1);
    const [gotA, gotB] = await Promise.allSettled([backA, backB]);
    expect(gotB.status).toBe('rejected');
    expect((gotB as PromiseRejectedResult).reason).toBeInstanceOf(OutOfMemoryError);
    // a's hook rejects with b's error, and so does a's backward.
    expect(gotA.status).toBe('rejected');
    expect((gotA as PromiseRejectedResult).reason).toBe((gotB as PromiseRejectedResult).reason);
    expect(pool.memoryStats.liveBytes).toBe(0);
  });
});

const TRIALS = Number(process.env.BNPOOL_LINE_TRIALS ?? 6);
const SEED = Number(process.env.BNPOOL_LINE_SEED ?? 1);

describe('random concurrent calls on bounded pools', () => {
  // Calls of nine kinds from ordinary arrays (so that only calls hold the pool's memory), 2-8 at
  // once on a pool of 2-32 MiB, some aborted after a few turns: each one that is not aborted gives
  // the bits the same call gives alone on that pool afterwards, or fails alone with the same code.
  it(`${TRIALS} trials (seed ${SEED}; BNPOOL_LINE_TRIALS=n searches longer)`, async () => {
    const rand = rng(SEED);
    const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const kinds = ['train', 'eval', 'backward', 'fn-train', 'fn-eval', 'fn-backward', 'pixels', 'stats', 'pixel-stats'] as const;
    let compared = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const maxMemory = pick([2, 3, 4, 6, 8, 16, 32]) << 20;
      const pool = bounded(maxMemory, pick([1, 2]));
      const specs = Array.from({ length: int(2, 8) }, () => {
        const rank = int(2, 4);
        const layout = pick(['channels-first', 'channels-last'] as const);
        const C = int(1, 12);
        let shape: number[];
        do {
          const spatial = Array.from({ length: rank - 2 }, () => int(1, rank === 3 ? 20_000 : 300));
          shape = layout === 'channels-last' ? [int(2, 24), ...spatial, C] : [int(2, 24), C, ...spatial];
        } while (shape.reduce((a, b) => a * b) > 3e6);
        const dtype = pick(['float32', 'float32', 'float64'] as const);
        const kind = pick(kinds);
        const n = shape.reduce((a, b) => a * b);
        const floats = (value: () => number): Float32Array | Float64Array => (
          dtype === 'float64' ? Float64Array.from({ length: n }, value) : Float32Array.from({ length: n }, value)
        );
        const x = kind.startsWith('pixel') ? Uint8Array.from({ length: n }, () => int(0, 255)) : floats(() => 6 * rand() - 2);
        const dy = floats(() => rand() - 0.5);
        const mean = Float64Array.from({ length: C }, () => rand());
        const variance = Float64Array.from({ length: C }, () => 0.5 + rand());
        return { shape, layout, C, dtype, kind, x, dy, mean, variance, relu: rand() < 0.3, abortAfter: rand() < 0.15 ? int(0, 3) : -1 };
      });
      const run = async (s: (typeof specs)[number], signal?: AbortSignal): Promise<ArrayLike<number>[]> => {
        const { shape, layout } = s;
        const x = s.x as Float32Array;
        const module = (): BatchNorm => {
          const bn = new BatchNorm(s.C, { pool, layout, dtype: s.kind.startsWith('pixel') ? 'float32' : s.dtype, activation: s.relu ? 'relu' : null });
          bn.runningMean!.set(s.mean);
          bn.runningVar!.set(s.variance);
          return bn;
        };
        switch (s.kind) {
          case 'train': { const bn = module(); return [await bn.forward(x, shape, { signal }), bn.runningMean!, bn.runningVar!]; }
          case 'eval': { const bn = module(); bn.eval(); return [await bn.forward(x, shape, { signal })]; }
          case 'backward': {
            const bn = module();
            const y = await bn.forward(x, shape, { signal });
            const g = await bn.backward(s.dy, { signal });
            return [y, g.dx, g.dWeight!, g.dBias!];
          }
          case 'fn-train': {
            const runningMean = s.mean.slice(), runningVar = s.variance.slice();
            const r = await batchNorm(x, shape, { pool, training: true, runningMean, runningVar, layout, signal });
            return [r.y, r.mean, r.var, runningMean, runningVar];
          }
          case 'fn-eval': return [(await batchNorm(x, shape, { pool, runningMean: s.mean, runningVar: s.variance, layout, signal })).y];
          case 'fn-backward': {
            const g = await batchNormBackward(x, s.dy, shape, { pool, mean: s.mean, var: s.variance, training: true, layout, signal });
            return [g.dx, g.dWeight, g.dBias];
          }
          case 'pixels': { const bn = module(); bn.eval(); return [await bn.forward(s.x as Uint8Array, shape, { signal })]; }
          default: {
            const st = await ChannelStats.fromBatch(s.x as Float32Array | Uint8Array, shape, { pool, layout, signal });
            return [st.count, st.mean(), st.variance()];
          }
        }
      };
      const together = await Promise.allSettled(specs.map((s) => {
        const controller = new AbortController();
        const got = run(s, controller.signal);
        let turns = s.abortAfter;
        const tick = (): void => { if (turns-- > 0) setImmediate(tick); else if (s.abortAfter >= 0) controller.abort(); };
        tick();
        return got;
      }));
      for (const [i, s] of specs.entries()) {
        const label = `trial ${trial}, call ${i}: ${s.kind} ${s.dtype} ${s.layout} [${s.shape}], ${maxMemory >> 20} MiB`;
        const got = together[i];
        if (got.status === 'rejected' && (got.reason as { code?: string }).code === 'ABORT_ERR') {
          expect(s.abortAfter, label).toBeGreaterThanOrEqual(0);
          continue;
        }
        const [alone] = await Promise.allSettled([run(s)]);
        if (alone.status === 'rejected') {
          expect(got.status, label).toBe('rejected');
          expect((got as PromiseRejectedResult).reason.code, label).toBe(alone.reason.code);
          continue;
        }
        expect(got.status === 'rejected' ? String(got.reason) : 'fulfilled', label).toBe('fulfilled');
        const values = (got as PromiseFulfilledResult<ArrayLike<number>[]>).value;
        values.forEach((v, j) => expect(sameBits(v, alone.value[j]), `${label}, result ${j}`).toBe(true));
        compared++;
      }
      expect(pool.memoryStats.liveBytes, `trial ${trial}`).toBe(0);
    }
    expect(compared).toBeGreaterThan(TRIALS);
  }, Math.max(60_000, TRIALS * 2_000));
});
