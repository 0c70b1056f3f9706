/**
 * A process whose address space is limited (`ulimit -v`, as some HPC jobs and shared hosts set
 * it). V8 reserves about 10 GiB of it for each WebAssembly memory, whatever the memory's maximum,
 * so there `new WebAssembly.Memory()` throws a RangeError, which came out of `new Pool()` until
 * 2026-12-06. Now (src/pool.ts, reserveArena) an 'auto' pool runs the TypeScript kernels over a
 * growable SharedArrayBuffer, with one process warning; 'js' does so silently; 'wasm', and a
 * `maxMemory` the limit cannot take either, are OutOfMemoryErrors that say what to do. Where the
 * shared memory fits and the calling thread's private one does not, inline calls stage on the
 * shared one. Children run under `ulimit -v`, set from a bare child's own size, so the limits
 * hold whatever Node maps at start (Node 20 and 22: from Node 24, V8 makes a WebAssembly memory
 * that fits the limit, and these tests are skipped). Last, a process whose WebAssembly memories V8
 * itself caps (`--wasm-max-mem-pages`).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { wasmMemoryLimit } from '../dist/src/pool-options.js';
import { runScript, SEEDED_AND_HASHED } from './helpers/node.js';

const entry = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));
const GiB = 2 ** 30;

/**
 * runScript under a virtual memory limit of `limit` bytes (none where null), with process
 * warnings off stderr (the scripts collect them).
 */
function runLimited(script: string, limit: number | null, flags: string[] = []): any {
  return runScript(script, ['--no-warnings', ...flags], 60_000, '', limit ?? undefined);
}

/** The child's virtual size (VmSize) once it has loaded bnpool, in bytes. */
function baseSize(): number {
  return runLimited(`
    await import(${JSON.stringify(entry)});
    const { readFileSync } = await import('node:fs');
    console.log(Number(readFileSync('/proc/self/status', 'utf8').match(/VmSize:\\s*(\\d+) kB/)[1]) * 1024);
  `, null);
}

/** The shapes `script` runs by default: two calls on workers, one inline. */
const SHAPES: [number[], 'Float32Array' | 'Float64Array'][] = [[[6, 5, 67, 31], 'Float32Array'], [[3, 4, 5], 'Float64Array'], [[9, 3, 7], 'Float32Array']];

/**
 * Makes a pool of each of `specs` (its options) in turn, after the lines of `prelude`, and on
 * each that it makes runs a training forward and a backward of each of `shapes` (by default, on
 * workers and one inline: ordinary arrays, the private memory), float32 and float64, of seeded
 * data; prints each pool's kernel, memory, inline
 * threshold, private memory's length and results' bits as a hash (or its error), and the
 * process warnings seen after each. The pools are closed together at the end, so that each
 * pool is made beside the ones before it: a closed pool's memory is let go only once nothing
 * refers to it, and V8 keeps an async function's dead local (a loop's pool) until its slot is
 * used again.
 */
const script = (specs: object[], shapes: [number[], 'Float32Array' | 'Float64Array'][] = SHAPES, prelude = ''): string => `
  ${prelude}
  const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
  const warnings = [];
  process.on('warning', (w) => warnings.push(w.code));
  ${SEEDED_AND_HASHED}
  const seen = [];
  const pools = [];
  for (const options of ${JSON.stringify(specs)}) {
    let pool;
    try {
      pool = new Pool({ threads: 2, ...options });
    } catch (err) {
      await new Promise((r) => setImmediate(r));
      seen.push({ error: [err.name, err.code, err.message], warnings: [...warnings] });
      continue;
    }
    const results = [];
    for (const [shape, typeName] of ${JSON.stringify(shapes)}) {
      const Type = globalThis[typeName];
      const n = shape.reduce((a, b) => a * b, 1);
      seed = n;
      const x = Type.from({ length: n }, (_, i) => 100 + (i % 5) + rand());
      const dy = Type.from({ length: n }, () => rand() - 0.5);
      const bn = new BatchNorm(shape[1], { pool, dtype: Type === Float64Array ? 'float64' : 'float32' });
      const y = await bn.forward(x, shape);
      const { dx } = await bn.backward(dy);
      results.push(...[y, dx, bn.runningMean, bn.runningVar].map(hash));
    }
    await new Promise((r) => setImmediate(r)); // process warnings are emitted on a later tick
    seen.push({
      kernel: pool.kernel, memory: pool.memory.constructor.name, inlineThreshold: pool.inlineThreshold,
      maxBytes: pool.memoryStats.maxBytes, privateByteLength: pool.memoryStats.privateByteLength, results, warnings: [...warnings],
    });
    pools.push(pool);
  }
  await Promise.all(pools.map((pool) => pool.close()));
  console.log(JSON.stringify(seen));
`;

const WASM_REFUSED = expect.stringMatching(
  /^options\.kernel 'wasm' needs a WebAssembly memory, and V8 could not reserve one \(.*\): .*ulimit -v.*--disable-wasm-trap-handler/,
);

/** Whether this process may set the limits below: Linux (/proc), and no hard limit already. */
const canLimit = process.platform === 'linux'
  && spawnSync('/bin/sh', ['-c', 'ulimit -Hv'], { encoding: 'utf8' }).stdout.trim() === 'unlimited';

// Measured here: a 2-thread pool and its private memory take ~21 GiB of address space over the
// base (each WebAssembly memory ~10.5), a pool on a 4 GiB SharedArrayBuffer ~5.
const base = canLimit ? baseSize() : 0;

/**
 * Whether this runtime's WebAssembly memories need the address space these tests are about: a
 * child under the first test's limit (`base` plus 6 GiB) refused a shared WebAssembly memory (Node 20 and 22,
 * whose V8 reserves ~10 GiB for each). Node 24 and later take one there (V8 then makes a memory
 * that checks its bounds in code), so no pool of theirs meets such a limit; and Node 26 itself
 * aborts under it (V8's heap, a worker's code range), bnpool loaded or not.
 */
const reservesGuards = canLimit && ((): boolean => {
  const probe = "try { new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true }); console.log('taken'); } catch { console.log('refused'); }";
  // Not runLimited: the child may abort (Node 26), which must skip the tests, not fail the file.
  const limit = Math.floor((base + 6 * GiB) / 1024);
  const run = spawnSync('/bin/sh', ['-c', `ulimit -v ${limit} && exec "$0" "$@"`, process.execPath, '-e', probe], { encoding: 'utf8' });
  return run.status === 0 && run.stdout.trim() === 'refused';
})();

it.runIf(canLimit && Number.parseInt(process.versions.v8, 10) < 13)('Node 20 and 22 (V8 before 13) refuse a WebAssembly memory there, so the ulimit tests run', () => {
  expect(reservesGuards).toBe(true);
});

describe.skipIf(!reservesGuards)('a process whose address space is limited (ulimit -v)', () => {
  // A small inline call (the private memory) and calls on workers, on the JS kernel: the bits
  // every memory must give.
  const reference = runLimited(script([{ kernel: 'js' }]), null)[0];
  const wasmReference = runLimited(script([{}]), null)[0];

  it('no WebAssembly memory fits: auto runs the TypeScript kernels on a SharedArrayBuffer with one warning, wasm is refused', () => {
    // Room for a 4 GiB SharedArrayBuffer and the workers, not for a WebAssembly memory, nor for
    // a second 4 GiB private memory.
    const limit = base + 6 * GiB;
    expect(reference).toMatchObject({ kernel: 'js', memory: 'Memory', inlineThreshold: 65536, maxBytes: 4 * GiB, warnings: [] });
    expect(reference.privateByteLength).toBeGreaterThan(0);
    const js = { kernel: 'js', memory: 'BufferMemory', inlineThreshold: 65536, maxBytes: 4 * GiB, results: reference.results };
    // 'js' was going to run these kernels anyway: no warning. Its private memory does not fit
    // beside the shared one, so inline calls stage on the shared one.
    expect(runLimited(script([{ kernel: 'js' }]), limit)).toEqual([{ ...js, privateByteLength: 0, warnings: [] }]);
    // 'auto' takes the TypeScript kernels' inline threshold too.
    expect(runLimited(script([{ kernel: 'wasm' }, {}]), limit)).toEqual([
      { error: ['OutOfMemoryError', 'ERR_BNPOOL_OUT_OF_MEMORY', WASM_REFUSED], warnings: [] },
      { ...js, privateByteLength: 0, warnings: ['BNPOOL_NO_WASM_MEMORY'] },
    ]);
    // Unless one is given. One warning a process; two 256 MiB memories fit.
    const small = { ...js, maxBytes: 256 * 2 ** 20, warnings: ['BNPOOL_NO_WASM_MEMORY'] };
    expect(runLimited(script([{ maxMemory: 256 * 2 ** 20, inlineThreshold: 10 }, { kernel: 'auto', maxMemory: 256 * 2 ** 20 }]), limit)).toEqual([
      { ...small, inlineThreshold: 10, privateByteLength: 0 }, // every call on the workers
      { ...small, privateByteLength: reference.privateByteLength },
    ]);
  });

  it("a maxMemory the limit cannot take is an OutOfMemoryError that names it; Node's --disable-wasm-trap-handler keeps the WebAssembly kernels", () => {
    const seen = runLimited(script([{}, { kernel: 'js' }, { maxMemory: 256 * 2 ** 20 }]), base + 2 * GiB);
    const refused = [
      'OutOfMemoryError', 'ERR_BNPOOL_OUT_OF_MEMORY',
      expect.stringMatching(/^new Pool\(\) cannot reserve its shared memory of up to 4294967296 bytes \(options\.maxMemory\): .*Lower options\.maxMemory/),
    ];
    expect(seen).toMatchObject([
      { error: refused, warnings: [] },
      { error: refused, warnings: [] },
      { kernel: 'js', memory: 'BufferMemory', results: reference.results, warnings: ['BNPOOL_NO_WASM_MEMORY'] },
    ]);
    const kept = runLimited(script([{ kernel: 'wasm', maxMemory: 256 * 2 ** 20 }]), base + 2 * GiB, ['--disable-wasm-trap-handler']);
    expect(kept).toMatchObject([{ kernel: 'wasm', memory: 'Memory', results: wasmReference.results, warnings: [] }]);
    expect(kept[0].privateByteLength).toBeGreaterThan(0);
  });

  it('pools made and closed one after another each fit, once nothing refers to the last', () => {
    // Each pool's memory takes most of what the limit leaves: a closed pool's must be let go
    // (V8 collects garbage where a reservation fails, and tries again).
    const cycle = `
      const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
      const once = async (kernel) => {
        const pool = new Pool({ threads: 2, kernel });
        const bn = new BatchNorm(4, { pool });
        await bn.forward(Float32Array.from({ length: 4 * 4 * 1000 }, (_, i) => Math.sin(i)), [4, 4, 1000]);
        await bn.forward(Float32Array.from({ length: 4 * 4 * 10 }, (_, i) => Math.cos(i)), [4, 4, 10]);
        await pool.close();
        return pool.kernel + ' ' + pool.memory.constructor.name;
      };
      const seen = [];
      for (const kernel of ['js', 'auto', 'js', 'auto', 'auto', 'js']) seen.push(await once(kernel).catch((e) => e.code));
      console.log(JSON.stringify(seen));
    `;
    expect(runLimited(cycle, base + 6 * GiB)).toEqual(Array(6).fill('js BufferMemory'));
    expect(runLimited(cycle, base + 14 * GiB)).toEqual(['js Memory', 'wasm Memory', 'js Memory', 'wasm Memory', 'wasm Memory', 'js Memory']);
  });

  it('the shared WebAssembly memory fits and the private one does not: inline calls stage on the shared one', () => {
    expect(wasmReference).toMatchObject({ kernel: 'wasm', memory: 'Memory', warnings: [] });
    expect(wasmReference.privateByteLength).toBeGreaterThan(0);
    const limit = base + 14 * GiB;
    expect(runLimited(script([{ kernel: 'js' }]), limit)).toEqual([{ ...reference, privateByteLength: 0 }]);
    expect(runLimited(script([{}]), limit)).toEqual([{ ...wasmReference, privateByteLength: 0 }]);
  });
});

/**
 * Under `node --wasm-max-mem-pages=N`, V8 takes a WebAssembly memory whose maximum is larger,
 * then refuses to grow it past N pages. A pool sized its staging chunks to the 4 GiB it reported,
 * and a call whose chunk passed N pages failed (until 2026-12-06). Now a pool's maxMemory stops at
 * the flag's N pages (src/pool-options.ts, wasmMemoryLimit), and the pool runs as one given that
 * maxMemory: the same bits.
 */
describe('a process whose WebAssembly memories V8 caps (--wasm-max-mem-pages)', () => {
  const pages = 40;
  const cap = pages * 65536;
  /** `script` with an ordinary array of 9.6 MB of float32, staged in chunks, and a small one. */
  const capped = (specs: object[], prelude = ''): string =>
    script(specs, [[[8, 3, 100, 1000], 'Float32Array'], [[3, 4, 50], 'Float32Array']], prelude);
  const flag = [`--wasm-max-mem-pages=${pages}`];

  it('a pool grows to the cap at most, and stages in chunks that fit it', () => {
    const expected = runScript(capped([{ maxMemory: cap }, { maxMemory: cap, kernel: 'js' }]), [], 60_000) as any[];
    expect(expected).toMatchObject([{ kernel: 'wasm', maxBytes: cap }, { kernel: 'js', maxBytes: cap }]);
    const seen = runScript(capped([{}, { maxMemory: 2 ** 30 }, { kernel: 'js' }, { maxMemory: cap / 2 }]), flag, 60_000) as any[];
    expect(seen.slice(0, 3)).toEqual([expected[0], expected[0], expected[1]]);
    // A smaller maxMemory is kept; results hold whatever the chunks.
    expect(seen[3]).toEqual({ ...expected[0], maxBytes: cap / 2 });
  });

  it('an initialMemory past the cap, or a cap too small for any pool, is an ArgumentError that names the flag', () => {
    expect(runScript(capped([{ initialMemory: cap + 65536 }, { initialMemory: cap }]), flag, 60_000)).toMatchObject([
      { error: ['ArgumentError', 'ERR_BNPOOL_ARG', `options.initialMemory must be at most ${cap} bytes, the most V8 lets a WebAssembly memory have in this process (node --wasm-max-mem-pages=${pages}); got ${cap + 65536}`] },
      { kernel: 'wasm', maxBytes: cap },
    ]);
    expect(runScript(capped([{}]), ['--wasm_max_mem_pages=1'], 60_000)).toEqual([
      { error: ['ArgumentError', 'ERR_BNPOOL_ARG', "a pool's memory needs at least 131072 bytes, more than the 65536 V8 lets a WebAssembly memory have in this process (node --wasm-max-mem-pages=1)"], warnings: [] },
    ]);
  });

  it('set at run time, where execArgv does not show it: a pool learns the cap where V8 first refuses to grow it', () => {
    // v8.setFlagsFromString: the pool takes maxMemory 4 GiB, and its first call's staging chunk
    // is refused. The memory grows as far as V8 lets it, that becomes maxBytes, and the call is
    // planned again: the bits of a pool given maxMemory = the cap. An initialMemory past the cap
    // is an OutOfMemoryError that says so, not a fallback to the TypeScript kernels.
    const expected = runScript(capped([{ maxMemory: cap }]), [], 60_000) as any[];
    const prelude = `(await import('node:v8')).setFlagsFromString('--wasm-max-mem-pages=${pages}');`;
    const seen = runScript(capped([{ initialMemory: cap / 2 }, {}, { kernel: 'js' }], prelude), [], 60_000) as any[];
    expect(seen[0]).toEqual(expected[0]);
    const refused = [
      'OutOfMemoryError', 'ERR_BNPOOL_OUT_OF_MEMORY',
      expect.stringMatching(/^V8 would not make the pool's WebAssembly memory of 16777216 bytes \(options\.initialMemory\), though it makes one that starts smaller \(.*\): its --wasm-max-mem-pages, set at run time.*Lower options\.initialMemory$/),
    ];
    expect(seen.slice(1)).toEqual([{ error: refused, warnings: [] }, { error: refused, warnings: [] }]);
  });

  it('reads the flag as V8 does: either spelling, the last one counting, at most 65536 pages', () => {
    expect(wasmMemoryLimit([])).toBe(4 * GiB);
    expect(wasmMemoryLimit(['--wasm-max-mem-pages=300'])).toBe(300 * 65536);
    expect(wasmMemoryLimit(['--wasm_max_mem_pages=300', '--stack-size=900', '--wasm-max-mem-pages=500'])).toBe(500 * 65536);
    expect(wasmMemoryLimit(['--wasm-max-mem-pages=100000'])).toBe(4 * GiB);
    expect(wasmMemoryLimit(['--wasm-max-mem-pages-x=3', '--no-wasm-max-mem-pages=3'])).toBe(4 * GiB);
    expect(wasmMemoryLimit(process.execArgv)).toBe(4 * GiB);
  });
});
