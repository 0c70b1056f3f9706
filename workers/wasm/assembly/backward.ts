import { fold4, hsum, masked32, patternLength, promoteHigh, promoteLow } from './common';

// Backward: reductions of (Σdy, Σdy·(x - mean)) per channel, and dx = a·dy + b·(x - mean) + d.
// With a fused ReLU the forward's output y is the mask: where y <= 0 (or is NaN) the incoming
// gradient is 0. `mask` is y's byte offset, or 0 without ReLU.
// Where b is 0 (every channel of an eval-mode gradient, dx = weight·invstd·dy) the apply loops
// drop the b·(x - mean) term and never read x, as PyTorch's formula does: a NaN or infinite x
// then leaves dx finite instead of making it 0·Inf = NaN. b is never 0 where x is not finite in
// training mode (the sums, hence b, are then NaN), so training results are unchanged.

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
  const hi = <f32>mean;
  const lo = mean - <f64>hi;
  const useMask = mask != 0;
  // out[1], out[2] accumulate (Σdy, Σdy·(x - hi)) run by run.
  store<f64>(out, 0, 8);
  store<f64>(out, 0, 16);
  for (let r = 0; r < rows; r++) {
    bwdRun32(
      x + ((<usize>r * <usize>xRowStride) << 2), dy + ((<usize>r * <usize>dyRowStride) << 2),
      mask + ((<usize>r * <usize>maskRowStride) << 2), len, hi, useMask, out + 8,
    );
  }
  const sdy = load<f64>(out, 8);
  store<f64>(out, <f64>rows * <f64>len);
  store<f64>(out, load<f64>(out, 16) - lo * sdy, 16);
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
      if (useMask) g = v128.and(g, f64x2.gt(v128.load(pm), f64x2.splat(0)));
      a1 = f64x2.add(a1, g);
      a2 = f64x2.add(a2, f64x2.mul(g, f64x2.sub(v128.load(px), mv)));
      px += 16;
      pg += 16;
      pm += 16;
    }
    if (px < end) {
      const g = useMask && !(load<f64>(pm) > 0) ? 0 : load<f64>(pg);
      a1 = f64x2.add(a1, f64x2(g, 0));
      a2 = f64x2.add(a2, f64x2(g * (load<f64>(px) - mean), 0));
    }
  }
  store<f64>(out, <f64>rows * <f64>len);
  store<f64>(out, hsum(a1), 8);
  store<f64>(out, hsum(a2), 16);
}

/** dx = (a·g + b·(x - hi)) + d in float32 lanes (the scalar tails compute the same). */
@inline function dx32(g: v128, x: v128, av: v128, bv: v128, hv: v128, dv: v128): v128 {
  return f32x4.add(f32x4.add(f32x4.mul(av, g), f32x4.mul(bv, f32x4.sub(x, hv))), dv);
}

/** dx32 where b is 0: a·g + d, x unread. */
@inline function dxNoX32(g: v128, av: v128, dv: v128): v128 {
  return f32x4.add(f32x4.mul(av, g), dv);
}

/** True when the `n` values of type T from `at` are all 0 (the b coefficients of lanes). */
function allZero<T>(at: usize, n: usize): bool {
  for (let i: usize = 0; i < n; i++) if (load<T>(at + i * sizeof<T>()) != 0) return false;
  return true;
}

/**
 * dx = a·dy + b·(x - mean) + d over `rows` runs of `len` (x, dy, the mask and dx each with their
 * own row stride), dy masked as in bwdStatsPlanes. float32: (x - hi) in f32, and -b·lo folded
 * into d in f64.
 */
export function bwdApplyPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, b: f64, mean: f64, d: f64,
): void {
  if (b != 0) applyPlanes32(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, b, mean, d, true);
  else applyPlanes32(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, b, mean, d, false);
}

@inline function applyPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, b: f64, mean: f64, d: f64, useX: bool,
): void {
  const hi = <f32>mean;
  const af = <f32>a;
  const bf = <f32>b;
  const df = <f32>(d - b * (mean - <f64>hi));
  const av = f32x4.splat(af);
  const bv = f32x4.splat(bf);
  const dv = f32x4.splat(df);
  const hv = f32x4.splat(hi);
  const useMask = mask != 0;
  for (let r = 0; r < rows; r++) {
    let px = x + ((<usize>r * <usize>xRowStride) << 2);
    let pg = dy + ((<usize>r * <usize>dyRowStride) << 2);
    let pm = mask + ((<usize>r * <usize>maskRowStride) << 2);
    let po = dx + ((<usize>r * <usize>dxRowStride) << 2);
    const end = px + (<usize>len << 2);
    // Four vectors an iteration, so that their loads and arithmetic overlap (same operations per
    // element as one at a time).
    while (px + 64 <= end) {
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
      v128.store(po, useX ? dx32(g0, v128.load(px), av, bv, hv, dv) : dxNoX32(g0, av, dv));
      v128.store(po, useX ? dx32(g1, v128.load(px, 16), av, bv, hv, dv) : dxNoX32(g1, av, dv), 16);
      v128.store(po, useX ? dx32(g2, v128.load(px, 32), av, bv, hv, dv) : dxNoX32(g2, av, dv), 32);
      v128.store(po, useX ? dx32(g3, v128.load(px, 48), av, bv, hv, dv) : dxNoX32(g3, av, dv), 48);
      px += 64;
      pg += 64;
      pm += 64;
      po += 64;
    }
    while (px + 16 <= end) {
      let g = v128.load(pg);
      if (useMask) g = masked32(g, pm, 0);
      v128.store(po, useX ? dx32(g, v128.load(px), av, bv, hv, dv) : dxNoX32(g, av, dv));
      px += 16;
      pg += 16;
      pm += 16;
      po += 16;
    }
    while (px < end) {
      const g = useMask && !(load<f32>(pm) > 0) ? <f32>0 : load<f32>(pg);
      store<f32>(po, useX ? (af * g + bf * (load<f32>(px) - hi)) + df : af * g + df);
      px += 4;
      pg += 4;
      pm += 4;
      po += 4;
    }
  }
}

export function bwdApplyPlanes64(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, b: f64, mean: f64, d: f64,
): void {
  if (b != 0) applyPlanes64(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, b, mean, d, true);
  else applyPlanes64(x, xRowStride, dy, dyRowStride, mask, maskRowStride, dx, dxRowStride, rows, len, a, b, mean, d, false);
}

@inline function applyPlanes64(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, b: f64, mean: f64, d: f64, useX: bool,
): void {
  const av = f64x2.splat(a);
  const bv = f64x2.splat(b);
  const dv = f64x2.splat(d);
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
      if (useMask) g = v128.and(g, f64x2.gt(v128.load(pm), f64x2.splat(0)));
      v128.store(po, useX
        ? f64x2.add(f64x2.add(f64x2.mul(av, g), f64x2.mul(bv, f64x2.sub(v128.load(px), mv))), dv)
        : f64x2.add(f64x2.mul(av, g), dv));
      px += 16;
      pg += 16;
      pm += 16;
      po += 16;
    }
    if (px < end) {
      const g = useMask && !(load<f64>(pm) > 0) ? 0 : load<f64>(pg);
      store<f64>(po, useX ? (a * g + b * (load<f64>(px) - mean)) + d : a * g + d);
    }
  }
}

/**
 * Adds Σdy and Σdy·(x - hi) of one float32 run to the f64 pair at acc (acc[0] += Σdy,
 * acc[1] += Σdy·(x - hi)): f32 lanes summed over 4 vectors (a tree) between folds into f64.
 */
@inline function bwdRun32(px: usize, pg: usize, pm: usize, len: i32, hi: f32, useMask: bool, acc: usize): void {
  const hv = f32x4.splat(hi);
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  const end = px + (<usize>len << 2);
  while (px + 64 <= end) {
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
    const s = f32x4.add(f32x4.add(g0, g1), f32x4.add(g2, g3));
    const p = f32x4.add(
      f32x4.add(f32x4.mul(g0, f32x4.sub(v128.load(px), hv)), f32x4.mul(g1, f32x4.sub(v128.load(px, 16), hv))),
      f32x4.add(f32x4.mul(g2, f32x4.sub(v128.load(px, 32), hv)), f32x4.mul(g3, f32x4.sub(v128.load(px, 48), hv))),
    );
    a1 = f64x2.add(a1, f64x2.add(promoteLow(s), promoteHigh(s)));
    a2 = f64x2.add(a2, f64x2.add(promoteLow(p), promoteHigh(p)));
    px += 64;
    pg += 64;
    pm += 64;
  }
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
    const g = useMask && !(load<f32>(pm) > 0) ? 0 : <f64>load<f32>(pg);
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
      bwdRun32(x + off, dy + off, mask + off, S, <f32>load<f64>(params + (<usize>c << 5)), useMask, acc + (<usize>c << 4));
    }
  }
  for (let c = 0; c < C; c++) {
    const mean = load<f64>(params + (<usize>c << 5));
    const lo = mean - <f64><f32>mean;
    const a = acc + (<usize>c << 4);
    const o = out + <usize>c * <usize>outStride;
    const sdy = load<f64>(a);
    store<f64>(o, <f64>rows * <f64>S);
    store<f64>(o, sdy, 8);
    store<f64>(o, load<f64>(a, 8) - lo * sdy, 16);
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
        const g = useMask && !(load<f64>(mask + p) > 0) ? 0 : load<f64>(dy + p);
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
      if (useMask) g = v128.and(g, f64x2.gt(v128.load(mask + o), f64x2.splat(0)));
      v128.store(sA + k, f64x2.add(v128.load(sA + k), g));
      v128.store(pA + k, f64x2.add(v128.load(pA + k), f64x2.mul(g, f64x2.sub(v128.load(x + o), v128.load(mA + k)))));
    }
    if (c2 < <usize>C) {
      const o = row + (c2 << 3);
      const k = c2 << 3;
      const g = useMask && !(load<f64>(mask + o) > 0) ? 0 : load<f64>(dy + o);
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
 * Rank-2 style backward partials (S = 1): channels in lanes, 16 channels (a cache line of a row)
 * by up to 8 rows summed in f32, then folded into f64, as in statsColumns32. acc: hi as f32 and
 * Σdy, Σdy·(x - hi) as f64, each [C rounded up to 4].
 */
function bwdColumns32(
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, rowStride: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  const useMask = mask != 0;
  const c16 = <usize>(C & ~15);
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
  let r = 0;
  while (r < rows) {
    const tile = min(8, rows - r);
    const base = <usize>r * rowBytes;
    for (let c: usize = 0; c < c16; c += 16) {
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
        o += rowBytes;
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
    for (let c = c16; c < <usize>C; c++) {
      const hi = load<f32>(hArr + (c << 2));
      let t1: f64 = 0;
      let t2: f64 = 0;
      for (let i = 0; i < tile; i++) {
        const o = base + <usize>i * rowBytes + (c << 2);
        const g = useMask && !(load<f32>(mask + o) > 0) ? 0 : <f64>load<f32>(dy + o);
        t1 += g;
        t2 += g * <f64>(load<f32>(x + o) - hi);
      }
      store<f64>(sArr + (c << 3), load<f64>(sArr + (c << 3)) + t1);
      store<f64>(pArr + (c << 3), load<f64>(pArr + (c << 3)) + t2);
    }
    r += tile;
  }
  for (let c: usize = 0; c < <usize>C; c++) {
    const mean = load<f64>(params + (c << 5));
    const lo = mean - <f64><f32>mean;
    const sdy = load<f64>(sArr + (c << 3));
    const o = out + c * <usize>outStride;
    store<f64>(o, <f64>rows);
    store<f64>(o, sdy, 8);
    store<f64>(o, load<f64>(pArr + (c << 3)) - lo * sdy, 16);
  }
}

/**
 * dx over `rows` contiguous rows of C * S values with channel c's (a, b, mean, d) at
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

/**
 * The float32 dx coefficients (a, b, hi, d - b·lo) of `positions` lanes, lane i holding channel
 * i % C, as four arrays from `aA` (each `positions` long); from channel c's (a, b, mean, d) at
 * params + 32 * c, as bwdApplyPlanes32 makes them.
 */
function dxParams32(params: usize, C: i32, positions: usize, aA: usize): void {
  const bA = aA + (positions << 2);
  const hA = bA + (positions << 2);
  const dA = hA + (positions << 2);
  for (let i: usize = 0; i < positions; i++) {
    const q = params + ((i % <usize>C) << 5);
    const b = load<f64>(q, 8);
    const mean = load<f64>(q, 16);
    const hi = <f32>mean;
    store<f32>(aA + (i << 2), <f32>load<f64>(q));
    store<f32>(bA + (i << 2), <f32>b);
    store<f32>(hA + (i << 2), hi);
    store<f32>(dA + (i << 2), <f32>(load<f64>(q, 24) - b * (mean - <f64>hi)));
  }
}

function bwdApplyColumns32(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32, params: usize, scratch: usize,
): void {
  const useMask = mask != 0;
  const cPad = <usize>((C + 3) & ~3);
  const aA = scratch;
  const bA = aA + (cPad << 2);
  const hA = bA + (cPad << 2);
  const dA = hA + (cPad << 2);
  dxParams32(params, C, cPad, aA);
  if (!allZero<f32>(bA, cPad)) applyColumns32(x, dy, mask, dx, rows, C, rowStride, aA, bA, hA, dA, useMask, true);
  else applyColumns32(x, dy, mask, dx, rows, C, rowStride, aA, bA, hA, dA, useMask, false);
}

@inline function applyColumns32(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32,
  aA: usize, bA: usize, hA: usize, dA: usize, useMask: bool, useX: bool,
): void {
  const c4 = <usize>(C & ~3);
  const rowBytes = <usize>rowStride << 2;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    let c: usize = 0;
    for (; c < c4; c += 4) {
      const o = row + (c << 2);
      const k = c << 2;
      let g = v128.load(dy + o);
      if (useMask) g = masked32(g, mask + o, 0);
      v128.store(dx + o, useX
        ? dx32(g, v128.load(x + o), v128.load(aA + k), v128.load(bA + k), v128.load(hA + k), v128.load(dA + k))
        : dxNoX32(g, v128.load(aA + k), v128.load(dA + k)));
    }
    for (; c < <usize>C; c++) {
      const o = row + (c << 2);
      const k = c << 2;
      const g = useMask && !(load<f32>(mask + o) > 0) ? <f32>0 : load<f32>(dy + o);
      store<f32>(dx + o, useX
        ? (load<f32>(aA + k) * g + load<f32>(bA + k) * (load<f32>(x + o) - load<f32>(hA + k))) + load<f32>(dA + k)
        : load<f32>(aA + k) * g + load<f32>(dA + k));
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

/**
 * bwdApplyRows64 for S = 1: channels in the two lanes, the coefficients as f64 arrays in `scratch`
 * (32 * C bytes), the same operations per element as bwdApplyPlanes64.
 */
function bwdApplyColumns64(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32, params: usize, scratch: usize,
): void {
  const useMask = mask != 0;
  const cPad = <usize>((C + 1) & ~1);
  const aA = scratch;
  const bA = aA + (cPad << 3);
  const mA = bA + (cPad << 3);
  const dA = mA + (cPad << 3);
  for (let c: usize = 0; c < cPad; c++) {
    const q = params + ((c < <usize>C ? c : 0) << 5);
    store<f64>(aA + (c << 3), load<f64>(q));
    store<f64>(bA + (c << 3), load<f64>(q, 8));
    store<f64>(mA + (c << 3), load<f64>(q, 16));
    store<f64>(dA + (c << 3), load<f64>(q, 24));
  }
  if (!allZero<f64>(bA, cPad)) applyColumns64(x, dy, mask, dx, rows, C, rowStride, aA, bA, mA, dA, useMask, true);
  else applyColumns64(x, dy, mask, dx, rows, C, rowStride, aA, bA, mA, dA, useMask, false);
}

@inline function applyColumns64(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32,
  aA: usize, bA: usize, mA: usize, dA: usize, useMask: bool, useX: bool,
): void {
  const c2 = <usize>(C & ~1);
  const rowBytes = <usize>rowStride << 3;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c: usize = 0; c < c2; c += 2) {
      const o = row + (c << 3);
      const k = c << 3;
      let g = v128.load(dy + o);
      if (useMask) g = v128.and(g, f64x2.gt(v128.load(mask + o), f64x2.splat(0)));
      v128.store(dx + o, useX
        ? f64x2.add(f64x2.add(f64x2.mul(v128.load(aA + k), g), f64x2.mul(v128.load(bA + k), f64x2.sub(v128.load(x + o), v128.load(mA + k)))), v128.load(dA + k))
        : f64x2.add(f64x2.mul(v128.load(aA + k), g), v128.load(dA + k)));
    }
    if (c2 < <usize>C) {
      const o = row + (c2 << 3);
      const k = c2 << 3;
      const g = useMask && !(load<f64>(mask + o) > 0) ? 0 : load<f64>(dy + o);
      store<f64>(dx + o, useX
        ? (load<f64>(aA + k) * g + load<f64>(bA + k) * (load<f64>(x + o) - load<f64>(mA + k))) + load<f64>(dA + k)
        : load<f64>(aA + k) * g + load<f64>(dA + k));
    }
  }
}

/**
 * Backward partials of few interleaved channels (S = 1, C < 16 not a multiple of 4: channels-last
 * images), as statsPattern32: the rows are one flat run whose lanes repeat every P = lcm(C, 4)
 * values, so position i of a period always holds channel i % C. Σdy and Σdy·(x - hi) are summed
 * per position in f32 lanes over up to 8 periods, folded into f64, and gathered into channels.
 * One and three vectors a period (C = 1, 2; C = 3, 6) keep their sums in registers.
 * acc: hi per position (f32), then Σdy and Σdy·(x - hi) per position (f64): 20 * P bytes.
 */
function bwdPattern32(x: usize, dy: usize, mask: usize, rows: i32, C: i32, params: usize, acc: usize, out: usize, outStride: i32): void {
  const useMask = mask != 0;
  const P = <usize>patternLength(C);
  const V = P >> 2;
  const total = <usize>rows * <usize>C;
  const periods = total / P;
  const hPat = acc;
  const sF = hPat + (P << 2);
  const pF = sF + (P << 3);
  for (let i: usize = 0; i < P; i++) {
    store<f32>(hPat + (i << 2), <f32>load<f64>(params + ((i % <usize>C) << 5)));
    store<f64>(sF + (i << 3), 0);
    store<f64>(pF + (i << 3), 0);
  }
  let p: usize = 0;
  if (V == 1) p = useMask ? bwdPattern1(x, dy, mask, periods, hPat, sF, pF, true) : bwdPattern1(x, dy, mask, periods, hPat, sF, pF, false);
  else if (V == 3) p = useMask ? bwdPattern3(x, dy, mask, periods, hPat, sF, pF, true) : bwdPattern3(x, dy, mask, periods, hPat, sF, pF, false);
  for (; p < periods; p++) {
    // Generic periods (and those V == 1 or 3 left over): f64 per vector, no f32 tile.
    const base = (p * P) << 2;
    for (let j: usize = 0; j < V; j++) {
      const o = base + (j << 4);
      let g = v128.load(dy + o);
      if (useMask) g = masked32(g, mask + o, 0);
      fold4(sF + (j << 5), g);
      fold4(pF + (j << 5), f32x4.mul(g, f32x4.sub(v128.load(x + o), v128.load(hPat + (j << 4)))));
    }
  }
  for (let e = periods * P; e < total; e++) {
    const i = e % P;
    const o = e << 2;
    const g = useMask && !(load<f32>(mask + o) > 0) ? 0 : <f64>load<f32>(dy + o);
    store<f64>(sF + (i << 3), load<f64>(sF + (i << 3)) + g);
    store<f64>(pF + (i << 3), load<f64>(pF + (i << 3)) + g * <f64>(load<f32>(x + o) - load<f32>(hPat + (i << 2))));
  }
  for (let c: usize = 0; c < <usize>C; c++) {
    let sdy: f64 = 0;
    let sdx: f64 = 0;
    for (let i = c; i < P; i += <usize>C) {
      sdy += load<f64>(sF + (i << 3));
      sdx += load<f64>(pF + (i << 3));
    }
    const mean = load<f64>(params + (c << 5));
    const lo = mean - <f64><f32>mean;
    const o = out + c * <usize>outStride;
    store<f64>(o, <f64>rows);
    store<f64>(o, sdy, 8);
    store<f64>(o, sdx - lo * sdy, 16);
  }
}

/** bwdPattern32, one vector a period: tiles of 8 periods in f32 lanes. Returns the periods done. */
@inline function bwdPattern1(x: usize, dy: usize, mask: usize, periods: usize, hPat: usize, sF: usize, pF: usize, useMask: bool): usize {
  const h = v128.load(hPat);
  let p: usize = 0;
  for (; p + 8 <= periods; p += 8) {
    let s = f32x4.splat(0);
    let q = f32x4.splat(0);
    const end = (p + 8) << 4;
    for (let o = p << 4; o < end; o += 16) {
      let g = v128.load(dy + o);
      if (useMask) g = masked32(g, mask + o, 0);
      s = f32x4.add(s, g);
      q = f32x4.add(q, f32x4.mul(g, f32x4.sub(v128.load(x + o), h)));
    }
    fold4(sF, s);
    fold4(pF, q);
  }
  return p;
}

/** bwdPattern32, three vectors a period: tiles of 8 periods in f32 lanes. Returns the periods done. */
@inline function bwdPattern3(x: usize, dy: usize, mask: usize, periods: usize, hPat: usize, sF: usize, pF: usize, useMask: bool): usize {
  const h0 = v128.load(hPat);
  const h1 = v128.load(hPat, 16);
  const h2 = v128.load(hPat, 32);
  let p: usize = 0;
  for (; p + 8 <= periods; p += 8) {
    let s0 = f32x4.splat(0);
    let s1 = f32x4.splat(0);
    let s2 = f32x4.splat(0);
    let q0 = f32x4.splat(0);
    let q1 = f32x4.splat(0);
    let q2 = f32x4.splat(0);
    const end = ((p + 8) * 12) << 2;
    for (let o = (p * 12) << 2; o < end; o += 48) {
      let g0 = v128.load(dy + o);
      let g1 = v128.load(dy + o, 16);
      let g2 = v128.load(dy + o, 32);
      if (useMask) {
        g0 = masked32(g0, mask + o, 0);
        g1 = masked32(g1, mask + o, 16);
        g2 = masked32(g2, mask + o, 32);
      }
      s0 = f32x4.add(s0, g0);
      s1 = f32x4.add(s1, g1);
      s2 = f32x4.add(s2, g2);
      q0 = f32x4.add(q0, f32x4.mul(g0, f32x4.sub(v128.load(x + o), h0)));
      q1 = f32x4.add(q1, f32x4.mul(g1, f32x4.sub(v128.load(x + o, 16), h1)));
      q2 = f32x4.add(q2, f32x4.mul(g2, f32x4.sub(v128.load(x + o, 32), h2)));
    }
    fold4(sF, s0);
    fold4(sF + 32, s1);
    fold4(sF + 64, s2);
    fold4(pF, q0);
    fold4(pF + 32, q1);
    fold4(pF + 64, q2);
  }
  return p;
}

/**
 * dx for few interleaved channels (as bwdPattern32): the coefficients per position as f32 arrays
 * in `scratch` (16 * P bytes), computed as in bwdApplyColumns32, so each element gets the same
 * operations as there.
 */
function bwdApplyPattern32(x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, params: usize, scratch: usize): void {
  const useMask = mask != 0;
  const P = <usize>patternLength(C);
  const aA = scratch;
  const bA = aA + (P << 2);
  const hA = bA + (P << 2);
  const dA = hA + (P << 2);
  dxParams32(params, C, P, aA);
  const total = <usize>rows * <usize>C;
  if (!allZero<f32>(bA, P)) applyPattern32(x, dy, mask, dx, total, P, aA, bA, hA, dA, useMask, true);
  else applyPattern32(x, dy, mask, dx, total, P, aA, bA, hA, dA, useMask, false);
}

@inline function applyPattern32(
  x: usize, dy: usize, mask: usize, dx: usize, total: usize, P: usize, aA: usize, bA: usize, hA: usize, dA: usize, useMask: bool, useX: bool,
): void {
  const V = P >> 2;
  const periods = total / P;
  for (let p: usize = 0; p < periods; p++) {
    const base = (p * P) << 2;
    for (let j: usize = 0; j < V; j++) {
      const o = base + (j << 4);
      const k = j << 4;
      let g = v128.load(dy + o);
      if (useMask) g = masked32(g, mask + o, 0);
      v128.store(dx + o, useX
        ? dx32(g, v128.load(x + o), v128.load(aA + k), v128.load(bA + k), v128.load(hA + k), v128.load(dA + k))
        : dxNoX32(g, v128.load(aA + k), v128.load(dA + k)));
    }
  }
  for (let e = periods * P; e < total; e++) {
    const o = e << 2;
    const k = (e % P) << 2;
    const g = useMask && !(load<f32>(mask + o) > 0) ? <f32>0 : load<f32>(dy + o);
    store<f32>(dx + o, useX
      ? (load<f32>(aA + k) * g + load<f32>(bA + k) * (load<f32>(x + o) - load<f32>(hA + k))) + load<f32>(dA + k)
      : load<f32>(aA + k) * g + load<f32>(dA + k));
  }
}
