// What a process's first pool costs its event loop: `new Pool()`, then a first small call
// ([8, 16, 32, 32], inline, ordinary arrays), in a fresh process each run. Prints how long the
// constructor took, when the first call resolved, and every turn of the event loop over 5 ms
// (length @ ms after `new Pool` began), measured by a 1 ms interval timer. Plain JavaScript, like
// alternate.mjs, so that it runs any build:
//
//     npm run build && for i in 1 2 3; do node bench/startup.mjs dist; done
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.argv[2] ?? 'dist';
const { Pool, BatchNorm } = await import(pathToFileURL(resolve(dir, 'src/index.js')).href);
const shape = [8, 16, 32, 32];
const x = new Float32Array(8 * 16 * 32 * 32).map(() => Math.random());
const out = new Float32Array(x.length);
const turns = [];
let last = performance.now();
const timer = setInterval(() => {
  const now = performance.now();
  turns.push([now - last, now]);
  last = now;
}, 1);
await new Promise((r) => setTimeout(r, 20));
const t0 = performance.now();
const pool = new Pool({ threads: 2 });
const t1 = performance.now();
await new BatchNorm(16, { pool }).forward(x, shape, { out });
const t2 = performance.now();
await new Promise((r) => setTimeout(r, 20));
clearInterval(timer);
const long = turns.filter(([gap, at]) => at > t0 && gap > 5).map(([gap, at]) => `${gap.toFixed(1)}@${(at - t0).toFixed(0)}`);
console.log(`new Pool ${(t1 - t0).toFixed(1)} ms, first call resolved at ${(t2 - t0).toFixed(1)} ms, turns over 5 ms: ${long.join(' ') || 'none'}`);
await pool.close();
