/**
 * Turns of the event loop between inline calls made at once (src/turns.ts): a burst of
 * small calls, awaited together, lets the event loop turn once INLINE_TURN_MS passed since the
 * first of them, each with the bits it gives alone; calls started together run one at a time,
 * each as the one before ends; a call that waits on a caller's hook holds none behind it past a
 * turn; a lone call takes no turn, nor does a synced forward between its two parts; an abort
 * while a call waits stops it before any work. Calls on the workers take turns for their steps on
 * the calling thread: starting, each slice of a copy, posting (stepDue).
 */
import { Piscina } from 'piscina';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AbortError, BatchNorm, batchNorm, ChannelStats, type GradientSums, Pool } from '../dist/src/index.js';
import { INLINE_TURN_MS, stepDue } from '../dist/src/turns.js';
import { randomTensor, rng, sameBits } from './helpers/data.js';
import { deferred, oneTurn, turnsOf } from './helpers/turns.js';

let pool: Pool;
beforeAll(async () => {
  pool = new Pool({ threads: 2 });
  await pool.ready;
});
afterAll(() => pool.close());

describe('inline calls made at once', () => {
  it('let the event loop turn, each with the bits it gives alone', async () => {
    // 64 RGB images of 224x224 from a decoder (channels last, 8-bit) to a model's CHW input, and 16
    // training forwards of four modules: all inline (under the default threshold).
    const image = [1, 224, 224, 3];
    const pixels = image.reduce((a, b) => a * b);
    const rand = rng(3);
    const images = Array.from({ length: 64 }, () => Uint8Array.from({ length: pixels }, () => Math.floor(256 * rand())));
    const runningMean = Float64Array.from([123.675, 116.28, 103.53]);
    const runningVar = Float64Array.from([58.395 ** 2, 57.12 ** 2, 57.375 ** 2]);
    const shape = [4, 3, 128, 128];
    const xs = Array.from({ length: 16 }, (_, i) => randomTensor(shape, 'float32', 10 + i) as Float32Array);
    expect(pixels).toBeLessThanOrEqual(pool.inlineThreshold);
    expect(xs[0].length).toBeLessThanOrEqual(pool.inlineThreshold);
    const modules = () => Array.from({ length: 4 }, () => new BatchNorm(3, { pool }));
    const burst = (mods: BatchNorm[]) => [
      ...images.map((x) => batchNorm(x, image, {
        pool, runningMean, runningVar, layout: 'channels-last', outLayout: 'channels-first',
      }).then((r) => [r.y])),
      ...xs.map((x, i) => mods[i % 4].forward(x, shape).then((y) => [y, mods[i % 4].runningMean!])),
    ];
    await oneTurn();
    const { value: together, turns } = await turnsOf(() => Promise.all(burst(modules())));
    // 12.8M elements (80 calls, each tens of µs at least): far over INLINE_TURN_MS. Without the
    // turns, none (10-13 ms in one piece here).
    expect(turns).toBeGreaterThanOrEqual(1);
    // One at a time, each after a turn: the same bits (a module's calls run in call order either way).
    const alone: ArrayLike<number>[][] = [];
    for (const x of images) {
      await oneTurn();
      alone.push([(await batchNorm(x, image, { pool, runningMean, runningVar, layout: 'channels-last', outLayout: 'channels-first' })).y]);
    }
    const fresh = modules();
    for (const [i, x] of xs.entries()) {
      await oneTurn();
      const y = await fresh[i % 4].forward(x, shape);
      alone.push([y, fresh[i % 4].runningMean!.slice()]);
    }
    // The outputs, and each module's running mean after its last call.
    together.forEach((arrays, i) => expect(sameBits(arrays[0], alone[i][0]), `call ${i}`).toBe(true));
    for (let m = 0; m < 4; m++) expect(sameBits(fresh[m].runningMean!, together[64 + 12 + m][1]), `module ${m}`).toBe(true);
  });

  it('let the event loop turn once INLINE_TURN_MS passed, however few their elements', async () => {
    // 400 evals of 4096 elements queued on one module: 1.6M elements (under the count of
    // 2,097,152 that held them before the clock, with no turn), but each call takes microseconds
    // of the calling thread (over 2.5 µs on any machine this runs on), so the calls run for over
    // INLINE_TURN_MS and at least one waits for a turn.
    const shape = [16, 16, 16];
    const calls = 400;
    expect(INLINE_TURN_MS).toBeLessThanOrEqual(1);
    const x = randomTensor(shape, 'float32', 30) as Float32Array;
    const bn = new BatchNorm(16, { pool }).eval();
    const alone = await bn.forward(x, shape);
    await oneTurn();
    const { value: ys, turns } = await turnsOf(() => Promise.all(Array.from({ length: calls }, () => bn.forward(x, shape))));
    expect(turns).toBeGreaterThanOrEqual(1);
    ys.forEach((y, i) => expect(sameBits(y, alone), `call ${i}`).toBe(true));
  });

  it('started together, run one at a time: they stage on the private memory one after another', async () => {
    // Eight training forwards of eight modules from ordinary arrays, started at once after a
    // turn. Each stages its arrays on the pool's private memory for inline calls, which grows to
    // what the calls running at once hold: no more than one call's here (at times two at once on
    // 6eaacef's build, all eight on 6ceb9db's, where they passed the check together and then ran
    // interleaved). A fresh pool: that memory never shrinks.
    const fresh = new Pool({ threads: 2 });
    try {
      const shape = [1, 3, 224, 224];
      const xs = Array.from({ length: 8 }, (_, i) => randomTensor(shape, 'float32', 60 + i) as Float32Array);
      const alone = await new BatchNorm(3, { pool: fresh }).forward(xs[0], shape);
      const one = fresh.memoryStats.privateByteLength;
      expect(one).toBeGreaterThan(0);
      await oneTurn();
      const ys = await Promise.all(xs.map((x) => new BatchNorm(3, { pool: fresh }).forward(x, shape)));
      expect(fresh.memoryStats.privateByteLength).toBe(one);
      expect(sameBits(ys[0], alone)).toBe(true);
    } finally {
      await fresh.close();
    }
  });

  it('started together and within INLINE_TURN_MS, each runs as the one before ends, with no turn', async () => {
    // Four evals of 32 elements, with the clock held still (the module reads performance.now()
    // and nothing else of the time): the second waits for the first to finish, not for a turn,
    // and so on. With the clock running, a first call still compiling can take over a
    // millisecond here.
    const shape = [2, 16];
    const xs = Array.from({ length: 4 }, (_, i) => randomTensor(shape, 'float32', 70 + i) as Float32Array);
    const runningMean = Float64Array.from({ length: 16 }, (_, c) => 0.1 * c);
    const runningVar = Float64Array.from({ length: 16 }, (_, c) => 1 + 0.05 * c);
    await batchNorm(xs[0], shape, { pool, runningMean, runningVar });
    await oneTurn();
    const still = vi.spyOn(performance, 'now').mockReturnValue(performance.now());
    try {
      const { turns } = await turnsOf(() => Promise.all(xs.map((x) => batchNorm(x, shape, { pool, runningMean, runningVar }))));
      expect(turns).toBe(0);
    } finally {
      still.mockRestore();
    }
  });

  it('a call admitted waits on nothing behind it: two synced backwards all-reducing with each other both settle', async () => {
    // a's backward is admitted and parks on its reduceGrads hook, which waits for b's sums; b's
    // backward, behind a's in the inline line, is admitted at the next turn and answers it.
    const shape = [4, 3, 16, 16];
    const a = new BatchNorm(3, { pool });
    const b = new BatchNorm(3, { pool });
    await a.forward(randomTensor(shape, 'float32', 50), shape, { reduceStats: (local) => local });
    await b.forward(randomTensor(shape, 'float32', 51), shape, { reduceStats: (local) => local });
    const fromA = deferred<GradientSums>();
    const fromB = deferred<GradientSums>();
    const sum = (p: GradientSums, q: GradientSums): GradientSums => ({
      sumDy: Float64Array.from(p.sumDy, (v, c) => v + q.sumDy[c]),
      sumDyXhat: Float64Array.from(p.sumDyXhat, (v, c) => v + q.sumDyXhat[c]),
    });
    const locals: GradientSums[] = [];
    const [gotA, gotB] = await Promise.all([
      a.backward(randomTensor(shape, 'float32', 52), {
        reduceGrads: async (local) => { locals[0] = local; fromA.resolve(local); return sum(local, await fromB.promise); },
      }),
      b.backward(randomTensor(shape, 'float32', 53), {
        reduceGrads: async (local) => { locals[1] = local; fromB.resolve(local); return sum(await fromA.promise, local); },
      }),
    ]);
    // Each hook got its own shard's sums (dBias and dWeight stay those), and each dx is finite.
    for (const [i, got] of [gotA, gotB].entries()) {
      expect(got.dBias!.constructor.name, `module ${i}`).toBe('Float32Array');
      expect(sameBits(got.dBias!, Float32Array.from(locals[i].sumDy)), `module ${i}`).toBe(true);
      expect(sameBits(got.dWeight!, Float32Array.from(locals[i].sumDyXhat)), `module ${i}`).toBe(true);
      expect(Array.from(got.dx).every(Number.isFinite), `module ${i}`).toBe(true);
    }
  }, 10_000);

  it('the second part of a synced forward never waits for a turn: the call was admitted at its start', async () => {
    // The hook holds the calling thread 2 ms (a caller's own work between the two parts), past
    // INLINE_TURN_MS since the call's statistics were admitted; the normalization still runs at
    // once. x and out on the pool: no copy, which would pause between its slices.
    const shape = [4, 3, 32, 32];
    const x = pool.alloc(shape.reduce((a, b) => a * b));
    x.set(randomTensor(shape, 'float32', 40));
    const out = pool.alloc(x.length);
    try {
      const synced = (): Promise<unknown> => new BatchNorm(3, { pool }).forward(x, shape, {
        out, reduceStats: (local) => { busy(2 * INLINE_TURN_MS); return local; },
      });
      await synced();
      const alone = out.slice();
      await oneTurn();
      const { turns } = await turnsOf(synced);
      expect(turns).toBe(0);
      expect(sameBits(out, alone)).toBe(true);
    } finally {
      pool.free(x);
      pool.free(out);
    }
  });

  it('a lone inline call takes no turn', async () => {
    const shape = [8, 16, 32, 32];
    const x = randomTensor(shape, 'float32', 5);
    const bn = new BatchNorm(16, { pool });
    for (let i = 0; i < 3; i++) {
      await oneTurn();
      const { turns } = await turnsOf(() => bn.forward(x, shape));
      expect(turns).toBe(0);
    }
  });

  it('an abort while a call waits for its turn stops it before any work', async () => {
    // A synced backward, admitted, waits on its reduceGrads hook until the second turn: the two
    // calls behind it wait in line; at the first turn the third's signal fires (an immediate set
    // before the calls, so it runs first), and the turn admits the second.
    const shape = [4, 3, 16, 16];
    const held = new BatchNorm(3, { pool });
    await held.forward(randomTensor(shape, 'float32', 20), shape, { reduceStats: (local) => local });
    const mods = [new BatchNorm(3, { pool }), new BatchNorm(3, { pool })];
    const xs = [randomTensor(shape, 'float32', 21), randomTensor(shape, 'float32', 22)];
    await oneTurn();
    const controller = new AbortController();
    setImmediate(() => controller.abort());
    const order: number[] = [];
    const settled = await Promise.allSettled([
      held.backward(randomTensor(shape, 'float32', 23), { reduceGrads: async (local) => { await oneTurn(); await oneTurn(); return local; } }),
      mods[0].forward(xs[0], shape),
      mods[1].forward(xs[1], shape, { signal: controller.signal }),
    ].map((call, i) => call.finally(() => order.push(i))));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    // The aborted call left the line as its signal fired, before the turn let the second run.
    expect(order).toEqual([2, 1, 0]);
    expect((settled[2] as PromiseRejectedResult).reason).toBeInstanceOf(AbortError);
    expect(mods.map((m) => m.numBatchesTracked)).toEqual([1, 0]);
    expect(Array.from(mods[1].runningMean!)).toEqual([0, 0, 0]);
  });
});

/** Holds the calling thread `ms` (a caller's own work), with no turn of the event loop. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('calls on the workers made at once', () => {
  it('stepDue: due once INLINE_TURN_MS passed since the first step after a turn and another call stepped since; never for a lone call', async () => {
    const [a, b] = [{}, {}];
    await oneTurn();
    expect(stepDue(a)).toBe(false);
    busy(2 * INLINE_TURN_MS);
    expect(stepDue(a)).toBe(false);
    expect(stepDue(b)).toBe(true);
    expect(stepDue(a)).toBe(true);
    await oneTurn();
    expect(stepDue(b)).toBe(false);
    expect(stepDue(a)).toBe(false);
  });

  /**
   * Calls on the workers' side (a pool with no inline calls), from arrays off the pool, which
   * they copy onto it, or on it (nothing to copy); `call` gives the arrays of its result.
   */
  const calls: { name: string; make: (workers: Pool, onPool: boolean) => { x: Float32Array | Uint8Array; call: () => Promise<ArrayLike<number>[]> } }[] = [
    {
      name: 'an eval',
      make: (workers, onPool) => {
        const shape = [4, 3, 32, 32];
        const x = onTo(workers, onPool, randomTensor(shape, 'float32', 90) as Float32Array);
        const out = onPool ? workers.alloc(x.length) as Float32Array : undefined;
        const runningMean = Float64Array.from([0.1, 0.2, 0.3]);
        const runningVar = Float64Array.from([1.1, 1.2, 1.3]);
        return { x, call: () => batchNorm(x, shape, { pool: workers, runningMean, runningVar, out }).then((r) => [r.y]) };
      },
    },
    {
      name: 'an eval of 8-bit pixels',
      make: (workers, onPool) => {
        const shape = [2, 32, 32, 3];
        const rand = rng(93);
        const x = onTo(workers, onPool, Uint8Array.from({ length: 2 * 32 * 32 * 3 }, () => Math.floor(256 * rand())));
        const out = onPool ? workers.alloc(x.length) as Float32Array : undefined;
        const runningMean = Float64Array.from([123.675, 116.28, 103.53]);
        const runningVar = Float64Array.from([58.395 ** 2, 57.12 ** 2, 57.375 ** 2]);
        const options = { pool: workers, runningMean, runningVar, layout: 'channels-last', outLayout: 'channels-first', out } as const;
        return { x, call: () => batchNorm(x, shape, options).then((r) => [r.y]) };
      },
    },
    {
      name: 'the statistics of 8-bit pixels',
      make: (workers, onPool) => {
        const shape = [2, 32, 32, 3];
        const rand = rng(94);
        const x = onTo(workers, onPool, Uint8Array.from({ length: 2 * 32 * 32 * 3 }, () => Math.floor(256 * rand())));
        return {
          x,
          call: () => ChannelStats.fromBatch(x, shape, { layout: 'channels-last', pool: workers }).then((s) => [s.mean(), s.variance()]),
        };
      },
    },
  ];

  /**
   * Where the step waits: `start`, the clock set on by 2 ms as the call is made (another call's
   * step, a stand-in token, came first), before the call takes any memory; `taken`, set on as
   * the call takes its blocks, before its copy's first slice (arrays off the pool) or before it
   * posts a task (on the pool). An immediate set before the call sees what it has done by then.
   */
  const steps: [string, 'start' | 'taken', boolean][] = [
    ['waits for a turn before it takes any memory', 'start', false],
    ['waits for a turn before its next slice: nothing copied', 'taken', false],
    ['posting waits for a turn: nothing posted', 'taken', true],
  ];

  describe.each(calls)('$name', ({ make }) => {
    it.each(steps)('where other calls held the thread long enough since the last turn, %s', async (_, at, onPool) => {
      const workers = new Pool({ threads: 2, inlineThreshold: 0 });
      const posts = vi.spyOn(Piscina.prototype, 'run');
      try {
        await workers.ready;
        const { x, call } = make(workers, onPool);
        const arrays = workers.memoryStats.liveBytes;
        await oneTurn();
        // The clock held still (the module reads performance.now() and nothing else of the time).
        const t0 = performance.now();
        let made = false;
        const jumped = (): boolean => made && (at === 'start' || workers.memoryStats.liveBytes > arrays);
        const clock = vi.spyOn(performance, 'now').mockImplementation(() => t0 + (jumped() ? 2 * INLINE_TURN_MS : 0));
        let seen: { taken: boolean; staged: boolean; posted: number } | null = null;
        let got: ArrayLike<number>[];
        try {
          posts.mockClear();
          stepDue({});
          made = true;
          setImmediate(() => {
            seen = { taken: workers.memoryStats.liveBytes > arrays, staged: !onPool && holds(workers.memory.buffer, x), posted: posts.mock.calls.length };
          });
          got = await call();
        } finally {
          clock.mockRestore();
        }
        expect(seen).toEqual({ taken: at === 'taken', staged: false, posted: 0 });
        expect(posts.mock.calls.length).toBeGreaterThan(0);
        // The same bits as the call made again after a turn.
        const kept = got!.map((a) => Array.from(a));
        await oneTurn();
        const again = await call();
        again.forEach((a, i) => expect(sameBits(a, kept[i]), `array ${i}`).toBe(true));
      } finally {
        posts.mockRestore();
        await workers.close();
      }
    });
  });
});

/** `values` as they are, or on the pool. */
function onTo<T extends Float32Array | Uint8Array>(workers: Pool, onPool: boolean, values: T): T {
  if (!onPool) return values;
  const copy = workers.alloc(values.length, values instanceof Uint8Array ? 'uint8' : 'float32') as T;
  copy.set(values);
  return copy;
}

/** Whether `memory` holds x's first eight values one after another (x staged there). */
function holds(memory: ArrayBufferLike, x: Float32Array | Uint8Array): boolean {
  const view = x instanceof Uint8Array ? new Uint8Array(memory) : new Float32Array(memory);
  search: for (let i = 0; i + 8 <= view.length; i++) {
    for (let j = 0; j < 8; j++) if (view[i + j] !== x[j]) continue search;
    return true;
  }
  return false;
}
