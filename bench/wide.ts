/**
 * Wide rows: `npm run bench:wide` (~30 s). BatchNorm1d-style inputs with many channels and few
 * rows, which the row grid cuts into bands (README, "How the work is split"), beside E, whose rows
 * are not cut, and the floor of each measured in the same rounds. Zero-copy (pool arrays and
 * `out`), float32, at availableParallelism() threads. Then, with one worker (so that the main
 * thread has a core of its own), the longest the event loop was held in one piece during a call
 * (training, eval, backward, a synced training forward and backward whose all-reduces answer at once; the
 * functional training forward and backward, whose per-channel results are new arrays every call):
 * what a server's other requests would wait for. Prints two markdown tables; writes nothing.
 */
import { availableParallelism } from 'node:os';
import { BatchNorm, batchNorm, batchNormBackward, Pool } from '../src/index.js';
import { streamFloor } from '../src/floor.js';
import { planGrid } from '../src/plan.js';
import { longestHold, medianOf, sampleInRounds, type Timing } from './rounds.js';

/** E; two BatchNorm1d batches of 4096 features (inline, and on the workers); four of many features. */
const SHAPES: readonly (readonly [number, number])[] = [
  [4096, 1024], [16, 4096], [256, 4096], [64, 65536], [16, 262144], [32, 16384], [512, 65536],
];
/** Five alternating rounds of ~60 ms or 5 calls an item, as the full suite's rounds. */
const TIMING: Timing = { rounds: 5, time: 300, iterations: 25, warmupTime: 100 };
const threads = availableParallelism();
const pool = new Pool({ threads });

interface WideCase {
  readonly x: Float32Array;
  readonly dy: Float32Array;
  readonly out: Float32Array;
  readonly train: BatchNorm;
  readonly evalBn: BatchNorm;
}

/** A shape's arrays on `on` (x: a ramp over the channels plus noise; dy: noise), and a training and an eval module. */
function setUp(on: Pool, dims: readonly [number, number]): WideCase {
  const [N, C] = dims;
  const n = N * C;
  const x = on.alloc(n);
  const dy = on.alloc(n);
  const out = on.alloc(n);
  let seed = 1;
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    x[i] = (i % C) / C + seed / 2 ** 32 - 0.5;
    dy[i] = seed / 2 ** 31 - 1;
  }
  const train = new BatchNorm(C, { pool: on });
  const evalBn = new BatchNorm(C, { pool: on });
  evalBn.eval();
  return { x, dy, out, train, evalBn };
}

console.log(`| shape | grid | floor ms | training ms (÷ floor) | eval ms (÷ floor) | backward ms (÷ floor) |`);
console.log(`| --- | --- | ---: | ---: | ---: | ---: |`);
for (const dims of SHAPES) {
  const [N, C] = dims;
  const { x, dy, out, train, evalBn } = setUp(pool, dims);
  await train.forward(x, dims, { out });
  // The floor, training, eval, backward: the table's columns in order.
  const samples = await sampleInRounds([
    () => streamFloor(pool, x, out),
    () => train.forward(x, dims, { out }),
    () => evalBn.forward(x, dims, { out }),
    () => train.backward(dy, { out }),
  ], TIMING);
  const median = samples.map((s) => medianOf(s) ?? NaN);
  const grid = planGrid(N, C, 1);
  const gridText = grid.bands === 1 ? `${grid.nGroups} row groups` : `${grid.nGroups} x ${grid.bands} bands of ${grid.bandChannels}`;
  const cell = (i: number): string => `${median[i].toFixed(3)} (${(median[i] / median[0]).toFixed(2)})`;
  console.log(`| [${dims.join(', ')}] | ${gridText} | ${median[0].toFixed(3)} | ${cell(1)} | ${cell(2)} | ${cell(3)} |`);
  for (const a of [x, dy, out]) pool.free(a);
}
await pool.close();

/** Shapes for the event-loop table: per-channel work on the main thread grows with C. */
const LAG_SHAPES: readonly (readonly [number, number])[] = [[4096, 1024], [16, 262144], [2, 4194304]];
const LAG_CALLS = 7;

console.log();
console.log('Longest hold of the event loop during a call, 1 worker, median of 7 calls (ms):');
console.log();
console.log('| shape | training | eval | backward | synced training | synced backward | functional training | functional backward |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const single = new Pool({ threads: 1 });
for (const dims of LAG_SHAPES) {
  const { x, dy, out, train, evalBn } = setUp(single, dims);
  const saved = await batchNorm(x, dims, { training: true, pool: single, out });
  const calls = [
    () => train.forward(x, dims, { out }),
    () => evalBn.forward(x, dims, { out }),
    () => train.backward(dy, { out }),
    // SyncBatchNorm's forward with an all-reduce that answers at once: what the hook adds on
    // this thread (the local ChannelStats, the checks of the answer) beside a training call.
    () => train.forward(x, dims, { out, reduceStats: (local) => local }),
    // Its backward, with an all-reduce of the gradient sums that answers at once: the
    // coefficients of dx made again from the answer on this thread.
    () => train.backward(dy, { out, reduceGrads: (sums) => sums }),
    // New mean and var (and dWeight and dBias) every call, where the module copies into its own.
    () => batchNorm(x, dims, { training: true, pool: single, out }),
    () => batchNormBackward(x, dy, dims, { weight: train.weight!, mean: saved.mean, var: saved.var, pool: single, out }),
  ];
  // Warm-up: V8 optimizes the call path over the first calls.
  for (let r = 0; r < 3; r++) for (const call of calls) await call();
  const holds: number[][] = calls.map(() => []);
  for (let r = 0; r < LAG_CALLS; r++) {
    for (const [i, call] of calls.entries()) holds[i].push(await longestHold(call));
  }
  console.log(`| [${dims.join(', ')}] | ${holds.map((h) => (medianOf(h) ?? NaN).toFixed(2)).join(' | ')} |`);
  for (const a of [x, dy, out]) single.free(a);
}
await single.close();
