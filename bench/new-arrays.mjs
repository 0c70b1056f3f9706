// The longest the event loop is held in one piece during functional calls over many channels,
// whose per-channel results (mean and var; dWeight and dBias) are new arrays every call: each
// kind of call made six times in a row (the median of the last five), on a pool of one worker
// (so that the calling thread has a core of its own), x, dy and out on the pool. A new array's
// first writes are page faults where the allocator hands out fresh memory, as it did here call
// after call; `npm run bench:wide` interleaves its kinds of call, and there the memory was
// reused. README, "How the work is split".
//
//     npm run build && node bench/new-arrays.mjs [C] [another build's dist]
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const C = Number(process.argv[2] ?? 4194304);
// The product from `dist` (another build's, to compare), the measurement from this build's.
const dist = resolve(process.argv[3] ?? join(root, 'dist'));
const [{ batchNorm, batchNormBackward, Pool }, { longestHold }] = await Promise.all([
  import(pathToFileURL(join(dist, 'src/index.js')).href), import(pathToFileURL(join(root, 'dist/bench/rounds.js')).href),
]);

const N = 2;
const shape = [N, C];
const pool = new Pool({ threads: 1 });
await pool.ready;
const [x, dy, out, dx] = [0, 1, 2, 3].map(() => pool.alloc(N * C));
for (let i = 0; i < x.length; i++) {
  x[i] = Math.sin(i) * 3 + (i % 5);
  dy[i] = Math.cos(i);
}
const weight = new Float32Array(C).fill(1.5);
const runningMean = new Float32Array(C);
const runningVar = new Float32Array(C).fill(1);
const saved = await batchNorm(x, shape, { training: true, pool, out });

/** The longest hold while `call` runs (longestHold, bench/rounds.ts), and the call's time, in ms. */
async function hold(call) {
  const start = performance.now();
  const longest = await longestHold(call);
  return [longest, performance.now() - start];
}

const calls = {
  'training (new mean and var)': () => batchNorm(x, shape, { training: true, pool, out }),
  'eval (new mean and var)': () => batchNorm(x, shape, { training: false, runningMean, runningVar, pool, out }),
  'backward (new dWeight and dBias)': () => batchNormBackward(x, dy, shape, { weight, mean: saved.mean, var: saved.var, pool, out: dx }),
};
console.log(`[${shape.join(', ')}], 1 worker, ${new Date().toISOString()}`);
console.log('| call | longest hold ms | call ms |');
console.log('| --- | ---: | ---: |');
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
for (const [name, call] of Object.entries(calls)) {
  await call();
  const runs = [];
  for (let i = 0; i < 5; i++) runs.push(await hold(call));
  console.log(`| ${name} | ${median(runs.map((r) => r[0])).toFixed(1)} | ${median(runs.map((r) => r[1])).toFixed(1)} |`);
}
await pool.close();
