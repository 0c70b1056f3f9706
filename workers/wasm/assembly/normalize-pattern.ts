import { norm32, patternLength, relu32 } from './common';
import { normParams32 } from './normalize';

// Normalization of few interleaved channels (rank 2 with C < 16 not a multiple of 4: channels-last
// images), as stats-pattern.ts sums them: the lanes repeat every P = lcm(C, 4) values, so each
// position of a period takes its channel's parameters, made once a call per position.

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

export function normalizePattern32(x: usize, y: usize, rows: i32, C: i32, params: usize, scratch: usize, floor: f32): void {
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
