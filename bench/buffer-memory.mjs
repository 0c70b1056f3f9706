// What a BufferMemory costs (README, "Kernels"): the pool's memory where the runtime has no
// WebAssembly (--jitless) or cannot reserve a WebAssembly memory (`ulimit -v`). Three parts, each
// case in a child process of its own (V8 keeps one function's feedback per process):
//   - views: a sum and an a*x+b over 4 Mi floats, on fixed-length and on length-tracking views of
//     a plain and of a growable SharedArrayBuffer (best of 15);
//   - address space: the process's VmSize before and after a default 2-thread pool and its
//     private memory (Linux);
//   - forward: a training forward of [8, 64, 56, 56] float32 on two workers, pool buffers and
//     `out`, median of 9, for each build given: kernel 'js' and 'wasm' on a WebAssembly memory,
//     'js' under `ulimit -v` (a BufferMemory with the JIT), and `--jitless` (a BufferMemory in
//     the interpreter). The builds take turns, `rounds` times. Plain JavaScript, like
//     alternate.mjs: a build older than cf4c0b2 cannot make a pool under the limit (`failed`).
//
//     node bench/buffer-memory.mjs [rounds=3] [dist ...]   # default: dist
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [roundsArg = '3', ...dists] = process.argv.slice(2);
const builds = (dists.length > 0 ? dists : ['dist']).map((dir) => pathToFileURL(resolve(dir, 'src/index.js')).href);

/** Runs `script` in a child with `flags`, under `limit` KiB of address space where given; its stdout. */
function child(script, flags = [], limit) {
  const args = [...flags, '--no-warnings', '--input-type=module', '-e', script];
  const run = limit === undefined
    ? spawnSync(process.execPath, args, { encoding: 'utf8' })
    : spawnSync('/bin/sh', ['-c', `ulimit -v ${limit} && exec "$0" "$@"`, process.execPath, ...args], { encoding: 'utf8' });
  return run.status === 0 ? run.stdout.trim() : 'failed';
}

const vmSize = "Number(readFileSync('/proc/self/status', 'utf8').match(/VmSize:\\s*(\\d+) kB/)[1]) / 2 ** 20";

console.log('views: sum and a*x+b over 4 Mi floats, best of 15');
for (const [name, make] of [['SharedArrayBuffer', 'new SharedArrayBuffer(n * 8)'], ['growable SharedArrayBuffer', 'new SharedArrayBuffer(n * 8, { maxByteLength: n * 16 })']]) {
  for (const tracking of [false, true]) {
    const ms = child(`
      const n = 1 << 22;
      const b = ${make};
      const a = ${tracking} ? new Float32Array(b) : new Float32Array(b, 0, n);
      const o = ${tracking} ? new Float32Array(b, n * 4) : new Float32Array(b, n * 4, n);
      a.fill(1.5);
      const sum = (a, n) => { let s = 0; for (let i = 0; i < n; i++) s += a[i]; return s; };
      const axpb = (a, o, n) => { for (let i = 0; i < n; i++) o[i] = a[i] * 1.5 + 0.25; };
      let best = Infinity;
      for (let r = 0; r < 15; r++) { const t = performance.now(); sum(a, n); axpb(a, o, n); best = Math.min(best, performance.now() - t); }
      console.log(best.toFixed(2));
    `);
    console.log(`  ${name}, ${tracking ? 'length-tracking' : 'fixed-length'} views: ${ms} ms`);
  }
}

const base = Number(child(`import { readFileSync } from 'node:fs'; await import(${JSON.stringify(builds.at(-1))}); console.log(${vmSize});`));
if (process.platform === 'linux') {
  const sizes = child(`
    import { readFileSync } from 'node:fs';
    const { BatchNorm, Pool } = await import(${JSON.stringify(builds.at(-1))});
    const before = ${vmSize};
    const pool = new Pool({ threads: 2 });
    await new BatchNorm(4, { pool }).forward(Float32Array.from({ length: 4 * 4 * 10 }, Math.random), [4, 4, 10]);
    console.log(before.toFixed(1), (${vmSize}).toFixed(1), pool.kernel, pool.memoryStats.privateByteLength > 0);
    await pool.close();
  `).split(' ');
  console.log(`address space (VmSize) of the last build's process: ${sizes[0]} GiB, ${sizes[1]} GiB with a 2-thread pool (kernel ${sizes[2]}) and its private memory (made: ${sizes[3]})`);
}

const forward = (build, kernel) => `
  const { BatchNorm, Pool } = await import(${JSON.stringify(build)});
  const pool = new Pool({ threads: 2, kernel: '${kernel}' });
  const shape = [8, 64, 56, 56];
  const n = shape.reduce((a, b) => a * b);
  const x = pool.alloc(n).map((_, i) => Math.sin(i));
  const out = pool.alloc(n);
  const bn = new BatchNorm(64, { pool });
  const t = [];
  for (let i = 0; i < 9; i++) { const s = performance.now(); await bn.forward(x, shape, { out }); t.push(performance.now() - s); }
  t.sort((a, b) => a - b);
  console.log(t[4].toFixed(2), pool.kernel, pool.memory.constructor.name);
  await pool.close();
`;
const cases = [
  ['js, WebAssembly memory', (b) => child(forward(b, 'js'))],
  ['wasm, WebAssembly memory', (b) => child(forward(b, 'wasm'))],
  // Room for the 4 GiB SharedArrayBuffer and the workers, not for a WebAssembly memory.
  ['js under ulimit -v', (b) => child(forward(b, 'js'), [], Math.round((base + 6) * 2 ** 20))],
  ['--jitless', (b) => child(forward(b, 'auto'), ['--jitless'])],
];
console.log(`forward: training, [8, 64, 56, 56] float32, 2 workers, pool buffers and out, median of 9 (ms, kernel, memory); ${roundsArg} rounds`);
for (let r = 0; r < Number(roundsArg); r++) {
  for (const [name, run] of cases) {
    for (const build of builds) console.log(`  ${name.padEnd(25)} ${build.replace(/^file:\/\/|\/src\/index\.js$/g, '').padEnd(30)} ${run(build)}`);
  }
}
