/**
 * The file piscina loads in each worker. piscina loads a worker file with `require()` first, and
 * on Node 20.19+ `require()` of an ES module (workers/worker.ts) instantiates it synchronously:
 * a worker terminated while doing so (a pool closed while its workers start) aborted the whole
 * process ("FATAL ERROR: v8::Module::IsGraphAsync ... must be used on an instantiated module",
 * Node 20.20; test/lifecycle.test.ts). This entry is CommonJS: `require()` of it is plain, and it
 * loads the ES module with `import()`, which a termination interrupts safely. It starts loading
 * at once, as piscina's own preload did; tasks that come first wait for it.
 */
import type { BytesTask, Posted, StreamTask, Task, TaskResult } from './protocol.js';

type Sent = Posted<Task | StreamTask | BytesTask>;
type RunTask = (task: Sent) => TaskResult;

const loading: Promise<RunTask> = import('./worker.js').then((m) => m.default);
let run: RunTask | undefined;
// A failed load reaches the first task; handled here, it does not end the worker before that.
void loading.then((f) => { run = f; }, () => {});

export = function runTask(task: Sent): TaskResult | Promise<TaskResult> {
  return run === undefined ? loading.then((f) => f(task)) : run(task);
};
