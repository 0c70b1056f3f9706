import { norm32, relu32 } from './common';

// Eval normalization of 8-bit input (pixels as a decoder gives them) into float32: y = (x - hi) *
// sc + bs, with each channel's float32 parameters made by the caller as the float32 kernels' are
// (hiOf, shiftOf). A uint8 converts to float32 exactly, so each value goes through the same three
// float32 operations as a float32 input would, in the lanes and in the scalar tails alike.
// `floor`: 0 for a fused ReLU, -Infinity otherwise (norm32's pmax).

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
    store<f32>(y, relu32((<f32>load<u8>(x) - load<f32>(params + (k << 2))) * load<f32>(scA + (k << 2)) + load<f32>(bA + (k << 2)), floor));
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
    store<f32>(y, relu32((<f32>load<u8>(x) - load<f32>(params + (k << 2))) * load<f32>(scA + (k << 2)) + load<f32>(bA + (k << 2)), floor));
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
