/**
 * The benchmark suite: `npm run bench` (full, < 4 min here) or `npm run bench -- --quick` (< 30 s);
 * `--shapes=A,C` runs only those shapes and `--threads=1,2,8` only those thread counts (results in
 * bench/results/partial.*, not committed; bench/options.ts).
 *
 * For each shape it measures, in one run: the floor (a WebAssembly SIMD streaming pass y = a*x + b
 * over the same bytes on the same worker threads), bnpool at 1..availableParallelism() threads (1, 2,
 * 4, ... past 4: bench/options.ts) with both kernels, the naive port, onnxruntime-node and
 * TensorFlow.js. It prints a markdown table per shape and one of the issues' targets (report.ts,
 * targetsOf), and writes JSON, markdown and an SVG chart under bench/results/ (the full run also
 * writes bench/RESULTS.md).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { BatchNorm, ChannelStats, Pool } from '../src/index.js';
import { streamFloor, streamPass } from '../src/floor.js';
import { naiveBatchNorm } from './peers/naive.js';
import { describeMachine } from './machine.js';
import { loadOnnx, onnxRunner, type PeerRunner } from './peers/onnx.js';
import { loadTfjs, tfjsRunner } from './peers/tfjs.js';
import { addRatios, isMet, markdownTable, type Row, svgChart, targetsOf, targetsTable } from './report.js';
import { medianOf, sampleInRounds } from './rounds.js';
import { benchOptions } from './options.js';
import { type BenchShape, elementsOf, fillInput, nhwcOf } from './shapes.js';

const maxThreads = availableParallelism();
const { quick, shapes, threadCounts, tag } = benchOptions(process.argv.slice(2), maxThreads);
/** The most threads measured: the floor's halves and the statistics pass run there. */
const topThreads = threadCounts[threadCounts.length - 1];
const kernels = quick ? (['wasm'] as const) : (['wasm', 'js'] as const);
// Enough warm-up for V8 to optimize the JavaScript around the kernels (the kernels themselves are
// compiled optimized up front).
const timing = quick
  ? { rounds: 2, time: 40, iterations: 4, warmupTime: 30 }
  : { rounds: 5, time: 250, iterations: 5, warmupTime: 100 };
const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));

interface Measure {
  impl: string;
  mode: Row['mode'];
  input: Row['input'];
  threads: number;
  note?: string;
  /** Passes over the tensor's bytes that GB/s counts: 2 (a read and a write) unless said. */
  passes?: number;
  fn: () => Promise<unknown> | unknown;
}

/** Measures the items in alternating rounds (see sampleInRounds), one row each. */
async function measure(shape: BenchShape, items: Measure[]): Promise<Row[]> {
  const samples = await sampleInRounds(items.map((m) => m.fn), timing);
  const tensorBytes = 4 * elementsOf(shape.shape);
  return items.map((m, i) => {
    const median = medianOf(samples[i]);
    const bytes = (m.passes ?? 2) * tensorBytes;
    return {
      shape: shape.id, impl: m.impl, mode: m.mode, input: m.input, threads: m.threads, note: m.note,
      medianMs: median, samples: samples[i].length, gbps: median === null ? null : bytes / median / 1e6, vsFloor: null, vsBestPeer: null,
    };
  });
}

async function benchShape(shape: BenchShape): Promise<Row[]> {
  const dims = shape.shape;
  const n = elementsOf(dims);
  const C = dims[1];
  const rows: Row[] = [];
  const plainX = new Float32Array(n);
  fillInput(plainX, dims);
  // D: the single-threaded kernel inline on the calling thread, the reference for small inputs,
  // sampled in the same rounds as the calls it is compared with (most threads, WebAssembly).
  let inline: { pool: Pool; item: Measure } | null = null;
  if (shape.id === 'D') {
    const pool = new Pool({ threads: 1, kernel: 'wasm', inlineThreshold: Number.MAX_SAFE_INTEGER });
    const x = pool.alloc(n);
    x.set(plainX);
    const out = pool.alloc(n);
    const bn = new BatchNorm(C, { pool });
    inline = { pool, item: { impl: 'bnpool wasm', mode: 'train', input: 'inline', threads: 1, note: 'kernel inline', fn: () => bn.forward(x, dims, { out }) } };
  }

  // bnpool and the floor, per thread count and kernel, on one pool each.
  for (const threads of threadCounts) {
    for (const kernel of kernels) {
      const pool = new Pool({ threads, kernel });
      const x = pool.alloc(n);
      x.set(plainX);
      const out = pool.alloc(n);
      const train = new BatchNorm(C, { pool });
      const evalBn = new BatchNorm(C, { pool }).eval();
      const items: Measure[] = [];
      const name = `bnpool ${kernel}`;
      if (kernel === 'wasm') items.push({ impl: 'floor', mode: 'train', input: '-', threads, fn: () => streamFloor(pool, x, out) });
      if (kernel === 'wasm' && threads === topThreads) {
        // What the floor's two halves cost apart, and bnpool's statistics pass alone: a training
        // forward must read x for its statistics before it writes y (README, "Performance").
        items.push(
          { impl: 'read pass', mode: 'read', input: '-', threads, passes: 1, fn: () => streamPass(pool, 'read', x, out) },
          { impl: 'write pass', mode: 'write', input: '-', threads, passes: 1, fn: () => streamPass(pool, 'write', x, out) },
          { impl: 'bnpool wasm', mode: 'stats', input: 'zero-copy', threads, passes: 1, fn: () => ChannelStats.fromBatch(x, dims, { pool }) },
        );
        if (inline !== null) items.push(inline.item);
      }
      // Backward of the training forward measured just before it (dy and dx on the pool too).
      const dy = pool.alloc(n);
      dy.set(plainX);
      const dx = pool.alloc(n);
      items.push(
        { impl: name, mode: 'train', input: 'zero-copy', threads, fn: () => train.forward(x, dims, { out }) },
        { impl: name, mode: 'backward', input: 'zero-copy', threads, fn: () => train.backward(dy, { out: dx }) },
        { impl: name, mode: 'eval', input: 'zero-copy', threads, fn: () => evalBn.forward(x, dims, { out }) },
      );
      const nhwc = nhwcOf(shape);
      if (nhwc !== null) {
        const last = new BatchNorm(C, { pool, layout: 'channels-last' });
        items.push({ impl: name, mode: 'train', input: 'zero-copy', threads, note: `NHWC [${nhwc.join(',')}]`, fn: () => last.forward(x, nhwc, { out }) });
      }
      if (!quick) {
        items.push(
          { impl: name, mode: 'train', input: 'plain', threads, fn: () => train.forward(plainX, dims) },
          { impl: name, mode: 'eval', input: 'plain', threads, fn: () => evalBn.forward(plainX, dims) },
        );
      }
      rows.push(...(await measure(shape, items)));
      await pool.close();
    }
  }
  if (inline !== null) await inline.pool.close();

  // Peers.
  const peerItems: Measure[] = [];
  const runners: PeerRunner[] = [];
  const naiveState = { gamma: new Float32Array(C).fill(1), beta: new Float32Array(C), movingMean: new Float32Array(C), movingVar: new Float32Array(C).fill(1) };
  if (!quick || shape.id === 'D' || shape.id === 'E') {
    peerItems.push({ impl: 'naive port', mode: 'train', input: 'plain', threads: 1, fn: () => naiveBatchNorm(plainX, dims, true, naiveState) });
  }
  const onnx = loadOnnx();
  if (onnx.ok) {
    for (const threads of quick ? [maxThreads] : [1, 2]) {
      for (const training of quick ? [true] : [true, false]) {
        const r = await onnxRunner(plainX, dims, training, threads);
        runners.push(r);
        peerItems.push({ impl: 'onnxruntime', mode: training ? 'train' : 'eval', input: 'plain', threads, note: `training_mode ${training ? 1 : 0}`, fn: () => r.run() });
      }
    }
  } else {
    rows.push(unavailable(shape, 'onnxruntime', onnx.reason));
  }
  rows.push(...(await measure(shape, peerItems)));
  for (const r of runners) await r.close();

  for (const backend of ['wasm', 'cpu'] as const) {
    if (backend === 'cpu' && shape.id !== 'D' && shape.id !== 'E') continue; // 10-18 s a call on A
    if (quick && backend === 'cpu') continue;
    const tf = await loadTfjs(backend);
    if (!tf.ok) {
      rows.push(unavailable(shape, `tfjs-${backend}`, tf.reason));
      continue;
    }
    const items: Measure[] = [];
    const made: PeerRunner[] = [];
    for (const training of quick ? [true] : [true, false]) {
      const r = tfjsRunner(plainX, dims, training);
      made.push(r);
      items.push({ impl: `tfjs-${backend}`, mode: training ? 'train' : 'eval', input: 'plain', threads: 1, fn: () => r.run() });
    }
    rows.push(...(await measure(shape, items)));
    for (const r of made) await r.close();
  }
  addRatios(rows);
  return rows;
}

function unavailable(shape: BenchShape, impl: string, reason: string): Row {
  return { shape: shape.id, impl, mode: 'train', input: '-', threads: 0, medianMs: null, samples: 0, gbps: null, vsFloor: null, vsBestPeer: null, note: `unavailable: ${reason}` };
}

/** Peak RSS of a training forward on A with pool buffers and `out`, in a fresh process. */
function measureRss(): { text: string; extraMb: number } {
  const script = fileURLToPath(new URL('./rss.js', import.meta.url));
  return JSON.parse(execFileSync(process.execPath, [script, '--json'], { encoding: 'utf8' })) as { text: string; extraMb: number };
}

const started = performance.now();
const machine = describeMachine(maxThreads);
console.log(`bnpool benchmark (${quick ? 'quick' : 'full'}): ${machine}\n`);
const all: Row[] = [];
const tables: string[] = [];
for (const shape of shapes) {
  const rows = await benchShape(shape);
  all.push(...rows);
  const table = markdownTable(shape, rows);
  tables.push(table);
  console.log(table + '\n');
}
const memory = quick ? null : measureRss();
const rss = memory?.text ?? null;
if (rss !== null) console.log(rss + '\n');
// The issues' targets are at 2 threads; a machine with one core has only 1.
const targetThreads = Math.min(2, maxThreads);
const targets = targetsOf(all, targetThreads, memory?.extraMb ?? null);
const targetText = targetsTable(targets, targetThreads);
console.log(targetText + '\n');
const seconds = (performance.now() - started) / 1000;
console.log(`finished in ${seconds.toFixed(1)} s`);

mkdirSync(resultsDir, { recursive: true });
const date = new Date().toISOString();
writeFileSync(`${resultsDir}${tag}.json`, JSON.stringify({ date, machine, quick, seconds, timing, rows: all, rss, targets: targets.map((t) => ({ ...t, met: isMet(t) })) }, null, 1) + '\n');
writeFileSync(`${resultsDir}${tag}.svg`, svgChart(shapes, all, `bnpool ${tag} run, training forward: GB/s (${machine})`) + '\n');
const md = [
  `# Benchmark results (${tag} run)`,
  '',
  `Measured ${date.slice(0, 10)} on ${machine} by \`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`, in ${seconds.toFixed(0)} s.`,
  `Medians of tinybench samples taken in ${timing.rounds} rounds that alternate the implementations of a shape and thread count (the floor among them). GB/s counts one read and one write of the tensor for every implementation but the read pass, the write pass and bnpool's statistics pass (mode \`stats\`, \`ChannelStats.fromBatch\`), which count one.`,
  '"÷ floor": median over the floor\'s median at the same thread count, measured in the same run (1.00 = streaming speed).',
  '"× vs best peer": the fastest peer\'s median (onnxruntime, TensorFlow.js) at the same thread count and mode, over this median.',
  '',
  `![GB/s per shape and implementation](results/${tag}.svg)`,
  '',
  ...tables.flatMap((t) => [t, '']),
  ...(rss === null ? [] : ['### Memory', '', rss, '']),
  targetText,
  '',
].join('\n');
writeFileSync(`${resultsDir}${tag}.md`, md);
if (tag === 'full') writeFileSync(fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url)), md);
