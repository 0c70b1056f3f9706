/**
 * A script that never calls close() exits on its own; the default pool is shared, and runs every
 * kind of call given no pool. A new pool
 * compiles its kernels off the calling thread, and calls made before wait for them.
 */
import { fileURLToPath } from 'node:url';
import type { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, batchNormBackward, ChannelStats, ClosedError, getDefaultPool, Pool } from '../dist/src/index.js';
import { randomTensor, sameBits } from './helpers/data.js';
import { expectRejection } from './helpers/errors.js';
import { runNode, runScript } from './helpers/node.js';
import { wrappingRun } from './helpers/posting.js';

const entry = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));
const select = fileURLToPath(new URL('../dist/workers/kernels/select.js', import.meta.url));


/**
 * Script lines: x, a random [6, 3, 7, 5] input (channel 1 offset by 1000), and check(y), the
 * largest error of y's per-channel mean (from 0) and biased variance (from var / (var + eps)),
 * in float64.
 */
const CHECK = `
  const shape = [6, 3, 7, 5];
  const x = new Float32Array(6 * 3 * 35).map((_, i) => Math.random() * 4 - 2 + (((i / 35) | 0) % 3 === 1 ? 1000 : 0));
  const check = (y) => {
    let worst = 0;
    for (let c = 0; c < 3; c++) {
      const xs = [], ys = [];
      for (let n = 0; n < 6; n++) for (let s = 0; s < 35; s++) { xs.push(x[(n * 3 + c) * 35 + s]); ys.push(y[(n * 3 + c) * 35 + s]); }
      const mean = (a) => a.reduce((p, v) => p + v, 0) / a.length;
      const vx = mean(xs.map((v) => (v - mean(xs)) ** 2));
      const vy = mean(ys.map((v) => (v - mean(ys)) ** 2));
      worst = Math.max(worst, Math.abs(mean(ys)), Math.abs(vy - vx / (vx + 1e-5)));
    }
    return worst;
  };
`;

describe('lifecycle', () => {
  it('a script using the default pool without close() exits by itself', () => {
    const script = `
      const { BatchNorm, batchNorm, Pool } = await import(${JSON.stringify(entry)});
      const x = new Float32Array(8 * 16 * 64 * 64).map((_, i) => Math.sin(i));
      const y = await new BatchNorm(16).forward(x, [8, 16, 64, 64]);
      const own = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
      const r = await batchNorm(x, [8, 16, 64, 64], { training: true, pool: own });
      console.log('ok', y.length, r.y[5] === y[5]);
    `;
    expect(runNode(script, [], 20_000)).toBe('ok 524288 true');
  });

  it('a closed pool lets its memory go', () => {
    // piscina's close() leaves a timer of its closeTimeout (30 s) that holds the pool, and with it
    // the workers' data (this pool's memory): a process that made and closed pools one after
    // another kept every memory for 30 s (200 MB each, 1.2 GB after six).
    const script = `
      const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
      let pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
      const x = pool.alloc(8 * 16 * 64 * 64).map((_, i) => Math.sin(i));
      const y = await new BatchNorm(16, { pool }).forward(x, [8, 16, 64, 64]);
      const memory = new WeakRef(pool.memory);
      await pool.close();
      pool = null;
      for (let i = 0; i < 10 && memory.deref() !== undefined; i++) {
        await new Promise((r) => setTimeout(r, 20));
        globalThis.gc();
      }
      console.log(memory.deref() === undefined ? 'released' : 'held', y.length);
    `;
    expect(runNode(script, ['--expose-gc'], 20_000)).toBe('released 524288');
  });

  it('new Pool returns before its kernels compile; a call made at once waits for them, and they are optimized code', () => {
    // %IsTurboFanFunction and %IsUncompiledWasmFunction: V8's test natives (--allow-natives-syntax).
    const script = `
      const { cachedWasmModules } = await import(${JSON.stringify(select)});
      const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
      ${CHECK}
      const pool = new Pool({ threads: 2 });
      const compiledInConstructor = cachedWasmModules() !== null;
      let started = false;
      const ready = pool.ready.then(() => { started = true; });
      for (let i = 0; i < 20; i++) await null;
      const startedInMicrotasks = started;
      const bn = new BatchNorm(3, { pool });
      const y = await bn.forward(x, shape);
      await ready;
      const { shared, private: unshared } = cachedWasmModules();
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true });
      const kernels = [
        new WebAssembly.Instance(shared, { env: { memory } }),
        new WebAssembly.Instance(unshared, { env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 16 }) } }),
      ].flatMap((i) => Object.values(i.exports).filter((f) => typeof f === 'function'));
      // A module compiled after: lazily, as Node compiles by default (the flags are restored).
      const tiny = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 42, 11]);
      const later = new WebAssembly.Instance(new WebAssembly.Module(tiny)).exports.f;
      // A pool made once the modules are compiled starts in its constructor.
      const other = new Pool({ threads: 1 });
      let otherStarted = false;
      other.ready.then(() => { otherStarted = true; });
      for (let i = 0; i < 3; i++) await null;
      console.log(JSON.stringify({
        kernel: pool.kernel, compiledInConstructor, startedInMicrotasks, started,
        error: check(y), counted: bn.numBatchesTracked,
        kernels: kernels.length, optimized: kernels.filter((f) => %IsTurboFanFunction(f)).length,
        laterLazy: %IsUncompiledWasmFunction(later), laterValue: later(),
        secondPoolStartedAtOnce: otherStarted,
      }));
      await Promise.all([pool.close(), other.close()]);
    `;
    const r = runScript(script, ['--allow-natives-syntax']) as Record<string, unknown>;
    expect(r).toMatchObject({
      kernel: 'wasm', compiledInConstructor: false, startedInMicrotasks: false, started: true, counted: 1,
      laterLazy: true, laterValue: 42, secondPoolStartedAtOnce: true,
    });
    expect(r.error).toBeLessThan(1e-4);
    expect(r.kernels).toBeGreaterThan(20);
    expect(r.optimized).toBe(r.kernels);
  });

  // V8's flags around the kernels' compile (select.ts, withOptimizedCompile), told by its test
  // natives: the tier of a module of the script's own compiled before the kernels, while they
  // compile and after (each of other bytes, a function returning 1, 2, 3: V8 reuses the code of
  // bytes it compiled before), and the kernels'. Before and after, a module's function is called
  // once and watched for up to `watchMs`: with V8's dynamic tiering off, its background compile
  // makes it optimized code within milliseconds; on, one call leaves it baseline code. runNode
  // gives the script with `-e`, so it is one of `process.execArgv`, and it names liftoff: until
  // 2026-12-06 such a script was taken for a flag the user set, and the kernels came out of the
  // baseline compiler.
  const tiers = (load: 'loadWasmModules' | 'loadWasmModule', watchMs = 300): string => `
    const tiny = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 0, 11];
    const tier = (f) => %IsLiftoffFunction(f) ? 'liftoff' : %IsTurboFanFunction(f) ? 'turbofan' : 'other';
    let n = 0;
    const compile = () => {
      const bytes = Uint8Array.from(tiny);
      bytes[bytes.length - 2] = ++n;
      const f = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f;
      if (f() !== n) throw new Error('the probe returned ' + f());
      return f;
    };
    const watch = async (f) => {
      for (const stop = Date.now() + ${watchMs}; tier(f) !== 'turbofan' && Date.now() < stop;) await new Promise((r) => setTimeout(r, 5));
      return tier(f);
    };
    const { ${load} } = await import(${JSON.stringify(select)});
    const seen = { before: await watch(compile()) };
    const pending = ${load}();
    seen.during = tier(compile());
    const module = '${load}' === 'loadWasmModules' ? (await pending).shared : pending;
    seen.after = await watch(compile());
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true });
    seen.kernels = [...new Set(Object.values(new WebAssembly.Instance(module, { env: { memory } }).exports).map(tier))];
    console.log(JSON.stringify(seen));
  `;

  it("V8's baseline compiler is off while the kernels compile, for every module, and back on after, with its dynamic tiering", () => {
    expect(runScript(tiers('loadWasmModules'), ['--allow-natives-syntax'])).toEqual({
      before: 'liftoff', during: 'turbofan', after: 'liftoff', kernels: ['turbofan'],
    });
    // Compiled on the calling thread, the flags are back before the call returns.
    expect(runScript(tiers('loadWasmModule'), ['--allow-natives-syntax'])).toEqual({
      before: 'liftoff', during: 'liftoff', after: 'liftoff', kernels: ['turbofan'],
    });
  });

  for (const flag of ['--no-liftoff', '--noliftoff', '--no_liftoff']) {
    it(`a V8 flag the process was started with stays as its user set it: ${flag}`, () => {
      expect(runScript(tiers('loadWasmModules'), ['--allow-natives-syntax', flag])).toEqual({
        before: 'turbofan', during: 'turbofan', after: 'turbofan', kernels: ['turbofan'],
      });
    });
  }

  it('a V8 flag the process was started with stays as its user set it: --no-wasm-dynamic-tiering', () => {
    // Every function is then optimized in the background after its baseline code: watched until it is.
    expect(runScript(tiers('loadWasmModules', 20_000), ['--allow-natives-syntax', '--no-wasm-dynamic-tiering'])).toEqual({
      before: 'turbofan', during: 'turbofan', after: 'turbofan', kernels: ['turbofan'],
    });
  });

  it("the flags held off while the kernels compile, by V8's version and the flags the process was started with", async () => {
    const { optimizedCompileFlags } = await import(select);
    const all = ['liftoff', 'wasm-dynamic-tiering', 'wasm-lazy-compilation'];
    // Node 20, 22, 24: no wasm-deopt flag (V8 11.3, 12.4), or one off by default (13.6).
    for (const v8 of ['11.3.244.8-node.38', '12.4.254.21-node.57', '13.6.233.17-node.63']) expect(optimizedCompileFlags(v8, [])).toEqual(all);
    // Node 25, 26 (V8 14.1, 14.6): deopts on by default, and --no-liftoff at run time does not turn them off.
    const withDeopt = ['liftoff', 'wasm-dynamic-tiering', 'wasm-deopt', 'wasm-lazy-compilation'];
    for (const v8 of ['14.1.146.11-node.25', '14.6.202.34-node.40', '15.0.1']) expect(optimizedCompileFlags(v8, [])).toEqual(withDeopt);
    expect(optimizedCompileFlags('14.6.202.34', ['--no-wasm-deopt'])).toEqual(all);
    expect(optimizedCompileFlags('13.6.233.17', ['--wasm_deopt'])).toEqual(withDeopt);
    // The last of a flag's arguments counts, as in V8.
    expect(optimizedCompileFlags('13.6.233.17', ['--no-wasm-deopt', '--wasm-deopt'])).toEqual(withDeopt);
    expect(optimizedCompileFlags('14.6.202.34', ['--wasm-deopt', '--nowasm-deopt'])).toEqual(all);
    // Flags the user set stay as set; with Liftoff left on, so are the flags it implies.
    expect(optimizedCompileFlags('14.6.202.34', ['--no-liftoff'])).toEqual(['wasm-lazy-compilation']);
    expect(optimizedCompileFlags('14.6.202.34', ['--liftoff', '--no-wasm-lazy-compilation'])).toEqual([]);
    expect(optimizedCompileFlags('11.3.244.8', ['--no_wasm_dynamic_tiering'])).toEqual(['liftoff', 'wasm-lazy-compilation']);
    expect(optimizedCompileFlags('11.3.244.8', ['--wasm-dynamic-tiering'])).toEqual(all);
    // node -e's script is an argument too: one that names a flag is not that flag.
    expect(optimizedCompileFlags('14.6.202.34', ['--input-type=module', '-e', '--no-liftoff --no-wasm-deopt'])).toEqual(withDeopt);
  });

  it('the event loop stays open while the kernels compile, and only then', () => {
    // Node 24 does not wait for V8's background compile by itself: a script awaiting pool.ready
    // and nothing else exited with code 13 ("unsettled top-level await").
    const script = `
      const { loadWasmModules } = await import(${JSON.stringify(select)});
      const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const before = timers();
      const pending = loadWasmModules();
      const during = timers();
      const modules = await pending;
      await null;
      console.log(JSON.stringify({ before, during, after: timers(), compiled: modules.shared instanceof WebAssembly.Module }));
    `;
    expect(runScript(script)).toEqual({ before: 0, during: 1, after: 0, compiled: true });
  });

  it('a call aborted, or a pool closed, while the kernels compile', () => {
    const script = `
      const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
      ${CHECK}
      const pool = new Pool({ threads: 2 });
      const bn = new BatchNorm(3, { pool });
      const ac = new AbortController();
      const aborted = bn.forward(x, shape, { signal: ac.signal }).catch((e) => e.name);
      const y = bn.forward(x, shape);
      ac.abort();
      const [abortName, y2] = await Promise.all([aborted, y]);
      const closing = new Pool({ threads: 2 });
      const closed = closing.close();
      const late = await new BatchNorm(3, { pool: closing }).forward(x, shape).catch((e) => e.code);
      await closed;
      console.log(JSON.stringify({ abortName, counted: bn.numBatchesTracked, error: check(y2), late, closed: closing.closed }));
      await pool.close();
    `;
    const r = runScript(script) as Record<string, unknown>;
    expect(r).toMatchObject({ abortName: 'AbortError', counted: 1, late: 'ERR_BNPOOL_CLOSED', closed: true });
    expect(r.error).toBeLessThan(1e-4);
  });

  it('a pool closed before its kernels compile spawns no worker, unless a call waits for them', () => {
    // piscina makes its workers with worker_threads.Worker, looked up when it spawns one.
    const script = `
      import workerThreads from 'node:worker_threads';
      let spawned = 0;
      const Worker = workerThreads.Worker;
      workerThreads.Worker = class extends Worker { constructor(...args) { super(...args); spawned++; } };
      const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
      ${CHECK}
      // Both pools wait for the same compile; each is closed before it ends, one with a call waiting.
      const idle = new Pool({ threads: 2 });
      const waiting = new Pool({ threads: 2 });
      const pending = new BatchNorm(3, { pool: waiting }).forward(x, shape);
      const closing = [idle.close(), waiting.close()];
      const y = await pending;
      await Promise.all(closing);
      console.log(JSON.stringify({ spawned, error: check(y), closed: idle.closed && waiting.closed }));
    `;
    const r = runScript(script) as Record<string, unknown>;
    expect(r).toMatchObject({ spawned: 2, closed: true });
    expect(r.error).toBeLessThan(1e-4);
  });

  it('every entry point made before the start waits for it: statistics, functional forward and backward, the floor', () => {
    const floor = fileURLToPath(new URL('../dist/src/floor.js', import.meta.url));
    const script = `
      const { batchNorm, batchNormBackward, ChannelStats, Pool } = await import(${JSON.stringify(entry)});
      const { streamFloor } = await import(${JSON.stringify(floor)});
      ${CHECK}
      const pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
      const a = pool.alloc(1000).fill(2), b = pool.alloc(1000);
      const dy = new Float32Array(x.length).map((_, i) => Math.cos(i));
      const [stats, forward, backward] = await Promise.all([
        ChannelStats.fromBatch(x, shape, { pool }),
        batchNorm(x, shape, { training: true, pool }),
        batchNormBackward(x, dy, shape, { training: true, mean: new Float64Array(3), invstd: new Float64Array(3).fill(1), pool }),
        streamFloor(pool, a, b),
      ]);
      const dySum = [0, 1, 2].map((c) => { let s = 0; for (let n = 0; n < 6; n++) for (let i = 0; i < 35; i++) s += dy[(n * 3 + c) * 35 + i]; return s; });
      const closing = pool.close();
      console.log(JSON.stringify({
        meanError: Math.max(...[...stats.mean()].map((m, c) => Math.abs(m - forward.mean[c]))),
        forwardError: check(forward.y), count: stats.count[0],
        dBiasError: Math.max(...dySum.map((s, c) => Math.abs(s - backward.dBias[c]))),
        floor: [b[0], b[999]],
      }));
      await closing;
    `;
    const r = runScript(script) as Record<string, unknown>;
    expect(r).toMatchObject({ count: 210, floor: [3.25, 3.25] });
    expect(r.meanError).toBeLessThan(1e-9);
    expect(r.forwardError).toBeLessThan(1e-4);
    expect(r.dBiasError).toBeLessThan(1e-3);
  });

  it('kernels that fail to compile fail the calls with a WorkerError, change nothing, and a later pool tries again', () => {
    const script = `
      const compile = WebAssembly.compile;
      WebAssembly.compile = () => Promise.reject(new Error('no compiler today'));
      const unhandled = [];
      process.on('unhandledRejection', (e) => unhandled.push(String(e)));
      const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
      ${CHECK}
      const pool = new Pool({ threads: 2 });
      new Pool({ threads: 1 }); // never used nor closed: its failed start must not be an unhandled rejection
      const bn = new BatchNorm(3, { pool });
      const err = await bn.forward(x, shape).catch((e) => e);
      const readyCode = await pool.ready.catch((e) => e.code);
      await pool.close();
      WebAssembly.compile = compile;
      const again = new Pool({ threads: 2 });
      const y = await new BatchNorm(3, { pool: again }).forward(x, shape);
      await again.close();
      await new Promise((r) => setTimeout(r, 20));
      console.log(JSON.stringify({
        name: err.name, code: err.code, message: err.message, readyCode, unhandled,
        counted: bn.numBatchesTracked, runningMean: [...bn.runningMean], error: check(y),
      }));
    `;
    const r = runScript(script) as Record<string, unknown>;
    expect(r).toMatchObject({
      name: 'WorkerError', code: 'ERR_BNPOOL_WORKER', readyCode: 'ERR_BNPOOL_WORKER', unhandled: [], counted: 0, runningMean: [0, 0, 0],
    });
    expect(r.message).toMatch(/compiling its WebAssembly kernels failed \(no compiler today\)/);
    expect(r.error).toBeLessThan(1e-4);
  });

  it("under Node's permission model without --allow-worker, new Pool() throws a WorkerError that says so, before anything changes", () => {
    // Before 2026-12-06 piscina's plain ERR_ACCESS_DENIED came out of new Pool() with kernel 'js',
    // or else out of every call (the pool spawned its workers once the kernels compiled).
    const script = (allowed: boolean): string => `
      const { BatchNorm, batchNorm, Pool } = await import(${JSON.stringify(entry)});
      ${CHECK}
      const caught = (run) => { try { run(); return null; } catch (e) { return { name: e.name, code: e.code, message: e.message }; } };
      const pools = ['auto', 'wasm', 'js'].map((kernel) => caught(() => new Pool({ threads: 2, kernel }).close()));
      const badOption = caught(() => new Pool({ threads: -1 }));
      const bn = new BatchNorm(3);
      const err = await bn.forward(x, shape).then(() => null, (e) => ({ name: e.name, code: e.code, message: e.message }));
      const functional = await batchNorm(x, shape, { training: true }).then(() => null, (e) => e.code);
      const y = ${allowed} ? await new BatchNorm(3, { pool: new Pool({ threads: 2, inlineThreshold: 0 }) }).forward(x, shape) : null;
      console.log(JSON.stringify({
        permission: process.permission.has('worker'), pools, badOption, err, functional,
        counted: bn.numBatchesTracked, runningMean: [...bn.runningMean], runningVar: [...bn.runningVar],
        error: y && check(y),
      }));
    `;
    // Node 20 names the model's flag --experimental-permission, Node 24 and later --permission
    // alone (Node 22 takes both).
    const permission = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
    const flags = [permission, '--allow-fs-read=*', '--disable-warning=ExperimentalWarning', '--disable-warning=SecurityWarning'];
    const denied = runScript(script(false), flags) as Record<string, any>;
    const refusal = {
      name: 'WorkerError', code: 'ERR_BNPOOL_WORKER',
      message: expect.stringMatching(/^new Pool\(\) needs worker threads, and Node's permission model denies them .*add --allow-worker/),
    };
    expect(denied).toMatchObject({
      permission: false, pools: [refusal, refusal, refusal], err: refusal, functional: 'ERR_BNPOOL_WORKER',
      badOption: { name: 'ArgumentError', code: 'ERR_BNPOOL_ARG' }, counted: 0, runningMean: [0, 0, 0], runningVar: [1, 1, 1], error: null,
    });
    const allowed = runScript(script(true), [...flags, '--allow-worker']) as Record<string, any>;
    expect(allowed).toMatchObject({ permission: true, pools: [null, null, null], err: null, functional: null, counted: 1 });
    expect(allowed.error).toBeLessThan(1e-4);
  });

  it('the worker entry is CommonJS and loads the worker module with import(): require() of it never instantiates an ES module', () => {
    // On the main thread the worker module throws as it starts (no workerData): had require()
    // loaded it synchronously, as piscina's require() of an ES module entry did, that would throw
    // from require() itself. It rejects the first task instead.
    const workerEntry = fileURLToPath(new URL('../dist/workers/entry.cjs', import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      let syncError = null;
      let run = null;
      try { run = require(${JSON.stringify(workerEntry)}); } catch (err) { syncError = String(err); }
      const first = run === null ? null : await Promise.resolve(run({ op: 'stream', pass: 'read', xByte: 0, yByte: 0, n: 0, a: 1, b: 0 })).then(() => 'ran', (err) => err.name);
      console.log(JSON.stringify({ syncError, type: typeof run, first }));
    `;
    expect(runScript(script)).toEqual({ syncError: null, type: 'function', first: 'TypeError' });
  });

  it.skipIf(!process.env.BNPOOL_STRESS_RESTARTS)('pools closed while their workers start do not abort the process (BNPOOL_STRESS_RESTARTS cycles)', () => {
    // Before the CommonJS entry, 4 of 10 runs of 300 cycles here aborted with "FATAL ERROR:
    // v8::Module::IsGraphAsync ... must be used on an instantiated module" (Node 20.20), a
    // worker terminated inside require() of the ES module entry; after it, none of 16.
    const script = `
      const { Pool } = await import(${JSON.stringify(entry)});
      await new Pool({ threads: 1 }).ready;
      for (let i = 0; i < ${Number(process.env.BNPOOL_STRESS_RESTARTS)}; i++) {
        const pool = new Pool({ threads: 2 });
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 80));
        await pool.close();
      }
      console.log(JSON.stringify('survived'));
    `;
    expect(runScript(script, [], 600_000)).toBe('survived');
  }, 600_000);

  it('await using closes a pool as its block ends, once the calls made in it have settled (Symbol.asyncDispose is close())', async () => {
    const shape = [6, 5, 9, 7];
    const x = randomTensor(shape, 'float32', 31);
    let scoped!: Pool;
    let bn!: BatchNorm;
    let y: Float32Array | Float64Array | null = null;
    {
      await using pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
      scoped = pool;
      bn = new BatchNorm(5, { pool });
      // Not awaited in the block: its end waits for it, as close() does.
      void bn.forward(x, shape).then((result) => { y = result; });
      expect(pool.closed).toBe(false);
    }
    expect(scoped.closed).toBe(true);
    expect(y).not.toBeNull();
    const reference = new Pool({ threads: 1 });
    const want = new BatchNorm(5, { pool: reference });
    expect(sameBits(y!, await want.forward(x, shape))).toBe(true);
    expect(sameBits(bn.runningVar!, want.runningVar!)).toBe(true);
    await reference.close();
    expect(scoped[Symbol.asyncDispose]()).toBe(scoped.close());
    await expectRejection(bn.forward(x, shape), ClosedError, 'ERR_BNPOOL_CLOSED', 'closed');
  });

  it('getDefaultPool returns one shared pool', () => {
    expect(getDefaultPool()).toBe(getDefaultPool());
  });

  it('runs every kind of call given no pool on the default pool, with the bits of a pool given', async () => {
    const pool = getDefaultPool();
    await pool.ready;
    const own = new Pool({ threads: 1 });
    // Past the inline threshold (786,432 elements), so each call posts tasks to the workers.
    const shape = [16, 6, 96, 96];
    const n = 16 * 6 * 96 * 96;
    const data = randomTensor(shape, 'float32', 101) as Float32Array;
    const x = pool.alloc(n) as Float32Array;
    x.set(data);
    const dy = pool.alloc(n) as Float32Array;
    dy.set(randomTensor(shape, 'float32', 102));
    const bytes = pool.alloc(n, 'uint8') as Uint8Array;
    bytes.set(data.map((v) => Math.abs(v * 40) % 256));
    /** The call, and the piscina pools that posted its tasks (each bnpool Pool has its own). */
    const posted = async <T>(call: () => Promise<T>): Promise<[T, Set<Piscina>]> => {
      const posters = new Set<Piscina>();
      const result = await wrappingRun((task, options, run, poster) => {
        posters.add(poster);
        return run(task, options);
      }, call);
      return [result, posters];
    };
    const [, [defaultPoster]] = await posted(() => batchNorm(x, shape, { training: true, pool }));
    const [, [ownPoster]] = await posted(() => batchNorm(x, shape, { training: true, pool: own }));
    expect(defaultPoster).not.toBe(ownPoster);
    /** The call given no pool, whose tasks the default pool's workers alone must run. */
    const onDefault = async <T>(call: () => Promise<T>): Promise<T> => {
      const [result, posters] = await posted(call);
      expect([posters.size, posters.has(defaultPoster)]).toEqual([1, true]);
      return result;
    };
    const given = new BatchNorm(6, { pool: own });
    const bn = new BatchNorm(6);
    const y = await onDefault(() => bn.forward(x, shape));
    expect(sameBits(y, await given.forward(x, shape))).toBe(true);
    expect(sameBits(bn.runningVar!, given.runningVar!)).toBe(true);
    const g = await onDefault(() => bn.backward(dy));
    const gGiven = await given.backward(dy);
    expect([sameBits(g.dx, gGiven.dx), sameBits(g.dWeight!, gGiven.dWeight!), sameBits(g.dBias!, gGiven.dBias!)]).toEqual([true, true, true]);
    bn.eval();
    given.eval();
    expect(sameBits(await onDefault(() => bn.forward(bytes, shape)), await given.forward(bytes, shape))).toBe(true);
    const options = { training: true, weight: Float32Array.of(1, 2, 3, 0.5, -1, 4), momentum: 0.1 };
    const r = await onDefault(() => batchNorm(x, shape, options));
    const rGiven = await batchNorm(x, shape, { ...options, pool: own });
    expect([sameBits(r.y, rGiven.y), sameBits(r.mean, rGiven.mean), sameBits(r.var, rGiven.var)]).toEqual([true, true, true]);
    const running = { runningMean: Float64Array.of(1, 2, 3, 4, 5, 6), runningVar: Float64Array.of(9, 8, 7, 6, 5, 4) };
    expect(sameBits((await onDefault(() => batchNorm(bytes, shape, running))).y, (await batchNorm(bytes, shape, { ...running, pool: own })).y)).toBe(true);
    const back = { mean: r.mean, var: r.var, weight: options.weight };
    const b = await onDefault(() => batchNormBackward(x, dy, shape, back));
    const bGiven = await batchNormBackward(x, dy, shape, { ...back, pool: own });
    expect([sameBits(b.dx, bGiven.dx), sameBits(b.dWeight!, bGiven.dWeight!)]).toEqual([true, true]);
    const stats = await onDefault(() => ChannelStats.fromBatch(x, shape));
    expect(stats.toJSON()).toEqual((await ChannelStats.fromBatch(x, shape, { pool: own })).toJSON());
    for (const a of [x, dy, bytes]) pool.free(a);
    await own.close();
  });
});
