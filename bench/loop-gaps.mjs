// How long a call holds the calling thread's event loop: a server's other work (a timer, an I/O
// callback, an immediate) waits for the longest stretch between two turns. For each scenario it
// runs calls of a shape (benchmark shape A [32, 64, 112, 112] by default; float32, channels
// first), one at a time, with a setImmediate
// tick re-armed at every turn meanwhile, and prints the median call, the fewest turns a call got,
// and the longest stretch without one (its largest over the calls, and the median of each call's
// largest), in ms. Stretches include what the operating system takes from the thread: with a
// busy worker on each of this machine's two vCPUs, the calling thread waits for a core too
// (README, "Why the open targets stay open here").
//
//     npm run build && node bench/loop-gaps.mjs [threads=1] [calls=10] [shape=32,64,112,112] [dist]
//
// Scenarios: eval, training forward and backward (after an untimed training forward), with x and `out`
// ordinary arrays (the calling thread copies them in and out, COPY_SLICE_BYTES between turns:
// README, "What copies") or from `pool.alloc` (nothing copied). With one worker the ordinary
// arrays' calls pipeline their copies (a core is left for the calling thread). Plain JavaScript,
// like alternate.mjs; `dist` picks another build (a worktree's) to compare with.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const threads = Number(process.argv[2] ?? 1);
const calls = Number(process.argv[3] ?? 10);
const shape = (process.argv[4] ?? '32,64,112,112').split(',').map(Number);
const dist = resolve(process.argv[5] ?? 'dist');
const { BatchNorm, Pool } = await import(pathToFileURL(`${dist}/src/index.js`).href);

const n = shape.reduce((a, b) => a * b);
const pool = new Pool({ threads });
const ordinary = { x: new Float32Array(n), dy: new Float32Array(n), out: new Float32Array(n) };
const onPool = { x: pool.alloc(n), dy: pool.alloc(n), out: pool.alloc(n) };
let seed = 1;
const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
for (let i = 0; i < n; i++) ordinary.x[i] = 3 + random();
for (let i = 0; i < n; i++) ordinary.dy[i] = random() - 0.5;
onPool.x.set(ordinary.x);
onPool.dy.set(ordinary.dy);

const bn = new BatchNorm(shape[1], { pool });
/** [name, the call, what runs untimed before each call] */
const scenarios = [];
for (const [where, arrays] of [['ordinary', ordinary], ['pool', onPool]]) {
  const train = () => bn.forward(arrays.x, shape, { out: arrays.out });
  scenarios.push([`eval, ${where} x and out`, () => bn.forward(arrays.x, shape, { out: arrays.out }), () => bn.eval()]);
  scenarios.push([`training forward, ${where}`, train, () => bn.train()]);
  scenarios.push([`backward, ${where}`, () => bn.backward(arrays.dy, { out: arrays.out }), async () => { bn.train(); await train(); }]);
}

/** Runs `call` with a tick at every turn; resolves to [ms, turns, the longest stretch in ms]. */
async function measured(call) {
  let running = true;
  let turns = 0;
  let longest = 0;
  const start = performance.now();
  let last = start;
  const tick = () => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    turns++;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  await call();
  const end = performance.now();
  running = false;
  return [end - start, turns, Math.max(longest, end - last)];
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.log(`${shape} float32, ${threads} worker${threads > 1 ? 's' : ''}, ${calls} calls a scenario (${dist})`);
console.log('| scenario | call ms (median) | fewest turns | longest stretch ms (max) | (median) |');
console.log('| --- | --- | --- | --- | --- |');
for (const [name, call, setup] of scenarios) {
  const rows = [];
  for (let i = 0; i < calls + 2; i++) {
    await setup();
    const row = await measured(call);
    if (i >= 2) rows.push(row); // two warm-up calls
  }
  const cells = [median(rows.map((r) => r[0])), Math.min(...rows.map((r) => r[1])), Math.max(...rows.map((r) => r[2])), median(rows.map((r) => r[2]))];
  console.log(`| ${name} | ${cells[0].toFixed(2)} | ${cells[1]} | ${cells[2].toFixed(2)} | ${cells[3].toFixed(2)} |`);
}
await pool.close();
