import { fold4, masked32, patternLength } from './common';
import { needsZeroCheck, writeBwdPartial32, zeroProductLanes32 } from './backward-partial';
import { allZero, dx32, dxNoX32, dxScalar32 } from './backward-apply';
import { dxParams32 } from './backward-apply-lanes';

// Backward of few interleaved channels (rank 2, C < 16 not a multiple of 4: channels-last images):
// the sums of backward-stats.ts and the dx of backward-apply.ts, per lane position.

/**
 * Backward partials of few interleaved channels (S = 1, C < 16 not a multiple of 4: channels-last
 * images), as statsPattern32: the rows are one flat run whose lanes repeat every P = lcm(C, 4)
 * values, so position i of a period always holds channel i % C. Σdy and Σdy·(x - hi) are summed
 * per position in f32 lanes over up to 8 periods, folded into f64, and gathered into channels.
 * One and three vectors a period (C = 1, 2; C = 3, 6) keep their sums in registers.
 * acc: hi per position (f32), then Σdy and Σdy·(x - hi) per position (f64), then a flag per
 * position (i32) and zeroProductLanes32's list (P bytes): 25 * P bytes.
 */
export function bwdPattern32(x: usize, dy: usize, mask: usize, rows: i32, C: i32, params: usize, acc: usize, out: usize, outStride: i32): void {
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
    const g = useMask && load<f32>(mask + o) <= 0 ? 0 : <f64>load<f32>(dy + o);
    store<f64>(sF + (i << 3), load<f64>(sF + (i << 3)) + g);
    store<f64>(pF + (i << 3), load<f64>(pF + (i << 3)) + g * <f64>(load<f32>(x + o) - load<f32>(hPat + (i << 2))));
  }
  // Gathered per channel; a channel whose Σdy·(x - hi) came out exactly zero beside a Σdy that is
  // not is kept only where every product is zero (backward-partial.ts): checked per position over
  // the periods, then the tail.
  const fPat = pF + (P << 3);
  for (let c: usize = 0; c < <usize>C; c++) {
    let sdy: f64 = 0;
    let sdx: f64 = 0;
    for (let i = c; i < P; i += <usize>C) {
      sdy += load<f64>(sF + (i << 3));
      sdx += load<f64>(pF + (i << 3));
    }
    store<f64>(sF + (c << 3), sdy);
    store<f64>(pF + (c << 3), sdx);
  }
  let check = false;
  for (let i: usize = 0; i < P; i++) {
    const c = (i % <usize>C) << 3;
    const flag = needsZeroCheck(load<f64>(sF + c), load<f64>(pF + c));
    store<i32>(fPat + (i << 2), flag ? -1 : 0);
    check = check || flag;
  }
  if (check) {
    const list = fPat + (P << 2);
    zeroProductLanes32(x, dy, mask, <i32>periods, P << 2, <i32>P, hPat, fPat, list);
    const done = (periods * P) << 2;
    zeroProductLanes32(x + done, dy + done, useMask ? mask + done : 0, 1, 0, <i32>(total - periods * P), hPat, fPat, list);
  }
  const step = <usize>C << 2;
  for (let c: usize = 0; c < <usize>C; c++) {
    let zero = true;
    for (let i = c; i < P; i += <usize>C) zero = zero && load<i32>(fPat + (i << 2)) != 0;
    writeBwdPartial32(
      out + c * <usize>outStride, <f64>rows, load<f64>(sF + (c << 3)), load<f64>(pF + (c << 3)), load<f64>(params + (c << 5)), zero,
      x + (c << 2), dy + (c << 2), useMask ? mask + (c << 2) : 0, rows, step, step, step, 1,
    );
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
export function bwdApplyPattern32(x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, params: usize, scratch: usize): void {
  const useMask = mask != 0;
  const P = <usize>patternLength(C);
  const aA = scratch;
  const kA = aA + (P << 2);
  const hA = kA + (P << 2);
  const eA = hA + (P << 2);
  dxParams32(params, C, P, aA);
  const total = <usize>rows * <usize>C;
  if (!allZero<f32>(kA, P)) applyPattern32(x, dy, mask, dx, total, P, aA, kA, hA, eA, useMask, true);
  else applyPattern32(x, dy, mask, dx, total, P, aA, kA, hA, eA, useMask, false);
}

@inline function applyPattern32(
  x: usize, dy: usize, mask: usize, dx: usize, total: usize, P: usize, aA: usize, kA: usize, hA: usize, eA: usize, useMask: bool, useX: bool,
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
        ? dx32(g, v128.load(x + o), v128.load(aA + k), v128.load(kA + k), v128.load(hA + k), v128.load(eA + k))
        : dxNoX32(g, v128.load(aA + k), v128.load(eA + k)));
    }
  }
  for (let e = periods * P; e < total; e++) {
    const o = e << 2;
    const k = (e % P) << 2;
    const g = useMask && load<f32>(mask + o) <= 0 ? <f32>0 : load<f32>(dy + o);
    store<f32>(dx + o, useX
      ? dxScalar32(g, load<f32>(x + o), load<f32>(aA + k), load<f32>(kA + k), load<f32>(hA + k), load<f32>(eA + k))
      : load<f32>(aA + k) * (g + load<f32>(eA + k)));
  }
}
