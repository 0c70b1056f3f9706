/**
 * A call cancelled between two blocks of its task. The injected fault (`Fault` 'cancel') has the
 * task cancel the call itself at its poll of the cancel flag number k + 1, the polls before it
 * reading no flag: as an abort that came at that point. For each path, every k in turn, from 0
 * until the task makes fewer polls than k + 1 and the call finishes. On one worker (x, dy and
 * `out` on the pool, so no copy runs beside the task) the task stops where it polls: what it has
 * written is the full call's output up to a point (every element written has the full call's
 * bits), grows with k, and in enough distinct steps to show that the polls lie between blocks of
 * the normalization, not only between its channels or bands; a statistics pass's polls, which
 * write nothing, show as polls at which the output does not grow. abort.test.ts has the flag
 * raised before a task starts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, BatchNorm, ChannelStats, Pool } from '../dist/src/index.js';
import { planGrid, planPhases, shouldFuse } from '../dist/src/plan.js';
import { injectFault } from '../dist/src/pool-internals.js';
import type { Grid } from '../dist/workers/protocol.js';
import { elements, randomTensor, sameBits } from './helpers/data.js';
import { dimsOf } from './helpers/reference.js';

const SENTINEL = 1234.5;
const PHASED_CACHE_BYTES = 800_000;
const PHASED_THREADS = 4;
/** A training forward that goes in phases on one thread (row mode, one band: see its case). */
const PHASED_ONE_SHAPE = [320, 5, 14, 14];

let one: Pool;
let phasedOne: Pool;
let phasedPool: Pool;
beforeAll(() => {
  one = new Pool({ threads: 1, inlineThreshold: 0, grainSize: 1 });
  phasedOne = new Pool({ threads: 1, inlineThreshold: 0, grainSize: 1, cacheBytes: PHASED_CACHE_BYTES });
  // Four tasks: five channels are too few to share fused between them (plan.ts, shouldFuse).
  phasedPool = new Pool({ threads: PHASED_THREADS, inlineThreshold: 0, grainSize: 1, cacheBytes: PHASED_CACHE_BYTES });
});
afterAll(() => Promise.all([one.close(), phasedOne.close(), phasedPool.close()]));

type Mode = 'train' | 'eval' | 'backward' | 'eval backward';

interface WalkCase {
  label: string;
  shape: number[];
  mode: Mode;
  /** The unit of the most a task may write between two polls (perPollBound): 'row group' unless given. */
  unit?: 'row group' | 'band';
  /** The pool: `one` unless given. */
  pool?: () => Pool;
  /** The fewest polls at which nothing more is written than at the poll before, k = 0 included. */
  quiet?: (grid: Grid) => number;
}

interface Sweep {
  /** Elements of the output written by each cancelled call, k = 0, 1, ... */
  written: number[];
  n: number;
}

/** Runs the call with the cancel at every poll in turn; checks each cancelled call's output and the module's state. */
async function sweep(p: Pool, shape: number[], mode: Mode): Promise<Sweep> {
  const C = shape[1];
  const n = elements(shape);
  const x = p.alloc(n);
  x.set(randomTensor(shape, 'float32', 21) as Float32Array);
  const dy = p.alloc(n);
  dy.set(randomTensor(shape, 'float32', 22) as Float32Array);
  const out = p.alloc(n);
  const backward = mode === 'backward' || mode === 'eval backward';
  const module = async (): Promise<BatchNorm> => {
    const bn = new BatchNorm(C, { pool: p });
    bn.weight!.set(Array.from({ length: C }, (_, c) => 0.5 + c / C));
    bn.bias!.set(Array.from({ length: C }, (_, c) => c / C - 0.5));
    bn.runningMean!.fill(0.25);
    bn.runningVar!.fill(1.5);
    if (mode === 'eval' || mode === 'eval backward') bn.eval();
    if (backward) await bn.forward(x, shape);
    return bn;
  };
  const run = (bn: BatchNorm): Promise<unknown> => (backward ? bn.backward(dy, { out }) : bn.forward(x, shape, { out }));
  const state = (bn: BatchNorm): string => JSON.stringify([bn.numBatchesTracked, Array.from(bn.runningMean!), Array.from(bn.runningVar!)]);

  await run(await module());
  const want = out.slice();
  const written: number[] = [];
  for (let k = 0; ; k++) {
    expect(k, 'the call finishes once k passes its polls').toBeLessThan(5000);
    const bn = await module();
    const before = state(bn);
    out.fill(SENTINEL);
    injectFault(p, { kind: 'cancel', afterPolls: k });
    const err = await run(bn).then(() => null, (e: unknown) => e);
    let count = 0;
    let wrong = 0;
    for (let i = 0; i < n; i++) {
      if (out[i] === SENTINEL) continue;
      count++;
      if (!Object.is(out[i], want[i])) wrong++;
    }
    expect(wrong, `k = ${k}: elements written with other bits than the full call's`).toBe(0);
    if (err === null) {
      expect(count, `k = ${k}: the call finished`).toBe(n);
      break;
    }
    expect(err, `k = ${k}`).toBeInstanceOf(AbortError);
    expect(count, `k = ${k}: a cancelled call`).toBeLessThan(n);
    expect(state(bn), `k = ${k}: the module's state`).toBe(before);
    written.push(count);
  }
  for (const a of [x, dy, out]) p.free(a);
  return { written, n };
}

/**
 * The most a task writes between two polls: a row group of every channel (a run of whole channels
 * of one row group is one kernel call: blocks.ts, normalizeRange), or in fused bands a row group
 * of one band.
 */
function perPollBound(shape: number[], unit: 'row group' | 'band'): number {
  const grid = gridOf(shape);
  return grid.groupRows * grid.S * (unit === 'band' ? grid.bandChannels : grid.C);
}

describe('on one worker, cancelled at each poll of its task in turn: the output up to that poll, a block at a time', () => {
  // Each path's normalization has its own loop of polls. Without its polls, a loop would write
  // all its blocks between two polls of another loop: more than the bound (a channel of several
  // row groups, a band of two), or, where no other loop polls after it (one channel), nothing
  // before the call finishes. A statistics pass writes no output: its polls show as polls at
  // which nothing more is written than at the poll before (`quiet`, where a case gives how many
  // at least).
  const cases: WalkCase[] = [
    { label: 'fused, plane mode, one channel', shape: [64, 1, 32, 32], mode: 'train' },
    { label: 'fused, plane mode, a channel normalized in step with the next one\'s statistics', shape: [64, 2, 32, 32], mode: 'train' },
    { label: 'fused, long planes (stretches)', shape: [2, 2, 300, 300], mode: 'train' },
    // 33 bands of two row groups: the fewest polls of a fused band with more than one row group.
    // A band's statistics poll before each of its row groups, its normalization after the first.
    {
      label: 'fused bands of wide rows, two row groups a band', shape: [16, 6144, 43], mode: 'train', unit: 'band',
      quiet: (grid) => grid.bands * grid.nGroups,
    },
    // Row mode with one band does not fuse, even on one thread (plan.ts, shouldFuse); with
    // `cacheBytes` it goes in four phases of channels (planRowPhases), and on one worker its task
    // makes every claim: the first phase's statistics poll before each row group, with nothing
    // written, and each later phase's polls (statsNormGroups, then normalizeGroups) write a row
    // group of the phase before.
    {
      label: 'phased on one worker, row mode', shape: PHASED_ONE_SHAPE, mode: 'train', pool: () => phasedOne,
      quiet: (grid) => grid.nGroups,
    },
    { label: 'eval, plane mode (row groups in memory order)', shape: [64, 2, 32, 32], mode: 'eval' },
    { label: 'eval, long planes (runs of stretches)', shape: [2, 2, 300, 300], mode: 'eval' },
    { label: 'eval, row mode', shape: [256, 6, 3, 5], mode: 'eval' },
    { label: 'eval, whole rows', shape: [512, 2048], mode: 'eval' },
    { label: 'backward (fused), one channel', shape: [64, 1, 32, 32], mode: 'backward' },
    { label: 'eval-mode backward (sums and dx a block at a time)', shape: [64, 2, 32, 32], mode: 'eval backward' },
  ];
  for (const { label, shape, mode, unit = 'row group', pool = () => one, quiet } of cases) {
    it(`${label} [${shape}]`, async () => {
      const { written, n } = await sweep(pool(), shape, mode);
      // Nothing is written before the first block; then more with each poll, and at most a row
      // group of every channel (of a band) between two, or after the last.
      expect(written[0]).toBe(0);
      const steps = [...written, n].slice(1).map((w, k) => w - written[k]);
      expect(Math.min(...steps), `written, k = 0, 1, ...: ${written}`).toBeGreaterThanOrEqual(0);
      expect(Math.max(...steps), `written, k = 0, 1, ...: ${written}`).toBeLessThanOrEqual(perPollBound(shape, unit));
      // Cancelled within the normalization at least twice: the polls lie between its blocks.
      expect(new Set(written.filter((w) => w > 0 && w < n)).size, `written: ${written}`).toBeGreaterThanOrEqual(2);
      if (quiet !== undefined) {
        // k = 0 and each k whose output is no larger than k - 1's.
        const got = 1 + steps.filter((d) => d === 0).length;
        expect(got, `written, k = 0, 1, ...: ${written}`).toBeGreaterThanOrEqual(quiet(gridOf(shape)));
      }
    });
  }
  it('the phased case goes in four phases on one thread, not fused', () => {
    const grid = gridOf(PHASED_ONE_SHAPE);
    const C = PHASED_ONE_SHAPE[1];
    expect(shouldFuse(grid, C, true, 1)).toBe(false);
    expect(planPhases(grid, C, 4, 1, PHASED_CACHE_BYTES)).toEqual([0, 1, 3, 4, 5]);
  });
});

describe('phased, on four workers, one of them cancelling the call at each of its polls in turn', () => {
  // The other tasks run on until they poll the flag, and where they start first they may take every
  // claim of a phase, so that the first polls at barriers (seen on a loaded machine: the call
  // finished at k = 3, nothing written before). So only what sweep() checks holds here: each
  // cancelled call's AbortError, partial output with the full call's bits and unchanged module,
  // and the full output once the task polls fewer times than k + 1. (A phased call on one worker,
  // where the task makes every claim, is above, with the bounds.)
  for (const shape of [[8, 5, 100, 101], [320, 5, 14, 14]]) {
    it(`[${shape}], groups ${JSON.stringify(phasesOf(shape))}`, async () => {
      expect(shouldFuse(gridOf(shape), shape[1], true, PHASED_THREADS)).toBe(false);
      expect(phasesOf(shape)!.length).toBeGreaterThan(3);
      await sweep(phasedPool, shape, 'train');
    });
  }
});

/** The channel groups of a training forward of `shape` (float32) on phasedPool's threads. */
function phasesOf(shape: number[]): number[] | null {
  return planPhases(gridOf(shape), shape[1], 4, PHASED_THREADS, PHASED_CACHE_BYTES);
}

/** The grid of a channels-first `shape`. */
function gridOf(shape: number[]): Grid {
  const { N, C, S } = dimsOf(shape);
  return planGrid(N, C, S);
}

describe('statistics only (ChannelStats.fromBatch), on one worker, cancelled at each poll in turn', () => {
  // Long planes (stretches of a plane a block): the statistics pass's own loop of polls. Nothing
  // is written but the call's scratch, which each cancelled call gives back.
  for (const shape of [[2, 3, 300, 300], [64, 2, 32, 32]]) {
    it(`[${shape}]: each cancelled call rejects and frees its memory; then the full call's statistics`, async () => {
      const n = elements(shape);
      const x = one.alloc(n);
      x.set(randomTensor(shape, 'float32', 23) as Float32Array);
      const live = one.memoryStats.liveBytes;
      const want = await ChannelStats.fromBatch(x, shape, { pool: one });
      let cancelled = 0;
      for (let k = 0; ; k++) {
        expect(k, 'the call finishes once k passes its polls').toBeLessThan(5000);
        injectFault(one, { kind: 'cancel', afterPolls: k });
        const got = await ChannelStats.fromBatch(x, shape, { pool: one }).catch((e: unknown) => e);
        expect(one.memoryStats.liveBytes, `k = ${k}`).toBe(live);
        if (got instanceof ChannelStats) {
          expect(sameBits(got.mean(), want.mean()) && sameBits(got.m2, want.m2)).toBe(true);
          break;
        }
        expect(got, `k = ${k}`).toBeInstanceOf(AbortError);
        cancelled++;
      }
      // Polls between the channels' runs of blocks, and within them: more than one a channel (8
      // here for either shape).
      expect(cancelled).toBeGreaterThan(shape[1]);
      one.free(x);
    });
  }
});
