/**
 * The TypeScript kernel's loops over 8-bit input (JsKernel's bytes* methods): the eval forward of
 * pixels into float32, each step rounded to float32 as the WebAssembly kernel's lanes do (the same
 * bits), written in place or channels first, and the exact per-channel sums behind
 * ChannelStats.fromBatch.
 */

/**
 * y[y0 + i] = max((x - hi) * sc + bs, floor) for the n bytes of `bytes`, each step rounded to
 * float32; `at(i)` is where element i's hi is in f32, sc and bs `count` float32 after it.
 */
export function bytesNormalized(
  bytes: Uint8Array, f32: Float32Array, y0: number, relu: boolean, at: (i: number) => number, count: number,
): void {
  const floor = relu ? 0 : -Infinity;
  const round = Math.fround;
  for (let i = 0; i < bytes.length; i++) {
    const p = at(i);
    const v = round(round(round(bytes[i] - f32[p]) * f32[p + count]) + f32[p + 2 * count]);
    f32[y0 + i] = v < floor ? floor : v;
  }
}

/**
 * n channels-last pixels of C bytes (pixel `first + i` of images of S pixels) normalized into
 * float32 channels first at y0: channel c's hi, sc and bs at params + c, + C + c, + 2C + c.
 */
export function bytesToPlanes(
  bytes: Uint8Array, f32: Float32Array, y0: number, n: number, first: number, C: number, S: number, params: number, relu: boolean,
): void {
  const floor = relu ? 0 : -Infinity;
  const round = Math.fround;
  for (let i = 0; i < n; i++) {
    const q = first + i;
    const image = Math.floor(q / S);
    const at = y0 + image * C * S + (q - image * S);
    for (let c = 0; c < C; c++) {
      const p = params + c;
      const v = round(round(round(bytes[i * C + c] - f32[p]) * f32[p + C]) + f32[p + 2 * C]);
      f32[at + c * S] = v < floor ? floor : v;
    }
  }
}

/** Adds each byte and its square to the float64 pair at out + 2 * at(i) (exact: integers). */
export function byteSums(bytes: Uint8Array, f64: Float64Array, out: number, at: (i: number) => number): void {
  for (let i = 0; i < bytes.length; i++) {
    const p = out + 2 * at(i);
    const v = bytes[i];
    f64[p] += v;
    f64[p + 1] += v * v;
  }
}
