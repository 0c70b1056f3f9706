/**
 * Aborts: a signal aborted before a call, during it (workers poll the call's cancel flag between
 * blocks, and a task that starts after the abort writes nothing), while its tasks wait at a prep
 * (and, beside it, the same wait ended by a worker that dies), and while it waits behind another
 * call on its module; nothing is committed, and the pool goes on serving. A signal shared by many
 * calls holds one listener of bnpool's while they run (no MaxListenersExceededWarning), none once
 * they settle, and its abort stops them all. faults.test.ts has the other workers that
 * die or throw.
 */
import { getEventListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, BatchNorm, batchNorm, batchNormBackward, BnPoolError, ChannelStats, Pool, WorkerError } from '../dist/src/index.js';
import { onAbort } from '../dist/src/abort.js';
import { planGrid, shouldFuse } from '../dist/src/plan.js';
import { injectFault } from '../dist/src/pool-internals.js';
import { randomTensor } from './helpers/data.js';
import { stateOf, trainedModule } from './helpers/errors.js';
import { abortOnceDispatched } from './helpers/pools.js';
import { outputErrorRatio, referenceForward } from './helpers/reference.js';
import { oneTurn } from './helpers/turns.js';

/** The process warnings emitted while `run` runs (and in the turn after it, where Node emits them). */
async function warningsDuring(run: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const onWarning = (w: Error): void => { seen.push(`${w.name}: ${w.message}`); };
  process.on('warning', onWarning);
  try {
    await run();
    await oneTurn();
  } finally {
    process.off('warning', onWarning);
  }
  return seen;
}

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

const shape = [8, 6, 30, 31];

describe('abort', () => {
  it('a signal aborted before the call rejects with AbortError and changes nothing', async () => {
    const { bn, snapshot } = await trainedModule(pool, shape);
    const before = snapshot();
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    const err = await bn.forward(randomTensor(shape, 'float32', 8), shape, { signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect((err as BnPoolError).name).toBe('AbortError');
    expect((err as BnPoolError).code).toBe('ABORT_ERR');
    expect(((err as Error).cause as Error).message).toBe('stop');
    expect(snapshot()).toBe(before);
  });

  it('every entry point refuses a signal aborted before the call at once: AbortError, nothing pinned, nothing run', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    const { signal } = ac;
    let x = pool.alloc(8 * 6 * 30 * 31);
    x.set(randomTensor(shape, 'float32', 9));
    let pixels = pool.alloc(4 * 3 * 25, 'uint8');
    pixels.set(new Uint8Array(4 * 3 * 25).map((_, i) => (i * 37) % 256));
    const trained = new BatchNorm(6, { pool });
    await trained.forward(x, shape);
    const fresh = new BatchNorm(6, { pool }); // no forward: its backward would fail with ERR_BNPOOL_NO_FORWARD at its turn
    const evalBytes = new BatchNorm(3, { pool });
    evalBytes.eval();
    const stats = { runningMean: new Float32Array(6), runningVar: new Float32Array(6).fill(1) };
    const calls: [string, () => Promise<unknown>][] = [
      ['forward', () => trained.forward(x, shape, { signal })],
      ['forward of bytes', () => evalBytes.forward(pixels, [4, 3, 5, 5], { signal })],
      ['backward', () => trained.backward(x, { signal })],
      ['backward with no forward', () => fresh.backward(x, { signal })],
      ['batchNorm', () => batchNorm(x, shape, { training: true, pool, signal })],
      ['batchNorm of bytes', () => batchNorm(pixels, [4, 3, 5, 5], { ...stats, runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(1), pool, signal })],
      ['batchNormBackward', () => batchNormBackward(x, x, shape, { mean: new Float64Array(6), invstd: new Float64Array(6).fill(1), training: true, pool, signal })],
      ['ChannelStats.fromBatch', () => ChannelStats.fromBatch(x, shape, { pool, signal })],
      ['ChannelStats.fromBatch of bytes', () => ChannelStats.fromBatch(pixels, [4, 3, 5, 5], { pool, signal })],
    ];
    const state = stateOf(trained);
    for (const [name, call] of calls) {
      const pending = call();
      // Refused before it pinned anything: its arrays can be freed (and taken again) at once.
      pool.free(x);
      pool.free(pixels);
      const err = await pending.catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(AbortError);
      expect(((err as Error).cause as Error).message, name).toBe('stop');
      const [xAgain, pixelsAgain] = [pool.alloc(x.length), pool.alloc(pixels.length, 'uint8')];
      expect([xAgain.byteOffset, pixelsAgain.byteOffset], name).toEqual([x.byteOffset, pixels.byteOffset]);
      [x, pixels] = [xAgain, pixelsAgain];
    }
    expect(stateOf(trained)).toEqual(state);
    expect(fresh.numBatchesTracked).toBe(0);
    pool.free(x);
    pool.free(pixels);
  });

  it('a running call rejects with AbortError, changes nothing, and the pool goes on', async () => {
    const big = [16, 8, 128, 128];
    const x = randomTensor(big, 'float32', 9);
    const bn = new BatchNorm(8, { pool });
    const ac = new AbortController();
    // One task stalls in its worker until the call is cancelled: the call is surely running.
    injectFault(pool, { kind: 'stall' });
    const call = bn.forward(x, big, { signal: ac.signal });
    await abortOnceDispatched(pool, ac, call);
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!)).toEqual(new Array(8).fill(0));
    expect(pool.memoryStats.liveBytes).toBe(0);
    const y = await bn.forward(x, big);
    expect(outputErrorRatio(y, x, big, referenceForward(x, big, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
  });

  // An eval call's tasks first make the parameters of its 6144 channels, three claims of 2048; the
  // first claim is held by a task that stalls or dies, so the others wait at the prep.
  it('a call whose tasks wait at the prep for a stalled task rejects with AbortError when aborted', async () => {
    const wide = [4, 6144];
    const x = randomTensor(wide, 'float32', 11);
    const bn = new BatchNorm(6144, { pool }).eval();
    const ac = new AbortController();
    injectFault(pool, { kind: 'stall', holdsPrep: true });
    const call = bn.forward(x, wide, { signal: ac.signal });
    await abortOnceDispatched(pool, ac, call);
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(pool.memoryStats.liveBytes).toBe(0);
    const y = await bn.forward(x, wide);
    const ref = referenceForward(x, wide, { training: false, runningMean: bn.runningMean, runningVar: bn.runningVar });
    expect(outputErrorRatio(y, x, wide, ref, null, 'float32')).toBeLessThanOrEqual(1);
  });

  it('a call whose tasks wait at the prep for a task whose worker died rejects with ERR_BNPOOL_WORKER', async () => {
    const wide = [4, 6144];
    const x = randomTensor(wide, 'float32', 12);
    const bn = new BatchNorm(6144, { pool }).eval();
    injectFault(pool, { kind: 'exit', exitCode: 9, holdsPrep: true });
    const err = await bn.forward(x, wide).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerError);
    expect((err as Error).message).toContain('worker exited with code: 9');
    expect(pool.memoryStats.liveBytes).toBe(0);
    const y = await bn.forward(x, wide);
    const ref = referenceForward(x, wide, { training: false, runningMean: bn.runningMean, runningVar: bn.runningVar });
    expect(outputErrorRatio(y, x, wide, ref, null, 'float32')).toBeLessThanOrEqual(1);
  });

  it('a call queued behind another on the same module is removed by its signal; the other completes', async () => {
    const big = [16, 8, 128, 128];
    const x = randomTensor(big, 'float32', 10);
    const bn = new BatchNorm(8, { pool });
    const ac = new AbortController();
    const settled: string[] = [];
    const first = bn.forward(x, big).then(() => settled.push('first'));
    const second = bn.forward(x, big, { signal: ac.signal });
    // Small (inline, done in microseconds): were it let go when the call before it left the queue,
    // it would settle long before the first, still on the workers.
    const small = [2, 8, 3, 3];
    const third = bn.forward(randomTensor(small, 'float32', 12), small).then(() => settled.push('third'));
    ac.abort();
    await expect(second).rejects.toBeInstanceOf(AbortError);
    await first;
    await third;
    expect(bn.numBatchesTracked).toBe(2);
    // The aborted call held its place until the call before it ended: the third ran after the first.
    expect(settled).toEqual(['first', 'third']);
  });

  it('a signal shared by many calls (a server\'s shutdown signal) holds one listener while they run, none once they settle', async () => {
    const ac = new AbortController();
    const { signal } = ac;
    const small = [4, 3, 5, 5];
    const x = randomTensor(shape, 'float32', 11);
    const bn = new BatchNorm(6, { pool });
    const synced = new BatchNorm(6, { pool });
    const pixels = new Uint8Array(4 * 3 * 25).map((_, i) => (i * 37) % 256);
    const calls: Promise<unknown>[] = [];
    for (let round = 0; round < 20; round++) {
      // Queued behind one another on one module (each waits for its turn), and every other kind.
      calls.push(bn.forward(x, shape, { signal }), bn.backward(x, { signal }), bn.forward(x, shape, { signal }));
      calls.push(synced.forward(x, shape, { signal, reduceStats: async (local) => local }));
      calls.push(batchNorm(x, shape, { training: true, pool, signal }), ChannelStats.fromBatch(x, shape, { pool, signal }));
      calls.push(batchNorm(pixels, small, { pool, signal, runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(1) }));
    }
    // One of bnpool's for all 140 calls: a listener each made Node 20 warn at the eleventh.
    expect(getEventListeners(signal, 'abort')).toHaveLength(1);
    const warnings = await warningsDuring(() => Promise.all(calls));
    expect(getEventListeners(signal, 'abort')).toEqual([]);
    expect(warnings).toEqual([]);
    expect(bn.numBatchesTracked).toBe(40);
    expect(synced.numBatchesTracked).toBe(20);
  });

  it('onAbort runs each callback on a signal once, in order, behind one listener; a removed one does not run', () => {
    const ac = new AbortController();
    const ran: number[] = [];
    const stop = [0, 1, 2, 3].map((i) => onAbort(ac.signal, () => ran.push(i)));
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    stop[1]();
    ac.abort();
    ac.abort();
    expect(ran).toEqual([0, 2, 3]);
    expect(getEventListeners(ac.signal, 'abort')).toEqual([]);
    for (const s of stop) s();
    // A callback added once the signal fired never runs; its removal leaves no listener.
    const late = onAbort(ac.signal, () => ran.push(4));
    late();
    expect(ran).toEqual([0, 2, 3]);
    expect(getEventListeners(ac.signal, 'abort')).toEqual([]);
    // Removing every callback before an abort removes the listener.
    const other = new AbortController();
    const stopBoth = [onAbort(other.signal, () => ran.push(5)), onAbort(other.signal, () => ran.push(6))];
    stopBoth[0]();
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(1);
    stopBoth[1]();
    expect(getEventListeners(other.signal, 'abort')).toEqual([]);
    other.abort();
    expect(ran).toEqual([0, 2, 3]);
  });

  it('one abort of a signal shared by many calls in flight rejects each with AbortError and changes nothing', async () => {
    const big = [16, 8, 64, 64];
    const x = randomTensor(big, 'float32', 12);
    const ac = new AbortController();
    const { signal } = ac;
    // Two calls whose all-reduce never answers, five more queued behind each: only the abort's
    // callbacks can end their waits.
    const hung = [new BatchNorm(8, { pool }), new BatchNorm(8, { pool })];
    let waiting = 0;
    let bothWaiting = (): void => {};
    const inHooks = new Promise<void>((resolve) => { bothWaiting = resolve; });
    const calls: Promise<unknown>[] = [];
    for (const bn of hung) {
      calls.push(bn.forward(x, big, { signal, reduceStats: () => { if (++waiting === 2) bothWaiting(); return new Promise(() => {}); } }));
      for (let i = 0; i < 5; i++) calls.push(bn.forward(x, big, { signal }));
    }
    await inHooks;
    // And calls that start now, each aborted on its way: on the workers or queued on a module.
    const modules = Array.from({ length: 4 }, () => new BatchNorm(8, { pool }));
    const before = modules.map((bn) => stateOf(bn));
    for (let round = 0; round < 3; round++) {
      for (const bn of modules) calls.push(bn.forward(x, big, { signal }));
      calls.push(batchNorm(x, big, { training: true, pool, signal }), ChannelStats.fromBatch(x, big, { pool, signal }));
    }
    expect(getEventListeners(signal, 'abort')).toHaveLength(1);
    ac.abort(new Error('shutting down'));
    const settled = await Promise.allSettled(calls);
    expect(settled.map((r) => r.status === 'rejected' && r.reason instanceof AbortError)).toEqual(calls.map(() => true));
    expect([...hung, ...modules].map((bn) => bn.numBatchesTracked)).toEqual(new Array(6).fill(0));
    expect(modules.map((bn) => stateOf(bn))).toEqual(before);
    expect(getEventListeners(signal, 'abort')).toEqual([]);
    // The pool goes on serving.
    const y = await modules[0].forward(x, big);
    expect(outputErrorRatio(y, x, big, referenceForward(x, big, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
  });
});

describe('the cancel flag, polled by the tasks between blocks', () => {
  // A task that starts its work after the call was cancelled must write nothing: x and `out` are
  // on the pool (the workers write `out` directly), `out` is filled with a sentinel, and the
  // injected stall holds a task in its worker until the flag is up. On one worker that task is
  // the whole call, whatever its path. On two, the split path's normalization waits at a barrier
  // for every task, task 0 among them, so no element can be written before the flag is raised
  // either. A task that ignored the flag would write every element.
  let one: Pool;
  beforeAll(() => { one = new Pool({ threads: 1, inlineThreshold: 0, grainSize: 1 }); });
  afterAll(() => one.close());

  const cases: [string, number, number[], 'train' | 'eval' | 'backward' | 'eval backward'][] = [
    ['split, plane mode', 2, [4, 3, 64, 64], 'train'],
    ['split, row mode', 2, [8, 6, 30, 31], 'train'],
    ['backward (split)', 2, [8, 6, 30, 31], 'backward'],
    ['fused, plane mode', 1, [4, 8, 32, 32], 'train'],
    ['fused bands of wide rows', 1, [4, 65536], 'train'],
    ['eval, with its prep', 1, [8, 6, 30, 31], 'eval'],
    ['backward (fused)', 1, [4, 8, 32, 32], 'backward'],
    ['eval-mode backward', 1, [8, 6, 30, 31], 'eval backward'],
  ];
  for (const [label, threads, shape, mode] of cases) {
    it(`${label}, ${threads} worker${threads > 1 ? 's' : ''}: a task that starts after the abort writes no element of the output`, async () => {
      const p = threads === 1 ? one : pool;
      const [N, C, ...spatial] = shape;
      if (threads > 1) expect(shouldFuse(planGrid(N, C, spatial.reduce((a, b) => a * b, 1)), C, true, threads)).toBe(false);
      const n = shape.reduce((a, b) => a * b, 1);
      const x = p.alloc(n);
      x.set(randomTensor(shape, 'float32', 13) as Float32Array);
      const dy = p.alloc(n);
      dy.set(randomTensor(shape, 'float32', 14) as Float32Array);
      const out = p.alloc(n).fill(1234.5);
      const bn = new BatchNorm(C, { pool: p });
      if (mode === 'backward') await bn.forward(x, shape);
      if (mode === 'eval' || mode === 'eval backward') bn.eval();
      if (mode === 'eval backward') await bn.forward(x, shape);
      const backward = mode === 'backward' || mode === 'eval backward';
      const state = (): string => JSON.stringify([bn.numBatchesTracked, Array.from(bn.runningMean!), Array.from(bn.runningVar!)]);
      const before = state();
      const ac = new AbortController();
      injectFault(p, { kind: 'stall' });
      const call = backward ? bn.backward(dy, { out, signal: ac.signal }) : bn.forward(x, shape, { out, signal: ac.signal });
      await abortOnceDispatched(p, ac, call);
      expect(await call.catch((e: unknown) => e)).toBeInstanceOf(AbortError);
      expect(out.filter((v) => v !== 1234.5).length).toBe(0);
      expect(state()).toBe(before);
      // The same module and arrays then give the whole result.
      if (backward) await bn.backward(dy, { out });
      else await bn.forward(x, shape, { out });
      expect(out.filter((v) => v === 1234.5).length).toBe(0);
      for (const a of [x, dy, out]) p.free(a);
      expect(p.memoryStats.liveBytes).toBe(0);
    });
  }
});
