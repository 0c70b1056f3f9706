/**
 * A runtime without WebAssembly: `node --jitless` leaves `WebAssembly` undefined. `new Pool()`
 * then runs the TypeScript kernels ('auto'), over a growable SharedArrayBuffer for its memory and
 * a resizable ArrayBuffer for the calling thread's private one (src/wasm-types.ts, BufferMemory),
 * and refuses `kernel: 'wasm'` with an ArgumentError. The same script runs with --jitless and
 * without it on `kernel: 'js'`, in child processes: the same bits, inline and on workers, with
 * both memories growing under the calls, and an array from `pool.alloc` kept across the growth.
 * `node --no-expose-wasm` leaves the JIT on and `WebAssembly` undefined: the same again (Node 20
 * and 22; later Nodes have no such flag).
 * A hardened Node, which servers start with flags against code made from strings, changed
 * built-ins, `__proto__` and deprecated APIs, runs the WebAssembly kernels with their usual bits,
 * and reads and writes its files.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runScript, SEEDED_AND_HASHED } from './helpers/node.js';

const entry = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));
const internals = fileURLToPath(new URL('../dist/src/pool-internals.js', import.meta.url));

/**
 * What this Node prints to stderr of its own under `flags` for an empty script (V8's "Warning:
 * disabling flag --expose_wasm due to conflicting flags" under --jitless in Node 20 and 22,
 * nothing in Node 24 and later), and whether it takes them (Node 24 and later have no
 * --no-expose-wasm): bnpool's scripts must print nothing more.
 */
function nodeAlone(flags: string[]): { stderr: string; runs: boolean } {
  const run = spawnSync(process.execPath, [...flags, '-e', ''], { encoding: 'utf8' });
  return { stderr: run.stderr, runs: run.status === 0 };
}
const JITLESS_STDERR = nodeAlone(['--jitless']).stderr;
const NO_EXPOSE_WASM = nodeAlone(['--no-expose-wasm']).runs;

/**
 * Training forward, backward, eval forward (of 8-bit input too, for float32) and ChannelStats on
 * seeded data, float32 and float64, channels-first and channels-last, on an inline pool and on a
 * pool of two workers whose memory starts at one page (64 KiB), and the calls grow it. Prints
 * each result's bits as a hash.
 */
const script = (kernel: 'auto' | 'js'): string => `
  const { BatchNorm, ChannelStats, Pool } = await import(${JSON.stringify(entry)});
  const { poolInternals } = await import(${JSON.stringify(internals)});
  ${SEEDED_AND_HASHED}
  let wasm;
  try {
    await new Pool({ threads: 1, kernel: 'wasm' }).close();
    wasm = 'made';
  } catch (err) {
    wasm = [err.name, err.code, err.message];
  }
  const pools = {
    inline: new Pool({ threads: 2, kernel: '${kernel}', inlineThreshold: Number.MAX_SAFE_INTEGER, initialMemory: 65536 }),
    workers: new Pool({ threads: 2, kernel: '${kernel}', inlineThreshold: 0, grainSize: 1, initialMemory: 65536 }),
  };
  const kept = pools.workers.alloc(1000).map((_, i) => i * 0.5);
  const seen = { hasWasm: typeof WebAssembly !== 'undefined', wasm, kernels: [], memories: [], results: {} };
  for (const [where, pool] of Object.entries(pools)) {
    seen.kernels.push(pool.kernel);
    seen.memories.push(pool.memory.constructor.name);
    for (const [shape, layout] of [[[6, 5, 33, 31], 'channels-first'], [[300, 7], 'channels-first'], [[4, 9, 11, 3], 'channels-last'], [[8, 4, 64, 64], 'channels-first']]) {
      for (const Type of [Float32Array, Float64Array]) {
        const n = shape.reduce((a, b) => a * b, 1);
        seed = n; // each pool gets the same data
        const x = Type.from({ length: n }, (_, i) => 100 + (i % 5) + rand());
        const dy = Type.from({ length: n }, () => rand() - 0.5);
        const C = layout === 'channels-last' ? shape.at(-1) : shape[1];
        const bn = new BatchNorm(C, { pool, layout, activation: 'relu', dtype: Type === Float64Array ? 'float64' : 'float32' });
        const y = await bn.forward(x, shape);
        const { dx, dWeight, dBias } = await bn.backward(dy);
        bn.eval();
        const yEval = await bn.forward(x, shape);
        // 8-bit input, which a float32 module takes in eval mode.
        const yBytes = Type === Float32Array ? await bn.forward(Uint8Array.from({ length: n }, () => rand() * 256), shape) : new Uint8Array(0);
        const stats = await ChannelStats.fromBatch(x, shape, { pool, layout });
        seen.results[where + ' ' + shape + ' ' + Type.name] = [y, dx, dWeight, dBias, bn.runningMean, bn.runningVar, yEval, yBytes, stats.mean(), stats.variance()].map(hash);
      }
    }
  }
  // The workers' pool stages on its shared memory, the inline one on its private memory (1 MiB
  // to start), which the last shape's 1 MiB of float64 outgrows.
  const privateMemory = poolInternals(pools.inline).privateInline().arena.memory;
  seen.memories.push(privateMemory.constructor.name);
  seen.grown = [pools.workers.memory.buffer.byteLength > 65536, privateMemory.buffer.byteLength > 1 << 20];
  seen.kept = kept.every((v, i) => v === i * 0.5);
  await Promise.all(Object.values(pools).map((p) => p.close()));
  console.log(JSON.stringify(seen));
`;

function run(kernel: 'auto' | 'js', flags: string[]): Record<string, unknown> & { results: Record<string, number[]> } {
  return runScript(script(kernel), flags, 120_000, flags.includes('--jitless') ? JITLESS_STDERR : '') as ReturnType<typeof run>;
}

let jitlessRun: ReturnType<typeof run> | undefined;
/** The script's run with --jitless, made once for both tests. */
const jitless = (): ReturnType<typeof run> => (jitlessRun ??= run('auto', ['--jitless']));

describe('a runtime without WebAssembly (node --jitless)', () => {
  it.runIf(Number.parseInt(process.versions.v8, 10) < 13)("Node 20 and 22 (V8 before 13) take --no-expose-wasm, and V8 warns under --jitless", () => {
    expect(NO_EXPOSE_WASM).toBe(true);
    expect(JITLESS_STDERR).toBe('Warning: disabling flag --expose_wasm due to conflicting flags\n');
  });

  it("runs the TypeScript kernels on a memory of growable buffers: the bits of kernel 'js'", () => {
    const jitlessSeen = jitless();
    const js = run('js', []);
    expect(jitlessSeen).toMatchObject({
      hasWasm: false, kernels: ['js', 'js'], memories: ['BufferMemory', 'BufferMemory', 'BufferMemory'], grown: [true, true], kept: true,
    });
    expect(js).toMatchObject({
      hasWasm: true, wasm: 'made', kernels: ['js', 'js'], memories: ['Memory', 'Memory', 'Memory'], grown: [true, true], kept: true,
    });
    expect(Object.keys(jitlessSeen.results)).toHaveLength(16);
    expect(jitlessSeen.results).toEqual(js.results);
    // Inline and on workers alike.
    for (const [key, hashes] of Object.entries(js.results)) {
      if (key.startsWith('inline')) expect(js.results[key.replace('inline', 'workers')]).toEqual(hashes);
    }
  }, 240_000);

  it.skipIf(!NO_EXPOSE_WASM)('runs the same way under node --no-expose-wasm, which leaves the JIT on', () => {
    const seen = run('auto', ['--no-expose-wasm']);
    expect(seen).toMatchObject({
      hasWasm: false, kernels: ['js', 'js'], memories: ['BufferMemory', 'BufferMemory', 'BufferMemory'], grown: [true, true], kept: true,
    });
    expect(seen.wasm).toEqual(['ArgumentError', 'ERR_BNPOOL_ARG', expect.stringContaining('(node --jitless or --no-expose-wasm)')]);
    expect(seen.results).toEqual(jitless().results);
  }, 240_000);

  it("refuses kernel 'wasm' with an ArgumentError that says why", () => {
    const { wasm } = jitless();
    expect(wasm).toEqual(['ArgumentError', 'ERR_BNPOOL_ARG', expect.stringContaining("options.kernel 'wasm'")]);
    expect((wasm as string[])[2]).toMatch(/no WebAssembly/);
  }, 120_000);
});

/**
 * Flags of a hardened server: no code from strings (eval, new Function; V8 would also refuse
 * WebAssembly compiled from bytes were an embedder's callback to say so, which Node's does not),
 * built-ins frozen (nothing of bnpool or piscina may patch them), `__proto__` an error, and every
 * deprecated API an error, those Node only warns of under --pending-deprecation too (Buffer()).
 */
const HARDENED = [
  '--disallow-code-generation-from-strings', '--frozen-intrinsics', '--disable-proto=throw', '--throw-deprecation', '--pending-deprecation',
  '--disable-warning=ExperimentalWarning',
];

describe('a hardened Node', () => {
  it('runs the WebAssembly kernels with the bits they have without the flags', () => {
    const hardened = run('auto', HARDENED);
    expect(hardened).toMatchObject({
      hasWasm: true, wasm: 'made', kernels: ['wasm', 'wasm'], memories: ['Memory', 'Memory', 'Memory'], grown: [true, true], kept: true,
    });
    expect(Object.keys(hardened.results)).toHaveLength(16);
    expect(hardened.results).toEqual(run('auto', []).results);
  }, 240_000);

  it('writes and reads safetensors and torch.save files, and reads ONNX and PyTorch fixtures', () => {
    const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
    const files = `
      const { BatchNorm, loadSafetensors, saveSafetensors } = await import(${JSON.stringify(entry)});
      const { mkdtemp, rm } = await import('node:fs/promises');
      const { join } = await import('node:path');
      const { tmpdir } = await import('node:os');
      const dir = await mkdtemp(join(tmpdir(), 'bnpool-hardened-'));
      const filled = (bn, k) => {
        bn.weight.set([1 + k, 2, 3]);
        bn.bias.set([k, -1, 0.5]);
        bn.runningMean.set([0.25, k, -2]);
        bn.runningVar.set([4, 5, 6 + k]);
        return bn;
      };
      const state = (bn) => [bn.weight, bn.bias, bn.runningMean, bn.runningVar].flatMap((a) => [...a]);
      const caught = (run) => { try { run(); return null; } catch (e) { return e.name; } };
      // The flags in force: eval refused, built-ins frozen, __proto__ an error, deprecations thrown.
      const seen = {
        flags: [caught(() => eval('1')), Object.isFrozen(Array.prototype), caught(() => ({}).__proto__), process.throwDeprecation],
      };
      try {
        const a = filled(new BatchNorm(3), 1);
        await a.saveSafetensors(join(dir, 'a.safetensors'));
        await a.saveTorchFile(join(dir, 'a.pt'));
        const fromSafetensors = new BatchNorm(3);
        await fromSafetensors.loadSafetensors(join(dir, 'a.safetensors'));
        const fromTorch = new BatchNorm(3);
        await fromTorch.loadTorchFile(join(dir, 'a.pt'));
        const modules = { bn1: filled(new BatchNorm(3), 2), bn2: filled(new BatchNorm(3), 3) };
        await saveSafetensors(join(dir, 'both.safetensors'), modules);
        const back = { bn1: new BatchNorm(3), bn2: new BatchNorm(3) };
        await loadSafetensors(join(dir, 'both.safetensors'), back);
        seen.roundTrips = [state(fromSafetensors), state(fromTorch), state(back.bn1), state(back.bn2)];
        seen.wanted = [state(a), state(a), state(modules.bn1), state(modules.bn2)];
        const torch = await BatchNorm.fromTorchFile(join(${JSON.stringify(fixtures)}, 'torch-file', 'state_dict.pt'), { prefix: 'bn1.' }).catch((e) => e);
        const onnx = await BatchNorm.fromOnnx(join(${JSON.stringify(fixtures)}, 'onnx', 'bn-only.onnx')).catch((e) => e);
        seen.fixtures = [torch, onnx].map((m) => m instanceof BatchNorm ? [m.numFeatures, m.weight[0]] : [m.name, m.code, m.message]);
      } finally {
        await rm(dir, { recursive: true });
      }
      console.log(JSON.stringify(seen));
    `;
    const seen = runScript(files, HARDENED) as { flags: unknown[]; roundTrips: number[][]; wanted: number[][]; fixtures: unknown[] };
    expect(seen.flags).toEqual(['EvalError', true, 'Error', true]);
    expect(seen.roundTrips).toEqual(seen.wanted);
    expect(seen.wanted[0]).toEqual([2, 2, 3, 1, -1, 0.5, 0.25, 1, -2, 4, 5, 7]);
    // As PyTorch and onnx wrote them (the fixtures' expected.json).
    const expected = (dir: string): any => JSON.parse(readFileSync(new URL(`./fixtures/${dir}/expected.json`, import.meta.url), 'utf8'));
    const torch = expected('torch-file')['state_dict.pt']['bn1.'];
    const onnx = expected('onnx').files['bn-only.onnx'][0];
    expect(seen.fixtures).toEqual([[4, torch.weight[0]], [onnx.numFeatures, onnx.scale[0]]]);
  }, 120_000);
});
