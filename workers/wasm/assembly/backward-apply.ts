import { isOn, masked32, masked64, Off, On } from './common';
import { bwdApplyColumns32, bwdApplyColumns64 } from './backward-apply-lanes';
import { bwdApplyPattern32 } from './backward-pattern';

// Backward, its output: dx = a·(dy + k·(x - mean) + e) per channel, with a, k and e made from the
// sums of backward-stats.ts by the merge (mergeBackward). dy is masked by the forward's output as
// there. Where k is 0 (every channel of an eval-mode gradient, dx = weight·invstd·dy) the loops
// drop the k·(x - mean) term and never read x, as PyTorch's formula does: a NaN or infinite x
// then leaves dx finite instead of making it 0·Inf = NaN. k is never 0 where x is not finite in
// training mode (the sums, hence k, are then NaN), so training results are unchanged.

/**
 * dx = a·((g + e) + k·(x - hi)) in float32 lanes (the scalar tails compute the same: dxScalar32),
 * the factors of PyTorch's formula weight·invstd·(dy - mean(dy) - x̂·mean(dy·x̂)), and its order:
 * dy and -mean(dy), the largest terms where dy has a large common part, cancel first (dy of
 * 1000 ± 1e-3: bench/extremes.mjs and bench/torch/extremes.py; there the float32 sums of
 * dy·(x - hi) cancel, and mean(dy) as a float32 coefficient is up to 3e-5 off, 3% of that
 * spread). The kernels took a·g + b·(x - hi) + d with b = a·k and d = a·e until 2026-12-02: b = -weight·invstd³·Σdy(x
 * - mean)/m is a product of small factors where x's spread is large (~1e-52 at a spread of 1e25,
 * which float32 holds as 0: dx lost its x term, up to 1/sqrt(m) of dx), while k stays near
 * 1/(spread·sqrt(m)); and a·g and d could each overflow to infinities of opposite signs (NaN)
 * where dx itself is only past float32's range. The same five operations a vector.
 */
@inline export function dx32(g: v128, x: v128, av: v128, kv: v128, hv: v128, ev: v128): v128 {
  return f32x4.mul(av, f32x4.add(f32x4.add(g, ev), f32x4.mul(kv, f32x4.sub(x, hv))));
}

/** dx32's scalar form. */
@inline export function dxScalar32(g: f32, x: f32, af: f32, kf: f32, hi: f32, ef: f32): f32 {
  return af * ((g + ef) + kf * (x - hi));
}

/** dx32 where k is 0: a·(g + e), x unread. */
@inline export function dxNoX32(g: v128, av: v128, ev: v128): v128 {
  return f32x4.mul(av, f32x4.add(g, ev));
}

/** True when the `n` values of type T from `at` are all 0 (the k coefficients of lanes). */
export function allZero<T>(at: usize, n: usize): bool {
  for (let i: usize = 0; i < n; i++) if (load<T>(at + i * sizeof<T>()) != 0) return false;
  return true;
}

/**
 * dx = a·(dy + k·(x - mean) + e) over `rows` runs of `len` (x, dy, the mask and dx each with
 * their own row stride), dy masked as in bwdStatsPlanes. float32: (x - hi) in f32, and -k·lo
 * folded into e in f64.
 */
export function bwdApplyPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, k: f64, mean: f64, e: f64,
): void {
  // A copy for each of (x read, dy masked): common.ts, On.
  if (k != 0) {
    if (mask != 0) applyPlanes32<On, On>(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, k, mean, e);
    else applyPlanes32<On, Off>(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, k, mean, e);
  } else if (mask != 0) {
    applyPlanes32<Off, On>(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, k, mean, e);
  } else {
    applyPlanes32<Off, Off>(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, k, mean, e);
  }
}

@inline function applyPlanes32<X, M>(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, k: f64, mean: f64, e: f64,
): void {
  const hi = <f32>mean;
  const af = <f32>a;
  const kf = <f32>k;
  const ef = applyShift32(k, mean, e);
  for (let r = 0; r < rows; r++) {
    applyRun32<X, M>(
      x + ((<usize>r * <usize>xRowStride) << 2), dy + ((<usize>r * <usize>dyRowStride) << 2),
      mask + ((<usize>r * <usize>maskRowStride) << 2), dx + ((<usize>r * <usize>dxRowStride) << 2),
      len, af, kf, hi, ef,
    );
  }
}

/** The float32 e of bwdApplyPlanes32: e - k·lo, with lo the part of the mean below float32's. */
@inline export function applyShift32(k: f64, mean: f64, e: f64): f32 {
  return <f32>(e - k * (mean - <f64><f32>mean));
}

/**
 * dx over one run of `len` float32 (bwdApplyPlanes32's, per element the same whatever the run's
 * length or start: a run may be cut anywhere). X On: the k·(x - hi) term read (k is not 0); M
 * On: dy masked by the forward's output at pm.
 */
@inline export function applyRun32<X, M>(
  px: usize, pg: usize, pm: usize, po: usize, len: i32, af: f32, kf: f32, hi: f32, ef: f32,
): void {
  const av = f32x4.splat(af);
  const kv = f32x4.splat(kf);
  const ev = f32x4.splat(ef);
  const hv = f32x4.splat(hi);
  const end = px + (<usize>len << 2);
  // Four vectors an iteration, so that their loads and arithmetic overlap (same operations per
  // element as one at a time).
  while (px + 64 <= end) {
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
    v128.store(po, isOn<X>() ? dx32(g0, v128.load(px), av, kv, hv, ev) : dxNoX32(g0, av, ev));
    v128.store(po, isOn<X>() ? dx32(g1, v128.load(px, 16), av, kv, hv, ev) : dxNoX32(g1, av, ev), 16);
    v128.store(po, isOn<X>() ? dx32(g2, v128.load(px, 32), av, kv, hv, ev) : dxNoX32(g2, av, ev), 32);
    v128.store(po, isOn<X>() ? dx32(g3, v128.load(px, 48), av, kv, hv, ev) : dxNoX32(g3, av, ev), 48);
    px += 64;
    pg += 64;
    pm += 64;
    po += 64;
  }
  while (px + 16 <= end) {
    let g = v128.load(pg);
    if (isOn<M>()) g = masked32(g, pm, 0);
    v128.store(po, isOn<X>() ? dx32(g, v128.load(px), av, kv, hv, ev) : dxNoX32(g, av, ev));
    px += 16;
    pg += 16;
    pm += 16;
    po += 16;
  }
  while (px < end) {
    const g = isOn<M>() && load<f32>(pm) <= 0 ? <f32>0 : load<f32>(pg);
    store<f32>(po, isOn<X>() ? dxScalar32(g, load<f32>(px), af, kf, hi, ef) : af * (g + ef));
    px += 4;
    pg += 4;
    pm += 4;
    po += 4;
  }
}

export function bwdApplyPlanes64(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, k: f64, mean: f64, e: f64,
): void {
  if (k != 0) applyPlanes64(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, k, mean, e, true);
  else applyPlanes64(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, k, mean, e, false);
}

@inline function applyPlanes64(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, k: f64, mean: f64, e: f64, useX: bool,
): void {
  const av = f64x2.splat(a);
  const kv = f64x2.splat(k);
  const ev = f64x2.splat(e);
  const mv = f64x2.splat(mean);
  const useMask = mask != 0;
  for (let r = 0; r < rows; r++) {
    let px = x + ((<usize>r * <usize>xRowStride) << 3);
    let pg = dy + ((<usize>r * <usize>dyRowStride) << 3);
    let pm = mask + ((<usize>r * <usize>maskRowStride) << 3);
    let po = dx + ((<usize>r * <usize>dxRowStride) << 3);
    const end = px + (<usize>len << 3);
    while (px + 16 <= end) {
      let g = v128.load(pg);
      if (useMask) g = masked64(g, pm);
      v128.store(po, useX
        ? f64x2.mul(av, f64x2.add(f64x2.add(g, ev), f64x2.mul(kv, f64x2.sub(v128.load(px), mv))))
        : f64x2.mul(av, f64x2.add(g, ev)));
      px += 16;
      pg += 16;
      pm += 16;
      po += 16;
    }
    if (px < end) {
      const g = useMask && load<f64>(pm) <= 0 ? 0 : load<f64>(pg);
      store<f64>(po, useX ? a * ((g + e) + k * (load<f64>(px) - mean)) : a * (g + e));
    }
  }
}

/**
 * dx over `rows` contiguous rows of C * S values with channel c's (a, k, mean, e) at
 * params + 32 * c. For S = 1, channels in lanes with the coefficients as float32 arrays in
 * `scratch` (rowScratchBytes(C) (32 * C + 2048) bytes), computed as in bwdApplyPlanes32.
 */
export function bwdApplyRows32(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, S: i32, rowStride: i32, params: usize, scratch: usize,
): void {
  if (S == 1) {
    if (C < 16 && (C & 3) != 0 && rowStride == C) bwdApplyPattern32(x, dy, mask, dx, rows, C, params, scratch);
    else bwdApplyColumns32(x, dy, mask, dx, rows, C, rowStride, params, scratch);
    return;
  }
  const rowBytes = (<usize>rowStride) << 2;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const q = params + (<usize>c << 5);
      const off = row + ((<usize>c * <usize>S) << 2);
      bwdApplyPlanes32(x + off, 0, dy + off, 0, mask == 0 ? 0 : mask + off, 0, dx + off, 0, 1, S,
        load<f64>(q), load<f64>(q, 8), load<f64>(q, 16), load<f64>(q, 24));
    }
  }
}

export function bwdApplyRows64(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, S: i32, rowStride: i32, params: usize, scratch: usize,
): void {
  if (S == 1) {
    bwdApplyColumns64(x, dy, mask, dx, rows, C, rowStride, params, scratch);
    return;
  }
  const rowBytes = (<usize>rowStride) << 3;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const q = params + (<usize>c << 5);
      const off = row + ((<usize>c * <usize>S) << 3);
      bwdApplyPlanes64(x + off, 0, dy + off, 0, mask == 0 ? 0 : mask + off, 0, dx + off, 0, 1, S,
        load<f64>(q), load<f64>(q, 8), load<f64>(q, 16), load<f64>(q, 24));
    }
  }
}
