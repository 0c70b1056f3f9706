/**
 * A call's per-channel arrays on the pool's memory (weight, bias, the statistics, their results:
 * CHANNEL_* in workers/protocol.ts): what goes on before the call's tasks, views and copies of
 * what comes back, and the turns of the event loop between steps over large ones.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { channelArrayByte, type ScratchLayout } from '../workers/protocol.js';
import type { PoolInternals } from './pool-internals.js';
import { checkIntact, type FloatArray } from './validate.js';

/**
 * The most channels a per-channel step that makes new arrays handles between two turns of the
 * event loop (1 MiB of float64). The first writes to a new array's pages are page faults: a
 * synced forward of [16, 262144], whose local statistics are four new arrays of 2 MiB, held the
 * loop 22 ms in one piece on the sixth machine, and [2, 4194304] 98 ms (`npm run bench:wide`,
 * 2026-12-03 20:54 UTC; a CPU profile of such calls put 54% of this thread's time in those
 * copies and counts). In slices of this size, 1.1-3.1 and 18-25 ms (21:40 UTC, README "How the
 * work is split").
 */
export const CHANNEL_SLICE = 1 << 17;

/**
 * A turn of the event loop between two steps of a call over more than CHANNEL_SLICE channels,
 * each a copy or a loop of a ms or more: a server's other requests wait for one step, not for all
 * of them. Nothing for fewer channels.
 */
export function channelsTurn(C: number): Promise<void> | undefined {
  return C > CHANNEL_SLICE ? nextTurn() : undefined;
}

/**
 * Runs `step` over channels [0, C): at once for at most CHANNEL_SLICE of them, else over slices of
 * CHANNEL_SLICE, each after a turn of the event loop. For steps that write memory of their own
 * only (new arrays, the call's scratch): a caller's array may change during the turns.
 */
export async function inChannelSlices(C: number, step: (c0: number, c1: number) => void): Promise<void> {
  if (C <= CHANNEL_SLICE) {
    step(0, C);
    return;
  }
  for (let c0 = 0; c0 < C; c0 += CHANNEL_SLICE) {
    await nextTurn();
    step(c0, Math.min(C, c0 + CHANNEL_SLICE));
  }
}

/**
 * A new array of `Ctor` (float64 unless given) holding `view` (of the pool's memory, which stays
 * valid while the memory grows), written in slices between turns of the event loop
 * (inChannelSlices): the new array's page faults are most of the cost.
 */
export function newCopy(view: Float64Array, Ctor?: Float64ArrayConstructor): Promise<Float64Array>;
export function newCopy(view: Float64Array, Ctor: Float32ArrayConstructor | Float64ArrayConstructor): Promise<FloatArray>;
export async function newCopy(view: Float64Array, Ctor: Float32ArrayConstructor | Float64ArrayConstructor = Float64Array): Promise<FloatArray> {
  const copy = new Ctor(view.length);
  await inChannelSlices(view.length, (c0, c1) => copy.set(view.subarray(c0, c1), c0));
  return copy;
}

/**
 * Per-channel array k of the call (CHANNEL_MEAN ...) from `values`, or filled with `fill` when
 * null: one typed-array `set` (or `fill`), native code whatever C is, never a loop here. `values`
 * was checked at the call's start, which may have waited for its turn since: it is checked whole
 * again (`checkIntact`), where a detached one would set nothing.
 */
export function putChannels(
  ctx: PoolInternals, layout: ScratchLayout, C: number, k: number, values: ArrayLike<number> | null, fill: number, name: string,
): void {
  const at = channelArrayByte(layout.channelsByte, C, k) / 8;
  if (values === null) {
    ctx.views.f64.fill(fill, at, at + C);
  } else {
    checkIntact(values, C, name);
    ctx.views.f64.set(values, at);
  }
}

/**
 * Per-channel array k of the call from values[c] / divisor, written straight onto the pool: a
 * synced forward's variance from its merged m2 and count, without a C-value array of its own (for
 * 4M channels a new one cost this thread ~30 ms, most of it page faults). Checked whole first, as
 * putChannels checks.
 */
export function putDivided(
  ctx: PoolInternals, layout: ScratchLayout, C: number, k: number, values: ArrayLike<number>, divisor: number, name: string,
): void {
  checkIntact(values, C, name);
  const at = channelArrayByte(layout.channelsByte, C, k) / 8;
  const f64 = ctx.views.f64;
  for (let c = 0; c < C; c++) f64[at + c] = values[c] / divisor;
}

/**
 * A copy of `view` (of the pool's memory) in `into`, or where that is null in a new array of
 * `Ctor` (newCopy: made, then `set` in slices between turns of the event loop where it is large).
 * Node 20's V8 builds a typed array from another of another type, or slices one on a shared
 * buffer, by a generic path: for 262,144 channels `new Float32Array(view)` took 1.7-3.8 ms and
 * `slice()` 0.9 where this took 0.2-0.4, warm (a probe). In a call the new array's first writes,
 * page faults, cost more than either: arrays given (`into`, `BackwardRequest.dWeightOut`, the
 * functional forms' `meanOut`, `varOut`, `dWeight`, `dBias`) avoid them.
 */
export function copyInto(view: Float64Array, into: Float64Array | null | undefined, Ctor: Float64ArrayConstructor, name?: string): Promise<Float64Array>;
export function copyInto(
  view: Float64Array, into: FloatArray | null | undefined, Ctor: Float32ArrayConstructor | Float64ArrayConstructor, name?: string,
): Promise<FloatArray>;
export async function copyInto(
  view: Float64Array, into: FloatArray | null | undefined, Ctor: Float32ArrayConstructor | Float64ArrayConstructor, name = 'an output array',
): Promise<FloatArray> {
  if (into == null) return newCopy(view, Ctor);
  // A caller's array, checked at the call's start, may have been detached or shrunk since.
  checkIntact(into, view.length, name);
  into.set(view);
  return into;
}

/** Per-channel array k of the call, a view of the pool's memory (copy it before the call ends). */
export function channelsView(ctx: PoolInternals, layout: ScratchLayout, C: number, k: number): Float64Array {
  const at = channelArrayByte(layout.channelsByte, C, k) / 8;
  return ctx.views.f64.subarray(at, at + C);
}
