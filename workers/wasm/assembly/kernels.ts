// bnpool's WebAssembly SIMD kernels, in AssemblyScript.
//
// Contract (shared with workers/kernels/kernel.ts): pointers are byte offsets into the imported
// shared memory, strides are in elements. The kernels allocate nothing and hold no static data,
// so one compiled module is instantiated by every worker over the same memory (AssemblyScript
// issue 921: instances of a module write their data segments to the same addresses).
//
// Statistics: a partial is (count, mean, m2) as f64. Shifted sums d = x - K, K the run's first
// value. float32 data are reduced in f32x4 lanes over at most 8 vectors (a tree, so each lane sum
// carries at most 3 roundings), then folded into f64x2 accumulators: float32 speed, float64
// accuracy (design notes: "folding float32 SIMD lanes into float64 every ~1024 elements keeps the
// accuracy"; we fold every 32). float64 data are reduced in f64x2 lanes directly.
//
// Normalization of float32: mean = mHi + mLo is split into two float32s and
// y = (x - mHi) * scale + (bias - mLo * scale), the second term folded in float64. So float32
// data lose nothing to rounding the mean (x - mHi is exact near the mean, and a constant channel
// gives exactly bias), at the cost of y = a*x + b. Scalar tails use the same float32 operations
// as the lanes, so an element's result does not depend on where a vector boundary fell.

// ---------------------------------------------------------------- helpers

@inline function promoteLow(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}

@inline function promoteHigh(v: v128): v128 {
  return f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
}

@inline function hsum(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

@inline function writePartial(out: usize, count: f64, shift: f64, s1: f64, s2: f64): void {
  const m2 = s2 - (s1 * s1) / count;
  store<f64>(out, count);
  store<f64>(out, shift + s1 / count, 8);
  store<f64>(out, m2 < 0 ? 0 : m2, 16);
}

// ---------------------------------------------------------------- float32 statistics

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

/** Partial statistics of `rows` runs of `len` float32, run r at x + r * rowStride elements. */
export function statsPlanes32(x: usize, rows: i32, rowStride: i32, len: i32, out: usize): void {
  const k = load<f32>(x);
  const kv = f32x4.splat(k);
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  for (let r = 0; r < rows; r++) {
    let p = x + ((<usize>r * <usize>rowStride) << 2);
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
      a1 = f64x2.add(a1, f64x2(d, 0));
      a2 = f64x2.add(a2, f64x2(d * d, 0));
      p += 4;
    }
  }
  writePartial(out, <f64>rows * <f64>len, <f64>k, hsum(a1), hsum(a2));
}

/**
 * Partials of C channels over `rows` contiguous rows of C * S float32. `acc` holds rowScratchBytes(C)
 * (32 * C + 2048) bytes of scratch. Channel c's partial goes to out + c * outStride (bytes).
 */
export function statsRows32(x: usize, rows: i32, C: i32, S: i32, acc: usize, out: usize, outStride: i32): void {
  const rowBytes = (<usize>C * <usize>S) << 2;
  if (S == 1) {
    if (C < 16 && (C & 3) != 0) statsPattern32(x, rows, C, acc, out, outStride);
    else statsColumns32(x, rows, C, acc, out, outStride);
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
    writePartial(out + <usize>c * <usize>outStride, count, k, hsum(v128.load(a)), hsum(v128.load(a, 16)));
  }
}

/**
 * Rank-2 style rows (S = 1): channels in lanes. For each block of 16 channels (one cache line of
 * a row), up to 8 rows are summed in f32, in 8 independent accumulators (so the adds do not wait
 * on each other), then folded into f64: at most 8 roundings per lane between folds (16 measured
 * 2e-6 relative error in m2 with the shift 2 sd from the mean; 8 halves it). A whole line is used each time it is loaded: walking 4
 * channels down 16 rows 4 KB apart instead thrashed L1, whose sets those rows all share.
 */
function statsColumns32(x: usize, rows: i32, C: i32, acc: usize, out: usize, outStride: i32): void {
  const c16 = <usize>(C & ~15);
  const c4 = <usize>(C & ~3);
  const rowBytes = <usize>C << 2;
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
    writePartial(out + c * <usize>outStride, <f64>rows, <f64>load<f32>(kArr + (c << 2)), load<f64>(s1Arr + (c << 3)), load<f64>(s2Arr + (c << 3)));
  }
}

/** Adds the 4 f32 lanes of v to the 4 f64 at p. */
@inline function fold4(p: usize, v: v128): void {
  v128.store(p, f64x2.add(v128.load(p), promoteLow(v)));
  v128.store(p, f64x2.add(v128.load(p, 16), promoteHigh(v)), 16);
}

// ---------------------------------------------------------------- float64 statistics

@inline function sums64(p: usize, len: i32, kv: v128, k: f64, acc: usize): void {
  let a1 = v128.load(acc);
  let a2 = v128.load(acc, 16);
  let b1 = f64x2.splat(0);
  let b2 = f64x2.splat(0);
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
  v128.store(acc, f64x2.add(a1, b1));
  v128.store(acc, f64x2.add(a2, b2), 16);
}

export function statsPlanes64(x: usize, rows: i32, rowStride: i32, len: i32, out: usize): void {
  const k = load<f64>(x);
  const kv = f64x2.splat(k);
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  let b1 = f64x2.splat(0);
  let b2 = f64x2.splat(0);
  for (let r = 0; r < rows; r++) {
    let p = x + ((<usize>r * <usize>rowStride) << 3);
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
  }
  writePartial(out, <f64>rows * <f64>len, k, hsum(f64x2.add(a1, b1)), hsum(f64x2.add(a2, b2)));
}

export function statsRows64(x: usize, rows: i32, C: i32, S: i32, acc: usize, out: usize, outStride: i32): void {
  const rowBytes = (<usize>C * <usize>S) << 3;
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
      sums64(row + ((<usize>c * <usize>S) << 3), S, f64x2.splat(k), k, acc + (<usize>c << 5));
    }
  }
  const count = <f64>rows * <f64>S;
  for (let c = 0; c < C; c++) {
    const a = acc + (<usize>c << 5);
    writePartial(out + <usize>c * <usize>outStride, count, load<f64>(x + ((<usize>c * <usize>S) << 3)), hsum(v128.load(a)), hsum(v128.load(a, 16)));
  }
}

// ---------------------------------------------------------------- normalization

// `floor` is 0 for a fused ReLU and -Infinity otherwise. The pseudo-maximum pmax(y, floor) =
// y < floor ? floor : y keeps NaN (NaN < floor is false) and is one instruction a vector; wasm's
// IEEE max would be a sequence of about seven on x64 (measured: it halved the speed of a
// normalization).

@inline function relu32(v: f32, floor: f32): f32 {
  return v < floor ? floor : v;
}

@inline function relu64(v: f64, floor: f64): f64 {
  return v < floor ? floor : v;
}

@inline function norm32(v: v128, hi: v128, sc: v128, b: v128, fl: v128): v128 {
  return f32x4.pmax(f32x4.add(f32x4.mul(f32x4.sub(v, hi), sc), b), fl);
}

/** Without ReLU the pmax is left out altogether: callers branch once, outside their loops. */
@inline function norm32Plain(v: v128, hi: v128, sc: v128, b: v128): v128 {
  return f32x4.add(f32x4.mul(f32x4.sub(v, hi), sc), b);
}

@inline function floorOf(relu: i32): f64 {
  return relu ? 0 : -Infinity;
}

/** The float32 form of (mean, scale, bias): hi, scale, and bias - lo * scale. */
@inline function hiOf(mean: f64): f32 {
  return <f32>mean;
}

@inline function shiftOf(mean: f64, scale: f64, bias: f64): f32 {
  return <f32>(bias - (mean - <f64><f32>mean) * scale);
}

@inline function normRun32(px: usize, py: usize, len: i32, mean: f64, scale: f64, bias: f64, floor: f32, relu: bool): void {
  const fl = f32x4.splat(floor);
  const mHi = hiOf(mean);
  const sc = <f32>scale;
  const bs = shiftOf(mean, scale, bias);
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
 * `scratch` holds rowScratchBytes(C) (32 * C + 2048) bytes.
 */
export function normalizeRows32(x: usize, y: usize, rows: i32, C: i32, S: i32, params: usize, scratch: usize, relu: i32): void {
  const rowBytes = (<usize>C * <usize>S) << 2;
  const floor = <f32>floorOf(relu);
  const fl = f32x4.splat(floor);
  if (S != 1) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < C; c++) {
        const p = params + (<usize>c << 5);
        const off = <usize>r * rowBytes + ((<usize>c * <usize>S) << 2);
        normRun32(x + off, y + off, S, load<f64>(p), load<f64>(p, 8), load<f64>(p, 16), floor, true);
      }
    }
    return;
  }
  if (C < 16 && (C & 3) != 0) {
    normalizePattern32(x, y, rows, C, params, scratch, floor);
    return;
  }
  // Channels in lanes: the parameters as float32 structure of arrays (hi, scale, shift), read
  // along each row like the data (from L1: 12 bytes a channel).
  const cPad = <usize>((C + 3) & ~3);
  const hiA = scratch;
  const scA = hiA + (cPad << 2);
  const bA = scA + (cPad << 2);
  for (let c: usize = 0; c < cPad; c++) {
    const p = params + ((c < <usize>C ? c : 0) << 5);
    const mean = load<f64>(p);
    const scale = load<f64>(p, 8);
    store<f32>(hiA + (c << 2), hiOf(mean));
    store<f32>(scA + (c << 2), <f32>scale);
    store<f32>(bA + (c << 2), shiftOf(mean, scale, load<f64>(p, 16)));
  }
  const c16 = <usize>(C & ~15);
  const c4 = <usize>(C & ~3);
  for (let r = 0; r < rows; r++) {
    const px = x + <usize>r * rowBytes;
    const py = y + <usize>r * rowBytes;
    let c: usize = 0;
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
    for (; c < <usize>C; c++) {
      const o = c << 2;
      store<f32>(py + o, relu32((load<f32>(px + o) - load<f32>(hiA + o)) * load<f32>(scA + o) + load<f32>(bA + o), floor));
    }
  }
}

export function normalizeRows64(x: usize, y: usize, rows: i32, C: i32, S: i32, params: usize, scratch: usize, relu: i32): void {
  const rowBytes = (<usize>C * <usize>S) << 3;
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

// ---------------------------------------------------------------- few interleaved channels

// Rank 2 with few channels (channels-last images: C = 1, 2, 3, ...), where C is not a multiple of
// 4: the rows are one flat run in which channel c sits at every C-th value. Its pattern repeats
// every P = lcm(C, 4) values, V = P / 4 vectors, so lane l of vector j always holds channel
// (4j + l) % C: those V vectors are reduced (or normalized) with per-position constants, and the
// positions are gathered into channels at the end. All arrays live in `acc` / `scratch`.

@inline function patternLength(C: i32): i32 {
  return (C & 1) != 0 ? 4 * C : (C & 2) != 0 ? 2 * C : C;
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
    writePartial(out + c * <usize>outStride, <f64>rows, <f64>load<f32>(kPat + (c << 2)), s1, s2);
  }
}

function normalizePattern32(x: usize, y: usize, rows: i32, C: i32, params: usize, scratch: usize, floor: f32): void {
  const P = <usize>patternLength(C);
  const V = P >> 2;
  const total = <usize>rows * <usize>C;
  const hiA = scratch;
  const scA = hiA + (P << 2);
  const bA = scA + (P << 2);
  for (let i: usize = 0; i < P; i++) {
    const q = params + ((i % <usize>C) << 5);
    const mean = load<f64>(q);
    const scale = load<f64>(q, 8);
    store<f32>(hiA + (i << 2), hiOf(mean));
    store<f32>(scA + (i << 2), <f32>scale);
    store<f32>(bA + (i << 2), shiftOf(mean, scale, load<f64>(q, 16)));
  }
  const fl = f32x4.splat(floor);
  const periods = total / P;
  for (let p: usize = 0; p < periods; p++) {
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

// ---------------------------------------------------------------- the benchmark floor

/** y = a * x + b over n float32: one streaming read and write, the floor of any normalization. */
export function stream32(x: usize, y: usize, n: i32, a: f32, b: f32): void {
  const av = f32x4.splat(a);
  const bv = f32x4.splat(b);
  const end = x + (<usize>n << 2);
  while (x + 64 <= end) {
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x), av), bv));
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x, 16), av), bv), 16);
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x, 32), av), bv), 32);
    v128.store(y, f32x4.add(f32x4.mul(v128.load(x, 48), av), bv), 48);
    x += 64;
    y += 64;
  }
  while (x < end) {
    store<f32>(y, load<f32>(x) * a + b);
    x += 4;
    y += 4;
  }
}

// ---------------------------------------------------------------- merging partials

/**
 * For channels [c0, c1): merges the channel's `blocks` partials (count, mean, m2), contiguous at
 * partials + 24 * blocks * c, in block order with Chan et al.'s pairwise formula; writes (mean,
 * biased variance) to stats + 16 * c; and turns params + 32 * c from (unused, weight, bias) into
 * (mean, weight / sqrt(var + eps), bias). The same operations, in the same order, as
 * src/merge.ts, so the two give the same bits.
 */
export function mergeChannels(partials: usize, blocks: i32, c0: i32, c1: i32, stats: usize, params: usize, eps: f64): void {
  for (let c = c0; c < c1; c++) {
    let n: f64 = 0;
    let mean: f64 = 0;
    let m2: f64 = 0;
    let p = partials + <usize>c * <usize>blocks * 24;
    const end = p + <usize>blocks * 24;
    for (; p < end; p += 24) {
      const nb = load<f64>(p);
      const meanB = load<f64>(p, 8);
      const m2B = load<f64>(p, 16);
      if (n == 0) {
        n = nb;
        mean = meanB;
        m2 = m2B;
        continue;
      }
      const total = n + nb;
      const delta = meanB - mean;
      mean += (delta * nb) / total;
      m2 += m2B + (delta * delta * n * nb) / total;
      n = total;
    }
    const variance = m2 / n;
    const s = stats + (<usize>c << 4);
    store<f64>(s, mean);
    store<f64>(s, variance, 8);
    const q = params + (<usize>c << 5);
    store<f64>(q, mean);
    store<f64>(q, load<f64>(q, 8) / Math.sqrt(variance + eps), 8);
  }
}

// ---------------------------------------------------------------- backward

// With a fused ReLU the forward's output y is the mask: where y <= 0 (or is NaN) the incoming
// gradient is 0. `mask` is y's byte offset, or 0 without ReLU.

@inline function masked32(g: v128, pm: usize, at: usize): v128 {
  return v128.and(g, f32x4.gt(v128.load(pm + at), f32x4.splat(0)));
}

/**
 * Backward partial of `rows` runs of `len` values (x, dy and the mask strided like statsPlanes):
 * writes (count, Σdy, Σdy·(x - mean)) at out. float32: x - mean is taken as (x - hi) with hi the
 * float32 part of the mean, in f32 lanes over at most 4 vectors before each fold into f64, and the
 * low part is applied once at the end: Σdy·(x - hi - lo) = Σdy·(x - hi) - lo·Σdy.
 */
export function bwdStatsPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32,
  rows: i32, len: i32, mean: f64, out: usize,
): void {
  const hi = <f32>mean;
  const lo = mean - <f64>hi;
  const hv = f32x4.splat(hi);
  const useMask = mask != 0;
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  for (let r = 0; r < rows; r++) {
    let px = x + ((<usize>r * <usize>xRowStride) << 2);
    let pg = dy + ((<usize>r * <usize>dyRowStride) << 2);
    let pm = mask + ((<usize>r * <usize>maskRowStride) << 2);
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
    while (px < end) {
      const g = useMask && !(load<f32>(pm) > 0) ? 0 : <f64>load<f32>(pg);
      a1 = f64x2.add(a1, f64x2(g, 0));
      a2 = f64x2.add(a2, f64x2(g * <f64>(load<f32>(px) - hi), 0));
      px += 4;
      pg += 4;
      pm += 4;
    }
  }
  const sdy = hsum(a1);
  store<f64>(out, <f64>rows * <f64>len);
  store<f64>(out, sdy, 8);
  store<f64>(out, hsum(a2) - lo * sdy, 16);
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

/**
 * dx = a·dy + b·(x - mean) + d over `rows` runs of `len` (x, dy, the mask and dx each with their
 * own row stride), dy masked as in bwdStatsPlanes. float32: (x - hi) in f32, and -b·lo folded
 * into d in f64.
 */
export function bwdApplyPlanes32(
  x: usize, xRowStride: i32, dy: usize, dyRowStride: i32, mask: usize, maskRowStride: i32, dx: usize, dxRowStride: i32,
  rows: i32, len: i32, a: f64, b: f64, mean: f64, d: f64,
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
    while (px + 16 <= end) {
      let g = v128.load(pg);
      if (useMask) g = masked32(g, pm, 0);
      v128.store(po, f32x4.add(f32x4.add(f32x4.mul(av, g), f32x4.mul(bv, f32x4.sub(v128.load(px), hv))), dv));
      px += 16;
      pg += 16;
      pm += 16;
      po += 16;
    }
    while (px < end) {
      const g = useMask && !(load<f32>(pm) > 0) ? <f32>0 : load<f32>(pg);
      store<f32>(po, (af * g + bf * (load<f32>(px) - hi)) + df);
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
      v128.store(po, f64x2.add(f64x2.add(f64x2.mul(av, g), f64x2.mul(bv, f64x2.sub(v128.load(px), mv))), dv));
      px += 16;
      pg += 16;
      pm += 16;
      po += 16;
    }
    if (px < end) {
      const g = useMask && !(load<f64>(pm) > 0) ? 0 : load<f64>(pg);
      store<f64>(po, (a * g + b * (load<f64>(px) - mean)) + d);
    }
  }
}

/**
 * Adds Σdy and Σdy·(x - hi) of one float32 run to the f64 pair at acc (acc[0] += Σdy,
 * acc[1] += Σdy·(x - hi)): f32 lanes over 4 vectors between folds, as in bwdStatsPlanes32.
 */
@inline function bwdRun32(px: usize, pg: usize, pm: usize, len: i32, hi: f32, useMask: bool, acc: usize): void {
  const hv = f32x4.splat(hi);
  let a1 = f64x2.splat(0);
  let a2 = f64x2.splat(0);
  const end = px + (<usize>len << 2);
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
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, S: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  if (S == 1) {
    bwdColumns32(x, dy, mask, rows, C, params, acc, out, outStride);
    return;
  }
  const useMask = mask != 0;
  for (let c = 0; c < C; c++) v128.store(acc + (<usize>c << 4), f64x2.splat(0));
  const rowBytes = (<usize>C * <usize>S) << 2;
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
  x: usize, dy: usize, mask: usize, rows: i32, C: i32, S: i32, params: usize, acc: usize, out: usize, outStride: i32,
): void {
  const useMask = mask != 0;
  for (let c = 0; c < C; c++) v128.store(acc + (<usize>c << 4), f64x2.splat(0));
  const rowBytes = (<usize>C * <usize>S) << 3;
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
 * Rank-2 style backward partials (S = 1): channels in lanes, 16 channels (a cache line of a row)
 * by up to 8 rows summed in f32, then folded into f64, as in statsColumns32. acc: hi as f32 and
 * Σdy, Σdy·(x - hi) as f64, each [C rounded up to 4].
 */
function bwdColumns32(x: usize, dy: usize, mask: usize, rows: i32, C: i32, params: usize, acc: usize, out: usize, outStride: i32): void {
  const useMask = mask != 0;
  const c16 = <usize>(C & ~15);
  const rowBytes = <usize>C << 2;
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
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, S: i32, params: usize, scratch: usize,
): void {
  if (S == 1) {
    bwdApplyColumns32(x, dy, mask, dx, rows, C, params, scratch);
    return;
  }
  const rowBytes = (<usize>C * <usize>S) << 2;
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

function bwdApplyColumns32(x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, params: usize, scratch: usize): void {
  const useMask = mask != 0;
  const cPad = <usize>((C + 3) & ~3);
  const aA = scratch;
  const bA = aA + (cPad << 2);
  const hA = bA + (cPad << 2);
  const dA = hA + (cPad << 2);
  for (let c: usize = 0; c < cPad; c++) {
    const q = params + ((c < <usize>C ? c : 0) << 5);
    const b = load<f64>(q, 8);
    const mean = load<f64>(q, 16);
    const hi = <f32>mean;
    store<f32>(aA + (c << 2), <f32>load<f64>(q));
    store<f32>(bA + (c << 2), <f32>b);
    store<f32>(hA + (c << 2), hi);
    store<f32>(dA + (c << 2), <f32>(load<f64>(q, 24) - b * (mean - <f64>hi)));
  }
  const c4 = <usize>(C & ~3);
  const rowBytes = <usize>C << 2;
  for (let r = 0; r < rows; r++) {
    const row = <usize>r * rowBytes;
    let c: usize = 0;
    for (; c < c4; c += 4) {
      const o = row + (c << 2);
      const k = c << 2;
      let g = v128.load(dy + o);
      if (useMask) g = masked32(g, mask + o, 0);
      v128.store(dx + o, f32x4.add(f32x4.add(f32x4.mul(v128.load(aA + k), g), f32x4.mul(v128.load(bA + k), f32x4.sub(v128.load(x + o), v128.load(hA + k)))), v128.load(dA + k)));
    }
    for (; c < <usize>C; c++) {
      const o = row + (c << 2);
      const k = c << 2;
      const g = useMask && !(load<f32>(mask + o) > 0) ? <f32>0 : load<f32>(dy + o);
      store<f32>(dx + o, (load<f32>(aA + k) * g + load<f32>(bA + k) * (load<f32>(x + o) - load<f32>(hA + k))) + load<f32>(dA + k));
    }
  }
}

export function bwdApplyRows64(
  x: usize, dy: usize, mask: usize, dx: usize, rows: i32, C: i32, S: i32, params: usize, scratch: usize,
): void {
  const rowBytes = (<usize>C * <usize>S) << 3;
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
 * For channels [c0, c1): sums the channel's `blocks` backward partials (count, Σdy,
 * Σdy·(x - mean)) in block order; writes (dWeight, dBias) = (invstd·Σdy·(x - mean), Σdy) at
 * stats + 16 * c; and turns params + 32 * c from (mean, invstd, weight, ·) into (a, b, mean, d) for
 * dx = a·dy + b·(x - mean) + d, with m values per channel:
 * training: a = weight·invstd, b = -a·invstd²·Σdy(x - mean)/m, d = -a·Σdy/m; eval: b = d = 0.
 * The same operations, in the same order, as src/merge.ts.
 */
export function mergeBackward(
  partials: usize, blocks: i32, c0: i32, c1: i32, stats: usize, params: usize, count: f64, training: i32,
): void {
  for (let c = c0; c < c1; c++) {
    let sdy: f64 = 0;
    let sdx: f64 = 0;
    let p = partials + <usize>c * <usize>blocks * 24;
    const end = p + <usize>blocks * 24;
    for (; p < end; p += 24) {
      sdy += load<f64>(p, 8);
      sdx += load<f64>(p, 16);
    }
    const q = params + (<usize>c << 5);
    const mean = load<f64>(q);
    const invstd = load<f64>(q, 8);
    const weight = load<f64>(q, 16);
    const s = stats + (<usize>c << 4);
    store<f64>(s, invstd * sdx);
    store<f64>(s, sdy, 8);
    const a = weight * invstd;
    store<f64>(q, a);
    store<f64>(q, training ? -a * invstd * invstd * sdx / count : 0, 8);
    store<f64>(q, mean, 16);
    store<f64>(q, training ? -a * sdy / count : 0, 24);
  }
}
