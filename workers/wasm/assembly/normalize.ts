import { floorOf, hiOf, norm32, norm32Plain, patternLength, relu32, relu64, shiftOf } from './common';

// Normalization of float32: mean = mHi + mLo is split into two float32s and
// y = (x - mHi) * scale + (bias - mLo * scale), the second term folded in float64. So float32 data
// lose nothing to rounding the mean, and a constant channel gives exactly bias. Scalar tails use
// the same float32 operations as the lanes, so an element's result does not depend on where a
// vector boundary fell. Few interleaved channels: see stats.ts (normalizePattern32).

@inline function normRun32(px: usize, py: usize, len: i32, mean: f64, scale: f64, bias: f64, floor: f32, relu: bool): void {
  normRunF32(px, py, len, hiOf(mean), <f32>scale, shiftOf(mean, scale, bias), floor, relu);
}

/** normRun32 with the float32 parameters already made: (x - mHi) * sc + bs. */
@inline export function normRunF32(px: usize, py: usize, len: i32, mHi: f32, sc: f32, bs: f32, floor: f32, relu: bool): void {
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
    if (relu) {
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
    if (relu) normRun32(px, py, len, mean, scale, bias, floor, true);
    else normRun32(px, py, len, mean, scale, bias, floor, false);
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
 * `inOrder` (channels in lanes, whole rows of at least IN_ORDER_MIN_ROW_BYTES): walk the rows in
 * address order, one at a time (laneRows32), for data that stream from memory; else several rows
 * go together (see below).
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
    if (relu) shortRuns32(x, y, rows, C, S, rowBytes, hiA, scA, bA, floor, true);
    else shortRuns32(x, y, rows, C, S, rowBytes, hiA, scA, bA, floor, false);
    return;
  }
  if (C < 16 && (C & 3) != 0 && rowStride == C) {
    normalizePattern32(x, y, rows, C, params, scratch, floor);
    return;
  }
  // Channels in lanes: the parameters as float32 structure of arrays (hi, scale, shift), read
  // along each row like the data. A band of a wide row (rowStride > C: few rows, up to 8192
  // channels) goes LANE_CHUNK channels at a time down its rows, so that the chunk's parameters
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
      if (relu) laneRows32(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor, true);
      else laneRows32(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor, false);
    } else if (rowBytes >= QUARTERS_MIN_ROW_BYTES) {
      if (relu) laneQuarters32(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor, true);
      else laneQuarters32(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor, false);
    } else if (relu) {
      laneTiles32(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor, true);
    } else {
      laneTiles32(x, y, rows, rowBytes, <usize>C, hiA, scA, bA, fl, floor, false);
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
 * Channels of a band that the channels-in-lanes normalization takes down every row before the
 * next (a multiple of 16): 12 KiB of float32 parameters, which stay in L1 while the rows go by.
 * Measured against a row at a time (calls of the two builds alternated): eval of [64, 65536]
 * (bands of 2048) 1.76-2.18 -> 1.52-1.94 ms, [16, 262144] (bands of 8192) 3.2-4.2 -> 3.1-3.9.
 * Whole rows lost (eval of [4096, 1500] 1.49 -> 2.02 ms, [2048, 3000] 1.76 -> 1.91): they do not.
 */
const LANE_CHUNK: usize = 1024;

/**
 * Rows shorter than this keep their 8-row tiles (laneTiles32) where the call asks for the address
 * order: in order ÷ tiles speed from 32-64 MiB of x on one thread, pinned (`IN_ORDER=B
 * KERNELS=normalizeRows node bench/lanes-ab.mjs dist dist`, two runs, 2026-12-02): 0.72-0.86 for
 * 16, 20 and 24 channels, 0.83-1.03 for 8, 12 and 28, 0.95-1.06 for 32 (128 bytes), 1.24-1.78
 * for 40 and 48, 1.11-1.18 for 128.
 */
const IN_ORDER_MIN_ROW_BYTES: usize = 128;

/**
 * Rows of at least this many bytes go four at a time a quarter of the call apart (laneQuarters32);
 * shorter ones 8 adjacent rows at a time (laneTiles32), 8 of which lie within 2 KiB. Against the 8-row
 * tiles on the machine of 2026-12-02, one thread (`node bench/lanes-ab.mjs`, three runs): from
 * memory 1.31-1.51x the speed for 64 channels, 2.8-3.3x for 128 and 256, 2.1-2.2x for 512 and
 * 1.1-1.6x for 1024; in the L2 0.99-1.32x. For 16 and 32 channels the tiles were the faster
 * (1.1-1.3x, a check not kept).
 */
const QUARTERS_MIN_ROW_BYTES: usize = 256;

/**
 * Whole rows of C channels in lanes, four rows at a time, a quarter of the call apart: rows r,
 * r + h, r + 2h and r + 3h (h = rows / 4) each walked in address order, a cache line's 16
 * channels of each in turn with those channels' parameters loaded once for the four (three loads
 * a line of data rather than twelve), and the ReLU test made once a call. Each of the four rows
 * streams through its own pages in order, which the hardware prefetchers follow, where 8 adjacent
 * rows of 256 bytes or more walked a line at a time down the tile (laneTiles32) go back and forth
 * within a page. The rows past 4h and the channels past the last whole 16 go one row at a time
 * (laneRun32). The same operations on every element as laneRun32: the same bits.
 */
@inline function laneQuarters32(
  x: usize, y: usize, rows: i32, rowBytes: usize, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32, relu: bool,
): void {
  const h = rows >> 2;
  const quarter = <usize>h * rowBytes;
  for (let r = 0; r < h; r++) {
    laneGroup32(x + <usize>r * rowBytes, y + <usize>r * rowBytes, quarter, 4, C, hiA, scA, bA, fl, floor, relu);
  }
  for (let r = h << 2; r < rows; r++) {
    laneRun32(x + <usize>r * rowBytes, y + <usize>r * rowBytes, 0, C, hiA, scA, bA, fl, floor);
  }
}

/**
 * Whole rows of C channels in lanes shorter than QUARTERS_MIN_ROW_BYTES, 8 rows at a time: a
 * block of 16 channels (a cache line of a row) keeps its parameters in registers down the tile's
 * rows, instead of loading them with every vector of data (three loads a vector), and the ReLU
 * test is made once a call. 8 such rows lie within 2 KiB, which the tiles walk as one block. The
 * same operations on every element as laneRun32: the same bits. When E [4096, 1024] went this way
 * (256 rows a call, on the first machine), one thread, the kernel alone: 0.069-0.092 ms against
 * 0.073-0.105 a row at a time; eval at 2 threads 1.04-1.23 of the floor against 1.09-1.24
 * (medians 1.11 and 1.20, seven runs of each build in turn).
 */
@inline function laneTiles32(
  x: usize, y: usize, rows: i32, rowBytes: usize, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32, relu: bool,
): void {
  for (let r = 0; r < rows; r += 8) {
    laneGroup32(x + <usize>r * rowBytes, y + <usize>r * rowBytes, rowBytes, min(8, rows - r), C, hiA, scA, bA, fl, floor, relu);
  }
}

/**
 * `count` rows `stride` bytes apart from x and y, the rows of a tile (laneTiles32) or of a step of
 * the quarters (laneQuarters32): for each cache line of 16 channels, its 12 parameter vectors
 * loaded once, then that line of every row; then the channels past the last whole 16 of each row
 * (laneRun32).
 */
@inline function laneGroup32(
  x: usize, y: usize, stride: usize, count: i32, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32, relu: bool,
): void {
  const c16 = C & ~15;
  for (let o: usize = 0; o < c16 << 2; o += 64) {
    const h0 = v128.load(hiA + o);
    const h1 = v128.load(hiA + o, 16);
    const h2 = v128.load(hiA + o, 32);
    const h3 = v128.load(hiA + o, 48);
    const s0 = v128.load(scA + o);
    const s1 = v128.load(scA + o, 16);
    const s2 = v128.load(scA + o, 32);
    const s3 = v128.load(scA + o, 48);
    const b0 = v128.load(bA + o);
    const b1 = v128.load(bA + o, 16);
    const b2 = v128.load(bA + o, 32);
    const b3 = v128.load(bA + o, 48);
    let px = x + o;
    let py = y + o;
    for (let i = 0; i < count; i++) {
      if (relu) {
        v128.store(py, norm32(v128.load(px), h0, s0, b0, fl));
        v128.store(py, norm32(v128.load(px, 16), h1, s1, b1, fl), 16);
        v128.store(py, norm32(v128.load(px, 32), h2, s2, b2, fl), 32);
        v128.store(py, norm32(v128.load(px, 48), h3, s3, b3, fl), 48);
      } else {
        v128.store(py, norm32Plain(v128.load(px), h0, s0, b0));
        v128.store(py, norm32Plain(v128.load(px, 16), h1, s1, b1), 16);
        v128.store(py, norm32Plain(v128.load(px, 32), h2, s2, b2), 32);
        v128.store(py, norm32Plain(v128.load(px, 48), h3, s3, b3), 48);
      }
      px += stride;
      py += stride;
    }
  }
  if (c16 < C) {
    for (let i = 0; i < count; i++) laneRun32(x + <usize>i * stride, y + <usize>i * stride, c16, C, hiA, scA, bA, fl, floor);
  }
}

/**
 * Whole rows of C channels in lanes in address order, a row at a time, each vector of data with
 * its channels' three parameter vectors (from L1), the ReLU test made once a call: the order of
 * the floor's pass, for data that stream from memory. In cache the rows that go together
 * (laneQuarters32, laneTiles32) load a quarter or an eighth as many parameters and win; from
 * memory this walk does. Against them on one thread, pinned (`IN_ORDER=B KERNELS=normalizeRows
 * SIZES=1,4,16,32,64 node bench/lanes-ab.mjs dist dist`, three runs, 2026-12-02): from 32-64 MiB
 * of x 0.95-1.14x the speed for 64 channels, 1.09-1.20x for 256 and 1.09-1.22x for 1024 (28-34
 * GB/s, about the floor's speed from memory), at 16 MiB 0.98-1.11x, at 1-4 MiB 0.56-1.09x. The
 * same operations on every element as laneRun32: the same bits.
 */
@inline function laneRows32(
  x: usize, y: usize, rows: i32, rowBytes: usize, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32, relu: bool,
): void {
  const c16 = C & ~15;
  for (let r = 0; r < rows; r++) {
    const px = x + <usize>r * rowBytes;
    const py = y + <usize>r * rowBytes;
    for (let o: usize = 0; o < c16 << 2; o += 64) {
      if (relu) {
        v128.store(py + o, norm32(v128.load(px + o), v128.load(hiA + o), v128.load(scA + o), v128.load(bA + o), fl));
        v128.store(py + o, norm32(v128.load(px + o, 16), v128.load(hiA + o, 16), v128.load(scA + o, 16), v128.load(bA + o, 16), fl), 16);
        v128.store(py + o, norm32(v128.load(px + o, 32), v128.load(hiA + o, 32), v128.load(scA + o, 32), v128.load(bA + o, 32), fl), 32);
        v128.store(py + o, norm32(v128.load(px + o, 48), v128.load(hiA + o, 48), v128.load(scA + o, 48), v128.load(bA + o, 48), fl), 48);
      } else {
        v128.store(py + o, norm32Plain(v128.load(px + o), v128.load(hiA + o), v128.load(scA + o), v128.load(bA + o)));
        v128.store(py + o, norm32Plain(v128.load(px + o, 16), v128.load(hiA + o, 16), v128.load(scA + o, 16), v128.load(bA + o, 16)), 16);
        v128.store(py + o, norm32Plain(v128.load(px + o, 32), v128.load(hiA + o, 32), v128.load(scA + o, 32), v128.load(bA + o, 32)), 32);
        v128.store(py + o, norm32Plain(v128.load(px + o, 48), v128.load(hiA + o, 48), v128.load(scA + o, 48), v128.load(bA + o, 48)), 48);
      }
    }
    if (c16 < C) laneRun32(px, py, c16, C, hiA, scA, bA, fl, floor);
  }
}

/** Channels [c0, c1) of one row (c0 a multiple of 16), channel c's parameters at index c. */
@inline function laneRun32(
  px: usize, py: usize, c0: usize, c1: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32,
): void {
  const c16 = c0 + ((c1 - c0) & ~15);
  const c4 = c0 + ((c1 - c0) & ~3);
  let c = c0;
  for (; c < c16; c += 16) {
    const o = c << 2;
    v128.store(py + o, norm32(v128.load(px + o), v128.load(hiA + o), v128.load(scA + o), v128.load(bA + o), fl));
    v128.store(py + o, norm32(v128.load(px + o, 16), v128.load(hiA + o, 16), v128.load(scA + o, 16), v128.load(bA + o, 16), fl), 16);
    v128.store(py + o, norm32(v128.load(px + o, 32), v128.load(hiA + o, 32), v128.load(scA + o, 32), v128.load(bA + o, 32), fl), 32);
    v128.store(py + o, norm32(v128.load(px + o, 48), v128.load(hiA + o, 48), v128.load(scA + o, 48), v128.load(bA + o, 48), fl), 48);
  }
  for (; c < c4; c += 4) {
    const o = c << 2;
    v128.store(py + o, norm32(v128.load(px + o), v128.load(hiA + o), v128.load(scA + o), v128.load(bA + o), fl));
  }
  for (; c < c1; c++) {
    const o = c << 2;
    store<f32>(py + o, relu32((load<f32>(px + o) - load<f32>(hiA + o)) * load<f32>(scA + o) + load<f32>(bA + o), floor));
  }
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

/** normalizePattern32 with one vector a period, four periods an iteration. Returns the periods done. */
function patternNorm1(x: usize, y: usize, periods: usize, hiA: usize, scA: usize, bA: usize, fl: v128): usize {
  const h = v128.load(hiA);
  const s = v128.load(scA);
  const b = v128.load(bA);
  let p: usize = 0;
  for (; p + 4 <= periods; p += 4) {
    const o = p << 4;
    v128.store(y + o, norm32(v128.load(x + o), h, s, b, fl));
    v128.store(y + o, norm32(v128.load(x + o, 16), h, s, b, fl), 16);
    v128.store(y + o, norm32(v128.load(x + o, 32), h, s, b, fl), 32);
    v128.store(y + o, norm32(v128.load(x + o, 48), h, s, b, fl), 48);
  }
  return p;
}

/** normalizePattern32 with three vectors a period. Returns the periods done. */
function patternNorm3(x: usize, y: usize, periods: usize, hiA: usize, scA: usize, bA: usize, fl: v128): usize {
  const h0 = v128.load(hiA);
  const h1 = v128.load(hiA, 16);
  const h2 = v128.load(hiA, 32);
  const s0 = v128.load(scA);
  const s1 = v128.load(scA, 16);
  const s2 = v128.load(scA, 32);
  const b0 = v128.load(bA);
  const b1 = v128.load(bA, 16);
  const b2 = v128.load(bA, 32);
  const end = (periods * 12) << 2;
  for (let o: usize = 0; o < end; o += 48) {
    v128.store(y + o, norm32(v128.load(x + o), h0, s0, b0, fl));
    v128.store(y + o, norm32(v128.load(x + o, 16), h1, s1, b1, fl), 16);
    v128.store(y + o, norm32(v128.load(x + o, 32), h2, s2, b2, fl), 32);
  }
  return periods;
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

@inline function shortRuns32(
  x: usize, y: usize, rows: i32, C: i32, S: i32, rowBytes: usize, hiA: usize, scA: usize, bA: usize, floor: f32, relu: bool,
): void {
  for (let r = 0; r < rows; r++) {
    for (let c: usize = 0; c < <usize>C; c++) {
      const off = <usize>r * rowBytes + ((c * <usize>S) << 2);
      normRunF32(x + off, y + off, S, load<f32>(hiA + (c << 2)), load<f32>(scA + (c << 2)), load<f32>(bA + (c << 2)), floor, relu);
    }
  }
}

function normalizePattern32(x: usize, y: usize, rows: i32, C: i32, params: usize, scratch: usize, floor: f32): void {
  const P = <usize>patternLength(C);
  const V = P >> 2;
  const total = <usize>rows * <usize>C;
  const hiA = scratch;
  const scA = hiA + (P << 2);
  const bA = scA + (P << 2);
  normParams32(params, C, P, hiA);
  const fl = f32x4.splat(floor);
  const periods = total / P;
  // One and three vectors a period keep their parameters in registers (loaded from memory, each
  // vector took four loads: 2.4-3.3x the streaming pass's time in cache).
  let first: usize = 0;
  if (V == 1) first = patternNorm1(x, y, periods, hiA, scA, bA, fl);
  else if (V == 3) first = patternNorm3(x, y, periods, hiA, scA, bA, fl);
  for (let p: usize = first; p < periods; p++) {
    const o = (p * P) << 2;
    for (let j: usize = 0; j < V; j++) {
      const k = j << 4;
      v128.store(y + o + k, norm32(v128.load(x + o + k), v128.load(hiA + k), v128.load(scA + k), v128.load(bA + k), fl));
    }
  }
  for (let e = periods * P; e < total; e++) {
    const k = (e % P) << 2;
    store<f32>(y + (e << 2), relu32((load<f32>(x + (e << 2)) - load<f32>(hiA + k)) * load<f32>(scA + k) + load<f32>(bA + k), floor));
  }
}
