/**
 * ERR_BNPOOL_ARG: every argument check of the constructors, calls and options, with a message
 * naming the argument, the expectation and the value given, raised before any work, and leaving
 * the module's state as it was (errors.test.ts has the other codes).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError, BatchNorm, batchNorm, batchNormBackward, BnPoolError, ChannelStats, DtypeError, Pool, ShapeError,
} from '../dist/src/index.js';
import { detached, randomTensor, sameBits } from './helpers/data.js';
import { expectRejection, trainedModule } from './helpers/errors.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

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
    ['threads 1025', () => new Pool({ threads: 1025 }), ['options.threads', 'at most 1024', 'got 1025']],
    ['maxMemory 65536', () => new Pool({ maxMemory: 65536 }), ['options.maxMemory', 'between 131072 and 4294967296 bytes', 'got 65536']],
    ['maxMemory 2^32 + 65536', () => new Pool({ maxMemory: 2 ** 32 + 65536 }), ['options.maxMemory', 'between 131072 and 4294967296 bytes', 'got 4295032832']],
    ['initialMemory past maxMemory', () => new Pool({ maxMemory: 1 << 20, initialMemory: (1 << 20) + 65536 }), ['options.initialMemory', 'at most options.maxMemory (1048576)', 'got 1114112']],
    ['inlineThreshold -1', () => new Pool({ inlineThreshold: -1 }), ['options.inlineThreshold', 'non-negative integer', 'got -1']],
    ['kernel "gpu"', () => new Pool({ kernel: 'gpu' as never }), ['options.kernel', '"gpu"']],
    ['cacheBytes 0', () => new Pool({ cacheBytes: 0 }), ['options.cacheBytes', 'positive integer', 'got 0']],
    ['cacheBytes "16M"', () => new Pool({ cacheBytes: '16M' as never }), ['options.cacheBytes', '"16M"']],
    ['grainSize 0', () => new Pool({ grainSize: 0 }), ['options.grainSize', "'auto' or a positive integer", 'got 0']],
    ['grainSize "fast"', () => new Pool({ grainSize: 'fast' as never }), ['options.grainSize', "'auto'", 'got "fast"']],
    ['grainSize 0.5', () => new Pool({ grainSize: 0.5 }), ['options.grainSize', 'got 0.5']],
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

  it('is not thrown at the edges of the pool options\' ranges: maxMemory of two pages, initialMemory at maxMemory, inlineThreshold 0', async () => {
    const edge = new Pool({ threads: 1, maxMemory: 131072, initialMemory: 131072, inlineThreshold: 0 });
    try {
      const x = edge.alloc(8);
      x.set([1, 2, 3, 4, 5, 6, 7, 8]);
      const { y } = await batchNorm(x, [4, 2], { training: true, pool: edge });
      // Channel 0 holds 1, 3, 5, 7 (mean 4, variance 5); channel 1 holds 2, 4, 6, 8 (mean 5).
      const want = [-3, -3, -1, -1, 1, 1, 3, 3].map((d) => d / Math.sqrt(5 + 1e-5));
      want.forEach((w, i) => expect(y[i]).toBeCloseTo(w, 6));
    } finally {
      await edge.close();
    }
  });

  it('is raised for an out of the wrong length, with state and out unchanged', async () => {
    const { bn, snapshot } = await trainedModule(pool);
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
    // The statistics the forward used are required: the mean, and invstd or var.
    await expectRejection(batchNormBackward(x, dy, shape, { var: st.var, pool } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.mean is required', 'got none');
    await expectRejection(batchNormBackward(x, dy, shape, { mean: fopts.mean, invstd: null, pool } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.invstd, or options.var with options.eps, is required', 'got neither');
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

    const { bn, snapshot } = await trainedModule(pool);
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
    await expectRejection(ChannelStats.fromBatch(x, shape, { pool: { threads: 2 } } as never), ArgumentError, 'ERR_BNPOOL_ARG', 'options.pool must be a Pool', 'got an object');
    const stats = await ChannelStats.fromBatch(x, shape, { pool });
    unknown(() => stats.variance({ dof: 1 } as never), 'dof', '1');
  });

  it('is raised for an input whose buffer was detached before the call, saying so, with state unchanged', async () => {
    const shape = [4, 3, 5];
    const x = (): Float32Array => randomTensor(shape, 'float32', 2) as Float32Array;
    const { bn, snapshot } = await trainedModule(pool);
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
    const { bn, snapshot } = await trainedModule(pool);
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
