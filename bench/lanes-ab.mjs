// The channels-in-lanes kernels (rank 2 and channels-last, float32) of two builds, on one thread
// over the same data, alternated round by round in one process: statsRows, normalizeRows,
// bwdStatsRows and bwdApplyRows, called a row group at a time as the grid cuts the rows
// (src/plan.ts), for rows of 16 to 1024 channels, over 1 MiB of x (the L2) and 64 MiB (memory).
// Prints each build's GB/s (x read; and y written, dy read, dy read and dx written) and B's ÷ A's
// speed; ratios within ~0.8-1.2 are noise here (the same build against itself gave 0.82-1.59).
// The backward's coefficients (a, k, mean, e) are (3.5, 2, 0.5, 0). Plain JavaScript: it loads
// each build's dist/workers/wasm/kernels.wasm, and the kernel bindings and planner of the second.
// IN_ORDER=B (or A, or AB) has that build's normalizeRows walk whole rows as a call whose input
// outgrows the pool's cacheBytes does (Task.inOrder: two at a time since 2026-12-04, a row at a
// time in address order before): `node bench/lanes-ab.mjs
// dist dist` with IN_ORDER=B compares the two walks of one build. SIZES=1,64 (the default) sets
// the MiB of x (at most 64); KERNELS=normalizeRows,statsRows picks kernels (default: all four).
//
//     git worktree add /tmp/before <rev> && (cd /tmp/before && ln -s "$PWD/../main/node_modules" . && npm run build)
//     npm run build && node bench/lanes-ab.mjs /tmp/before/dist dist [C,C,...]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dirA, dirB, list = '16,32,64,128,256,512,1024'] = process.argv.slice(2);
if (dirB === undefined) throw new Error('usage: node bench/lanes-ab.mjs DIST_A DIST_B [C,C,...]');
const url = (file) => pathToFileURL(resolve(dirB, file)).href;
const [{ wasmApi }, { createKernel }, { rowScratchBytes }, { planGrid }] = await Promise.all([
  import(url('src/wasm-types.js')), import(url('workers/kernels/select.js')), import(url('workers/kernels/kernel.js')),
  import(url('src/plan.js')),
]);

const MiB = 1 << 20;
const SIZES = (process.env.SIZES ?? '1,64').split(',').map((s) => Number(s) * MiB);
if (!SIZES.every((s) => s > 0 && s <= 64 * MiB)) throw new Error(`SIZES: MiB of x from 1 to 64; got ${process.env.SIZES}`);
const IN_ORDER = process.env.IN_ORDER ?? '';
const ONLY = process.env.KERNELS?.split(',') ?? [];
const CHANNELS = list.split(',').map(Number);
const memory = new wasmApi.Memory({ initial: (3 * 64 * MiB + 8 * MiB) / 65536, maximum: 65536, shared: true });
const kernels = [dirA, dirB].map((d) => createKernel('wasm', memory, new WebAssembly.Module(readFileSync(resolve(d, 'workers/wasm/kernels.wasm')))));
const f32 = new Float32Array(memory.buffer);
const f64 = new Float64Array(memory.buffer);
const maxC = Math.max(...CHANNELS);
const PARAMS = 65536; // (mean, scale or invstd, bias or weight, 0): 32 bytes a channel
const SCRATCH = PARAMS + 32 * maxC;
const OUT = SCRATCH + rowScratchBytes(maxC) + 4096; // partials, 32 bytes a channel (PARTIAL_BYTES; builds before 2026-12-03 wrote 24)
const X = Math.ceil((OUT + 32 * maxC) / MiB) * MiB;
const Y = X + 64 * MiB + 2048; // y (normalizeRows) and dy (the backward's), 2 KiB off x's alignment
const D = Y + 64 * MiB + 2048; // dx (bwdApplyRows)
if (D + 64 * MiB > memory.buffer.byteLength) throw new Error('the data do not fit the memory');
let seed = 12345;
for (let i = 0; i < 64 * MiB / 4; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  f32[X / 4 + i] = 3 + seed / 2 ** 32;
  f32[Y / 4 + i] = seed / 2 ** 32 - 0.5;
}
for (let c = 0; c < maxC; c++) f64.set([3.5, 2, 0.5, 0], PARAMS / 8 + 4 * c);
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];

console.log('| kernel | channels | x | A GB/s | B GB/s | B ÷ A speed |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const C of CHANNELS) {
  for (const bytes of SIZES) {
    const rows = bytes / 4 / C;
    const { groupRows } = planGrid(rows, C, 1);
    const each = (call) => () => {
      for (let r = 0; r < rows; r += groupRows) call(4 * r * C, Math.min(groupRows, rows - r));
    };
    const cases = [
      ['statsRows', 4, (k) => each((o, n) => k.statsRows(false, X + o, n, C, 1, C, SCRATCH, OUT, 32))],
      ['normalizeRows', 8, (k, i) => each((o, n) => k.normalizeRows(false, X + o, Y + o, n, C, 1, C, PARAMS, SCRATCH, false, 0, 0, IN_ORDER.includes('AB'[i])))],
      ['bwdStatsRows', 8, (k) => each((o, n) => k.bwdStatsRows(false, X + o, Y + o, 0, n, C, 1, C, PARAMS, SCRATCH, OUT, 32))],
      ['bwdApplyRows', 12, (k) => each((o, n) => k.bwdApplyRows(false, X + o, Y + o, 0, D + o, n, C, 1, C, PARAMS, SCRATCH))],
    ];
    for (const [name, perElement, make] of cases.filter(([name]) => ONLY.length === 0 || ONLY.includes(name))) {
      const fns = kernels.map(make);
      const reps = Math.max(1, Math.round(32 * MiB / bytes));
      const times = fns.map(() => []);
      for (let round = 0; round < 7; round++) {
        fns.forEach((fn, k) => {
          fn();
          const t0 = performance.now();
          for (let i = 0; i < reps; i++) fn();
          times[k].push((performance.now() - t0) / reps);
        });
      }
      // normalizeRows overwrote dy with y: put dy back for the backward's sums (y is unused elsewhere).
      if (name === 'normalizeRows') {
        for (let i = 0; i < bytes / 4; i++) f32[Y / 4 + i] = f32[X / 4 + i] - 3.5;
      }
      const gbps = times.map((t) => (perElement * bytes / 4) / median(t) / 1e6);
      console.log(`| ${name} | ${C} | ${bytes / MiB} MiB | ${gbps[0].toFixed(1)} | ${gbps[1].toFixed(1)} | ${(gbps[1] / gbps[0]).toFixed(2)} |`);
    }
  }
}
