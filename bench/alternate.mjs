// Two builds of bnpool in one process, their calls alternated round by round, so that both see
// the same stretch of this noisy machine: prints each build's median and B's ÷ A's. This is how
// the README's "after ÷ before" tables of plain-array calls were measured. Plain JavaScript (not
// built by tsc): it imports the two builds' dist/ folders, each loading its own workers.
//
//     git worktree add /tmp/before <rev> && (cd /tmp/before && ln -s "$PWD/../main/node_modules" . && npm run build)
//     npm run build && node bench/alternate.mjs /tmp/before/dist dist <scenario>
//
// Scenarios (x always an ordinary Float32Array; run once in each order to see the noise, or with
// PAIRED=1 for single calls in pairs and an interval: see `alternate`; WARM=n and CALLS=n set
// the untimed and timed calls of a build's turn in a round, for all of a scenario's calls: long
// turns, as tinybench's samples of one implementation, let a build's arrays settle in the caches
// of the threads that work on them):
//   inline    2 workers, inline sizes, eval / training / forward + backward, ordinary `out`
//             ("Small inputs"); FRESH=1 for no `out`
//   eval      1 worker, eval, fresh / ordinary / pool output ("What copies")
//   train     1 worker, training forward, fresh / ordinary / pool output
//   backward  1 worker, backward after a training forward on x, dx fresh / into an ordinary `out`
//   constant  2 workers, zero-copy backward (x, dy, dx on the pool) after a training forward, with
//             no constant channel and with a quarter of the channels constant at 0 (the float32
//             backward checks such channels' products for all-zero: bench/DESIGN.md, "Kernels")
//   lanes     2 workers, zero-copy statistics (ChannelStats.fromBatch), eval, training forward and
//             backward of channels in lanes: channels-last
//             [32, 112, 112, 64] (A's NHWC) and [64, 56, 56, 256], rank 2 [16384, 256] and E
//             [4096, 1024] (how whole rows are walked: README, "Kernels")
//   planes    the same calls as `lanes` on benchmark shapes A, B and C (channels first), or on
//             the shapes in SHAPES ('64,64,32,32;32,256,56,56')
//   eval-backward  2 workers, zero-copy backward after an eval forward, affine and not, of the
//             shapes in SHAPES (default [64, 64, 32, 32], A, B, C and E)
//   fused     2 workers, zero-copy training forward and backward of A [32, 64, 112, 112] (fused
//             tasks: how they claim channels, bench/MACHINES.md), or of the shapes in SHAPES
//             ('32,64,56,56;8,32,256,256'); BUSY=1 keeps the calling
//             thread busy 0.5 ms of every ~1.5 meanwhile (a server at work)
//   concurrent  2 workers, each call on one (grainSize): two modules' calls at once, as a server's
//             requests come, training and eval forwards with x an ordinary array into an
//             ordinary `out` (the copies in pipelined where a core is free, the tasks waiting
//             for them), and zero-copy training forwards (where a one-task call never waits), of
//             the shapes in SHAPES (default [2, 4, 512, 512]); POOL_THREADS, CALL_THREADS and
//             MODULES set the pool's workers, each call's share of them and the calls at once
//             (for machines of more cores: POOL_THREADS=16 CALL_THREADS=8 MODULES=2)
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dirA, dirB, scenario] = process.argv.slice(2);
if (scenario === undefined) throw new Error('usage: node bench/alternate.mjs DIST_A DIST_B inline|eval|train|backward|constant|lanes|planes|eval-backward|fused|concurrent');
const builds = await Promise.all([dirA, dirB].map((d) => import(pathToFileURL(resolve(d, 'src/index.js')).href)));
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const random = (n, scale, shift) => new Float32Array(n).map(() => Math.random() * scale + shift);
/** The shapes in SHAPES ('N,C,H,W;N,C,...'), or `defaults` (the same form) without it. */
const shapesOf = (defaults) => (process.env.SHAPES ?? defaults).split(';').map((d) => d.split(',').map(Number));

/**
 * Each build's median ms of `calls` calls a round, alternated for `rounds` rounds, after `warm`
 * warm-up calls. The builds take turns going first in a round, so that neither is always the one
 * that follows the other's calls.
 *
 * PAIRED=1: the same number of calls, but one call of each build a round (order alternating), each
 * call timed: the medians are of single calls, and B's ÷ A's is also given as the median of the
 * pairs' ratios with a bootstrap 95% interval. Neighbouring calls share a stretch of the machine
 * (its memory speed drifts over seconds), so the pairs cancel the drift that rounds of many calls
 * average over. The interval covers the calls' noise, not the pools': an A/A run (dist against
 * itself, planes, 2026-12-02 ~21:55 UTC) gave intervals that left out 1 for 3 of 12 calls ([0.80,
 * 0.93] for C's statistics, [0.71, 0.96] for C's backward, [1.03, 1.11] for B's statistics): two
 * pools of one build, each with its own arrays, can differ by 10-20% on a call (where their
 * memory lies, presumably). So read an interval beside an A/A run of the same scenario, and in
 * both orders (fresh pools).
 */
async function alternate(fns, rounds, calls, warm) {
  calls = Number(process.env.CALLS ?? calls);
  warm = Number(process.env.WARM ?? warm);
  const times = fns.map(() => []);
  if (process.env.PAIRED === '1') {
    for (const f of fns) for (let i = 0; i < warm * rounds; i++) await f();
    for (let pair = 0; pair < rounds * calls; pair++) {
      for (const [k, f] of (pair % 2 === 0 ? [...fns.entries()] : [...fns.entries()].reverse())) {
        const t0 = performance.now();
        await f();
        times[k].push(performance.now() - t0);
      }
    }
    const ratios = times[1].map((t, i) => t / times[0][i]);
    const result = times.map(median);
    result.ratio = { median: median(ratios), ...bootstrapInterval(ratios) };
    return result;
  }
  for (let round = 0; round < rounds; round++) {
    for (const [k, f] of (round % 2 === 0 ? [...fns.entries()] : [...fns.entries()].reverse())) {
      for (let i = 0; i < warm; i++) await f();
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) await f();
      times[k].push((performance.now() - t0) / calls);
    }
  }
  return times.map(median);
}

/** A 95% interval of the median of `values`: the 2.5th and 97.5th percentiles of 2000 resamples' medians. */
function bootstrapInterval(values) {
  let seed = 1;
  const next = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const medians = Array.from({ length: 2000 }, () => median(values.map(() => values[Math.floor(next() * values.length)])));
  medians.sort((x, y) => x - y);
  return { lo: medians[Math.floor(0.025 * medians.length)], hi: medians[Math.floor(0.975 * medians.length)] };
}

function report(label, result, unit) {
  const [a, b] = result;
  const scale = unit === 'µs' ? 1000 : 1;
  const paired = result.ratio === undefined ? '' : `  paired ${result.ratio.median.toFixed(2)} [${result.ratio.lo.toFixed(2)}, ${result.ratio.hi.toFixed(2)}]`;
  console.log(label.padEnd(40), `${(a * scale).toFixed(2)}`.padStart(9), `${(b * scale).toFixed(2)}`.padStart(9), unit, (b / a).toFixed(2) + paired);
}

const threads = ['inline', 'constant', 'lanes', 'planes', 'fused', 'eval-backward'].includes(scenario) ? 2 : 1;
// `concurrent` makes pools of its own, shape by shape.
const pools = scenario === 'concurrent' ? [] : builds.map((m) => new m.Pool({ threads, inlineThreshold: scenario === 'inline' ? undefined : 0 }));

if (scenario === 'inline') {
  for (const shape of [[2, 16], [8, 16, 16, 16], [8, 16, 32, 32], [1, 3, 224, 224], [4, 3, 224, 224]]) {
    const n = shape.reduce((a, b) => a * b);
    const x = random(n, 3, -1);
    const dy = random(n, 1, -0.5);
    const calls = Math.max(20, Math.min(2000, Math.round(3e7 / n / 8)));
    for (const mode of ['eval', 'train', 'backward']) {
      const fns = builds.map((m, k) => {
        const bn = new m.BatchNorm(shape[1], { pool: pools[k] });
        if (mode === 'eval') bn.eval();
        const out = process.env.FRESH ? undefined : new Float32Array(n);
        const dx = process.env.FRESH ? undefined : new Float32Array(n);
        if (mode === 'backward') return async () => { await bn.forward(x, shape, { out }); await bn.backward(dy, { out: dx }); };
        return () => bn.forward(x, shape, { out });
      });
      report(`[${shape}] ${mode}`, await alternate(fns, 9, calls, 20), 'µs');
    }
  }
} else if (scenario === 'constant') {
  for (const shape of [[32, 64, 56, 56], [256, 256, 14, 14], [4096, 1024]]) {
    const n = shape.reduce((a, b) => a * b);
    const C = shape[1];
    const S = n / shape[0] / C;
    for (const constant of [0, C / 4]) {
      const xs = random(n, 2, -0.5);
      for (let i = 0; i < n; i++) if (Math.floor(i / S) % C < constant) xs[i] = 0;
      const dys = random(n, 1, -0.5);
      const fns = await Promise.all(builds.map(async (m, k) => {
        const [x, dy, dx] = [0, 1, 2].map(() => pools[k].alloc(n));
        x.set(xs);
        dy.set(dys);
        const bn = new m.BatchNorm(C, { pool: pools[k] });
        await bn.forward(x, shape, { out: pools[k].alloc(n) }); // the backward's statistics, once
        return () => bn.backward(dy, { out: dx });
      }));
      report(`[${shape}] ${constant ? `${constant} of ${C} channels constant` : 'no constant channel'}`, await alternate(fns, 15, 10, 1), 'ms');
    }
  }
} else if (scenario === 'lanes' || scenario === 'planes') {
  const cases = scenario === 'lanes'
    ? [[[32, 112, 112, 64], 'channels-last'], [[64, 56, 56, 256], 'channels-last'], [[16384, 256], 'channels-first'], [[4096, 1024], 'channels-first']]
    : shapesOf('32,64,112,112;256,256,14,14;64,3,224,224').map((shape) => [shape, 'channels-first']);
  for (const [shape, layout] of cases) {
    const n = shape.reduce((a, b) => a * b);
    const xs = random(n, 3, -1);
    for (const mode of ['stats', 'eval', 'train', 'backward']) {
      const fns = await Promise.all(builds.map(async (m, k) => {
        const x = pools[k].alloc(n);
        x.set(xs);
        const out = pools[k].alloc(n);
        const bn = new m.BatchNorm(layout === 'channels-last' ? shape.at(-1) : shape[1], { pool: pools[k], layout });
        if (mode === 'stats') return () => m.ChannelStats.fromBatch(x, shape, { pool: pools[k], layout });
        if (mode === 'train') return () => bn.forward(x, shape, { out });
        await bn.forward(x, shape, { out }); // running statistics that are not the defaults, or the backward's
        if (mode === 'eval') {
          bn.eval();
          return () => bn.forward(x, shape, { out });
        }
        const dy = pools[k].alloc(n);
        dy.set(xs.map((v) => v * 0.5 - 0.25));
        const dx = pools[k].alloc(n);
        return () => bn.backward(dy, { out: dx });
      }));
      report(`[${shape}] ${layout} ${mode}`, await alternate(fns, 9, Math.max(3, Math.round(2e8 / (8 * n))), 1), 'ms');
    }
  }
} else if (scenario === 'eval-backward') {
  // A module's backward after an eval forward, affine and not (dx = weight·invstd·dy; the sums
  // for dWeight and dBias with affine), zero-copy, on the shapes in SHAPES.
  const shapes = shapesOf('64,64,32,32;32,64,112,112;256,256,14,14;64,3,224,224;4096,1024');
  for (const shape of shapes) {
    const n = shape.reduce((a, b) => a * b);
    const xs = random(n, 3, -1);
    const dys = random(n, 1, -0.5);
    for (const affine of [true, false]) {
      const fns = await Promise.all(builds.map(async (m, k) => {
        const [x, out, dy, dx] = [0, 1, 2, 3].map(() => pools[k].alloc(n));
        x.set(xs);
        dy.set(dys);
        const bn = new m.BatchNorm(shape[1], { pool: pools[k], affine });
        await bn.forward(x, shape, { out }); // running statistics that are not the defaults
        bn.eval();
        await bn.forward(x, shape, { out });
        return () => bn.backward(dy, { out: dx });
      }));
      report(`[${shape}] eval backward${affine ? '' : ', affine false'}`, await alternate(fns, 9, Math.max(3, Math.round(2e8 / (8 * n))), 1), 'ms');
    }
  }
} else if (scenario === 'fused') {
  let busy = process.env.BUSY === '1';
  const load = () => {
    if (!busy) return;
    const t0 = performance.now();
    while (performance.now() - t0 < 0.5);
    setTimeout(load, 1);
  };
  setTimeout(load, 1);
  const shapes = shapesOf('32,64,112,112');
  for (const shape of shapes) {
    const n = shape.reduce((a, b) => a * b);
    const xs = random(n, 3, -1);
    for (const mode of ['train', 'backward']) {
      const fns = await Promise.all(builds.map(async (m, k) => {
        const x = pools[k].alloc(n);
        x.set(xs);
        const out = pools[k].alloc(n);
        const bn = new m.BatchNorm(shape[1], { pool: pools[k] });
        if (mode === 'train') return () => bn.forward(x, shape, { out });
        await bn.forward(x, shape, { out });
        const dy = pools[k].alloc(n);
        dy.set(xs.map((v) => v * 0.5 - 0.25));
        const dx = pools[k].alloc(n);
        return () => bn.backward(dy, { out: dx });
      }));
      report(`[${shape}] ${mode}${busy ? ', calling thread busy' : ''}`, await alternate(fns, 9, 8, 2), 'ms');
    }
  }
  busy = false;
} else if (scenario === 'concurrent') {
  const poolThreads = Number(process.env.POOL_THREADS ?? 2);
  const callThreads = Number(process.env.CALL_THREADS ?? 1);
  const modules = Number(process.env.MODULES ?? 2);
  for (const shape of shapesOf('2,4,512,512')) {
    const n = shape.reduce((a, b) => a * b);
    // Each call on `callThreads` of the pool's workers, by the grain.
    const shapePools = builds.map((m) => new m.Pool({ threads: poolThreads, inlineThreshold: 0, grainSize: Math.ceil(n / callThreads) }));
    const xs = Array.from({ length: modules }, (_, k) => random(n, 3 - k / modules, k / modules - 1));
    for (const mode of ['train', 'eval', 'train zero-copy']) {
      const fns = builds.map((m, k) => {
        const calls = xs.map((values) => {
          const bn = new m.BatchNorm(shape[1], { pool: shapePools[k] });
          if (mode === 'eval') bn.eval();
          if (mode !== 'train zero-copy') {
            const out = new Float32Array(n);
            return () => bn.forward(values, shape, { out });
          }
          const [x, out] = [shapePools[k].alloc(n), shapePools[k].alloc(n)];
          x.set(values);
          return () => bn.forward(x, shape, { out });
        });
        return () => Promise.all(calls.map((call) => call()));
      });
      const label = `[${shape}] ${mode}, ${modules} at once, ${callThreads} of ${poolThreads} workers each`;
      report(label, await alternate(fns, 9, 5, 1), 'ms');
    }
    await Promise.all(shapePools.map((p) => p.close()));
  }
} else {
  for (const shape of [[16, 3, 224, 224], [32, 64, 56, 56], [32, 64, 112, 112]]) {
    const n = shape.reduce((a, b) => a * b);
    const x = random(n, 3, -1);
    const dy = random(n, 1, -0.5);
    const kinds = scenario === 'backward' ? ['fresh', 'ordinary out'] : ['fresh', 'ordinary out', 'pool out'];
    for (const kind of kinds) {
      const fns = await Promise.all(builds.map(async (m, k) => {
        const bn = new m.BatchNorm(shape[1], { pool: pools[k] });
        const out = kind === 'ordinary out' ? new Float32Array(n) : kind === 'pool out' ? pools[k].alloc(n) : undefined;
        if (scenario === 'backward') {
          await bn.forward(x, shape, { out: pools[k].alloc(n) });
          return () => bn.backward(dy, { out });
        }
        if (scenario === 'eval') bn.eval();
        return () => bn.forward(x, shape, { out });
      }));
      report(`[${shape}] ${scenario} ${kind}`, await alternate(fns, 7, 4, 1), 'ms');
    }
  }
}
await Promise.all(pools.map((p) => p.close()));
