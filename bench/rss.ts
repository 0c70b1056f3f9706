/**
 * Peak resident memory of training forwards on shape A with x and out from `pool.alloc`, in a fresh
 * process: how much beyond the input and output bnpool itself needs (target: at most 16 MB).
 *
 * It samples `process.memoryUsage().rss` every millisecond (the main thread is idle while the
 * workers run) rather than reading getrusage's maxrss, which a child process inherits from the
 * parent that spawned it.
 *
 *     node dist/bench/rss.js          # a sentence
 *     node dist/bench/rss.js --json   # { text, extraMb }: the sentence, and the MB over input + output
 */
import { BatchNorm, Pool } from '../src/index.js';
import { elementsOf, fillInput, SHAPES } from './shapes.js';

const shape = SHAPES.find((s) => s.id === 'A')!.shape;
const n = elementsOf(shape);
const pool = new Pool();
const warm = new BatchNorm(shape[1], { pool });
// Warm the workers and the kernels on a small input first, so their own memory counts in the base.
const small = pool.alloc(4 * 64 * 56 * 56);
fillInput(small, [4, 64, 56, 56]);
await warm.forward(small, [4, 64, 56, 56], { out: small });
pool.free(small);
let peak = 0;
const sample = (): void => { peak = Math.max(peak, process.memoryUsage().rss); };
const sampler = setInterval(sample, 1);
const base = process.memoryUsage().rss;
const x = pool.alloc(n);
fillInput(x, shape);
const out = pool.alloc(n);
const bn = new BatchNorm(shape[1], { pool });
for (let i = 0; i < 3; i++) {
  await bn.forward(x, shape, { out });
  sample();
}
clearInterval(sampler);
const mb = (b: number): string => (b / 1e6).toFixed(1);
const extra = peak - base - 2 * 4 * n;
const text = `Peak RSS, training forward on A [${shape.join(', ')}] with pool buffers and out: ${mb(peak - base)} MB above the ` +
  `warmed-up process (${mb(base)} MB); input + output are ${mb(2 * 4 * n)} MB, so the peak was ` +
  `${mb(Math.abs(extra))} MB ${extra >= 0 ? 'over' : 'under'} them ` +
  `(target: at most 16 MB). Measured by \`node dist/bench/rss.js\`.`;
console.log(process.argv.includes('--json') ? JSON.stringify({ text, extraMb: extra / 1e6 }) : text);
await pool.close();
