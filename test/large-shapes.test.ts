/**
 * Shapes whose smallest staging box passes PIPELINE_CHUNK_ELEMENTS (a plane of over 1M elements,
 * a row group of a wide rank-2 tensor), which the other suites' sizes never reach: an eval from an
 * ordinary x on a pool that left the calling thread a core threw an OutOfMemoryError on them with
 * gigabytes free (fixed in ce32e96). Each case runs a training forward, its backward, an eval and
 * its backward, and the statistics, from ordinary arrays on pools of one worker (pipelined where
 * a core is free) and of two, and must give the bits of zero-copy calls on two workers. Two fixed
 * shapes run by default; `BNPOOL_LARGE_CASES=n` (and `BNPOOL_LARGE_SEED`) add random large
 * cases (ranks 2-5, both layouts and dtypes, ReLU; every third with a box past the pipelined
 * chunk), ~1-3 s each here.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BatchNorm, ChannelStats, Pool } from '../dist/src/index.js';
import { PIPELINE_CHUNK_ELEMENTS } from '../dist/src/placement.js';
import { planGrid, smallestBox } from '../dist/src/plan.js';
import { checkShape } from '../dist/src/validate.js';
import { randomTensor, rng, sameBits } from './helpers/data.js';

const CASES = Number(process.env.BNPOOL_LARGE_CASES ?? 0);
const SEED = Number(process.env.BNPOOL_LARGE_SEED ?? 1);

type Layout = 'channels-first' | 'channels-last';
type Dtype = 'float32' | 'float64';
interface Case { shape: number[]; layout: Layout; dtype: Dtype; relu: boolean }

let reference: Pool;
let pools: Pool[];
beforeAll(() => {
  reference = new Pool({ threads: 2, inlineThreshold: 0 });
  pools = [new Pool({ threads: 1, inlineThreshold: 0 }), new Pool({ threads: 2, inlineThreshold: 0 })];
});
afterAll(() => Promise.all([reference, ...pools].map((p) => p.close())));

/** Training forward, backward, eval, eval backward and the statistics of a module on `pool`. */
async function results(pool: Pool, c: Case, x: Float32Array | Float64Array, dy: Float32Array | Float64Array): Promise<ArrayLike<number>[]> {
  const C = c.layout === 'channels-last' ? c.shape[c.shape.length - 1] : c.shape[1];
  const onPool = pool === reference;
  const allocated: (Float32Array | Float64Array)[] = [];
  const put = (a: Float32Array | Float64Array): Float32Array | Float64Array => {
    if (!onPool) return a;
    const p = pool.alloc(a.length, c.dtype);
    p.set(a);
    allocated.push(p);
    return p;
  };
  const [xs, dys] = [put(x), put(dy)];
  const Type = c.dtype === 'float64' ? Float64Array : Float32Array;
  // Ordinary calls write an ordinary `out` (copied on the calling thread) or a fresh output.
  const out = (): { out?: Float32Array | Float64Array } => (onPool ? { out: put(new Type(x.length)) } : { out: new Type(x.length) });
  const bn = new BatchNorm(C, { pool, layout: c.layout, dtype: c.dtype, activation: c.relu ? 'relu' : null });
  const got: ArrayLike<number>[] = [];
  got.push((await bn.forward(xs, c.shape, out())).slice());
  got.push((await bn.backward(dys)).dx.slice());
  bn.eval();
  got.push((await bn.forward(xs, c.shape, onPool ? out() : {})).slice());
  got.push((await bn.backward(dys, out())).dx.slice());
  const stats = await ChannelStats.fromBatch(xs, c.shape, { pool, layout: c.layout });
  got.push(stats.mean(), stats.variance());
  for (const a of allocated) pool.free(a);
  return got;
}

async function check(c: Case, seed: number): Promise<void> {
  const x = randomTensor(c.shape, c.dtype, seed);
  const dy = randomTensor(c.shape, c.dtype, seed + 1);
  const want = await results(reference, c, x, dy);
  for (const pool of pools) {
    const got = await results(pool, c, x, dy);
    const label = `[${c.shape}] ${c.layout} ${c.dtype}${c.relu ? ' relu' : ''}, ${pool.threads} worker(s)`;
    got.forEach((values, i) => expect(sameBits(values, want[i]), `${label}, result ${i}`).toBe(true));
  }
}

it('a plane of 1.2M elements and a row group of 2.1M (two channels-first shapes): the bits of zero-copy calls', async () => {
  const cases: Case[] = [
    { shape: [2, 3, 1200, 1000], layout: 'channels-first', dtype: 'float32', relu: false },
    { shape: [6, 700_000], layout: 'channels-first', dtype: 'float32', relu: true },
  ];
  for (const c of cases) {
    const dims = checkShape(c.shape, c.shape.reduce((a, b) => a * b, 1));
    expect(smallestBox(planGrid(dims.N, dims.C, dims.S))).toBeGreaterThan(PIPELINE_CHUNK_ELEMENTS);
    await check(c, c.shape.length * 10);
  }
}, 120_000);

it.runIf(CASES > 0)(`${CASES} random large cases (seed ${SEED}): the bits of zero-copy calls`, async () => {
  const rand = rng(SEED);
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  let large = 0;
  // Every third case is one whose smallest box passes a pipelined chunk, drawn again until it is:
  // in ~30% of the seeds 1-40 the generator made none in 15 cases (seed 11 among them).
  let draws = 0;
  for (let k = 0; k < CASES; k++) {
    const wantLarge = k % 3 === 0;
    const rank = int(2, 5);
    const layout: Layout = rand() < 0.35 ? 'channels-last' : 'channels-first';
    const dtype: Dtype = rand() < 0.3 ? 'float64' : 'float32';
    const C = rand() < 0.2 ? int(100_000, 1_200_000) : int(1, 64);
    const target = int(1_000_000, 5_000_000);
    const inner = Array.from({ length: rank - 2 }, () => int(1, 40));
    // Few samples and a long last dimension (a large plane), or many samples of a small one.
    let N = Math.max(1, Math.round(target / (C * inner.reduce((a, b) => a * b, 1))));
    if (rank > 2 && rand() < 0.6) {
      N = int(1, 8);
      inner[inner.length - 1] = Math.max(1, Math.round(target / (N * C * inner.slice(0, -1).reduce((a, b) => a * b, 1))));
    }
    const shape = layout === 'channels-last' ? [N, ...inner, C] : [N, C, ...inner];
    const length = shape.reduce((a, b) => a * b, 1);
    // A training forward needs two values a channel; keep a case within ~50 MB of float64.
    if (length / C < 2 || length > 6_000_000) {
      k--;
      continue;
    }
    const dims = checkShape(shape, length, undefined, layout);
    const isLarge = smallestBox(planGrid(dims.N, dims.C, dims.S)) > PIPELINE_CHUNK_ELEMENTS;
    if (wantLarge && !isLarge) {
      // The generator makes one in ~10 draws; a thousand without one means it no longer does.
      expect(++draws, `case ${k}: no shape with a box past ${PIPELINE_CHUNK_ELEMENTS} elements in 1000 draws`).toBeLessThan(1000);
      k--;
      continue;
    }
    draws = 0;
    if (isLarge) large++;
    await check({ shape, layout, dtype, relu: rand() < 0.3 }, 1000 + k);
  }
  // The search is for boxes past a pipelined chunk: a third of the cases at least.
  expect(large).toBeGreaterThanOrEqual(Math.ceil(CASES / 3));
}, Math.max(120_000, CASES * 10_000));
