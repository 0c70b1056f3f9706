/**
 * The prep of a call's first dispatch (see `Task.prep`): the interleaved per-channel parameters
 * the kernels read, made by the call's tasks from the per-channel arrays the main thread copied
 * onto the pool, claimed PREP_CHANNELS at a time.
 */
import type { MemoryViews } from './execute.js';
import {
  CHANNEL_BIAS, CHANNEL_INVSTD, CHANNEL_MEAN, CHANNEL_VAR, CHANNEL_WEIGHT, PARAM_BYTES, PREP_CHANNELS,
  type ScratchLayout, type Task,
} from './protocol.js';

/**
 * The prep of a call's first dispatch (see `Task.prep`): claims PREP_CHANNELS channels at a time
 * and writes their interleaved parameters from the per-channel arrays, then waits until every
 * channel is prepared, spinning for up to `task.spinMs`, then sleeping. Only claimed channels can
 * be outstanding, and the tasks that claimed them are running, so the wait is short. False when
 * the call was cancelled first.
 */
export function prepare(task: Task, views: MemoryViews, layout: ScratchLayout, cancelled: () => boolean): boolean {
  const { i32, f64 } = views;
  const { C } = task.grid;
  const claim = layout.prepClaimByte / 4;
  const done = layout.prepDoneByte / 4;
  for (let c0 = Atomics.add(i32, claim, 1) * PREP_CHANNELS; c0 < C; c0 = Atomics.add(i32, claim, 1) * PREP_CHANNELS) {
    const c1 = Math.min(c0 + PREP_CHANNELS, C);
    if (task.prep === 'eval') prepareEval(f64, layout, C, c0, c1, task.eps);
    else prepareBackward(f64, layout, C, c0, c1, task.prep === 'backward-var' ? task.eps : null);
    if (Atomics.add(i32, done, c1 - c0) + (c1 - c0) === C) Atomics.notify(i32, done);
  }
  const spinUntil = performance.now() + task.spinMs;
  for (let seen = Atomics.load(i32, done); seen < C; seen = Atomics.load(i32, done)) {
    if (cancelled()) return false;
    // The main thread also notifies this word when it cancels.
    if (performance.now() > spinUntil) Atomics.wait(i32, done, seen, 50);
  }
  return true;
}

/**
 * Eval: channel c's parameters (mean, weight / sqrt(var + eps), bias) from the running statistics
 * and the affine parameters in the per-channel arrays, as the merge writes them from batch
 * statistics (src/merge.ts: the same operations, the same bits).
 */
function prepareEval(f64: Float64Array, layout: ScratchLayout, C: number, c0: number, c1: number, eps: number): void {
  const at = layout.channelsByte / 8;
  const mean = at + C * CHANNEL_MEAN;
  const variance = at + C * CHANNEL_VAR;
  const weight = at + C * CHANNEL_WEIGHT;
  const bias = at + C * CHANNEL_BIAS;
  for (let c = c0, q = (layout.paramsByte + c0 * PARAM_BYTES) / 8; c < c1; c++, q += PARAM_BYTES / 8) {
    f64[q] = f64[mean + c];
    f64[q + 1] = f64[weight + c] / Math.sqrt(f64[variance + c] + eps);
    f64[q + 2] = f64[bias + c];
  }
}

/**
 * Backward: channel c's (mean, invstd, weight, 0), which its merge turns into dx coefficients;
 * with `eps`, INVSTD = 1 / sqrt(var + eps) from VAR first.
 */
function prepareBackward(f64: Float64Array, layout: ScratchLayout, C: number, c0: number, c1: number, eps: number | null): void {
  const at = layout.channelsByte / 8;
  if (eps !== null) {
    for (let c = c0; c < c1; c++) f64[at + C * CHANNEL_INVSTD + c] = 1 / Math.sqrt(f64[at + C * CHANNEL_VAR + c] + eps);
  }
  for (let c = c0; c < c1; c++) {
    const q = (layout.paramsByte + c * PARAM_BYTES) / 8;
    f64[q] = f64[at + C * CHANNEL_MEAN + c];
    f64[q + 1] = f64[at + C * CHANNEL_INVSTD + c];
    f64[q + 2] = f64[at + C * CHANNEL_WEIGHT + c];
    f64[q + 3] = 0;
  }
}
