// Whether a thread's caches keep its part of a tensor between calls on this machine: the floor's
// pass (the product's stream32 kernel, y = a*x + b) over the bytes of each benchmark shape on two
// raw worker threads, each over a fixed half ("kept", as the floor and, since 2026-12-02, the
// tasks' own ranges go), or the halves swapped between the threads every call ("swapped", as
// items handed out from one shared counter land on either thread). Prints the medians of the
// slower thread's time a call, ms, and swapped ÷ kept. Rounds alternate the two ways. Plain
// JavaScript: it loads the build's dist/workers/wasm/kernels.wasm.
//
//     npm run build && node bench/affinity.mjs [dist]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';

const dir = resolve(process.argv[2] ?? 'dist');
const module = new WebAssembly.Module(readFileSync(resolve(dir, 'workers/wasm/kernels.wasm')));
const SHAPES = { A: [32, 64, 112, 112], B: [256, 256, 14, 14], C: [64, 3, 224, 224], E: [4096, 1024] };
const MiB = 1 << 20;
const largest = Math.max(...Object.values(SHAPES).map((s) => s.reduce((a, b) => a * b)));
const X = 65536;
const memory = new WebAssembly.Memory({ initial: (X + 8 * largest + 4 * MiB) / 65536, maximum: 65536, shared: true });
const f32 = new Float32Array(memory.buffer);
for (let i = X / 4, seed = 1; i < X / 4 + largest; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  f32[i] = seed / 2 ** 32 - 0.5;
}

const source = `
const { parentPort, workerData: { module, memory } } = require('node:worker_threads');
const k = new WebAssembly.Instance(module, { env: { memory } }).exports;
parentPort.on('message', ({ x, y, n }) => {
  const t0 = performance.now();
  k.stream32(x, y, n, 1.5, 0.25);
  parentPort.postMessage(performance.now() - t0);
});`;
const workers = [0, 1].map(() => new Worker(source, { eval: true, workerData: { module, memory } }));
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];

/** One call: worker w streams half (w + swap) % 2; resolves to the slower worker's time. */
function call(n, swap) {
  const half = Math.ceil(n / 2 / 16) * 16;
  const Y = X + 4 * n + 4096; // y a multiple of 4 KiB after x's end, as pool arrays lie
  return Promise.all(workers.map((w, i) => new Promise((done) => {
    const part = (i + swap) % 2;
    const start = part * half;
    w.once('message', done);
    w.postMessage({ x: X + 4 * start, y: Y + 4 * start, n: Math.max(0, Math.min(half, n - start)) });
  }))).then((times) => Math.max(...times));
}

console.log(`floor's halves, 2 raw worker threads, ms (median of the slower thread a call; ${new Date().toISOString()})`);
console.log('| shape | kept | swapped | swapped ÷ kept |\n| --- | ---: | ---: | ---: |');
for (const [id, shape] of Object.entries(SHAPES)) {
  const n = shape.reduce((a, b) => a * b);
  const times = { kept: [], swapped: [] };
  for (let round = 0; round < 8; round++) {
    for (const way of round % 2 === 0 ? ['kept', 'swapped'] : ['swapped', 'kept']) {
      let calls = 0;
      for (let i = 0; i < 10; i++) await call(n, way === 'kept' ? 0 : calls++ % 2);
      for (let i = 0; i < 20; i++) times[way].push(await call(n, way === 'kept' ? 0 : calls++ % 2));
    }
  }
  const [kept, swapped] = [median(times.kept), median(times.swapped)];
  console.log(`| ${id} [${shape}] | ${kept.toFixed(3)} | ${swapped.toFixed(3)} | ${(swapped / kept).toFixed(2)} |`);
}
await Promise.all(workers.map((w) => w.terminate()));
