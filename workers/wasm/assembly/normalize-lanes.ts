import { isOn, norm32, norm32Plain, Off, On, relu32 } from './common';

// Normalization of channels in lanes (rank 2, channels-last with C >= 16 or a multiple of 4): a
// vector holds 4 channels of a row, so each takes its channels' float32 parameters (hi, scale,
// shift: normParams32's structure of arrays) beside it; normalizeRows32 (normalize.ts) picks the
// walk. Every walk computes an element with laneRun32's operations: the same bits.

/**
 * Channels of a band that the channels-in-lanes normalization takes down every row before the
 * next (a multiple of 16): 12 KiB of float32 parameters, which stay in L1 while the rows go by.
 * Measured against a row at a time (calls of the two builds alternated): eval of [64, 65536]
 * (bands of 2048) 1.76-2.18 -> 1.52-1.94 ms, [16, 262144] (bands of 8192) 3.2-4.2 -> 3.1-3.9.
 * Whole rows lost (eval of [4096, 1500] 1.49 -> 2.02 ms, [2048, 3000] 1.76 -> 1.91): they do not.
 * Since 2026-12-04 only a fused band's rows come this way: a float32 eval, or split's
 * normalization, over banded rows walks whole rows instead (normalizesRows, workers/protocol.ts),
 * which the blocks' runs a row apart could not match from memory.
 */
export const LANE_CHUNK: usize = 1024;

/**
 * Rows shorter than this keep their 8-row tiles (laneTiles32) where the call streams from memory
 * (Task.inOrder); longer ones go two at a time (laneHalves32). Measured for the walk a row at a
 * time in address order that laneHalves32 replaced, in order ÷ tiles speed from 32-64 MiB of x on
 * one thread, pinned (`IN_ORDER=B KERNELS=normalizeRows node bench/lanes-ab.mjs dist dist`, two
 * runs, 2026-12-02): 0.72-0.86 for 16, 20 and 24 channels, 0.83-1.03 for 8, 12 and 28, 0.95-1.06
 * for 32 (128 bytes), 1.24-1.78 for 40 and 48, 1.11-1.18 for 128; laneHalves32 ran 1.23-1.26x
 * that walk's speed for 32 channels and 1.14-1.24x for 48 (rows under 128 bytes not measured).
 */
export const IN_ORDER_MIN_ROW_BYTES: usize = 128;

/**
 * Rows of at least this many bytes go four at a time a quarter of the call apart (laneQuarters32);
 * shorter ones 8 adjacent rows at a time (laneTiles32), 8 of which lie within 2 KiB. Against the 8-row
 * tiles on the machine of 2026-12-02, one thread (`node bench/lanes-ab.mjs`, three runs): from
 * memory 1.31-1.51x the speed for 64 channels, 2.8-3.3x for 128 and 256, 2.1-2.2x for 512 and
 * 1.1-1.6x for 1024; in the L2 0.99-1.32x. For 16 and 32 channels the tiles were the faster
 * (1.1-1.3x, a check not kept).
 */
export const QUARTERS_MIN_ROW_BYTES: usize = 256;

/**
 * Whole rows of C channels in lanes, four rows at a time, a quarter of the call apart: rows r,
 * r + h, r + 2h and r + 3h (h = rows / 4) each walked in address order, a cache line's 16
 * channels of each in turn with those channels' parameters loaded once for the four (three loads
 * a line of data rather than twelve). Each of the four rows streams through its own pages in
 * order, which the hardware prefetchers follow, where 8 adjacent rows of 256 bytes or more walked
 * a line at a time down the tile (laneTiles32) go back and forth within a page. The four lines
 * are written out, not a loop of four over them. With that and the copies per R (common.ts), two
 * runs of `SIZES=8,64 KERNELS=normalizeRows node bench/lanes-ab.mjs <before>/dist dist
 * 64,256,1024` (one thread, 2026-12-04) gave 0.99-1.85x the speed, 1.13-1.31x on 1024 channels.
 * The rows past 4h and the channels past the last whole 16 go one row at a time (laneRun32). The
 * same operations on every element as laneRun32: the same bits.
 */
@inline export function laneQuarters32<R>(
  x: usize, y: usize, rows: i32, rowBytes: usize, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32,
): void {
  laneSpread32<R, On>(x, y, rows, rowBytes, C, hiA, scA, bA, fl, floor);
}

/**
 * Whole rows of C channels in lanes shorter than QUARTERS_MIN_ROW_BYTES, 8 rows at a time: a
 * block of 16 channels (a cache line of a row) keeps its parameters in registers down the tile's
 * rows, instead of loading them with every vector of data (three loads a vector). 8 such rows lie
 * within 2 KiB, which the tiles walk as one block. The same operations on every element as
 * laneRun32: the same bits. When E [4096, 1024] went this way (256 rows a call, on the first
 * machine), one thread, the kernel alone: 0.069-0.092 ms against 0.073-0.105 a row at a time;
 * eval at 2 threads 1.04-1.23 of the floor against 1.09-1.24 (medians 1.11 and 1.20, seven runs
 * of each build in turn).
 */
@inline export function laneTiles32<R>(
  x: usize, y: usize, rows: i32, rowBytes: usize, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32,
): void {
  const c16 = C & ~15;
  for (let r = 0; r < rows; r += 8) {
    const x0 = x + <usize>r * rowBytes;
    const y0 = y + <usize>r * rowBytes;
    const count = min(8, rows - r);
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
      let px = x0 + o;
      let py = y0 + o;
      for (let i = 0; i < count; i++) {
        laneLine32<R>(px, py, h0, h1, h2, h3, s0, s1, s2, s3, b0, b1, b2, b3, fl);
        px += rowBytes;
        py += rowBytes;
      }
    }
    if (c16 < C) {
      for (let i = 0; i < count; i++) {
        laneRun32(x0 + <usize>i * rowBytes, y0 + <usize>i * rowBytes, c16, C, hiA, scA, bA, fl, floor);
      }
    }
  }
}

/** A cache line of a row (16 channels) from px to py, with those channels' 12 parameter vectors. */
@inline function laneLine32<R>(
  px: usize, py: usize, h0: v128, h1: v128, h2: v128, h3: v128, s0: v128, s1: v128, s2: v128, s3: v128,
  b0: v128, b1: v128, b2: v128, b3: v128, fl: v128,
): void {
  if (isOn<R>()) {
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
}

/**
 * Whole rows of C channels in lanes, two at a time, half the call apart: rows r and r + h (h =
 * rows / 2) each walked in address order, a cache line's 16 channels of each in turn with those
 * channels' parameters loaded once for the two (1.5 loads a vector of data): the walk for data
 * that stream from memory (Task.inOrder), four streams where laneQuarters32 has eight. It replaced
 * a walk of one row at a time in address order, each vector of data with its three parameter
 * vectors (`IN_ORDER=AB SIZES=4,64 KERNELS=normalizeRows node bench/lanes-ab.mjs <before>/dist dist
 * 32,48,64,256,1024`, two runs, 2026-12-04: 1.04-1.26x its speed from 64 MiB, 1.19-1.58x from 4
 * MiB; E's normalization task at 2 threads 0.43-0.47 -> 0.36-0.40 ms, `KERNELS=1 node
 * bench/timeline.mjs E floor,train,eval`, three runs of each build in turn). Against the
 * quarters (`IN_ORDER=B`, the same command with SIZES=1,4,64 and 64,256,1024): 1.01-1.08x their
 * speed from 64 MiB, 0.51-0.94x from 1-4 MiB, where the quarters stay. The rows past 2h and the
 * channels past the last whole 16 go one row at a time (laneRun32). The same operations on every
 * element as laneRun32: the same bits.
 */
@inline export function laneHalves32<R>(
  x: usize, y: usize, rows: i32, rowBytes: usize, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32,
): void {
  laneSpread32<R, Off>(x, y, rows, rowBytes, C, hiA, scA, bA, fl, floor);
}

/**
 * The body of laneQuarters32 (F On: rows r, r + h, r + 2h and r + 3h, h = rows / 4) and of
 * laneHalves32 (F Off: rows r and r + h, h = rows / 2), a copy each (common.ts, On): for each
 * cache line of 16 channels, its 12 parameter vectors loaded once, then that line of each of the
 * rows, written out; then each row's channels past the last whole 16, and the rows past the last
 * whole group, one row at a time (laneRun32).
 */
@inline function laneSpread32<R, F>(
  x: usize, y: usize, rows: i32, rowBytes: usize, C: usize, hiA: usize, scA: usize, bA: usize, fl: v128, floor: f32,
): void {
  const ways: usize = isOn<F>() ? 4 : 2;
  const h = isOn<F>() ? rows >> 2 : rows >> 1;
  const q = <usize>h * rowBytes;
  const c16 = C & ~15;
  for (let r = 0; r < h; r++) {
    const x0 = x + <usize>r * rowBytes;
    const y0 = y + <usize>r * rowBytes;
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
      const px = x0 + o;
      const py = y0 + o;
      laneLine32<R>(px, py, h0, h1, h2, h3, s0, s1, s2, s3, b0, b1, b2, b3, fl);
      laneLine32<R>(px + q, py + q, h0, h1, h2, h3, s0, s1, s2, s3, b0, b1, b2, b3, fl);
      if (isOn<F>()) {
        laneLine32<R>(px + 2 * q, py + 2 * q, h0, h1, h2, h3, s0, s1, s2, s3, b0, b1, b2, b3, fl);
        laneLine32<R>(px + 3 * q, py + 3 * q, h0, h1, h2, h3, s0, s1, s2, s3, b0, b1, b2, b3, fl);
      }
    }
    if (c16 < C) {
      for (let i: usize = 0; i < ways; i++) laneRun32(x0 + i * q, y0 + i * q, c16, C, hiA, scA, bA, fl, floor);
    }
  }
  for (let r = h * <i32>ways; r < rows; r++) {
    laneRun32(x + <usize>r * rowBytes, y + <usize>r * rowBytes, 0, C, hiA, scA, bA, fl, floor);
  }
}

/** Channels [c0, c1) of one row (c0 a multiple of 16), channel c's parameters at index c. */
@inline export function laneRun32(
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
