/**
 * Scales: float32 and float64 forwards and backwards, training and eval, over data, gradients and
 * weights from 1e-30 to 1e30, against the float64 reference. The WebAssembly float32 kernels sum
 * in float32 lanes and hold each channel's coefficients as float32 numbers; this suite checks that
 * nothing goes wrong at any scale but where the README ("Semantics") says it does, and only there:
 *
 * - a result past float32's range must be an infinity of its sign (not NaN, not finite);
 * - a result is also allowed float32's subnormal step (2^-149) on top of its tolerance;
 * - a channel whose forward scale weight·invstd, or whose backward a = weight·invstd or k =
 *   -invstd²·Σdy·(x - mean)/m, leaves float32's normal range is skipped (the coefficients are
 *   float32 numbers; README, "Semantics");
 * - an element whose tolerance itself passes float32's range is skipped (the float32 sums' error
 *   is then beyond what float32 can hold, whatever the order of the operations).
 *
 * CI runs one grid (~1,000 calls, 7 s); BNPOOL_SCALES=full runs every shape, offset and dtype (20 s).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, type Pool } from '../dist/src/index.js';
import { randomTensor } from './helpers/data.js';
import { closePools, KERNELS, openPools } from './helpers/pools.js';
import { channelStats, dimsOf, referenceBackward, referenceForward } from './helpers/reference.js';

const FULL = process.env.BNPOOL_SCALES === 'full';
const FLOAT32_MAX = 3.4028234663852886e38;
const FLOAT32_MIN_NORMAL = 2 ** -126;
/** One shape per float32 statistics and backward kernel: planes, channels in lanes, a pattern, short runs. */
const SHAPES = FULL ? [[2, 3, 40, 40], [64, 20], [50, 17], [64, 3], [3, 5, 17]] : [[2, 3, 40, 40], [50, 17], [64, 3]];
const SPREADS = [1e-30, 1e-12, 1, 1e12, 1e30];
const GRADIENTS = [1e-30, 1, 1e30];
const WEIGHTS = [1e-20, 1, 1e20];
const OFFSETS = FULL ? [0, 1e3] : [1e3];
const DTYPES = FULL ? (['float32', 'float64'] as const) : (['float32'] as const);

/** Whether float32 holds |v| as a normal number (0 counts: a zero coefficient drops its term). */
function normal32(v: number): boolean {
  return v === 0 || (Math.abs(v) >= FLOAT32_MIN_NORMAL && Math.abs(v) <= FLOAT32_MAX);
}

/**
 * The first element of `got` that is wrong against `want` within `tol(i)` (plus float32's
 * subnormal step), or null; elements of skipped channels and elements whose tolerance passes
 * float32's range are not checked, results past its range must be infinities of their sign.
 */
function firstWrong(
  got: ArrayLike<number>, want: ArrayLike<number>, dtype: 'float32' | 'float64', tol: (i: number) => number,
  skip: (i: number) => boolean,
): string | null {
  const max = dtype === 'float32' ? FLOAT32_MAX : Number.MAX_VALUE;
  const step = dtype === 'float32' ? 2 ** -149 : 0;
  for (let i = 0; i < want.length; i++) {
    if (skip(i)) continue;
    const w = want[i];
    if (Number.isNaN(w) || Number.isNaN(got[i])) {
      if (Number.isNaN(w) !== Number.isNaN(got[i])) return `element ${i}: ${got[i]}, want ${w}`;
      continue;
    }
    if (Math.abs(w) > max) {
      if (got[i] !== Math.sign(w) * Infinity) return `element ${i}: ${got[i]}, want ${Math.sign(w) * Infinity} (${w})`;
      continue;
    }
    const t = tol(i);
    if (t > max) continue;
    if (!(Math.abs(got[i] - w) <= t + step)) return `element ${i}: ${got[i]}, want ${w} within ${t}`;
  }
  return null;
}

for (const kernel of KERNELS) {
  describe(`scales (${kernel} kernel)`, () => {
    let pools: Map<string, Pool>;
    beforeAll(() => { pools = openPools(kernel); });
    afterAll(() => closePools(pools));

    for (const dtype of DTYPES) {
      for (const shape of SHAPES) {
        it(`forward and backward, training and eval, at every scale of x, dy and weight: ${dtype}, [${shape}]`, async () => {
          const pool = pools.get('2 workers')!;
          const { C, S } = dimsOf(shape);
          const ulp = dtype === 'float32' ? 2 ** -23 : 2 ** -52;
          const wrongs: string[] = [];
          for (const spread of SPREADS) for (const offset of OFFSETS) for (const gs of GRADIENTS) for (const w of WEIGHTS) for (const relu of [false, true]) {
            const label = `x ${offset} ± 1 times ${spread}, dy ${gs}, weight ${w}${relu ? ', ReLU' : ''}`;
            // Channel 1 carries the scale; the others are ordinary, at the same weight.
            const x = randomTensor(shape, dtype, 3, (c) => (c === 1 ? { offset: offset * spread, spread } : { offset: 0.5, spread: 1 }));
            const dy = randomTensor(shape, dtype, 4, (c) => (c === 1 ? { offset: 0.1 * gs, spread: gs } : { offset: 0, spread: 1 }));
            const bn = new BatchNorm(C, { pool, dtype, activation: relu ? 'relu' : null });
            bn.weight!.fill(w);
            bn.bias!.set(Array.from({ length: C }, (_, c) => (c === 1 ? 0.3 * w : 0.1)));
            // A training step, then an eval one with the running statistics it left.
            for (const training of [true, false]) {
              const mode = `${label}, ${training ? 'training' : 'eval'}`;
              if (!training) bn.eval();
              const st = training
                ? channelStats(x, shape)
                : { mean: Float64Array.from(bn.runningMean!), var: Float64Array.from(bn.runningVar!) };
              const y = await bn.forward(x, shape);
              const { dx, dWeight, dBias } = await bn.backward(dy);

              const invstd = Array.from(st.var, (v) => 1 / Math.sqrt(v + 1e-5));
              const fwd = referenceForward(x, shape, {
                training, weight: bn.weight, bias: bn.bias, runningMean: st.mean, runningVar: st.var,
              });
              const yWant = relu ? fwd.y.map((v) => (v < 0 ? 0 : v)) : fwd.y;
              const g = relu ? dy.map((v, i) => (y[i] <= 0 ? 0 : v)) : dy;
              const ref = referenceBackward(x, g, shape, st.mean, invstd, bn.weight, training);
              const channelOf = (i: number): number => Math.floor(i / S) % C;
              const f32 = dtype === 'float32' && kernel === 'wasm';
              const k = Array.from({ length: C }, (_, c) => (ref.scale[c] === 0 ? 0 : ref.b[c] / ref.scale[c]));
              const skipForward = (c: number): boolean => f32 && !normal32(fwd.scale[c]);
              const skipBackward = (c: number): boolean => f32 && (!normal32(ref.scale[c]) || !normal32(k[c]));

              const yWrong = firstWrong(y, yWant, dtype, (i) => {
                const c = channelOf(i);
                const terms = (Math.abs(x[i]) + Math.abs(fwd.mean[c])) * Math.abs(fwd.scale[c]);
                const sd = dtype === 'float32' && training ? Math.abs(fwd.scale[c]) * Math.sqrt(fwd.var[c]) : 0;
                return 4 * ulp * (terms + Math.abs(bn.bias![c]) + Math.abs(yWant[i]) + sd) + 1e-11 * terms;
              }, (i) => skipForward(channelOf(i)));
              if (yWrong !== null) wrongs.push(`${mode}: y ${yWrong}`);

              const dxWrong = firstWrong(dx, ref.dx, dtype, (i) => {
                const c = channelOf(i);
                const xTerm = ref.b[c] === 0 ? 0 : ref.bAbs[c] * (Math.abs(x[i] - ref.mean[c]) + Math.abs(x[i]));
                const terms = Math.abs(ref.scale[c] * g[i]) + xTerm + ref.dAbs[c] + Math.abs(ref.dx[i]);
                return 16 * ulp * terms + 1e-10 * terms;
              }, (i) => skipBackward(channelOf(i)));
              if (dxWrong !== null) wrongs.push(`${mode}: dx ${dxWrong}`);

              // dWeight and dBias of channel 1, where float32 holds them as normal numbers.
              const rel = dtype === 'float32' ? 1e-5 : 1e-9;
              for (const [name, got, want] of [['dWeight', dWeight![1], ref.dWeight[1]], ['dBias', dBias![1], ref.dBias[1]]] as const) {
                if (dtype === 'float32' && (Math.abs(want) < FLOAT32_MIN_NORMAL || Math.abs(want) > FLOAT32_MAX)) continue;
                if (!(Math.abs(got - want) <= rel * Math.abs(want))) wrongs.push(`${mode}: ${name} ${got}, want ${want}`);
              }
            }
          }
          expect(wrongs.slice(0, 5)).toEqual([]);
        });
      }
    }
  });
}
