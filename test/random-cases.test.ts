/**
 * Random combinations of what the other suites test one axis at a time: rank 2-5, odd sizes,
 * either layout, both dtypes and kernels, ReLU, training or eval, affine or not, input and output
 * on the pool or not, and adversarial channels (large offset with a tiny spread, constant, a
 * spread of 1e-6, NaN, a first value 1e4 spreads out). Each case runs forward then backward
 * inline, on 2 workers through a pool too small to hold it (staging chunks), on 3 workers told
 * the cache holds 1 MiB (phased channel groups), on 3 workers through a smaller pool of 20 pages,
 * and on 3 workers of which a call takes one per 4096 elements (grainSize): all must agree bit for
 * bit, and the first must match the float64 reference within the tolerances of forward.test.ts
 * and backward.test.ts. A fixed seed keeps CI repeatable; `BNPOOL_RANDOM_CASES=2000` (and
 * `BNPOOL_RANDOM_SEED`) run a longer search locally.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BatchNorm, OutOfMemoryError, Pool } from '../dist/src/index.js';
import { planGrid, planPhases, smallestBox } from '../dist/src/plan.js';
import { scratchLayout } from '../dist/workers/scratch.js';
import { permute, rng, sameBits } from './helpers/data.js';
import { channelStats, dxErrorRatio, outputErrorRatio, referenceBackward, referenceForward } from './helpers/reference.js';

const CASES = Number(process.env.BNPOOL_RANDOM_CASES ?? 120);
const SEED = Number(process.env.BNPOOL_RANDOM_SEED ?? 1);
/** 120 s, and ~40 ms more a case for longer searches (5000 cases took over 120 s here). */
const TIMEOUT_MS = Math.max(120_000, CASES * 40);
/**
 * The staging pools' caps, by their index in a kernel's pools: inputs above ~1 MB (~0.6 MB) go
 * through them in chunks. The second, 20 pages and 3 workers, cuts other chunks than the first
 * (32 pages, 2 workers) and shares them among three tasks. (Neither caught, at seeds 1, 9013,
 * 9018 and 9019, the chunk that asked for 64 bytes too many, which seed 9012 found on the first and
 * test/faults.test.ts now pins.)
 */
const SMALL_POOL_BYTES: Readonly<Record<number, number>> = { 1: 1 << 21, 3: 20 * 65536 };
/** The 3-worker pool's `cacheBytes`. */
const CACHE_BYTES = 1 << 20;

let pools: Record<'js' | 'wasm', Pool[]>;
beforeAll(() => {
  const make = (kernel: 'js' | 'wasm'): Pool[] => [
    new Pool({ threads: 1, inlineThreshold: Number.MAX_SAFE_INTEGER, kernel }),
    new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: SMALL_POOL_BYTES[1], initialMemory: 1 << 17 }),
    // A 1 MiB cache budget sends plane-mode training of a few MB through the phased path.
    new Pool({ threads: 3, inlineThreshold: 0, grainSize: 1, kernel, cacheBytes: CACHE_BYTES }),
    new Pool({ threads: 3, inlineThreshold: 0, grainSize: 1, kernel, maxMemory: SMALL_POOL_BYTES[3], initialMemory: 1 << 16 }),
    // One thread per 4096 elements: calls of up to 4096 on one worker, up to 8192 on two.
    new Pool({ threads: 3, inlineThreshold: 0, grainSize: 4096, kernel }),
  ];
  pools = { js: make('js'), wasm: make('wasm') };
});
afterAll(() => Promise.all([...pools.js, ...pools.wasm].map((p) => p.close())));

type Kind = 'spread' | 'offset' | 'constant' | 'tiny' | 'nan' | 'outlier';

it(`${CASES} random cases match the float64 reference and agree across pools (seed ${SEED})`, async () => {
  const rand = rng(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  let checked = 0;
  let phasedCases = 0;
  let rowWalkCases = 0;
  let refused = 0;
  // Draws made again for a case that must take a path (below), in a row.
  let redraws = 0;
  for (let k = 0; k < CASES; k++) {
    // Every 25th case is drawn again until it takes the phased path (training over the 3-worker
    // pool's cache budget), and every 25th from the 13th until its eval walks the rows of planes
    // in address order: each path comes in a few draws of a hundred (seed 10's first 100 cases
    // held no phased one, and the count this test asserted then failed).
    const want = k % 25 === 0 ? 'phased' : k % 25 === 12 ? 'row walk' : null;
    const redraw = (): void => {
      expect(++redraws, `case ${k}: no ${want} case in 5000 draws`).toBeLessThan(5000);
      k--;
    };
    // One case in ten has the shape of the phased path: a few channels of long planes.
    const long = rand() < 0.1;
    // And one in ten planes of 1-8 Ki elements: plane mode with row groups of several rows, whose
    // eval walks the rows in address order (workers/plane-blocks.ts, normalizeInOrder).
    const mid = !long && rand() < 0.1;
    const rank = long || mid ? int(3, 4) : int(2, 5);
    const wide = rand();
    // Up to 4200 channels: eval and backward calls then make their parameters in up to three
    // prep claims (PREP_CHANNELS), shared by the tasks.
    const C = long ? int(2, 5) : mid ? int(1, 12) : wide < 0.1 ? int(100, 4200) : wide < 0.3 ? int(17, 70) : int(1, 16);
    const N = long ? int(6, 9) : mid ? int(2, 9) : int(1, 9);
    const spatial = long
      ? (rank === 3 ? [int(8193, 14000)] : [int(91, 120), int(91, 120)])
      : mid
      ? (rank === 3 ? [int(1024, 8192)] : [int(32, 90), int(32, 90)])
      : Array.from({ length: rank - 2 }, () => (rand() < 0.15 ? int(60, 300) : int(1, 19)));
    const S = spatial.reduce((a, b) => a * b, 1);
    const length = N * C * S;
    if (N * S < 2 || length > 400_000) {
      if (want !== null) redraw();
      continue;
    }
    const layout = mid ? 'channels-first' : pick(['channels-first', 'channels-last'] as const);
    const shape = layout === 'channels-first' ? [N, C, ...spatial] : [N, ...spatial, C];
    const dtype = pick(['float32', 'float64'] as const);
    const kernel = pick(['js', 'wasm'] as const);
    const relu = rand() < 0.3;
    const training = rand() < 0.7;
    const affine = rand() < 0.8;
    const grid = layout === 'channels-first' ? planGrid(N, C, S) : planGrid(N * S, C, 1);
    const phased = training && planPhases(grid, C, dtype === 'float32' ? 4 : 8, 3, CACHE_BYTES) !== null;
    const rowWalk = !training && grid.mode === 'plane' && grid.groupRows > 1;
    if ((want === 'phased' && !phased) || (want === 'row walk' && !rowWalk)) {
      redraw();
      continue;
    }
    redraws = 0;
    if (phased) phasedCases++;
    if (rowWalk) rowWalkCases++;
    const Array_ = dtype === 'float32' ? Float32Array : Float64Array;
    const channelOf = (i: number): number => (layout === 'channels-first' ? Math.floor(i / S) % C : i % C);

    const kinds = Array.from({ length: C }, (): Kind => pick(['spread', 'spread', 'offset', 'constant', 'tiny', 'nan', 'outlier']));
    const offsets = Array.from({ length: C }, () => (rand() - 0.5) * 10);
    const spreads = Array.from({ length: C }, () => 0.1 + rand() * 3);
    const seen = new Array<boolean>(C).fill(false);
    const values = Array.from({ length }, (_, i) => {
      const c = channelOf(i);
      const u = rand() - 0.5;
      // 'outlier': the channel's first value (the shift of its first block's sums) 1e4 spreads
      // out. (Several such values in one block, first among them, can sit under the far-shift
      // bound and keep the float32 lanes' cancellation: README, "Kernels", Statistics, Left.)
      const first = !seen[c];
      seen[c] = true;
      switch (kinds[c]) {
        case 'offset': return 3000 + u;
        case 'constant': return offsets[c];
        case 'tiny': return offsets[c] + u * 1e-6;
        case 'nan': return rand() < 0.1 ? NaN : offsets[c] + u * spreads[c];
        case 'outlier': return offsets[c] + (first ? 1e4 : u) * spreads[c];
        default: return offsets[c] + u * spreads[c];
      }
    });
    const x0 = Array_.from(values);
    const dy0 = Array_.from(Array.from({ length }, () => rand() - 0.5));
    const weight = Array.from({ length: C }, () => (0.5 + rand() * 2) * (rand() < 0.2 ? -1 : 1));
    const bias = Array.from({ length: C }, () => rand() - 0.5);
    const runningMean = Array.from({ length: C }, () => rand() - 0.5);
    const runningVar = Array.from({ length: C }, () => 0.5 + rand());
    const label = JSON.stringify({ k, shape, layout, dtype, kernel, relu, training, affine, kinds });

    const smallestChunk = smallestBox(grid);
    const runs: { y: Float32Array | Float64Array; dx: Float32Array | Float64Array }[] = [];
    for (const [p, pool] of pools[kernel].entries()) {
      const cap = SMALL_POOL_BYTES[p] as number | undefined;
      // A staging chunk holds at least one row group of the grid (README, "What copies"): the
      // 2 MiB pool cannot stage three (x, dy, mask) past ~80k float64 values, the 20-page one ~50k.
      if (cap !== undefined && smallestChunk * 8 * 3 > cap * 0.9) continue;
      // Pool arrays only where they leave the small pool room to stage the rest.
      const fits = cap === undefined || length * 8 * 2 <= cap / 2;
      const onPool = fits && rand() < 0.5;
      const x = onPool ? pool.alloc(length, dtype as 'float64') : new Array_(length);
      x.set(x0);
      const outKind = fits ? pick(['none', 'pool', 'plain'] as const) : pick(['none', 'plain'] as const);
      const out = outKind === 'pool' ? pool.alloc(length, dtype as 'float64') : outKind === 'plain' ? new Array_(length) : undefined;
      const bn = new BatchNorm(C, { pool, dtype, layout, affine, activation: relu ? 'relu' : null });
      if (affine) {
        bn.weight!.set(weight);
        bn.bias!.set(bias);
      }
      bn.runningMean!.set(runningMean);
      bn.runningVar!.set(runningVar);
      if (!training) bn.eval();
      let backward = false;
      try {
        const y = await bn.forward(x, shape, { out });
        backward = true;
        const { dx } = await bn.backward(dy0);
        runs.push({ y: Array_.from(y), dx: Array_.from(dx) });
      } catch (err) {
        // The small pool may refuse a call whose smallest chunk, once per staged array, does not
        // fit beside the call's scratch: only such a large one (README, "What copies"). The
        // forward stages x and its output (one chunk, in place) unless both are on the pool; the
        // backward dy, with its dx (a new array off the pool) in place over x's copy where x is
        // staged too and over dy's where x is on the pool, and the ReLU mask (the saved output)
        // unless out was on the pool.
        if (!(cap !== undefined && err instanceof OutOfMemoryError)) throw err;
        const staged = backward ? (onPool ? 1 : 2) + (relu && outKind !== 'pool' ? 1 : 0) : onPool && outKind === 'pool' ? 0 : 1;
        const need = smallestChunk * Array_.BYTES_PER_ELEMENT * staged + scratchLayout(grid, 0).totalBytes;
        expect(need, label).toBeGreaterThan(cap / 4);
        refused++;
      }
      if (onPool) pool.free(x);
      if (out !== undefined && outKind === 'pool') pool.free(out);
    }
    for (const r of runs.slice(1)) {
      expect(sameBits(r.y, runs[0].y), label).toBe(true);
      expect(sameBits(r.dx, runs[0].dx), label).toBe(true);
    }

    // The reference, channels-first in float64.
    const first = [N, C, ...spatial];
    const cf = (a: ArrayLike<number>): Float64Array => {
      const f64 = Float64Array.from(a);
      return layout === 'channels-first' ? f64 : permute(f64, first, true) as Float64Array;
    };
    const x = cf(x0);
    const y = cf(runs[0].y);
    const ref = referenceForward(x, first, {
      training, weight: affine ? weight : undefined, bias: affine ? bias : undefined, runningMean, runningVar,
    });
    // ReLU keeps NaN, as torch.relu does.
    const refY = relu ? ref.y.map((v) => (v > 0 || Number.isNaN(v) ? v : 0)) : ref.y;
    expect(outputErrorRatio(y, x, first, { ...ref, y: refY }, affine ? bias : null, dtype), label).toBeLessThanOrEqual(1);
    // Backward against PyTorch's formulas, dy zeroed where bnpool's own output is <= 0 (a NaN passes).
    const dy = relu ? cf(dy0).map((g, i) => (y[i] <= 0 ? 0 : g)) : cf(dy0);
    const stats = training ? channelStats(x, first) : { mean: Float64Array.from(runningMean), var: Float64Array.from(runningVar) };
    const invstd = stats.var.map((v) => 1 / Math.sqrt(v + 1e-5));
    const refDx = referenceBackward(x, dy, first, stats.mean, invstd, affine ? weight : null, training);
    expect(dxErrorRatio(cf(runs[0].dx), refDx, dy, x, first, dtype), label).toBeLessThanOrEqual(1);
    checked++;
  }
  expect(checked).toBeGreaterThan(CASES / 2);
  expect(phasedCases).toBeGreaterThanOrEqual(Math.ceil(CASES / 25));
  expect(rowWalkCases).toBeGreaterThanOrEqual(Math.ceil((CASES - 12) / 25));
  // Refusals by the small pools stay rare: the staging path is what they are there to test.
  expect(refused).toBeLessThanOrEqual(CASES / 20);
}, TIMEOUT_MS);
