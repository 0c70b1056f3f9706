// A pool at the default grain (`grainSize: 'auto'`) against one whose grain gives every call all
// of its threads, in one process, single calls in pairs whose order alternates; beside each, the
// default pool against a second default pool: the control, what order and noise alone give. For
// machines of many cores (on 2 both pools give C, B and E two threads). Plain JavaScript: it
// imports the build under dist/.
//
//     npm run build && THREADS=16 PAIRS=200 node bench/grain-pairs.mjs
//
// Prints, for C, B and E and training, eval and backward (a training forward and its backward,
// timed together): each pool's median ms and the median of the pairs' ratios with its quartiles.
import { availableParallelism } from 'node:os';
import { BatchNorm, Pool } from '../dist/src/index.js';

const threads = Number(process.env.THREADS ?? availableParallelism());
const pairs = Number(process.env.PAIRS ?? 150);
const SHAPES = { C: [64, 3, 224, 224], B: [256, 256, 14, 14], E: [4096, 1024] };
const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];

for (const [id, dims] of Object.entries(SHAPES)) {
  const n = dims.reduce((a, b) => a * b);
  const pools = {
    auto: new Pool({ threads, inlineThreshold: 0 }),
    auto2: new Pool({ threads, inlineThreshold: 0 }),
    all: new Pool({ threads, inlineThreshold: 0, grainSize: Math.ceil(n / threads) }),
  };
  const calls = {};
  for (const [name, pool] of Object.entries(pools)) {
    const x = pool.alloc(n);
    for (let i = 0; i < n; i++) x[i] = Math.sin(i) * 3 + (i % 7) * 0.1;
    const [out, dy, dx] = [pool.alloc(n), pool.alloc(n), pool.alloc(n)];
    dy.set(x);
    const training = new BatchNorm(dims[1], { pool });
    const evaluating = new BatchNorm(dims[1], { pool }).eval();
    calls[name] = {
      train: () => training.forward(x, dims, { out }),
      eval: () => evaluating.forward(x, dims, { out }),
      backward: async () => {
        await training.forward(x, dims, { out });
        return training.backward(dy, { out: dx });
      },
    };
  }
  for (const mode of ['train', 'eval', 'backward']) {
    for (const [a, b] of [['auto', 'all'], ['auto', 'auto2']]) {
      for (let i = 0; i < 10; i++) {
        await calls[a][mode]();
        await calls[b][mode]();
      }
      const [ta, tb, ratios] = [[], [], []];
      for (let i = 0; i < pairs; i++) {
        const t = {};
        for (const name of i % 2 === 0 ? [b, a] : [a, b]) {
          const t0 = performance.now();
          await calls[name][mode]();
          t[name] = performance.now() - t0;
        }
        ta.push(t[a]);
        tb.push(t[b]);
        ratios.push(t[a] / t[b]);
      }
      const sorted = [...ratios].sort((x, y) => x - y);
      const q = (f) => sorted[Math.floor(pairs * f)].toFixed(2);
      console.log(`${id} ${mode.padEnd(8)} ${a} ${median(ta).toFixed(3)} ms vs ${b} ${median(tb).toFixed(3)} ms: paired ratio ${median(ratios).toFixed(2)} [${q(0.25)}, ${q(0.75)}]`);
    }
  }
  await Promise.all(Object.values(pools).map((p) => p.close()));
}
