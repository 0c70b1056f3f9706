/**
 * The README's examples run as written (the `ts` blocks, which are plain JavaScript): block 1 as
 * it stands, blocks 2 to 4 (fragments) with their free variables defined below. What each
 * comment promises is checked on the values the block leaves. Its opening commands are .ci/run's,
 * and the main job they start (`npm start`) runs and passes its own check.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as bnpool from '../dist/src/index.js';
import { randomTensor, randomVector } from './helpers/data.js';

const blocks = [...readFileSync(new URL('../README.md', import.meta.url), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...values: unknown[]) => Promise<unknown>;

/** Runs a block with `scope`'s names defined, without its `import ... from 'bnpool'` line, and returns `names`. */
function run(block: string, scope: Record<string, unknown>, names: string[]): Promise<Record<string, unknown>> {
  const body = `${block.replace(/^import .* from 'bnpool';$/m, '')}\nreturn { ${names.join(', ')} };`;
  const keys = Object.keys(scope);
  return new AsyncFunction(...keys, body)(...keys.map((k) => scope[k])) as Promise<Record<string, unknown>>;
}

const pools: bnpool.Pool[] = [];
afterAll(() => Promise.all(pools.map((p) => p.close())));

it('has the four example blocks this test knows', () => {
  expect(blocks).toHaveLength(4);
});

it('runs "Using it" as written', async () => {
  const v = await run(blocks[0], { ...bnpool }, ['y', 'out', 'sd', 'r', 'bn', 'pool']);
  const [N, C, H, W] = [32, 64, 112, 112];
  expect((v.y as Float32Array).length).toBe(N * C * H * W);
  expect((v.r as { count: number }).count).toBe(N * H * W);
  expect(Object.keys(v.sd as object)).toEqual(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
  expect((v.bn as bnpool.BatchNorm).numBatchesTracked).toBe(0); // resetRunningStats; the aborted call changed nothing
  expect((v.pool as bnpool.Pool).closed).toBe(true);
});

it('runs "Backward and fused ReLU" and "Conventions, layouts, weights and distributed statistics"', async () => {
  const pool = new bnpool.Pool({ threads: 2 });
  pools.push(pool);
  const shape = [4, 64, 6, 7];
  const x = randomTensor(shape, 'float32', 1) as Float32Array;
  const dy = randomTensor(shape, 'float32', 2) as Float32Array;
  const weight = randomVector(64, 'float32', 3, 0.5, 2);
  const bias = randomVector(64, 'float32', 4, -1, 1);
  const b2 = await run(blocks[1], { ...bnpool, pool, shape, x, dy, weight, bias }, ['y', 'dx', 'dWeight', 'dBias', 'g', 'gw', 'g2']);
  expect((b2.dx as Float32Array).length).toBe(x.length);
  expect((b2.dWeight as Float32Array).length).toBe(64);
  const g2 = b2.g2 as bnpool.BatchNormGradients<Float32Array>;
  expect(g2.dWeight).toBe(b2.gw);
  expect(Array.from(g2.dWeight!)).toEqual(Array.from(b2.dWeight as Float32Array));
  expect((b2.g as { dx: Float32Array }).dx.length).toBe(x.length);
  expect(Array.from(b2.y as Float32Array).every((v) => v >= 0)).toBe(true); // ReLU

  const dir = mkdtempSync(join(tmpdir(), 'bnpool-readme-'));
  const cwd = process.cwd();
  process.chdir(dir); // the block writes bn.safetensors where it runs, and reads model.onnx there
  copyFileSync(new URL('./fixtures/onnx/bn-only.onnx', import.meta.url), join(dir, 'model.onnx'));
  copyFileSync(new URL('./fixtures/torch-file/checkpoint.pth', import.meta.url), join(dir, 'checkpoint.pth'));
  try {
    const bn = new bnpool.BatchNorm(64, { pool });
    await bn.forward(x, shape);
    const peer = await bnpool.ChannelStats.fromBatch(randomTensor(shape, 'float32', 5), shape, { pool });
    const b3 = await run(blocks[2], {
      ...bnpool, bn, x, dy, shape,
      pixels: randomTensor([16, 224, 224, 3], 'float32', 6),
      gamma: new Float32Array(64).fill(2), beta: new Float32Array(64), movingMean: new Float32Array(64), movingVariance: new Float32Array(64).fill(4),
      scale: new Float32Array(64).fill(1), B: new Float32Array(64), input_mean: new Float32Array(64).fill(0.5), input_var: new Float32Array(64).fill(3),
      peerJson: JSON.parse(JSON.stringify(peer)),
      // A two-shard all-reduce in one process: this shard and the peer's statistics; gradient sums as they are.
      allReduce: async (mine: bnpool.ChannelStats) => mine.merge(peer),
      allReduceSum: async (sums: bnpool.GradientSums) => sums,
    }, ['keras', 'unscaled', 'onnx', 'nhwc', 'sd', 'merged', 'dx', 'fromOnnx', 'fromTorch']);
    const keras = b3.keras as bnpool.BatchNorm;
    expect([keras.momentum, keras.eps]).toEqual([0.99, 1e-3]);
    expect(Array.from(keras.weight!.slice(0, 2))).toEqual([2, 2]);
    const unscaled = b3.unscaled as bnpool.BatchNorm;
    expect([unscaled.weight!, unscaled.runningVar!].map((a) => Array.from(a.slice(0, 2)))).toEqual([[1, 1], [4, 4]]);
    expect(Array.from((b3.onnx as bnpool.BatchNorm).runningVar!.slice(0, 2))).toEqual([3, 3]);
    expect((b3.merged as bnpool.ChannelStats).count[0]).toBe(2 * 4 * 6 * 7);
    expect((b3.dx as Float32Array).length).toBe(x.length);
    expect(bn.numBatchesTracked).toBe(2); // the synced forward counted
    const fromOnnx = b3.fromOnnx as bnpool.BatchNorm;
    expect([fromOnnx.numFeatures, fromOnnx.training, fromOnnx.convention]).toEqual([6, false, 'onnx']);
    const torchExpected = JSON.parse(readFileSync(new URL('./fixtures/torch-file/expected.json', import.meta.url), 'utf8'))['checkpoint.pth']['state_dict.module.bn.'];
    const fromTorch = b3.fromTorch as bnpool.BatchNorm;
    expect([fromTorch.numFeatures, fromTorch.training]).toEqual([5, true]);
    expect(Array.from(fromTorch.runningVar!)).toEqual(torchExpected.running_var);
    // The file of two modules, as a model's state dict names them.
    expect((await bnpool.BatchNorm.findInSafetensors(join(dir, 'model.safetensors'))).map((f) => f.prefix)).toEqual(['bn1.', 'layer1.1.']);
  } finally {
    process.chdir(cwd);
    rmSync(dir, { recursive: true, force: true });
  }
});

it('runs "Normalizing images on a server": torchvision\'s Normalize on 0-255 pixels', async () => {
  const pool = new bnpool.Pool({ threads: 2 });
  pools.push(pool);
  // 16 images of 224 x 224 RGB bytes, every value 0-255 in every channel.
  const rgb = new Uint8Array(16 * 224 * 224 * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + (i >> 7)) & 255;
  const images = Array.from({ length: 16 }, (_, i) => rgb.subarray(i * 224 * 224 * 3, (i + 1) * 224 * 224 * 3));
  const v = await run(blocks[3], { ...bnpool, pool, images }, ['normalized', 'mean', 'std', 'rgb']);
  expect(v.rgb).toBeInstanceOf(Uint8Array);
  pool.free(v.rgb as Uint8Array); // the block's batch is a live array of the pool's
  const y = v.normalized as Float32Array;
  const [mean, std] = [v.mean as number[], v.std as number[]];
  // Written channels first: element (n, c, s) of y is pixel s of image n's channel c.
  const S = 224 * 224;
  let worst = 0;
  for (let i = 0; i < rgb.length; i++) {
    const n = Math.floor(i / (3 * S));
    const c = Math.floor(i / S) % 3;
    const exact = (rgb[(n * S + (i % S)) * 3 + c] / 255 - mean[c]) / std[c];
    worst = Math.max(worst, Math.abs(y[i] - exact) / Math.max(Math.abs(exact), 1e-3));
  }
  expect(worst).toBeLessThan(2e-7);
  expect(worst).toBeGreaterThan(0); // float32 outputs: not exact
});

describe('the set-up commands', () => {
  const commandsOf = (text: string): string[] => text.split('\n').map((line) => line.replace(/#.*$/, '').trim()).filter((line) => line !== '');
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

  it('open the README, and are what .ci/run runs', () => {
    const opening = /^# bnpool\n\n```sh\n([\s\S]*?)```/.exec(readme);
    expect(opening).not.toBeNull();
    const commands = commandsOf(opening![1]);
    expect(commands).toEqual(['npm ci && npm start', 'npm test']);
    const ci = commandsOf(readFileSync(new URL('../.ci/run', import.meta.url), 'utf8'))
      .filter((line) => !line.startsWith('set ') && !line.startsWith('cd '));
    expect(ci).toEqual(commands);
  });

  it('start a main job that runs, checks its outputs against float64 and reports its speed beside the floor\'s', () => {
    const main = spawnSync(process.execPath, [new URL('../dist/src/main.js', import.meta.url).pathname], { encoding: 'utf8', timeout: 50_000 });
    expect(main.stderr).toBe('');
    expect(main.status).toBe(0);
    const lines = main.stdout.trim().split('\n');
    const head = /^bnpool training forward, float32 \[32, 64, 112, 112\] \(102\.8 MB\), (\d+) threads, (wasm|js) kernel$/.exec(lines[0]);
    expect(head, lines[0]).not.toBeNull();
    const number = '(\\d+\\.\\d+)';
    expect(lines[1]).toMatch(new RegExp(`^median of 15: ${number} ms, ${number} GB/s \\(read \\+ write\\)$`));
    if (head![2] === 'wasm') {
      expect(lines[2]).toMatch(new RegExp(`^streaming floor, same bytes and threads: ${number} ms, ${number} GB/s; training forward / floor = ${number}$`));
    }
    const check = /^check against the float64 reference on channels 0, 32, 63: max \|error\| (\S+) OK$/.exec(lines.at(-1)!);
    expect(check, lines.at(-1)).not.toBeNull();
    expect(Number(check![1])).toBeGreaterThan(0); // float32 outputs: a real comparison, not exact
    expect(Number(check![1])).toBeLessThan(1e-4);
    expect(lines).toHaveLength(head![2] === 'wasm' ? 4 : 3);
  });
});
