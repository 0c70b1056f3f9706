/**
 * Peak resident memory of training forwards on shape A with x and out from `pool.alloc`, in a fresh
 * process: how much beyond the input and output bnpool itself needs (target: at most 16 MB).
 *
 *     node dist/bench/rss.js
 */
import { BatchNorm, Pool } from '../src/index.js';
import { elementsOf, fillInput, SHAPES } from './shapes.js';

const shape = SHAPES.find((s) => s.id === 'A')!.shape;
const n = elementsOf(shape);
const pool = new Pool();
const warm = new BatchNorm(shape[1], { pool });
// Warm the workers and the kernels on a small input first, so their own memory counts in the base.
const small = pool.alloc(8 * 64 * 16 * 16);
fillInput(small, [8, 64, 16, 16]);
await warm.forward(small, [8, 64, 16, 16], { out: small });
pool.free(small);
const base = process.resourceUsage().maxRSS * 1024;
const x = pool.alloc(n);
fillInput(x, shape);
const out = pool.alloc(n);
const bn = new BatchNorm(shape[1], { pool });
for (let i = 0; i < 3; i++) await bn.forward(x, shape, { out });
const peak = process.resourceUsage().maxRSS * 1024;
const mb = (b: number): string => (b / 1e6).toFixed(1);
const extra = peak - base - 2 * 4 * n;
console.log(
  `Peak RSS, training forward on A [${shape.join(', ')}] with pool buffers and out: ${mb(peak - base)} MB above the ` +
  `warmed-up process (${mb(base)} MB); input + output are ${mb(2 * 4 * n)} MB, so bnpool used ${mb(extra)} MB more ` +
  `(target: at most 16 MB). Measured by \`node dist/bench/rss.js\`.`,
);
await pool.close();
