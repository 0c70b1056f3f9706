// The 8-bit statistics kernels alone, one thread (the WebAssembly kernel, no pool): GB/s of input
// summed by bytesSumsPlanes (channels first) and bytesSumsPattern (channels last, by positions of
// the channels' period) for RGB (C = 3, period 48) and RGBA (C = 4, period 16) images of
// 224 x 224, over 2.4 MB (16 images) and 33 MB of random bytes; medians of 7 rounds. Plain
// JavaScript: it imports a build's dist/ folder, so two builds can be run in turn.
//
//     npm run build && node bench/bytes-sums.mjs [dist]
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.argv[2] ?? 'dist';
const url = (file) => pathToFileURL(resolve(dir, file)).href;
const [{ loadWasmModule, createKernel }, { wasmApi }] = await Promise.all([
  import(url('workers/kernels/select.js')), import(url('src/wasm-types.js')),
]);
const memory = new wasmApi.Memory({ initial: 1000, maximum: 65536, shared: true });
const kernel = createKernel('wasm', memory, loadWasmModule());
const u8 = new Uint8Array(memory.buffer);
const X = 4 << 20; // the input; the sums and scratch lie below it
const OUT = 65536;
const SCRATCH = 1 << 20;
let seed = 7;
for (let i = 0; i < 40 << 20; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  u8[X + i] = seed >>> 24;
}
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
const S = 224 * 224;
for (const bytes of [16 * S * 3, 32 << 20]) {
  for (const C of [3, 4]) {
    const P = C === 3 ? 48 : 16;
    const n = Math.floor(bytes / (C * S)) * C * S;
    const rates = { planes: [], pattern: [] };
    for (let round = 0; round < 7; round++) {
      let t0 = performance.now();
      for (let i = 0; i < 10; i++) kernel.bytesSumsPlanes(X, n, 0, C, S, OUT);
      rates.planes.push((10 * n) / (performance.now() - t0) / 1e6);
      t0 = performance.now();
      for (let i = 0; i < 10; i++) kernel.bytesSumsPattern(X, n, 0, P, OUT, SCRATCH);
      rates.pattern.push((10 * n) / (performance.now() - t0) / 1e6);
    }
    console.log(`${(n / 1e6).toFixed(1)} MB, C = ${C}: channels first ${median(rates.planes).toFixed(1)} GB/s, channels last ${median(rates.pattern).toFixed(1)} GB/s`);
  }
}
