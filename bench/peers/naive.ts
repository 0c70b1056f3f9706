/**
 * The "naive port": the seed's loop structure (shared/seed, a hand-written PyTorch BatchNorm)
 * written as plain single-threaded JavaScript, with its semantics corrected to PyTorch's (biased
 * variance to normalize, unbiased in the running update, momentum on the new batch). Like the seed
 * it builds x_hat, then y = gamma * x_hat + beta, as fresh arrays.
 */
export function naiveBatchNorm(
  x: Float32Array, shape: readonly number[], training: boolean,
  state: { gamma: Float32Array; beta: Float32Array; movingMean: Float32Array; movingVar: Float32Array },
  momentum = 0.1, eps = 1e-5,
): Float32Array {
  const [N, C] = shape;
  const S = x.length / (N * C);
  const mean = new Float32Array(C);
  const variance = new Float32Array(C);
  if (training) {
    for (let c = 0; c < C; c++) {
      let sum = 0;
      for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
      const m = sum / (N * S);
      let sq = 0;
      for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sq += (x[(n * C + c) * S + s] - m) ** 2;
      mean[c] = m;
      variance[c] = sq / (N * S);
      state.movingMean[c] = (1 - momentum) * state.movingMean[c] + momentum * m;
      state.movingVar[c] = (1 - momentum) * state.movingVar[c] + momentum * variance[c] * (N * S) / (N * S - 1);
    }
  } else {
    mean.set(state.movingMean);
    variance.set(state.movingVar);
  }
  const xHat = new Float32Array(x.length);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const inv = 1 / Math.sqrt(variance[c] + eps);
      for (let s = 0; s < S; s++) {
        const i = (n * C + c) * S + s;
        xHat[i] = (x[i] - mean[c]) * inv;
      }
    }
  }
  const out = new Float32Array(x.length);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let s = 0; s < S; s++) {
        const i = (n * C + c) * S + s;
        out[i] = state.gamma[c] * xHat[i] + state.beta[c];
      }
    }
  }
  return out;
}
