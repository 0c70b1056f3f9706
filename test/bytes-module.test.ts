/**
 * 8-bit input to a BatchNorm module in eval mode: as batchNorm with the module's parameters, in
 * the module's call order, and what it refuses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, Pool } from '../dist/src/index.js';
import { elements, sameBits } from './helpers/data.js';
import { channelsOf, type Layout, params, randomBytes } from './helpers/bytes.js';

describe('8-bit input to a BatchNorm module', () => {
  let pool: Pool;
  beforeAll(() => { pool = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }); });
  afterAll(() => pool.close());

  /** A module in eval mode with random weight, bias and running statistics (pixel units). */
  function module(C: number, options: ConstructorParameters<typeof BatchNorm>[1] = {}): BatchNorm {
    const bn = new BatchNorm(C, { pool, eps: 1e-3, ...options });
    const p = params(C, C + 30);
    bn.runningMean!.set(p.runningMean);
    bn.runningVar!.set(p.runningVar);
    bn.weight?.set(p.weight);
    bn.bias?.set(p.bias);
    return bn.eval();
  }

  it("normalizes as batchNorm does with the module's parameters, both layouts, with ReLU, without affine", async () => {
    for (const [layout, shape] of [['channels-first', [4, 3, 31, 33]], ['channels-last', [2, 31, 33, 3]], ['channels-last', [3, 9, 11, 4]]] as [Layout, number[]][]) {
      const C = channelsOf(layout, shape);
      const x = randomBytes(elements(shape), 31 + C);
      for (const options of [{}, { activation: 'relu' as const }, { affine: false }]) {
        const bn = module(C, { layout, ...options });
        const y = await bn.forward(x, shape);
        expect(y).toBeInstanceOf(Float32Array);
        const want = await batchNorm(x, shape, {
          runningMean: bn.runningMean!, runningVar: bn.runningVar!, weight: bn.weight ?? undefined, bias: bn.bias ?? undefined,
          eps: 1e-3, layout, pool, activation: bn.activation,
        });
        expect(sameBits(y, want.y), `${layout} [${shape}] ${JSON.stringify(options)}`).toBe(true);
        const out = pool.alloc(x.length);
        expect(await bn.forward(x, shape, { out })).toBe(out);
        expect(sameBits(out, want.y)).toBe(true);
        pool.free(out);
      }
    }
  });

  it('runs in call order: after a training forward queued before it, with the running statistics it left', async () => {
    const shape = [4, 3, 10, 11];
    const bn = module(3).train();
    const floats = Float32Array.from(randomBytes(elements(shape), 32), (v) => v * 0.9 + 7);
    const first = bn.forward(floats, shape);
    bn.eval();
    const x = randomBytes(elements(shape), 33);
    const second = bn.forward(x, shape);
    await first;
    const y = await second;
    expect(bn.numBatchesTracked).toBe(1);
    const want = await batchNorm(x, shape, { runningMean: bn.runningMean!, runningVar: bn.runningVar!, weight: bn.weight!, bias: bn.bias!, eps: 1e-3, pool });
    expect(sameBits(y, want.y)).toBe(true);
  });

  it('refuses training mode, float64 modules, no running statistics, reduceStats and a wrong out, changing nothing; backward after it', async () => {
    const shape = [2, 3, 4];
    const x = randomBytes(24, 34);
    const snapshot = (bn: BatchNorm) => JSON.stringify([Array.from(bn.runningMean ?? []), Array.from(bn.runningVar ?? []), bn.numBatchesTracked]);
    const training = module(3).train();
    const before = snapshot(training);
    await expect(training.forward(x, shape)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: '8-bit input (Uint8Array(24)) is normalized with the running statistics only: call eval() first; the module is in training mode',
    });
    expect(snapshot(training)).toBe(before);
    await expect(module(3, { dtype: 'float64' }).forward(x, shape)).rejects.toMatchObject({
      code: 'ERR_BNPOOL_DTYPE', message: "x may be 8-bit (Uint8Array(24)) only for a float32 module, whose output is float32; this module's dtype is 'float64'",
    });
    await expect(new BatchNorm(3, { pool, trackRunningStats: false }).eval().forward(x, shape)).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    const bn = module(3);
    await expect(bn.forward(x, shape, { reduceStats: (s) => s })).rejects.toMatchObject({ code: 'ERR_BNPOOL_ARG' });
    await expect(bn.forward(x, shape, { out: new Float64Array(24) as never })).rejects.toMatchObject({ code: 'ERR_BNPOOL_DTYPE' });
    await expect(bn.forward(x, [2, 4, 3])).rejects.toMatchObject({ code: 'ERR_BNPOOL_SHAPE' });
    await bn.forward(x, shape);
    await expect(bn.backward(new Float32Array(24))).rejects.toMatchObject({
      code: 'ERR_BNPOOL_NO_FORWARD',
      message: 'backward needs a forward of float input; the latest forward took 8-bit input, which is normalized and not differentiated',
    });
    // A float forward after it gives backward its input again.
    await bn.forward(Float32Array.from(x), shape);
    const { dx } = await bn.backward(new Float32Array(24).fill(0.5));
    expect(dx.length).toBe(24);
    expect(pool.memoryStats.liveBytes).toBe(0);
  });
});
