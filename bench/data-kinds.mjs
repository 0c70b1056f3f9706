// Two builds' zero-copy training forwards (2 threads, float32) on data of one kind, single calls
// in pairs whose order alternates: what a change to the statistics' ways out (README, "Kernels",
// Statistics) costs on data that take them more or less often. Kinds: `gauss` (normal), `relu`
// (95% zeros, the rest exponential: a sparse ReLU output), `laplace`. Prints each build's median
// and B's ÷ A's as the median of the pairs' ratios with its quartiles. Plain JavaScript: it
// imports the two builds' dist/ folders.
//
//     npm run build && node bench/data-kinds.mjs BEFORE/dist dist [gauss|relu|laplace] [N,C,H,W]
//
// PAIRS=n sets the number of pairs (default 100). Run both orders: one build's pool can be
// faster than another's by its memory alone (bench/alternate.mjs).
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dirA, dirB, kind = 'gauss', shapeArg = '32,64,112,112'] = process.argv.slice(2);
if (dirB === undefined || !['gauss', 'relu', 'laplace'].includes(kind)) {
  throw new Error('usage: node bench/data-kinds.mjs DIST_A DIST_B [gauss|relu|laplace] [N,C,H,W]');
}
const shape = shapeArg.split(',').map(Number);
const n = shape.reduce((a, b) => a * b);
const builds = await Promise.all([dirA, dirB].map((d) => import(pathToFileURL(resolve(d, 'src/index.js')).href)));
let seed = 1;
const uniform = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed + 0.5) / 2 ** 32;
};
const data = new Float32Array(n);
for (let i = 0; i < n; i++) {
  if (kind === 'gauss') data[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  else if (kind === 'relu') data[i] = uniform() < 0.05 ? -Math.log(uniform()) : 0;
  else data[i] = (uniform() < 0.5 ? 1 : -1) * Math.log(uniform());
}
const fns = await Promise.all(builds.map(async (m) => {
  const pool = new m.Pool({ threads: 2 });
  const x = pool.alloc(n);
  x.set(data);
  const out = pool.alloc(n);
  const bn = new m.BatchNorm(shape[1], { pool });
  return { pool, call: () => bn.forward(x, shape, { out }) };
}));
for (const f of fns) for (let i = 0; i < 5; i++) await f.call();
const times = [[], []];
const ratios = [];
for (let i = 0; i < Number(process.env.PAIRS ?? 100); i++) {
  const took = [0, 0];
  for (const k of i % 2 ? [1, 0] : [0, 1]) {
    const t0 = performance.now();
    await fns[k].call();
    took[k] = performance.now() - t0;
  }
  times[0].push(took[0]);
  times[1].push(took[1]);
  ratios.push(took[1] / took[0]);
}
const sorted = (a) => [...a].sort((p, q) => p - q);
const at = (a, f) => sorted(a)[Math.floor(a.length * f)];
console.log(
  `[${shape}] ${kind} training: A ${at(times[0], 0.5).toFixed(3)} ms, B ${at(times[1], 0.5).toFixed(3)} ms, ` +
  `B ÷ A paired median ${at(ratios, 0.5).toFixed(3)} (quartiles ${at(ratios, 0.25).toFixed(2)}-${at(ratios, 0.75).toFixed(2)})`,
);
await Promise.all(fns.map((f) => f.pool.close()));
