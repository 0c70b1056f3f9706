// Where a call's time goes, between the calling thread and the workers: zero-copy calls (x, `out`,
// dy, dx from `pool.alloc`) of a benchmark shape on a pool, beside the floor on the same pool and
// arrays, alternated call by call. For each kind of call it prints the medians, in ms from the
// call's start, of:
//   pre      the first task posted to piscina (the checks, planning, staging before it)
//   posting  the calling thread's time inside piscina's `run`, all tasks (a post wakes a worker)
//   first    the first task starting on its worker
//   last     the last task starting
//   work     a task's own time on its worker (the mean of the call's tasks)
//   gap      between the first and the last task's end (the tail: one task idle, the other not)
//   settle   from the last task's end to the call's promise settling
//   total    the call
//   kernels  with KERNELS=1: a task's time inside kernel calls on its worker (the mean of the
//            call's tasks), so that work - kernels is the executor's own JavaScript, plus what
//            the timing itself costs: more than the timestamps' ~0.3 µs a call (A's fused tasks
//            make ~600 calls); on C's eval (~45 calls a task, three runs each way, 2026-12-04
//            06:40 UTC, dc9e558) the work of a task went from 1.20-1.23 of the floor's to
//            1.33-1.41 with it, ~2-3 µs a call (the kernel behind a Proxy), so it is not on by
//            default; a line a kind of call after the table then splits it by kernel method
//            (means, ms)
// How: it copies the build's dist/ to a temporary folder, wraps the worker entry's task function
// there so that each result carries its start and end (the clocks of all threads agree:
// performance.timeOrigin + performance.now()), and wraps Piscina.prototype.run on this thread.
// The product itself is not changed. Plain JavaScript, like alternate.mjs.
//
//     npm run build && node bench/timeline.mjs [A|B|C|D|E|N,C,...] [floor,train,eval,backward,...] [threads] [dist]
//
// Kinds: floor, train, eval, backward (the defaults); stats (ChannelStats.fromBatch); backward-into (dWeight and dBias into
// arrays made once), functional and functional-into (batchNorm's training forward, its mean and
// var new or into arrays made once).
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { copyDist, replaceInCopy, wrapWorkerEntry } from './dist-copy.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [id = 'A', list = 'floor,train,eval,backward', threadArg = '2', dir = join(root, 'dist')] = process.argv.slice(2);
const kinds = list.split(',');
const threads = Number(threadArg);

const KERNELS = process.env.KERNELS === '1';

// The copy: dist/ as built, its worker entry's default export wrapped (and with KERNELS=1 its
// kernel's methods timed).
const tmp = copyDist(dir, 'timeline');
wrapWorkerEntry(tmp, `export default function runTask(task) {
  globalThis.__kernelMs = 0;
  globalThis.__kernelBy = {};
  const start = performance.timeOrigin + performance.now();
  const result = runTaskUntimed(task);
  return { ...result, timeline: [start, performance.timeOrigin + performance.now(), globalThis.__kernelMs, globalThis.__kernelBy] };
}
`, 'timeline.mjs');
if (KERNELS) {
  replaceInCopy(tmp, 'workers/worker.js', 'const kernel = createKernel(data.kernel, memory, data.wasmModule);', `const kernel = new Proxy(createKernel(data.kernel, memory, data.wasmModule), {
  get(target, name) {
    const value = target[name];
    return typeof value !== 'function' ? value : (...args) => {
      const t0 = performance.now();
      try {
        return value.apply(target, args);
      } finally {
        const ms = performance.now() - t0;
        globalThis.__kernelMs += ms;
        globalThis.__kernelBy[name] = (globalThis.__kernelBy[name] ?? 0) + ms;
      }
    };
  },
});`, 'timeline.mjs');
}

const url = (file) => pathToFileURL(join(tmp, 'dist', file)).href;
const [{ BatchNorm, ChannelStats, DEFAULT_GRAIN_SIZE, Pool, batchNorm }, { streamFloor }, { SHAPES, elementsOf, fillInput }, { Piscina }] = await Promise.all([
  import(url('src/index.js')), import(url('src/floor.js')), import(url('bench/shapes.js')), import('piscina'),
]);
// grainSize 1, every call on every thread as before the option, where the build has it (older ones refuse it).
const EVERY_THREAD = DEFAULT_GRAIN_SIZE === undefined ? {} : { grainSize: 1 };
const now = () => performance.timeOrigin + performance.now();
/** The call being timed: its posts and its tasks' results (null between calls). */
let current = null;
const run = Piscina.prototype.run;
Piscina.prototype.run = function timedRun(task, options) {
  const call = current;
  const t0 = now();
  const promise = run.call(this, task, options);
  call?.posts.push([t0, now()]);
  return call === null ? promise : promise.then((result) => {
    if (result?.timeline !== undefined) call.tasks.push(result.timeline);
    return result;
  });
};

const shape = id.includes(',') ? id.split(',').map(Number) : SHAPES.find((s) => s.id === id)?.shape;
if (shape === undefined) throw new Error(`shape: expected one of ${SHAPES.map((s) => s.id).join(', ')} or N,C,...; got ${id}`);
const n = elementsOf(shape);
const pool = new Pool({ threads, inlineThreshold: 0, ...EVERY_THREAD });
await pool.ready;
const [x, out, dy, dx] = [0, 1, 2, 3].map(() => pool.alloc(n));
fillInput(x, shape);
for (let i = 0; i < n; i++) dy[i] = x[i] * 0.5 - 0.25;
const train = new BatchNorm(shape[1], { pool });
const evalBn = new BatchNorm(shape[1], { pool }).eval();
await train.forward(x, shape, { out });
const calls = {
  floor: () => streamFloor(pool, x, out),
  train: () => train.forward(x, shape, { out }),
  eval: () => evalBn.forward(x, shape, { out }),
  // The statistics pass alone, as the bench's "statistics" rows.
  stats: () => ChannelStats.fromBatch(x, shape, { pool }),
  // After the training forward above (the module keeps its statistics for it).
  backward: () => train.backward(dy, { out: dx }),
  // The same, dWeight and dBias written into arrays made once (options.dWeight, options.dBias).
  'backward-into': () => train.backward(dy, { out: dx, dWeight: grads.dWeight, dBias: grads.dBias }),
  // The functional training forward, its mean and var new each call or into arrays made once.
  functional: () => batchNorm(x, shape, { training: true, pool, out }),
  'functional-into': () => batchNorm(x, shape, { training: true, pool, out, meanOut: stats.mean, varOut: stats.var }),
};
const grads = { dWeight: new Float32Array(shape[1]), dBias: new Float32Array(shape[1]) };
const stats = { mean: new Float64Array(shape[1]), var: new Float64Array(shape[1]) };
for (const k of kinds) if (calls[k] === undefined) throw new Error(`kinds: expected one of ${Object.keys(calls).join(', ')}; got ${k}`);

const rows = new Map(kinds.map((k) => [k, []]));
for (let round = 0; round < 45; round++) {
  for (const k of kinds) {
    current = { posts: [], tasks: [] };
    const t0 = now();
    await calls[k]();
    const t1 = now();
    const { posts, tasks } = current;
    current = null;
    if (round < 5 || tasks.length === 0) continue;
    const starts = tasks.map((t) => t[0]);
    const ends = tasks.map((t) => t[1]);
    rows.get(k).push({
      pre: posts[0][0] - t0,
      posting: posts.reduce((s, [a, b]) => s + b - a, 0),
      first: Math.min(...starts) - t0,
      last: Math.max(...starts) - t0,
      work: tasks.reduce((s, [a, b]) => s + b - a, 0) / tasks.length,
      gap: Math.max(...ends) - Math.min(...ends),
      settle: t1 - Math.max(...ends),
      total: t1 - t0,
      kernels: tasks.reduce((sum, t) => sum + t[2], 0) / tasks.length,
      byKernel: tasks.map((t) => t[3]),
    });
  }
}
await pool.close();
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
const columns = ['pre', 'posting', 'first', 'last', 'work', 'gap', 'settle', 'total', ...(KERNELS ? ['kernels'] : [])];
console.log(`[${shape.join(', ')}], ${threads} threads, zero-copy: medians of 40 calls each, ms (${new Date().toISOString()})`);
console.log(`| call | ${columns.join(' | ')} |`);
console.log(`| --- |${columns.map(() => ' ---: |').join('')}`);
for (const [k, list] of rows) {
  console.log(`| ${k} | ${columns.map((c) => median(list.map((r) => r[c])).toFixed(3)).join(' | ')} |`);
}
if (KERNELS) {
  // Each kernel method's share of `kernels`: its time a task, the mean over the call's tasks and
  // the calls (not medians: the parts of a median need not add up to it).
  console.log();
  for (const [k, list] of rows) {
    const sum = {};
    for (const r of list) {
      for (const by of r.byKernel) for (const [name, ms] of Object.entries(by)) sum[name] = (sum[name] ?? 0) + ms / (list.length * r.byKernel.length);
    }
    const parts = Object.entries(sum).sort((a, b) => b[1] - a[1]).map(([name, ms]) => `${name} ${ms.toFixed(3)}`);
    console.log(`${k}: ${parts.join(', ')}`);
  }
}
