// What a backward after an eval forward costs against the floor: zero-copy (x, dy, dx and `out`
// from `pool.alloc`), 2 workers, a module's backward after a training forward and after an eval
// forward, affine and not, alternated call by call with the floor's pass over the same bytes.
// dx of an eval backward is weight·invstd·dy, which reads dy and writes dx as the floor reads and
// writes; a module with affine makes the pass of the sums (dWeight and dBias) first, one without
// makes dx alone (README, "Backward and fused ReLU"). Prints each call's median ÷ the floor's.
// Plain JavaScript: it imports a build's dist/ folder.
//
//     npm run build && node bench/eval-backward.mjs [N,C,H,W ...] [--dist DIR]
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const at = args.indexOf('--dist');
const dist = at >= 0 ? args.splice(at, 2)[1] : 'dist';
const url = (file) => pathToFileURL(resolve(dist, file)).href;
const [{ BatchNorm, DEFAULT_GRAIN_SIZE, Pool }, { streamFloor }] = await Promise.all([import(url('src/index.js')), import(url('src/floor.js'))]);
// grainSize 1, every call on every thread as before the option, where the build has it (older ones refuse it).
const EVERY_THREAD = DEFAULT_GRAIN_SIZE === undefined ? {} : { grainSize: 1 };
const shapes = (args.length > 0 ? args : ['64,64,32,32', '32,64,56,56', '32,64,112,112', '32,256,56,56']).map((s) => s.split(',').map(Number));
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];

const pool = new Pool({ threads: 2, inlineThreshold: 0, ...EVERY_THREAD });
await pool.ready;
console.log(`backward ÷ floor, zero-copy, 2 workers, medians of 30 rounds (${new Date().toISOString()})`);
for (const shape of shapes) {
  const n = shape.reduce((a, b) => a * b);
  const C = shape[1];
  const [x, out, dy, dx] = [0, 1, 2, 3].map(() => pool.alloc(n));
  for (let i = 0; i < n; i++) {
    x[i] = Math.sin(i * 0.7) * 2 + (i % 7) * 0.25;
    dy[i] = Math.cos(i * 1.3);
  }
  const module = async (affine, evalMode) => {
    const bn = new BatchNorm(C, { pool, affine });
    await bn.forward(x, shape, { out }); // running statistics that are not the defaults
    if (evalMode) bn.eval();
    await bn.forward(x, shape, { out }); // the forward the backward follows
    return () => bn.backward(dy, { out: dx });
  };
  const calls = {
    floor: () => streamFloor(pool, x, out),
    'training backward': await module(true, false),
    'eval backward': await module(true, true),
    'eval backward, affine false': await module(false, true),
  };
  const times = Object.fromEntries(Object.keys(calls).map((k) => [k, []]));
  for (let r = 0; r < 30; r++) {
    for (const [k, f] of Object.entries(calls)) {
      const t0 = performance.now();
      await f();
      times[k].push(performance.now() - t0);
    }
  }
  const floor = median(times.floor);
  const ratios = Object.entries(times).slice(1).map(([k, v]) => `${k} ${(median(v) / floor).toFixed(2)}`);
  console.log(`[${shape}] floor ${floor.toFixed(3)} ms: ${ratios.join(', ')}`);
  for (const a of [x, out, dy, dx]) pool.free(a);
}
await pool.close();
