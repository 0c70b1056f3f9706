/**
 * Every error code: typed, with a stable code, a message naming the argument, the expectation and
 * the value given, raised before any work, and leaving the module's state as it was. The argument
 * checks (ERR_BNPOOL_ARG) are in errors-arguments.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError, BatchNorm, batchNorm, batchNormBackward, BnPoolError, ChannelStats, ClosedError, DtypeError, Pool,
  ShapeError, SingleValueError,
} from '../dist/src/index.js';
import { randomTensor, sameBits } from './helpers/data.js';
import { expectRejection, trainedModule } from './helpers/errors.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

describe('ERR_BNPOOL_SHAPE', () => {
  const cases: [string, unknown, number, string[]][] = [
    ['rank 1', [12], 12, ['rank 2 to 5', 'rank 1']],
    ['rank 6', [1, 3, 1, 1, 2, 2], 12, ['rank 2 to 5', 'rank 6']],
    ['a non-integer dim', [2, 3, 2.5], 15, ['shape[2]', 'non-negative integer', '2.5']],
    ['zero channels', [4, 0, 3], 0, ['shape[1]', 'positive integer (the channels)', '0']],
    ['a negative dim', [2, 3, -2], 12, ['shape[2]', 'non-negative integer', '-2']],
    ['a product unlike the length', [2, 3, 3], 12, ['18 elements', 'has 12']],
    ['C unlike numFeatures', [3, 4], 12, ['numFeatures 3', 'got 4']],
    ['not an array', '2,3', 6, ['shape must be an array', '"2,3"']],
  ];
  for (const [label, shape, length, fragments] of cases) {
    it(`is raised for ${label}, with state unchanged`, async () => {
      const { bn, snapshot } = await trainedModule(pool);
      const before = snapshot();
      const x = new Float32Array(length).fill(0.5);
      await expectRejection(bn.forward(x, shape as number[]), ShapeError, 'ERR_BNPOOL_SHAPE', ...fragments);
      expect(snapshot()).toBe(before);
    });
  }
});

describe('ERR_BNPOOL_DTYPE', () => {
  it('is raised for an input that is not a float array, with state unchanged', async () => {
    const { bn, snapshot } = await trainedModule(pool);
    const before = snapshot();
    await expectRejection(bn.forward(new Int32Array(12) as never, [4, 3]), DtypeError, 'ERR_BNPOOL_DTYPE', 'x', 'Float32Array', 'Int32Array(12)');
    await expectRejection(bn.forward([1, 2, 3] as never, [1, 3]), DtypeError, 'ERR_BNPOOL_DTYPE', 'Array');
    expect(snapshot()).toBe(before);
  });

  it("is raised for an input of another dtype than the module's", async () => {
    const { bn, snapshot } = await trainedModule(pool);
    const before = snapshot();
    await expectRejection(bn.forward(new Float64Array(12), [4, 3]), DtypeError, 'ERR_BNPOOL_DTYPE', "'float32'", 'Float64Array(12)');
    expect(snapshot()).toBe(before);
  });

  it('is raised for an out of another dtype, and out is left untouched', async () => {
    const { bn, snapshot } = await trainedModule(pool);
    const before = snapshot();
    const out = new Float64Array(60).fill(7);
    await expectRejection(bn.forward(randomTensor([4, 3, 5], 'float32', 2), [4, 3, 5], { out: out as never }), DtypeError, 'ERR_BNPOOL_DTYPE', 'options.out');
    expect(out.every((v) => v === 7)).toBe(true);
    expect(snapshot()).toBe(before);
  });
});


describe('ERR_BNPOOL_SINGLE_VALUE', () => {
  it('is raised when training with one value per channel, with state unchanged', async () => {
    const { bn, snapshot } = await trainedModule(pool);
    const before = snapshot();
    const e = await expectRejection(bn.forward(new Float32Array([1, 2, 3]), [1, 3]), SingleValueError, 'ERR_BNPOOL_SINGLE_VALUE',
      'Expected more than 1 value per channel when training', '[1, 3]');
    expect(e.name).toBe('SingleValueError');
    expect(snapshot()).toBe(before);
    await expectRejection(bn.forward(new Float32Array([1, 2, 3]), [1, 3, 1, 1]), SingleValueError, 'ERR_BNPOOL_SINGLE_VALUE');
  });

  it('is not raised in eval mode, where the running statistics are used', async () => {
    const bn = new BatchNorm(3, { pool }).eval();
    const y = await bn.forward(new Float32Array([1, 2, 3]), [1, 3]);
    expect(Array.from(y).map((v) => Number(v.toFixed(4)))).toEqual([1, 2, 3]);
  });
});

describe('ERR_BNPOOL_CLOSED', () => {
  it('is raised by calls and allocations on a closed pool', async () => {
    const p = new Pool({ threads: 1 });
    const bn = new BatchNorm(3, { pool: p });
    await p.close();
    expect(p.closed).toBe(true);
    await expectRejection(bn.forward(randomTensor([4, 3], 'float32', 1), [4, 3]), ClosedError, 'ERR_BNPOOL_CLOSED', 'closed');
    expect(bn.numBatchesTracked).toBe(0);
    expect(() => p.alloc(4)).toThrow(ClosedError);
  });

  it('is not raised by calls made before close(): they run to the end, queued or in a hook, and close() waits for them', async () => {
    // Each call, run on `p` just before close() and on the open `pool`: the same bits.
    const calls = (on: Pool, hook: () => Promise<void>) => {
      const shape = [8, 3, 5, 5];
      const x = randomTensor(shape, 'float32', 7);
      const dy = randomTensor(shape, 'float32', 8);
      const bn = new BatchNorm(3, { pool: on });
      const forward = bn.forward(x, shape);
      const backward = bn.backward(dy); // queued behind the forward
      const synced = new BatchNorm(3, { pool: on }).forward(x, shape, {
        reduceStats: async (local) => { await hook(); return local; },
      });
      const stats = ChannelStats.fromBatch(x, shape, { pool: on });
      const functional = batchNorm(x, shape, { training: true, pool: on });
      const invstd = new Float64Array(3).fill(0.5);
      const functionalBackward = batchNormBackward(x, dy, shape, { mean: new Float64Array(3), invstd, pool: on });
      return { bn, forward, backward, synced, stats, functional, functionalBackward };
    };
    const p = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
    let entered!: () => void;
    const inHook = new Promise<void>((resolve) => { entered = resolve; });
    let leave!: () => void;
    const held = new Promise<void>((resolve) => { leave = resolve; });
    const late = calls(p, () => { entered(); return held; });
    let closed = false;
    const closing = p.close().then(() => { closed = true; });
    expect(p.closed).toBe(true);
    await Promise.all([late.forward, late.backward, late.stats, late.functional, late.functionalBackward, inHook]);
    // The synced call waits in its hook, so close() cannot have finished.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closed).toBe(false);
    leave();
    await closing;
    expect(closed).toBe(true);
    const ref = calls(pool, () => Promise.resolve());
    const [got, want] = await Promise.all([late, ref].map(async (c) => {
      const [y, g, ys, s, f, fb] = await Promise.all([c.forward, c.backward, c.synced, c.stats, c.functional, c.functionalBackward]);
      return [y, g.dx, g.dWeight!, ys, s.mean(), s.variance(), f.y, fb.dx, fb.dBias, c.bn.runningMean!];
    }));
    for (let i = 0; i < want.length; i++) expect(sameBits(got[i], want[i]), `result ${i}`).toBe(true);
    await expectRejection(late.bn.forward(randomTensor([4, 3], 'float32', 1), [4, 3]), ClosedError, 'ERR_BNPOOL_CLOSED', 'closed');
  });
});

describe('error classes', () => {
  it('every exported error has a fixed name and code', async () => {
    const errors = await import('../dist/src/errors.js');
    const expected: Record<string, string> = {
      ShapeError: 'ERR_BNPOOL_SHAPE', DtypeError: 'ERR_BNPOOL_DTYPE', ArgumentError: 'ERR_BNPOOL_ARG',
      SingleValueError: 'ERR_BNPOOL_SINGLE_VALUE', WorkerError: 'ERR_BNPOOL_WORKER', ClosedError: 'ERR_BNPOOL_CLOSED',
      OutOfMemoryError: 'ERR_BNPOOL_OUT_OF_MEMORY', NoForwardError: 'ERR_BNPOOL_NO_FORWARD', AbortError: 'ABORT_ERR',
      FormatError: 'ERR_BNPOOL_FORMAT',
    };
    for (const [name, code] of Object.entries(expected)) {
      const Ctor = (errors as unknown as Record<string, new (m: string) => BnPoolError>)[name];
      const e = new Ctor('m');
      expect(e.name).toBe(name);
      expect(e.code).toBe(code);
      expect(e).toBeInstanceOf(BnPoolError);
      expect(e).toBeInstanceOf(Error);
      // The index exports them all.
      expect((await import('../dist/src/index.js') as Record<string, unknown>)[name]).toBe(Ctor);
    }
  });
});

describe('eps and momentum, settable as in PyTorch', () => {
  it('are checked when set: a bad value is an ArgumentError naming the field and changes nothing', async () => {
    const { bn, snapshot } = await trainedModule(pool);
    const before = snapshot();
    const bad: [string, unknown, string][] = [
      ['eps', 0, 'eps must be a finite number > 0; got 0'], ['eps', -1, 'eps must be a finite number > 0; got -1'],
      ['eps', Number.NaN, 'eps must be a finite number > 0; got NaN'], ['eps', '1e-3', 'eps must be a finite number > 0; got "1e-3"'],
      ['momentum', 2, 'momentum must be a number in [0, 1] or null; got 2'], ['momentum', undefined, 'momentum must be a number in [0, 1] or null; got undefined'],
      ['momentum', -0.1, 'momentum must be a number in [0, 1] or null; got -0.1'],
    ];
    for (const [key, value, message] of bad) {
      let error: unknown;
      try { (bn as unknown as Record<string, unknown>)[key] = value; } catch (e) { error = e; }
      expect(error, key).toBeInstanceOf(ArgumentError);
      expect((error as ArgumentError).code).toBe('ERR_BNPOOL_ARG');
      expect((error as Error).message).toBe(message);
    }
    expect(snapshot()).toBe(before);
    expect([bn.eps, bn.momentum]).toEqual([1e-5, 0.1]);
  });
});

describe('read-only fields', () => {
  it('a module\'s, a pool\'s and ChannelStats\' fields and the exported defaults cannot be replaced; the arrays stay editable in place', async () => {
    const { bn, snapshot } = await trainedModule(pool);
    const before = snapshot();
    // Replaced, a weight of another length or an unchecked eps would reach the next call.
    const swaps: [string, unknown][] = [
      ['weight', new Float32Array(2)], ['bias', [1, 2, 3]], ['runningMean', new Float32Array(3)], ['runningVar', null],
      ['numFeatures', 4], ['dtype', 'float64'], ['affine', false], ['layout', 'channels-last'], ['trackRunningStats', false],
    ];
    for (const [key, value] of swaps) {
      expect(() => { (bn as unknown as Record<string, unknown>)[key] = value; }, key).toThrow(TypeError);
    }
    expect(snapshot()).toBe(before);
    bn.weight![1] = 2.5;
    expect(bn.weight![1]).toBe(2.5);
    expect(() => { (pool as unknown as Record<string, unknown>).threads = 64; }).toThrow(TypeError);
    expect(pool.threads).toBe(2);
    expect(() => { (pool as unknown as Record<string, unknown>).grainSize = 1; }).toThrow(TypeError);
    // The exported defaults every module and pool reads are frozen too.
    const { CONVENTIONS, DEFAULT_INLINE_THRESHOLD } = await import('../dist/src/index.js');
    expect(() => { (CONVENTIONS.torch as { momentum: number }).momentum = 0.5; }).toThrow(TypeError);
    expect(() => { (CONVENTIONS as Record<string, unknown>).torch = {}; }).toThrow(TypeError);
    expect(() => { (DEFAULT_INLINE_THRESHOLD as Record<string, number>).wasm = 0; }).toThrow(TypeError);
    expect(new BatchNorm(3, { pool }).momentum).toBe(0.1);
    const stats = new ChannelStats([2, 2], [0, 1], [1, 1]);
    expect(() => { (stats as unknown as Record<string, unknown>).count = new Float64Array(3); }).toThrow(TypeError);
    expect(stats.numChannels).toBe(2);
  });
});
