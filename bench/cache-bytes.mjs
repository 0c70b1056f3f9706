// A benchmark shape's training forward, eval forward and backward (zero-copy: x, `out`, dy and
// dx from `pool.alloc`, float32, 2 threads) on pools that differ only in `cacheBytes`, the size
// below which a call makes its two passes over every channel at once and above which it goes a
// group of channels at a time (phased; src/plan.ts, planPhases), and above which (input and
// output together) rows of channels in lanes are normalized two at a time (Task.inOrder:
// `node bench/cache-bytes.mjs E default,1024` times E both ways), beside the floor, all alternated
// round by round in one process: what the default (DEFAULT_CACHE_BYTES) costs or saves on the
// machine at hand. Plain JavaScript: it imports a build's dist/ folder.
//
//     npm run build && node bench/cache-bytes.mjs [A|B|C|E|N,C,H,W] [MiB,MiB,...] [dist]
//
// Defaults: B, and 16, 64 and 256 MiB (B's 51 MB in one go). `default` in the list is a pool
// without the option: one barrier for every call, and 16 MiB for the in-order walk (src/engine.ts,
// phasesOf; Task.inOrder); a size given applies to all of them. A shape may
// also be given as its dimensions (channels-first, float32). Prints each pool's median ms and its
// ratio to the floor's median (the floor runs on the first pool's arrays). The pools' order
// matters here (one pool's calls ran up to 25% slower than another's with the same options, on
// A and E, which no size changes): run each comparison in both orders.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [id = 'B', list = '16,64,256', dir = 'dist'] = process.argv.slice(2);
const url = (file) => pathToFileURL(resolve(dir, file)).href;
const [{ BatchNorm, Pool }, { streamFloor }, { SHAPES, elementsOf, fillInput }] = await Promise.all([
  import(url('src/index.js')), import(url('src/floor.js')), import(url('bench/shapes.js')),
]);
const shape = id.includes(',') ? id.split(',').map(Number) : SHAPES.find((s) => s.id === id)?.shape;
if (shape === undefined) throw new Error(`shape: expected one of ${SHAPES.map((s) => s.id).join(', ')} or N,C,H,W; got ${id}`);
const n = elementsOf(shape);
const sizes = list.split(',').map((v) => (v === 'default' ? v : Number(v)));
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];

const runs = await Promise.all(sizes.map(async (mib) => {
  const pool = new Pool(mib === 'default' ? { threads: 2 } : { threads: 2, cacheBytes: mib * 2 ** 20 });
  const x = pool.alloc(n);
  fillInput(x, shape);
  const out = pool.alloc(n);
  const bn = new BatchNorm(shape[1], { pool });
  // The backward of a forward of its own, on the same pool: dy is x halved and shifted.
  const bw = new BatchNorm(shape[1], { pool });
  await bw.forward(x, shape, { out: pool.alloc(n) });
  const dy = pool.alloc(n);
  for (let i = 0; i < n; i++) dy[i] = x[i] * 0.5 - 0.25;
  const dx = pool.alloc(n);
  // Eval with the running statistics of a training forward.
  const ev = new BatchNorm(shape[1], { pool });
  await ev.forward(x, shape, { out });
  ev.eval();
  return {
    label: mib === 'default' ? 'cacheBytes not given' : `cacheBytes ${mib} MiB`, pool, x, out,
    fn: () => bn.forward(x, shape, { out }), eval: () => ev.forward(x, shape, { out }), backward: () => bw.backward(dy, { out: dx }),
  };
}));
const [first] = runs;
const fns = [
  ...runs.map((r) => [`${r.label}, training`, r.fn]), ...runs.map((r) => [`${r.label}, eval`, r.eval]),
  ...runs.map((r) => [`${r.label}, backward`, r.backward]),
  ['floor', () => streamFloor(first.pool, first.x, first.out)],
];
const calls = Math.max(5, Math.round(2e8 / (8 * n)));
const times = new Map(fns.map(([label]) => [label, []]));
for (let round = 0; round < 9; round++) {
  for (const [label, fn] of fns) {
    for (let i = 0; i < 2; i++) await fn();
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) await fn();
    times.get(label).push((performance.now() - t0) / calls);
  }
}
const floor = median(times.get('floor'));
console.log(`[${shape.join(', ')}] training forward, eval forward and backward, 2 threads, zero-copy: median ms of 9 rounds (÷ floor)`);
for (const [label, t] of times) console.log(`${label.padEnd(32)} ${median(t).toFixed(3).padStart(8)} ms  ${(median(t) / floor).toFixed(2)}`);
await Promise.all(runs.map((r) => r.pool.close()));
