/**
 * Float64 statistics of data with a large offset and a small spread, against the exact ones
 * (bench/exact.ts): the worst relative error of the batch variance and the worst distance of the
 * mean from the exact one, in ulps, for both kernels on 2 workers and inline. Two kinds of data,
 * as test/adversarial.test.ts checks them: mean 3000 + c and standard deviation 1e-3 in channel
 * c, over the shapes of that test; and the integers 1e15 + (i mod 13), i the element's index. Then
 * the latter's statistics from two halves, `ChannelStats` merged with and without the means' low
 * parts. The bnpool measured is the build at `dist` (default: this one's), so an earlier build can
 * be measured on the same data.
 *
 *     npm run build && node dist/bench/offset-stats.js [dist]
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Bnpool from '../src/index.js';
import { exactChannelStats } from './exact.js';

const dir = process.argv[2];
const bnpool = (await import(dir === undefined ? '../src/index.js' : pathToFileURL(resolve(dir, 'src/index.js')).href)) as typeof Bnpool;
const SHAPES = [[16, 3, 64, 64], [4096, 3], [8, 2, 5, 7, 11], [64, 40]];

let seed = 43;
const uniform = (): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed + 0.5) / 2 ** 32;
};
const normal = (): number => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());

/** The worst relative error of `variance` and the worst distance of `mean` from the exact, in ulps: two table cells. */
function errors(exact: ReturnType<typeof exactChannelStats>, mean: ArrayLike<number>, variance: ArrayLike<number>): string {
  let varError = 0;
  let meanUlps = 0;
  for (let c = 0; c < exact.mean.length; c++) {
    varError = Math.max(varError, Math.abs(variance[c] - exact.var[c]) / exact.var[c]);
    meanUlps = Math.max(meanUlps, Math.abs(exact.meanErrorUlps(c, mean[c])));
  }
  return `${varError.toExponential(2)} | ${meanUlps.toFixed(3)}`;
}

console.log(`float64 statistics of offset data: ${dir ?? 'this build'}\n`);
console.log('| data | shape | kernel | pool | variance: worst relative error | mean: worst ulps from exact |');
console.log('| --- | --- | --- | --- | ---: | ---: |');
const cases: [string, number[], (i: number, c: number) => number][] = [
  ...SHAPES.map((shape): [string, number[], (i: number, c: number) => number] => ['3000 + c, sd 1e-3', shape, (_, c) => 3000 + c + 1e-3 * normal()]),
  ['1e15 + (i mod 13)', [16, 2, 40, 40], (i) => 1e15 + (i % 13)],
];
for (const [data, shape, value] of cases) {
  const [N, C] = shape;
  const S = shape.slice(2).reduce((a, b) => a * b, 1);
  const x = new Float64Array(N * C * S);
  for (let i = 0; i < x.length; i++) x[i] = value(i, Math.floor(i / S) % C);
  const exact = exactChannelStats(x, shape);
  for (const kernel of ['js', 'wasm'] as const) {
    for (const [name, options] of [['2 workers', { threads: 2, inlineThreshold: 0, grainSize: 1 }], ['inline', { threads: 1, inlineThreshold: Number.MAX_SAFE_INTEGER }]] as const) {
      const pool = new bnpool.Pool({ ...options, kernel });
      const r = await bnpool.batchNorm(x, shape, { training: true, pool });
      console.log(`| ${data} | [${shape}] | ${kernel} | ${name} | ${errors(exact, r.mean, r.var)} |`);
      await pool.close();
    }
  }
}

// ChannelStats of two halves, merged with the means' low parts (as fromBatch gives them) and
// without (the rounded means alone, as statistics built from count, mean and m2 have them).
console.log('\n| data | ChannelStats of two halves, merged | variance: worst relative error | mean: worst ulps from exact |');
console.log('| --- | --- | ---: | ---: |');
{
  const shape = [16, 2, 40, 40];
  const x = Float64Array.from({ length: 16 * 2 * 1600 }, (_, i) => 1e15 + (i % 13));
  const exact = exactChannelStats(x, shape);
  const pool = new bnpool.Pool({ threads: 2 });
  const halves = await Promise.all([x.subarray(0, x.length / 2), x.subarray(x.length / 2)].map((h) => bnpool.ChannelStats.fromBatch(h, [8, 2, 40, 40], { pool })));
  const rounded = halves.map((s) => new bnpool.ChannelStats(s.count, s.mean(), s.m2));
  for (const [how, [a, b]] of [['with the low parts', halves], ['from the rounded means', rounded]] as const) {
    const all = a.merge(b);
    console.log(`| 1e15 + (i mod 13) | ${how} | ${errors(exact, all.mean(), all.variance())} |`);
  }
  await pool.close();
}
