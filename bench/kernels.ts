/**
 * The WebAssembly kernels alone, on one thread, over data that fit L1 (32 KiB), L2 (1 MiB) or
 * neither (64 MiB): what each reduces or streams a second, beside a plain read (a sum) and the
 * floor's pass. GB/s counts the bytes a kernel reads and writes (the sum and the statistics: x
 * once; the others: x and y; a training forward's two passes: x and y once, as the floor's; the
 * backward's sums: x and dy; its output and its fused pass: x, dy and dx once). Repeated in 9
 * rounds that alternate the kernels; medians.
 *
 *     npm run build && node dist/bench/kernels.js [Y_OFFSET]
 *
 * y (dy for the backward, its dx after it) starts right after x, a multiple of 4 KiB after it,
 * as two pool arrays of such sizes do; Y_OFFSET (bytes, a multiple of 64 up to 1 MiB; default 0)
 * moves it that much further, so that loads and stores no longer agree in their low 12 address
 * bits (4 KiB aliasing: bench/MACHINES.md, "Why, on the third machine").
 *
 *     VS=/tmp/before/dist node dist/bench/kernels.js [Y_OFFSET]
 *
 * compares this build's kernels with another build's (its dist/ folder: its kernels.wasm under this
 * build's wrappers, so the two must export the same kernels): each sample of one is followed by the
 * same sample of the other, over the same data, in one process, and each cell reads
 * "other -> this (this ÷ other, of the medians of the samples' pairwise ratios)" in GB/s. Runs of
 * the whole script, alternated between builds, drifted up to 25% apart on kernels neither changed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { wasmApi } from '../src/wasm-types.js';
import { bwdStatsThenApplyPlanes, type Kernel, PLANE_ACC_BYTES, rowScratchBytes } from '../workers/kernels/kernel.js';
import { PARTIAL_BYTES } from '../workers/scratch.js';
import { createKernel, loadWasmModule } from '../workers/kernels/select.js';
import { medianOf } from './rounds.js';

const module = loadWasmModule();
if (module === null) throw new Error('the WebAssembly kernels do not load here (no SIMD, or not built)');
const SIZES = [32 << 10, 1 << 20, 64 << 20]; // bytes of x
const X = 1 << 20; // where x starts; y follows it
const Y_OFFSET = Number(process.argv[2] ?? 0);
if (!(Number.isInteger(Y_OFFSET) && Y_OFFSET >= 0 && Y_OFFSET <= 1 << 20 && Y_OFFSET % 64 === 0)) {
  throw new Error(`Y_OFFSET: expected a multiple of 64 from 0 to 1048576 bytes, got ${process.argv[2]}`);
}
const memory = new wasmApi!.Memory({ initial: (X + 3 * SIZES[2] + 2 * (1 << 20)) / 65536, maximum: 65536, shared: true });
const kernel = createKernel('wasm', memory, module);
const VS = process.env.VS;
const other = VS === undefined ? null : createKernel('wasm', memory, new wasmApi!.Module(readFileSync(join(VS, 'workers', 'wasm', 'kernels.wasm'))));
const f32 = new Float32Array(memory.buffer);
const f64 = new Float64Array(memory.buffer);
const C = 1024; // row kernels: E's rows (fewer at 32 KiB, so that a row group has 64 rows)
const PARAMS = 4096; // (mean, scale, bias) of up to C channels, 32 bytes each
const OUT = PARAMS + 32 * C; // partials, PARTIAL_BYTES a channel
const ACC = OUT + PARTIAL_BYTES * C; // scratch
let seed = 12345;
for (let i = X / 4; i < X / 4 + 3 * SIZES[2] / 4; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  f32[i] = 3000 + seed / 2 ** 32 - 0.5;
}
for (let c = 0; c < C; c++) f64.set([3000, 2, 0.5], PARAMS / 8 + 4 * c);
if (ACC + Math.max(rowScratchBytes(C), 2 * PLANE_ACC_BYTES) > X) throw new Error('scratch overlaps x');

/**
 * The kernels, each over `n` float32 at X (y or dy at X + 4n, dx after it): [name, bytes it
 * moves, one pass].
 */
function kernels(n: number, kernel: Kernel): [string, number, () => void][] {
  const y = X + 4 * n + Y_OFFSET;
  const dx = y + 4 * n;
  const run = Math.min(n / 2, 16384); // plane-mode runs, as a block's
  const plane = Math.min(12544, n / 4); // A's planes (a quarter of the data at 32 KiB)
  const channels = Math.min(C, n / 64);
  const rows = n / channels;
  const group = Math.min(rows, 256); // row groups, as the grid's for E
  const channel = 2 * plane; // the fused rows' channels: two planes
  const pairs = Math.floor(n / channel);
  const shortChannels = Math.min(256, Math.floor(n / 196));
  const shortRows = Math.floor(n / (196 * shortChannels));
  return [
    ['read (a sum)', 4 * n, () => kernel.read(X, n)],
    ['floor (y = a*x + b)', 8 * n, () => kernel.stream(X, y, n, 1.5, 0.25)],
    ['statsPlanes, 1 run at a time', 4 * n, () => kernel.statsPlanes(false, X, 1, 0, n / run, run, run, OUT, PARTIAL_BYTES, ACC)],
    ['statsPlanes, 2 runs in turns', 4 * n, () => kernel.statsPlanes(false, X, 2, n / 2, n / run / 2, run, run, OUT, PARTIAL_BYTES, ACC)],
    // A's statistics pass in memory order: one-row blocks of a plane (12544) end to end, a call for
    // all (statsPlaneGroups), two blocks in turns (as the executor did until the fourth machine) or
    // one at a time (as it does: workers/plane-blocks.ts, statsRun).
    ['statsPlaneGroups, A\'s blocks end to end, 2 in turns', 8 * plane * Math.floor(n / plane / 2), () => {
      kernel.statsPlaneGroups(false, X, Math.floor(n / plane / 2), 2 * plane, 0, 2, plane, 1, 0, plane, OUT, PARTIAL_BYTES, ACC);
    }],
    ['statsPlaneGroups, A\'s blocks end to end, 1 at a time', 4 * plane * Math.floor(n / plane), () => {
      kernel.statsPlaneGroups(false, X, Math.floor(n / plane), plane, 0, 1, plane, 1, 0, plane, OUT, PARTIAL_BYTES, ACC);
    }],
    ['statsRows, 1024 channels in lanes (128 at 32 KiB)', 4 * n, () => {
      for (let r = 0; r < rows; r += group) {
        kernel.statsRows(false, X + 4 * r * channels, Math.min(group, rows - r), channels, 1, channels, ACC, OUT, PARTIAL_BYTES);
      }
    }],
    // B's statistics pass: rows of 256 channels of 196 values (fewer channels at 32 KiB), row
    // groups of 16 rows, as the grid's for B.
    ['statsRows, B\'s rows (256 channels of 196)', 4 * shortChannels * 196 * shortRows, () => {
      for (let r = 0; r < shortRows; r += 16) {
        kernel.statsRows(false, X + 4 * r * shortChannels * 196, Math.min(16, shortRows - r), shortChannels, 196, shortChannels * 196, ACC, OUT, PARTIAL_BYTES);
      }
    }],
    // Channels-last images of few channels, whole rows as one run (statsPattern32): one channel
    // (a grayscale image's pixels) and three (RGB).
    ['statsRows, 1 channel (channels-last gray)', 4 * n, () => kernel.statsRows(false, X, n, 1, 1, 1, ACC, OUT, PARTIAL_BYTES)],
    ['statsRows, 3 interleaved channels (channels-last RGB)', 4 * 3 * Math.floor(n / 3), () => {
      kernel.statsRows(false, X, Math.floor(n / 3), 3, 1, 3, ACC, OUT, PARTIAL_BYTES);
    }],
    ['normalizePlanes', 8 * n, () => kernel.normalizePlanes(false, X, run, y, run, n / run, run, 3000, 2, 0.5, false)],
    // A training forward's two passes over channels of two of A's planes: fused (statsNormPlanes,
    // a channel's statistics in step with the normalization of the one before, as fused tasks
    // call it), or each channel reduced and then normalized. Bytes: x and y once, as the floor's.
    ['statsNormPlanes: channel c reduced in step with c - 1 normalized', 8 * channel * (pairs - 1), () => {
      for (let c = 1; c < pairs; c++) {
        kernel.statsNormPlanes(
          false, X + 4 * c * channel, 1, 0, 2, plane, plane, OUT, PARTIAL_BYTES, ACC,
          X + 4 * (c - 1) * channel, 0, plane, y + 4 * (c - 1) * channel, 0, plane, 3000, 2, 0.5, false,
        );
      }
    }],
    ['statsPlanes, then normalizePlanes, a channel at a time', 8 * channel * pairs, () => {
      for (let c = 0; c < pairs; c++) {
        kernel.statsPlanes(false, X + 4 * c * channel, 1, 0, 2, plane, plane, OUT, PARTIAL_BYTES, ACC);
        kernel.normalizePlanes(false, X + 4 * c * channel, plane, y + 4 * c * channel, plane, 2, plane, 3000, 2, 0.5, false);
      }
    }],
    // A backward's passes over the same channels of two of A's planes (dy at y, dx after it): its
    // sums (Σdy, Σdy·(x - mean)), its output dx = a·(dy + k·(x - mean) + e), and the two fused as
    // fused tasks call them (a channel's sums in step with the output of the one before).
    ['bwdStatsPlanes: the sums (x and dy)', 8 * channel * pairs, () => {
      for (let c = 0; c < pairs; c++) {
        kernel.bwdStatsPlanes(false, X + 4 * c * channel, plane, y + 4 * c * channel, plane, 0, 0, 2, plane, 3000, OUT);
      }
    }],
    ['bwdApplyPlanes: dx (x, dy and dx)', 12 * channel * pairs, () => {
      for (let c = 0; c < pairs; c++) {
        kernel.bwdApplyPlanes(
          false, X + 4 * c * channel, plane, y + 4 * c * channel, plane, 0, 0, dx + 4 * c * channel, plane, 2, plane, 0.5, 0.25, 3000, 0.125,
        );
      }
    }],
    ['bwdStatsApplyPlanes: channel c summed in step with dx of c - 1 (x, dy and dx once)', 12 * channel * (pairs - 1), () => {
      for (let c = 1; c < pairs; c++) {
        kernel.bwdStatsApplyPlanes(
          false, X + 4 * c * channel, plane, y + 4 * c * channel, plane, 0, 0, 2, plane, 3000, OUT,
          X + 4 * (c - 1) * channel, y + 4 * (c - 1) * channel, 0, dx + 4 * (c - 1) * channel, plane, 0.5, 0.25, 3000, 0.125,
        );
      }
    }],
    // The two apart (the kernel interface's own bwdStatsThenApplyPlanes), each channel's dx right
    // after its sums.
    ['bwdStatsPlanes, then bwdApplyPlanes, a channel at a time', 12 * channel * pairs, () => {
      for (let c = 0; c < pairs; c++) {
        const [xc, dyc] = [X + 4 * c * channel, y + 4 * c * channel];
        bwdStatsThenApplyPlanes(
          kernel, false, xc, plane, dyc, plane, 0, 0, 2, plane, 3000, OUT, xc, dyc, 0, dx + 4 * c * channel, plane, 0.5, 0.25, 3000, 0.125,
        );
      }
    }],
    ['normalizeRows, 1024 channels in lanes (128 at 32 KiB)', 8 * n, () => {
      for (let r = 0; r < rows; r += group) {
        kernel.normalizeRows(false, X + 4 * r * channels, y + 4 * r * channels, Math.min(group, rows - r), channels, 1, channels, PARAMS, ACC, false);
      }
    }],
  ];
}

const header = SIZES.map((b) => (b < 1 << 20 ? `${b >> 10} KiB` : `${b >> 20} MiB`));
const versus = other === null ? '' : `; ${VS} -> this build`;
console.log(`WebAssembly kernels, one thread, GB/s (median of 9 rounds; y ${Y_OFFSET} bytes past the end of x${versus})\n`);
console.log(`| kernel | ${header.join(' | ')} |`);
console.log(`| --- | ${header.map(() => '---:').join(' | ')} |`);
const table = new Map<string, string[]>();
for (const bytes of SIZES) {
  const list = kernels(bytes / 4, kernel);
  const otherList = other === null ? null : kernels(bytes / 4, other);
  // Passes a sample: about 16 MiB moved, at least one.
  const reps = list.map(([, moved]) => Math.max(1, Math.round((16 << 20) / moved)));
  const sample = (fn: () => void, i: number): number => {
    fn(); // warm: caches, and V8's compile of the call site
    const t0 = performance.now();
    for (let r = 0; r < reps[i]; r++) fn();
    return (performance.now() - t0) / reps[i];
  };
  const samples: number[][] = list.map(() => []);
  const otherSamples: number[][] = list.map(() => []);
  for (let round = 0; round < 9; round++) {
    list.forEach(([, , fn], i) => {
      if (otherList !== null && round % 2 === 1) otherSamples[i].push(sample(otherList[i][2], i));
      samples[i].push(sample(fn, i));
      if (otherList !== null && round % 2 === 0) otherSamples[i].push(sample(otherList[i][2], i));
    });
  }
  list.forEach(([name, moved], i) => {
    const cells = table.get(name) ?? [];
    const gbs = (ms: number): string => (moved / ms / 1e6).toFixed(1);
    if (otherList === null) cells.push(gbs(medianOf(samples[i])!));
    else {
      const ratio = medianOf(samples[i].map((ms, r) => otherSamples[i][r] / ms))!;
      cells.push(`${gbs(medianOf(otherSamples[i])!)} -> ${gbs(medianOf(samples[i])!)} (${ratio.toFixed(2)})`);
    }
    table.set(name, cells);
  });
}
for (const [name, cells] of table) console.log(`| ${name} | ${cells.join(' | ')} |`);
