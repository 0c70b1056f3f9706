// 8-bit input on a server: a batch of decoded images normalized as torchvision's
// ToTensor + Normalize would, several ways on the same pool, alternated round by round: the bytes
// given to batchNorm as they are (the workers convert them as they normalize), with an output on
// the pool, an ordinary one (copied back by the calling thread) or one on a SharedArrayBuffer
// (copied there by the workers); the bytes assembled on the pool (pool.alloc(n, 'uint8'): not
// copied in); and the bytes converted to float32 on the calling thread first
// (`input.set(rgb)` into a pool array, the README's recipe before 8-bit input). Channels-last
// input is also written channels first (outLayout, a model's NCHW input), against the float32
// call followed by a transposing loop on the calling thread. For each: the median time of a call
// and the longest the event loop went without a turn during the calls (what a server's other
// requests wait at most). Also the statistics of the batch (ChannelStats.fromBatch, a dataset's
// mean and variance gathered batch by batch), of the bytes and of their float32 conversion.
// Plain JavaScript: it imports a build's dist/ folder.
//
//     npm run build && node bench/bytes.mjs [N,H,W,C] [channels-last|channels-first] [threads]
//
// Defaults: [16, 224, 224, 3] channels last (16 RGB images of 224 x 224), 2 threads.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [shapeArg = '16,224,224,3', layout = 'channels-last', threadsArg = '2', dir = 'dist'] = process.argv.slice(2);
const { ChannelStats, Pool, batchNorm } = await import(pathToFileURL(resolve(dir, 'src/index.js')).href);
const shape = shapeArg.split(',').map(Number);
const n = shape.reduce((a, b) => a * b);
const C = layout === 'channels-last' ? shape.at(-1) : shape[1];
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];

const pool = new Pool({ threads: Number(threadsArg) });
const rgb = new Uint8Array(n);
let seed = 12345;
for (let i = 0; i < n; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  rgb[i] = seed >>> 24;
}
const mean = [0.485, 0.456, 0.406];
const std = [0.229, 0.224, 0.225];
const runningMean = Float64Array.from({ length: C }, (_, c) => 255 * mean[c % 3]);
const runningVar = Float64Array.from({ length: C }, (_, c) => (255 * std[c % 3]) ** 2);
const options = { layout, runningMean, runningVar, eps: Number.MIN_VALUE, pool };
const input = pool.alloc(n);
const out = pool.alloc(n);
const ordinary = new Float32Array(n);
const shared = new Float32Array(new SharedArrayBuffer(4 * n));
const planes = pool.alloc(n);
// The batch assembled on the pool (pool.alloc(n, 'uint8')): read where it lies, not copied in.
const pooled = pool.alloc(n, 'uint8');
pooled.set(rgb);
const S = n / shape[0] / C;
/** out (N, S, C) into planes (N, C, S), on this thread. */
function transpose() {
  for (let i = 0; i < shape[0]; i++) {
    const base = i * S * C;
    for (let s = 0; s < S; s++) for (let c = 0; c < C; c++) planes[base + c * S + s] = out[base + s * C + c];
  }
}

const ways = [
  ['bytes, out on the pool', () => batchNorm(rgb, shape, { ...options, out })],
  ['bytes on the pool, out on the pool', () => batchNorm(pooled, shape, { ...options, out })],
  ['bytes, ordinary out', () => batchNorm(rgb, shape, { ...options, out: ordinary })],
  ['bytes, out on a SharedArrayBuffer', () => batchNorm(rgb, shape, { ...options, out: shared })],
  ['input.set(rgb), then float32, out on the pool', () => { input.set(rgb); return batchNorm(input, shape, { ...options, out }); }],
];
ways.push(
  ['statistics of the bytes', () => ChannelStats.fromBatch(rgb, shape, { layout, pool })],
  ['statistics of the bytes on the pool', () => ChannelStats.fromBatch(pooled, shape, { layout, pool })],
  ['input.set(rgb), statistics of the float32', () => { input.set(rgb); return ChannelStats.fromBatch(input, shape, { layout, pool }); }],
);
if (layout === 'channels-last' && C > 1) {
  ways.push(
    ['bytes, written channels first, out on the pool', () => batchNorm(rgb, shape, { ...options, outLayout: 'channels-first', out: planes })],
    ['bytes on the pool, written channels first, out on the pool', () => batchNorm(pooled, shape, { ...options, outLayout: 'channels-first', out: planes })],
    ['input.set(rgb), float32, then transposed here', async () => { input.set(rgb); await batchNorm(input, shape, { ...options, out }); transpose(); }],
  );
}

/** Runs `calls` calls of f one after another; returns the median call and the longest gap between turns of the event loop. */
async function sample(f, calls) {
  let last = performance.now();
  let longest = 0;
  let ticking = true;
  const tick = () => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const times = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await f();
    times.push(performance.now() - t0);
  }
  ticking = false;
  await new Promise((r) => setImmediate(r));
  return { ms: median(times), longest };
}

const results = ways.map(() => ({ ms: [], longest: [] }));
for (let round = 0; round < 7; round++) {
  for (const [k, [, f]] of ways.entries()) {
    await sample(f, 3); // warm
    const { ms, longest } = await sample(f, 20);
    results[k].ms.push(ms);
    results[k].longest.push(longest);
  }
}
console.log(`[${shape}] ${layout}, uint8 -> float32 eval, ${threadsArg} threads: medians of 7 rounds of 20 calls`);
console.log('| way | ms a call | longest event-loop gap, ms |');
console.log('| --- | ---: | ---: |');
for (const [k, [name]] of ways.entries()) {
  console.log(`| ${name} | ${median(results[k].ms).toFixed(3)} | ${median(results[k].longest).toFixed(3)} |`);
}
await pool.close();
