// What relaxed SIMD's fused multiply-add would buy the float32 kernels, at the same bits: the
// statistics' x - k and the normalization's final + b computed as relaxed_madd(x, 1, -k) and
// relaxed_madd(t, 1, b). A product by 1 is exact, so the madd rounds once whether or not the
// engine fuses it, and every result is the same, bit for bit, as the plain SIMD128 kernels'; but
// on x64 V8 emits vfmadd, which runs on the FMA pipes, where the adds compete for the two FADD
// pipes (this machine's float32 statistics run about three adds a vector: "Kernels").
//
// Not part of the product: Node 20's V8 (11.3) validates relaxed SIMD only behind
// --experimental-wasm-relaxed-simd (V8 enables it by default from 11.4, Node 22), and a library
// should not set V8's flags for its host process. This script copies the build's dist/, patches a
// copy of the kernels' AssemblyScript source (workers/wasm/assembly: sums32, columnBlock32,
// norm32 and norm32Plain), compiles it with the product's flags and relaxed SIMD into the copy,
// checks under the flag that both builds give the same bits (outputs, statistics, running
// statistics and gradients of a set of calls at 1-3 threads, both dtypes), and then times both
// builds' zero-copy calls with bench/alternate.mjs under the flag, plain build first (the
// scenarios given; `planes` has A, B and C, `lanes` E and channels last; PAIRED=1 passes on).
//
//     npm run build && node bench/relaxed.mjs [planes,lanes]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compileWasm } from '../workers/wasm/asc.mjs';
import { copyDist } from './dist-copy.mjs';

const FLAG = '--experimental-wasm-relaxed-simd';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const scenarios = (process.argv[2] ?? 'planes,lanes').split(',');

if (!process.execArgv.includes(FLAG)) {
  // Build the relaxed copy here, then check it and time it in children that have the flag.
  // copyDist removes the copy when this process exits.
  const tmp = copyDist(join(root, 'dist'), 'relaxed');
  const src = join(root, 'workers', 'wasm', 'assembly');
  const dst = join(tmp, 'assembly');
  cpSync(src, dst, { recursive: true });
  patch(join(dst, 'stats.ts'), [
    // sums32: d = x - k as x * 1 + (-k).
    [/(@inline export function sums32\([^)]*\): void \{\n)/, '$1  const nk = f32x4.neg(kv);\n  const one = f32x4.splat(1);\n', 1],
    [/f32x4\.sub\((v128\.load\(p(?:, \d+)?\)), kv\)/g, 'f32x4.relaxed_madd($1, one, nk)', 9],
  ]);
  patch(join(dst, 'stats-rows.ts'), [
    // columnBlock32: the same for its two vectors of shifts.
    [/(@inline function columnBlock32\([^)]*\): void \{\n  const k0 = [^\n]*\n  const k1 = [^\n]*\n)/, '$1  const one = f32x4.splat(1);\n  const n0 = f32x4.neg(k0);\n  const n1 = f32x4.neg(k1);\n', 1],
    [/f32x4\.sub\((v128\.load\(p(?: \+ stride)?(?:, 16)?\)), k([01])\)/g, 'f32x4.relaxed_madd($1, one, n$2)', 6],
  ]);
  patch(join(dst, 'common.ts'), [
    // norm32, norm32Plain: (x - hi) * sc + b with the + b as t * 1 + b.
    [/f32x4\.add\(f32x4\.mul\(f32x4\.sub\(v, hi\), sc\), b\)/g, 'f32x4.relaxed_madd(f32x4.mul(f32x4.sub(v, hi), sc), f32x4.splat(1), b)', 2],
  ]);
  compileWasm(join(dst, 'index.ts'), join(tmp, 'dist', 'workers', 'wasm', 'kernels.wasm'), ['--enable', 'relaxed-simd']);
  const run = (args) => spawnSync(process.execPath, [FLAG, ...args], { stdio: 'inherit' }).status ?? 1;
  process.exitCode = run([fileURLToPath(import.meta.url), 'check', join(tmp, 'dist')]);
  for (const scenario of scenarios) {
    if (process.exitCode === 0) process.exitCode = run([join(root, 'bench', 'alternate.mjs'), join(root, 'dist'), join(tmp, 'dist'), scenario]);
  }
} else {
  const relaxedDist = process.argv[3];
  const [plain, relaxed] = await Promise.all([join(root, 'dist'), relaxedDist].map((d) => import(pathToFileURL(join(d, 'src', 'index.js')).href)));
  const plainHash = await hashCalls(plain);
  const relaxedHash = await hashCalls(relaxed);
  console.log(`bits: plain ${plainHash.slice(0, 16)}, relaxed ${relaxedHash.slice(0, 16)}: ${plainHash === relaxedHash ? 'the same' : 'DIFFERENT'}`);
  process.exit(plainHash === relaxedHash ? 0 : 1);
}

/** Applies [pattern, replacement, expected count] edits to a file; throws if one no longer matches as expected. */
function patch(file, edits) {
  let text = readFileSync(file, 'utf8');
  for (const [pattern, replacement, count] of edits) {
    const found = (text.match(pattern.global ? pattern : new RegExp(pattern.source, `${pattern.flags}g`)) ?? []).length;
    if (found !== count) throw new Error(`${file}: ${pattern} matched ${found} times, not ${count} (the kernels changed: update bench/relaxed.mjs)`);
    text = text.replace(pattern, replacement);
  }
  writeFileSync(file, text);
}

/** A hash of the results of a set of calls (forward, statistics, backward, ReLU) on one build. */
async function hashCalls(m) {
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const h = createHash('sha256');
  const bytes = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const threads of [1, 2, 3]) {
    const pool = new m.Pool({ threads, inlineThreshold: 0, grainSize: 1 });
    for (const [shape, layout] of [
      [[32, 64, 56, 56], 'channels-first'], [[64, 3, 224, 224], 'channels-first'], [[5, 7, 33, 37], 'channels-first'],
      [[256, 256, 14, 14], 'channels-first'], [[4096, 1024], 'channels-first'], [[7, 5, 1031], 'channels-first'],
      [[333, 37], 'channels-first'], [[8, 28, 28, 96], 'channels-last'], [[3, 5, 7, 11, 13], 'channels-last'],
    ]) {
      const C = layout === 'channels-last' ? shape.at(-1) : shape[1];
      for (const dtype of ['float32', 'float64']) {
        const n = shape.reduce((a, b) => a * b);
        const x = pool.alloc(n, dtype);
        for (let i = 0; i < n; i++) x[i] = 1000 + rnd() * 0.01 * (i % 7) - (i % 3 === 0 ? 1000 : 0);
        h.update(JSON.stringify((await m.ChannelStats.fromBatch(x, shape, { pool, layout })).toJSON()));
        const out = pool.alloc(n, dtype);
        const dy = pool.alloc(n, dtype);
        for (let i = 0; i < n; i++) dy[i] = rnd() - 0.5;
        const dx = pool.alloc(n, dtype);
        for (const activation of [undefined, 'relu']) {
          const bn = new m.BatchNorm(C, { pool, dtype, layout, activation });
          await bn.forward(x, shape, { out });
          h.update(bytes(out));
          h.update(bytes(bn.runningMean));
          h.update(bytes(bn.runningVar));
          const g = await bn.backward(dy, { out: dx });
          h.update(bytes(dx));
          h.update(bytes(g.dWeight));
          bn.eval();
          await bn.forward(x, shape, { out });
          h.update(bytes(out));
        }
        for (const a of [x, out, dy, dx]) pool.free(a);
      }
    }
    await pool.close();
  }
  return h.digest('hex');
}
