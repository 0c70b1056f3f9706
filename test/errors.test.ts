/**
 * Every error code: typed, with a stable code, a message naming the argument, the expectation and
 * the value given, raised before any work, and leaving the module's state as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError, BatchNorm, batchNorm, batchNormBackward, BnPoolError, ChannelStats, ClosedError, DtypeError, Pool,
  ShapeError, SingleValueError,
} from '../dist/src/index.js';
import { detached, randomTensor, sameBits } from './helpers/data.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0 }); });
afterAll(() => pool.close());

/** A trained module and a snapshot of everything a failed call must leave alone. */
async function trainedModule(): Promise<{ bn: BatchNorm; snapshot: () => unknown }> {
  const bn = new BatchNorm(3, { pool });
  await bn.forward(randomTensor([4, 3, 5], 'float32', 1), [4, 3, 5]);
  const snapshot = () => JSON.stringify({
    sd: Object.fromEntries(Object.entries(bn.stateDict()).map(([k, v]) => [k, typeof v === 'number' ? v : Array.from(v as Float32Array)])),
    training: bn.training,
  });
  return { bn, snapshot };
}

async function expectRejection(p: Promise<unknown>, Ctor: Function, code: string, ...fragments: string[]): Promise<BnPoolError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(Ctor);
  expect(err).toBeInstanceOf(BnPoolError);
  const e = err as BnPoolError;
  expect(e.code).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
  return e;
}

describe('ERR_BNPOOL_SHAPE', () => {
  const cases: [string, unknown, number, string[]][] = [
    ['rank 1', [12], 12, ['rank 2 to 5', 'rank 1']],
    ['rank 6', [1, 3, 1, 1, 2, 2], 12, ['rank 2 to 5', 'rank 6']],
    ['a non-integer dim', [2, 3, 2.5], 15, ['shape[2]', 'positive integer', '2.5']],
    ['a zero dim', [0, 3, 4], 0, ['shape[0]', 'positive integer', '0']],
    ['a negative dim', [2, 3, -2], 12, ['shape[2]', '-2']],
    ['a product unlike the length', [2, 3, 3], 12, ['18 elements', 'has 12']],
    ['C unlike numFeatures', [3, 4], 12, ['numFeatures 3', 'got 4']],
    ['not an array', '2,3', 6, ['shape must be an array', '"2,3"']],
  ];
  for (const [label, shape, length, fragments] of cases) {
    it(`is raised for ${label}, with state unchanged`, async () => {
      const { bn, snapshot } = await trainedModule();
      const before = snapshot();
      const x = new Float32Array(length).fill(0.5);
      await expectRejection(bn.forward(x, shape as number[]), ShapeError, 'ERR_BNPOOL_SHAPE', ...fragments);
      expect(snapshot()).toBe(before);
    });
  }
});

describe('ERR_BNPOOL_DTYPE', () => {
  it('is raised for an input that is not a float array, with state unchanged', async () => {
    const { bn, snapshot } = await trainedModule();
    const before = snapshot();
    await expectRejection(bn.forward(new Int32Array(12) as never, [4, 3]), DtypeError, 'ERR_BNPOOL_DTYPE', 'x', 'Float32Array', 'Int32Array(12)');
    await expectRejection(bn.forward([1, 2, 3] as never, [1, 3]), DtypeError, 'ERR_BNPOOL_DTYPE', 'Array');
    expect(snapshot()).toBe(before);
  });

  it("is raised for an input of another dtype than the module's", async () => {
    const { bn, snapshot } = await trainedModule();
    const before = snapshot();
    await expectRejection(bn.forward(new Float64Array(12), [4, 3]), DtypeError, 'ERR_BNPOOL_DTYPE', "'float32'", 'Float64Array(12)');
    expect(snapshot()).toBe(before);
  });

  it('is raised for an out of another dtype, and out is left untouched', async () => {
    const { bn, snapshot } = await trainedModule();
    const before = snapshot();
    const out = new Float64Array(60).fill(7);
    await expectRejection(bn.forward(randomTensor([4, 3, 5], 'float32', 2), [4, 3, 5], { out: out as never }), DtypeError, 'ERR_BNPOOL_DTYPE', 'options.out');
    expect(out.every((v) => v === 7)).toBe(true);
    expect(snapshot()).toBe(before);
  });
});

describe('ERR_BNPOOL_ARG', () => {
  const ctorCases: [string, () => unknown, string[]][] = [
    ['numFeatures 0', () => new BatchNorm(0), ['numFeatures', 'positive integer', 'got 0']],
    ['numFeatures 2.5', () => new BatchNorm(2.5), ['numFeatures', '2.5']],
    ['numFeatures 2^31', () => new BatchNorm(2 ** 31), ['numFeatures', 'at most 33554432', 'got 2147483648']],
    ['eps 0', () => new BatchNorm(3, { eps: 0 }), ['options.eps', '> 0', 'got 0']],
    ['eps NaN', () => new BatchNorm(3, { eps: NaN }), ['options.eps', 'NaN']],
    ['eps Infinity', () => new BatchNorm(3, { eps: Infinity }), ['options.eps', 'Infinity']],
    ['momentum 1.5', () => new BatchNorm(3, { momentum: 1.5 }), ['options.momentum', '[0, 1]', '1.5']],
    ['momentum -0.1', () => new BatchNorm(3, { momentum: -0.1 }), ['options.momentum', '-0.1']],
    ['threads 0', () => new Pool({ threads: 0 }), ['options.threads', 'positive integer', 'got 0']],
    ['threads 1.5', () => new Pool({ threads: 1.5 }), ['options.threads', '1.5']],
    ['threads 2^31', () => new Pool({ threads: 2 ** 31 }), ['options.threads', 'at most 1024', 'got 2147483648']],
    ['kernel "gpu"', () => new Pool({ kernel: 'gpu' as never }), ['options.kernel', '"gpu"']],
    ['cacheBytes 0', () => new Pool({ cacheBytes: 0 }), ['options.cacheBytes', 'positive integer', 'got 0']],
    ['cacheBytes "16M"', () => new Pool({ cacheBytes: '16M' as never }), ['options.cacheBytes', '"16M"']],
    ['dtype "int8"', () => new BatchNorm(3, { dtype: 'int8' as never }), ['options.dtype', '"int8"']],
    // How values of other kinds are named: the article follows the class name; a symbol by itself.
    ['pool an AbortSignal', () => new BatchNorm(3, { pool: new AbortController().signal as never }), ['options.pool', 'got an AbortSignal']],
    ['pool a Map', () => new BatchNorm(3, { pool: new Map() as never }), ['options.pool', 'got a Map']],
    ['pool with no prototype', () => new BatchNorm(3, { pool: Object.create(null) as never }), ['options.pool', 'got an object']],
    ['numFeatures a symbol', () => new BatchNorm(Symbol('three') as never), ['numFeatures', 'got Symbol(three)']],
    ['threads a bigint', () => new Pool({ threads: 2n as never }), ['options.threads', 'positive integer; got 2n']],
    // An array that holds itself is named, not recursed into; a long string is cut.
    ['numFeatures a cyclic array', () => { const a: unknown[] = [1]; a.push(a); return new BatchNorm(a as never); }, ['numFeatures', 'got [1, Array(2)]']],
    ['layout a long string', () => new BatchNorm(3, { layout: 'x'.repeat(1000) as never }), ['options.layout', `got "${'x'.repeat(48)}"... (1000 characters)`]],
  ];
  for (const [label, make, fragments] of ctorCases) {
    it(`is thrown for ${label}`, () => {
      let err: unknown;
      try { make(); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ArgumentError);
      expect((err as BnPoolError).code).toBe('ERR_BNPOOL_ARG');
      for (const f of fragments) expect((err as Error).message).toContain(f);
    });
  }

  it('is raised for an out of the wrong length, with state and out unchanged', async () => {
    const { bn, snapshot } = await trainedModule();
    const before = snapshot();
    const out = new Float32Array(59).fill(3);
    await expectRejection(bn.forward(randomTensor([4, 3, 5], 'float32', 2), [4, 3, 5], { out }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.out', 'length 60', 'got length 59');
    expect(out.every((v) => v === 3)).toBe(true);
    expect(snapshot()).toBe(before);
  });

  it('is raised for an out overlapping x', async () => {
    const backing = new Float32Array(70);
    const x = backing.subarray(0, 60);
    const out = backing.subarray(4, 64);
    await expectRejection(batchNorm(x, [4, 3, 5], { training: true, pool, out }), ArgumentError, 'ERR_BNPOOL_ARG', 'overlap');
  });

  it('is raised for a backward dWeight or dBias of the wrong kind, or overlapping what the call reads; nothing is written', async () => {
    const shape = [4, 3, 5];
    const backing = new Float32Array(200);
    const x = backing.subarray(0, 60);
    x.set(randomTensor(shape, 'float32', 14));
    const bn = new BatchNorm(3, { pool });
    await bn.forward(x, shape);
    const dy = randomTensor(shape, 'float32', 15);
    const want = await bn.backward(dy);
    const xBefore = Array.from(x);
    const dyBefore = Array.from(dy);
    const keep = new Float32Array(3).fill(7);
    await expectRejection(bn.backward(dy, { dWeight: new Float64Array(3) as never }), DtypeError, 'ERR_BNPOOL_DTYPE', 'options.dWeight', 'Float32Array', 'Float64Array(3)');
    const cases: [object, string[]][] = [
      [{ dBias: new Float32Array(4) }, ['options.dBias', 'length 3', 'length 4']],
      [{ dWeight: backing.subarray(10, 13) }, ['options.dWeight must not overlap the forward input x']],
      [{ dBias: dy.subarray(2, 5) }, ['options.dBias must not overlap dy']],
      [{ dWeight: keep, dBias: keep }, ['options.dBias must not overlap options.dWeight']],
      [{ out: backing.subarray(100, 160), dWeight: backing.subarray(150, 153) }, ['options.dWeight must not overlap options.out']],
    ];
    for (const [options, fragments] of cases) {
      await expectRejection(bn.backward(dy, options as never), ArgumentError, 'ERR_BNPOOL_ARG', ...fragments);
    }
    expect(Array.from(x)).toEqual(xBefore);
    expect(Array.from(dy)).toEqual(dyBefore);
    expect(Array.from(keep)).toEqual([7, 7, 7]);
    expect(Array.from(backing.subarray(100, 160))).toEqual(new Array(60).fill(0));
    // A module without affine has no dWeight or dBias to write.
    const plain = new BatchNorm(3, { pool, affine: false });
    await plain.forward(x, shape);
    await expectRejection(plain.backward(dy, { dBias: new Float32Array(3) }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.dBias', 'affine false');
    // The module still answers as before.
    const again = await bn.backward(dy);
    expect(sameBits(again.dWeight!, want.dWeight!)).toBe(true);
    // Functional: float64 sums, which must not overlap x, dy, out, the mask or the statistics.
    const st = { mean: new Float64Array(6), var: new Float64Array(3).fill(1) };
    const fopts = { mean: st.mean.subarray(0, 3), var: st.var, pool };
    await expectRejection(batchNormBackward(x, dy, shape, { ...fopts, dWeight: new Float32Array(3) as never }), DtypeError, 'ERR_BNPOOL_DTYPE', 'options.dWeight', 'Float64Array');
    await expectRejection(batchNormBackward(x, dy, shape, { ...fopts, dBias: st.mean.subarray(2, 5) }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.dBias must not overlap options.mean');
    expect(Array.from(st.mean)).toEqual(new Array(6).fill(0));
  });

  it('is raised for a functional meanOut or varOut of the wrong kind, or overlapping what the call reads; nothing changes', async () => {
    const shape = [4, 3, 5];
    const x = randomTensor(shape, 'float32', 16);
    const running = new Float64Array(7).fill(0.5);
    const runningMean = running.subarray(0, 3);
    const runningVar = running.subarray(4, 7);
    const keep = new Float64Array(3).fill(7);
    await expectRejection(batchNorm(x, shape, { training: true, pool, meanOut: new Float32Array(3) as never }), DtypeError, 'ERR_BNPOOL_DTYPE', 'options.meanOut', 'Float64Array');
    const cases: [object, string[]][] = [
      [{ varOut: new Float64Array(2) }, ['options.varOut', 'length 3', 'length 2']],
      [{ meanOut: running.subarray(2, 5) }, ['options.meanOut must not overlap options.runningMean']],
      [{ varOut: running.subarray(3, 6) }, ['options.varOut must not overlap options.runningVar']],
      [{ meanOut: keep, varOut: keep }, ['options.varOut must not overlap options.meanOut']],
    ];
    for (const [options, fragments] of cases) {
      await expectRejection(batchNorm(x, shape, { training: true, pool, runningMean, runningVar, ...options }), ArgumentError, 'ERR_BNPOOL_ARG', ...fragments);
    }
    expect(Array.from(running)).toEqual(new Array(7).fill(0.5)); // no running update
    expect(Array.from(keep)).toEqual([7, 7, 7]);
    // 8-bit input returns copies of the running statistics: no meanOut there.
    await expectRejection(
      batchNorm(new Uint8Array(60), [4, 5, 3], { layout: 'channels-last', runningMean, runningVar, pool, meanOut: keep }),
      ArgumentError, 'ERR_BNPOOL_ARG', 'options.meanOut is for float input',
    );
  });

  // dx is written while x, dy and the ReLU mask are read: it may replace dy element for element,
  // and must not overlap x or the mask at all (they are the forward's, kept for later calls).
  it('is raised for a backward out overlapping x or the mask; dx over dy in place gives the same bits', async () => {
    const shape = [4, 3, 5];
    const backing = new Float32Array(130);
    const x = backing.subarray(0, 60);
    x.set(randomTensor(shape, 'float32', 4));
    const y = new Float32Array(backing.buffer, 260, 60);
    const bn = new BatchNorm(3, { pool, activation: 'relu' });
    await bn.forward(x, shape, { out: y });
    const dy = randomTensor(shape, 'float32', 5);
    const want = (await bn.backward(dy)).dx;
    const xBefore = Array.from(x);
    const yBefore = Array.from(y);
    for (const [out, name] of [[backing.subarray(4, 64), 'the forward input x'], [backing.subarray(0, 60), 'the forward input x'], [backing.subarray(66, 126), "the forward's output"]] as const) {
      await expectRejection(bn.backward(dy, { out }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.out must not overlap', name);
    }
    expect(Array.from(x)).toEqual(xBefore);
    expect(Array.from(y)).toEqual(yBefore);
    const dyCopy = dy.slice();
    await expectRejection(bn.backward(dyCopy, { out: new Float32Array(dyCopy.buffer, 8, 58) as never }), ArgumentError, 'ERR_BNPOOL_ARG', 'length 60');
    const r = await bn.backward(dyCopy, { out: dyCopy });
    expect(r.dx).toBe(dyCopy);
    expect(sameBits(dyCopy, want)).toBe(true);
    // Functional: out is checked against dy (in place allowed), x and the mask.
    const st = { mean: new Float64Array(3), var: new Float64Array(3).fill(1) };
    const dyBacking = new Float32Array(70);
    const fdy = dyBacking.subarray(0, 60);
    await expectRejection(batchNormBackward(x, fdy, shape, { ...st, pool, out: dyBacking.subarray(5, 65) }), ArgumentError, 'ERR_BNPOOL_ARG', 'overlapping dy');
    await expectRejection(batchNormBackward(x, fdy, shape, { ...st, pool, out: backing.subarray(1, 61) }), ArgumentError, 'ERR_BNPOOL_ARG', 'must not overlap x');
    await expectRejection(batchNormBackward(x, fdy, shape, { ...st, pool, activation: 'relu', y, out: backing.subarray(65, 125) }), ArgumentError, 'ERR_BNPOOL_ARG', 'must not overlap options.y');
  });

  it('is raised by batchNorm for bad options, leaving the running buffers unchanged', async () => {
    const x = randomTensor([4, 3, 5], 'float32', 3);
    const runningMean = new Float32Array([1, 2, 3]);
    const runningVar = new Float32Array([4, 5, 6]);
    await expectRejection(batchNorm(x, [4, 3, 5], { pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'runningMean', 'required');
    await expectRejection(batchNorm(x, [4, 3, 5], { training: true, runningMean, pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'together');
    await expectRejection(batchNorm(x, [4, 3, 5], { training: true, runningMean, runningVar, momentum: 2, pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.momentum', '2');
    await expectRejection(batchNorm(x, [4, 3, 5], { training: true, weight: new Float32Array(4), pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.weight', 'length 3', 'got length 4');
    await expectRejection(batchNorm(x, [4, 3, 5], { training: true, signal: {} as never, pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.signal');
    expect(Array.from(runningMean)).toEqual([1, 2, 3]);
    expect(Array.from(runningVar)).toEqual([4, 5, 6]);
  });

  // A misspelt option would otherwise leave its default in force without a word.
  it('is raised for an option the call does not take, naming it, before any work and with state unchanged', async () => {
    const shape = [4, 3, 5];
    const x = randomTensor(shape, 'float32', 6);
    const unknown = (thunk: () => unknown, key: string, value: string): void => {
      let err: unknown;
      try { thunk(); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ArgumentError);
      expect((err as BnPoolError).code).toBe('ERR_BNPOOL_ARG');
      expect((err as Error).message).toContain(`options.${key} is not an option here: expected one of `);
      expect((err as Error).message).toContain(`; got ${value}`);
    };
    unknown(() => new Pool({ thread: 2 } as never), 'thread', '2');
    unknown(() => new BatchNorm(3, { momentun: 0.01 } as never), 'momentun', '0.01');
    expect(() => new BatchNorm(3, { momentum: 0.01, eps: undefined, pool })).not.toThrow();

    const { bn, snapshot } = await trainedModule();
    const before = snapshot();
    const out = new Float32Array(60).fill(3);
    await expectRejection(bn.forward(x, shape, { out, ouT: out } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.ouT is not an option here: expected one of out, signal, reduceStats; got Float32Array(60)');
    expect(out.every((v) => v === 3)).toBe(true);
    await expectRejection(bn.backward(x, { dx: out } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.dx', 'Float32Array(60)');
    expect(out.every((v) => v === 3)).toBe(true);
    expect(snapshot()).toBe(before);

    const runningMean = new Float32Array([1, 2, 3]);
    const runningVar = new Float32Array([4, 5, 6]);
    await expectRejection(batchNorm(x, shape, { training: true, runningMean, runningVar, pool, momentun: 0.5 } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.momentun', 'got 0.5');
    expect(Array.from(runningMean)).toEqual([1, 2, 3]);
    expect(Array.from(runningVar)).toEqual([4, 5, 6]);
    const st = { mean: new Float64Array(3), var: new Float64Array(3).fill(1) };
    await expectRejection(batchNormBackward(x, x, shape, { ...st, pool, weigth: new Float32Array(3) } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.weigth', 'Float32Array(3)');
    await expectRejection(ChannelStats.fromBatch(x, shape, { pool, layuot: 'channels-last' } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.layuot', '"channels-last"');
    await expectRejection(ChannelStats.fromBatch(x, shape, { pool, 'lay out': 1 } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options["lay out"] is not an option');
    const stats = await ChannelStats.fromBatch(x, shape, { pool });
    unknown(() => stats.variance({ dof: 1 } as never), 'dof', '1');
  });

  it('is raised for an input whose buffer was detached before the call, saying so, with state unchanged', async () => {
    const shape = [4, 3, 5];
    const x = (): Float32Array => randomTensor(shape, 'float32', 2) as Float32Array;
    const { bn, snapshot } = await trainedModule();
    const before = snapshot();
    const said = ['must hold its values', 'detached', 'Float32Array(detached)'];
    await expectRejection(bn.forward(detached(x()), shape), ArgumentError, 'ERR_BNPOOL_ARG', 'x must hold its values', ...said);
    await expectRejection(bn.backward(detached(x())), ArgumentError, 'ERR_BNPOOL_ARG', 'dy must hold its values', ...said);
    await expectRejection(batchNorm(detached(x()), shape, { training: true, pool }), ArgumentError, 'ERR_BNPOOL_ARG', ...said);
    await expectRejection(ChannelStats.fromBatch(detached(x()), shape, { pool }), ArgumentError, 'ERR_BNPOOL_ARG', ...said);
    const stats = { mean: new Float64Array(3), var: new Float64Array(3).fill(1) };
    await expectRejection(batchNormBackward(detached(x()), x(), shape, { ...stats, pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'x must hold', ...said);
    // dy's check names its length and what it was given: a detached array.
    await expectRejection(batchNormBackward(x(), detached(x()), shape, { ...stats, pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'dy must be', 'Float32Array(detached)');
    const pixels = (): Uint8Array => detached(Uint8Array.from({ length: 60 }, (_, i) => (i * 37) % 256));
    bn.eval();
    await expectRejection(bn.forward(pixels(), shape), ArgumentError, 'ERR_BNPOOL_ARG', 'x must hold', 'Uint8Array(detached)');
    await expectRejection(
      batchNorm(pixels(), shape, { runningMean: stats.mean, runningVar: stats.var, pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'Uint8Array(detached)',
    );
    await expectRejection(ChannelStats.fromBatch(pixels(), shape, { pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'Uint8Array(detached)');
    bn.train();
    // An out or a per-channel array detached before the call: the length checks say so.
    const emptied = 'got length 0 (its buffer was detached';
    await expectRejection(bn.forward(x(), shape, { out: detached(x()) }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.out', emptied);
    await expectRejection(
      batchNorm(x(), shape, { training: true, weight: detached(new Float32Array(3)), pool }), ArgumentError, 'ERR_BNPOOL_ARG', 'options.weight', emptied,
    );
    expect(() => bn.loadStateDict({ ...bn.stateDict(), bias: detached(new Float32Array(3)) })).toThrow(/stateDict.bias must have length 3; got length 0 \(its buffer was detached/);
    expect(snapshot()).toBe(before);
    // An empty array is not a detached one: the shape check speaks for it.
    await expectRejection(bn.forward(new Float32Array(0), shape), ShapeError, 'ERR_BNPOOL_SHAPE', 'holds 60 elements, but the input has 0');
  });

  it('is thrown by loadStateDict for bad keys or lengths, changing nothing', async () => {
    const { bn, snapshot } = await trainedModule();
    const before = snapshot();
    const good = bn.stateDict();
    expect(() => bn.loadStateDict({ ...good, extra: 1 } as never)).toThrow(/unexpected \["extra"\]/);
    expect(() => bn.loadStateDict({ ...good, running_var: undefined, weight: [9, 9, 9] } as never)).toThrow(ArgumentError);
    expect(() => bn.loadStateDict({ ...good, weight: [9, 9, 9], bias: [1, 2] })).toThrow(/stateDict.bias must have length 3; got length 2/);
    expect(() => bn.loadStateDict({ ...good, weight: [9, 9, 9], num_batches_tracked: -1 })).toThrow(/num_batches_tracked/);
    expect(snapshot()).toBe(before);
  });

  it('is thrown by pool.free for an array the pool did not allocate, or freed twice', () => {
    const a = pool.alloc(8);
    pool.free(a);
    expect(() => pool.free(a)).toThrow(ArgumentError);
    expect(() => pool.free(new Float32Array(8))).toThrow(/live array from this pool/);
  });
});

describe('ERR_BNPOOL_SINGLE_VALUE', () => {
  it('is raised when training with one value per channel, with state unchanged', async () => {
    const { bn, snapshot } = await trainedModule();
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
    const p = new Pool({ threads: 2, inlineThreshold: 0 });
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
    const { bn, snapshot } = await trainedModule();
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
    const { bn, snapshot } = await trainedModule();
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
