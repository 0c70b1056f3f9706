import { floorOf, hiOf, isOn, norm32, norm32Plain, Plain, Relu, relu32, relu64, shiftOf } from './common';
import {
  IN_ORDER_MIN_ROW_BYTES, LANE_CHUNK, laneHalves32, laneQuarters32, laneRun32, laneTiles32, QUARTERS_MIN_ROW_BYTES,
} from './normalize-lanes';
import { normalizePattern32 } from './normalize-pattern';

// Normalization of float32: mean = mHi + mLo is split into two float32s and
// y = (x - mHi) * scale + (bias - mLo * scale), the second term folded in float64. So float32 data
// lose nothing to rounding the mean, and a constant channel gives exactly bias. Scalar tails use
// the same float32 operations as the lanes, so an element's result does not depend on where a
// vector boundary fell. Channels in lanes: normalize-lanes.ts; few interleaved channels:
// normalize-pattern.ts.

@inline function normRun32<R>(px: usize, py: usize, len: i32, mean: f64, scale: f64, bias: f64, floor: f32): void {
  normRunF32<R>(px, py, len, hiOf(mean), <f32>scale, shiftOf(mean, scale, bias), floor);
}

/** normRun32 with the float32 parameters already made: (x - mHi) * sc + bs. */
@inline export function normRunF32<R>(px: usize, py: usize, len: i32, mHi: f32, sc: f32, bs: f32, floor: f32): void {
  const fl = f32x4.splat(floor);
  const hi = f32x4.splat(mHi);
  const scv = f32x4.splat(sc);
  const bv = f32x4.splat(bs);
  const end = px + (<usize>len << 2);
  while (px + 64 <= end) {
    const v0 = v128.load(px);
    const v1 = v128.load(px, 16);
    const v2 = v128.load(px, 32);
    const v3 = v128.load(px, 48);
    if (isOn<R>()) {
      v128.store(py, norm32(v0, hi, scv, bv, fl));
      v128.store(py, norm32(v1, hi, scv, bv, fl), 16);
      v128.store(py, norm32(v2, hi, scv, bv, fl), 32);
      v128.store(py, norm32(v3, hi, scv, bv, fl), 48);
    } else {
      v128.store(py, norm32Plain(v0, hi, scv, bv));
      v128.store(py, norm32Plain(v1, hi, scv, bv), 16);
      v128.store(py, norm32Plain(v2, hi, scv, bv), 32);
      v128.store(py, norm32Plain(v3, hi, scv, bv), 48);
    }
    px += 64;
    py += 64;
  }
  while (px + 16 <= end) {
    v128.store(py, norm32(v128.load(px), hi, scv, bv, fl));
    px += 16;
    py += 16;
  }
  while (px < end) {
    store<f32>(py, relu32((load<f32>(px) - mHi) * sc + bs, floor));
    px += 4;
    py += 4;
  }
}

export function normalizePlanes32(
  x: usize, xRowStride: i32, y: usize, yRowStride: i32, rows: i32, len: i32, mean: f64, scale: f64, bias: f64, relu: i32,
): void {
  const floor = <f32>floorOf(relu);
  for (let r = 0; r < rows; r++) {
    const px = x + ((<usize>r * <usize>xRowStride) << 2);
    const py = y + ((<usize>r * <usize>yRowStride) << 2);
    // Two specialised copies of the loop: the ReLU test is made once, not per vector.
    if (relu) normRun32<Relu>(px, py, len, mean, scale, bias, floor);
    else normRun32<Plain>(px, py, len, mean, scale, bias, floor);
  }
}

@inline function normRun64(px: usize, py: usize, len: i32, mean: f64, scale: f64, bias: f64, floor: f64): void {
  const fl = f64x2.splat(floor);
  const m = f64x2.splat(mean);
  const sc = f64x2.splat(scale);
  const b = f64x2.splat(bias);
  const end = px + (<usize>len << 3);
  while (px + 32 <= end) {
    v128.store(py, f64x2.pmax(f64x2.add(f64x2.mul(f64x2.sub(v128.load(px), m), sc), b), fl));
    v128.store(py, f64x2.pmax(f64x2.add(f64x2.mul(f64x2.sub(v128.load(px, 16), m), sc), b), fl), 16);
    px += 32;
    py += 32;
  }
  while (px < end) {
    store<f64>(py, relu64((load<f64>(px) - mean) * scale + bias, floor));
    px += 8;
    py += 8;
  }
}

export function normalizePlanes64(
  x: usize, xRowStride: i32, y: usize, yRowStride: i32, rows: i32, len: i32, mean: f64, scale: f64, bias: f64, relu: i32,
): void {
  const floor = floorOf(relu);
  for (let r = 0; r < rows; r++) {
    normRun64(x + ((<usize>r * <usize>xRowStride) << 3), y + ((<usize>r * <usize>yRowStride) << 3), len, mean, scale, bias, floor);
  }
}

/**
 * Rows of C * S elements with channel c's (mean, scale, bias) as f64 at params + 32 * c.
 * `scratch` holds rowScratchBytes(C) (32 * C + 2048) bytes. With `rowParams` (0: none), channel
 * c's float32 (hi, scale, shift) are already at rowParams + 4 * (k * rowParamStride + c), made
 * once for the call by the merge or the prep, and are read from there instead of converted.
 * `inOrder` (channels in lanes, whole rows of at least IN_ORDER_MIN_ROW_BYTES): walk the rows two
 * at a time half the call apart (laneHalves32), for data that stream from memory; else four a
 * quarter apart, or 8 adjacent ones (see below).
 */
export function normalizeRows32(
  x: usize, y: usize, rows: i32, C: i32, S: i32, rowStride: i32, params: usize, scratch: usize, relu: i32,
  rowParams: usize, rowParamStride: i32, inOrder: i32,
): void {
  const rowBytes = (<usize>rowStride) << 2;
  const floor = <f32>floorOf(relu);
  const fl = f32x4.splat(floor);
  if (S != 1) {
    // Short runs (S elements a channel in each row): the float32 parameters are made once a call
    // (or read from rowParams, made once for the whole BatchNorm call), not once a run, and the
    // ReLU test is made once.
    const made = rowParams != 0;
    const hiA = made ? rowParams : scratch;
    const scA = hiA + (made ? <usize>rowParamStride << 2 : <usize>C << 2);
    const bA = scA + (made ? <usize>rowParamStride << 2 : <usize>C << 2);
    if (!made) normParams32(params, C, <usize>C, hiA);
    if (relu) shortRuns32<Relu>(x, y, rows, C, S, rowBytes, hiA, scA, bA, floor);
    else shortRuns32<Plain>(x, y, rows, C, S, rowBytes, hiA, scA, bA, floor);
    return;
  }
  if (patternRows(C) && rowStride == C) {
    normalizePattern32(x, y, rows, C, params, scratch, floor);
    return;
  }
  // Channels in lanes: the parameters as float32 structure of arrays (hi, scale, shift), read
  // along each row like the data. A band of a wide row (rowStride > C: a fused band's few rows,
  // up to 8192 channels) goes LANE_CHUNK channels at a time down its rows, so that the chunk's parameters
  // (12 bytes a channel) stay in L1 between rows; whole rows go four at a time (laneQuarters32),
  // or 8 at a time where they are short (laneTiles32).
  const made = rowParams != 0;
  const cPad = <usize>((C + 3) & ~3);
  const hiA = made ? rowParams : scratch;
  const scA = hiA + (made ? <usize>rowParamStride << 2 : cPad << 2);
  const bA = scA + (made ? <usize>rowParamStride << 2 : cPad << 2);
  if (!made) normParams32(params, C, cPad, hiA);
  if (rowStride == C) {
    if (inOrder && rowBytes >= IN_ORDER_MIN_ROW_BYTES) {
      if (relu) laneHalves32<Relu>(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor);
      else laneHalves32<Plain>(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor);
    } else if (rowBytes >= QUARTERS_MIN_ROW_BYTES) {
      if (relu) laneQuarters32<Relu>(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor);
      else laneQuarters32<Plain>(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor);
    } else if (relu) {
      laneTiles32<Relu>(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor);
    } else {
      laneTiles32<Plain>(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor);
    }
    return;
  }
  for (let c0: usize = 0; c0 < <usize>C; c0 += LANE_CHUNK) {
    const c1 = min(c0 + LANE_CHUNK, <usize>C);
    for (let r = 0; r < rows; r++) {
      laneRun32(x + <usize>r * rowBytes, y + <usize>r * rowBytes, c0, c1, hiA, scA, bA, fl, floor);
    }
  }
}

/**
 * Whether whole rows of C channels in lanes go through the pattern kernel (normalizePattern32),
 * which reads the float64 parameters at `params`: fewer than 16 channels, not a multiple of 4.
 */
@inline function patternRows(C: i32): bool {
  return C < 16 && (C & 3) != 0;
}

/**
 * Whether a float32 call's row kernels (normalizeRows32, statsNormRows32) read the float64
 * parameters at `params`: not where the merge or the prep writes the float32 row parameters
 * (`rowParams`), but for the pattern kernel's rows. Where they do not, mergeChannels and prepEval
 * leave them unwritten: 32 bytes a channel (and the reads of the lines they fill) that the wide
 * rows' per-channel steps spent for nothing.
 */
@inline export function rowsReadParams(C: i32, rowParams: usize): bool {
  return rowParams == 0 || patternRows(C);
}

export function normalizeRows64(
  x: usize, y: usize, rows: i32, C: i32, S: i32, rowStride: i32, params: usize, scratch: usize, relu: i32,
): void {
  const rowBytes = (<usize>rowStride) << 3;
  const floor = floorOf(relu);
  const fl = f64x2.splat(floor);
  if (S != 1) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < C; c++) {
        const p = params + (<usize>c << 5);
        const off = <usize>r * rowBytes + ((<usize>c * <usize>S) << 3);
        normRun64(x + off, y + off, S, load<f64>(p), load<f64>(p, 8), load<f64>(p, 16), floor);
      }
    }
    return;
  }
  const cPad = <usize>((C + 1) & ~1);
  const mA = scratch;
  const scA = mA + (cPad << 3);
  const bA = scA + (cPad << 3);
  for (let c: usize = 0; c < cPad; c++) {
    const p = params + ((c < <usize>C ? c : 0) << 5);
    store<f64>(mA + (c << 3), load<f64>(p));
    store<f64>(scA + (c << 3), load<f64>(p, 8));
    store<f64>(bA + (c << 3), load<f64>(p, 16));
  }
  const c2 = <usize>(C & ~1);
  for (let r = 0; r < rows; r++) {
    const px = x + <usize>r * rowBytes;
    const py = y + <usize>r * rowBytes;
    for (let c: usize = 0; c < c2; c += 2) {
      const o = c << 3;
      v128.store(py + o, f64x2.pmax(f64x2.add(f64x2.mul(f64x2.sub(v128.load(px + o), v128.load(mA + o)), v128.load(scA + o)), v128.load(bA + o)), fl));
    }
    if (c2 < <usize>C) {
      const o = c2 << 3;
      store<f64>(py + o, relu64((load<f64>(px + o) - load<f64>(mA + o)) * load<f64>(scA + o) + load<f64>(bA + o), floor));
    }
  }
}

/**
 * The float32 parameters (hi, scale, shift) of `positions` lanes, lane i holding channel i % C, as
 * three arrays from `hiA` (each `positions` long); from channel c's (mean, scale, bias) at
 * params + 32 * c.
 */
export function normParams32(params: usize, C: i32, positions: usize, hiA: usize): void {
  const scA = hiA + (positions << 2);
  const bA = scA + (positions << 2);
  // Channel c = i % C, counted rather than divided for: a 64-bit division a lane took a one-row
  // call with C = 1024 from 1.5 to 2.0 µs, and E's normalization makes 16 such calls.
  let c: usize = 0;
  for (let i: usize = 0; i < positions; i++) {
    const p = params + (c << 5);
    if (++c == <usize>C) c = 0;
    const mean = load<f64>(p);
    const scale = load<f64>(p, 8);
    store<f32>(hiA + (i << 2), hiOf(mean));
    store<f32>(scA + (i << 2), <f32>scale);
    store<f32>(bA + (i << 2), shiftOf(mean, scale, load<f64>(p, 16)));
  }
}

@inline function shortRuns32<R>(
  x: usize, y: usize, rows: i32, C: i32, S: i32, rowBytes: usize, hiA: usize, scA: usize, bA: usize, floor: f32,
): void {
  for (let r = 0; r < rows; r++) {
    for (let c: usize = 0; c < <usize>C; c++) {
      const off = <usize>r * rowBytes + ((c * <usize>S) << 2);
      normRunF32<R>(x + off, y + off, S, load<f32>(hiA + (c << 2)), load<f32>(scA + (c << 2)), load<f32>(bA + (c << 2)), floor);
    }
  }
}
