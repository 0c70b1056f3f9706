/**
 * The piscina worker entry. Each worker gets the pool's shared `WebAssembly.Memory` through
 * `workerData` (its buffer, where it is a BufferMemory: memoryFromWorkers), builds its
 * kernel once, and then runs tasks synchronously (piscina's `atomics: 'sync'` lets the worker
 * sleep in `Atomics.wait` between them).
 */
import { workerData } from 'piscina';
import { serializeError } from '../src/errors.js';
import { memoryFromWorkers } from '../src/wasm-types.js';
import { copyBytesTaskOut } from './copy-out.js';
import { claimCount, coverMemory, executeTask, MemoryViews } from './execute.js';
import { runBytesTask } from './kernels/kernel.js';
import { createKernel } from './kernels/select.js';
import { type BytesTask, faultError, type KernelName, type Posted, type StreamTask, type Task, type TaskResult } from './protocol.js';
import { claimCounter, scratchLayout } from './scratch.js';

export interface WorkerData {
  /** The pool's memory, or where the runtime has no WebAssembly its buffer (memoryForWorkers). */
  readonly memory: WebAssembly.Memory | SharedArrayBuffer;
  readonly kernel: KernelName;
  readonly wasmModule: WebAssembly.Module | null;
}

const data = workerData as WorkerData;
const memory = memoryFromWorkers(data.memory);
const kernel = createKernel(data.kernel, memory, data.wasmModule);
const views = new MemoryViews(memory);

export default function runTask(task: Posted<Task | StreamTask | BytesTask>): TaskResult {
  try {
    coverMemory(memory, task.memoryBytes);
    if (task.op === 'bytes') {
      runBytesTask(kernel, task);
      if (task.copyTo !== null) copyBytesTaskOut(task, memory.buffer);
      return { ok: true, cancelled: false };
    }
    if (task.op === 'stream') {
      if (task.pass === 'read') kernel.read(task.xByte, task.n);
      else if (task.pass === 'write') kernel.fill(task.yByte, task.n, task.a);
      else kernel.stream(task.xByte, task.yByte, task.n, task.a, task.b);
      return { ok: true, cancelled: false };
    }
    if (task.fault !== undefined) injectFault(task);
    return { ok: true, cancelled: !executeTask(task, kernel, views) };
  } catch (err) {
    return { ok: false, error: serializeError(err) };
  }
}

function injectFault(task: Task): void {
  const fault = task.fault!;
  // Applied by the task's polls of the cancel flag (executeTask).
  if (fault.kind === 'cancel') return;
  if (fault.kind === 'exit') process.exit(fault.exitCode);
  if (fault.kind === 'late') {
    // Wait (30 s at most) until the claims of the first pass have handed out every item, its own
    // range's included.
    views.refresh();
    const layout = scratchLayout(task.grid, task.scratchByte);
    const until = Date.now() + 30_000;
    for (let r = 0; r < task.ranges; r++) {
      const counter = claimCounter(layout, 0, r);
      const claims = claimCount(task, r);
      while (Atomics.load(views.i32, counter) < claims && Date.now() < until) Atomics.wait(views.i32, counter, Atomics.load(views.i32, counter), 1);
    }
    return;
  }
  if (fault.kind === 'stall') {
    // Sleep until the call's cancel flag is raised (or 30 s), then run: the task sees the flag.
    views.refresh();
    Atomics.wait(views.i32, scratchLayout(task.grid, task.scratchByte).cancelByte / 4, 0, 30_000);
    return;
  }
  throw faultError(fault);
}
