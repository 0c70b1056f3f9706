import { fold4, hsum, masked32, masked64, promoteHigh, promoteLow } from './common';
import { needsZeroCheck, productsZero32, writeBwdPartial32, zeroProductLanes32 } from './backward-partial';
import { applyRun32, applyShift32, bwdApplyPlanes32, bwdApplyRows32 } from './backward-apply';
import { bwdPattern32 } from './backward-pattern';
import { GROUP_BYTES, TURN_BYTES } from './stats';

// Backward, its reductions: (Σdy, Σdy·(x - mean)) per channel, the sums dx needs
// (backward-apply.ts). With a fused ReLU the forward's output y is the mask: where y <= 0 the
// incoming gradient is 0, and it passes elsewhere, NaN included (PyTorch's threshold_backward).
// `mask` is y's byte offset, or 0 without ReLU.

/**
 * Backward partial of `rows` runs of `len` values (x, dy and the mask strided like statsPlanes):
 * writes (count, Σdy, Σdy·(x - mean)) at out. float32: x - mean is taken as (x - hi) with hi the
 * float32 part of the mean, summed per run by bwdRun32 (f32 lanes over 4 vectors before each fold
 * into f64), and the low part is applied once at the end: Σdy·(x - hi - lo) = Σdy·(x - hi) - lo·Σdy.
 */
export function bwdStatsPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32,
  rows: i32, len: i32, mean: f64, out: usize,
): void {
  bwdPlanes32(x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out, false, false, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

/**
 * bwdStatsPlanes32, and in step with it bwdApplyPlanes32 over a block of the same shape of another
 * channel (its x, dy, mask and dx at qx, qdy, qm, qdx, with the same row strides but dx's, with
 * that channel's a, k, mean and e): after each turn (TURN_BYTES) of a run of the sums, the same turn of
 * the other block's run gets its dx, so that the loads of the one and the stores of the other are
 * in flight together (a fused backward reduces a channel while it applies the gradient to the one
 * before). The partial and dx are those of the two kernels called apart, bit for bit: a run's
 * lanes are carried across its turns.
 */
export function bwdStatsApplyPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32,
  rows: i32, len: i32, mean: f64, out: usize,
  qx: usize, qdy: usize, qm: usize, qdx: usize, dxRowStride: i32, a: f64, k: f64, qMean: f64, e: f64,
): void {
  // Two specialised copies, as bwdApplyPlanes32: where k is 0, x of the other block is not read.
  if (k != 0) {
    bwdPlanes32(
      x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out,
      true, true, qx, qdy, qm, qdx, dxRowStride, <f32>a, <f32>k, <f32>qMean, applyShift32(k, qMean, e),
    );
  } else {
    bwdPlanes32(
      x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out,
      true, false, qx, qdy, qm, qdx, dxRowStride, <f32>a, <f32>k, <f32>qMean, applyShift32(k, qMean, e),
    );
  }
}

/** The body of bwdStatsPlanes32 and, with `apply`, of bwdStatsApplyPlanes32 (constants: a copy each). */
@inline function bwdPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32,
  rows: i32, len: i32, mean: f64, out: usize,
  apply: bool, useX: bool, qx: usize, qdy: usize, qm: usize, qdx: usize, dxRowStride: i32, af: f32, kf: f32, qHi: f32, ef: f32,
): void {
  const hi = <f32>mean;
  const useMask = mask != 0;
  // out[1], out[2] accumulate (Σdy, Σdy·(x - hi)) run by run.
  store<f64>(out, 0, 8);
  store<f64>(out, 0, 16);
  for (let r = 0; r < rows; r++) {
    const xo = (<usize>r * <usize>xRowStride) << 2;
    const go = (<usize>r * <usize>dyRowStride) << 2;
    const mo = (<usize>r * <usize>maskRowStride) << 2;
    bwdRun32(
      x + xo, dy + go, mask + mo, len, hi, useMask, out + 8,
      apply, useX, qx + xo, qdy + go, qm + mo, qdx + ((<usize>r * <usize>dxRowStride) << 2), af, kf, qHi, ef,
    );
  }
  const xRow = <usize>xRowStride << 2;
  const dyRow = <usize>dyRowStride << 2;
  const maskRow = <usize>maskRowStride << 2;
  const sdy = load<f64>(out, 8);
  const sp = load<f64>(out, 16);
  writeBwdPartial32(
    out, <f64>rows * <f64>len, sdy, sp, mean, needsZeroCheck(sdy, sp) && productsZero32(x, dy, mask, rows, xRow, dyRow, maskRow, len, hi),
    x, dy, mask, rows, xRow, dyRow, maskRow, len,
  );
}

export function bwdStatsPlanes64(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32,
  rows: i32, len: i32, mean: f64, out: usize,
): void {
  const mv = f64x2.splat(mean);
  const useMask = mask != 0;
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  for (let r = 0; r < rows; r++) {
    let px = x + ((<usize>r * <usize>xRowStride) << 3);
    let pg = dy + ((<usize>r * <usize>dyRowStride) << 3);
    let pm = mask + ((<usize>r * <usize>maskRowStride) << 3);
    const end = px + (<usize>len << 3);
    while (px + 16 <= end) {
      let g = v128.load(pg);
      if (useMask) g = masked64(g, pm);
      a1 = f64x2.add(a1, g);
      a2 = f64x2.add(a2, f64x2.mul(g, f64x2.sub(v128.load(px), mv)));
      px += 16;
      pg += 16;
      pm += 16;
    }
    if (px < end) {
      const g = useMask && load<f64>(pm) <= 0 ? 0 : load<f64>(pg);
      a1 = f64x2.add(a1, f64x2(g, 0));
      a2 = f64x2.add(a2, f64x2(g * (load<f64>(px) - mean), 0));
    }
  }
  store<f64>(out, <f64>rows * <f64>len);
  store<f64>(out, hsum(a1), 8);
  store<f64>(out, hsum(a2), 16);
}

/**
 * Adds Σdy and Σdy·(x - hi) of one float32 run to the f64 pair at acc (acc[0] += Σdy,
 * acc[1] += Σdy·(x - hi)): f32 lanes summed over GROUP_BYTES of x (trees of 4 vectors, added in
 * turn) between folds into f64, the groups counted from the run's start, as sums32's. With
 * `apply`, the other block's run (at qx, qg, qm, qo) gets its dx in step, a turn of the four-vector
 * part at a time and the rest at the end; the sums' operations are the same either way.
 */
@inline function bwdRun32(
  px: usize, pg: usize, pm: usize, len: i32, hi: f32, useMask: bool, acc: usize,
  apply: bool, useX: bool, qx: usize, qg: usize, qm: usize, qo: usize, af: f32, kf: f32, qHi: f32, ef: f32,
): void {
  const hv = f32x4.splat(hi);
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  const end = px + (<usize>len << 2);
  const vecEnd = px + ((<usize>len << 2) & ~(<usize>63));
  while (px < vecEnd) {
    const turnStart = px;
    const turnEnd = apply ? min(px + TURN_BYTES, vecEnd) : vecEnd;
    while (px < turnEnd) {
      const stop = min(px + GROUP_BYTES, turnEnd);
      let s = f32x4.splat(0);
      let p = f32x4.splat(0);
      do {
        let g0 = v128.load(pg);
        let g1 = v128.load(pg, 16);
        let g2 = v128.load(pg, 32);
        let g3 = v128.load(pg, 48);
        if (useMask) {
          g0 = masked32(g0, pm, 0);
          g1 = masked32(g1, pm, 16);
          g2 = masked32(g2, pm, 32);
          g3 = masked32(g3, pm, 48);
        }
        s = f32x4.add(s, f32x4.add(f32x4.add(g0, g1), f32x4.add(g2, g3)));
        p = f32x4.add(p, f32x4.add(
          f32x4.add(f32x4.mul(g0, f32x4.sub(v128.load(px), hv)), f32x4.mul(g1, f32x4.sub(v128.load(px, 16), hv))),
          f32x4.add(f32x4.mul(g2, f32x4.sub(v128.load(px, 32), hv)), f32x4.mul(g3, f32x4.sub(v128.load(px, 48), hv))),
        ));
        px += 64;
        pg += 64;
        pm += 64;
      } while (px < stop);
      a1 = f64x2.add(a1, f64x2.add(promoteLow(s), promoteHigh(s)));
      a2 = f64x2.add(a2, f64x2.add(promoteLow(p), promoteHigh(p)));
    }
    if (apply) {
      const bytes = px - turnStart;
      applyRun32(qx, qg, qm, qo, <i32>(bytes >> 2), af, kf, qHi, ef, useX, useMask);
      qx += bytes;
      qg += bytes;
      qm += bytes;
      qo += bytes;
    }
  }
  if (apply) applyRun32(qx, qg, qm, qo, <i32>((end - vecEnd) >> 2), af, kf, qHi, ef, useX, useMask);
  while (px + 16 <= end) {
    let g = v128.load(pg);
    if (useMask) g = masked32(g, pm, 0);
    const p = f32x4.mul(g, f32x4.sub(v128.load(px), hv));
    a1 = f64x2.add(a1, f64x2.add(promoteLow(g), promoteHigh(g)));
    a2 = f64x2.add(a2, f64x2.add(promoteLow(p), promoteHigh(p)));
    px += 16;
    pg += 16;
    pm += 16;
  }
  let t1 = hsum(a1);
  let t2 = hsum(a2);
  while (px < end) {
    const g = useMask && load<f32>(pm) <= 0 ? 0 : <f64>load<f32>(pg);
    t1 += g;
    t2 += g * <f64>(load<f32>(px) - hi);
    px += 4;
    pg += 4;
    pm += 4;
  }
  store<f64>(acc, load<f64>(acc) + t1);
  store<f64>(acc, load<f64>(acc, 8) + t2, 8);
}

/**
 * Backward partials of C channels over `rows` contiguous rows of C * S values (x, dy and the
 * mask alike), row by row so the reads stream: channel c's (count, Σdy, Σdy·(x - mean)) against
 * its mean at params + 32 * c goes to out + c * outStride. `acc` holds rowScratchBytes(C) (32 * C + 2048) bytes.
 */
export function bwdStatsRows32(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, S: i32, rowStride: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  if (S == 1) {
    if (C < 16 && (C & 3) != 0 && rowStride == C) bwdPattern32(x, dy, mask, rows, C, params, acc, out, outStride);
    else bwdColumns32(x, dy, mask, rows, C, rowStride, params, acc, out, outStride);
    return;
  }
  const useMask = mask != 0;
  for (let c = 0; c < C; c++) v128.store(acc + (<usize>c << 4), f64x2.splat(0));
  const rowBytes = (<usize>rowStride) << 2;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const off = row + ((<usize>c * <usize>S) << 2);
      bwdRun32(
        x + off, dy + off, mask + off, S, <f32>load<f64>(params + (<usize>c << 5)), useMask, acc + (<usize>c << 4),
        false, false, 0, 0, 0, 0, 0, 0, 0, 0,
      );
    }
  }
  shortBwdPartials32(x, dy, mask, rowBytes, rows, C, S, params, acc, out, outStride);
}

/**
 * bwdStatsRows32 over `rows` rows of channels [0, C) at x, dy, mask (their means at params +
 * 32 * c) and, in step with it, bwdApplyRows32 of `nRows` rows of `nC` channels at qx, qdy, qm,
 * dx at qdx (their coefficients at qParams + 32 * c), rows `rowStride` apart on every side: for
 * runs (S > 1), channel c of row r of the one with the same of the other in one loop (bwdRun32
 * with `apply`), so that the loads of the one and the stores of the other are in flight together.
 * The partials and dx are those of the two kernels called apart, bit for bit; for S = 1 they are
 * called apart. `acc`: rowScratchBytes(C + nC).
 */
export function bwdStatsApplyRows32(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, S: i32, rowStride: i32, params: usize, acc: usize, out: usize, outStride: i32,
  qx: usize, qdy: usize, qm: usize, qdx: usize, nRows: i32, nC: i32, qParams: usize,
): void {
  if (S == 1) {
    bwdStatsRows32(x, dy, mask, rows, C, S, rowStride, params, acc, out, outStride);
    bwdApplyRows32(qx, qdy, qm, qdx, nRows, nC, S, rowStride, qParams, acc);
    return;
  }
  const useMask = mask != 0;
  for (let c = 0; c < C; c++) v128.store(acc + (<usize>c << 4), f64x2.splat(0));
  const rowBytes = (<usize>rowStride) << 2;
  const R = max(rows, nRows);
  const K = max(C, nC);
  for (let r = 0; r < R; r++) {
    const row = <usize>r * rowBytes;
    for (let c = 0; c < K; c++) {
      const off = row + ((<usize>c * <usize>S) << 2);
      const sums = r < rows && c < C;
      const dx = r < nRows && c < nC;
      const hi = sums ? <f32>load<f64>(params + (<usize>c << 5)) : 0;
      const a = acc + (<usize>c << 4);
      if (!dx) {
        if (sums) bwdRun32(x + off, dy + off, mask + off, S, hi, useMask, a, false, false, 0, 0, 0, 0, 0, 0, 0, 0);
        continue;
      }
      const q = qParams + (<usize>c << 5);
      const qa = load<f64>(q);
      const qk = load<f64>(q, 8);
      const qMean = load<f64>(q, 16);
      const qe = load<f64>(q, 24);
      if (!sums) {
        bwdApplyPlanes32(qx + off, 0, qdy + off, 0, useMask ? qm + off : 0, 0, qdx + off, 0, 1, S, qa, qk, qMean, qe);
      } else if (qk != 0) {
        // As bwdApplyPlanes32: where k is 0, x of the other run is not read.
        bwdRun32(
          x + off, dy + off, mask + off, S, hi, useMask, a,
          true, true, qx + off, qdy + off, qm + off, qdx + off, <f32>qa, <f32>qk, <f32>qMean, applyShift32(qk, qMean, qe),
        );
      } else {
        bwdRun32(
          x + off, dy + off, mask + off, S, hi, useMask, a,
          true, false, qx + off, qdy + off, qm + off, qdx + off, <f32>qa, <f32>qk, <f32>qMean, applyShift32(qk, qMean, qe),
        );
      }
    }
  }
  shortBwdPartials32(x, dy, mask, rowBytes, rows, C, S, params, acc, out, outStride);
}

/**
 * The backward partials of C channels of short runs from their (Σdy, Σdy·(x - hi)) at acc (16
 * bytes a channel): (count, Σdy, Σdy·(x - mean)), with mean = hi + lo at params + 32 * c.
 */
@inline function shortBwdPartials32(
  x: usize, dy: usize, mask: usize, rowBytes: usize, rows: i32, C: i32, S: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  for (let c = 0; c < C; c++) {
    const a = acc + (<usize>c << 4);
    const run = (<usize>c * <usize>S) << 2;
    const mean = load<f64>(params + (<usize>c << 5));
    const m = mask != 0 ? mask + run : 0;
    const sdy = load<f64>(a);
    const sp = load<f64>(a, 8);
    writeBwdPartial32(
      out + <usize>c * <usize>outStride, <f64>rows * <f64>S, sdy, sp, mean,
      needsZeroCheck(sdy, sp) && productsZero32(x + run, dy + run, m, rows, rowBytes, rowBytes, rowBytes, S, <f32>mean),
      x + run, dy + run, m, rows, rowBytes, rowBytes, rowBytes, S,
    );
  }
}

export function bwdStatsRows64(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, S: i32, rowStride: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  const useMask = mask != 0;
  if (S == 1) {
    bwdColumns64(x, dy, mask, rows, C, rowStride, params, acc, out, outStride);
    return;
  }
  for (let c = 0; c < C; c++) v128.store(acc + (<usize>c << 4), f64x2.splat(0));
  const rowBytes = (<usize>rowStride) << 3;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const mean = load<f64>(params + (<usize>c << 5));
      let t1: f64 = 0;
      let t2: f64 = 0;
      let p = row + ((<usize>c * <usize>S) << 3);
      const end = p + (<usize>S << 3);
      for (; p < end; p += 8) {
        const g = useMask && load<f64>(mask + p) <= 0 ? 0 : load<f64>(dy + p);
        t1 += g;
        t2 += g * (load<f64>(x + p) - mean);
      }
      const a = acc + (<usize>c << 4);
      store<f64>(a, load<f64>(a) + t1);
      store<f64>(a, load<f64>(a, 8) + t2, 8);
    }
  }
  for (let c = 0; c < C; c++) {
    const a = acc + (<usize>c << 4);
    const o = out + <usize>c * <usize>outStride;
    store<f64>(o, <f64>rows * <f64>S);
    store<f64>(o, load<f64>(a), 8);
    store<f64>(o, load<f64>(a, 8), 16);
  }
}

/**
 * bwdStatsRows64 for S = 1: channels in the two lanes, row by row (the same operations per
 * channel as the general loop, so the same bits). acc: the means, Σdy and Σdy·(x - mean) as f64
 * arrays of C rounded up to 2.
 */
function bwdColumns64(
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
 * Rows (channels in lanes) from this many bytes up to 4 KiB are summed in tiles of 8 rows an eighth
 * of the call apart, as statsColumns32's from SPREAD_MIN_ROW_BYTES; shorter and longer rows in
 * tiles of 8 adjacent rows. With half-line blocks (bwdHalfLines32), one thread pinned, from 64 MiB
 * (`KERNELS=bwdStatsRows node bench/lanes-ab.mjs`, two runs, 2026-12-02): 64 channels spread
 * against adjacent 1.52-1.86x the speed of the whole-line blocks before, adjacent 0.89-0.90x.
 */
const BWD_SPREAD_MIN_ROW_BYTES: usize = 256;

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
 * BWD_SPREAD_MIN_ROW_BYTES up to rows of 4 KiB). Blocks of 8 channels (half a cache line), the even
 * and odd rows in accumulators of their own (bwdHalfLines32), except whole lines of rows from
 * BWD_LINES_MIN_ROW_BYTES up to BWD_SPREAD_MIN_ROW_BYTES (bwdLines32).
 * acc: hi as f32, Σdy and Σdy·(x - hi) as f64, and a flag as i32 (zeroProductLanes32), each [C
 * rounded up to 4], then zeroProductLanes32's list (C rounded up to 4 bytes).
 */
function bwdColumns32(
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
  // Tiles of 8 rows an eighth of the call apart for rows of BWD_SPREAD_MIN_ROW_BYTES to under
  // 4 KiB, then (and for other rows) tiles of 8 adjacent rows, as statsColumns32.
  const h = rowBytes >= BWD_SPREAD_MIN_ROW_BYTES && rowBytes < 4096 ? rows >> 3 : 0;
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

