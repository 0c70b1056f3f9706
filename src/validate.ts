/**
 * Validation at the public boundary. Kernels and the engine trust what passes here; everything
 * is checked before any work starts or any state changes.
 */
import { types } from 'node:util';
import type { Dtype } from '../workers/protocol.js';
import { ArgumentError, describe, DtypeError, isDetached, ShapeError } from './errors.js';

/** The array types bnpool computes on. */
export type FloatArray = Float32Array | Float64Array;

/**
 * The array type of T's dtype: what a call given an input of type T resolves to (a new array of
 * the input's type, or `out`, which must have its dtype). Float32Array for any Float32Array
 * (whatever its buffer: a new output lives on its own SharedArrayBuffer), Float64Array for any
 * Float64Array, FloatArray when T is either.
 */
export type SameDtype<T extends FloatArray> = T extends Float32Array ? Float32Array : Float64Array;

/** Memory layout of an input: channels-first (N, C, *spatial) or channels-last (N, *spatial, C). */
export type Layout = 'channels-first' | 'channels-last';

/**
 * A validated shape, seen as (N, C, S): S = prod(spatial) for channels-first. A channels-last
 * input (N, *spatial, C) is the rank-2 problem (N * prod(spatial), C): N counts every position and
 * S is 1, so the engine needs no layout of its own.
 */
export interface Dims {
  readonly shape: readonly number[];
  readonly layout: Layout;
  readonly N: number;
  readonly C: number;
  readonly S: number;
  readonly length: number;
}

/**
 * 'float32' or 'float64' for a Float32Array or a Float64Array, null for anything else. Arrays of
 * another realm (made in a `vm` context, whose constructors are not this realm's, so `instanceof`
 * fails) count too: util.types checks the array's internal type, as stdlib-js's is-float32array
 * does with its class tag. `instanceof` first, as it is cheaper than a call into the runtime.
 */
export function floatDtype(value: unknown): Dtype | null {
  if (value instanceof Float32Array) return 'float32';
  if (value instanceof Float64Array) return 'float64';
  if (types.isFloat32Array(value)) return 'float32';
  if (types.isFloat64Array(value)) return 'float64';
  return null;
}

export function dtypeOf(value: unknown, name: string): Dtype {
  const dtype = floatDtype(value);
  if (dtype !== null) return dtype;
  throw new DtypeError(`${name} must be a Float32Array or a Float64Array; got ${describe(value)}`);
}

export function checkDtype(value: unknown, name: string, expected: Dtype): void {
  const dtype = dtypeOf(value, name);
  if (dtype !== expected) {
    throw new DtypeError(`${name} must be a ${arrayName(expected)} (dtype '${expected}'); got ${describe(value)}`);
  }
}

export function arrayName(dtype: Dtype): string {
  return dtype === 'float64' ? 'Float64Array' : 'Float32Array';
}

export function checkLayout(value: unknown, name = 'options.layout'): Layout {
  if (value === undefined) return 'channels-first';
  if (value !== 'channels-first' && value !== 'channels-last') {
    throw new ArgumentError(`${name} must be 'channels-first' or 'channels-last'; got ${describe(value)}`);
  }
  return value;
}

/** How a caller's array comes to be detached, in the messages that say so. */
const TRANSFERRED = 'transferred away by postMessage or structuredClone';

/**
 * Refuses an input whose buffer was detached before the call (a `postMessage` or
 * `structuredClone` transfer list took it): an ArgumentError that says so, where the length
 * check after it would only see 0 values (or, under Node 20's V8 fault, the length from before).
 */
export function checkAttached(value: ArrayBufferView, name: string): void {
  if (isDetached(value)) {
    throw new ArgumentError(`${name} must hold its values; its buffer was detached (${TRANSFERRED}); got ${describe(value)}`);
  }
}

/**
 * "length n" of an array an argument check refuses, as its messages say what they were given,
 * with "(its buffer was detached)" where a transfer emptied it (`heldLength`: 0 then).
 */
export function lengthGiven(array: { readonly length: number }): string {
  const detached = ArrayBuffer.isView(array) && isDetached(array);
  return `length ${heldLength(array)}${detached ? ` (its buffer was detached: ${TRANSFERRED})` : ''}`;
}

/** Checks `shape` against the data length and, when given, the expected channel count. */
export function checkShape(shape: unknown, length: number, numFeatures?: number, layout: Layout = 'channels-first'): Dims {
  const form = layout === 'channels-last' ? '(N, *spatial, C)' : '(N, C, *spatial)';
  if (!Array.isArray(shape)) {
    throw new ShapeError(`shape must be an array of 2 to 5 non-negative integers; got ${describe(shape)}`);
  }
  if (shape.length < 2 || shape.length > 5) {
    throw new ShapeError(`shape must have rank 2 to 5, ${form}; got rank ${shape.length}: ${describe(shape)}`);
  }
  // Any dimension but the channels' may be 0: an empty batch, as PyTorch takes (the call returns
  // an empty output and changes no statistics; engine.ts, emptyCall).
  const channelAxis = layout === 'channels-last' ? shape.length - 1 : 1;
  shape.forEach((dim, i) => {
    const least = i === channelAxis ? 1 : 0;
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < least) {
      const expected = least === 1 ? 'a positive integer (the channels)' : 'a non-negative integer';
      throw new ShapeError(`shape[${i}] must be ${expected}; got ${describe(dim)} in ${describe(shape)}`);
    }
  });
  const dims = shape as number[];
  const total = dims.reduce((a, b) => a * b, 1);
  if (total !== length) {
    throw new ShapeError(`shape ${describe(dims)} holds ${total} elements, but the input has ${length}`);
  }
  const C = dims[channelAxis];
  if (numFeatures !== undefined && C !== numFeatures) {
    throw new ShapeError(`shape[${channelAxis}] (channels) must equal numFeatures ${numFeatures}; got ${C} in ${describe(dims)}`);
  }
  // Channels last, the rows (N·prod(spatial)) are N and S is 1; channels first, S is prod(spatial).
  if (layout === 'channels-last') return { shape: dims.slice(), layout, N: total / C, C, S: 1, length: total };
  return { shape: dims.slice(), layout, N: dims[0], C, S: dims.slice(2).reduce((a, b) => a * b, 1), length: total };
}

export function checkPositiveInteger(value: unknown, name: string): number {
  return checkIntegerFrom(value, name, 1);
}

export function checkNonNegativeInteger(value: unknown, name: string): number {
  return checkIntegerFrom(value, name, 0);
}

function checkIntegerFrom(value: unknown, name: string, least: 0 | 1): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < least) {
    throw new ArgumentError(`${name} must be a ${least === 1 ? 'positive' : 'non-negative'} integer; got ${describe(value)}`);
  }
  return value;
}

export function checkEps(value: unknown, name = 'eps'): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ArgumentError(`${name} must be a finite number > 0; got ${describe(value)}`);
  }
  return value;
}

export function checkMomentum(value: unknown, allowNull: boolean, name = 'momentum'): number | null {
  if (value === null && allowNull) return null;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    const expected = allowNull ? 'a number in [0, 1] or null' : 'a number in [0, 1]';
    throw new ArgumentError(`${name} must be ${expected}; got ${describe(value)}`);
  }
  return value;
}

export function checkBoolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw new ArgumentError(`${name} must be a boolean; got ${describe(value)}`);
  return value;
}

export function checkDtypeName(value: unknown, name = 'dtype'): Dtype {
  if (value !== 'float32' && value !== 'float64') {
    throw new ArgumentError(`${name} must be 'float32' or 'float64'; got ${describe(value)}`);
  }
  return value;
}

export function checkSignal(value: unknown): AbortSignal | null {
  if (value === undefined || value === null) return null;
  if (!(value instanceof AbortSignal)) {
    throw new ArgumentError(`options.signal must be an AbortSignal; got ${describe(value)}`);
  }
  return value;
}

/**
 * Makes the named fields of `target` read-only at run time as well (TypeScript's `readonly` is a
 * compile-time check): in strict-mode code, assigning one throws a TypeError at the assignment,
 * instead of a call later using a weight of another length, or an eps no check has seen.
 */
export function lockFields<T extends object>(target: T, names: readonly (keyof T & string)[]): void {
  for (const name of names) Object.defineProperty(target, name, { writable: false, configurable: false });
}

export function checkObject(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ArgumentError(`${name} must be an object; got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/**
 * The keys an options bag of type T may have, one entry each: written as a
 * `Record<keyof T, true>` literal, the compiler rejects a key missing from it and one T lacks.
 */
export type OptionKeys<T> = Readonly<Record<keyof T, true>>;

/**
 * Checks an options bag: undefined (no options) or an object whose own keys are all `known`.
 * A misspelt key (`momentun`) is an error, as an unexpected keyword argument is in PyTorch,
 * rather than a default silently used in its place.
 */
export function checkOptions<T>(value: unknown, name: string, known: OptionKeys<T>): Record<string, unknown> {
  const opts = checkObject(value, name);
  for (const key of Object.keys(opts)) {
    if (!Object.hasOwn(known, key)) {
      const path = /^[A-Za-z_$][\w$]*$/.test(key) ? `${name}.${key}` : `${name}[${JSON.stringify(key)}]`;
      throw new ArgumentError(`${path} is not an option here: expected one of ${Object.keys(known).join(', ')}; got ${describe(opts[key])}`);
    }
  }
  return opts;
}

/**
 * Checks a per-channel parameter: a Float32Array or Float64Array of C finite-or-not numbers.
 * (Non-finite values are the caller's data, not an argument error, as in PyTorch.)
 */
export function checkChannelArray(value: unknown, name: string, C: number): FloatArray {
  dtypeOf(value, name);
  const array = value as FloatArray;
  const length = heldLength(array);
  if (length !== C) {
    throw new ArgumentError(`${name} must have one value per channel, length ${C}; got ${lengthGiven(array)}`);
  }
  return array;
}

/** The index of the first value that is not a number, or -1 (a float typed array holds nothing else). */
export function firstNonNumber(values: ArrayLike<unknown>): number {
  if (floatDtype(values) !== null) return -1;
  for (let i = 0; i < values.length; i++) if (typeof values[i] !== 'number') return i;
  return -1;
}

/** Checks per-channel values given as a Float32Array, a Float64Array or an array of numbers, of length C. */
export function checkChannelValues(value: unknown, name: string, C: number): ArrayLike<number> {
  const ok = (floatDtype(value) !== null || Array.isArray(value)) && firstNonNumber(value as ArrayLike<unknown>) < 0;
  if (!ok) throw new ArgumentError(`${name} must be a Float32Array, a Float64Array or an array of numbers; got ${describe(value)}`);
  const array = value as ArrayLike<number>;
  // Held: loadStateDict copies the checked arrays one after another, and a detached one let
  // through would throw from its copy after the ones before it had changed the module.
  const length = heldLength(array);
  if (length !== C) throw new ArgumentError(`${name} must have length ${C}; got ${lengthGiven(array)}`);
  return array;
}

/**
 * Where a call reads or writes a caller's array after it began (copied in or out in slices, with
 * turns of the event loop between them, or read again by a backward), that the array still holds
 * the `length` values it had: its owner may have detached its buffer (a transfer) or shrunk a
 * resizable one meanwhile. A copy that went on would read fewer values than the shape says,
 * without an error, and normalize whatever the staging memory held. A call that throws this
 * changes nothing, as an aborted one. `during` ends the message's first part: a module's state
 * methods, which no call runs, pass ''.
 */
export function checkIntact(array: { readonly length: number }, length: number, name: string, during = ' while a call uses it'): void {
  const have = heldLength(array);
  if (have < length) {
    throw new ArgumentError(
      `${name} must keep its ${length} values${during}; its buffer was detached or resized, and it now has ${have}`,
    );
  }
}

/**
 * `array.length`, but 0 for a typed array whose buffer was detached, told by the buffer. Node
 * 20's V8 (11.3) gets a detached typed array's `length` wrong in optimized code that has seen a
 * typed array on a resizable ArrayBuffer: it returns the length from before the transfer. So a
 * check of `length` alone let a detached array through once a caller had passed views of
 * resizable buffers (the fuzz test found it: the typed-array `set` after the check then threw a
 * TypeError; a loop of writes would have written nothing, silently). The buffer's `byteLength`
 * reads 0 in that same optimized code (test/validate.test.ts reproduces both with V8's test
 * natives).
 */
export function heldLength(array: { readonly length: number }): number {
  return ArrayBuffer.isView(array) && array.buffer.byteLength === 0 ? 0 : array.length;
}

/** Checks an optional callback option (a hook): undefined, or a function. */
export function checkOptionalFunction<F extends (...args: never[]) => unknown>(value: unknown, name: string): F | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new ArgumentError(`${name} must be a function; got ${describe(value)}`);
  }
  return value as F | undefined;
}

/**
 * Checks `out`: same dtype and length as `input`, either `input` itself (in place) or not
 * overlapping it, and not overlapping any of `others` (arrays the call reads while it writes
 * `out`, such as a backward's x and mask), which it must leave as they are.
 */
export function checkOut(
  out: unknown, input: FloatArray, dtype: Dtype, inputName = 'x', others: readonly (readonly [FloatArray | null, string])[] = [],
): FloatArray | null {
  if (out === undefined || out === null) return null;
  checkDtype(out, 'options.out', dtype);
  const y = out as FloatArray;
  if (y.length !== input.length) {
    throw new ArgumentError(`options.out must have the input's length ${input.length}; got ${lengthGiven(y)}`);
  }
  if (overlaps(y, input) && y.byteOffset !== input.byteOffset) {
    throw new ArgumentError(
      `options.out must be ${inputName} itself (in place) or not overlap it; got an array overlapping ${inputName} at a byte offset of ${y.byteOffset - input.byteOffset}`,
    );
  }
  const hit = firstOverlap(y, others.filter(([other]) => other !== input));
  if (hit !== null) {
    throw new ArgumentError(
      `options.out must not overlap ${hit[1]}, which the call reads (and keeps); got an array overlapping it at a byte offset of ${y.byteOffset - hit[0].byteOffset}`,
    );
  }
  return y;
}

/**
 * The two arrays a call writes its per-channel results into (a backward's `options.dWeight` and
 * `dBias`; a functional forward's `meanOut` and `varOut`), each given as [value, name]: null
 * where not given, else an array of `dtype` and length C that overlaps none of `others` (the
 * arrays the call reads or writes) nor the first of the two.
 */
export function checkChannelOuts(
  pair: readonly [readonly [unknown, string], readonly [unknown, string]], dtype: Dtype, C: number,
  others: readonly (readonly [unknown, string])[],
): [FloatArray | null, FloatArray | null] {
  const [[firstValue, firstName], [secondValue, secondName]] = pair;
  const first = checkChannelOut(firstValue, firstName, dtype, C, others);
  return [first, checkChannelOut(secondValue, secondName, dtype, C, [...others, [first, firstName]])];
}

function checkChannelOut(value: unknown, name: string, dtype: Dtype, C: number, others: readonly (readonly [unknown, string])[]): FloatArray | null {
  if (value === undefined || value === null) return null;
  checkDtype(value, name, dtype);
  const array = checkChannelArray(value, name, C);
  const hit = firstOverlap(array, others);
  if (hit !== null) {
    throw new ArgumentError(`${name} must not overlap ${hit[1]}; got an array overlapping it at a byte offset of ${array.byteOffset - hit[0].byteOffset}`);
  }
  return array;
}

/** The first of `others` (a float array, or null or undefined: skipped) that `array` overlaps. */
function firstOverlap(array: FloatArray, others: readonly (readonly [unknown, string])[]): readonly [FloatArray, string] | null {
  for (const [other, name] of others) {
    if (other !== null && other !== undefined && overlaps(array, other as FloatArray)) return [other as FloatArray, name];
  }
  return null;
}

function overlaps(a: FloatArray, b: FloatArray): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}
