// How the stale-memory fault of 2026-12-04 was reproduced (README, "Using it": a worker that was
// starting while the calling thread grew the shared memory kept its old `memory.buffer`, and its
// first Atomics access to a call's scratch past that length threw "Invalid atomic access
// index"). Fresh pools whose memory grows in 64 steps over 0-SPREAD ms while their workers start,
// then a training forward on arrays at the memory's end; each output is checked (per channel,
// mean 0 and variance 1 - eps / (var + eps)). Plain JavaScript, like alternate.mjs.
//
//     node bench/growth-race.mjs [dist] [pools=80] [threads=16] [spread ms=200]
//
// On this project's 2 vCPUs, at 10:31-10:46 UTC on 2026-12-04, builds before 7f7f5aa failed in
// 5 of 180 pools (16 threads, spreads of 100-300 ms; 2 of 40 with 32 threads) and in none of 50
// at spreads of 0 and 20 ms; from 11:23 to 11:30 the same builds failed in none of 380 (and 40
// of 32 threads). The race comes and goes with the machine's state, so a run without failures
// shows little: this is a probe, not a test. A patched worker (its error message given its
// buffer's length) showed the failing one's buffer 19.9 MB long against the memory's 31.1.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir = 'dist', poolsArg = '80', threadsArg = '16', spreadArg = '200'] = process.argv.slice(2);
const { BatchNorm, DEFAULT_GRAIN_SIZE, Pool } = await import(pathToFileURL(resolve(dir, 'src/index.js')).href);
// grainSize 1, every call on every thread as before the option, where the build has it (older ones refuse it).
const EVERY_THREAD = DEFAULT_GRAIN_SIZE === undefined ? {} : { grainSize: 1 };
const shape = [64, 8, 32, 32];
const n = 64 * 8 * 1024;
let seed = 5;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
let failed = 0;
let wrong = 0;
const started = performance.now();
for (let k = 0; k < Number(poolsArg); k++) {
  const pool = new Pool({ threads: Number(threadsArg), inlineThreshold: 0, ...EVERY_THREAD, initialMemory: 1 << 20 });
  // 16 MiB in 64 allocations over 0-spread ms, while the workers load.
  const gap = (Number(spreadArg) * rand()) / 64;
  for (let i = 0; i < 64; i++) {
    pool.alloc(65536);
    for (const until = performance.now() + gap; performance.now() < until;);
  }
  const x = pool.alloc(n);
  for (let i = 0; i < n; i++) x[i] = Math.sin(i) + (i % 5);
  const out = pool.alloc(n);
  try {
    await new BatchNorm(8, { pool }).forward(x, shape, { out });
    for (let c = 0; c < 8; c++) {
      let sum = 0;
      let sq = 0;
      for (let r = 0; r < 64; r++) for (let j = 0; j < 1024; j++) { const y = out[(r * 8 + c) * 1024 + j]; sum += y; sq += y * y; }
      const mean = sum / 65536;
      if (Math.abs(mean) > 1e-4 || Math.abs(sq / 65536 - mean * mean - 1) > 1e-3) wrong++;
    }
  } catch (err) {
    failed++;
    if (failed <= 3) console.log(`pool ${k}: ${err.message.slice(0, 300)}`);
  }
  await pool.close();
}
console.log(`${failed} calls failed and ${wrong} channels came out wrong in ${poolsArg} pools of ${threadsArg} threads (${((performance.now() - started) / 1000).toFixed(0)} s)`);
