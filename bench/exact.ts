/**
 * Statistics in integer arithmetic, for checking float64 statistics to their last bit
 * (test/adversarial.test.ts, bench/offset-stats.ts): every finite float64 is an integer times a
 * power of two, so a channel's sums are exact as BigInts.
 */

/** A finite float64 as mantissa * 2^exponent, the mantissa an integer (0 for zero). */
function dyadic(v: number): [bigint, number] {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, v);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  if (biased === 0x7ff) throw new Error(`not finite: ${v}`);
  const fraction = bits & ((1n << 52n) - 1n);
  const mantissa = biased === 0 ? fraction : fraction | (1n << 52n);
  return [bits >> 63n ? -mantissa : mantissa, (biased === 0 ? 1 : biased) - 1075];
}

/**
 * The exact per-channel statistics of finite data (N, C, *spatial), in integer arithmetic: each
 * channel's mean and biased variance rounded to float64 from 200 bits past the point, and how far
 * a given mean is from the exact one, in ulps of the given mean (a normal float64). What a float64
 * reference of its own cannot be: its mean carries half an ulp of the data's offset into every
 * deviation.
 */
export function exactChannelStats(x: ArrayLike<number>, shape: readonly number[]): {
  mean: Float64Array; var: Float64Array; meanErrorUlps: (c: number, mean: number) => number;
} {
  const [N, C] = shape;
  const S = shape.slice(2).reduce((a, b) => a * b, 1);
  const m = BigInt(N * S);
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  const sums: [bigint, number][] = [];
  // q as a float64, q = num / den * 2^e, num and den > 0 integers: rounded from 200 extra bits.
  const ratio = (num: bigint, den: bigint, e: number): number => {
    const negative = num < 0n;
    const q = Number(((negative ? -num : num) << 200n) / den) * 2 ** (e - 200);
    return negative ? -q : q;
  };
  for (let c = 0; c < C; c++) {
    const values: [bigint, number][] = [];
    // The smallest exponent, the common scale (a loop: a spread of a large channel's values into
    // Math.min would pass its argument limit).
    let e = Infinity;
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const value = dyadic(x[(n * C + c) * S + s]);
        values.push(value);
        e = Math.min(e, value[1]);
      }
    }
    let sum = 0n;
    let squares = 0n;
    for (const [mant, ve] of values) {
      const v = mant << BigInt(ve - e);
      sum += v;
      squares += v * v;
    }
    sums.push([sum, e]);
    mean[c] = ratio(sum, m, e);
    // var = (m * Σv² - (Σv)²) / m² * 2^(2e)
    variance[c] = ratio(m * squares - sum * sum, m * m, 2 * e);
  }
  const meanErrorUlps = (c: number, got: number): number => {
    const [sum, e] = sums[c];
    const [mant, ge] = dyadic(got);
    // got - exact = (mant * 2^ge * m - sum * 2^e) / m, in units of ulp(got) = 2^ge (a normal got's
    // mantissa has 53 bits).
    const low = Math.min(ge, e);
    const diff = (mant << BigInt(ge - low)) * m - (sum << BigInt(e - low));
    return ratio(diff, m << BigInt(ge - low), 0);
  };
  return { mean, var: variance, meanErrorUlps };
}
