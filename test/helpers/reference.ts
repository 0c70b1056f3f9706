/**
 * Float64 two-pass reference for BatchNorm, written for clarity, not speed: the mean first, then
 * the mean of squared deviations, per channel, over every axis but 1.
 */
export interface RefOptions {
  training: boolean;
  weight?: ArrayLike<number> | null;
  bias?: ArrayLike<number> | null;
  runningMean?: ArrayLike<number> | null;
  runningVar?: ArrayLike<number> | null;
  eps?: number;
}

export interface RefResult {
  y: Float64Array;
  mean: Float64Array;
  var: Float64Array;
  /** Per-channel scale used, weight / sqrt(var + eps), for tolerances. */
  scale: Float64Array;
}

export function dimsOf(shape: readonly number[]): { N: number; C: number; S: number } {
  const N = shape[0];
  const C = shape[1];
  return { N, C, S: shape.slice(2).reduce((a, b) => a * b, 1) };
}

export function channelStats(x: ArrayLike<number>, shape: readonly number[]): { mean: Float64Array; var: Float64Array } {
  const { N, C, S } = dimsOf(shape);
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let sum = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
    const m = sum / (N * S);
    let sq = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sq += (x[(n * C + c) * S + s] - m) ** 2;
    mean[c] = m;
    variance[c] = sq / (N * S);
  }
  return { mean, var: variance };
}

/** Per-channel statistics in integer arithmetic (bench/exact.ts, built with the benchmarks). */
export { exactChannelStats } from '../../dist/bench/exact.js';

export function referenceForward(x: ArrayLike<number>, shape: readonly number[], opts: RefOptions): RefResult {
  const { N, C, S } = dimsOf(shape);
  const eps = opts.eps ?? 1e-5;
  const stats = opts.training
    ? channelStats(x, shape)
    : { mean: Float64Array.from(opts.runningMean!), var: Float64Array.from(opts.runningVar!) };
  const y = new Float64Array(x.length);
  const scale = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const w = opts.weight ? opts.weight[c] : 1;
    const b = opts.bias ? opts.bias[c] : 0;
    const invstd = 1 / Math.sqrt(stats.var[c] + eps);
    scale[c] = w * invstd;
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = (n * C + c) * S + s;
        y[i] = (x[i] - stats.mean[c]) * invstd * w + b;
      }
    }
  }
  return { y, mean: stats.mean, var: stats.var, scale };
}

/** PyTorch's running update: test/fixtures/running-update.mjs, which the by-hand differentials use too. */
export { runningUpdate as referenceRunningUpdate } from '../fixtures/running-update.mjs';

/**
 * Largest violation of the output tolerance, as a multiple of it (<= 1 passes).
 *
 * The tolerance is a few units in the last place of the terms a kernel adds up:
 * y = (x - mean) * scale + bias, computed in the data's precision. Each term can carry half an
 * ulp of rounding, so 4 ulps of |x*scale| + |mean*scale| + |bias| + |y| bound every kernel that
 * computes in that precision or better. With a large offset (mean 3000, sd 0.5) that is ~4e-4
 * absolute in float32, which is what float32 arithmetic can promise there (PyTorch's folded
 * x*alpha + beta has the same bound).
 *
 * On top of that, the batch statistics carry the error of their reduction over the channel. In
 * float64: up to n * 2^-53 relative in the worst case, ~1e-14 in practice for the sizes tested;
 * 1e-11 of |x*scale| + |mean*scale| covers it. The WebAssembly float32 kernel sums up to 8
 * float32 vectors before each fold into float64 (README, "Kernels"), so its mean is off by a
 * fraction of an ulp of the channel's spread: outputs then carry up to ~2.3 ulps of |scale|*sd
 * absolute (measured on channels whose mean, x and y are all near 0, where the terms above
 * vanish); 4 ulps of |scale|*sd covers it for float32.
 */
export function outputErrorRatio(
  y: ArrayLike<number>, x: ArrayLike<number>, shape: readonly number[], ref: RefResult,
  bias: ArrayLike<number> | null | undefined, dtype: 'float32' | 'float64',
): number {
  const { N, C, S } = dimsOf(shape);
  const ulp = dtype === 'float32' ? 2 ** -23 : 2 ** -52;
  // |scale|*sd per channel, for the float32 statistics' error (0 for float64).
  const spread = Array.from(ref.scale, (sc, c) => (dtype === 'float32' && Number.isFinite(ref.var[c]) ? Math.abs(sc) * Math.sqrt(ref.var[c]) : 0));
  let worst = 0;
  for (let c = 0; c < C; c++) {
    const sc = Math.abs(ref.scale[c]);
    const b = bias ? Math.abs(bias[c]) : 0;
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = (n * C + c) * S + s;
        const want = ref.y[i];
        const got = y[i];
        if (Number.isNaN(want) || Number.isNaN(got)) {
          if (Number.isNaN(want) !== Number.isNaN(got)) return Infinity;
          continue;
        }
        const terms = Math.abs(x[i]) * sc + Math.abs(ref.mean[c]) * sc;
        const tol = 4 * ulp * (terms + b + Math.abs(want) + spread[c]) + 1e-11 * terms + Number.MIN_VALUE;
        worst = Math.max(worst, Math.abs(got - want) / tol);
      }
    }
  }
  return worst;
}

/** Largest relative error of `got` against `want`, NaN matching NaN. */
export function maxRelativeError(got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-30): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]) || Number.isNaN(got[i])) {
      if (Number.isNaN(want[i]) !== Number.isNaN(got[i])) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), floor));
  }
  return worst;
}

/**
 * PyTorch's gradients, in float64, and the coefficients of dx = a·dy + b·(x - mean) + d
 * (a = weight·invstd, b = -a·invstd·Σdy·x̂/m, d = -a·Σdy/m; b = d = 0 in eval; the kernels
 * compute a·(dy + k·(x - mean) + e) with b = a·k and d = a·e), with bAbs and dAbs: the same made of Σ|dy·x̂|
 * and Σ|dy|, the scale of the sums' rounding error.
 */
export function referenceBackward(
  x: ArrayLike<number>, dy: ArrayLike<number>, shape: number[], mean: ArrayLike<number>, invstd: ArrayLike<number>,
  weight: ArrayLike<number> | null, training: boolean,
) {
  const { N, C, S } = dimsOf(shape);
  const m = N * S;
  const dx = new Float64Array(x.length);
  const dWeight = new Float64Array(C);
  const dBias = new Float64Array(C);
  const scale = new Float64Array(C);
  const b = new Float64Array(C);
  const d = new Float64Array(C);
  const bAbs = new Float64Array(C);
  const dAbs = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let sdy = 0;
    let sdyx = 0;
    let ady = 0;
    let adyx = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) {
      const i = (n * C + c) * S + s;
      sdy += dy[i];
      sdyx += dy[i] * (x[i] - mean[c]) * invstd[c];
      ady += Math.abs(dy[i]);
      adyx += Math.abs(dy[i] * (x[i] - mean[c]) * invstd[c]);
    }
    dBias[c] = sdy;
    dWeight[c] = sdyx;
    const w = weight ? weight[c] : 1;
    scale[c] = w * invstd[c];
    b[c] = training ? -scale[c] * invstd[c] * sdyx / m : 0;
    d[c] = training ? -scale[c] * sdy / m : 0;
    bAbs[c] = training ? Math.abs(scale[c] * invstd[c]) * adyx / m : 0;
    dAbs[c] = training ? Math.abs(scale[c]) * ady / m : 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) {
      const i = (n * C + c) * S + s;
      const xhat = (x[i] - mean[c]) * invstd[c];
      dx[i] = training ? w * invstd[c] * (dy[i] - sdy / m - xhat * sdyx / m) : w * invstd[c] * dy[i];
    }
  }
  return { dx, dWeight, dBias, scale, b, d, bAbs, dAbs, mean: Float64Array.from(mean) };
}

/**
 * Error of dx as a multiple of a float32/float64 tolerance on the terms the kernels add:
 * |a·dy| + |b|·(|x - mean| + |x|) + |d| (the |x| for rounding x - mean in the data's precision),
 * with b and d taken from the sums of absolute values (bAbs, dAbs): the float32 kernels sum dy
 * and dy·(x - mean) in float32 lanes before folding into float64, so b and d carry an error of
 * order ulp·Σ|...|, not ulp·|Σ...|, which matters where the sums cancel. 16 ulps of the terms,
 * plus 1e-10 of them for float64 sums. NaN must match NaN; an element whose x is not finite only
 * has a finite dx in eval mode, where b = 0.
 */
export function dxErrorRatio(
  got: ArrayLike<number>, ref: ReturnType<typeof referenceBackward>, dy: ArrayLike<number>, x: ArrayLike<number>,
  shape: number[], dtype: 'float32' | 'float64',
): number {
  const { N, C, S } = dimsOf(shape);
  const ulp = dtype === 'float32' ? 2 ** -23 : 2 ** -52;
  let worst = 0;
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let s = 0; s < S; s++) {
    const i = (n * C + c) * S + s;
    const want = ref.dx[i];
    if (Number.isNaN(want) || Number.isNaN(got[i])) {
      if (Number.isNaN(want) !== Number.isNaN(got[i])) return Infinity;
      continue;
    }
    const xTerm = ref.b[c] === 0 ? 0 : ref.bAbs[c] * (Math.abs(x[i] - ref.mean[c]) + Math.abs(x[i]));
    const terms = Math.abs(ref.scale[c] * dy[i]) + xTerm + ref.dAbs[c] + Math.abs(want);
    const tol = 16 * ulp * terms + 1e-10 * terms + Number.MIN_VALUE;
    worst = Math.max(worst, Math.abs(got[i] - want) / tol);
  }
  return worst;
}
