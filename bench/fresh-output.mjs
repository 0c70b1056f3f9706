// What a fresh output costs: training forwards of A [32, 64, 112, 112] float32 from x on the pool,
// with `out` (an array from pool.alloc, written every call: warm) and without it (a new
// SharedArrayBuffer every call, whose pages fault in as the workers first write them), in turn,
// `calls` of each after one of each to warm up. Each call's minor page faults are the process's
// (`process.resourceUsage()`), the workers' included. README, "What copies, and what it costs".
//
//     npm run build && node bench/fresh-output.mjs [threads=2] [calls=10]
//
// Run it with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc 2.35 or later) to see large
// allocations madvised for transparent huge pages, where the kernel leaves that to madvise
// (/sys/kernel/mm/transparent_hugepage/enabled reads `[madvise]`).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { BatchNorm, Pool } = await import(pathToFileURL(join(root, 'dist/src/index.js')).href);
const threads = Number(process.argv[2] ?? 2);
const calls = Number(process.argv[3] ?? 10);

const shape = [32, 64, 112, 112];
const n = shape.reduce((a, b) => a * b);
const pool = new Pool({ threads });
await pool.ready;
const x = pool.alloc(n);
for (let i = 0; i < n; i++) x[i] = Math.sin(i) * 3 + (i % 7);
const out = pool.alloc(n);
const bn = new BatchNorm(64, { pool });

/** One call's time (ms) and the process's minor page faults during it. */
async function measure(call) {
  const faults = process.resourceUsage().minorPageFault;
  const start = performance.now();
  await call();
  return [performance.now() - start, process.resourceUsage().minorPageFault - faults];
}

const kinds = {
  'with out (pool.alloc)': () => bn.forward(x, shape, { out }),
  'without out (fresh)': () => bn.forward(x, shape),
};
const runs = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
for (const call of Object.values(kinds)) await call();
for (let i = 0; i < calls; i++) {
  for (const [name, call] of Object.entries(kinds)) runs[name].push(await measure(call));
}

const thp = (() => {
  try {
    return readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').trim();
  } catch {
    return 'unknown';
  }
})();
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
console.log(`[${shape.join(', ')}] float32 training forward, ${threads} threads, ${new Date().toISOString()}`);
console.log(`GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? ''}; transparent_hugepage: ${thp}`);
console.log('| call | median ms | min ms | max ms | minor faults (median) |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const [name, r] of Object.entries(runs)) {
  const ms = r.map((v) => v[0]);
  console.log(`| ${name} | ${median(ms).toFixed(1)} | ${Math.min(...ms).toFixed(1)} | ${Math.max(...ms).toFixed(1)} | ${median(r.map((v) => v[1]))} |`);
}
await pool.close();
