/** The ONNX project's PyTorch-exported BatchNorm vectors, in ../shared/conformance. */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, type Pool } from '../dist/src/index.js';
import { closePools, KERNELS, openPools, POOL_CONFIGS } from './helpers/pools.js';

interface Case {
  name: string;
  mode: 'eval';
  shape: number[];
  eps: number;
  weight: number[];
  bias: number[];
  running_mean: number[];
  running_var: number[];
  x: number[];
  y: number[];
}

const file = new URL('../../shared/conformance/onnx-pytorch-converted.json', import.meta.url);
const { cases } = JSON.parse(readVectors(file)) as { cases: Case[] };

/** The vectors' text; a missing file fails the suite with where it was looked for. */
function readVectors(url: URL): string {
  try {
    return readFileSync(url, 'utf8');
  } catch (err) {
    throw new Error(`conformance vectors not found at ${url.pathname}: the project expects shared/ beside it (../shared from its root)`, { cause: err });
  }
}

for (const kernel of KERNELS) {
  describe(`ONNX/PyTorch conformance vectors (${kernel} kernel)`, () => {
    let pools: Map<string, Pool>;
    beforeAll(() => { pools = openPools(kernel); });
    afterAll(() => closePools(pools));

    it('has the five cases', () => {
      expect(cases.map((c) => c.name)).toHaveLength(5);
    });

    for (const { name } of POOL_CONFIGS) {
      for (const tc of cases) {
        it(`${tc.name}: ${name}`, async () => {
          const C = tc.shape[1];
          const bn = new BatchNorm(C, { pool: pools.get(name)!, eps: tc.eps });
          bn.loadStateDict({
            weight: tc.weight, bias: tc.bias, running_mean: tc.running_mean, running_var: tc.running_var,
            num_batches_tracked: 0,
          });
          bn.eval();
          const y = await bn.forward(Float32Array.from(tc.x), tc.shape);
          // PyTorch computed these in float32; ours round a float64 computation once, so the two
          // may differ by a few float32 ulps of the output's magnitude.
          for (let i = 0; i < tc.y.length; i++) {
            expect(Math.abs(y[i] - tc.y[i])).toBeLessThanOrEqual(4 * 2 ** -23 * Math.max(1, Math.abs(tc.y[i])));
          }
        });
      }
    }
  });
}
