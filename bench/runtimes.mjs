// The bits of the build's results, hashed, to compare runtimes: run it under each (Node 20 to 26,
// Deno, Bun) and the last line's hash must be the same. Training forward with fused ReLU, backward,
// eval forward, ChannelStats and the functional forward, of seeded data with a large offset, on both
// kernels, both dtypes, channels first and last, ranks 2 to 5, on two workers and inline. Plain
// JavaScript over dist/ (`npm run build` first).
//
//     node bench/runtimes.mjs
//     /path/to/node-26/bin/node bench/runtimes.mjs
//     deno run -A --node-modules-dir=manual bench/runtimes.mjs
import { createHash } from 'node:crypto';
import { BatchNorm, batchNorm, ChannelStats, Pool } from '../dist/src/index.js';

const hash = createHash('sha256');
let results = 0;
const add = (a) => {
  results++;
  hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
};
let seed = 12345;
const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const cases = [
  [[8, 16, 33, 31], 'float32', 'channels-first'], [[4, 3, 17, 64, 5], 'float64', 'channels-first'],
  [[4096, 64], 'float32', 'channels-first'], [[3, 5], 'float64', 'channels-first'],
  [[6, 9, 11, 7], 'float32', 'channels-last'], [[40, 33, 5], 'float64', 'channels-last'],
];
const runtime = typeof Deno === 'object' ? `deno ${Deno.version.deno}` : typeof Bun === 'object' ? `bun ${Bun.version}` : `node ${process.version}`;
for (const kernel of ['wasm', 'js']) {
  for (const inlineThreshold of [0, Number.MAX_SAFE_INTEGER]) {
    const pool = new Pool({ threads: 2, kernel, inlineThreshold, grainSize: 1 });
    await pool.ready;
    for (const [shape, dtype, layout] of cases) {
      const n = shape.reduce((a, b) => a * b, 1);
      const channels = layout === 'channels-last' ? shape.at(-1) : shape[1];
      const x = pool.alloc(n, dtype);
      for (let i = 0; i < n; i++) x[i] = 1000 + rand() * 3 - (i % 7) * 0.01;
      const bn = new BatchNorm(channels, { pool, dtype, layout, activation: 'relu' });
      for (let c = 0; c < channels; c++) bn.weight[c] = 0.5 + rand();
      add(await bn.forward(x, shape));
      add(bn.runningMean);
      add(bn.runningVar);
      const dy = pool.alloc(n, dtype);
      for (let i = 0; i < n; i++) dy[i] = rand() - 0.5;
      const { dx, dWeight, dBias } = await bn.backward(dy);
      add(dx);
      add(dWeight);
      add(dBias);
      bn.eval();
      add(await bn.forward(x, shape));
      const stats = await ChannelStats.fromBatch(x, shape, { pool, layout });
      add(stats.mean());
      add(stats.variance());
      const r = await batchNorm(x, shape, { training: true, pool, layout });
      add(r.y);
      add(r.mean);
      add(r.var);
    }
    await pool.close();
  }
}
console.log(`${runtime}: ${results} results, sha256 of their bits ${hash.digest('hex')}`);
