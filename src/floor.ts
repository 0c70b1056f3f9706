/**
 * The benchmark's floor: one SIMD streaming pass y = a * x + b over the same bytes, on the same
 * worker threads, split in equal contiguous parts. A BatchNorm forward must read x and write y at
 * least once, so nothing that normalizes with the same WebAssembly SIMD can beat this. (PyTorch's
 * eval into `out`, timed by its own script minutes apart, has taken less time than this pass did
 * on this project's machines, README "Performance" and bench/MACHINES.md; whether native code
 * beats it in the same moment is not measured.) bench/ reports ratios against it. Its siblings
 * read x only (what a statistics pass must at least take) or write y only.
 */
import type { StreamPass, StreamTask } from '../workers/protocol.js';
import { WorkerError } from './errors.js';
import { poolInternals, workerThreads } from './pool-internals.js';
import type { Pool } from './pool.js';

/** Runs the floor pass over pool arrays `x` and `y` (float32, same length). */
export function streamFloor(pool: Pool, x: Float32Array, y: Float32Array): Promise<void> {
  return streamPass(pool, 'stream', x, y);
}

/**
 * Runs `pass` over pool arrays `x` and `y` (float32, same length): 'stream' is the floor, 'read'
 * reads x only, 'write' writes y only.
 */
export async function streamPass(pool: Pool, pass: StreamPass, x: Float32Array, y: Float32Array): Promise<void> {
  const ctx = poolInternals(pool);
  ctx.assertOpen();
  // As many tasks as a call of this length has workers, on the workers even at or below the
  // inline threshold.
  const parts = workerThreads(ctx, x.length);
  const tasks: StreamTask[] = [];
  // Parts on 16-element boundaries, so every part but the last streams whole vectors.
  const step = Math.ceil(x.length / parts / 16) * 16;
  for (let start = 0; start < x.length; start += step) {
    const n = Math.min(step, x.length - start);
    tasks.push({ op: 'stream', pass, xByte: x.byteOffset + 4 * start, yByte: y.byteOffset + 4 * start, n, a: 1.5, b: 0.25 });
  }
  const settled = await ctx.runStream(tasks);
  for (const s of settled) {
    if (s.status === 'rejected') throw new WorkerError(`the ${pass} pass failed: ${String(s.reason)}`, { cause: s.reason });
  }
}
