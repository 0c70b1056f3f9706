/**
 * A call's per-channel arrays on the pool's memory (weight, bias, the statistics, their results:
 * CHANNEL_* in workers/scratch.ts): what goes on before the call's tasks, views and copies of
 * what comes back, and the turns of the event loop between steps over large ones.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { channelArrayByte, type ScratchLayout } from '../workers/scratch.js';
import type { PoolInternals } from './pool-internals.js';
import { checkIntact, type FloatArray } from './validate.js';

/**
 * The most channels a per-channel step of a call handles between two turns of the event loop
 * (1 MiB of float64): the copies of per-channel arrays onto the pool and off it, the arrays made
 * new, the checks and loops over the channels, the running update. The first writes to a new
 * array's pages are page faults: a synced forward of [16, 262144], whose local statistics are four
 * new arrays of 2 MiB, held the loop 22 ms in one piece on the sixth machine, and [2, 4194304]
 * 98 ms (`npm run bench:wide`, 2026-12-03 20:54 UTC). Copies and loops onto memory already
 * touched cost less but add up: a module's training forward of [2, 4194304] held it 15.6-17.0 ms
 * with its copies in one piece and its running update a loop over 4M channels, an eval forward
 * 11.8-12.9 (README "How the work is split" has the holds in slices).
 */
export const CHANNEL_SLICE = 1 << 17;

/**
 * The slice of a step that writes an array made new for the call (FRESH_SLICE channels, a quarter
 * of CHANNEL_SLICE: 256 KiB of float64), where the call slices at all: the first writes to its
 * pages are page faults, ~15-30 µs a 4 KiB page on the sixth machine, so that a slice of 1 MiB of
 * them held the event loop 4-7 ms. `node bench/new-arrays.mjs` (functional calls of [2, 4194304]
 * with new result arrays, four runs of each build in turn, 2026-12-04 01:57-01:59 UTC): the
 * longest hold of an eval went from 3.9-5.3 ms to 1.6-2.1, of a backward from 4.7-6.9 to 2.0-4.0;
 * a training forward's, 4.2-11.0 before and 2.0-9.9 after, is another piece's.
 */
export const FRESH_SLICE = CHANNEL_SLICE >> 2;

/**
 * Runs `step` over channels [0, C): at once for at most CHANNEL_SLICE of them, else over slices of
 * `slice` (CHANNEL_SLICE unless given: FRESH_SLICE for a step that writes new arrays), each after
 * `pause` (a turn of the event loop unless given; a call's `pauseIn` also stops it there where it
 * was aborted). A step that reads or writes a caller's array checks it whole again in each slice
 * (`checkIntact`): its owner may detach or shrink it during a turn.
 */
export async function inChannelSlices(
  C: number, step: (c0: number, c1: number) => void, pause: () => Promise<void> = nextTurn, slice = CHANNEL_SLICE,
): Promise<void> {
  if (C <= CHANNEL_SLICE) {
    step(0, C);
    return;
  }
  for (let c0 = 0; c0 < C; c0 += slice) {
    await pause();
    step(c0, Math.min(C, c0 + slice));
  }
}

/**
 * A new array of `Ctor` (float64 unless given) holding the view `viewOf` makes (of the call's
 * per-channel array on the pool's memory, channelsView), written in slices of FRESH_SLICE between
 * turns of the event loop (inChannelSlices): the new array's page faults are most of the cost.
 * The view is made again for each slice: a call on the pool's private memory may have grown it
 * during the turn before, which detaches the buffer of any view made earlier.
 */
export function newCopy(viewOf: () => Float64Array, Ctor?: Float64ArrayConstructor): Promise<Float64Array>;
export function newCopy(viewOf: () => Float64Array, Ctor: Float32ArrayConstructor | Float64ArrayConstructor): Promise<FloatArray>;
export async function newCopy(
  viewOf: () => Float64Array, Ctor: Float32ArrayConstructor | Float64ArrayConstructor = Float64Array,
): Promise<FloatArray> {
  const copy = new Ctor(viewOf().length);
  await inChannelSlices(copy.length, (c0, c1) => copy.set(viewOf().subarray(c0, c1), c0), nextTurn, FRESH_SLICE);
  return copy;
}

/**
 * One per-channel input of a call: its array k (CHANNEL_MEAN ...) from `values`, or filled with
 * `fill` where `values` is null; with `divisor`, values[c] / divisor (a synced forward's variance
 * from its merged m2 and count, with no C-value array of its own: for 4M channels a new one cost
 * ~30 ms, most of it page faults).
 */
export interface ChannelPut {
  readonly k: number;
  readonly values: FloatArray | null;
  readonly fill: number;
  readonly name: string;
  readonly divisor?: number;
}

/**
 * Writes a call's per-channel inputs onto the pool, all of them a slice of channels at a time
 * (inChannelSlices, with `pause` between slices): typed-array `set`s and `fill`s, native code. A
 * float32 array's values become float64 on the way (~0.6 ns a value here: four arrays of 4M
 * channels held the loop 12-15 ms in one piece before the slices). Each array is checked whole
 * again in each slice (`checkIntact`): it was checked at the call's start, which may have waited
 * for its turn since, and its owner may detach or shrink it during a turn; then the call rejects
 * before its work starts.
 */
export async function putChannels(
  ctx: PoolInternals, layout: ScratchLayout, C: number, puts: readonly ChannelPut[], pause?: () => Promise<void>,
): Promise<void> {
  await inChannelSlices(C, (c0, c1) => {
    ctx.views.refresh();
    const f64 = ctx.views.f64;
    for (const { k, values, fill, name, divisor } of puts) {
      const at = channelArrayByte(layout.channelsByte, C, k) / 8;
      if (values === null) {
        f64.fill(fill, at + c0, at + c1);
        continue;
      }
      checkIntact(values, C, name);
      if (divisor !== undefined) {
        for (let c = c0; c < c1; c++) f64[at + c] = values[c] / divisor;
      } else {
        f64.set(c0 === 0 && c1 === C ? values : values.subarray(c0, c1), at + c0);
      }
    }
  }, pause);
}

/**
 * A copy of the view `viewOf` makes (as newCopy's, made again for each slice) in `into`, or where
 * that is null in a new array of `Ctor` (newCopy: made, then `set`); either way in slices between
 * turns of the event loop where it is large (inChannelSlices: copies of 4M float64 channels took
 * ~2 ms each here).
 * Node 20's V8 builds a typed array from another of another type, or slices one on a shared
 * buffer, by a generic path: for 262,144 channels `new Float32Array(view)` took 1.7-3.8 ms and
 * `slice()` 0.9 where this took 0.2-0.4, warm (a probe). In a call the new array's first writes,
 * page faults, cost more than either: arrays given (`into`, `BackwardRequest.dWeightOut`, the
 * functional forms' `meanOut`, `varOut`, `dWeight`, `dBias`) avoid them.
 */
export function copyInto(
  viewOf: () => Float64Array, into: Float64Array | null | undefined, Ctor: Float64ArrayConstructor, name?: string,
): Promise<Float64Array>;
export function copyInto(
  viewOf: () => Float64Array, into: FloatArray | null | undefined, Ctor: Float32ArrayConstructor | Float64ArrayConstructor, name?: string,
): Promise<FloatArray>;
export async function copyInto(
  viewOf: () => Float64Array, into: FloatArray | null | undefined, Ctor: Float32ArrayConstructor | Float64ArrayConstructor,
  name = 'an output array',
): Promise<FloatArray> {
  if (into == null) return newCopy(viewOf, Ctor);
  // A caller's array, checked at the call's start, may have been detached or shrunk since (or,
  // over many channels, during a turn between slices).
  const C = viewOf().length;
  await inChannelSlices(C, (c0, c1) => {
    checkIntact(into, C, name);
    into.set(viewOf().subarray(c0, c1), c0);
  });
  return into;
}

/**
 * Per-channel array k of the call, a view of the pool's memory made now (the views refreshed
 * first): copy it before the call ends, and make it again after any await (newCopy, copyInto).
 */
export function channelsView(ctx: PoolInternals, layout: ScratchLayout, C: number, k: number): Float64Array {
  ctx.views.refresh();
  const at = channelArrayByte(layout.channelsByte, C, k) / 8;
  return ctx.views.f64.subarray(at, at + C);
}
