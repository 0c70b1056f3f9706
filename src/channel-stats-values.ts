/**
 * What a `ChannelStats` takes and gives, value by value: the checks of its arrays (the
 * constructor's, `fromJSON`'s, and that a caller still holds them whole) and the JSON form of its
 * numbers.
 */
import type { ChannelStats } from './channel-stats.js';
import { ArgumentError, describe } from './errors.js';
import { firstNonNumber, heldLength } from './validate.js';

/**
 * A statistic in `ChannelStatsJSON`: a number, or the name of a value JSON has no number for
 * (`JSON.stringify` would write NaN and the infinities as null, which reads back as nothing).
 */
export type JsonNumber = number | 'NaN' | 'Infinity' | '-Infinity';

/**
 * Throws unless `stats.count` and `stats.m2` still hold a value for each of its channels. They are
 * public Float64Arrays, so their owner can transfer their buffers (`postMessage`, `structuredClone`
 * with a transfer list), which leaves them empty: read as they are, every merge and variance of
 * theirs would be NaN (undefined read as a number), with no error.
 */
export function checkStatsHeld(stats: ChannelStats, prefix = ''): void {
  const C = stats.numChannels;
  for (const key of ['count', 'm2'] as const) {
    const have = heldLength(stats[key]);
    if (have !== C) {
      throw new ArgumentError(`${prefix}${key} must hold ${C} values, one a channel; its buffer was detached (transferred), and it now holds ${have}`);
    }
  }
}

export const COUNT_EXPECTED = 'a finite number >= 0';
export const M2_EXPECTED = 'a number >= 0 (a sum of squared deviations) or NaN';

/** Throws unless `value` is an array or a typed array (what the constructor copies from). */
export function checkArray(value: unknown, name: string): void {
  if (Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView))) return;
  throw new ArgumentError(`${name} must be an array or a typed array of numbers; got ${describe(value)}`);
}

/** Throws unless every value is a number, naming the first that is not. */
export function checkNumbers(values: ArrayLike<number>, name: string, expected: string): void {
  const c = firstNonNumber(values);
  if (c >= 0) throw new ArgumentError(`${name}[${c}] must be ${expected}; got ${describe(values[c])}`);
}

/**
 * Throws unless every count is finite and >= 0 and every m2 >= 0 or NaN (a sum of squares: never
 * negative; NaN where the data held NaN, +Infinity past float64). The loop only finds the first
 * bad channel and the message is made after it: with the throw inside, V8 ran this loop 5-10x
 * slower once the function had been called a few times (7-11 ms for 262,144 channels against ~1).
 */
export function checkRanges(count: Float64Array, m2: Float64Array): void {
  let c = 0;
  while (c < count.length && count[c] >= 0 && count[c] < Infinity && !(m2[c] < 0)) c++;
  if (c === count.length) return;
  if (!(count[c] >= 0 && count[c] < Infinity)) throw new ArgumentError(`count[${c}] must be ${COUNT_EXPECTED}; got ${describe(count[c])}`);
  throw new ArgumentError(`m2[${c}] must be ${M2_EXPECTED}; got ${describe(m2[c])}`);
}

/**
 * Throws unless each low part leaves its finite mean as it is when added to it (so it is finite and
 * at most half an ulp of it), and is 0 where the mean is not finite (m - m is 0 exactly for finite
 * m). A loop that only finds the first bad channel, as checkRanges: 8 ms for 4M channels here,
 * against 17 with Number.isFinite calls.
 */
export function checkLowParts(mean: Float64Array, lo: Float64Array): void {
  let c = 0;
  for (; c < mean.length; c++) {
    const m = mean[c];
    const l = lo[c];
    if (!(m - m === 0 ? m + l === m : l === 0)) break;
  }
  if (c === mean.length) return;
  throw new ArgumentError(
    `meanLo[${c}] must be what rounding mean[${c}] left out (finite, at most half an ulp of it, 0 where the mean is not finite); got ${describe(lo[c])} for mean ${describe(mean[c])}`,
  );
}

/**
 * Values for JSON: NaN and the infinities as their names. A loop of pushes: `Array.from` over a
 * Float64Array, with or without a mapping function, took about twice as long (262,144 channels:
 * 19-38 ms against 10-15).
 */
export function jsonNumbers(values: Float64Array): JsonNumber[] {
  const out: JsonNumber[] = [];
  for (let c = 0; c < values.length; c++) {
    const v = values[c];
    out.push(Number.isFinite(v) ? v : (String(v) as JsonNumber));
  }
  return out;
}

/** A JsonNumber back to a number; names of non-finite values only where `named` (mean, m2). */
export function fromJsonNumber(v: unknown, key: string, index: number, named: boolean): number {
  if (typeof v === 'number') return v;
  if (named && (v === 'NaN' || v === 'Infinity' || v === '-Infinity')) return Number(v);
  const expected = named ? "a number, or 'NaN', 'Infinity' or '-Infinity'" : 'a number';
  const hint = v === null ? ' (JSON.stringify writes NaN and infinities as null: send toJSON()\'s form)' : '';
  throw new ArgumentError(`json.${key}[${index}] must be ${expected}; got ${describe(v)}${hint}`);
}
