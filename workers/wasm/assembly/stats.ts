import { fold4, hsum, patternLength, promoteHigh, promoteLow, writePartial, writePartial32 } from './common';

// Statistics: a partial is (count, mean, m2) as f64, from shifted sums d = x - K with K the run's
// first value. float32 data are reduced in f32x4 lanes over a few vectors, then folded into f64x2.
//
// Rank 2 with few channels (channels-last images: C = 1, 2, 3, ...), where C is not a multiple of
// 4: the rows are one flat run in which channel c sits at every C-th value. Its pattern repeats
// every P = lcm(C, 4) values, V = P / 4 vectors, so lane l of vector j always holds channel
// (4j + l) % C: those V vectors are reduced with per-position shifts, and the positions are
// gathered into channels at the end (statsPattern32).

/** Adds the shifted sums of `len` float32 at `p` to acc[0..1] (s1) and acc[2..3] (s2) lanes. */
@inline function sums32(p: usize, len: i32, kv: v128, k: f32, acc: usize): void {
  let a1 = v128.load(acc);
  let a2 = v128.load(acc, 16);
  let t1: f64 = 0;
  let t2: f64 = 0;
  const end = p + (<usize>len << 2);
  while (p + 128 <= end) {
    const d0 = f32x4.sub(v128.load(p), kv);
    const d1 = f32x4.sub(v128.load(p, 16), kv);
    const d2 = f32x4.sub(v128.load(p, 32), kv);
    const d3 = f32x4.sub(v128.load(p, 48), kv);
    const d4 = f32x4.sub(v128.load(p, 64), kv);
    const d5 = f32x4.sub(v128.load(p, 80), kv);
    const d6 = f32x4.sub(v128.load(p, 96), kv);
    const d7 = f32x4.sub(v128.load(p, 112), kv);
    const s = f32x4.add(f32x4.add(f32x4.add(d0, d1), f32x4.add(d2, d3)), f32x4.add(f32x4.add(d4, d5), f32x4.add(d6, d7)));
    const q = f32x4.add(
      f32x4.add(f32x4.add(f32x4.mul(d0, d0), f32x4.mul(d1, d1)), f32x4.add(f32x4.mul(d2, d2), f32x4.mul(d3, d3))),
      f32x4.add(f32x4.add(f32x4.mul(d4, d4), f32x4.mul(d5, d5)), f32x4.add(f32x4.mul(d6, d6), f32x4.mul(d7, d7))),
    );
    a1 = f64x2.add(a1, f64x2.add(promoteLow(s), promoteHigh(s)));
    a2 = f64x2.add(a2, f64x2.add(promoteLow(q), promoteHigh(q)));
    p += 128;
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

/** Runs are read in turns of this many bytes per block (a multiple of every unrolled loop's step). */
const TURN_BYTES: usize = 1024;
/** Scratch per block of statsPlanes: s1 and s2 lanes (32 bytes), the f64 kernel's second pair (32). */
const BLOCK_ACC_BYTES: usize = 64;

/**
 * Partials of `blocks` blocks of the same shape: block i starts `i * blockStride` elements after x
 * and is `rows` runs of `len` float32, run r `r * rowStride` elements after its start; its partial
 * goes to out + i * outStride (bytes). `acc` holds 64 bytes a block.
 *
 * The blocks' runs are read in turns of 1 KiB, so that two streams are in flight: the blocks of a
 * channel lie a whole row of the tensor apart, and reading them one after another ran at 17-20 GB/s
 * on this project's machine where two in turns ran at 23-26 (29 in memory order). Three or four
 * streams ran at 12-15, and turns of 256 bytes lost to the loop overhead (bench notes in the
 * commit). A block's sums are the same, bit for bit, however many blocks share the call: sums32
 * carries its accumulators across turns.
 */
export function statsPlanes32(
  x: usize, blocks: i32, blockStride: i32, rows: i32, rowStride: i32, len: i32, out: usize, outStride: i32, acc: usize,
): void {
  const blockBytes = (<usize>blockStride) << 2;
  for (let i = 0; i < blocks; i++) {
    const a = acc + <usize>i * BLOCK_ACC_BYTES;
    v128.store(a, f64x2.splat(0));
    v128.store(a, f64x2.splat(0), 16);
  }
  const runBytes = (<usize>len) << 2;
  for (let r = 0; r < rows; r++) {
    const run = x + ((<usize>r * <usize>rowStride) << 2);
    let off: usize = 0;
    while (true) {
      const turn = min(TURN_BYTES, runBytes - off);
      for (let i = 0; i < blocks; i++) {
        const b = x + <usize>i * blockBytes;
        const k = load<f32>(b);
        sums32(run + <usize>i * blockBytes + off, <i32>(turn >> 2), f32x4.splat(k), k, acc + <usize>i * BLOCK_ACC_BYTES);
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
 * Partials of C channels over `rows` contiguous rows of C * S float32. `acc` holds rowScratchBytes(C)
 * (32 * C + 2048) bytes of scratch. Channel c's partial goes to out + c * outStride (bytes).
 */
export function statsRows32(x: usize, rows: i32, C: i32, S: i32, rowStride: i32, acc: usize, out: usize, outStride: i32): void {
  const rowBytes = (<usize>rowStride) << 2;
  if (S == 1) {
    // The pattern kernel reads the rows as one flat run: only for whole rows (no band of a row).
    if (C < 16 && (C & 3) != 0 && rowStride == C) statsPattern32(x, rows, C, acc, out, outStride);
    else statsColumns32(x, rows, C, rowStride, acc, out, outStride);
    return;
  }
  // Short runs: per (row, channel), SIMD along the run, folded into f64 per channel.
  // acc: s1, s2 per channel as f64 (16 bytes each), 16-byte aligned by the caller.
  for (let c = 0; c < C; c++) {
    v128.store(acc + (<usize>c << 5), f64x2.splat(0));
    v128.store(acc + (<usize>c << 5), f64x2.splat(0), 16);
  }
  for (let r = 0; r < rows; r++) {
    const row = x + <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const k = load<f32>(x + ((<usize>c * <usize>S) << 2));
      sums32(row + ((<usize>c * <usize>S) << 2), S, f32x4.splat(k), k, acc + (<usize>c << 5));
    }
  }
  const count = <f64>rows * <f64>S;
  for (let c = 0; c < C; c++) {
    const k = <f64>load<f32>(x + ((<usize>c * <usize>S) << 2));
    const a = acc + (<usize>c << 5);
    writePartial32(
      out + <usize>c * <usize>outStride, count, k, hsum(v128.load(a)), hsum(v128.load(a, 16)),
      x + ((<usize>c * <usize>S) << 2), rows, rowBytes, S,
    );
  }
}

/**
 * Rank-2 style rows (S = 1): channels in lanes. For each block of 16 channels (one cache line of
 * a row), up to 8 rows are summed in f32, in 8 independent accumulators (so the adds do not wait
 * on each other), then folded into f64: at most 8 roundings per lane between folds (16 measured
 * 2e-6 relative error in m2 with the shift 2 sd from the mean; 8 halves it). A whole line is used each time it is loaded: walking 4
 * channels down 16 rows 4 KB apart instead thrashed L1, whose sets those rows all share.
 */
function statsColumns32(x: usize, rows: i32, C: i32, rowStride: i32, acc: usize, out: usize, outStride: i32): void {
  const c16 = <usize>(C & ~15);
  const c4 = <usize>(C & ~3);
  const rowBytes = <usize>rowStride << 2;
  // acc layout (structure of arrays): K as f32 [C rounded up to 4], s1 f64 [same], s2 f64 [same].
  const cPad = <usize>((C + 3) & ~3);
  const kArr = acc;
  const s1Arr = acc + (cPad << 2);
  const s2Arr = s1Arr + (cPad << 3);
  for (let c: usize = 0; c < cPad; c++) {
    store<f32>(kArr + (c << 2), c < <usize>C ? load<f32>(x + (c << 2)) : 0);
    store<f64>(s1Arr + (c << 3), 0);
    store<f64>(s2Arr + (c << 3), 0);
  }
  let r = 0;
  while (r < rows) {
    const tile = min(8, rows - r);
    const base = x + <usize>r * rowBytes;
    for (let c: usize = 0; c < c16; c += 16) {
      const k0 = v128.load(kArr + (c << 2));
      const k1 = v128.load(kArr + (c << 2), 16);
      const k2 = v128.load(kArr + (c << 2), 32);
      const k3 = v128.load(kArr + (c << 2), 48);
      let s0 = f32x4.splat(0);
      let s1 = f32x4.splat(0);
      let s2 = f32x4.splat(0);
      let s3 = f32x4.splat(0);
      let q0 = f32x4.splat(0);
      let q1 = f32x4.splat(0);
      let q2 = f32x4.splat(0);
      let q3 = f32x4.splat(0);
      let p = base + (c << 2);
      for (let i = 0; i < tile; i++) {
        const d0 = f32x4.sub(v128.load(p), k0);
        const d1 = f32x4.sub(v128.load(p, 16), k1);
        const d2 = f32x4.sub(v128.load(p, 32), k2);
        const d3 = f32x4.sub(v128.load(p, 48), k3);
        s0 = f32x4.add(s0, d0);
        s1 = f32x4.add(s1, d1);
        s2 = f32x4.add(s2, d2);
        s3 = f32x4.add(s3, d3);
        q0 = f32x4.add(q0, f32x4.mul(d0, d0));
        q1 = f32x4.add(q1, f32x4.mul(d1, d1));
        q2 = f32x4.add(q2, f32x4.mul(d2, d2));
        q3 = f32x4.add(q3, f32x4.mul(d3, d3));
        p += rowBytes;
      }
      fold4(s1Arr + (c << 3), s0);
      fold4(s1Arr + (c << 3) + 32, s1);
      fold4(s1Arr + (c << 3) + 64, s2);
      fold4(s1Arr + (c << 3) + 96, s3);
      fold4(s2Arr + (c << 3), q0);
      fold4(s2Arr + (c << 3) + 32, q1);
      fold4(s2Arr + (c << 3) + 64, q2);
      fold4(s2Arr + (c << 3) + 96, q3);
    }
    for (let c = c16; c < c4; c += 4) {
      const kv = v128.load(kArr + (c << 2));
      let s = f32x4.splat(0);
      let q = f32x4.splat(0);
      let p = base + (c << 2);
      for (let i = 0; i < tile; i++) {
        const d = f32x4.sub(v128.load(p), kv);
        s = f32x4.add(s, d);
        q = f32x4.add(q, f32x4.mul(d, d));
        p += rowBytes;
      }
      fold4(s1Arr + (c << 3), s);
      fold4(s2Arr + (c << 3), q);
    }
    for (let c = c4; c < <usize>C; c++) {
      const k = load<f32>(kArr + (c << 2));
      let t1: f64 = 0;
      let t2: f64 = 0;
      for (let i = 0; i < tile; i++) {
        const d = <f64>(load<f32>(base + <usize>i * rowBytes + (c << 2)) - k);
        t1 += d;
        t2 += d * d;
      }
      store<f64>(s1Arr + (c << 3), load<f64>(s1Arr + (c << 3)) + t1);
      store<f64>(s2Arr + (c << 3), load<f64>(s2Arr + (c << 3)) + t2);
    }
    r += tile;
  }
  for (let c: usize = 0; c < <usize>C; c++) {
    writePartial32(
      out + c * <usize>outStride, <f64>rows, <f64>load<f32>(kArr + (c << 2)), load<f64>(s1Arr + (c << 3)), load<f64>(s2Arr + (c << 3)),
      x + (c << 2), rows, rowBytes, 1,
    );
  }
}

/**
 * Adds the shifted sums of `len` float64 at `p` to acc[0..15] (s1) and acc[16..31] (s2). A run read
 * in turns keeps the second accumulator pair at acc + 32 between turns (`carried`) and folds it in
 * on the run's `last` turn, so the sums are the same as for the run read at once.
 */
@inline function sums64(p: usize, len: i32, kv: v128, k: f64, acc: usize, carried: bool, last: bool): void {
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
      const turn = min(TURN_BYTES, runBytes - off);
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
    writePartial(out + <usize>i * <usize>outStride, count, load<f64>(x + <usize>i * blockBytes), hsum(v128.load(a)), hsum(v128.load(a, 16)));
  }
}

export function statsRows64(x: usize, rows: i32, C: i32, S: i32, rowStride: i32, acc: usize, out: usize, outStride: i32): void {
  const rowBytes = (<usize>rowStride) << 3;
  for (let c = 0; c < C; c++) {
    v128.store(acc + (<usize>c << 5), f64x2.splat(0));
    v128.store(acc + (<usize>c << 5), f64x2.splat(0), 16);
  }
  if (S == 1) {
    // Channels in lanes: s1/s2 of channels c, c+1 accumulate in acc[c] (s1 pair) and acc[c]+16.
    const c2 = C & ~1;
    for (let r = 0; r < rows; r++) {
      const row = x + <usize>r * rowBytes;
      for (let c = 0; c < c2; c += 2) {
        const a = acc + (<usize>c << 5);
        const d = f64x2.sub(v128.load(row + (<usize>c << 3)), v128.load(x + (<usize>c << 3)));
        v128.store(a, f64x2.add(v128.load(a), d));
        v128.store(a, f64x2.add(v128.load(a, 16), f64x2.mul(d, d)), 16);
      }
      if (c2 < C) {
        const a = acc + (<usize>c2 << 5);
        const d = load<f64>(row + (<usize>c2 << 3)) - load<f64>(x + (<usize>c2 << 3));
        store<f64>(a, load<f64>(a) + d);
        store<f64>(a, load<f64>(a, 16) + d * d, 16);
      }
    }
    for (let c = 0; c < C; c++) {
      // Pair slot of c's lane: the pair starts at the even channel; lane = c & 1.
      const a = acc + (<usize>(c & ~1) << 5) + (<usize>(c & 1) << 3);
      writePartial(out + <usize>c * <usize>outStride, <f64>rows, load<f64>(x + (<usize>c << 3)), load<f64>(a), load<f64>(a, 16));
    }
    return;
  }
  for (let r = 0; r < rows; r++) {
    const row = x + <usize>r * rowBytes;
    for (let c = 0; c < C; c++) {
      const k = load<f64>(x + ((<usize>c * <usize>S) << 3));
      sums64(row + ((<usize>c * <usize>S) << 3), S, f64x2.splat(k), k, acc + (<usize>c << 5), false, true);
    }
  }
  const count = <f64>rows * <f64>S;
  for (let c = 0; c < C; c++) {
    const a = acc + (<usize>c << 5);
    writePartial(out + <usize>c * <usize>outStride, count, load<f64>(x + ((<usize>c * <usize>S) << 3)), hsum(v128.load(a)), hsum(v128.load(a, 16)));
  }
}

/**
 * statsPattern32 with one vector a period: whole tiles of 8 periods summed as a tree in f32 lanes,
 * then folded. Returns the periods done (the rest is less than a tile).
 */
function pattern1(x: usize, periods: usize, kv: v128, sF: usize, qF: usize): usize {
  let p: usize = 0;
  for (; p + 8 <= periods; p += 8) {
    const b = x + (p << 4);
    const d0 = f32x4.sub(v128.load(b), kv);
    const d1 = f32x4.sub(v128.load(b, 16), kv);
    const d2 = f32x4.sub(v128.load(b, 32), kv);
    const d3 = f32x4.sub(v128.load(b, 48), kv);
    const d4 = f32x4.sub(v128.load(b, 64), kv);
    const d5 = f32x4.sub(v128.load(b, 80), kv);
    const d6 = f32x4.sub(v128.load(b, 96), kv);
    const d7 = f32x4.sub(v128.load(b, 112), kv);
    fold4(sF, f32x4.add(f32x4.add(f32x4.add(d0, d1), f32x4.add(d2, d3)), f32x4.add(f32x4.add(d4, d5), f32x4.add(d6, d7))));
    fold4(qF, f32x4.add(
      f32x4.add(f32x4.add(f32x4.mul(d0, d0), f32x4.mul(d1, d1)), f32x4.add(f32x4.mul(d2, d2), f32x4.mul(d3, d3))),
      f32x4.add(f32x4.add(f32x4.mul(d4, d4), f32x4.mul(d5, d5)), f32x4.add(f32x4.mul(d6, d6), f32x4.mul(d7, d7))),
    ));
  }
  return p;
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

function statsPattern32(x: usize, rows: i32, C: i32, acc: usize, out: usize, outStride: i32): void {
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
  for (let c: usize = 0; c < <usize>C; c++) {
    let s1: f64 = 0;
    let s2: f64 = 0;
    for (let i = c; i < P; i += <usize>C) {
      s1 += load<f64>(sF + (i << 3));
      s2 += load<f64>(qF + (i << 3));
    }
    writePartial32(out + c * <usize>outStride, <f64>rows, <f64>load<f32>(kPat + (c << 2)), s1, s2, x + (c << 2), rows, <usize>C << 2, 1);
  }
}
