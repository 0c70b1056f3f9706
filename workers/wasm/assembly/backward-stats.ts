import { hsum, isOn, masked32, masked64, Off, On, promoteHigh, promoteLow } from './common';
import { needsZeroCheck, productsZero32, writeBwdPartial32 } from './backward-partial';
import { applyRun32, applyShift32, bwdApplyPlanes32, bwdApplyRows32 } from './backward-apply';
import { bwdColumns32, bwdColumns64 } from './backward-columns';
import { bwdPattern32 } from './backward-pattern';
import { GROUP_BYTES, TURN_BYTES } from './stats';

// Backward, its reductions: (Σdy, Σdy·(x - mean)) per channel, the sums dx needs
// (backward-apply.ts). With a fused ReLU the forward's output y is the mask: where y <= 0 the
// incoming gradient is 0, and it passes elsewhere, NaN included (PyTorch's threshold_backward).
// `mask` is y's byte offset, or 0 without ReLU.

/**
 * Backward partial of `rows` runs of `len` values (x, dy and the mask strided like statsPlanes):
 * writes (count, Σdy, Σdy·(x - mean)) at out. float32: x - mean is taken as (x - hi) with hi the
 * float32 part of the mean, summed per run by bwdRun32 (f32 lanes over 512 bytes of x, trees of
 * 4 vectors, before each fold into f64), and the low part is applied once at the end: Σdy·(x - hi - lo) = Σdy·(x - hi) - lo·Σdy.
 */
export function bwdStatsPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32,
  rows: i32, len: i32, mean: f64, out: usize,
): void {
  if (mask != 0) bwdPlanes32<Off, On>(x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out, false, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  else bwdPlanes32<Off, Off>(x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out, false, 0, 0, 0, 0, 0, 0, 0, 0, 0);
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
  // A copy for each of (x of the other block read, dy masked), as bwdApplyPlanes32: where k is 0,
  // x of the other block is not read.
  const af = <f32>a;
  const kf = <f32>k;
  const qHi = <f32>qMean;
  const ef = applyShift32(k, qMean, e);
  if (k != 0) {
    if (mask != 0) {
      bwdPlanes32<On, On>(
        x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out, true, qx, qdy, qm, qdx, dxRowStride, af, kf, qHi, ef,
      );
    } else {
      bwdPlanes32<On, Off>(
        x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out, true, qx, qdy, qm, qdx, dxRowStride, af, kf, qHi, ef,
      );
    }
  } else if (mask != 0) {
    bwdPlanes32<Off, On>(
      x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out, true, qx, qdy, qm, qdx, dxRowStride, af, kf, qHi, ef,
    );
  } else {
    bwdPlanes32<Off, Off>(
      x, xRowStride, dy, dyRowStride, mask, maskRowStride, rows, len, mean, out, true, qx, qdy, qm, qdx, dxRowStride, af, kf, qHi, ef,
    );
  }
}

/**
 * The body of bwdStatsPlanes32 and, with `apply`, of bwdStatsApplyPlanes32 (a constant: a copy
 * each); X and M as in bwdRun32.
 */
@inline function bwdPlanes32<X, M>(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32,
  rows: i32, len: i32, mean: f64, out: usize,
  apply: bool, qx: usize, qdy: usize, qm: usize, qdx: usize, dxRowStride: i32, af: f32, kf: f32, qHi: f32, ef: f32,
): void {
  const hi = <f32>mean;
  // out[1], out[2] accumulate (Σdy, Σdy·(x - hi)) run by run.
  store<f64>(out, 0, 8);
  store<f64>(out, 0, 16);
  for (let r = 0; r < rows; r++) {
    const xo = (<usize>r * <usize>xRowStride) << 2;
    const go = (<usize>r * <usize>dyRowStride) << 2;
    const mo = (<usize>r * <usize>maskRowStride) << 2;
    bwdRun32<X, M>(
      x + xo, dy + go, mask + mo, len, hi, out + 8,
      apply, qx + xo, qdy + go, qm + mo, qdx + ((<usize>r * <usize>dxRowStride) << 2), af, kf, qHi, ef,
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
 * part at a time and the rest at the end; the sums' operations are the same either way. X On:
 * that dx reads the other block's x (applyRun32); M On: dy is masked by the forward's output at
 * pm (and qm).
 */
@inline function bwdRun32<X, M>(
  px: usize, pg: usize, pm: usize, len: i32, hi: f32, acc: usize,
  apply: bool, qx: usize, qg: usize, qm: usize, qo: usize, af: f32, kf: f32, qHi: f32, ef: f32,
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
        if (isOn<M>()) {
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
      applyRun32<X, M>(qx, qg, qm, qo, <i32>(bytes >> 2), af, kf, qHi, ef);
      qx += bytes;
      qg += bytes;
      qm += bytes;
      qo += bytes;
    }
  }
  if (apply) applyRun32<X, M>(qx, qg, qm, qo, <i32>((end - vecEnd) >> 2), af, kf, qHi, ef);
  while (px + 16 <= end) {
    let g = v128.load(pg);
    if (isOn<M>()) g = masked32(g, pm, 0);
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
    const g = isOn<M>() && load<f32>(pm) <= 0 ? 0 : <f64>load<f32>(pg);
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
  for (let c = 0; c < C; c++) v128.store(acc + (<usize>c << 4), f64x2.splat(0));
  const rowBytes = (<usize>rowStride) << 2;
  if (mask != 0) shortBwdSums32<On>(x, dy, mask, rows, C, S, rowBytes, params, acc);
  else shortBwdSums32<Off>(x, dy, mask, rows, C, S, rowBytes, params, acc);
  shortBwdPartials32(x, dy, mask, rowBytes, rows, C, S, params, acc, out, outStride);
}

/** bwdStatsRows32's sums of short runs (S > 1) into acc, 16 bytes a channel; M as in bwdRun32. */
@inline function shortBwdSums32<M>(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, S: i32, rowBytes: usize, params: usize, acc: usize,
): void {
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const off = row + ((<usize>c * <usize>S) << 2);
      bwdRun32<Off, M>(
        x + off, dy + off, mask + off, S, <f32>load<f64>(params + (<usize>c << 5)), acc + (<usize>c << 4),
        false, 0, 0, 0, 0, 0, 0, 0, 0,
      );
    }
  }
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
  for (let c = 0; c < C; c++) v128.store(acc + (<usize>c << 4), f64x2.splat(0));
  const rowBytes = (<usize>rowStride) << 2;
  if (mask != 0) shortBwdSumsApply32<On>(x, dy, mask, rows, C, S, rowBytes, params, acc, qx, qdy, qm, qdx, nRows, nC, qParams);
  else shortBwdSumsApply32<Off>(x, dy, mask, rows, C, S, rowBytes, params, acc, qx, qdy, qm, qdx, nRows, nC, qParams);
  shortBwdPartials32(x, dy, mask, rowBytes, rows, C, S, params, acc, out, outStride);
}

/** bwdStatsApplyRows32's loop over short runs (S > 1); M as in bwdRun32. */
@inline function shortBwdSumsApply32<M>(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, S: i32, rowBytes: usize, params: usize, acc: usize,
  qx: usize, qdy: usize, qm: usize, qdx: usize, nRows: i32, nC: i32, qParams: usize,
): void {
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
        if (sums) bwdRun32<Off, M>(x + off, dy + off, mask + off, S, hi, a, false, 0, 0, 0, 0, 0, 0, 0, 0);
        continue;
      }
      const q = qParams + (<usize>c << 5);
      const qa = load<f64>(q);
      const qk = load<f64>(q, 8);
      const qMean = load<f64>(q, 16);
      const qe = load<f64>(q, 24);
      if (!sums) {
        bwdApplyPlanes32(qx + off, 0, qdy + off, 0, isOn<M>() ? qm + off : 0, 0, qdx + off, 0, 1, S, qa, qk, qMean, qe);
      } else if (qk != 0) {
        // As bwdApplyPlanes32: where k is 0, x of the other run is not read.
        bwdRun32<On, M>(
          x + off, dy + off, mask + off, S, hi, a,
          true, qx + off, qdy + off, qm + off, qdx + off, <f32>qa, <f32>qk, <f32>qMean, applyShift32(qk, qMean, qe),
        );
      } else {
        bwdRun32<Off, M>(
          x + off, dy + off, mask + off, S, hi, a,
          true, qx + off, qdy + off, qm + off, qdx + off, <f32>qa, <f32>qk, <f32>qMean, applyShift32(qk, qMean, qe),
        );
      }
    }
  }
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
