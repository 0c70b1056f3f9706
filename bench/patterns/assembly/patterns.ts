import { sums32 } from '../../../workers/wasm/assembly/stats';
import { normRunF32 } from '../../../workers/wasm/assembly/normalize';

// AssemblyScript walks of bench/patterns.mjs over the product's own inner loops (sums32,
// normRunF32, stream32), and a plain sum beside them. Each walks `rows`
// runs of `len` float32, `rowStride` elements apart, of `blocks` blocks `blockStride` elements
// apart (the blocks' runs taken in turns of `turnBytes`), as the fused training kernel
// (statsNormPlanes32) walks a channel's row groups: the statistics read x (one channel), the
// normalization reads nx and writes ny (another channel, or the same bytes in memory order).

/** A plain sum (one add a vector): the least arithmetic a read can carry. */
@inline function sum(p: usize, len: usize, acc: v128): v128 {
  const end = p + (len << 2);
  while (p + 64 <= end) {
    acc = f32x4.add(acc, f32x4.add(f32x4.add(v128.load(p), v128.load(p, 16)), f32x4.add(v128.load(p, 32), v128.load(p, 48))));
    p += 64;
  }
  return acc;
}

/**
 * One walk. `what`: 0 statistics of x and normalization of nx into ny in step (the fused pass),
 * 1 a plain sum of x and the normalization in step, 2 the normalization alone, 3 the statistics
 * alone. Lengths are multiples of 32 elements; `acc` holds 32 bytes a block. Returns the sums'
 * lane 0 (so that they are not optimized away).
 */
export function walk(
  what: i32, x: usize, nx: usize, ny: usize, blocks: i32, blockStride: i32, rows: i32, rowStride: i32, len: i32,
  turnBytes: i32, acc: usize,
): f32 {
  const kv = f32x4.splat(3000);
  let total = f32x4.splat(0);
  const blockBytes = (<usize>blockStride) << 2;
  const runBytes = (<usize>len) << 2;
  for (let r = 0; r < rows; r++) {
    const row = (<usize>r * <usize>rowStride) << 2;
    for (let o: usize = 0; o < runBytes; o += <usize>turnBytes) {
      const t = min(<usize>turnBytes, runBytes - o) >> 2;
      for (let i: usize = 0; i < <usize>blocks; i++) {
        const at = row + i * blockBytes + o;
        if (what == 0) {
          sums32(x + at, <i32>t, kv, 3000, acc + (i << 5));
          normRunF32(nx + at, ny + at, <i32>t, 3000, 2, 0.5, -Infinity, false);
        } else if (what == 1) {
          total = sum(x + at, t, total);
          normRunF32(nx + at, ny + at, <i32>t, 3000, 2, 0.5, -Infinity, false);
        } else if (what == 2) {
          normRunF32(nx + at, ny + at, <i32>t, 3000, 2, 0.5, -Infinity, false);
        } else {
          sums32(x + at, <i32>t, kv, 3000, acc + (i << 5));
        }
      }
    }
  }
  return f32x4.extract_lane(total, 0);
}

// The floor's pass, the product's own.
export { stream32 } from '../../../workers/wasm/assembly/floor';
