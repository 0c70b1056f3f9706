// AssemblyScript kernels of bench/patterns.mjs (not the product's: see there). Each walks `rows`
// runs of `len` float32, `rowStride` elements apart, of `blocks` blocks `blockStride` elements
// apart (the blocks' runs taken in turns of `turnBytes`), as the fused training kernel
// (statsNormPlanes32) walks a channel's row groups: the statistics read x (one channel), the
// normalization reads nx and writes ny (another channel, or the same bytes in memory order).

/** Shifted sums as the product's sums32: 8 vectors in f32 lanes, then promoted into f64 pairs. */
@inline function stats(p: usize, len: usize, kv: v128, acc: usize): void {
  const end = p + (len << 2);
  let a1 = v128.load(acc);
  let a2 = v128.load(acc, 16);
  while (p + 128 <= end) {
    const d0 = f32x4.sub(v128.load(p), kv);
    const d1 = f32x4.sub(v128.load(p, 16), kv);
    const d2 = f32x4.sub(v128.load(p, 32), kv);
    const d3 = f32x4.sub(v128.load(p, 48), kv);
    const d4 = f32x4.sub(v128.load(p, 64), kv);
    const d5 = f32x4.sub(v128.load(p, 80), kv);
    const d6 = f32x4.sub(v128.load(p, 96), kv);
    const d7 = f32x4.sub(v128.load(p, 112), kv);
    const s = f32x4.add(f32x4.add(f32x4.add(d0, d1), f32x4.add(d2, d3)), f32x4.add(f32x4.add(d4, d5), f32x4.add(d6, d7)));
    const q = f32x4.add(
      f32x4.add(f32x4.add(f32x4.mul(d0, d0), f32x4.mul(d1, d1)), f32x4.add(f32x4.mul(d2, d2), f32x4.mul(d3, d3))),
      f32x4.add(f32x4.add(f32x4.mul(d4, d4), f32x4.mul(d5, d5)), f32x4.add(f32x4.mul(d6, d6), f32x4.mul(d7, d7))),
    );
    a1 = f64x2.add(a1, f64x2.add(f64x2.promote_low_f32x4(s), f64x2.promote_low_f32x4(i32x4.shuffle(s, s, 2, 3, 0, 1))));
    a2 = f64x2.add(a2, f64x2.add(f64x2.promote_low_f32x4(q), f64x2.promote_low_f32x4(i32x4.shuffle(q, q, 2, 3, 0, 1))));
    p += 128;
  }
  v128.store(acc, a1);
  v128.store(acc, a2, 16);
}

/** A plain sum (one add a vector): the least arithmetic a read can carry. */
@inline function sum(p: usize, len: usize, acc: v128): v128 {
  const end = p + (len << 2);
  while (p + 64 <= end) {
    acc = f32x4.add(acc, f32x4.add(f32x4.add(v128.load(p), v128.load(p, 16)), f32x4.add(v128.load(p, 32), v128.load(p, 48))));
    p += 64;
  }
  return acc;
}

/** y = (x - hi) * sc + b, as the product's normRunF32. */
@inline function norm(px: usize, py: usize, len: usize, hi: v128, sc: v128, b: v128): void {
  const end = px + (len << 2);
  while (px + 64 <= end) {
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px), hi), sc), b));
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px, 16), hi), sc), b), 16);
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px, 32), hi), sc), b), 32);
    v128.store(py, f32x4.add(f32x4.mul(f32x4.sub(v128.load(px, 48), hi), sc), b), 48);
    px += 64;
    py += 64;
  }
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
  const sc = f32x4.splat(2);
  const b = f32x4.splat(0.5);
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
          stats(x + at, t, kv, acc + (i << 5));
          norm(nx + at, ny + at, t, kv, sc, b);
        } else if (what == 1) {
          total = sum(x + at, t, total);
          norm(nx + at, ny + at, t, kv, sc, b);
        } else if (what == 2) {
          norm(nx + at, ny + at, t, kv, sc, b);
        } else {
          stats(x + at, t, kv, acc + (i << 5));
        }
      }
    }
  }
  return f32x4.extract_lane(total, 0);
}

/** The floor's pass: y = 1.5x + 0.25 over n float32 (n a multiple of 16). */
export function stream(x: usize, y: usize, n: i32): void {
  const a = f32x4.splat(1.5);
  const c = f32x4.splat(0.25);
  const end = x + ((<usize>n) << 2);
  while (x + 64 <= end) {
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x), a), c));
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x, 16), a), c), 16);
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x, 32), a), c), 32);
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x, 48), a), c), 48);
    x += 64;
    y += 64;
  }
}
