// Whether two builds give the same bits: a module's backward after an eval forward (dx, dWeight and
// dBias), affine, over shapes of every grid (row mode, channels in lanes, a few interleaved
// channels, planes of several rows and of one row, stretches, channels-last), both dtypes and
// kernels, ReLU on and off, on 2 workers, inline, and through a small pool's staged chunks. Calls
// that both builds refuse alike (out of memory in the small pool) are counted apart. How the
// one-pass eval-mode backward (2026-12-03) was checked against the two passes before it. Plain
// JavaScript: it imports the two builds' dist/ folders.
//
//     node bench/same-bits.mjs DIST_A DIST_B
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dirA, dirB] = process.argv.slice(2);
if (dirB === undefined) throw new Error('usage: node bench/same-bits.mjs DIST_A DIST_B');
const builds = await Promise.all([dirA, dirB].map((d) => import(pathToFileURL(resolve(d, 'src/index.js')).href)));
let seed = 7;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const shapes = [
  [[4, 6, 9, 10], 'channels-first'], [[64, 20], 'channels-first'], [[50, 3], 'channels-first'], [[6, 5, 40, 40], 'channels-first'],
  [[3, 2, 130, 130], 'channels-first'], [[4, 7, 7, 6], 'channels-last'], [[13, 12, 40, 40], 'channels-first'], [[2, 3, 16385], 'channels-first'],
  [[8, 64, 56, 56], 'channels-first'], [[512, 256], 'channels-first'], [[16, 32, 32, 24], 'channels-last'], [[7, 3], 'channels-first'],
];
const bytes = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
let compared = 0;
let differ = 0;
let refused = 0;
for (const kernel of ['wasm', 'js']) {
  const configs = [
    { threads: 2, inlineThreshold: 0 }, { threads: 1, inlineThreshold: Number.MAX_SAFE_INTEGER },
    { threads: 2, inlineThreshold: 0, maxMemory: 512 * 1024, initialMemory: 131072 },
  ];
  for (const options of configs) {
    // grainSize 1 (every call on every thread, as builds before the option ran them) where the build has it.
    const pools = builds.map((m) => new m.Pool({ ...options, kernel, ...(m.DEFAULT_GRAIN_SIZE === undefined ? {} : { grainSize: 1 }) }));
    for (const [shape, layout] of shapes) {
      const n = shape.reduce((a, b) => a * b);
      const C = layout === 'channels-last' ? shape.at(-1) : shape[1];
      for (const dtype of ['float32', 'float64']) {
        for (const activation of [null, 'relu']) {
          const Ctor = dtype === 'float32' ? Float32Array : Float64Array;
          const x = Ctor.from({ length: n }, () => rand() * 4 - 1);
          const dy = Ctor.from({ length: n }, () => rand() - 0.5);
          const weight = Float64Array.from({ length: C }, () => rand() * 2 - 0.5);
          const got = [];
          for (const [k, m] of builds.entries()) {
            const bn = new m.BatchNorm(C, { pool: pools[k], dtype, layout, activation });
            bn.weight.set(weight);
            try {
              await bn.forward(x, shape);
              bn.eval();
              await bn.forward(x, shape);
              got.push(await bn.backward(dy));
            } catch (err) {
              got.push(String(err.code));
            }
          }
          const label = `${kernel} ${JSON.stringify(options)} [${shape}] ${layout} ${dtype} ${activation}`;
          if (typeof got[0] === 'string' || typeof got[1] === 'string') {
            if (got[0] === got[1]) refused++;
            else {
              differ++;
              console.log(`differ: ${label}: ${typeof got[0] === 'string' ? got[0] : 'ok'} / ${typeof got[1] === 'string' ? got[1] : 'ok'}`);
            }
            continue;
          }
          for (const key of ['dx', 'dWeight', 'dBias']) {
            compared++;
            const [a, b] = got.map((g) => bytes(g[key]));
            if (a.length !== b.length || a.some((v, i) => v !== b[i])) {
              differ++;
              console.log(`differ: ${label} ${key}`);
            }
          }
        }
      }
    }
    await Promise.all(pools.map((p) => p.close()));
  }
}
console.log(`${compared} arrays compared, ${differ} differ; ${refused} calls refused alike by both builds`);
