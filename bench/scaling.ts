/**
 * Thread scaling, for machines with more cores than this project's 2: the floor and bnpool's
 * zero-copy training forward, eval forward and backward (WebAssembly kernels) of the benchmark
 * shapes at each thread count, then whether every thread count gave the same bits as one thread.
 *
 *     npm run bench:scaling -- [--shapes=A,C,16x64x32x32] [--threads=1,2,4,8,16]
 *                              [--pool-threads=16 | --grain=default] [--json=FILE]
 *     node dist/bench/scaling.js ...   (built already: on a machine without the dev dependencies)
 *
 * Shapes default to A, B, C and E (D runs inline, off the workers, where the floor does not);
 * thread counts as the suite's (bench/options.ts: 1, 2, 4, ... and availableParallelism()). Each
 * shape and thread count gets a pool of its own, sampled in alternating rounds as `npm run bench`
 * samples them (rounds.ts), so a row's ratio to the floor is of the same stretch of time. A
 * thread count is what each call runs on: its pool has that many threads (or `--pool-threads`,
 * the rest idle) and a `grainSize` that gives every call all of them; with `--grain=default`
 * the pool's default grain decides, and a row's thread count is the pool's. The
 * check after the timing makes, on a fresh module per pool and kernel (the JavaScript kernels
 * too), one training forward, its backward and one eval forward, and compares a hash of every
 * output (y, the running statistics, dx, dWeight, dBias; NHWC's y for A and C) with the first
 * thread count's: the contract is the same bits at every thread count (README, "How the work is
 * split"), and with as many cores as threads the workers' tasks really do overlap, which this
 * project's 2 vCPUs cannot show past 2 threads. Exits with 1 when any output differs.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { BatchNorm, Pool } from '../src/index.js';
import { streamFloor } from '../src/floor.js';
import { describeMachine } from './machine.js';
import { benchOptions } from './options.js';
import { medianOf, sampleInRounds } from './rounds.js';
import { type BenchShape, benchShapeOf, elementsOf, fillInput, nhwcOf } from './shapes.js';

const argv = process.argv.slice(2);
const own = (a: string): boolean => ['--json=', '--shapes=', '--pool-threads=', '--grain='].some((flag) => a.startsWith(flag));
const { threadCounts } = benchOptions(argv.filter((a) => !own(a)), availableParallelism());
const valueOf = (flag: string): string | undefined => argv.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
const jsonPath = valueOf('--json');
const poolThreadsArg = valueOf('--pool-threads');
const poolThreads = poolThreadsArg === undefined ? null : Number(poolThreadsArg);
if (poolThreads !== null && (!Number.isInteger(poolThreads) || poolThreads < Math.max(...threadCounts) || poolThreads > 1024)) {
  throw new Error(`--pool-threads: expected an integer from the largest thread count (${Math.max(...threadCounts)}) to 1024; got ${poolThreadsArg}`);
}
const grainArg = valueOf('--grain');
if (grainArg !== undefined && grainArg !== 'default') throw new Error(`--grain: expected default; got ${grainArg}`);
const defaultGrain = grainArg === 'default';
if (defaultGrain && poolThreads !== null) throw new Error('--grain=default with --pool-threads: every row would be the same pool; give one or the other');

/**
 * A pool on which each call over `n` elements runs on `threads` threads: `poolThreads` of them
 * (or `threads`), and the grain that leaves a call `threads` (exact where n >= threads²), unless
 * the default grain is asked for.
 */
const poolFor = (threads: number, n: number, options: { kernel: 'wasm' | 'js'; inlineThreshold?: number }): Pool => new Pool({
  ...options, threads: poolThreads ?? threads, grainSize: defaultGrain ? undefined : Math.ceil(n / threads),
});
/** `--shapes=A,E,16x64x32x32`: benchmark shapes by id, or any float32 shape, channels first. */
const shapes: BenchShape[] = (valueOf('--shapes')?.split(',') ?? ['A', 'B', 'C', 'E']).map((id) => benchShapeOf(id, '--shapes'));
const timing = { rounds: 4, time: 200, iterations: 5, warmupTime: 80 };
const MODES = ['floor', 'train', 'eval', 'backward', 'train NHWC'] as const;
type Mode = (typeof MODES)[number];

interface Row {
  shape: string;
  mode: Mode;
  threads: number;
  medianMs: number | null;
  gbps: number | null;
}

/** FNV-1a over an array's bytes, 32 bits at a time: enough to tell two outputs' bits apart. */
function hashOf(a: Float32Array | Float64Array | null): string {
  if (a === null) return 'null';
  const words = new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
  let h = 0x811c9dc5;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return `${words.length}:${(h >>> 0).toString(16)}`;
}

async function timeShape(shape: BenchShape, plainX: Float32Array): Promise<Row[]> {
  const dims = shape.shape;
  const n = plainX.length;
  const rows: Row[] = [];
  for (const threads of threadCounts) {
    const pool = poolFor(threads, n, { kernel: 'wasm' });
    try {
      const x = pool.alloc(n);
      x.set(plainX);
      const out = pool.alloc(n);
      const dy = pool.alloc(n);
      dy.set(plainX);
      const dx = pool.alloc(n);
      const train = new BatchNorm(dims[1], { pool });
      const evalBn = new BatchNorm(dims[1], { pool }).eval();
      const fns: [Mode, () => Promise<unknown>][] = [
        ['floor', () => streamFloor(pool, x, out)],
        ['train', () => train.forward(x, dims, { out })],
        ['eval', () => evalBn.forward(x, dims, { out })],
        ['backward', () => train.backward(dy, { out: dx })],
      ];
      const nhwc = nhwcOf(shape);
      if (nhwc !== null) {
        const last = new BatchNorm(dims[1], { pool, layout: 'channels-last' });
        fns.push(['train NHWC', () => last.forward(x, nhwc, { out })]);
      }
      const samples = await sampleInRounds(fns.map(([, fn]) => fn), timing);
      for (const [i, [mode]] of fns.entries()) {
        const medianMs = medianOf(samples[i]);
        rows.push({ shape: shape.id, mode, threads, medianMs, gbps: medianMs === null ? null : (8 * n) / medianMs / 1e6 });
      }
    } finally {
      await pool.close();
    }
    process.stderr.write(`${shape.id} at ${threads} threads timed\n`);
  }
  return rows;
}

/** Hashes of one training forward, its backward and one eval forward on a fresh pool. */
async function hashesOf(shape: BenchShape, plainX: Float32Array, pool: Pool): Promise<Record<string, string>> {
  const dims = shape.shape;
  const n = plainX.length;
  const x = pool.alloc(n);
  x.set(plainX);
  const out = pool.alloc(n);
  const dy = pool.alloc(n);
  for (let i = 0; i < n; i++) dy[i] = plainX[n - 1 - i] * 0.5;
  const dx = pool.alloc(n);
  const bn = new BatchNorm(dims[1], { pool, momentum: 0.3 });
  const h: Record<string, string> = {};
  await bn.forward(x, dims, { out });
  h.y = hashOf(out);
  h.runningMean = hashOf(bn.runningMean);
  h.runningVar = hashOf(bn.runningVar);
  const g = await bn.backward(dy, { out: dx });
  h.dx = hashOf(g.dx);
  h.dWeight = hashOf(g.dWeight);
  h.dBias = hashOf(g.dBias);
  bn.eval();
  await bn.forward(x, dims, { out });
  h.evalY = hashOf(out);
  const nhwc = nhwcOf(shape);
  if (nhwc !== null) {
    const last = new BatchNorm(dims[1], { pool, layout: 'channels-last' });
    await last.forward(x, nhwc, { out });
    h.nhwcY = hashOf(out);
  }
  return h;
}

/** Per kernel, the outputs that differ from the first thread count's, as "kernel at threads: names". */
async function checkShape(shape: BenchShape, plainX: Float32Array): Promise<{ compared: number; differ: string[] }> {
  let compared = 0;
  const differ: string[] = [];
  for (const kernel of ['wasm', 'js'] as const) {
    let base: Record<string, string> | null = null;
    for (const threads of threadCounts) {
      // inlineThreshold 0: even one thread's calls go through its worker, as the others' do.
      const pool = poolFor(threads, plainX.length, { kernel, inlineThreshold: 0 });
      let h: Record<string, string>;
      try {
        h = await hashesOf(shape, plainX, pool);
      } finally {
        await pool.close();
      }
      if (base === null) {
        base = h;
        continue;
      }
      const names = Object.keys(base).filter((k) => base![k] !== h[k]);
      compared += Object.keys(base).length;
      if (names.length > 0) differ.push(`${kernel} at ${threads} threads: ${names.join(', ')}`);
    }
  }
  return { compared, differ };
}

const fmt = (v: number | null, digits: number): string => (v === null ? '—' : v.toFixed(digits));

function tableOf(shape: BenchShape, rows: readonly Row[]): string {
  const floorAt = new Map(rows.filter((r) => r.mode === 'floor').map((r) => [r.threads, r.medianMs]));
  const oneThread = new Map(rows.filter((r) => r.threads === threadCounts[0]).map((r) => [r.mode, r.medianMs]));
  const lines = [
    `#### ${shape.id} [${shape.shape.join(', ')}]`,
    '',
    '| mode | threads | median ms | GB/s | ÷ floor | speed-up over ' + `${threadCounts[0]} thread${threadCounts[0] === 1 ? '' : 's'} |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const mode of MODES) {
    for (const r of rows.filter((x) => x.mode === mode)) {
      const floor = floorAt.get(r.threads) ?? null;
      const first = oneThread.get(mode) ?? null;
      const vsFloor = r.medianMs === null || floor === null ? null : r.medianMs / floor;
      const speedUp = r.medianMs === null || first === null ? null : first / r.medianMs;
      lines.push(`| ${mode} | ${r.threads} | ${fmt(r.medianMs, 3)} | ${fmt(r.gbps, 1)} | ${fmt(vsFloor, 2)} | ${fmt(speedUp, 2)} |`);
    }
  }
  return lines.join('\n');
}

const started = performance.now();
const machine = describeMachine();
const all: Row[] = [];
const checks: Record<string, { compared: number; differ: string[] }> = {};
const out: string[] = [`### Thread scaling (${machine})`, ''];
for (const shape of shapes) {
  const plainX = new Float32Array(elementsOf(shape.shape));
  fillInput(plainX, shape.shape);
  const rows = await timeShape(shape, plainX);
  all.push(...rows);
  checks[shape.id] = await checkShape(shape, plainX);
  out.push(tableOf(shape, rows), '');
}
const first = threadCounts[0] === 1 ? "1 thread's" : `${threadCounts[0]} threads'`;
out.push(`| shape | outputs compared with ${first} (both kernels) | differing |`, '| --- | ---: | --- |');
for (const [id, c] of Object.entries(checks)) out.push(`| ${id} | ${c.compared} | ${c.differ.length === 0 ? 'none' : c.differ.join('; ')} |`);
const pools = poolThreads === null ? 'a pool of as many threads each' : `pools of ${poolThreads} threads`;
const grains = defaultGrain ? 'the default grainSize' : 'a grainSize giving each call that many';
out.push('', `Thread counts ${threadCounts.join(', ')} (${pools}, ${grains}); finished in ${((performance.now() - started) / 1000).toFixed(0)} s.`);
console.log(out.join('\n'));
if (jsonPath !== undefined) {
  writeFileSync(jsonPath, `${JSON.stringify({ date: new Date().toISOString(), machine, threadCounts, poolThreads, defaultGrain, timing, rows: all, checks }, null, 2)}\n`);
}
const differing = Object.values(checks).reduce((s, c) => s + c.differ.length, 0);
if (differing > 0) process.exitCode = 1;
