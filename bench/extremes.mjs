// bnpool's float32 training forward and backward on the extreme data the README names ("Semantics",
// "Backward and fused ReLU", "Kernels"), against a float64 reference computed here from the same
// float32 inputs: what each case's numbers there were measured with. Plain JavaScript: it imports
// a build's dist/ folder (default `dist`), so an earlier build can be measured the same way.
// bench/torch/extremes.py runs the same cases through PyTorch.
//
//     npm run build && node bench/extremes.mjs [dist]
//
// Errors are the largest |bnpool - reference| over the largest |reference| of the channel that
// holds the extreme data (channel 1), where the reference fits float32; then its NaN, and how
// many results past float32's range came out as infinities of their sign.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.argv[2] ?? 'dist';
const { BatchNorm, Pool } = await import(pathToFileURL(resolve(dir, 'src/index.js')).href);

let seed = 12345;
const uniform = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed + 0.5) / 2 ** 32;
};
const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());

/** Float32 data of `shape`, channel 1 as `offset + spread·N(0, 1)`, the others N(c - 1.5, 1 + c). */
function tensor(shape, offset, spread) {
  const [N, C] = shape;
  const S = shape.slice(2).reduce((a, b) => a * b, 1);
  const x = new Float32Array(N * C * S);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let s = 0; s < S; s++) x[(n * C + c) * S + s] = c === 1 ? offset + spread * normal() : c - 1.5 + (1 + c) * normal();
    }
  }
  return x;
}

/** Channel c's float64 training forward and backward (PyTorch's formulas), eps 1e-5. */
function reference(x, dy, shape, c, weight, bias) {
  const [N, C] = shape;
  const S = x.length / (N * C);
  const at = [];
  for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) at.push((n * C + c) * S + s);
  const m = at.length;
  const mean = at.reduce((a, i) => a + x[i], 0) / m;
  const variance = at.reduce((a, i) => a + (x[i] - mean) ** 2, 0) / m;
  const invstd = 1 / Math.sqrt(variance + 1e-5);
  const xhat = at.map((i) => (x[i] - mean) * invstd);
  const sumDy = at.reduce((a, i) => a + dy[i], 0);
  const sumDyXhat = at.reduce((a, i, j) => a + dy[i] * xhat[j], 0);
  return {
    at, invstd,
    y: xhat.map((h) => weight * h + bias),
    dx: at.map((i, j) => weight * invstd * (dy[i] - sumDy / m - xhat[j] * sumDyXhat / m)),
    dWeight: sumDyXhat,
  };
}

const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Largest |got - want| over the largest |want| where want fits float32; NaN in got; and where
 * want is past float32's range, how many of those got as an infinity of want's sign.
 */
function error(got, want) {
  let worst = 0;
  let scale = 0;
  let nan = 0;
  let past = 0;
  let infinite = 0;
  for (let j = 0; j < want.length; j++) {
    if (Number.isNaN(got[j])) nan++;
    else if (Math.abs(want[j]) > FLOAT32_MAX) {
      past++;
      if (got[j] === Math.sign(want[j]) * Infinity) infinite++;
    } else {
      worst = Math.max(worst, Math.abs(got[j] - want[j]));
      scale = Math.max(scale, Math.abs(want[j]));
    }
  }
  const notes = [];
  if (nan) notes.push(`${nan} NaN`);
  if (past) notes.push(`${past} past float32, ${infinite} of them ±Inf of their sign`);
  return `${scale ? (worst / scale).toExponential(2) : '-'}${notes.length ? ` (${notes.join('; ')})` : ''}`;
}

const pool = new Pool({ threads: 2, kernel: 'wasm' });
await pool.ready;
const cases = [
  // [label, shape, x offset, x spread, dy offset, dy spread, weight]
  ['x, dy of spread 1e20 (products 1e40)', [2, 3, 40, 40], 0, 1e20, 0, 1e20, 1],
  ['x, dy of spread 1e-20 (products 1e-40)', [2, 3, 40, 40], 0, 1e-20, 0, 1e-20, 1],
  ['x of spread 1e25, dy of 1', [2, 3, 40, 40], 0, 1e25, 0, 1, 1],
  ['x of spread 1e30, weight 1e-20', [2, 3, 40, 40], 0, 1e30, 0, 1, 1e-20],
  ['x of spread 1e12, dy of 1e-30', [2, 3, 40, 40], 0, 1e12, 0, 1e-30, 1],
  ['dy of 1e29 ± 1e30, weight 1e20', [2, 3, 40, 40], 0.5, 1, 1e29, 1e30, 1e20],
  ['dy of 1000 ± 1e-3', [2, 3, 40, 40], 0.5, 1, 1000, 1e-3, 1],
  ['dy of 1000 ± 1e-3', [64, 20], 0.5, 1, 1000, 1e-3, 1],
  ['dy of 1000 ± 1e-3', [64, 3], 0.5, 1, 1000, 1e-3, 1],
];
console.log(`bnpool (${dir}), WebAssembly kernel, 2 workers, float32, channel 1:`);
for (const [label, shape, xOffset, xSpread, dyOffset, dySpread, weight] of cases) {
  const x = tensor(shape, xOffset, xSpread);
  const dy = tensor(shape, dyOffset, dySpread);
  const bn = new BatchNorm(shape[1], { pool });
  bn.weight.fill(weight);
  const y = await bn.forward(x, shape);
  const { dx, dWeight } = await bn.backward(dy);
  const ref = reference(x, dy, shape, 1, weight, 0);
  const pick = (a) => ref.at.map((i) => a[i]);
  const dW = Math.abs(dWeight[1] - ref.dWeight) / Math.abs(ref.dWeight);
  console.log(
    `  ${`${label}, [${shape}]`.padEnd(50)} y ${error(pick(y), ref.y).padEnd(10)} dx ${error(pick(dx), ref.dx).padEnd(48)}`
    + ` dWeight ${Number.isNaN(dWeight[1]) ? 'NaN' : dW.toExponential(2)}`,
  );
}
await pool.close();
