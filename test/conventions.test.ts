/**
 * Framework conventions: torch (default), onnx and keras momentum and variance rules, checked
 * against a float64 reference, against onnxruntime's own BatchNormalization (opset 15,
 * training_mode 1), and against keras.layers.BatchNormalization's own numbers (Keras 3.15 on
 * JAX; test/fixtures/keras/make_vectors.py wrote them, committed since CI has no Keras).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, ChannelStats, CONVENTIONS, Pool } from '../dist/src/index.js';
import { batchNormModel } from '../dist/bench/peers/onnx-model.js';
import { randomTensor, randomVector, rng } from './helpers/data.js';
import { channelStats, maxRelativeError, outputErrorRatio, referenceForward, type RefResult } from './helpers/reference.js';
import { rendezvous } from './helpers/sync.js';

/**
 * The seeded onnxruntime cases below: 48 from seed 2026 in CI; `BNPOOL_ORT_CASES=3000` (and
 * `BNPOOL_ORT_SEED`) run a longer search locally, and `BNPOOL_ORT_WIDTH=4` draws each size from
 * a range four times as wide (1, CI's, draws the same shapes as before it existed).
 */
const ORT_CASES = Number(process.env.BNPOOL_ORT_CASES ?? 48);
const ORT_SEED = Number(process.env.BNPOOL_ORT_SEED ?? 2026);
const ORT_WIDTH = Number(process.env.BNPOOL_ORT_WIDTH ?? 1);

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

/** An ONNX BatchNormalization's inputs beside X: scale, B, input_mean, input_var (float32, C each). */
interface OnnxState { scale: Float32Array; B: Float32Array; input_mean: Float32Array; input_var: Float32Array }

/**
 * One run of a BatchNormalization node (opset 15) in onnxruntime, from `state`: its outputs by
 * name (Y, and in training mode running_mean and running_var).
 */
async function onnxRun(
  x: Float32Array, shape: readonly number[], state: OnnxState, opts: { training: boolean; epsilon: number; momentum: number },
): Promise<Record<string, Float32Array>> {
  const ort = createRequire(import.meta.url)('onnxruntime-node') as typeof import('onnxruntime-node');
  const C = shape[1];
  const t = (a: Float32Array, dims: readonly number[]) => new ort.Tensor('float32', a, dims as number[]);
  const session = await ort.InferenceSession.create(batchNormModel(shape, opts));
  const out = await session.run({
    X: t(x, shape), scale: t(state.scale, [C]), B: t(state.B, [C]), input_mean: t(state.input_mean, [C]), input_var: t(state.input_var, [C]),
  });
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([name, tensor]) => [name, tensor.data as Float32Array]));
}

/**
 * One training step (training_mode 1) of x, from `state`, in onnxruntime (its Y, running_mean and
 * running_var) and in an onnx-convention module loaded with the same state (its output, and the
 * module for its running statistics).
 */
async function onnxTrainingStep(
  x: Float32Array, shape: readonly number[], state: OnnxState, momentum: number, eps: number,
): Promise<{ ort: { Y: Float32Array; running_mean: Float32Array; running_var: Float32Array }; bn: BatchNorm; y: Float32Array }> {
  const { Y, running_mean, running_var } = await onnxRun(x, shape, state, { training: true, epsilon: eps, momentum });
  const bn = new BatchNorm(shape[1], { pool, convention: 'onnx', momentum, eps });
  bn.importWeights('onnx', state);
  const y = await bn.forward(x, shape);
  return { ort: { Y, running_mean, running_var }, bn, y };
}

/**
 * onnxruntime's output `ortY` against bnpool's `y` for input x: NaN in the same places; elsewhere
 * within onnxruntime's float32 roundings of the terms of its folded `x·a + (B - mean·a)` (2^-20
 * of them; `ref` gives each channel's mean and a = weight·invstd), plus `statistics` times each
 * channel's |a|·sd, the share of |weight| bnpool's float32 batch statistics may add (0 in eval).
 */
function expectOrtOutput(
  ortY: Float32Array, y: Float32Array, x: Float32Array, shape: readonly number[],
  ref: RefResult, B: Float32Array, statistics: number, label: string,
): void {
  expect([ortY.length, y.length], label).toEqual([x.length, x.length]);
  const C = shape[1];
  const S = x.length / Math.max(1, shape[0] * C);
  for (let i = 0; i < x.length; i++) {
    const c = Math.floor(i / S) % C;
    if (Number.isNaN(ortY[i]) || Number.isNaN(y[i])) {
      expect([Number.isNaN(ortY[i]), i], label).toEqual([Number.isNaN(y[i]), i]);
      continue;
    }
    const a = Math.abs(ref.scale[c]);
    const terms = (Math.abs(x[i]) + Math.abs(ref.mean[c])) * a + Math.abs(B[c]) + Math.abs(y[i]);
    expect(Math.abs(ortY[i] - y[i]), `${label}, y[${i}]`).toBeLessThanOrEqual(2 ** -20 * terms + statistics * a * Math.sqrt(ref.var[c]));
  }
}

describe('conventions', () => {
  it('set momentum, eps and estimator defaults per framework', () => {
    expect(new BatchNorm(2, { pool }).momentum).toBe(0.1);
    expect(new BatchNorm(2, { pool, convention: 'onnx' }).momentum).toBe(0.9);
    const keras = new BatchNorm(2, { pool, convention: 'keras' });
    expect(keras.momentum).toBe(0.99);
    expect(keras.eps).toBe(1e-3);
    expect(CONVENTIONS.torch.unbiased).toBe(true);
    expect(CONVENTIONS.onnx.unbiased).toBe(false);
    expect(() => new BatchNorm(2, { convention: 'tf' as never })).toThrow(/options.convention/);
  });

  for (const convention of ['onnx', 'keras'] as const) {
    it(`${convention}: momentum weights the old value and the running variance is biased`, async () => {
      const shape = [5, 3, 7, 6];
      const bn = new BatchNorm(3, { pool, convention, dtype: 'float64' });
      const m = CONVENTIONS[convention].momentum;
      const rm = new Float64Array(3);
      const rv = new Float64Array(3).fill(1);
      for (let step = 0; step < 3; step++) {
        const x = randomTensor(shape, 'float64', 40 + step);
        const y = await bn.forward(x, shape);
        const ref = referenceForward(x, shape, { training: true, eps: CONVENTIONS[convention].eps });
        expect(outputErrorRatio(y, x, shape, ref, null, 'float64')).toBeLessThanOrEqual(1);
        for (let c = 0; c < 3; c++) {
          rm[c] = m * rm[c] + (1 - m) * ref.mean[c];
          rv[c] = m * rv[c] + (1 - m) * ref.var[c];
        }
      }
      expect(maxRelativeError(bn.runningMean!, rm, 1e-3)).toBeLessThan(1e-12);
      expect(maxRelativeError(bn.runningVar!, rv, 1e-3)).toBeLessThan(1e-12);
    });
  }

  it('onnx: reproduces onnxruntime BatchNormalization (opset 15, training_mode 1)', async () => {
    const shape = [4, 3, 5, 7];
    const x = randomTensor(shape, 'float32', 77) as Float32Array;
    const scale = randomVector(3, 'float32', 1, 0.5, 2) as Float32Array;
    const B = randomVector(3, 'float32', 2, -1, 1) as Float32Array;
    const mean0 = randomVector(3, 'float32', 3, -0.5, 0.5) as Float32Array;
    const var0 = randomVector(3, 'float32', 4, 0.5, 2) as Float32Array;
    const momentum = 0.8;
    const eps = 1e-5;
    const { ort: out, bn, y } = await onnxTrainingStep(x, shape, { scale, B, input_mean: mean0, input_var: var0 }, momentum, eps);
    // Both compute in float32 output precision from the same float32 inputs; they may differ by a
    // few float32 ulps of the terms (different summation orders).
    const ref = referenceForward(x, shape, { training: true, weight: scale, bias: B, eps });
    expect(outputErrorRatio(out.Y, x, shape, ref, B, 'float32')).toBeLessThanOrEqual(1);
    expect(outputErrorRatio(y, x, shape, ref, B, 'float32')).toBeLessThanOrEqual(1);
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i] - out.Y[i]));
    expect(worst).toBeLessThan(1e-5);
    expect(maxRelativeError(bn.runningMean!, out.running_mean, 1e-3)).toBeLessThan(1e-6);
    expect(maxRelativeError(bn.runningVar!, out.running_var, 1e-3)).toBeLessThan(1e-6);
    // ...and the running variance is the biased one: with the unbiased one it would differ.
    const stats = channelStats(x, shape);
    const m = x.length / 3;
    const unbiased = Array.from({ length: 3 }, (_, c) => momentum * var0[c] + (1 - momentum) * stats.var[c] * m / (m - 1));
    expect(maxRelativeError(bn.runningVar!, unbiased, 1e-3)).toBeGreaterThan(1e-4);
  });

  it('onnx: degenerate batches as onnxruntime: one value per channel normalized, an empty batch\'s NaN statistics in the running ones', async () => {
    const [momentum, eps] = [0.8, 1e-5];
    const scale = randomVector(3, 'float32', 11, 0.5, 2) as Float32Array;
    const B = randomVector(3, 'float32', 12, -1, 1) as Float32Array;
    const mean0 = randomVector(3, 'float32', 13, -0.5, 0.5) as Float32Array;
    const var0 = randomVector(3, 'float32', 14, 0.5, 2) as Float32Array;
    for (const [i, shape] of [[1, 3], [1, 3, 1, 1], [1, 3, 1, 1, 1], [0, 3], [0, 3, 4, 4], [2, 3, 0], [2, 3, 5, 0, 2]].entries()) {
      const x = new Float32Array(shape.reduce((a, b) => a * b)).map((_, j) => Math.sin(7 * i + j) * 3 + 1.5);
      const { ort: out, bn, y } = await onnxTrainingStep(x, shape, { scale, B, input_mean: mean0, input_var: var0 }, momentum, eps);
      // One value: x - mean is 0, so bnpool gives bias exactly. onnxruntime folds the output into
      // x·a + (B - mean·a), a = scale / sqrt(var + eps), in float32: off by the roundings of x·a
      // and mean·a, which do not cancel (up to 4.4e-5 on these).
      expect(y.length, `${shape}`).toBe(out.Y.length);
      if (x.length > 0) {
        expect(Array.from(y), `${shape}`).toEqual(Array.from(B));
        for (let c = 0; c < 3; c++) {
          const folded = Math.abs(x[c] * scale[c]) / Math.sqrt(eps);
          expect(Math.abs(out.Y[c] - y[c]), `${shape}, channel ${c}`).toBeLessThanOrEqual(2 ** -22 * (folded + Math.abs(B[c])));
        }
      }
      const [ortMean, ortVar] = [out.running_mean, out.running_var];
      if (x.length === 0) {
        expect([...ortMean, ...ortVar].every(Number.isNaN), `${shape}`).toBe(true);
        expect([...bn.runningMean!, ...bn.runningVar!].every(Number.isNaN), `${shape}`).toBe(true);
      } else {
        // float32 arithmetic there, float64 rounded once here: within an ulp.
        expect(maxRelativeError(bn.runningMean!, ortMean, 1e-3), `${shape}`).toBeLessThan(1e-6);
        expect(Array.from(bn.runningVar!, (v) => Math.fround(v)), `${shape}`).toEqual(Array.from(var0, (v) => Math.fround(momentum * v)));
        expect(maxRelativeError(bn.runningVar!, ortVar, 1e-3), `${shape}`).toBeLessThan(1e-6);
      }
    }
  });

  it('onnx: seeded random batches match onnxruntime, a training step and inference after it (ranks 2-5, one value, none, NaN, an offset, momentum and eps drawn)', async () => {
    const rand = rng(ORT_SEED);
    const drawn = { single: 0, empty: 0, nan: 0 };
    for (let k = 0; k < ORT_CASES; k++) {
      const rank = 2 + Math.floor(rand() * 4);
      const C = 1 + Math.floor(rand() * 5);
      const shape = [Math.floor(rand() * 4 * ORT_WIDTH), C, ...Array.from({ length: rank - 2 }, () => Math.floor(rand() * 5 * ORT_WIDTH))];
      const form = rand();
      for (let i = 0; i < rank; i++) if (i !== 1) shape[i] = form < 0.15 ? 1 : form < 0.75 ? Math.max(1, shape[i]) : shape[i];
      const n = shape.reduce((a, b) => a * b);
      const S = n / Math.max(1, shape[0] * C);
      const offset = rand() < 0.25 ? 1000 : 0;
      const x = new Float32Array(n).map(() => offset + (rand() - 0.5) * 6);
      const nanChannel = n > 0 && rand() < 0.15 ? Math.floor(rand() * C) : -1;
      if (nanChannel >= 0) x[nanChannel * S] = NaN;
      const [momentum, eps] = [Math.fround(rand()), Math.fround(10 ** (-6 + 4 * rand()))];
      const vector = (lo: number, hi: number) => new Float32Array(C).map(() => lo + rand() * (hi - lo));
      const [scale, B, mean0, var0] = [vector(-2, 2), vector(-1, 1), vector(-1, 1), vector(0.5, 2)];
      drawn.single += n > 0 && n === C ? 1 : 0;
      drawn.empty += n === 0 ? 1 : 0;
      drawn.nan += nanChannel >= 0 ? 1 : 0;
      const { ort: out, bn, y } = await onnxTrainingStep(x, shape, { scale, B, input_mean: mean0, input_var: var0 }, momentum, eps);
      const label = `case ${k}: ${JSON.stringify(shape)}, momentum ${momentum}, eps ${eps}, offset ${offset}, NaN in ${nanChannel}`;
      const ref = referenceForward(x, shape, { training: true, weight: scale, bias: B, eps });
      expect(outputErrorRatio(y, x, shape, ref, B, 'float32'), label).toBeLessThanOrEqual(1);
      // onnxruntime sums in float32 and folds y = x·a + (B - mean·a): its own roundings, of the
      // terms. bnpool's float32 statistics add their own error, a share of |weight| (README,
      // "Float32 outputs"), which shows on outputs near 0 of wider batches: at BNPOOL_ORT_WIDTH=4,
      // seeds 7, 8 and 9 had outputs where the two differed by more than onnxruntime's own
      // roundings, bnpool there up to 0.10·2^-23·|weight| from the float64 answer and
      // onnxruntime up to 0.03.
      expectOrtOutput(out.Y, y, x, shape, ref, B, 2 ** -22, label);
      for (const [got, want, name] of [[bn.runningMean!, out.running_mean, 'mean'], [bn.runningVar!, out.running_var, 'var']] as const) {
        for (let c = 0; c < C; c++) {
          const [g, w] = [got[c], want[c]];
          if (Number.isNaN(g) || Number.isNaN(w)) expect([Number.isNaN(g), name, c], label).toEqual([Number.isNaN(w), name, c]);
          else expect(Math.abs(g - w), `${label}, running ${name}[${c}]`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(w)));
        }
      }
      // Then inference (training_mode 0) from the module's new running statistics, as a server
      // that imported the model runs it: no statistics of its own, so within onnxruntime's
      // roundings of the terms alone. A NaN or an empty batch's running statistics make their
      // channels NaN in both.
      const [runningMean, runningVar] = [bn.runningMean as Float32Array, bn.runningVar as Float32Array];
      const { Y: ortEval } = await onnxRun(x, shape, { scale, B, input_mean: runningMean, input_var: runningVar }, { training: false, epsilon: eps, momentum });
      bn.eval();
      const yEval = await bn.forward(x, shape);
      const refEval = referenceForward(x, shape, { training: false, runningMean, runningVar, weight: scale, bias: B, eps });
      expect(outputErrorRatio(yEval, x, shape, refEval, B, 'float32'), `${label}, eval`).toBeLessThanOrEqual(1);
      expectOrtOutput(ortEval, yEval, x, shape, refEval, B, 0, `${label}, eval`);
    }
    // The draw covers each kind of batch more than once. A wider draw is for the larger batches
    // and rarely draws a zero size (once in 300 cases at BNPOOL_ORT_WIDTH=8, seed 12).
    if (ORT_WIDTH === 1) expect(Math.min(drawn.single, drawn.empty, drawn.nan), JSON.stringify(drawn)).toBeGreaterThanOrEqual(2);
  }, Math.max(60_000, ORT_CASES * 100 * ORT_WIDTH ** 3));

  it('keras: one value per channel normalizes to beta and updates with variance 0; an empty batch makes the moving statistics NaN', async () => {
    // Keras's BatchNormalization.call has no check for either: ops.moments of one value gives a
    // variance of 0, of none NaN, and its update formula takes them (Keras's own numbers below,
    // "degenerate batch"; here the backward too, and channels first).
    for (const layout of ['channels-first', 'channels-last'] as const) {
      const bn = new BatchNorm(3, { pool, convention: 'keras', layout });
      bn.weight!.set([1.5, -0.5, 2]);
      bn.bias!.set([0.25, -1, 3]);
      bn.runningMean!.set([0.5, -1, 2]);
      const one = Float32Array.of(4, -2, 7);
      const y = await bn.forward(one, layout === 'channels-first' ? [1, 3, 1] : [1, 1, 3]);
      expect(Array.from(y)).toEqual([0.25, -1, 3]);
      expect(Array.from(bn.runningMean!)).toEqual(Array.from([0.5, -1, 2], (v, c) => Math.fround(0.99 * v + 0.01 * one[c])));
      expect(Array.from(bn.runningVar!)).toEqual(Array(3).fill(Math.fround(0.99)));
      const g = await bn.backward(Float32Array.of(1, 2, 3));
      expect([...g.dx, ...g.dWeight!, ...g.dBias!].map((v) => v + 0)).toEqual([0, 0, 0, 0, 0, 0, 1, 2, 3]); // -0 as 0
      await bn.forward(new Float32Array(0), [0, 3]);
      expect([...bn.runningMean!, ...bn.runningVar!].every(Number.isNaN)).toBe(true);
      expect(bn.numBatchesTracked).toBe(2);
    }
    // The torch convention keeps PyTorch's rules: one value refused, an empty batch leaves them.
    const torch = new BatchNorm(3, { pool });
    await expect(torch.forward(Float32Array.of(4, -2, 7), [1, 3])).rejects.toMatchObject({ code: 'ERR_BNPOOL_SINGLE_VALUE' });
    await torch.forward(new Float32Array(0), [0, 3]);
    expect([...torch.runningMean!, ...torch.runningVar!]).toEqual([0, 0, 0, 1, 1, 1]);
  });

  it('onnx: a synced batch of one value per channel over every shard is normalized, where torch refuses it', async () => {
    const reduce = () => rendezvous<ChannelStats>((parts) => parts[0].merge(parts[1]));
    const one = Float32Array.of(4, -2, 7);
    const shards = [new BatchNorm(3, { pool, convention: 'onnx' }), new BatchNorm(3, { pool, convention: 'onnx' })];
    const reduceStats = reduce();
    const [y, empty] = await Promise.all([
      shards[0].forward(one, [1, 3], { reduceStats }), shards[1].forward(new Float32Array(0), [0, 3], { reduceStats }),
    ]);
    expect([Array.from(y), empty.length]).toEqual([[0, 0, 0], 0]);
    for (const bn of shards) {
      expect(Array.from(bn.runningMean!)).toEqual(Array.from(one, (v) => Math.fround(0.1 * v)));
      expect(Array.from(bn.runningVar!)).toEqual(Array(3).fill(Math.fround(0.9)));
    }
    const torch = [new BatchNorm(3, { pool }), new BatchNorm(3, { pool })];
    const reduceTorch = reduce();
    const settled = await Promise.allSettled([
      torch[0].forward(one, [1, 3], { reduceStats: reduceTorch }), torch[1].forward(new Float32Array(0), [0, 3], { reduceStats: reduceTorch }),
    ]);
    expect(settled.map((r) => r.status === 'rejected' && (r.reason as { code: string }).code)).toEqual(['ERR_BNPOOL_SINGLE_VALUE', 'ERR_BNPOOL_SINGLE_VALUE']);
  });
});

interface KerasCase {
  name: string;
  shape: number[];
  dtype: 'float32';
  momentum: number;
  epsilon: number;
  affine: boolean;
  gamma: number[] | null;
  beta: number[] | null;
  x1: number[];
  x2: number[];
  train_y: number[];
  moving_mean: number[];
  moving_variance: number[];
  weights: number[][];
  eval_y: number[];
}

/** A training step of Keras's layer on a degenerate batch, from set [gamma, beta, moving_mean, moving_variance]. */
interface KerasDegenerate {
  name: string;
  shape: number[];
  state: number[][];
  x: number[];
  train_y: number[];
  moving_mean: (number | 'NaN')[];
  moving_variance: (number | 'NaN')[];
}

/** A layer built with scale=False or center=False: its get_weights() before and after a training step. */
interface KerasPartial {
  name: string;
  shape: number[];
  options: { scale?: boolean; center?: boolean };
  initial: number[][];
  x1: number[];
  x2: number[];
  train_y: number[];
  weights: number[][];
  eval_y: number[];
}

describe("keras: Keras's own BatchNormalization (channels last)", () => {
  const keras = JSON.parse(readFileSync(new URL('./fixtures/keras/vectors.json', import.meta.url), 'utf8')) as {
    generator: string; cases: KerasCase[]; degenerate: KerasDegenerate[]; partial: KerasPartial[];
  };
  /**
   * Worst |got - want| / max(|want|, 1): both compute in float32 in different orders (Keras: XLA's
   * reductions); measured up to 4.1e-7 (3.8e-7 on the vectors of the fourth machine), 1e-6 allowed. The
   * torch rules on the same data miss the moving variance by 1e-3 to 5e-2.
   */
  const worst = (got: ArrayLike<number>, want: readonly number[]): number => {
    expect(got.length).toBe(want.length);
    return maxRelativeError(got, want, 1);
  };

  it('has the vectors of every case', () => {
    expect(keras.generator).toMatch(/^Keras 3\./);
    expect(keras.cases.map((c) => c.shape.length)).toEqual([4, 2, 3, 4]);
    expect(keras.degenerate.map((c) => c.name)).toEqual(['one-value-rank2', 'one-value-rank4', 'empty-rank2', 'empty-rank4', 'empty-spatial']);
    expect(keras.partial.map((c) => [c.name, c.initial.length, c.weights.length])).toEqual([['rank3-f32-no-scale', 3, 3], ['rank2-f32-no-center', 3, 3]]);
  });

  for (const c of keras.partial) {
    it(`${c.name} [${c.shape}]: a layer without gamma or beta, its get_weights() list both ways`, async () => {
      const C = c.shape[c.shape.length - 1];
      // Loaded from the layer's list (the missing gamma or beta as the identity), trained as it was.
      const bn = new BatchNorm(C, { pool, convention: 'keras', layout: 'channels-last' });
      bn.importWeights('keras', c.initial, c.options);
      await bn.forward(Float32Array.from(c.x1), c.shape);
      const x2 = Float32Array.from(c.x2);
      expect(worst(await bn.forward(x2, c.shape), c.train_y), 'training y').toBeLessThanOrEqual(1e-6);
      const exported = bn.exportWeights('keras', c.options);
      expect(exported).toHaveLength(c.weights.length);
      exported.forEach((w, i) => expect(worst(w, c.weights[i]), `weight ${i}`).toBeLessThanOrEqual(1e-6));
      // Keras's list after the step, loaded into a new module: Keras's inference output.
      const loaded = new BatchNorm(C, { pool, convention: 'keras', layout: 'channels-last' });
      loaded.importWeights('keras', c.weights, c.options);
      loaded.eval();
      expect(worst(await loaded.forward(x2, c.shape), c.eval_y), 'eval y').toBeLessThanOrEqual(1e-6);
    });
  }

  for (const c of keras.degenerate) {
    it(`${c.name} [${c.shape}]: Keras's training step on a degenerate batch`, async () => {
      const bn = new BatchNorm(3, { pool, convention: 'keras', layout: 'channels-last' });
      for (const [i, array] of [bn.weight!, bn.bias!, bn.runningMean!, bn.runningVar!].entries()) array.set(c.state[i]);
      const y = await bn.forward(Float32Array.from(c.x), c.shape);
      // One value per channel: x - mean is 0, so every output here is beta exactly. Keras folds
      // x·a + (beta - mean·a), a = gamma / sqrt(var + eps), in float32: off by the roundings of
      // x·a and mean·a (up to 1.6e-6 on these).
      expect(y.length).toBe(c.train_y.length);
      if (c.x.length > 0) expect(Array.from(y)).toEqual(c.state[1].map((v) => Math.fround(v)));
      for (let i = 0; i < y.length; i++) {
        const a = Math.abs(c.state[0][i]) / Math.sqrt(bn.eps);
        expect(Math.abs(y[i] - c.train_y[i]), `y[${i}]`).toBeLessThanOrEqual(2 ** -22 * (2 * Math.abs(c.x[i]) * a + Math.abs(c.state[1][i])));
      }
      const fromJson = (values: (number | 'NaN')[]) => values.map((v) => (v === 'NaN' ? NaN : v));
      expect(worst(bn.runningMean!, fromJson(c.moving_mean)), 'moving_mean').toBeLessThanOrEqual(1e-6);
      expect(worst(bn.runningVar!, fromJson(c.moving_variance)), 'moving_variance').toBeLessThanOrEqual(1e-6);
      expect([...bn.runningMean!].every(Number.isNaN)).toBe(c.x.length === 0);
    });
  }

  for (const c of keras.cases) {
    it(`${c.name} [${c.shape}]`, async () => {
      const C = c.shape[c.shape.length - 1];
      const defaults = c.momentum === 0.99 && c.epsilon === 1e-3;
      const options = defaults ? {} : { momentum: c.momentum, eps: c.epsilon };
      const bn = new BatchNorm(C, { pool, convention: 'keras', layout: 'channels-last', affine: c.affine, ...options });
      expect([bn.momentum, bn.eps]).toEqual([c.momentum, c.epsilon]);
      if (c.affine) {
        bn.weight!.set(c.gamma!);
        bn.bias!.set(c.beta!);
      }
      await bn.forward(Float32Array.from(c.x1), c.shape);
      const x2 = Float32Array.from(c.x2);
      expect(worst(await bn.forward(x2, c.shape), c.train_y), 'training y').toBeLessThanOrEqual(1e-6);
      expect(worst(bn.runningMean!, c.moving_mean), 'moving_mean').toBeLessThanOrEqual(1e-6);
      expect(worst(bn.runningVar!, c.moving_variance), 'moving_variance').toBeLessThanOrEqual(1e-6);
      bn.eval();
      expect(worst(await bn.forward(x2, c.shape), c.eval_y), 'eval y').toBeLessThanOrEqual(1e-6);
      if (!c.affine) return;
      // get_weights() order, both ways: a module loaded with Keras's weights gives Keras's output.
      bn.exportWeights('keras').forEach((w, i) => expect(worst(w, c.weights[i]), `weight ${i}`).toBeLessThanOrEqual(1e-6));
      const loaded = new BatchNorm(C, { pool, convention: 'keras', layout: 'channels-last', ...options });
      loaded.importWeights('keras', c.weights);
      loaded.eval();
      expect(worst(await loaded.forward(x2, c.shape), c.eval_y), 'eval y, imported').toBeLessThanOrEqual(1e-6);
    });
  }
});
