import { allZero, applyShift32, dx32, dxNoX32, dxScalar32 } from './backward-apply';
import { isOn, masked32, masked64, Off, On } from './common';

// Backward, its output for channels in lanes (S = 1: rank 2, channels-last with C >= 16 or a
// multiple of 4), bwdApplyRows32's and bwdApplyRows64's: dx = a·(dy + k·(x - mean) + e) with each
// lane's coefficients from arrays made once a call, the same operations per element as
// bwdApplyPlanes32 and bwdApplyPlanes64 (backward-apply.ts), as normalize-lanes.ts does for the
// normalization.

/**
 * The float32 dx coefficients (a, k, hi, e - k·lo) of `positions` lanes, lane i holding channel
 * i % C, as four arrays from `aA` (each `positions` long); from channel c's (a, k, mean, e) at
 * params + 32 * c, as bwdApplyPlanes32 makes them.
 */
export function dxParams32(params: usize, C: i32, positions: usize, aA: usize): void {
  const kA = aA + (positions << 2);
  const hA = kA + (positions << 2);
  const eA = hA + (positions << 2);
  for (let i: usize = 0; i < positions; i++) {
    const q = params + ((i % <usize>C) << 5);
    const a = load<f64>(q);
    const k = load<f64>(q, 8);
    const mean = load<f64>(q, 16);
    store<f32>(aA + (i << 2), <f32>a);
    store<f32>(kA + (i << 2), <f32>k);
    store<f32>(hA + (i << 2), <f32>mean);
    store<f32>(eA + (i << 2), applyShift32(k, mean, load<f64>(q, 24)));
  }
}

export function bwdApplyColumns32(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32, params: usize, scratch: usize,
): void {
  const cPad = <usize>((C + 3) & ~3);
  const aA = scratch;
  const kA = aA + (cPad << 2);
  const hA = kA + (cPad << 2);
  const eA = hA + (cPad << 2);
  dxParams32(params, C, cPad, aA);
  // A copy for each of (x read, dy masked): common.ts, On.
  if (!allZero<f32>(kA, cPad)) {
    if (mask != 0) applyColumns32<On, On>(x, dy, mask, dx, rows, C, rowStride, aA, kA, hA, eA);
    else applyColumns32<On, Off>(x, dy, mask, dx, rows, C, rowStride, aA, kA, hA, eA);
  } else if (mask != 0) {
    applyColumns32<Off, On>(x, dy, mask, dx, rows, C, rowStride, aA, kA, hA, eA);
  } else {
    applyColumns32<Off, Off>(x, dy, mask, dx, rows, C, rowStride, aA, kA, hA, eA);
  }
}

/**
 * Rows of at least this many bytes go two at a time half the call apart (columnHalves32); shorter
 * ones (under 64 channels, not measured) a row at a time.
 */
const APPLY_HALVES_MIN_ROW_BYTES: usize = 256;

/**
 * dx of `rows` rows of C channels in lanes, their coefficients as float32 arrays (dxParams32); X
 * and M as in applyRun32. Rows of APPLY_HALVES_MIN_ROW_BYTES or more go two at a time half the
 * call apart (columnHalves32), the rest a row at a time (columnRow32).
 */
@inline function applyColumns32<X, M>(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32, aA: usize, kA: usize, hA: usize, eA: usize,
): void {
  const rowBytes = <usize>rowStride << 2;
  let r = 0;
  if (rowBytes >= APPLY_HALVES_MIN_ROW_BYTES) {
    const h = rows >> 1;
    columnHalves32<X, M>(x, dy, mask, dx, h, <usize>C, rowBytes, aA, kA, hA, eA);
    r = h << 1;
  }
  for (; r < rows; r++) columnRow32<X, M>(x, dy, mask, dx, <usize>r * rowBytes, 0, <usize>C, aA, kA, hA, eA);
}

/**
 * Rows r and r + h for r < h, each in address order, half a cache line (8 channels) of each in
 * turn with those channels' coefficients loaded once for the two (8 vectors, or 4 where x is not
 * read): two loads of coefficients a vector of data, against four a row at a time; then each
 * row's channels past the last whole 8 (columnRow32). The same operations on every element as
 * columnRow32: the same bits. Against a row at a time (2026-12-04, zero-copy backward, 2 threads):
 * E's dx task 1.16-1.22 -> 0.92-1.03 ms (`KERNELS=1 node bench/timeline.mjs E floor,backward`,
 * three runs of each build in turn); `node bench/alternate.mjs <before>/dist dist lanes`, two
 * runs in each order, backward: [32, 112, 112, 64] channels-last 0.83-0.93x the time, [64, 56,
 * 56, 256] 0.89-0.98x, [16384, 256] 0.83-1.05x, E 0.86-1.13x. Four rows a quarter apart (12
 * streams of data) took E's task to 0.91-0.98 ms but [64, 56, 56, 256] to 1.08-1.09x the time.
 */
@inline function columnHalves32<X, M>(
  x: usize, dy: usize, mask: usize, dx: usize, h: i32, C: usize, rowBytes: usize, aA: usize, kA: usize, hA: usize, eA: usize,
): void {
  const half = <usize>h * rowBytes;
  const c8 = C & ~7;
  for (let r = 0; r < h; r++) {
    const row = <usize>r * rowBytes;
    for (let k: usize = 0; k < c8 << 2; k += 32) {
      const a0 = v128.load(aA + k);
      const a1 = v128.load(aA + k, 16);
      const e0 = v128.load(eA + k);
      const e1 = v128.load(eA + k, 16);
      const k0 = isOn<X>() ? v128.load(kA + k) : a0;
      const k1 = isOn<X>() ? v128.load(kA + k, 16) : a0;
      const h0 = isOn<X>() ? v128.load(hA + k) : a0;
      const h1 = isOn<X>() ? v128.load(hA + k, 16) : a0;
      const o = row + k;
      columnHalfLine32<X, M>(x + o, dy + o, mask + o, dx + o, a0, a1, k0, k1, h0, h1, e0, e1);
      columnHalfLine32<X, M>(x + o + half, dy + o + half, mask + o + half, dx + o + half, a0, a1, k0, k1, h0, h1, e0, e1);
    }
    if (c8 < C) {
      columnRow32<X, M>(x, dy, mask, dx, row, c8, C, aA, kA, hA, eA);
      columnRow32<X, M>(x, dy, mask, dx, row + half, c8, C, aA, kA, hA, eA);
    }
  }
}

/** dx of 8 channels (two vectors) from px, py, pm to po, with their coefficients. */
@inline function columnHalfLine32<X, M>(
  px: usize, pg: usize, pm: usize, po: usize, a0: v128, a1: v128, k0: v128, k1: v128, h0: v128, h1: v128, e0: v128, e1: v128,
): void {
  let g0 = v128.load(pg);
  let g1 = v128.load(pg, 16);
  if (isOn<M>()) {
    g0 = masked32(g0, pm, 0);
    g1 = masked32(g1, pm, 16);
  }
  v128.store(po, isOn<X>() ? dx32(g0, v128.load(px), a0, k0, h0, e0) : dxNoX32(g0, a0, e0));
  v128.store(po, isOn<X>() ? dx32(g1, v128.load(px, 16), a1, k1, h1, e1) : dxNoX32(g1, a1, e1), 16);
}

/** dx of channels [c0, c1) of the row at byte `row` (c0 a multiple of 4), a vector at a time. */
@inline function columnRow32<X, M>(
  x: usize, dy: usize, mask: usize, dx: usize, row: usize, c0: usize, c1: usize, aA: usize, kA: usize, hA: usize, eA: usize,
): void {
  const c4 = c0 + ((c1 - c0) & ~3);
  let c = c0;
  for (; c < c4; c += 4) {
    const o = row + (c << 2);
    const k = c << 2;
    let g = v128.load(dy + o);
    if (isOn<M>()) g = masked32(g, mask + o, 0);
    v128.store(dx + o, isOn<X>()
      ? dx32(g, v128.load(x + o), v128.load(aA + k), v128.load(kA + k), v128.load(hA + k), v128.load(eA + k))
      : dxNoX32(g, v128.load(aA + k), v128.load(eA + k)));
  }
  for (; c < c1; c++) {
    const o = row + (c << 2);
    const k = c << 2;
    const g = isOn<M>() && load<f32>(mask + o) <= 0 ? <f32>0 : load<f32>(dy + o);
    store<f32>(dx + o, isOn<X>()
      ? dxScalar32(g, load<f32>(x + o), load<f32>(aA + k), load<f32>(kA + k), load<f32>(hA + k), load<f32>(eA + k))
      : load<f32>(aA + k) * (g + load<f32>(eA + k)));
  }
}

/**
 * bwdApplyRows64 for S = 1: channels in the two lanes, the coefficients as f64 arrays in `scratch`
 * (32 * C bytes), the same operations per element as bwdApplyPlanes64.
 */
export function bwdApplyColumns64(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32, params: usize, scratch: usize,
): void {
  const useMask = mask != 0;
  const cPad = <usize>((C + 1) & ~1);
  const aA = scratch;
  const kA = aA + (cPad << 3);
  const mA = kA + (cPad << 3);
  const eA = mA + (cPad << 3);
  for (let c: usize = 0; c < cPad; c++) {
    const q = params + ((c < <usize>C ? c : 0) << 5);
    store<f64>(aA + (c << 3), load<f64>(q));
    store<f64>(kA + (c << 3), load<f64>(q, 8));
    store<f64>(mA + (c << 3), load<f64>(q, 16));
    store<f64>(eA + (c << 3), load<f64>(q, 24));
  }
  if (!allZero<f64>(kA, cPad)) applyColumns64(x, dy, mask, dx, rows, C, rowStride, aA, kA, mA, eA, useMask, true);
  else applyColumns64(x, dy, mask, dx, rows, C, rowStride, aA, kA, mA, eA, useMask, false);
}

@inline function applyColumns64(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, rowStride: i32,
  aA: usize, kA: usize, mA: usize, eA: usize, useMask: bool, useX: bool,
): void {
  const c2 = <usize>(C & ~1);
  const rowBytes = <usize>rowStride << 3;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    for (let c: usize = 0; c < c2; c += 2) {
      const o = row + (c << 3);
      const k = c << 3;
      let g = v128.load(dy + o);
      if (useMask) g = masked64(g, mask + o);
      v128.store(dx + o, useX
        ? f64x2.mul(v128.load(aA + k), f64x2.add(f64x2.add(g, v128.load(eA + k)), f64x2.mul(v128.load(kA + k), f64x2.sub(v128.load(x + o), v128.load(mA + k)))))
        : f64x2.mul(v128.load(aA + k), f64x2.add(g, v128.load(eA + k))));
    }
    if (c2 < <usize>C) {
      const o = row + (c2 << 3);
      const k = c2 << 3;
      const g = useMask && load<f64>(mask + o) <= 0 ? 0 : load<f64>(dy + o);
      store<f64>(dx + o, useX
        ? load<f64>(aA + k) * ((g + load<f64>(eA + k)) + load<f64>(kA + k) * (load<f64>(x + o) - load<f64>(mA + k)))
        : load<f64>(aA + k) * (g + load<f64>(eA + k)));
    }
  }
}
