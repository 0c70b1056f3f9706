// Statistics of a channel whose first value, the shift of its block's sums, is an outlier: 1e7
// among values uniform on [0, 1) (README, "Kernels"). bnpool's batch variance and mean of that
// channel against the float64 two-pass answer, relative error, for both kernels, both dtypes, a
// pool of 2 workers and calls inline, and six layouts of the data. `count` (default 1) makes the
// channel's first `count` values outliers. Plain JavaScript: it imports a build's dist/ folder
// (default `dist`), so an earlier build can be measured the same way.
//
//     npm run build && node bench/outliers.mjs [dist] [outlier] [count]
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.argv[2] ?? 'dist';
const outlier = Number(process.argv[3] ?? 1e7);
const count = Number(process.argv[4] ?? 1);
const { batchNorm, DEFAULT_GRAIN_SIZE, Pool } = await import(pathToFileURL(resolve(dir, 'src/index.js')).href);
// grainSize 1, every call on every thread as before the option, where the build has it (older ones refuse it).
const EVERY_THREAD = DEFAULT_GRAIN_SIZE === undefined ? {} : { grainSize: 1 };
const SHAPES = [[4, 3, 64, 64], [16384, 3], [64, 3, 33], [8, 3, 37], [64, 3], [2, 3, 32]];

/** Channel 0's float64 two-pass mean and (biased) variance. */
function reference(x, shape) {
  const [N, C] = shape;
  const S = x.length / (N * C);
  let sum = 0;
  for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sum += x[n * C * S + s];
  const mean = sum / (N * S);
  let m2 = 0;
  for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) m2 += (x[n * C * S + s] - mean) ** 2;
  return [mean, m2 / (N * S)];
}

console.log(`channel 0: ${outlier} its first ${count} value(s), then values uniform on [0, 1); relative error of variance / mean\n`);
console.log(`| kernel | pool | dtype | ${SHAPES.map((s) => `[${s}]`).join(' | ')} |`);
console.log(`| --- | --- | --- | ${SHAPES.map(() => '---:').join(' | ')} |`);
for (const kernel of ['js', 'wasm']) {
  for (const [name, options] of [['2 workers', { threads: 2, inlineThreshold: 0, ...EVERY_THREAD }], ['inline', { threads: 1, inlineThreshold: 2 ** 40 }]]) {
    const pool = new Pool({ ...options, kernel });
    for (const dtype of ['float32', 'float64']) {
      const cells = [];
      for (const shape of SHAPES) {
        const n = shape.reduce((a, b) => a * b);
        const x = dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
        let seed = 5;
        for (let i = 0; i < n; i++) {
          seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
          x[i] = seed / 2 ** 32;
        }
        // Channel 0's first `count` values, in memory order.
        const [N, C] = shape;
        const S = n / (N * C);
        for (let k = 0, i = 0; k < count; k++, i += S === 1 ? C : 1) x[S === 1 ? i : Math.floor(k / S) * C * S + (k % S)] = outlier;
        const r = await batchNorm(x, shape, { training: true, pool });
        const [mean, variance] = reference(x, shape);
        const err = (got, want) => Math.abs((got - want) / want).toExponential(1);
        cells.push(`${err(r.var[0], variance)} / ${err(r.mean[0], mean)}`);
      }
      console.log(`| ${kernel} | ${name} | ${dtype} | ${cells.join(' | ')} |`);
    }
    await pool.close();
  }
}
