import { floorOf, hiOf, hsum, isOn, Plain, promoteHigh, promoteLow, Relu, shiftOf, writePartial32, writePartial64 } from './common';
import { normRunF32 } from './normalize';

// Statistics: a partial is (count, mean, m2) as f64, from shifted sums d = x - K with K the run's
// first value. float32 data are reduced in f32x4 lanes over a few vectors, then folded into f64x2.
// This file: runs of one channel (planes); stats-rows.ts: rows of interleaved channels (rank 2
// and short planes); stats-pattern.ts: few interleaved channels.

/**
 * Bytes of float32 whose shifted sums sums32 adds in float32 lanes before it folds them into
 * float64: four trees of 8 vectors, each tree's sums added to the lanes' running ones. Folding
 * every tree took 32 float-pipe operations per 8 vectors (8 subtractions, 14 adds in the trees, 2
 * shuffles, 4 conversions and 4 float64 adds); this takes 24 and a quarter of the other 10.
 * TURN_BYTES is a multiple of it.
 */
export const GROUP_BYTES: usize = 512;

/**
 * Adds the shifted sums of `len` float32 at `p` to acc[0..1] (s1) and acc[2..3] (s2) lanes. A
 * group of GROUP_BYTES is summed in float32 lanes (trees of 8 vectors, added in turn), then
 * folded (the last one may be shorter, in steps of 128 bytes). Groups count from `p`, so a run
 * read in several calls that each start a multiple of GROUP_BYTES after its start has the sums
 * of the run read in one.
 */
@inline export function sums32(p: usize, len: i32, kv: v128, k: f32, acc: usize): void {
  let a1 = v128.load(acc);
  let a2 = v128.load(acc, 16);
  let t1: f64 = 0;
  let t2: f64 = 0;
  const end = p + (<usize>len << 2);
  while (p + 128 <= end) {
    const stop = p + min(GROUP_BYTES, (end - p) & ~(<usize>127));
    let s = f32x4.splat(0);
    let q = f32x4.splat(0);
    do {
      const d0 = f32x4.sub(v128.load(p), kv);
      const d1 = f32x4.sub(v128.load(p, 16), kv);
      const d2 = f32x4.sub(v128.load(p, 32), kv);
      const d3 = f32x4.sub(v128.load(p, 48), kv);
      const d4 = f32x4.sub(v128.load(p, 64), kv);
      const d5 = f32x4.sub(v128.load(p, 80), kv);
      const d6 = f32x4.sub(v128.load(p, 96), kv);
      const d7 = f32x4.sub(v128.load(p, 112), kv);
      s = f32x4.add(s, f32x4.add(f32x4.add(f32x4.add(d0, d1), f32x4.add(d2, d3)), f32x4.add(f32x4.add(d4, d5), f32x4.add(d6, d7))));
      q = f32x4.add(q, f32x4.add(
        f32x4.add(f32x4.add(f32x4.mul(d0, d0), f32x4.mul(d1, d1)), f32x4.add(f32x4.mul(d2, d2), f32x4.mul(d3, d3))),
        f32x4.add(f32x4.add(f32x4.mul(d4, d4), f32x4.mul(d5, d5)), f32x4.add(f32x4.mul(d6, d6), f32x4.mul(d7, d7))),
      ));
      p += 128;
    } while (p < stop);
    a1 = f64x2.add(a1, f64x2.add(promoteLow(s), promoteHigh(s)));
    a2 = f64x2.add(a2, f64x2.add(promoteLow(q), promoteHigh(q)));
  }
  while (p + 16 <= end) {
    const d = f32x4.sub(v128.load(p), kv);
    const q = f32x4.mul(d, d);
    a1 = f64x2.add(a1, f64x2.add(promoteLow(d), promoteHigh(d)));
    a2 = f64x2.add(a2, f64x2.add(promoteLow(q), promoteHigh(q)));
    p += 16;
  }
  while (p < end) {
    const d = <f64>(load<f32>(p) - k);
    t1 += d;
    t2 += d * d;
    p += 4;
  }
  v128.store(acc, f64x2.add(a1, f64x2(t1, 0)));
  v128.store(acc, f64x2.add(a2, f64x2(t2, 0)), 16);
}

/**
 * Runs are read in turns of this many bytes per block (a multiple of every unrolled loop's step, so
 * that the sums, hence the bits, do not depend on it). On the Intel machine A's fused training
 * (statsNormPlanes32) took 1.13-1.25 of the floor in 512-byte turns against 1.30-1.40 in 1 KiB
 * ones, 1.28-1.42 against 1.32-1.47 in 256-byte ones and 1.40-1.48 against 1.47-1.70 in 2-4 KiB
 * ones (the builds' calls alternated in one process, 3-8 runs a pair); 1 KiB was the AMD machine's.
 */
export const TURN_BYTES: usize = 512;
/** Scratch per block of statsPlanes: s1 and s2 lanes (32 bytes), the f64 kernel's second pair (32). */
const BLOCK_ACC_BYTES: usize = 64;

/**
 * Partials of `blocks` blocks of the same shape: block i starts `i * blockStride` elements after x
 * and is `rows` runs of `len` float32, run r `r * rowStride` elements after its start; its partial
 * goes to out + i * outStride (bytes). `acc` holds 64 bytes a block.
 *
 * The blocks' runs are read in turns of TURN_BYTES, so that two streams are in flight: the blocks of
 * a channel lie a whole row of the tensor apart, and reading them one after another ran at 17-20
 * GB/s on this project's first machine where two in turns of 1 KiB ran at 23-26 (29 in memory
 * order). Three or four streams ran at 12-15, and turns of 256 bytes lost to the loop overhead
 * there (bench notes in the commit). A lone block (blocks = 1) reads each run at once: there is
 * no other stream to take turns with, and the turns' overhead (the accumulators stored and
 * loaded again every 512 bytes) cost the fourth machine time: BlockWalker's statistics in memory
 * order (a block a call) took 0.94-0.97 of the time on A and 0.84-0.96 on C read at once rather
 * than in turns (bench/alternate.mjs planes, one run in each order). A block's sums are the
 * same, bit for bit, however many blocks share the call: sums32 carries its accumulators across
 * turns.
 */
export function statsPlanes32(
  x: usize, blocks: i32, blockStride: i32, rows: i32, rowStride: i32, len: i32, out: usize, outStride: i32, acc: usize,
): void {
  planes32<Plain>(x, blocks, blockStride, rows, rowStride, len, out, outStride, acc, false, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

/**
 * statsPlanes32, and in step with it y = (x - mean) * scale + bias (normalizePlanes32) over as
 * many blocks of the same shape of another channel: block i of those at nx + i * nxBlockStride
 * elements (y at ny + i * nyBlockStride), their runs nxRowStride (nyRowStride) apart. Each
 * turn of the statistics is followed by the same turn of the normalization, so that the loads of
 * the one and the stores of the other are in flight together: a fused training forward reduces a
 * channel while it normalizes the one before (A: 1.49-1.60 of the floor at two threads, against
 * 1.65-1.78 reducing and then normalizing each channel; alternating a block of each, one call a
 * block, lost). The partials and the outputs are those of the two kernels called apart, bit for
 * bit.
 */
export function statsNormPlanes32(
  x: usize, blocks: i32, blockStride: i32, rows: i32, rowStride: i32, len: i32, out: usize, outStride: i32, acc: usize,
  nx: usize, nxBlockStride: i32, nxRowStride: i32, ny: usize, nyBlockStride: i32, nyRowStride: i32,
  mean: f64, scale: f64, bias: f64, relu: i32,
): void {
  const mHi = hiOf(mean);
  const sc = <f32>scale;
  const bs = shiftOf(mean, scale, bias);
  // Two specialised copies of the loop, as in normalizePlanes32: the ReLU test is made once.
  if (relu) {
    planes32<Relu>(
      x, blocks, blockStride, rows, rowStride, len, out, outStride, acc,
      true, nx, nxBlockStride, nxRowStride, ny, nyBlockStride, nyRowStride, mHi, sc, bs,
    );
  } else {
    planes32<Plain>(
      x, blocks, blockStride, rows, rowStride, len, out, outStride, acc,
      true, nx, nxBlockStride, nxRowStride, ny, nyBlockStride, nyRowStride, mHi, sc, bs,
    );
  }
}

/**
 * The body of statsPlanes32 and, with `norm`, of statsNormPlanes32 (a constant: one copy each;
 * R, Relu or Plain, as in normRunF32).
 */
@inline function planes32<R>(
  x: usize, blocks: i32, blockStride: i32, rows: i32, rowStride: i32, len: i32, out: usize, outStride: i32, acc: usize,
  norm: bool, nx: usize, nxBlockStride: i32, nxRowStride: i32, ny: usize, nyBlockStride: i32, nyRowStride: i32,
  mHi: f32, sc: f32, bs: f32,
): void {
  const blockBytes = (<usize>blockStride) << 2;
  const nxBlockBytes = (<usize>nxBlockStride) << 2;
  const nyBlockBytes = (<usize>nyBlockStride) << 2;
  const floor = <f32>floorOf(isOn<R>() ? 1 : 0);
  for (let i = 0; i < blocks; i++) {
    const a = acc + <usize>i * BLOCK_ACC_BYTES;
    v128.store(a, f64x2.splat(0));
    v128.store(a, f64x2.splat(0), 16);
  }
  const runBytes = (<usize>len) << 2;
  for (let r = 0; r < rows; r++) {
    const run = x + ((<usize>r * <usize>rowStride) << 2);
    const nRun = nx + ((<usize>r * <usize>nxRowStride) << 2);
    const yRun = ny + ((<usize>r * <usize>nyRowStride) << 2);
    let off: usize = 0;
    while (true) {
      const turn = blocks == 1 && !norm ? runBytes - off : min(TURN_BYTES, runBytes - off);
      for (let i = 0; i < blocks; i++) {
        const b = x + <usize>i * blockBytes;
        const k = load<f32>(b);
        sums32(run + <usize>i * blockBytes + off, <i32>(turn >> 2), f32x4.splat(k), k, acc + <usize>i * BLOCK_ACC_BYTES);
        if (norm) normRunF32<R>(nRun + <usize>i * nxBlockBytes + off, yRun + <usize>i * nyBlockBytes + off, <i32>(turn >> 2), mHi, sc, bs, floor);
      }
      off += turn;
      if (off >= runBytes) break;
    }
  }
  const count = <f64>rows * <f64>len;
  for (let i = 0; i < blocks; i++) {
    const a = acc + <usize>i * BLOCK_ACC_BYTES;
    const k = <f64>load<f32>(x + <usize>i * blockBytes);
    writePartial32(
      out + <usize>i * <usize>outStride, count, k, hsum(v128.load(a)), hsum(v128.load(a, 16)),
      x + <usize>i * blockBytes, rows, (<usize>rowStride) << 2, len,
    );
  }
}

/**
 * statsPlanes32 (or, `wide` set, statsPlanes64) over `groups` groups of blocks, group q starting
 * `q * groupStride` elements after x, its partials from out + q * groupOutStride (bytes): one call
 * from JavaScript for many, as a call ends the kernel's stream of loads (2048 calls over 100 MB
 * took 4.7-4.9 ms against 3.5-3.7 for one). Each group's partials are those of its own call.
 */
export function statsPlaneGroups(
  wide: i32, x: usize, groups: i32, groupStride: i32, groupOutStride: i32,
  blocks: i32, blockStride: i32, rows: i32, rowStride: i32, len: i32, out: usize, outStride: i32, acc: usize,
): void {
  const bytes: usize = wide ? 8 : 4;
  for (let q = 0; q < groups; q++) {
    const xq = x + <usize>q * <usize>groupStride * bytes;
    const oq = out + <usize>q * <usize>groupOutStride;
    if (wide) statsPlanes64(xq, blocks, blockStride, rows, rowStride, len, oq, outStride, acc);
    else statsPlanes32(xq, blocks, blockStride, rows, rowStride, len, oq, outStride, acc);
  }
}


/**
 * Adds the shifted sums of `len` float64 at `p` to acc[0..15] (s1) and acc[16..31] (s2). A run read
 * in turns keeps the second accumulator pair at acc + 32 between turns (`carried`) and folds it in
 * on the run's `last` turn, so the sums are the same as for the run read at once.
 */
@inline export function sums64(p: usize, len: i32, kv: v128, k: f64, acc: usize, carried: bool, last: bool): void {
  let a1 = v128.load(acc);
  let a2 = v128.load(acc, 16);
  let b1 = carried ? v128.load(acc, 32) : f64x2.splat(0);
  let b2 = carried ? v128.load(acc, 48) : f64x2.splat(0);
  const end = p + (<usize>len << 3);
  while (p + 64 <= end) {
    const d0 = f64x2.sub(v128.load(p), kv);
    const d1 = f64x2.sub(v128.load(p, 16), kv);
    const d2 = f64x2.sub(v128.load(p, 32), kv);
    const d3 = f64x2.sub(v128.load(p, 48), kv);
    a1 = f64x2.add(a1, f64x2.add(d0, d1));
    b1 = f64x2.add(b1, f64x2.add(d2, d3));
    a2 = f64x2.add(a2, f64x2.add(f64x2.mul(d0, d0), f64x2.mul(d1, d1)));
    b2 = f64x2.add(b2, f64x2.add(f64x2.mul(d2, d2), f64x2.mul(d3, d3)));
    p += 64;
  }
  while (p + 16 <= end) {
    const d = f64x2.sub(v128.load(p), kv);
    a1 = f64x2.add(a1, d);
    a2 = f64x2.add(a2, f64x2.mul(d, d));
    p += 16;
  }
  if (p < end) {
    const d = load<f64>(p) - k;
    b1 = f64x2.add(b1, f64x2(d, 0));
    b2 = f64x2.add(b2, f64x2(d * d, 0));
  }
  if (last) {
    v128.store(acc, f64x2.add(a1, b1));
    v128.store(acc, f64x2.add(a2, b2), 16);
  } else {
    v128.store(acc, a1);
    v128.store(acc, a2, 16);
    v128.store(acc, b1, 32);
    v128.store(acc, b2, 48);
  }
}

/** statsPlanes32 for float64 data. sums64's second accumulator pair lives at acc + 32 within a run. */
export function statsPlanes64(
  x: usize, blocks: i32, blockStride: i32, rows: i32, rowStride: i32, len: i32, out: usize, outStride: i32, acc: usize,
): void {
  const blockBytes = (<usize>blockStride) << 3;
  for (let i = 0; i < blocks; i++) {
    const a = acc + <usize>i * BLOCK_ACC_BYTES;
    v128.store(a, f64x2.splat(0));
    v128.store(a, f64x2.splat(0), 16);
  }
  const runBytes = (<usize>len) << 3;
  for (let r = 0; r < rows; r++) {
    const run = x + ((<usize>r * <usize>rowStride) << 3);
    for (let i = 0; i < blocks; i++) {
      const a = acc + <usize>i * BLOCK_ACC_BYTES;
      v128.store(a, f64x2.splat(0), 32);
      v128.store(a, f64x2.splat(0), 48);
    }
    let off: usize = 0;
    while (true) {
      const turn = blocks == 1 ? runBytes - off : min(TURN_BYTES, runBytes - off);
      const last = off + turn >= runBytes;
      for (let i = 0; i < blocks; i++) {
        const k = load<f64>(x + <usize>i * blockBytes);
        sums64(run + <usize>i * blockBytes + off, <i32>(turn >> 3), f64x2.splat(k), k, acc + <usize>i * BLOCK_ACC_BYTES, true, last);
      }
      off += turn;
      if (last) break;
    }
  }
  const count = <f64>rows * <f64>len;
  for (let i = 0; i < blocks; i++) {
    const a = acc + <usize>i * BLOCK_ACC_BYTES;
    writePartial64(
      out + <usize>i * <usize>outStride, count, load<f64>(x + <usize>i * blockBytes), hsum(v128.load(a)), hsum(v128.load(a, 16)),
      x + <usize>i * blockBytes, rows, (<usize>rowStride) << 3, len,
    );
  }
}
