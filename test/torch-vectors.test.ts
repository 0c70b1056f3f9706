/**
 * Against PyTorch itself: training forward, running statistics (momentum 0.1, 0.3 and the
 * cumulative average), eval forward, and the gradients of both from autograd, computed by
 * torch.nn.BatchNorm{1,2,3}d 2.13 (test/fixtures/torch/make_vectors.py wrote the vectors; CI has
 * no PyTorch, so they are committed). Ranks 2 to 5, both dtypes, affine off, fused ReLU, and
 * channels last (torch's numbers with the channel axis moved last, run with that layout).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, type Pool } from '../dist/src/index.js';
import { closePools, KERNELS, openPools, POOL_CONFIGS } from './helpers/pools.js';
import { maxRelativeError } from './helpers/reference.js';

/** A vector's value: NaN is written as the string "NaN" (JSON has no number for it). */
type JsonValue = number | 'NaN';

interface TorchCase {
  name: string;
  layout: 'channels-first' | 'channels-last';
  /** The stored arrays' shape: (N, C, ...) or, channels last, (N, ..., C). */
  shape: number[];
  dtype: 'float32' | 'float64';
  momentum: number | null;
  affine: boolean;
  relu: boolean;
  eps: number;
  weight: number[] | null;
  bias: number[] | null;
  x1: JsonValue[];
  x2: JsonValue[];
  dy: JsonValue[];
  train: { y: JsonValue[]; dx: JsonValue[]; dWeight: JsonValue[] | null; dBias: JsonValue[] | null };
  running_mean: JsonValue[];
  running_var: JsonValue[];
  num_batches_tracked: number;
  eval: { y: JsonValue[]; dx: JsonValue[] };
}

const vectors = JSON.parse(readFileSync(new URL('./fixtures/torch/vectors.json', import.meta.url), 'utf8')) as { generator: string; cases: TorchCase[] };

/**
 * Worst |got - want| / max(|want|, 1) over the elements (maxRelativeError: NaN exactly where
 * PyTorch has NaN, else Infinity), against a tolerance. float32 results differ from PyTorch's by
 * the rounding of a different order of operations: measured up to 6.2e-7 (1-2 ulp of values of
 * order 1), 1e-6 allowed, and 1.3e-6 for the channel sums dWeight and dBias, 2e-6 allowed; float64
 * up to 1.6e-15 and 2.7e-15.
 */
function expectClose(got: ArrayLike<number>, want: readonly JsonValue[], tol: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  expect(maxRelativeError(got, want.map(Number), 1), what).toBeLessThanOrEqual(tol);
}

it('has the vectors of every case', () => {
  expect(vectors.generator).toMatch(/^PyTorch 2\./);
  expect(vectors.cases.map((c) => c.shape.length).sort()).toEqual([2, 3, 3, 4, 4, 4, 4, 4, 5, 5]);
  expect(vectors.cases.filter((c) => c.x2.includes('NaN')).map((c) => c.name)).toEqual(['rank4-f32-relu-nan']);
  expect(vectors.cases.filter((c) => c.layout === 'channels-last').map((c) => c.shape.length)).toEqual([3, 4, 5]);
});

for (const kernel of KERNELS) {
  describe(`PyTorch's own numbers (${kernel} kernel)`, () => {
    let pools: Map<string, Pool>;
    beforeAll(() => { pools = openPools(kernel); });
    afterAll(() => closePools(pools));

    for (const { name: poolName } of POOL_CONFIGS) {
      for (const c of vectors.cases) {
        it(`${c.name} [${c.shape}]: ${poolName}`, async () => {
          const Float = c.dtype === 'float32' ? Float32Array : Float64Array;
          const tol = c.dtype === 'float32' ? 1e-6 : 1e-14;
          const sumTol = c.dtype === 'float32' ? 2e-6 : 1e-13;
          const C = c.layout === 'channels-last' ? c.shape[c.shape.length - 1] : c.shape[1];
          const bn = new BatchNorm(C, {
            pool: pools.get(poolName)!, dtype: c.dtype, momentum: c.momentum, eps: c.eps, affine: c.affine,
            activation: c.relu ? 'relu' : null, layout: c.layout,
          });
          if (c.affine) {
            bn.weight!.set(c.weight!);
            bn.bias!.set(c.bias!);
          }
          await bn.forward(Float.from(c.x1.map(Number)), c.shape);
          const x2 = Float.from(c.x2.map(Number));
          const y = await bn.forward(x2, c.shape);
          expectClose(y, c.train.y, tol, 'training y');
          expectClose(bn.runningMean!, c.running_mean, tol, 'running_mean');
          expectClose(bn.runningVar!, c.running_var, tol, 'running_var');
          expect(bn.numBatchesTracked).toBe(c.num_batches_tracked);
          const g = await bn.backward(Float.from(c.dy.map(Number)));
          expectClose(g.dx, c.train.dx, tol, 'training dx');
          if (c.affine) {
            expectClose(g.dWeight!, c.train.dWeight!, sumTol, 'dWeight');
            expectClose(g.dBias!, c.train.dBias!, sumTol, 'dBias');
          } else {
            expect(g.dWeight).toBeNull();
            expect(g.dBias).toBeNull();
          }
          bn.eval();
          expectClose(await bn.forward(x2, c.shape), c.eval.y, tol, 'eval y');
          expectClose((await bn.backward(Float.from(c.dy.map(Number)))).dx, c.eval.dx, tol, 'eval dx');
        });
      }
    }
  });
}
