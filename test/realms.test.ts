/**
 * Typed arrays of another realm: a `vm` context has its own Float32Array and Float64Array, so its
 * arrays fail `instanceof` here (they were DtypeErrors saying "must be a Float32Array; got
 * Float32Array(6)"). They are taken as this realm's are, and give the same bits: as x, `out`, a
 * backward's dy, per-channel arrays and state dicts, ChannelStats' arrays; inline and on the
 * workers, both dtypes.
 */
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { BatchNorm, batchNorm, batchNormBackward, ChannelStats, Pool } from '../dist/src/index.js';
import { randomTensor, randomVector, sameBits } from './helpers/data.js';

type FloatArray = Float32Array | Float64Array;

/** A copy of `a` made by the given constructor of a fresh `vm` context. */
function foreign(a: FloatArray | number[], ctor: 'Float32Array' | 'Float64Array' | 'Uint8Array' | 'Int16Array' = a instanceof Float64Array ? 'Float64Array' : 'Float32Array'): FloatArray {
  return runInNewContext(`new ${ctor}(values)`, { values: Array.from(a) }) as FloatArray;
}

const pools = { inline: new Pool({ threads: 2 }), workers: new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 }) };
afterAll(async () => { await Promise.all(Object.values(pools).map((p) => p.close())); });

describe('typed arrays of another realm', () => {
  it('fail instanceof here (what the rest of this file relies on)', () => {
    const a = foreign([1, 2]);
    expect(a instanceof Float32Array).toBe(false);
    expect(a.constructor.name).toBe('Float32Array');
  });

  for (const [where, pool] of Object.entries(pools)) {
    for (const dtype of ['float32', 'float64'] as const) {
      it(`forward, eval and backward give the bits of this realm's arrays: ${where}, ${dtype}`, async () => {
        const shape = [3, 5, 7, 9];
        const C = shape[1];
        const x = randomTensor(shape, dtype, 71);
        const dy = randomTensor(shape, dtype, 72);
        const weights = { weight: randomVector(C, dtype, 73, 0.5, 2), bias: randomVector(C, dtype, 74, -1, 1) };
        const run = async (make: (a: FloatArray) => FloatArray) => {
          const bn = new BatchNorm(C, { pool, dtype });
          bn.loadStateDict({ ...bn.stateDict(), weight: make(weights.weight), bias: make(weights.bias) });
          const xi = make(x);
          const out = make(new (x.constructor as Float32ArrayConstructor)(x.length));
          const y = await bn.forward(xi, shape, { out });
          expect(y).toBe(out);
          const grads = await bn.backward(make(dy));
          bn.eval();
          const e = await bn.forward(xi, shape);
          return [Array.from(y), grads.dx, grads.dWeight!, grads.dBias!, e, bn.runningMean!, bn.runningVar!];
        };
        const here = await run((a) => a.slice());
        const there = await run((a) => foreign(a));
        expect(here[0].some((v) => v !== 0)).toBe(true);
        for (let i = 0; i < here.length; i++) expect(sameBits(there[i], here[i]), `result ${i}`).toBe(true);
      });
    }

    it(`the functional forms and ChannelStats take them: ${where}`, async () => {
      const shape = [4, 3, 33];
      const x = randomTensor(shape, 'float32', 81);
      const dy = randomTensor(shape, 'float32', 82);
      const functional = async (make: (a: FloatArray) => FloatArray) => {
        const runningMean = make(new Float32Array(3));
        const runningVar = make(new Float32Array([1, 1, 1]));
        const r = await batchNorm(make(x), shape, { training: true, runningMean, runningVar, pool });
        const b = await batchNormBackward(make(x), make(dy), shape, { mean: r.mean, invstd: r.var.map((v) => 1 / Math.sqrt(v + 1e-5)), training: true, pool });
        const stats = await ChannelStats.fromBatch(make(x), shape, { pool });
        const built = new ChannelStats(make(new Float64Array(stats.count)), make(stats.mean()), make(new Float64Array(stats.m2)));
        return [r.y, r.mean, r.var, runningMean, runningVar, b.dx, stats.mean(), stats.m2, built.variance()];
      };
      const here = await functional((a) => a.slice());
      const there = await functional((a) => foreign(a));
      for (let i = 0; i < here.length; i++) expect(sameBits(there[i], here[i]), `result ${i}`).toBe(true);
    });
  }

  it('are still checked: a Float64Array of another realm given to a float32 module, a Uint8Array', async () => {
    const bn = new BatchNorm(3, { pool: pools.inline });
    await expect(bn.forward(foreign(new Float64Array(6)), [2, 3])).rejects.toMatchObject({
      code: 'ERR_BNPOOL_DTYPE', message: "x must be a Float32Array (dtype 'float32'); got Float64Array(6)",
    });
    await expect(bn.forward(foreign([1, 2, 3, 4, 5, 6], 'Int16Array'), [2, 3])).rejects.toMatchObject({
      code: 'ERR_BNPOOL_DTYPE', message: 'x must be a Float32Array or a Float64Array; got Int16Array(6)',
    });
    // Another realm's Uint8Array is 8-bit input, as this realm's: eval only.
    await expect(bn.forward(foreign([1, 2, 3, 4, 5, 6], 'Uint8Array') as never, [2, 3])).rejects.toMatchObject({
      code: 'ERR_BNPOOL_ARG', message: '8-bit input (Uint8Array(6)) is normalized with the running statistics only: call eval() first; the module is in training mode',
    });
    // A plain object of that realm is named as one of this realm's would be.
    await expect(bn.forward(runInNewContext('({ length: 6 })') as never, [2, 3])).rejects.toMatchObject({
      code: 'ERR_BNPOOL_DTYPE', message: 'x must be a Float32Array or a Float64Array; got an object',
    });
    expect(bn.numBatchesTracked).toBe(0);
    expect(Array.from(bn.runningMean!)).toEqual([0, 0, 0]);
  });
});
