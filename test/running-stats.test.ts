/**
 * Module semantics over several steps: momentum 0.1 / 0 / 1 / null (cumulative average), affine
 * off, tracking off, eps, training then eval.
 */
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, Pool } from '../dist/src/index.js';
import { detached, randomTensor } from './helpers/data.js';
import { maxRelativeError, outputErrorRatio, referenceForward, referenceRunningUpdate } from './helpers/reference.js';

let pool: Pool;
beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
afterAll(() => pool.close());

const shape = [6, 4, 7, 9];
const count = 6 * 7 * 9;

describe('running statistics', () => {
  it('console.log and util.inspect show eps, momentum, the mode and numBatchesTracked too (accessors and private fields)', async () => {
    const bn = new BatchNorm(2, { pool, momentum: null });
    await bn.forward(randomTensor([3, 2, 5], 'float32', 5), [3, 2, 5]);
    bn.eval();
    bn.eps = 0.5;
    const shown = inspect(bn);
    for (const part of ['BatchNorm {', 'numFeatures: 2', 'eps: 0.5', 'momentum: null', 'training: false', 'numBatchesTracked: 1', 'runningVar: Float32Array(2)']) {
      expect(shown).toContain(part);
    }
    // Past the depth, as any object: its name only.
    expect(inspect([bn], { depth: 0 })).toBe('[ [BatchNorm] ]');
  });

  it('eps and momentum set on a module (bn.eps = 1e-3; bn.momentum = 0.03) apply to the calls made after', async () => {
    const bn = new BatchNorm(4, { pool, dtype: 'float64' });
    const rm = new Float64Array(4);
    const rv = new Float64Array(4).fill(1);
    bn.eps = 0.25;
    bn.momentum = 0.03;
    const x1 = randomTensor(shape, 'float64', 301);
    const first = bn.forward(x1, shape);
    // Set after the call: the next call's, not this one's, although this one has not run yet.
    bn.momentum = null;
    bn.eps = 2;
    const y1 = await first;
    const ref1 = referenceForward(x1, shape, { training: true, eps: 0.25 });
    expect(outputErrorRatio(y1, x1, shape, ref1, null, 'float64')).toBeLessThanOrEqual(1);
    referenceRunningUpdate(rm, rv, ref1.mean, ref1.var, count, 0.03);
    expect(maxRelativeError(bn.runningMean!, rm, 1e-3)).toBeLessThan(1e-12);
    expect(maxRelativeError(bn.runningVar!, rv, 1e-3)).toBeLessThan(1e-12);
    // momentum null: a cumulative average, 1/2 at the second batch.
    const x2 = randomTensor(shape, 'float64', 302);
    const y2 = await bn.forward(x2, shape);
    const ref2 = referenceForward(x2, shape, { training: true, eps: 2 });
    expect(outputErrorRatio(y2, x2, shape, ref2, null, 'float64')).toBeLessThanOrEqual(1);
    referenceRunningUpdate(rm, rv, ref2.mean, ref2.var, count, 1 / 2);
    expect(maxRelativeError(bn.runningMean!, rm, 1e-3)).toBeLessThan(1e-12);
    expect(maxRelativeError(bn.runningVar!, rv, 1e-3)).toBeLessThan(1e-12);
    // The backward uses the eps of the forward it follows.
    bn.eps = 1e-5;
    const dy = randomTensor(shape, 'float64', 303);
    const g = await bn.backward(dy);
    const same = new BatchNorm(4, { pool, dtype: 'float64', eps: 2 });
    await same.forward(x2, shape);
    expect(Array.from(g.dx)).toEqual(Array.from((await same.backward(dy)).dx));
  });

  for (const momentum of [0.1, 0, 1, null]) {
    it(`follow PyTorch over 4 training steps with momentum ${momentum}, then drive eval`, async () => {
      const bn = new BatchNorm(4, { pool, momentum, dtype: 'float64' });
      const rm = new Float64Array(4);
      const rv = new Float64Array(4).fill(1);
      for (let step = 1; step <= 4; step++) {
        const x = randomTensor(shape, 'float64', 100 + step);
        await bn.forward(x, shape);
        const ref = referenceForward(x, shape, { training: true });
        referenceRunningUpdate(rm, rv, ref.mean, ref.var, count, momentum ?? 1 / step);
        expect(bn.numBatchesTracked).toBe(step);
      }
      expect(maxRelativeError(bn.runningMean!, rm, 1e-3)).toBeLessThan(1e-12);
      expect(maxRelativeError(bn.runningVar!, rv, 1e-3)).toBeLessThan(1e-12);
      if (momentum === 0) {
        expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0, 0]);
        expect(Array.from(bn.runningVar!)).toEqual([1, 1, 1, 1]);
      }
      bn.eval();
      const x = randomTensor(shape, 'float64', 999);
      const y = await bn.forward(x, shape);
      const ref = referenceForward(x, shape, { training: false, runningMean: rm, runningVar: rv });
      expect(outputErrorRatio(y, x, shape, ref, null, 'float64')).toBeLessThanOrEqual(1);
      expect(bn.numBatchesTracked).toBe(4);
    });
  }

  it('uses the given eps', async () => {
    const bn = new BatchNorm(4, { pool, eps: 0.5 });
    const x = randomTensor(shape, 'float32', 3);
    const y = await bn.forward(x, shape);
    const ref = referenceForward(x, shape, { training: true, eps: 0.5 });
    expect(outputErrorRatio(y, x, shape, ref, null, 'float32')).toBeLessThanOrEqual(1);
    const refDefault = referenceForward(x, shape, { training: true });
    expect(outputErrorRatio(y, x, shape, refDefault, null, 'float32')).toBeGreaterThan(1);
  });

  it('has no weight or bias with affine: false', async () => {
    const bn = new BatchNorm(4, { pool, affine: false });
    expect(bn.weight).toBeNull();
    expect(bn.bias).toBeNull();
    expect(Object.keys(bn.stateDict()).sort()).toEqual(['num_batches_tracked', 'running_mean', 'running_var']);
    const x = randomTensor(shape, 'float32', 4);
    const y = await bn.forward(x, shape);
    expect(outputErrorRatio(y, x, shape, referenceForward(x, shape, { training: true }), null, 'float32')).toBeLessThanOrEqual(1);
  });

  it('uses batch statistics in eval and keeps no buffers with trackRunningStats: false', async () => {
    const bn = new BatchNorm(4, { pool, trackRunningStats: false });
    expect(bn.runningMean).toBeNull();
    expect(bn.runningVar).toBeNull();
    expect(Object.keys(bn.stateDict()).sort()).toEqual(['bias', 'weight']);
    bn.weight!.set([2, 1, 0.5, 1]);
    bn.eval();
    const x = randomTensor(shape, 'float32', 6);
    const y = await bn.forward(x, shape);
    const ref = referenceForward(x, shape, { training: true, weight: bn.weight });
    expect(outputErrorRatio(y, x, shape, ref, null, 'float32')).toBeLessThanOrEqual(1);
    expect(bn.numBatchesTracked).toBe(0);
  });

  it('train(mode) and eval() switch modes and return the module', () => {
    const bn = new BatchNorm(2, { pool });
    expect(bn.training).toBe(true);
    expect(bn.eval()).toBe(bn);
    expect(bn.training).toBe(false);
    expect(bn.train()).toBe(bn);
    expect(bn.training).toBe(true);
    expect(bn.train(false).training).toBe(false);
  });

  it('stateDict and loadStateDict round-trip with PyTorch keys', async () => {
    const a = new BatchNorm(4, { pool });
    await a.forward(randomTensor(shape, 'float32', 8), shape);
    a.weight!.set([1, 2, 3, 4]);
    const sd = a.stateDict();
    expect(Object.keys(sd).sort()).toEqual(['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']);
    expect(sd.num_batches_tracked).toBe(1);
    const b = new BatchNorm(4, { pool });
    b.loadStateDict(sd);
    expect(Array.from(b.weight!)).toEqual([1, 2, 3, 4]);
    expect(Array.from(b.runningMean!)).toEqual(Array.from(a.runningMean!));
    expect(Array.from(b.runningVar!)).toEqual(Array.from(a.runningVar!));
    expect(b.numBatchesTracked).toBe(1);
    // A copy: editing the dict does not touch the module.
    (sd.weight as Float32Array)[0] = 99;
    expect(a.weight![0]).toBe(1);
    // Plain arrays and a bigint count load too.
    b.loadStateDict({ weight: [1, 1, 1, 1], bias: [0, 0, 0, 1], running_mean: [0, 0, 0, 0], running_var: [1, 1, 1, 1], num_batches_tracked: 7n });
    expect(b.numBatchesTracked).toBe(7);
    expect(b.bias![3]).toBe(1);
  });

  it('resetRunningStats restarts the cumulative average; resetParameters also resets weight and bias', async () => {
    const bn = new BatchNorm(4, { pool, momentum: null, dtype: 'float64' });
    const first = randomTensor(shape, 'float64', 41);
    const second = randomTensor(shape, 'float64', 42);
    await bn.forward(first, shape);
    await bn.forward(second, shape);
    bn.weight!.set([2, 3, 4, 5]);
    bn.bias!.set([1, 1, 1, 1]);
    bn.resetRunningStats();
    expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0, 0]);
    expect(Array.from(bn.runningVar!)).toEqual([1, 1, 1, 1]);
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.weight!)).toEqual([2, 3, 4, 5]);
    // The next batch is the first of the average again: the running statistics are its own.
    await bn.forward(second, shape);
    const ref = referenceForward(second, shape, { training: true });
    const rm = new Float64Array(4);
    const rv = new Float64Array(4).fill(1);
    referenceRunningUpdate(rm, rv, ref.mean, ref.var, count, 1);
    expect(maxRelativeError(bn.runningMean!, rm, 1e-3)).toBeLessThan(1e-12);
    expect(maxRelativeError(bn.runningVar!, rv, 1e-3)).toBeLessThan(1e-12);
    bn.resetParameters();
    expect(Array.from(bn.weight!)).toEqual([1, 1, 1, 1]);
    expect(Array.from(bn.bias!)).toEqual([0, 0, 0, 0]);
    expect(Array.from(bn.runningVar!)).toEqual([1, 1, 1, 1]);
    expect(bn.numBatchesTracked).toBe(0);
    // Nothing to reset without buffers or parameters.
    const bare = new BatchNorm(4, { pool, affine: false, trackRunningStats: false });
    bare.resetParameters();
    expect(bare.runningMean).toBeNull();
    expect(bare.numBatchesTracked).toBe(0);
  });

  // The module's arrays are plain ones their owner can transfer. A loop of sets would have loaded
  // the weight, the bias and the running mean before it reached a detached running variance.
  it.each([
    ['loadStateDict', (bn: BatchNorm) => bn.loadStateDict({ weight: [2, 2, 2], bias: [1, 1, 1], running_mean: [5, 5, 5], running_var: [7, 7, 7], num_batches_tracked: 4 })],
    ["importWeights('keras')", (bn: BatchNorm) => bn.importWeights('keras', [[2, 2, 2], [1, 1, 1], [5, 5, 5], [7, 7, 7]])],
    ['resetParameters', (bn: BatchNorm) => bn.resetParameters()],
    ['resetRunningStats', (bn: BatchNorm) => bn.resetRunningStats()],
    ['stateDict', (bn: BatchNorm) => bn.stateDict()],
    ["exportWeights('onnx')", (bn: BatchNorm) => bn.exportWeights('onnx')],
  ] as const)('%s on a module whose running variance was detached: an ArgumentError naming it, nothing changed', async (_, method) => {
    const bn = new BatchNorm(3, { pool });
    await bn.forward(randomTensor([4, 3, 5], 'float32', 43), [4, 3, 5]);
    bn.weight!.set([0.5, 0.25, 0.125]);
    const [weight, bias, mean] = [bn.weight!.slice(), bn.bias!.slice(), bn.runningMean!.slice()];
    detached(bn.runningVar!);
    expect(() => method(bn)).toThrow(expect.objectContaining({
      code: 'ERR_BNPOOL_ARG', message: 'the running variance must keep its 3 values; its buffer was detached or resized, and it now has 0',
    }));
    expect([Array.from(bn.weight!), Array.from(bn.bias!), Array.from(bn.runningMean!)]).toEqual([Array.from(weight), Array.from(bias), Array.from(mean)]);
    expect(bn.numBatchesTracked).toBe(1);
  });
});
