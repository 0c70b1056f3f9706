// How long a burst of calls made at once (a server's requests, awaited together) holds the calling
// thread's event loop, against what the operating system alone takes from it. Each burst starts
// `calls` calls of a shape (a 224x224 RGB image, [1, 3, 224, 224] float32, by default) with
// `Promise.all`, each into its own `out`, with a setImmediate tick re-armed at every turn
// meanwhile; it prints the median burst and the longest stretch without a turn (the median of each
// burst's longest, and the largest; and the median of each longest less the garbage collector's
// pauses in it), in ms, over `bursts` bursts after two warm-up ones. Scenarios: inline calls (the
// default `inlineThreshold`), and calls on the workers (`inlineThreshold: 0`) with x and `out`
// ordinary arrays or from `pool.alloc`; eval forwards of one module (its calls queue behind each
// other), functional evals (`batchNorm` with running statistics: none queues) and training forwards
// of one module a call. The baseline rows run the same tick loop for 400 ms with nothing but `busy`
// threads spinning: the stretches the operating system makes on its own (README, "Small inputs").
//
//     npm run build && node bench/bursts.mjs [threads=2] [calls=64] [bursts=10] [shape=1,3,224,224] [dist]
//
// Plain JavaScript, like loop-gaps.mjs; `dist` picks another build (a worktree's) to compare with,
// measured by this build's bench/rounds.ts (longestStretch).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const threads = Number(process.argv[2] ?? 2);
const calls = Number(process.argv[3] ?? 64);
const bursts = Number(process.argv[4] ?? 10);
const shape = (process.argv[5] ?? '1,3,224,224').split(',').map(Number);
const dist = resolve(process.argv[6] ?? join(root, 'dist'));
// The product from `dist` (another build's, to compare), the measurement from this build's.
const [{ BatchNorm, batchNorm, Pool }, { longestStretch }] = await Promise.all([
  import(pathToFileURL(`${dist}/src/index.js`).href), import(pathToFileURL(join(root, 'dist/bench/rounds.js')).href),
]);

const n = shape.reduce((a, b) => a * b);
let seed = 1;
const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** The garbage collector's pauses on this thread: [start, end] in performance.now() time. */
const pauses = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) pauses.push([e.startTime, e.startTime + e.duration]);
}).observe({ entryTypes: ['gc'] });

/** ms of the collector's pauses within [from, to] (the observer reports them a little later). */
async function collected(from, to) {
  await new Promise((r) => setTimeout(r, 10));
  return pauses.reduce((ms, [a, b]) => ms + Math.max(0, Math.min(b, to) - Math.max(a, from)), 0);
}

/**
 * The longest stretch without a turn while `call` runs (longestStretch, bench/rounds.ts): [the
 * call's ms, that stretch in ms, the stretch less the collector's pauses in it].
 */
async function measured(call) {
  const { from, to, ms } = await longestStretch(call);
  return [ms, to - from, to - from - await collected(from, to)];
}

console.log(`bursts of ${calls} calls of ${shape} float32, pool of ${threads} worker${threads > 1 ? 's' : ''}, ${bursts} bursts a scenario (${dist})`);
console.log('| scenario | burst ms (median) | longest stretch ms (median) | (max) | less its GC pauses (median) |');
console.log('| --- | --- | --- | --- | --- |');
const row = (name, rows) => console.log(
  `| ${name} | ${rows[0][0] === null ? '-' : median(rows.map((r) => r[0])).toFixed(1)} | ${median(rows.map((r) => r[1])).toFixed(2)} | ${Math.max(...rows.map((r) => r[1])).toFixed(2)} | ${median(rows.map((r) => r[2])).toFixed(2)} |`,
);

for (const busy of [...new Set([0, 1, threads])]) {
  const spinners = Array.from({ length: busy }, () => new Worker('for (;;) {}', { eval: true }));
  await new Promise((r) => setTimeout(r, 100));
  const rows = [];
  for (let i = 0; i < 5; i++) rows.push(await measured(() => new Promise((r) => setTimeout(r, 400))));
  await Promise.all(spinners.map((w) => w.terminate()));
  row(`baseline, ${busy} busy thread${busy === 1 ? '' : 's'} (400 ms)`, rows.map(([, longest, own]) => [null, longest, own]));
}

for (const [path, inlineThreshold] of [['inline', undefined], ['workers', 0]]) {
  const pool = new Pool({ threads, inlineThreshold });
  for (const where of path === 'inline' ? ['ordinary'] : ['ordinary', 'pool']) {
    const array = () => (where === 'pool' ? pool.alloc(n) : new Float32Array(n));
    const xs = Array.from({ length: calls }, () => array().map(() => 255 * random()));
    const outs = Array.from({ length: calls }, array);
    const shared = new BatchNorm(shape[1], { pool }).eval();
    const own = Array.from({ length: calls }, () => new BatchNorm(shape[1], { pool }));
    const runningMean = Float64Array.from({ length: shape[1] }, () => 100 + 50 * random());
    const runningVar = Float64Array.from({ length: shape[1] }, () => 3000 + 500 * random());
    const scenarios = [
      ['eval', (x, i) => shared.forward(x, shape, { out: outs[i] })],
      ['functional eval', (x, i) => batchNorm(x, shape, { pool, runningMean, runningVar, out: outs[i] })],
      ['training', (x, i) => own[i].forward(x, shape, { out: outs[i] })],
    ];
    for (const [mode, call] of scenarios) {
      const rows = [];
      for (let b = 0; b < bursts + 2; b++) {
        const r = await measured(() => Promise.all(xs.map(call)));
        if (b >= 2) rows.push(r);
        await new Promise((res) => setTimeout(res, 20));
      }
      row(`${mode}, ${path}${path === 'inline' ? '' : `, ${where} x and out`}`, rows);
    }
  }
  await pool.close();
}
