// Merging partials into per-channel statistics and coefficients, in block order.

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
