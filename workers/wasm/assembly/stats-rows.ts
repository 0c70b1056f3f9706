import {
  allEqual32, floorOf, fold4, hsum, maskedDiffer32, Plain, Relu, unproven32, writePartial, writePartial32, writePartial64, writePartials32x2,
} from './common';
import { normalizeRows32, normParams32, normRunF32 } from './normalize';
import { statsPattern32 } from './stats-pattern';
import { sums32, sums64 } from './stats';

// Statistics of rows of C channels (stats.ts has the partial's form): C * S values a row, channel
// c's run of S at c * S. For S = 1 (rank 2, channels-last) the channels lie in the lanes.

/**
 * Partials of C channels over `rows` contiguous rows of C * S float32. `acc` holds rowScratchBytes(C)
 * (32 * C + 2048) bytes of scratch. Channel c's partial goes to out + c * outStride (bytes).
 */
export function statsRows32(x: usize, rows: i32, C: i32, S: i32, rowStride: i32, acc: usize, out: usize, outStride: i32): void {
  const rowBytes = (<usize>rowStride) << 2;
  if (S == 1) {
    // The pattern kernel reads the rows as one flat run: only for whole rows (no band of a row).
    if (C < 16 && (C & 3) != 0 && rowStride == C) statsPattern32(x, rows, C, acc, out, outStride);
    else statsColumns32(x, rows, C, rowStride, acc, out, outStride);
    return;
  }
  // Short runs: per (row, channel), SIMD along the run, folded into f64 per channel.
  // acc: s1, s2 per channel as f64 (16 bytes each), 16-byte aligned by the caller.
  zeroShortAcc(C, acc);
  for (let r = 0; r < rows; r++) {
    const row = x + <usize>r * rowBytes;
    for (let c = 0; c < C; c++) shortSums32(x, row, c, S, acc);
  }
  shortPartials32(x, rows, C, S, rowBytes, acc, out, outStride);
}

/**
 * statsRows32 over `rows` rows of channels [0, C) at x and, in step with it, normalizeRows32 of
 * `nRows` rows of `nC` channels at nx (y at ny), rows `rowStride` apart on both sides: for runs
 * (S > 1), channel c of row r of the one and then of the other, so that the loads of the one and
 * the stores of the other are in flight together (statsNormPlanes32 does the same for planes). A
 * `phased` row-mode call reduces a group of channels while it normalizes the group before. The
 * partials and outputs are those of the two kernels called apart, bit for bit; for S = 1 they are
 * called apart. `acc`: 32 * C bytes, then (without rowParams) 12 * nC for the float32 parameters.
 */
export function statsNormRows32(
  x: usize, rows: i32, C: i32, S: i32, rowStride: i32, acc: usize, out: usize, outStride: i32,
  nx: usize, ny: usize, nRows: i32, nC: i32, params: usize, relu: i32, rowParams: usize, rowParamStride: i32,
): void {
  if (S == 1) {
    statsRows32(x, rows, C, S, rowStride, acc, out, outStride);
    normalizeRows32(nx, ny, nRows, nC, S, rowStride, params, acc, relu, rowParams, rowParamStride, 0);
    return;
  }
  const rowBytes = (<usize>rowStride) << 2;
  const made = rowParams != 0;
  const hiA = made ? rowParams : acc + (<usize>C << 5);
  const scA = hiA + (made ? <usize>rowParamStride << 2 : <usize>nC << 2);
  const bA = scA + (made ? <usize>rowParamStride << 2 : <usize>nC << 2);
  if (!made) normParams32(params, nC, <usize>nC, hiA);
  zeroShortAcc(C, acc);
  const floor = <f32>floorOf(relu);
  if (relu) shortStatsNorm32<Relu>(x, rows, C, S, rowBytes, acc, nx, ny, nRows, nC, hiA, scA, bA, floor);
  else shortStatsNorm32<Plain>(x, rows, C, S, rowBytes, acc, nx, ny, nRows, nC, hiA, scA, bA, floor);
  shortPartials32(x, rows, C, S, rowBytes, acc, out, outStride);
}

@inline function shortStatsNorm32<R>(
  x: usize, rows: i32, C: i32, S: i32, rowBytes: usize, acc: usize,
  nx: usize, ny: usize, nRows: i32, nC: i32, hiA: usize, scA: usize, bA: usize, floor: f32,
): void {
  const R = max(rows, nRows);
  const K = max(C, nC);
  for (let r = 0; r < R; r++) {
    const row = <usize>r * rowBytes;
    for (let c = 0; c < K; c++) {
      if (r < rows && c < C) shortSums32(x, x + row, c, S, acc);
      if (r < nRows && c < nC) {
        const off = row + ((<usize>c * <usize>S) << 2);
        const q = <usize>c << 2;
        normRunF32<R>(nx + off, ny + off, S, load<f32>(hiA + q), load<f32>(scA + q), load<f32>(bA + q), floor);
      }
    }
  }
}

/** Zeroes the short-run sums (s1, s2 as f64x2 lanes) of C channels. */
@inline function zeroShortAcc(C: i32, acc: usize): void {
  for (let c = 0; c < C; c++) {
    v128.store(acc + (<usize>c << 5), f64x2.splat(0));
    v128.store(acc + (<usize>c << 5), f64x2.splat(0), 16);
  }
}

/** Adds channel c's run of one row (the row at `row`) to its sums; its shift is its first value in x's first row. */
@inline function shortSums32(x: usize, row: usize, c: i32, S: i32, acc: usize): void {
  const k = load<f32>(x + ((<usize>c * <usize>S) << 2));
  sums32(row + ((<usize>c * <usize>S) << 2), S, f32x4.splat(k), k, acc + (<usize>c << 5));
}

/** Writes the short-run partials of C channels over `rows` rows. */
@inline function shortPartials32(x: usize, rows: i32, C: i32, S: i32, rowBytes: usize, acc: usize, out: usize, outStride: i32): void {
  const count = <f64>rows * <f64>S;
  for (let c = 0; c < C; c++) {
    const k = <f64>load<f32>(x + ((<usize>c * <usize>S) << 2));
    const a = acc + (<usize>c << 5);
    writePartial32(
      out + <usize>c * <usize>outStride, count, k, hsum(v128.load(a)), hsum(v128.load(a, 16)),
      x + ((<usize>c * <usize>S) << 2), rows, rowBytes, S,
    );
  }
}

/**
 * Rows (channels in lanes) from SPREAD_MIN_ROW_BYTES up to SPREAD_LIMIT_ROW_BYTES are summed in
 * tiles of rows an eighth of the call apart, the others in tiles of adjacent rows: 8 adjacent rows
 * of 256 bytes to under 4 KiB go back and forth within a page, and 8 shorter rows lie within 2
 * KiB. Against tiles of adjacent rows on the machine of 2026-12-02 (`node bench/lanes-ab.mjs`, one
 * thread, three runs): from memory 2.2-2.7x the speed for 128 and 256 channels, 1.6-1.8x for 512
 * and 0.96-1.22x for 64; 0.94-1.15x in the L2. Rows of 4 KiB or more, each in pages of their own,
 * kept adjacent tiles until 2026-12-04 (the spread form measured 0.99-1.20x for 1024 channels,
 * three runs of an earlier form of the threshold); on the sixth machine (`SIZES=8,64
 * KERNELS=statsRows node bench/lanes-ab.mjs <before>/dist dist 1024,2048,4096`, one thread) the
 * spread ran 1.01-1.05x their speed at 8 MiB and 1.16-1.30x from 64 MiB for 1024 to 4096
 * channels, and took E's statistics task at 2 threads from 0.52-0.53 to 0.43-0.44 ms (`KERNELS=1
 * node bench/timeline.mjs E floor,train`, three runs of each build in turn). Longer rows, not
 * measured, keep adjacent tiles.
 */
const SPREAD_MIN_ROW_BYTES: usize = 256;
const SPREAD_LIMIT_ROW_BYTES: usize = 16384;
/** Adjacent tiles of rows of at least this many bytes sum the even and odd rows apart (`pairs`). */
const PAIRS_MIN_ROW_BYTES: usize = 4096;

/**
 * Rank-2 style rows (S = 1): channels in lanes. For each block of 8 channels (half a cache line
 * of a row), 8 rows are summed in f32, then folded into f64. The tiles of rows an eighth of the
 * call apart and those of rows of 4 KiB or more sum the even rows and the odd rows in
 * accumulators of their own (columnBlock32 with `pairs`: 8 in all, so that no add waits on the
 * one before and the loads of two rows are in flight together), added together before the fold:
 * at most 5 roundings per lane between folds; tiles of adjacent shorter rows (rows under 256
 * bytes, and the rows past the last whole eighth) in one set, a chain of at most 8 (a chain of 16
 * measured 2e-6 relative error in m2 with the shift 2 sd from the mean; a chain of 8 halved it). Pairs against one set (`KERNELS=statsRows node bench/lanes-ab.mjs`, one thread pinned with
 * taskset, two runs, 2026-12-02): 1.44-1.51x the speed from memory for 64 and 256 channels,
 * 1.04-1.06x for 1024, 0.93-1.01x in the L2; for 8 to 48 channels (rows under 256 bytes)
 * 0.88-1.01x, so those keep one set. The next block reads the other half of the same 8 lines,
 * still in L1: walking 4 channels down 16 rows 4 KB apart instead thrashed L1, whose sets those
 * rows all share. Blocks of 16 channels (a whole line, 4 shifts and 8 accumulators live at once,
 * with one set a block) gave the same bits slower: `node dist/bench/kernels.js`, statsRows of
 * 1024 channels, one thread, 2026-12-02 (three runs of the build before, four of that one):
 * 18.0-18.3 / 18.3-21.8 / 9.3-10.2 GB/s at 32 KiB / 1 MiB / 64 MiB against 18.7-20.0 /
 * 22.1-22.6 / 13.0-13.9 for blocks of 8. Rows from SPREAD_MIN_ROW_BYTES up to
 * SPREAD_LIMIT_ROW_BYTES go in tiles of 8 rows an eighth of the call apart (rows t, t + h, ...,
 * t + 7h, h = rows / 8), so that each streams through its own pages in order as the tiles go by,
 * which the hardware prefetchers follow; the rows past 8h, and other rows, go in tiles of 8
 * adjacent rows.
 */
function statsColumns32(x: usize, rows: i32, C: i32, rowStride: i32, acc: usize, out: usize, outStride: i32): void {
  const rowBytes = <usize>rowStride << 2;
  // acc layout (structure of arrays): K as f32 [C rounded up to 4], s1 f64 [same], s2 f64 [same].
  const cPad = <usize>((C + 3) & ~3);
  const kArr = acc;
  const s1Arr = acc + (cPad << 2);
  const s2Arr = s1Arr + (cPad << 3);
  for (let c: usize = 0; c < cPad; c++) {
    store<f32>(kArr + (c << 2), c < <usize>C ? load<f32>(x + (c << 2)) : 0);
    store<f64>(s1Arr + (c << 3), 0);
    store<f64>(s2Arr + (c << 3), 0);
  }
  const h = rowBytes >= SPREAD_MIN_ROW_BYTES && rowBytes <= SPREAD_LIMIT_ROW_BYTES ? rows >> 3 : 0;
  const spread = <usize>h * rowBytes;
  for (let t = 0; t < h; t++) columnTile32(x + <usize>t * rowBytes, spread, 8, C, kArr, s1Arr, s2Arr, true);
  // Adjacent tiles: rows of PAIRS_MIN_ROW_BYTES or more in pairs, shorter ones in one set (two
  // loops, so that each inlines columnBlock32 with `pairs` a constant).
  if (rowBytes >= PAIRS_MIN_ROW_BYTES) {
    for (let r = h << 3; r < rows; r += 8) columnTile32(x + <usize>r * rowBytes, rowBytes, min(8, rows - r), C, kArr, s1Arr, s2Arr, true);
  } else {
    for (let r = h << 3; r < rows; r += 8) columnTile32(x + <usize>r * rowBytes, rowBytes, min(8, rows - r), C, kArr, s1Arr, s2Arr, false);
  }
  checkColumns32(x, rows, rowBytes, C, kArr, s1Arr, s2Arr, s2Arr + (cPad << 3));
  // Two channels a step where their sums are ordinary (writePartials32x2), else one at a time.
  const count = <f64>rows;
  const stride = <usize>outStride;
  let c: usize = 0;
  for (; c + 2 <= <usize>C; c += 2) {
    const shift = f64x2.replace_lane(f64x2.splat(<f64>load<f32>(kArr + (c << 2))), 1, <f64>load<f32>(kArr + (c << 2), 4));
    const o = out + c * stride;
    if (writePartials32x2(o, o + stride, count, shift, v128.load(s1Arr + (c << 3)), v128.load(s2Arr + (c << 3)))) continue;
    columnPartial32(x, rows, rowBytes, c, kArr, s1Arr, s2Arr, o);
    columnPartial32(x, rows, rowBytes, c + 1, kArr, s1Arr, s2Arr, o + stride);
  }
  if (c < <usize>C) columnPartial32(x, rows, rowBytes, c, kArr, s1Arr, s2Arr, out + c * stride);
}

/**
 * statsColumns32's partial of channel c, one channel at a time (writePartial32). Sums that are
 * both zero are a constant channel's here, whatever its shift: checkColumns32 has read every one
 * whose shift is under PROVEN_SHIFT, and made the sums of those that are not constant NaN, so that
 * writePartial32 sums them again. The same bits as writePartial32 gives a constant block.
 */
@inline function columnPartial32(x: usize, rows: i32, rowBytes: usize, c: usize, kArr: usize, s1Arr: usize, s2Arr: usize, out: usize): void {
  const k = <f64>load<f32>(kArr + (c << 2));
  const s1 = load<f64>(s1Arr + (c << 3));
  const s2 = load<f64>(s2Arr + (c << 3));
  if (s1 == 0 && s2 == 0) writePartial(out, <f64>rows, k, 0, 0);
  else writePartial32(out, <f64>rows, k, s1, s2, x + (c << 2), rows, rowBytes, 1);
}

/**
 * Before statsColumns32 writes its partials: the channels whose float32 sums are both zero about a
 * shift under PROVEN_SHIFT may hold deviations that squared to zero and cancelled (common.ts,
 * writePartial32), which only a read tells from a constant channel (a ReLU's dead one). Reading
 * each such column apart (allEqual32, a value a row) took a training forward of zeros [4096, 1024]
 * from 1.4 to 5.7 ms; so the rows are read once, in order, with those channels' lanes on in
 * `masks` (4 bytes a channel, after s2Arr in the scratch), and any value of theirs that is not
 * its shift turns one accumulator on. Where none is, every one is constant, and its zero sums
 * stand; else each is read apart, and those that are not constant get NaN sums, which
 * writePartial32 sums again in float64. The channels past the last 4 are summed in float64
 * (columnTile32), where a nonzero deviation has a nonzero square: their zero sums prove them
 * constant.
 */
function checkColumns32(x: usize, rows: i32, rowBytes: usize, C: i32, kArr: usize, s1Arr: usize, s2Arr: usize, masks: usize): void {
  const c4 = <usize>(C & ~3);
  let any = false;
  for (let c: usize = 0; c < c4; c++) {
    const check = unproven32(load<f64>(s1Arr + (c << 3)), load<f64>(s2Arr + (c << 3)), <f64>load<f32>(kArr + (c << 2)));
    store<i32>(masks + (c << 2), check ? -1 : 0);
    any = any || check;
  }
  if (!any || !maskedDiffer32(x, rows, rowBytes, c4, kArr, masks)) return;
  for (let c: usize = 0; c < c4; c++) {
    if (load<i32>(masks + (c << 2)) != 0 && !allEqual32(x + (c << 2), rows, rowBytes, 1, load<f32>(kArr + (c << 2)))) {
      store<f64>(s2Arr + (c << 3), NaN);
    }
  }
}

/**
 * statsColumns32's tile: `tile` rows (at most 8), `stride` bytes apart from `base`, of C channels
 * in lanes, added to the f64 sums at s1Arr and s2Arr (their shifts at kArr); with `pairs`, blocks
 * of 8 channels sum the even and odd rows apart (columnBlock32).
 */
@inline function columnTile32(
  base: usize, stride: usize, tile: i32, C: i32, kArr: usize, s1Arr: usize, s2Arr: usize, pairs: bool,
): void {
  const c8 = <usize>(C & ~7);
  const c4 = <usize>(C & ~3);
  for (let c: usize = 0; c < c8; c += 8) {
    columnBlock32(base, stride, tile, c, kArr, s1Arr, s2Arr, pairs);
  }
  for (let c = c8; c < c4; c += 4) {
    const kv = v128.load(kArr + (c << 2));
    let s = f32x4.splat(0);
    let q = f32x4.splat(0);
    let p = base + (c << 2);
    for (let i = 0; i < tile; i++) {
      const d = f32x4.sub(v128.load(p), kv);
      s = f32x4.add(s, d);
      q = f32x4.add(q, f32x4.mul(d, d));
      p += stride;
    }
    fold4(s1Arr + (c << 3), s);
    fold4(s2Arr + (c << 3), q);
  }
  for (let c = c4; c < <usize>C; c++) {
    const k = load<f32>(kArr + (c << 2));
    let t1: f64 = 0;
    let t2: f64 = 0;
    for (let i = 0; i < tile; i++) {
      const d = <f64>(load<f32>(base + <usize>i * stride + (c << 2)) - k);
      t1 += d;
      t2 += d * d;
    }
    store<f64>(s1Arr + (c << 3), load<f64>(s1Arr + (c << 3)) + t1);
    store<f64>(s2Arr + (c << 3), load<f64>(s2Arr + (c << 3)) + t2);
  }
}

/**
 * Channels [c, c + 8) of a tile. With `pairs`, the even rows and the odd rows in accumulators of
 * their own, added together before the fold (a row left over at an odd count goes to the even
 * set); without, every row in one set: a chain of up to 8 adds a lane.
 */
@inline function columnBlock32(
  base: usize, stride: usize, tile: i32, c: usize, kArr: usize, s1Arr: usize, s2Arr: usize, pairs: bool,
): void {
  const k0 = v128.load(kArr + (c << 2));
  const k1 = v128.load(kArr + (c << 2), 16);
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let q0 = f32x4.splat(0);
  let q1 = f32x4.splat(0);
  let t0 = f32x4.splat(0);
  let t1 = f32x4.splat(0);
  let r0 = f32x4.splat(0);
  let r1 = f32x4.splat(0);
  let p = base + (c << 2);
  let i = 0;
  if (pairs) {
    for (; i + 1 < tile; i += 2) {
      const d0 = f32x4.sub(v128.load(p), k0);
      const d1 = f32x4.sub(v128.load(p, 16), k1);
      const e0 = f32x4.sub(v128.load(p + stride), k0);
      const e1 = f32x4.sub(v128.load(p + stride, 16), k1);
      s0 = f32x4.add(s0, d0);
      s1 = f32x4.add(s1, d1);
      q0 = f32x4.add(q0, f32x4.mul(d0, d0));
      q1 = f32x4.add(q1, f32x4.mul(d1, d1));
      t0 = f32x4.add(t0, e0);
      t1 = f32x4.add(t1, e1);
      r0 = f32x4.add(r0, f32x4.mul(e0, e0));
      r1 = f32x4.add(r1, f32x4.mul(e1, e1));
      p += stride << 1;
    }
  }
  for (; i < tile; i++) {
    const d0 = f32x4.sub(v128.load(p), k0);
    const d1 = f32x4.sub(v128.load(p, 16), k1);
    s0 = f32x4.add(s0, d0);
    s1 = f32x4.add(s1, d1);
    q0 = f32x4.add(q0, f32x4.mul(d0, d0));
    q1 = f32x4.add(q1, f32x4.mul(d1, d1));
    p += stride;
  }
  fold4(s1Arr + (c << 3), pairs ? f32x4.add(s0, t0) : s0);
  fold4(s1Arr + (c << 3) + 32, pairs ? f32x4.add(s1, t1) : s1);
  fold4(s2Arr + (c << 3), pairs ? f32x4.add(q0, r0) : q0);
  fold4(s2Arr + (c << 3) + 32, pairs ? f32x4.add(q1, r1) : q1);
}

export function statsRows64(x: usize, rows: i32, C: i32, S: i32, rowStride: i32, acc: usize, out: usize, outStride: i32): void {
  const rowBytes = (<usize>rowStride) << 3;
  for (let c = 0; c < C; c++) {
    v128.store(acc + (<usize>c << 5), f64x2.splat(0));
    v128.store(acc + (<usize>c << 5), f64x2.splat(0), 16);
  }
  if (S == 1) {
    // Channels in lanes: s1/s2 of channels c, c+1 accumulate in acc[c] (s1 pair) and acc[c]+16.
    const c2 = C & ~1;
    for (let r = 0; r < rows; r++) {
      const row = x + <usize>r * rowBytes;
      for (let c = 0; c < c2; c += 2) {
        const a = acc + (<usize>c << 5);
        const d = f64x2.sub(v128.load(row + (<usize>c << 3)), v128.load(x + (<usize>c << 3)));
        v128.store(a, f64x2.add(v128.load(a), d));
        v128.store(a, f64x2.add(v128.load(a, 16), f64x2.mul(d, d)), 16);
      }
      if (c2 < C) {
        const a = acc + (<usize>c2 << 5);
        const d = load<f64>(row + (<usize>c2 << 3)) - load<f64>(x + (<usize>c2 << 3));
        store<f64>(a, load<f64>(a) + d);
        store<f64>(a, load<f64>(a, 16) + d * d, 16);
      }
    }
    for (let c = 0; c < C; c++) {
      // Pair slot of c's lane: the pair starts at the even channel; lane = c & 1.
      const a = acc + (<usize>(c & ~1) << 5) + (<usize>(c & 1) << 3);
      writePartial64(
        out + <usize>c * <usize>outStride, <f64>rows, load<f64>(x + (<usize>c << 3)), load<f64>(a), load<f64>(a, 16),
        x + (<usize>c << 3), rows, rowBytes, 1,
      );
    }
    return;
  }
  for (let r = 0; r < rows; r++) {
    const row = x + <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const k = load<f64>(x + ((<usize>c * <usize>S) << 3));
      sums64(row + ((<usize>c * <usize>S) << 3), S, f64x2.splat(k), k, acc + (<usize>c << 5), false, true);
    }
  }
  const count = <f64>rows * <f64>S;
  for (let c = 0; c < C; c++) {
    const a = acc + (<usize>c << 5);
    const run = x + ((<usize>c * <usize>S) << 3);
    writePartial64(out + <usize>c * <usize>outStride, count, load<f64>(run), hsum(v128.load(a)), hsum(v128.load(a, 16)), run, rows, rowBytes, S);
  }
}
