// What the order of a training forward's memory traffic costs, apart from its arithmetic: A
// [32, 64, 112, 112] on raw worker threads over one shared memory (no pool, no tasks), each
// thread taking a contiguous range of channels as a fused task does, against the floor's pass in
// memory order over the same bytes on the same threads. A fused forward normalizes a channel
// right after reducing it, so it writes y in channel order: 32 runs of 49 KB, 3.2 MB apart, where
// the floor (and eval) stream the tensor in memory order. The walks are in
// bench/patterns/assembly/ (compiled here with the product's flags, workers/wasm/asc.mjs) over
// the product's own inner loops (sums32, normRunF32, stream32), beside the product's fused kernel
// itself (statsNormPlanes32, from dist/), in the order contiguous ranges of channels give and in
// the orders claims give, and the pool's own floor and training forward beside them. Prints the
// median ms (the slowest thread's, or a pool call's; medians of 7 rounds of 3 calls) and ÷ the
// floor (the raw threads').
//
//     npm run build && node bench/patterns.mjs [threads]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { compileWasm } from '../workers/wasm/asc.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [N, C, S] = [32, 64, 112 * 112];
const n = N * C * S;
const X = 1 << 20;
const Y = X + 4 * n + 2048; // 2 KiB past a multiple of 4 KiB: no 4 KiB aliasing between x and y
const ROW = C * S; // elements from one sample's channel c to the next sample's
const HALF = N / 2; // rows of a row group: two of them a channel, read in turns (as the product's)
const TURN = 512;

/** [name, what it is] in the order printed. */
const WAYS = [
  ['floor', "y = a*x + b in memory order (the bench's floor): equal contiguous parts"],
  ['floor, claims of 1 MiB', 'the same pass in 1 MiB pieces claimed from a shared counter (as eval claims)'],
  ['normalize, memory order', "each sample's run of the thread's channels (as eval goes)"],
  ['normalize, channel order', 'a channel at a time: its two row groups of 16 runs, in 512-byte turns'],
  ['normalize, 2 channels at a time', 'channel order, adjacent channels together: runs of 98 KB'],
  ['normalize, 4 channels at a time', 'runs of 196 KB'],
  ['statistics, channel order', 'the statistics alone, as the fused pass reads them'],
  ['statistics, memory order, pairs', "statsPlaneGroups from dist/ on each sample's run of the thread's channels, two planes a call in 512-byte turns (the statistics pass until 156158d)"],
  ['statistics, memory order, one stream', 'the same, a plane a call, each read at once (the statistics pass since 156158d)'],
  ['fused', 'statistics of channel c + 1 in step with the normalization of c, in 512-byte turns'],
  ['fused, a plain sum', 'the same walk with one add a vector instead of the statistics'],
  ['fused, the product', 'statsNormPlanes32 from dist/, called as a fused task calls it'],
  ['fused, the product, a call per row pair', "the same kernel called as the pool's fused tasks call it: each channel's rows two at a time (16 calls), the rows before last first"],
  ['fused, the product, one stream', 'each channel reduced by statsPlanes32 (one block, its runs read at once), then normalized, last run first'],
  ['fused, 2 channels at a time', 'statistics of channels c + 2, c + 3 with the normalization of c, c + 1'],
  ['fused, the product, channels in turn', 'each thread every other channel (as claims of one channel hand them out)'],
  ['fused, the product, 8 channels in turn', 'each thread every other run of 8 adjacent channels'],
  ['pool: the floor', "the bench's floor on a Pool of these threads, over its own arrays (calls from this thread)"],
  ['pool: training forward', 'BatchNorm.forward on the same Pool, zero-copy (fused tasks)'],
];

if (isMainThread) {
  const threads = Number(process.argv[2] ?? 2);
  const dir = mkdtempSync(join(tmpdir(), 'bnpool-patterns-'));
  const out = join(dir, 'patterns.wasm');
  compileWasm(join(root, 'bench', 'patterns', 'assembly', 'patterns.ts'), out);
  const { loadWasmModule } = await import(pathToFileURL(join(root, 'dist', 'workers', 'kernels', 'select.js')).href);
  const product = loadWasmModule();
  setFlagsFromString('--no-liftoff'); // optimized code from the start, as the product's module
  const probe = new WebAssembly.Module(readFileSync(out));
  setFlagsFromString('--liftoff');
  rmSync(dir, { recursive: true, force: true });
  const memory = new WebAssembly.Memory({ initial: Math.ceil((Y + 4 * n + (1 << 20)) / 65536), maximum: 65536, shared: true });
  const f32 = new Float32Array(memory.buffer);
  let seed = 1;
  for (let i = X / 4; i < X / 4 + n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    f32[i] = 3000 + seed / 2 ** 32;
  }
  f32.fill(1, Y / 4, Y / 4 + n);
  const ctl = new Int32Array(new SharedArrayBuffer(12)); // start barrier (two words), a claim counter
  const workers = Array.from({ length: threads }, (_, id) => new Worker(fileURLToPath(import.meta.url), { workerData: { memory, probe, product, ctl, id, threads } }));
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
  // The product through its pool, on arrays of its own (the raw threads' memory is not a pool's).
  const [{ BatchNorm, Pool }, { streamFloor }] = await Promise.all(
    ['src/index.js', 'src/floor.js'].map((file) => import(pathToFileURL(join(root, 'dist', file)).href)),
  );
  const pool = new Pool({ threads });
  const px = pool.alloc(n);
  px.set(f32.subarray(X / 4, X / 4 + n));
  const pout = pool.alloc(n);
  const bn = new BatchNorm(C, { pool });
  const timed = async (f) => {
    const t0 = performance.now();
    await f();
    return performance.now() - t0;
  };
  const onPool = {
    'pool: the floor': () => timed(() => streamFloor(pool, px, pout)),
    'pool: training forward': () => timed(() => bn.forward(px, [N, C, 112, 112], { out: pout })),
  };
  const times = WAYS.map(() => []);
  for (let round = 0; round < 7; round++) {
    for (const [k, [name]] of WAYS.entries()) {
      for (let rep = 0; rep < 4; rep++) {
        Atomics.store(ctl, 2, 0);
        const ms = onPool[name] !== undefined
          ? await onPool[name]()
          : Math.max(...await Promise.all(workers.map((w) => new Promise((resolve) => { w.once('message', resolve); w.postMessage(k); }))));
        if (rep > 0) times[k].push(ms);
      }
    }
  }
  await Promise.all([...workers.map((w) => w.terminate()), pool.close()]);
  const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
  const floor = median(times[0]);
  console.log(`A [${N}, ${C}, 112, 112], ${threads} threads, ${new Date().toISOString()}`);
  console.log('| way | ms | ÷ floor | what |');
  console.log('| --- | ---: | ---: | --- |');
  for (const [k, [name, what]] of WAYS.entries()) console.log(`| ${name} | ${median(times[k]).toFixed(2)} | ${(median(times[k]) / floor).toFixed(2)} | ${what} |`);
} else {
  const { memory, probe, product, ctl, id, threads } = workerData;
  const p = new WebAssembly.Instance(probe, { env: { memory } }).exports;
  const q = new WebAssembly.Instance(product, { env: { memory } }).exports;
  const acc = 65536 + id * 4096;
  const c0 = (id * C) / threads;
  const c1 = ((id + 1) * C) / threads;
  const xc = (c) => X + 4 * c * S;
  const yc = (c) => Y + 4 * c * S;
  const lo = Math.floor((n / threads) * id / 16) * 16;
  const hi = Math.floor((n / threads) * (id + 1) / 16) * 16;
  const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);
  /** The product's fused kernel over `list` in order: each channel reduced while the one before is normalized. */
  const fusedProduct = (list) => {
    for (const [j, c] of list.entries()) {
      const next = list[Math.min(j + 1, list.length - 1)]; // the last reduces itself again
      q.statsNormPlanes32(
        xc(next), 2, HALF * ROW, HALF, ROW, S, acc + 1024, 32, acc,
        xc(c), HALF * ROW, ROW, yc(c), HALF * ROW, ROW, 3000, 2, 0.5, 0,
      );
    }
  };
  /** The walk of `what` over the thread's channels g at a time: reduce group c + g while normalizing c (fused). */
  const channels = (what, g) => {
    for (let c = c0; c < c1; c += g) {
      const next = Math.min(c + g, c1 - g); // the last group reduces itself again: one group in 16
      p.walk(what, xc(next), xc(c), yc(c), 2, HALF * ROW, HALF, ROW, g * S, TURN, acc);
    }
  };
  const ways = [
    () => p.stream32(X + 4 * lo, Y + 4 * lo, hi - lo, 1.5, 0.25),
    () => {
      const piece = 1 << 18;
      for (let i = Atomics.add(ctl, 2, 1) * piece; i < n; i = Atomics.add(ctl, 2, 1) * piece) {
        p.stream32(X + 4 * i, Y + 4 * i, Math.min(piece, n - i), 1.5, 0.25);
      }
    },
    () => p.walk(2, 0, xc(c0), yc(c0), 1, 0, N, ROW, (c1 - c0) * S, TURN, acc),
    () => channels(2, 1),
    () => channels(2, 2),
    () => channels(2, 4),
    () => channels(3, 1),
    () => {
      for (let r = 0; r < N; r++) q.statsPlaneGroups(0, xc(c0) + 4 * r * ROW, (c1 - c0) / 2, 2 * S, 48, 2, S, 1, 0, S, acc + 1024, 32, acc);
    },
    () => {
      for (let r = 0; r < N; r++) q.statsPlaneGroups(0, xc(c0) + 4 * r * ROW, c1 - c0, S, 24, 1, S, 1, 0, S, acc + 1024, 32, acc);
    },
    () => channels(0, 1),
    () => channels(1, 1),
    () => fusedProduct(range(c0, c1)),
    () => {
      for (let c = c0; c < c1; c++) {
        const next = Math.min(c + 1, c1 - 1);
        for (let g = 0; g < N; g += 2) {
          const h = N - 2 - g;
          q.statsNormPlanes32(
            xc(next) + 4 * g * ROW, 2, ROW, 1, ROW, S, acc + 1024, 32, acc,
            xc(c) + 4 * h * ROW, ROW, ROW, yc(c) + 4 * h * ROW, ROW, ROW, 3000, 2, 0.5, 0,
          );
        }
      }
    },
    () => {
      for (let c = c0; c < c1; c++) {
        q.statsPlanes32(xc(c), 1, 0, N, ROW, S, acc + 1024, 32, acc);
        for (let r = N - 1; r >= 0; r--) q.normalizePlanes32(xc(c) + 4 * r * ROW, ROW, yc(c) + 4 * r * ROW, ROW, 1, S, 3000, 2, 0.5, 0);
      }
    },
    () => channels(0, 2),
    () => fusedProduct(range(0, C).filter((c) => c % threads === id)),
    () => fusedProduct(range(0, C).filter((c) => Math.floor(c / 8) % threads === id)),
  ];
  parentPort.postMessage('ready');
  parentPort.on('message', (k) => {
    // Start together: the last to arrive releases the others.
    const generation = Atomics.load(ctl, 1);
    if (Atomics.add(ctl, 0, 1) === threads - 1) {
      Atomics.store(ctl, 0, 0);
      Atomics.add(ctl, 1, 1);
    } else {
      while (Atomics.load(ctl, 1) === generation);
    }
    const t0 = performance.now();
    ways[k]();
    parentPort.postMessage(performance.now() - t0);
  });
}
