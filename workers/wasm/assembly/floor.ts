// The benchmark floor.

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
