// The WebAssembly merge of partials (`mergeChannels`) alone, in two builds: the median time of
// 100 merges of a shape's partials (per-channel blocks as the grid cuts benchmark shapes E, A, B
// and C), 30 rounds each. Partials of a large offset and a small spread, in each build's own
// layout (PARTIAL_BYTES of its workers/scratch.js, or of its workers/protocol.js in builds before
// the layout had a file of its own). Plain JavaScript, like alternate.mjs.
//
//     git worktree add /tmp/before <rev> && (cd /tmp/before && ln -s "$PWD/../main/node_modules" . && npm run build)
//     npm run build && node bench/merge.mjs /tmp/before/dist dist
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dirs = process.argv.slice(2, 4);
if (dirs.length !== 2) throw new Error('usage: node bench/merge.mjs <dist A> <dist B>');
// [label, channels, blocks a channel]
const SHAPES = [['E [4096, 1024]', 1024, 16], ['A [32, 64, 112, 112]', 64, 32], ['B [256, 256, 14, 14]', 256, 16], ['C [64, 3, 224, 224]', 3, 256]];
const medians = SHAPES.map(() => []);
for (const dir of dirs) {
  const url = (file) => pathToFileURL(resolve(dir, file)).href;
  const { createKernel, loadWasmModule } = await import(url('workers/kernels/select.js'));
  const layout = await import(url('workers/scratch.js')).catch(() => import(url('workers/protocol.js')));
  const { PARTIAL_BYTES, CHANNEL_WEIGHT, CHANNEL_BIAS } = layout;
  const memory = new WebAssembly.Memory({ initial: 1024, maximum: 1024, shared: true });
  const kernel = createKernel('wasm', memory, loadWasmModule());
  const f64 = new Float64Array(memory.buffer);
  const partials = 1 << 20;
  const channels = 32 << 20;
  const params = 48 << 20;
  let seed = 1;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  SHAPES.forEach(([, C, blocks], i) => {
    for (let c = 0; c < C; c++) {
      for (let b = 0; b < blocks; b++) {
        const at = (partials + (c * blocks + b) * PARTIAL_BYTES) / 8;
        f64.set([1000, 3000 + 1e-3 * random(), 1e-3], at);
        if (PARTIAL_BYTES >= 32) f64[at + 3] = 1e-17 * (random() - 0.5);
      }
      f64[channels / 8 + CHANNEL_WEIGHT * C + c] = 1;
      f64[channels / 8 + CHANNEL_BIAS * C + c] = 0;
    }
    const times = [];
    for (let round = 0; round < 30; round++) {
      const t0 = performance.now();
      for (let k = 0; k < 100; k++) kernel.mergeChannels(partials, blocks, 0, C, channels, C, params, 1e-5);
      times.push((performance.now() - t0) / 100);
    }
    times.sort((a, b) => a - b);
    medians[i].push(times[15] * 1000);
  });
}
console.log(`| shape | channels x blocks | ${dirs[0]} µs | ${dirs[1]} µs | ratio |`);
console.log('| --- | --- | ---: | ---: | ---: |');
SHAPES.forEach(([label, C, blocks], i) => {
  const [a, b] = medians[i];
  console.log(`| ${label} | ${C} x ${blocks} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(b / a).toFixed(2)} |`);
});
