// What a small call costs the calling thread, beyond its work: loops of awaited module calls
// (eval and training forwards from an ordinary array into an ordinary `out`, inline) of three
// small shapes, each call's time and the garbage collector's share of it (PerformanceObserver
// 'gc' entries over the same loop); and the JavaScript heap a call allocates, measured in a child
// process whose young generation is large enough that no collection runs during the calls
// (used_heap_size over them). README, "Small inputs".
//
//     npm run build && node bench/call-overhead.mjs
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import v8 from 'node:v8';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { BatchNorm, Pool } = await import(pathToFileURL(join(root, 'dist/src/index.js')).href);
const allocation = process.argv[2] === '--allocation';

const pool = new Pool({ threads: 2 });
await pool.ready;
let gcMs = 0;
new PerformanceObserver((list) => { for (const e of list.getEntries()) gcMs += e.duration; }).observe({ entryTypes: ['gc'] });

const rows = [];
for (const shape of [[2, 16], [8, 16, 32, 32], [1, 3, 224, 224]]) {
  const n = shape.reduce((a, b) => a * b);
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 2 + (i % 3));
  const out = new Float32Array(n);
  const modules = { eval: new BatchNorm(shape[1], { pool }).eval(), training: new BatchNorm(shape[1], { pool }) };
  for (const [mode, bn] of Object.entries(modules)) {
    const calls = allocation ? 500 : Math.max(200, Math.min(50000, Math.floor(2e8 / n)));
    for (let i = 0; i < calls / 4; i++) await bn.forward(x, shape, { out });
    const gc0 = gcMs;
    const heap0 = v8.getHeapStatistics().used_heap_size;
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) await bn.forward(x, shape, { out });
    const ms = performance.now() - t0;
    const heap = v8.getHeapStatistics().used_heap_size - heap0;
    // The observer's entries come on a later turn of the event loop.
    await new Promise((resolve) => { setImmediate(resolve); });
    rows.push({ shape, mode, us: (ms / calls) * 1000, gcShare: (gcMs - gc0) / ms, kib: heap / calls / 1024, collected: gcMs > gc0 || heap < 0 });
  }
}
await pool.close();

if (allocation) {
  process.stdout.write(JSON.stringify(rows.map((r) => (r.collected ? null : r.kib))));
} else {
  // The allocation, from a child with a young generation of 256-512 MiB.
  const child = spawnSync(process.execPath, ['--max-semi-space-size=512', '--min-semi-space-size=256', fileURLToPath(import.meta.url), '--allocation'], { encoding: 'utf8' });
  const kib = child.status === 0 ? JSON.parse(child.stdout) : rows.map(() => null);
  console.log(`inline module calls from and into ordinary arrays, 2 workers, loops of awaited calls (${new Date().toISOString()})`);
  console.log('| shape | call | µs a call | GC share | heap allocated a call |');
  console.log('| --- | --- | ---: | ---: | ---: |');
  rows.forEach((r, i) => {
    const k = kib[i] === null ? 'n/a (a collection ran)' : `${kib[i].toFixed(1)} KiB`;
    console.log(`| [${r.shape.join(', ')}] | ${r.mode} | ${r.us.toFixed(1)} | ${(100 * r.gcShare).toFixed(1)}% | ${k} |`);
  });
}
