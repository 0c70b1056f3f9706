/**
 * The prep of a call's first dispatch (see `Task.prep`): the interleaved per-channel parameters
 * the kernels read, made by the call's tasks from the per-channel arrays the main thread copied
 * onto the pool, claimed PREP_CHANNELS at a time.
 */
import { rowParamsOf } from './row-blocks.js';
import type { MemoryViews } from './execute.js';
import type { Kernel } from './kernels/kernel.js';
import { PREP_CHANNELS, type Task } from './protocol.js';
import type { ScratchLayout } from './scratch.js';
import { waitOn } from './wait.js';

/**
 * The prep of a call's first dispatch (see `Task.prep`): claims PREP_CHANNELS channels at a time
 * and writes their interleaved parameters from the per-channel arrays, then waits until every
 * channel is prepared, spinning for up to `task.spinMs`, then sleeping. Only claimed channels can
 * be outstanding, and the tasks that claimed them are running, so the wait is short. False when
 * the call was cancelled first.
 */
export function prepare(task: Task, kernel: Kernel, views: MemoryViews, layout: ScratchLayout, cancelled: () => boolean): boolean {
  const { i32 } = views;
  const { C } = task.grid;
  const claim = layout.prepClaimByte / 4;
  const done = layout.prepDoneByte / 4;
  const [rowParams, stride] = rowParamsOf(task, layout);
  for (let c0 = Atomics.add(i32, claim, 1) * PREP_CHANNELS; c0 < C; c0 = Atomics.add(i32, claim, 1) * PREP_CHANNELS) {
    const c1 = Math.min(c0 + PREP_CHANNELS, C);
    if (task.prep === 'eval') kernel.prepareEval(layout.channelsByte, C, c0, c1, layout.paramsByte, task.eps, rowParams, stride);
    else {
      const fromVar = task.prep === 'backward-var' || task.prep === 'apply-var';
      kernel.prepareBackward(layout.channelsByte, C, c0, c1, layout.paramsByte, task.eps, fromVar, task.prep === 'apply' || task.prep === 'apply-var');
    }
    if (Atomics.add(i32, done, c1 - c0) + (c1 - c0) === C) Atomics.notify(i32, done);
  }
  return waitOn(i32, done, (prepared) => prepared >= C, task.spinMs, cancelled);
}
