// What the calling thread does before a call's tasks reach the workers, step by step: eval
// forwards (zero-copy: x and `out` from `pool.alloc`) of a shape on a pool of 2 workers, in a run
// of calls, as tinybench's samples go. For each step, the median time from the call's start to
// the step's end, and the step's own share, in µs:
//   checked   the arguments checked (BatchNorm.forward, up to its place in the module's queue)
//   queued    its turn in the module's call order, the arrays pinned
//   grid      the grid planned (engine.ts, execute)
//   blocks    the call's scratch area allocated on the pool, and x and `out` placed (zero-copy
//             here: no staging): memory-line.ts, takeBlocks
//   ready     the scratch's flags zeroed and the abort watch set
//   channels  the per-channel arrays (weight, bias, running statistics) copied onto the pool
//   tasks     the tasks made and the claim counters zeroed (dispatch.ts), up to the pool
//   post k    piscina's `run` of task k returned (a post: the message and a worker's wake-up)
//   work      the last task ended on its worker
//   settled   the tasks' results in (dispatch.ts, runPhase)
//   results   the per-channel results copied off the pool (engine.ts), and the scratch freed
//   end       the call's promise settled, as its caller sees it
// and in how many of the calls each task ran on the worker that ran it most often (piscina picks
// the worker; the tasks' claims keep each task's part of the tensor on its worker only where it
// picks the same one: Task.slot).
// How: it copies the build's dist/ to a temporary folder and inserts a timestamp at each step
// there, and has the worker entry's tasks return their end time (as timeline.mjs does; the
// product itself is not changed); if a step's line is not found, the code moved: update the
// anchors below. Plain JavaScript, like timeline.mjs.
//
//     npm run build && node bench/calling-thread.mjs [A|B|C|D|E|N,C,...]... [dist]
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { copyDist, replaceInCopy, wrapWorkerEntry } from './dist-copy.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const dir = args.length > 0 && existsSync(resolve(args.at(-1), 'src/index.js')) ? args.pop() : join(root, 'dist');
const ids = args.length > 0 ? args : ['A', 'C', 'E'];

const tmp = copyDist(dir, 'calling-thread');

/** Inserts `globalThis.__step?.(label)` before each anchor (its first occurrence) of a file. */
function mark(file, steps) {
  for (const [anchor, label] of steps) {
    replaceInCopy(tmp, file, anchor, `globalThis.__step?.(${JSON.stringify(label)});\n${anchor}`, 'calling-thread.mjs');
  }
}
mark('src/batch-norm.js', [
  ['        return this.#calls.run(ctx, signal, pinArrays([x, out]), async () => {', 'checked'],
  ['            const { result, count } = await runForward(', 'queued'],
]);
mark('src/engine.js', [
  ['    const inline = dims.length <= shared.inlineThreshold;', 'grid'],
  ['    const { scratchByte, placed } = held.value;', 'blocks'],
  ['        const y = placed.y ?? req.x.subarray(0, 0);', 'ready'],
  ["            call.prep = 'eval';", 'channels'],
  // The end of execute's `finally` (the scratch freed), before its closing braces.
  ['    }\n}\n/**\n * The channel groups of a split call', 'results'],
]);
mark('src/dispatch.js', [['    throwTaskFailure(settled);', 'settled']]);
// Each task's end, on its worker (the clocks of all threads agree: timeOrigin + now()), and the worker.
wrapWorkerEntry(tmp, `import { threadId as calledOn } from 'node:worker_threads';
export default function runTask(task) {
  const result = runTaskUntimed(task);
  return { ...result, ended: performance.timeOrigin + performance.now(), worker: calledOn };
}
`, 'calling-thread.mjs');

const url = (file) => pathToFileURL(join(tmp, 'dist', file)).href;
const [{ BatchNorm, DEFAULT_GRAIN_SIZE, Pool }, { SHAPES, elementsOf, fillInput }, { Piscina }] = await Promise.all([
  import(url('src/index.js')), import(url('bench/shapes.js')), import('piscina'),
]);
// grainSize 1, every call on every thread as before the option, where the build has it (older ones refuse it).
const EVERY_THREAD = DEFAULT_GRAIN_SIZE === undefined ? {} : { grainSize: 1 };
let steps = null;
/** The worker of each task of the call being timed, by the task's place in the call. */
let workers = null;
globalThis.__step = (label) => steps?.push([label, performance.now()]);
const run = Piscina.prototype.run;
Piscina.prototype.run = function timedRun(task, options) {
  if (steps !== null && !steps.some(([label]) => label === 'tasks')) steps.push(['tasks', performance.now()]);
  const promise = run.call(this, task, options);
  const call = steps;
  const calledWorkers = workers;
  const place = calledWorkers?.length ?? 0;
  calledWorkers?.push(null);
  call?.push([`post ${call.filter(([label]) => label.startsWith('post')).length + 1}`, performance.now()]);
  return promise.then((result) => {
    if (call !== null && result?.ended !== undefined) {
      const ended = result.ended - performance.timeOrigin;
      const work = call.find(([label]) => label === 'work');
      if (work === undefined) call.push(['work', ended]);
      else work[1] = Math.max(work[1], ended);
    }
    if (calledWorkers !== null) calledWorkers[place] = result?.worker ?? null;
    return result;
  });
};

const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
const pool = new Pool({ threads: 2, inlineThreshold: 0, ...EVERY_THREAD });
await pool.ready;
console.log(`eval forwards, 2 workers, zero-copy; medians of 300 calls, µs from the call's start (the step's own) (${new Date().toISOString()})`);
for (const id of ids) {
  const shape = id.includes(',') ? id.split(',').map(Number) : SHAPES.find((s) => s.id === id)?.shape;
  if (shape === undefined) throw new Error(`shape: expected one of ${SHAPES.map((s) => s.id).join(', ')} or N,C,...; got ${id}`);
  const n = elementsOf(shape);
  const x = pool.alloc(n);
  const out = pool.alloc(n);
  fillInput(x, shape);
  const bn = new BatchNorm(shape[1], { pool }).eval();
  const calls = [];
  const placesOf = [];
  for (let i = 0; i < 350; i++) {
    steps = [];
    workers = [];
    const t0 = performance.now();
    await bn.forward(x, shape, { out });
    steps.push(['end', performance.now()]);
    // The tasks' ends are pushed as their results arrive: put the last one in its place in time.
    steps.sort((a, b) => a[1] - b[1]);
    if (i >= 50) {
      calls.push(steps.map(([label, t]) => [label, (t - t0) * 1000]));
      placesOf.push(workers);
    }
    steps = null;
    workers = null;
  }
  pool.free(x);
  pool.free(out);
  const labels = calls[0].map(([label]) => label);
  if (!calls.every((c) => c.length === labels.length)) throw new Error('the calls did not all take the same steps');
  let before = 0;
  const cells = labels.map((label, k) => {
    const at = median(calls.map((c) => c[k][1]));
    const cell = `${label} ${at.toFixed(0)} (${(at - before).toFixed(0)})`;
    before = at;
    return cell;
  });
  const kept = placesOf[0].map((_, k) => {
    const counts = new Map();
    for (const w of placesOf) counts.set(w[k], (counts.get(w[k]) ?? 0) + 1);
    return Math.max(...counts.values());
  });
  console.log(`[${shape.join(', ')}]: ${cells.join(', ')}; task k on its usual worker in ${kept.join(', ')} of ${placesOf.length} calls`);
}
await pool.close();
