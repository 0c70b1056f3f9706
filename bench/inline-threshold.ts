/**
 * Measures where running on the workers starts to beat running inline on the calling thread, for
 * a training forward with x and out on the pool. The default inline threshold
 * (DEFAULT_INLINE_THRESHOLD in src/pool-options.ts) comes from this crossover. Beside them, the
 * same call on one worker (`grainSize` larger than the input): what a call past the inline
 * threshold got from a fixed grain larger than it (the default before `grainSize: 'auto'`).
 *
 *     npm run build && node dist/bench/inline-threshold.js [kernel]
 */
import { availableParallelism } from 'node:os';
import { BatchNorm, Pool } from '../src/index.js';
import type { KernelName } from '../workers/protocol.js';

const kernel = (process.argv[2] ?? 'auto') as KernelName | 'auto';
const threads = Math.min(2, availableParallelism());
const inline = new Pool({ threads, kernel, inlineThreshold: Number.MAX_SAFE_INTEGER });
const workers = new Pool({ threads, kernel, inlineThreshold: 0, grainSize: 1 });
const oneWorker = new Pool({ threads, kernel, inlineThreshold: 0, grainSize: Number.MAX_SAFE_INTEGER });

async function median(pool: Pool, shape: number[]): Promise<number> {
  const length = shape.reduce((a, b) => a * b, 1);
  const x = pool.alloc(length);
  for (let i = 0; i < length; i++) x[i] = Math.sin(i) * 3 + (i % 5);
  const out = pool.alloc(length);
  const bn = new BatchNorm(shape[1], { pool });
  const times: number[] = [];
  const deadline = performance.now() + 300;
  for (let i = 0; i < 2000 && (i < 15 || performance.now() < deadline); i++) {
    const t0 = performance.now();
    await bn.forward(x, shape, { out });
    times.push(performance.now() - t0);
  }
  pool.free(x);
  pool.free(out);
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

console.log(`kernel ${inline.kernel}, ${threads} threads: training forward, x and out on the pool`);
console.log(`| elements | inline µs | ${threads} workers µs | workers / inline | 1 worker µs | 1 worker / inline |`);
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
// Batches of 16 x 32 x 32 (16,384 elements): powers of two, with finer steps where the JavaScript
// (81,920-98,304 elements) and WebAssembly (393,216-917,504) crossovers have been.
for (const n of [1, 2, 4, 5, 6, 8, 16, 24, 32, 40, 48, 56, 64, 128, 256]) {
  const shape = [n, 16, 32, 32];
  const a = await median(inline, shape);
  const b = await median(workers, shape);
  const c = await median(oneWorker, shape);
  const elements = n * 16 * 1024;
  const us = (ms: number): string => (ms * 1e3).toFixed(0);
  console.log(`| ${elements} | ${us(a)} | ${us(b)} | ${(b / a).toFixed(2)} | ${us(c)} | ${(c / a).toFixed(2)} |`);
}
await Promise.all([inline.close(), workers.close(), oneWorker.close()]);
