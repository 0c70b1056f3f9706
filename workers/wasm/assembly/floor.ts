// The benchmark floor, and the read-only and write-only passes the suite measures beside it.

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

/**
 * The sum of n float32, in four lanes of four: a read-only streaming pass, the floor of a
 * statistics pass (bench/: "read"). What it returns only keeps the loads from being dropped.
 */
export function read32(x: usize, n: i32): f32 {
  let a = f32x4.splat(0);
  let b = f32x4.splat(0);
  let c = f32x4.splat(0);
  let d = f32x4.splat(0);
  const end = x + (<usize>n << 2);
  while (x + 64 <= end) {
    a = f32x4.add(a, v128.load(x));
    b = f32x4.add(b, v128.load(x, 16));
    c = f32x4.add(c, v128.load(x, 32));
    d = f32x4.add(d, v128.load(x, 48));
    x += 64;
  }
  const s = f32x4.add(f32x4.add(a, b), f32x4.add(c, d));
  let t = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
  while (x < end) {
    t += load<f32>(x);
    x += 4;
  }
  return t;
}

/** y = v over n float32: a write-only streaming pass (bench/: "write"). */
export function fill32(y: usize, n: i32, v: f32): void {
  const vv = f32x4.splat(v);
  const end = y + (<usize>n << 2);
  while (y + 64 <= end) {
    v128.store(y, vv);
    v128.store(y, vv, 16);
    v128.store(y, vv, 32);
    v128.store(y, vv, 48);
    y += 64;
  }
  while (y < end) {
    store<f32>(y, v);
    y += 4;
  }
}
