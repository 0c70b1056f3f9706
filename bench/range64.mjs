// float64 data near float64's range, whose shifted sums overflow although every value is finite
// (README, "Semantics"): bnpool's batch mean and variance under both kernels, beside the exact mean
// (integer arithmetic, bench/exact.ts) and the float64 two-pass variance (+Infinity where the
// variance is past float64's range), then the backward of a dy of the same length: dWeight and
// dx[1]. bench/torch/range64.py runs the same cases through PyTorch.
// Plain JavaScript: it imports a build's dist/ folder (default `dist`), so an earlier build can be
// measured the same way.
//
//     npm run build && node bench/range64.mjs [dist]
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.argv[2] ?? 'dist';
const url = (file) => pathToFileURL(resolve(dir, file)).href;
const [{ BatchNorm, DEFAULT_GRAIN_SIZE, Pool }, { exactChannelStats }] = await Promise.all([import(url('src/index.js')), import(url('bench/exact.js'))]);
// grainSize 1, every call on every thread as before the option, where the build has it (older ones refuse it).
const EVERY_THREAD = DEFAULT_GRAIN_SIZE === undefined ? {} : { grainSize: 1 };

// The same values as range64.py's, from integer arithmetic (no generator to agree on).
const u = (i) => 0.5 + ((i * 7919) % 1000) / 2000;
const CASES = [
  ['both signs, |x| 0.75e308-1.5e308', (i) => (i % 2 ? 1.5e308 : -1.5e308) * u(i)],
  ['all near +1.5e308', (i) => 1.5e308 + i * 1e292],
  ['all near -1.6e308', (i) => -1.7e308 + (i % 3) * 1e307],
  ['an outlier 1e153 first, the rest in [0, 1)', (i) => (i === 0 ? 1e153 : ((i * 7919) % 1000) / 1000)],
];
const shape = [4, 1, 250];
const n = 1000;
const dy = Float64Array.from({ length: n }, (_, i) => ((i * 31) % 7) / 7 - 0.4);

/** The float64 two-pass variance (biased), about the exact mean. */
function twoPass(x, mean) {
  let m2 = 0;
  for (const v of x) m2 += (v - mean) ** 2;
  return m2 / x.length;
}

console.log(`float64 [${shape}], training forward with momentum 1 (the running mean is the batch mean)\n`);
console.log('| data | | mean | variance | y[1] | dWeight | dx[1] |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const [name, value] of CASES) {
  const x = Float64Array.from({ length: n }, (_, i) => value(i));
  const mean = exactChannelStats(x, shape).mean[0];
  console.log(`| ${name} | exact / two-pass | ${mean} | ${twoPass(x, mean)} | | | |`);
  for (const kernel of ['js', 'wasm']) {
    const pool = new Pool({ threads: 2, kernel, inlineThreshold: 0, ...EVERY_THREAD });
    const bn = new BatchNorm(1, { pool, dtype: 'float64', momentum: 1 });
    const y = await bn.forward(x, shape);
    const { dWeight, dx } = await bn.backward(dy);
    // The running variance is the unbiased one: times (n - 1) / n for the batch's.
    console.log(`| | bnpool ${kernel} | ${bn.runningMean[0]} | ${(bn.runningVar[0] * (n - 1)) / n} | ${y[1]} | ${dWeight[0]} | ${dx[1]} |`);
    await pool.close();
  }
}
