import { allEqual32, fold4, maskedDiffer32, patternLength, unproven32, writePartial, writePartial32 } from './common';
import { sums32 } from './stats';

// Statistics of rank 2 with few channels (channels-last images: C = 1, 2, 3, ...), where C is not a
// multiple of 4: the rows are one flat run in which channel c sits at every C-th value. Its pattern
// repeats every P = lcm(C, 4) values, V = P / 4 vectors, so lane l of vector j always holds
// channel (4j + l) % C: those V vectors are reduced with per-position shifts, and the positions
// are gathered into channels at the end (statsPattern32).

/**
 * statsPattern32 with one vector a period (C = 1, 2): the periods are one run of float32, summed as
 * sums32 sums a plane's (groups of 512 bytes), with the 4 positions' shifts in kv's lanes. sums32
 * adds lanes 2 and 3 into lanes 0 and 1, and positions i and i + 2 hold the same channel (i % C),
 * so position 0 and 1 get the sums and positions 2 and 3 keep zeros. Returns the periods done: all.
 */
function pattern1(x: usize, periods: usize, kv: v128, sF: usize, qF: usize): usize {
  // sums32's s1 lanes land at sF[0..1] and its s2 lanes at sF[2..3] (all zero before).
  sums32(x, <i32>(periods << 2), kv, 0, sF);
  v128.store(qF, v128.load(sF, 16));
  v128.store(sF, f64x2.splat(0), 16);
  return periods;
}

/** statsPattern32 with three vectors a period, the same operations as its generic loop. */
function pattern3(x: usize, periods: usize, kPat: usize, sF: usize, qF: usize): usize {
  const k0 = v128.load(kPat);
  const k1 = v128.load(kPat, 16);
  const k2 = v128.load(kPat, 32);
  let p: usize = 0;
  for (; p + 8 <= periods; p += 8) {
    let s0 = f32x4.splat(0);
    let s1 = f32x4.splat(0);
    let s2 = f32x4.splat(0);
    let q0 = f32x4.splat(0);
    let q1 = f32x4.splat(0);
    let q2 = f32x4.splat(0);
    let b = x + ((p * 12) << 2);
    const end = b + 384;
    for (; b < end; b += 48) {
      const d0 = f32x4.sub(v128.load(b), k0);
      const d1 = f32x4.sub(v128.load(b, 16), k1);
      const d2 = f32x4.sub(v128.load(b, 32), k2);
      s0 = f32x4.add(s0, d0);
      s1 = f32x4.add(s1, d1);
      s2 = f32x4.add(s2, d2);
      q0 = f32x4.add(q0, f32x4.mul(d0, d0));
      q1 = f32x4.add(q1, f32x4.mul(d1, d1));
      q2 = f32x4.add(q2, f32x4.mul(d2, d2));
    }
    fold4(sF, s0);
    fold4(sF + 32, s1);
    fold4(sF + 64, s2);
    fold4(qF, q0);
    fold4(qF + 32, q1);
    fold4(qF + 64, q2);
  }
  return p;
}

export function statsPattern32(x: usize, rows: i32, C: i32, acc: usize, out: usize, outStride: i32): void {
  const P = <usize>patternLength(C);
  const V = P >> 2;
  const total = <usize>rows * <usize>C;
  const periods = total / P;
  // acc: shift per position (f32), sums per position (f32, then f64).
  const kPat = acc;
  const sPat = kPat + (P << 2);
  const qPat = sPat + (P << 2);
  const sF = qPat + (P << 2);
  const qF = sF + (P << 3);
  for (let i: usize = 0; i < P; i++) {
    store<f32>(kPat + (i << 2), load<f32>(x + ((i % <usize>C) << 2)));
    store<f64>(sF + (i << 3), 0);
    store<f64>(qF + (i << 3), 0);
  }
  let p: usize = 0;
  // One and three vectors a period (C = 1, 2; C = 3, 6) keep their sums in registers; through
  // memory, each add waited on the store before it (C = 3: 3x the streaming pass's time in cache).
  if (V == 1) p = pattern1(x, periods, v128.load(kPat), sF, qF);
  else if (V == 3) p = pattern3(x, periods, kPat, sF, qF);
  while (p < periods) {
    const tile = min<usize>(8, periods - p);
    for (let j: usize = 0; j < V; j++) {
      v128.store(sPat + (j << 4), f32x4.splat(0));
      v128.store(qPat + (j << 4), f32x4.splat(0));
    }
    for (let t: usize = 0; t < tile; t++) {
      const base = x + (((p + t) * P) << 2);
      for (let j: usize = 0; j < V; j++) {
        const d = f32x4.sub(v128.load(base + (j << 4)), v128.load(kPat + (j << 4)));
        v128.store(sPat + (j << 4), f32x4.add(v128.load(sPat + (j << 4)), d));
        v128.store(qPat + (j << 4), f32x4.add(v128.load(qPat + (j << 4)), f32x4.mul(d, d)));
      }
    }
    for (let j: usize = 0; j < V; j++) {
      fold4(sF + (j << 5), v128.load(sPat + (j << 4)));
      fold4(qF + (j << 5), v128.load(qPat + (j << 4)));
    }
    p += tile;
  }
  for (let e = periods * P; e < total; e++) {
    const i = e % P;
    const d = <f64>(load<f32>(x + (e << 2)) - load<f32>(kPat + (i << 2)));
    store<f64>(sF + (i << 3), load<f64>(sF + (i << 3)) + d);
    store<f64>(qF + (i << 3), load<f64>(qF + (i << 3)) + d * d);
  }
  // Channel c's sums, s1 at sPat + 8c and s2 at qPat + 8c: the float32 sums there are done with,
  // and their 4 bytes a position are at least 8 a channel (P >= 2C, as C is not a multiple of 4).
  for (let c: usize = 0; c < <usize>C; c++) {
    let s1: f64 = 0;
    let s2: f64 = 0;
    for (let i = c; i < P; i += <usize>C) {
      s1 += load<f64>(sF + (i << 3));
      s2 += load<f64>(qF + (i << 3));
    }
    store<f64>(sPat + (c << 3), s1);
    store<f64>(qPat + (c << 3), s2);
  }
  const differ = checkPattern32(x, rows, C, P, kPat, sPat, qPat, sF);
  for (let c: usize = 0; c < <usize>C; c++) {
    const o = out + c * <usize>outStride;
    const k = <f64>load<f32>(kPat + (c << 2));
    const s1 = load<f64>(sPat + (c << 3));
    const s2 = load<f64>(qPat + (c << 3));
    // Zero sums: constant (checkPattern32 read those about a shift under PROVEN_SHIFT), the bits
    // writePartial32 gives a constant block; or not (`differ`), summed again in float64.
    if (s1 == 0 && s2 == 0) {
      if ((differ >> <i32>c) & 1) writePartial32(o, <f64>rows, k, s1, NaN, x + (c << 2), rows, <usize>C << 2, 1);
      else writePartial(o, <f64>rows, k, 0, 0);
    } else {
      writePartial32(o, <f64>rows, k, s1, s2, x + (c << 2), rows, <usize>C << 2, 1);
    }
  }
}

/**
 * The channels (a bit each: C < 16) whose float32 sums are both zero about a shift under
 * PROVEN_SHIFT and that are not constant: their deviations squared to zero and cancelled
 * (common.ts, writePartial32), which only a read tells from a constant channel (a ReLU's dead
 * one). The run is read once, in order, with those channels' positions on in a mask per vector
 * of the period (`masks`, 4 bytes a position: sF's, whose sums are done with), and any value of
 * theirs that is not its shift turns one accumulator on; only then is each read apart
 * (allEqual32, a value a row). The values past the last whole period are summed in float64,
 * where a nonzero deviation has a nonzero square, so that those of a channel with zero sums are
 * its shift. Channel c's sums are at s1s + 8c and s2s + 8c.
 */
function checkPattern32(x: usize, rows: i32, C: i32, P: usize, kPat: usize, s1s: usize, s2s: usize, masks: usize): i32 {
  let check = 0;
  for (let c: usize = 0; c < <usize>C; c++) {
    if (unproven32(load<f64>(s1s + (c << 3)), load<f64>(s2s + (c << 3)), <f64>load<f32>(kPat + (c << 2)))) check |= 1 << <i32>c;
  }
  if (check == 0) return 0;
  for (let i: usize = 0; i < P; i++) store<i32>(masks + (i << 2), (check >> <i32>(i % <usize>C)) & 1 ? -1 : 0);
  const periods = <i32>((<usize>rows * <usize>C) / P);
  if (!maskedDiffer32(x, periods, P << 2, P, kPat, masks)) return 0;
  let differ = 0;
  for (let c: usize = 0; c < <usize>C; c++) {
    if ((check >> <i32>c) & 1 && !allEqual32(x + (c << 2), rows, <usize>C << 2, 1, load<f32>(kPat + (c << 2)))) differ |= 1 << <i32>c;
  }
  return differ;
}
