import { fold4, masked32, masked64 } from './common';
import { needsZeroCheck, writeBwdPartial32, zeroProductLanes32 } from './backward-partial';

// Backward sums of channels in lanes (S = 1: rank 2, channels-last with C >= 16 or a multiple of
// 4), bwdStatsRows32's and bwdStatsRows64's: (Σdy, Σdy·(x - mean)) per channel down the rows, as
// stats-rows.ts's statsColumns32 sums the forward's.

/**
 * bwdStatsRows64 for S = 1: channels in the two lanes, row by row (the same operations per
 * channel as the general loop, so the same bits). acc: the means, Σdy and Σdy·(x - mean) as f64
 * arrays of C rounded up to 2.
 */
export function bwdColumns64(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, rowStride: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  const useMask = mask != 0;
  const cPad = <usize>((C + 1) & ~1);
  const mA = acc;
  const sA = mA + (cPad << 3);
  const pA = sA + (cPad << 3);
  for (let c: usize = 0; c < cPad; c++) {
    store<f64>(mA + (c << 3), c < <usize>C ? load<f64>(params + (c << 5)) : 0);
    store<f64>(sA + (c << 3), 0);
    store<f64>(pA + (c << 3), 0);
  }
  const c2 = <usize>(C & ~1);
  const rowBytes = <usize>rowStride << 3;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c: usize = 0; c < c2; c += 2) {
      const o = row + (c << 3);
      const k = c << 3;
      let g = v128.load(dy + o);
      if (useMask) g = masked64(g, mask + o);
      v128.store(sA + k, f64x2.add(v128.load(sA + k), g));
      v128.store(pA + k, f64x2.add(v128.load(pA + k), f64x2.mul(g, f64x2.sub(v128.load(x + o), v128.load(mA + k)))));
    }
    if (c2 < <usize>C) {
      const o = row + (c2 << 3);
      const k = c2 << 3;
      const g = useMask && load<f64>(mask + o) <= 0 ? 0 : load<f64>(dy + o);
      store<f64>(sA + k, load<f64>(sA + k) + g);
      store<f64>(pA + k, load<f64>(pA + k) + g * (load<f64>(x + o) - load<f64>(mA + k)));
    }
  }
  for (let c: usize = 0; c < <usize>C; c++) {
    const o = out + c * <usize>outStride;
    store<f64>(o, <f64>rows);
    store<f64>(o, load<f64>(sA + (c << 3)), 8);
    store<f64>(o, load<f64>(pA + (c << 3)), 16);
  }
}

/**
 * Rows (channels in lanes) from this many bytes up to BWD_SPREAD_LIMIT_ROW_BYTES are summed in
 * tiles of 8 rows an eighth of the call apart, as statsColumns32's from SPREAD_MIN_ROW_BYTES;
 * shorter and longer rows in tiles of 8 adjacent rows. With half-line blocks (bwdHalfLines32),
 * one thread pinned, from 64 MiB (`KERNELS=bwdStatsRows node bench/lanes-ab.mjs`, two runs,
 * 2026-12-02): 64 channels spread against adjacent 1.52-1.86x the speed of the whole-line blocks
 * before, adjacent 0.89-0.90x.
 */
const BWD_SPREAD_MIN_ROW_BYTES: usize = 256;

/**
 * Rows of 4 KiB (1024 channels) are spread too since 2026-12-04, on the sixth machine: 1.05-1.21x
 * the speed of adjacent tiles at 8 and 64 MiB, one thread (`SIZES=8,64 KERNELS=bwdStatsRows node
 * bench/lanes-ab.mjs <before>/dist dist 1024,2048`, three runs), and E's backward sums at 2 threads
 * 1.02-1.06 -> 0.86-0.94 ms a task (`KERNELS=1 node bench/timeline.mjs E floor,train,backward`, three
 * runs of each build in turn); rows of 8 and 16 KiB gained nothing spread (0.99-1.02x, one run),
 * and keep adjacent tiles.
 */
const BWD_SPREAD_LIMIT_ROW_BYTES: usize = 4096;

/**
 * Rows of at least this many bytes and under BWD_SPREAD_MIN_ROW_BYTES (32 to 63 channels of
 * whole rows) sum their whole cache lines in blocks of 16 channels (bwdLines32): there the
 * half-line blocks ran 0.73-0.92x the speed from memory for 32 and 48 channels (two runs each),
 * their adjacent tiles' 8 rows (1 KiB to 2 KiB) walked half a line at a time.
 */
const BWD_LINES_MIN_ROW_BYTES: usize = 128;

/**
 * Rank-2 style backward partials (S = 1): channels in lanes by 8 rows summed in f32, then folded
 * into f64, as in statsColumns32 (tiles of rows an eighth of the call apart from
 * BWD_SPREAD_MIN_ROW_BYTES up to BWD_SPREAD_LIMIT_ROW_BYTES). Blocks of 8 channels (half a cache
 * line), the even and odd rows in accumulators of their own (bwdHalfLines32), except whole lines of rows from
 * BWD_LINES_MIN_ROW_BYTES up to BWD_SPREAD_MIN_ROW_BYTES (bwdLines32).
 * acc: hi as f32, Σdy and Σdy·(x - hi) as f64, and a flag as i32 (zeroProductLanes32), each [C
 * rounded up to 4], then zeroProductLanes32's list (C rounded up to 4 bytes).
 */
export function bwdColumns32(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, rowStride: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  const useMask = mask != 0;
  const rowBytes = <usize>rowStride << 2;
  const cPad = <usize>((C + 3) & ~3);
  const hArr = acc;
  const sArr = acc + (cPad << 2);
  const pArr = sArr + (cPad << 3);
  for (let c: usize = 0; c < cPad; c++) {
    store<f32>(hArr + (c << 2), c < <usize>C ? <f32>load<f64>(params + (c << 5)) : 0);
    store<f64>(sArr + (c << 3), 0);
    store<f64>(pArr + (c << 3), 0);
  }
  // Tiles of 8 rows an eighth of the call apart for rows of BWD_SPREAD_MIN_ROW_BYTES to
  // BWD_SPREAD_LIMIT_ROW_BYTES, then (and for other rows) tiles of 8 adjacent rows, as statsColumns32.
  const h = rowBytes >= BWD_SPREAD_MIN_ROW_BYTES && rowBytes <= BWD_SPREAD_LIMIT_ROW_BYTES ? rows >> 3 : 0;
  const spread = <usize>h * rowBytes;
  const lines = rowBytes >= BWD_LINES_MIN_ROW_BYTES && rowBytes < BWD_SPREAD_MIN_ROW_BYTES;
  for (let t = 0; t < h; t++) {
    bwdColumnTile32(x, dy, mask, <usize>t * rowBytes, spread, 8, C, hArr, sArr, pArr, useMask, false);
  }
  for (let r = h << 3; r < rows; r += 8) {
    bwdColumnTile32(x, dy, mask, <usize>r * rowBytes, rowBytes, min(8, rows - r), C, hArr, sArr, pArr, useMask, lines);
  }
  // A channel whose Σdy·(x - hi) came out exactly zero beside a Σdy that is not is kept only where
  // every product is zero (backward-partial.ts): checked down the rows for all such channels at once.
  const fArr = pArr + (cPad << 3);
  let check = false;
  for (let c: usize = 0; c < cPad; c++) {
    const zero = c < <usize>C && needsZeroCheck(load<f64>(sArr + (c << 3)), load<f64>(pArr + (c << 3)));
    store<i32>(fArr + (c << 2), zero ? -1 : 0);
    check = check || zero;
  }
  if (check) zeroProductLanes32(x, dy, mask, rows, rowBytes, C, hArr, fArr, fArr + (cPad << 2));
  for (let c: usize = 0; c < <usize>C; c++) {
    writeBwdPartial32(
      out + c * <usize>outStride, <f64>rows, load<f64>(sArr + (c << 3)), load<f64>(pArr + (c << 3)), load<f64>(params + (c << 5)),
      load<i32>(fArr + (c << 2)) != 0, x + (c << 2), dy + (c << 2), useMask ? mask + (c << 2) : 0, rows, rowBytes, rowBytes, rowBytes, 1,
    );
  }
}

/**
 * bwdColumns32's tile: `tile` rows (at most 8), `stride` bytes apart from byte `base` of x, dy
 * and the mask, of C channels in lanes, added to the f64 sums at sArr and pArr (hi at hArr):
 * with `lines`, whole lines of 16 channels first (bwdLines32), then blocks of 8 (bwdHalfLines32),
 * then the channels past the last 8 one at a time.
 */
@inline function bwdColumnTile32(
  x: usize, dy: usize, mask: usize, base: usize, stride: usize, tile: i32, C: i32, hArr: usize, sArr: usize, pArr: usize, useMask: bool,
  lines: bool,
): void {
  const c16 = lines ? <usize>(C & ~15) : 0;
  const c8 = <usize>(C & ~7);
  for (let c: usize = 0; c < c16; c += 16) bwdLines32(x, dy, mask, base, stride, tile, c, hArr, sArr, pArr, useMask);
  for (let c = c16; c < c8; c += 8) bwdHalfLines32(x, dy, mask, base, stride, tile, c, hArr, sArr, pArr, useMask);
  for (let c = c8; c < <usize>C; c++) {
    const hi = load<f32>(hArr + (c << 2));
    let t1: f64 = 0;
    let t2: f64 = 0;
    for (let i = 0; i < tile; i++) {
      const o = base + <usize>i * stride + (c << 2);
      const g = useMask && load<f32>(mask + o) <= 0 ? 0 : <f64>load<f32>(dy + o);
      t1 += g;
      t2 += g * <f64>(load<f32>(x + o) - hi);
    }
    store<f64>(sArr + (c << 3), load<f64>(sArr + (c << 3)) + t1);
    store<f64>(pArr + (c << 3), load<f64>(pArr + (c << 3)) + t2);
  }
}

/**
 * Channels [c, c + 8) of a tile: the even rows and the odd rows in accumulators of their own (8
 * in all: no add waits on the one before, two rows' loads in flight together), added together
 * before the fold: at most 5 roundings per lane between folds. Against whole lines of 16 channels
 * with one set of accumulators (12 live vectors and their operands: more than the 16 registers
 * V8 gives SIMD), one thread pinned (`KERNELS=bwdStatsRows node bench/lanes-ab.mjs`, two runs,
 * 2026-12-02): from 1 / 64 MiB 1.18-1.19x / 1.07-1.21x the speed for 16 channels, 1.06-1.24x /
 * 1.46-1.73x for 64 (spread), 1.35-1.38x / 1.40-1.43x for 256, 1.37-1.45x / 1.23-1.39x for 1024,
 * and 1.5-2.3x for 24 and 40 (a scalar tail of 8 before). Whole calls at 2 workers (`node
 * bench/alternate.mjs BEFORE/dist dist lanes`, four runs in both orders, two of them of a build
 * with these blocks for every row width, which takes the same paths for these shapes): backward
 * of channels-last [32, 112, 112, 64] 0.83-1.02 of the time, [64, 56, 56, 256] 0.79-0.82, rank 2
 * [16384, 256] 0.80-1.04, E 0.85-1.03.
 */
@inline function bwdHalfLines32(
  x: usize, dy: usize, mask: usize, base: usize, stride: usize, tile: i32, c: usize, hArr: usize, sArr: usize, pArr: usize, useMask: bool,
): void {
  const h0 = v128.load(hArr + (c << 2));
  const h1 = v128.load(hArr + (c << 2), 16);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let p0 = f32x4.splat(0);
  let p1 = f32x4.splat(0);
  let t0 = f32x4.splat(0);
  let t1 = f32x4.splat(0);
  let r0 = f32x4.splat(0);
  let r1 = f32x4.splat(0);
  let o = base + (c << 2);
  let i = 0;
  for (; i + 1 < tile; i += 2) {
    let g0 = v128.load(dy + o);
    let g1 = v128.load(dy + o, 16);
    let e0 = v128.load(dy + o + stride);
    let e1 = v128.load(dy + o + stride, 16);
    if (useMask) {
      g0 = masked32(g0, mask + o, 0);
      g1 = masked32(g1, mask + o, 16);
      e0 = masked32(e0, mask + o + stride, 0);
      e1 = masked32(e1, mask + o + stride, 16);
    }
    s0 = f32x4.add(s0, g0);
    s1 = f32x4.add(s1, g1);
    t0 = f32x4.add(t0, e0);
    t1 = f32x4.add(t1, e1);
    p0 = f32x4.add(p0, f32x4.mul(g0, f32x4.sub(v128.load(x + o), h0)));
    p1 = f32x4.add(p1, f32x4.mul(g1, f32x4.sub(v128.load(x + o, 16), h1)));
    r0 = f32x4.add(r0, f32x4.mul(e0, f32x4.sub(v128.load(x + o + stride), h0)));
    r1 = f32x4.add(r1, f32x4.mul(e1, f32x4.sub(v128.load(x + o + stride, 16), h1)));
    o += stride << 1;
  }
  if (i < tile) {
    let g0 = v128.load(dy + o);
    let g1 = v128.load(dy + o, 16);
    if (useMask) {
      g0 = masked32(g0, mask + o, 0);
      g1 = masked32(g1, mask + o, 16);
    }
    s0 = f32x4.add(s0, g0);
    s1 = f32x4.add(s1, g1);
    p0 = f32x4.add(p0, f32x4.mul(g0, f32x4.sub(v128.load(x + o), h0)));
    p1 = f32x4.add(p1, f32x4.mul(g1, f32x4.sub(v128.load(x + o, 16), h1)));
  }
  fold4(sArr + (c << 3), f32x4.add(s0, t0));
  fold4(sArr + (c << 3) + 32, f32x4.add(s1, t1));
  fold4(pArr + (c << 3), f32x4.add(p0, r0));
  fold4(pArr + (c << 3) + 32, f32x4.add(p1, r1));
}

/** Channels [c, c + 16) of a tile (a whole cache line of each row): one set of accumulators. */
@inline function bwdLines32(
  x: usize, dy: usize, mask: usize, base: usize, stride: usize, tile: i32, c: usize, hArr: usize, sArr: usize, pArr: usize, useMask: bool,
): void {
  const h0 = v128.load(hArr + (c << 2));
  const h1 = v128.load(hArr + (c << 2), 16);
  const h2 = v128.load(hArr + (c << 2), 32);
  const h3 = v128.load(hArr + (c << 2), 48);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let s2 = f32x4.splat(0);
  let s3 = f32x4.splat(0);
  let p0 = f32x4.splat(0);
  let p1 = f32x4.splat(0);
  let p2 = f32x4.splat(0);
  let p3 = f32x4.splat(0);
  let o = base + (c << 2);
  for (let i = 0; i < tile; i++) {
    let g0 = v128.load(dy + o);
    let g1 = v128.load(dy + o, 16);
    let g2 = v128.load(dy + o, 32);
    let g3 = v128.load(dy + o, 48);
    if (useMask) {
      g0 = masked32(g0, mask + o, 0);
      g1 = masked32(g1, mask + o, 16);
      g2 = masked32(g2, mask + o, 32);
      g3 = masked32(g3, mask + o, 48);
    }
    s0 = f32x4.add(s0, g0);
    s1 = f32x4.add(s1, g1);
    s2 = f32x4.add(s2, g2);
    s3 = f32x4.add(s3, g3);
    p0 = f32x4.add(p0, f32x4.mul(g0, f32x4.sub(v128.load(x + o), h0)));
    p1 = f32x4.add(p1, f32x4.mul(g1, f32x4.sub(v128.load(x + o, 16), h1)));
    p2 = f32x4.add(p2, f32x4.mul(g2, f32x4.sub(v128.load(x + o, 32), h2)));
    p3 = f32x4.add(p3, f32x4.mul(g3, f32x4.sub(v128.load(x + o, 48), h3)));
    o += stride;
  }
  fold4(sArr + (c << 3), s0);
  fold4(sArr + (c << 3) + 32, s1);
  fold4(sArr + (c << 3) + 64, s2);
  fold4(sArr + (c << 3) + 96, s3);
  fold4(pArr + (c << 3), p0);
  fold4(pArr + (c << 3) + 32, p1);
  fold4(pArr + (c << 3) + 64, p2);
  fold4(pArr + (c << 3) + 96, p3);
}

