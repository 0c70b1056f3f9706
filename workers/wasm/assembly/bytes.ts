import { norm32, relu32 } from './common';

// Eval normalization of 8-bit input (pixels as a decoder gives them) into float32: y = (x - hi) *
// sc + bs, with each channel's float32 parameters made by the caller as the float32 kernels' are
// (hiOf, shiftOf). A uint8 converts to float32 exactly, so each value goes through the same three
// float32 operations as a float32 input would, in the lanes and in the scalar tails alike.
// `floor`: 0 for a fused ReLU, -Infinity otherwise (norm32's pmax). At the end of the file, the
// statistics of 8-bit input: exact integer sums.

/** The four f32x4 of 16 bytes, in order: bytes 0-3, 4-7, 8-11, 12-15. */
@inline function quarter0(v: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v)));
}
@inline function quarter1(v: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(i16x8.extend_low_i8x16_u(v)));
}
@inline function quarter2(v: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(i16x8.extend_high_i8x16_u(v)));
}
@inline function quarter3(v: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(i16x8.extend_high_i8x16_u(v)));
}

/** One channel's run of `len` bytes at px into float32 at py. */
@inline function bytesRun(px: usize, py: usize, len: usize, hi: f32, sc: f32, bs: f32, floor: f32): void {
  const hv = f32x4.splat(hi);
  const sv = f32x4.splat(sc);
  const bv = f32x4.splat(bs);
  const fl = f32x4.splat(floor);
  const end = px + len;
  while (px + 16 <= end) {
    const v = v128.load(px);
    v128.store(py, norm32(quarter0(v), hv, sv, bv, fl));
    v128.store(py, norm32(quarter1(v), hv, sv, bv, fl), 16);
    v128.store(py, norm32(quarter2(v), hv, sv, bv, fl), 32);
    v128.store(py, norm32(quarter3(v), hv, sv, bv, fl), 48);
    px += 16;
    py += 64;
  }
  while (px < end) {
    store<f32>(py, relu32((<f32>load<u8>(px) - hi) * sc + bs, floor));
    px += 1;
    py += 4;
  }
}

/**
 * Channels first: elements [first, first + n) of an (N, C, S) tensor, bytes at x (element first's),
 * float32 out at y. `params`: hi, sc, bs of the C channels as three float32 arrays one after
 * another (12 * C bytes).
 */
export function bytesPlanes32(x: usize, y: usize, n: u32, first: u32, C: u32, S: u32, params: usize, floor: f32): void {
  const scA = params + (<usize>C << 2);
  const bA = scA + (<usize>C << 2);
  let i = first;
  const end = first + n;
  while (i < end) {
    const plane = i / S;
    const c = <usize>(plane % C);
    const stop = min(end, (plane + 1) * S);
    const len = <usize>(stop - i);
    bytesRun(x, y, len, load<f32>(params + (c << 2)), load<f32>(scA + (c << 2)), load<f32>(bA + (c << 2)), floor);
    x += len;
    y += len << 2;
    i = stop;
  }
}

/** The float32 output of the byte at x, at position k of the parameters' pattern. */
@inline function patternValue(x: usize, k: usize, hiA: usize, scA: usize, bA: usize, floor: f32): f32 {
  return relu32((<f32>load<u8>(x) - load<f32>(hiA + (k << 2))) * load<f32>(scA + (k << 2)) + load<f32>(bA + (k << 2)), floor);
}

/**
 * Channels last: n bytes at x from element `first` of a tensor whose channel repeats with period
 * P (a multiple of 16 and of C: lcm(C, 16)), float32 out at y. `params`: hi, sc, bs as three
 * float32 arrays of P values (the C channels' parameters repeated), one after another. Each 16
 * bytes take four vectors of each parameter from the pattern; a part that starts inside a period
 * goes scalar up to its end.
 */
export function bytesPattern32(x: usize, y: usize, n: u32, first: u32, P: u32, params: usize, floor: f32): void {
  const scA = params + (<usize>P << 2);
  const bA = scA + (<usize>P << 2);
  const fl = f32x4.splat(floor);
  const end = x + <usize>n;
  let k = <usize>(first % P);
  // To the end of a started period, one value at a time.
  while (k != 0 && x < end) {
    store<f32>(y, patternValue(x, k, params, scA, bA, floor));
    x += 1;
    y += 4;
    k = k + 1 == <usize>P ? 0 : k + 1;
  }
  // Whole periods, and then whole vectors of the last one, then single values.
  while (x + 16 <= end) {
    const o = k << 2;
    const v = v128.load(x);
    v128.store(y, norm32(quarter0(v), v128.load(params + o), v128.load(scA + o), v128.load(bA + o), fl));
    v128.store(y, norm32(quarter1(v), v128.load(params + o, 16), v128.load(scA + o, 16), v128.load(bA + o, 16), fl), 16);
    v128.store(y, norm32(quarter2(v), v128.load(params + o, 32), v128.load(scA + o, 32), v128.load(bA + o, 32), fl), 32);
    v128.store(y, norm32(quarter3(v), v128.load(params + o, 48), v128.load(scA + o, 48), v128.load(bA + o, 48), fl), 48);
    x += 16;
    y += 64;
    k += 16;
    if (k == <usize>P) k = 0;
  }
  while (x < end) {
    store<f32>(y, patternValue(x, k, params, scA, bA, floor));
    x += 1;
    y += 4;
    k += 1;
  }
}

/**
 * Channels last in, channels first out (an image decoder's HWC bytes to a model's CHW input, as
 * torchvision's ToTensor lays it out): `n` pixels from pixel `first` of an (N, S, C) tensor, their
 * bytes at x (pixel first's), into the (N, C, S) float32 tensor at y (its element 0). Each
 * channel's values of a pixel run within one image go to one run of its plane; `params` as for
 * bytesPlanes32 (hi, sc, bs of the C channels). Three and four channels (RGB, RGBA) take 16
 * pixels a step, each channel's bytes gathered from three or four vectors; other counts one value
 * at a time.
 */
export function bytesToPlanes32(x: usize, y: usize, n: u32, first: u32, C: u32, S: u32, params: usize, floor: f32): void {
  const scA = params + (<usize>C << 2);
  const bA = scA + (<usize>C << 2);
  let q = first;
  const end = first + n;
  while (q < end) {
    const image = q / S;
    const s = q - image * S;
    const stop = min(end, (image + 1) * S);
    const len = <usize>(stop - q);
    const plane = y + ((<usize>image * <usize>C * <usize>S + <usize>s) << 2);
    let done: usize = 0;
    if (C == 3) done = rgbToPlanes(x, plane, len, <usize>S << 2, params, scA, bA, floor);
    else if (C == 4) done = rgbaToPlanes(x, plane, len, <usize>S << 2, params, scA, bA, floor);
    for (let c: usize = 0; c < <usize>C; c++) {
      const hi = load<f32>(params + (c << 2));
      const sc = load<f32>(scA + (c << 2));
      const bs = load<f32>(bA + (c << 2));
      let px = x + done * <usize>C + c;
      let py = plane + ((c * <usize>S + done) << 2);
      for (let i = done; i < len; i++) {
        store<f32>(py, relu32((<f32>load<u8>(px) - hi) * sc + bs, floor));
        px += <usize>C;
        py += 4;
      }
    }
    x += len * <usize>C;
    q = stop;
  }
}

/**
 * bytesToPlanes32's three-channel steps: 16 pixels (48 bytes) at a time, each channel's 16 bytes
 * gathered from the three vectors by two shuffles, then normalized as bytesRun's lanes are.
 * `planeBytes` apart, the three output runs. Returns how many pixels it did (a multiple of 16).
 */
@inline function rgbToPlanes(x: usize, y: usize, len: usize, planeBytes: usize, hiA: usize, scA: usize, bA: usize, floor: f32): usize {
  const fl = f32x4.splat(floor);
  const h0 = f32x4.splat(load<f32>(hiA));
  const h1 = f32x4.splat(load<f32>(hiA, 4));
  const h2 = f32x4.splat(load<f32>(hiA, 8));
  const s0 = f32x4.splat(load<f32>(scA));
  const s1 = f32x4.splat(load<f32>(scA, 4));
  const s2 = f32x4.splat(load<f32>(scA, 8));
  const b0 = f32x4.splat(load<f32>(bA));
  const b1 = f32x4.splat(load<f32>(bA, 4));
  const b2 = f32x4.splat(load<f32>(bA, 8));
  let i: usize = 0;
  for (; i + 16 <= len; i += 16) {
    const p = x + i * 3;
    const v0 = v128.load(p);
    const v1 = v128.load(p, 16);
    const v2 = v128.load(p, 32);
    // Channel 0: bytes 0, 3, ..., 45; 1: 1, 4, ..., 46; 2: 2, 5, ..., 47. The first shuffle takes
    // what lies in v0 and v1 (lanes 16-31 are v1's), the second the rest from v2 (lanes 16-31).
    const r = i8x16.shuffle(i8x16.shuffle(v0, v1, 0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0, 0, 0, 0, 0), v2,
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 20, 23, 26, 29);
    const g = i8x16.shuffle(i8x16.shuffle(v0, v1, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 0, 0, 0, 0, 0), v2,
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 18, 21, 24, 27, 30);
    const b = i8x16.shuffle(i8x16.shuffle(v0, v1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0, 0, 0, 0, 0, 0), v2,
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 19, 22, 25, 28, 31);
    const o = y + (i << 2);
    storeRun(o, r, h0, s0, b0, fl);
    storeRun(o + planeBytes, g, h1, s1, b1, fl);
    storeRun(o + (planeBytes << 1), b, h2, s2, b2, fl);
  }
  return i;
}

/**
 * rgbToPlanes for four channels: 16 pixels (64 bytes) a step; channel c's bytes are bytes c, c + 4,
 * c + 8 and c + 12 of each vector, gathered from pairs of vectors and then from the pairs' halves.
 */
@inline function rgbaToPlanes(x: usize, y: usize, len: usize, planeBytes: usize, hiA: usize, scA: usize, bA: usize, floor: f32): usize {
  const fl = f32x4.splat(floor);
  let i: usize = 0;
  for (; i + 16 <= len; i += 16) {
    const p = x + (i << 2);
    const v0 = v128.load(p);
    const v1 = v128.load(p, 16);
    const v2 = v128.load(p, 32);
    const v3 = v128.load(p, 48);
    // Each pair's shuffle: lanes 0-3 and 8-11 hold channel 0 (or 2) of its two vectors, lanes 4-7
    // and 12-15 channel 1 (or 3).
    const a = i8x16.shuffle(v0, v1, 0, 4, 8, 12, 1, 5, 9, 13, 16, 20, 24, 28, 17, 21, 25, 29);
    const b = i8x16.shuffle(v2, v3, 0, 4, 8, 12, 1, 5, 9, 13, 16, 20, 24, 28, 17, 21, 25, 29);
    const c = i8x16.shuffle(v0, v1, 2, 6, 10, 14, 3, 7, 11, 15, 18, 22, 26, 30, 19, 23, 27, 31);
    const d = i8x16.shuffle(v2, v3, 2, 6, 10, 14, 3, 7, 11, 15, 18, 22, 26, 30, 19, 23, 27, 31);
    const o = y + (i << 2);
    storeRun(o, i8x16.shuffle(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27),
      f32x4.splat(load<f32>(hiA)), f32x4.splat(load<f32>(scA)), f32x4.splat(load<f32>(bA)), fl);
    storeRun(o + planeBytes, i8x16.shuffle(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31),
      f32x4.splat(load<f32>(hiA, 4)), f32x4.splat(load<f32>(scA, 4)), f32x4.splat(load<f32>(bA, 4)), fl);
    storeRun(o + planeBytes * 2, i8x16.shuffle(c, d, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27),
      f32x4.splat(load<f32>(hiA, 8)), f32x4.splat(load<f32>(scA, 8)), f32x4.splat(load<f32>(bA, 8)), fl);
    storeRun(o + planeBytes * 3, i8x16.shuffle(c, d, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31),
      f32x4.splat(load<f32>(hiA, 12)), f32x4.splat(load<f32>(scA, 12)), f32x4.splat(load<f32>(bA, 12)), fl);
  }
  return i;
}

/** The 16 float32 of 16 bytes at y: bytesRun's step. */
@inline function storeRun(y: usize, v: v128, hv: v128, sv: v128, bv: v128, fl: v128): void {
  v128.store(y, norm32(quarter0(v), hv, sv, bv, fl));
  v128.store(y, norm32(quarter1(v), hv, sv, bv, fl), 16);
  v128.store(y, norm32(quarter2(v), hv, sv, bv, fl), 32);
  v128.store(y, norm32(quarter3(v), hv, sv, bv, fl), 48);
}

// Statistics of 8-bit input: Σx and Σx² per channel, exact (integers, summed in i32 lanes and
// folded into f64 well before they could overflow; every total of up to 2^53 is exact in f64),
// so that they do not depend on how the input is split.

/** Vectors of 16 bytes summed in i32 lanes before a fold: a lane of squares gains at most 4 · 255² a vector. */
const FOLD_VECTORS: usize = 4096;

/** Σx and Σx² of `len` bytes at p, added to the f64 pair at acc. */
@inline function byteSums(p: usize, len: usize, acc: usize): void {
  let s1: f64 = 0;
  let s2: f64 = 0;
  const end = p + len;
  while (p + 16 <= end) {
    const stop = min(end, p + (FOLD_VECTORS << 4));
    let sv = i32x4.splat(0);
    let qv = i32x4.splat(0);
    while (p + 16 <= stop) {
      const v = v128.load(p);
      sv = i32x4.add(sv, i32x4.extadd_pairwise_i16x8_u(i16x8.extadd_pairwise_i8x16_u(v)));
      const lo = i16x8.extend_low_i8x16_u(v);
      const hi = i16x8.extend_high_i8x16_u(v);
      qv = i32x4.add(qv, i32x4.add(i32x4.dot_i16x8_s(lo, lo), i32x4.dot_i16x8_s(hi, hi)));
      p += 16;
    }
    s1 += <f64>(i32x4.extract_lane(sv, 0) + i32x4.extract_lane(sv, 1) + i32x4.extract_lane(sv, 2) + i32x4.extract_lane(sv, 3));
    s2 += <f64>i32x4.extract_lane(qv, 0) + <f64>i32x4.extract_lane(qv, 1) + <f64>i32x4.extract_lane(qv, 2) + <f64>i32x4.extract_lane(qv, 3);
  }
  while (p < end) {
    const v = <f64>load<u8>(p);
    s1 += v;
    s2 += v * v;
    p += 1;
  }
  store<f64>(acc, load<f64>(acc) + s1);
  store<f64>(acc, load<f64>(acc, 8) + s2, 8);
}

/**
 * Channels first: Σx and Σx² of elements [first, first + n) of an (N, C, S) tensor of bytes at x
 * (element first's), added to channel c's f64 pair at out + 16 * c.
 */
export function bytesSumsPlanes(x: usize, n: u32, first: u32, C: u32, S: u32, out: usize): void {
  let i = first;
  const end = first + n;
  while (i < end) {
    const plane = i / S;
    const c = <usize>(plane % C);
    const stop = min(end, (plane + 1) * S);
    const len = <usize>(stop - i);
    byteSums(x, len, out + (c << 4));
    x += len;
    i = stop;
  }
}

/**
 * Periods summed in integer lanes before they are folded into the f64 pairs: a position's u16 sum
 * gains at most 255 a period (65,535 / 255 = 257), its u32 sum of squares at most 255².
 */
const FOLD_PERIODS: u32 = 256;
/** Bytes of input (at most) that the phases of a period go over in turn, while they are in L1. */
const PHASE_BLOCK_BYTES: u32 = 8192;
/** Scratch a phase: its 16 positions' u16 sums (32 bytes), then their u32 sums of squares (64). */
const PHASE_BYTES: usize = 96;

/**
 * Channels last: Σx and Σx² of n bytes at x from element `first`, per position of the channels'
 * period P (a multiple of 16 and of C), added to position k's f64 pair at out + 16 * k. `scratch`:
 * 6 * P bytes (PHASE_BYTES for each 16 positions).
 */
export function bytesSumsPattern(x: usize, n: u32, first: u32, P: u32, out: usize, scratch: usize): void {
  const end = x + <usize>n;
  let k = <usize>(first % P);
  // To the end of a started period, one value at a time.
  while (k != 0 && x < end) {
    pairAdd(out + (k << 4), <f64>load<u8>(x));
    x += 1;
    k = k + 1 == <usize>P ? 0 : k + 1;
  }
  const periods = <u32>((end - x) / <usize>P);
  if (periods > 0) {
    periodSums(x, periods, P, out, scratch);
    x += <usize>periods * <usize>P;
  }
  // What is left of a last period (k is 0 here).
  while (x < end) {
    pairAdd(out + (k << 4), <f64>load<u8>(x));
    x += 1;
    k += 1;
  }
}

/**
 * bytesSumsPattern's whole periods: each period is P / 16 vectors, the phases; phase j's vector
 * holds positions 16j to 16j + 15 in its lanes. A block of periods (PHASE_BLOCK_BYTES, in L1) is
 * read once a phase, each phase summing its vector of every period into six registers (the 16
 * positions' sums in two u16x8, their squares in four u32x4) that stay there for the block; they
 * wait in `scratch` between blocks and are folded into the pairs every FOLD_PERIODS periods at
 * most. One thread's kernel sums 9.2-11.9 GB/s of RGB bytes (P = 48) and 12.0-12.3 of RGBA (16),
 * where the positions' sums kept in memory, added to vector by vector, took 5.3-6.5 and 4.3-4.6
 * (`node bench/bytes-sums.mjs`, both builds, two runs each).
 */
function periodSums(x: usize, periods: u32, P: u32, out: usize, scratch: usize): void {
  const phases = <usize>(P >> 4);
  memory.fill(scratch, 0, phases * PHASE_BYTES);
  const block = min(FOLD_PERIODS, max<u32>(1, PHASE_BLOCK_BYTES / P));
  let pending: u32 = 0;
  for (let done: u32 = 0; done < periods;) {
    const count = min(block, periods - done);
    if (pending + count > FOLD_PERIODS) {
      foldPhases(scratch, phases, out);
      pending = 0;
    }
    const at = x + <usize>done * <usize>P;
    for (let j: usize = 0; j < phases; j++) phaseSums(at + (j << 4), count, <usize>P, scratch + j * PHASE_BYTES);
    pending += count;
    done += count;
  }
  foldPhases(scratch, phases, out);
}

/** Adds the vectors at p, p + stride, ... (`count` of them) to the phase's sums at acc. */
@inline function phaseSums(p: usize, count: u32, stride: usize, acc: usize): void {
  let sLo = v128.load(acc);
  let sHi = v128.load(acc, 16);
  let q0 = v128.load(acc, 32);
  let q1 = v128.load(acc, 48);
  let q2 = v128.load(acc, 64);
  let q3 = v128.load(acc, 80);
  for (let i: u32 = 0; i < count; i++) {
    const v = v128.load(p);
    const lo = i16x8.extend_low_i8x16_u(v);
    const hi = i16x8.extend_high_i8x16_u(v);
    sLo = i16x8.add(sLo, lo);
    sHi = i16x8.add(sHi, hi);
    // 255² fits a u16 lane: the squares' product is exact, read unsigned.
    const lq = i16x8.mul(lo, lo);
    const hq = i16x8.mul(hi, hi);
    q0 = i32x4.add(q0, i32x4.extend_low_i16x8_u(lq));
    q1 = i32x4.add(q1, i32x4.extend_high_i16x8_u(lq));
    q2 = i32x4.add(q2, i32x4.extend_low_i16x8_u(hq));
    q3 = i32x4.add(q3, i32x4.extend_high_i16x8_u(hq));
    p += stride;
  }
  v128.store(acc, sLo);
  v128.store(acc, sHi, 16);
  v128.store(acc, q0, 32);
  v128.store(acc, q1, 48);
  v128.store(acc, q2, 64);
  v128.store(acc, q3, 80);
}

/** Adds v and v² to the f64 pair at p. */
@inline function pairAdd(p: usize, v: f64): void {
  store<f64>(p, load<f64>(p) + v);
  store<f64>(p, load<f64>(p, 8) + v * v, 8);
}

/** Moves the phases' integer sums into their positions' f64 pairs at out, and zeroes them. */
function foldPhases(scratch: usize, phases: usize, out: usize): void {
  for (let k: usize = 0; k < phases << 4; k++) {
    const acc = scratch + (k >> 4) * PHASE_BYTES;
    const lane = k & 15;
    const p = out + (k << 4);
    store<f64>(p, load<f64>(p) + <f64>load<u16>(acc + (lane << 1)));
    store<f64>(p, load<f64>(p, 8) + <f64>load<u32>(acc + 32 + (lane << 2)), 8);
  }
  memory.fill(scratch, 0, phases * PHASE_BYTES);
}
