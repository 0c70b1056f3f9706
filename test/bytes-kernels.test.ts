/**
 * The 8-bit input kernels (bytesPlanes, bytesPattern), both implementations: any start in the
 * tensor, any byte offset, lengths around the 16-byte vectors; every value as float32 operations
 * give it, bit for bit, and nothing written past the end.
 */
import { describe, expect, it } from 'vitest';
import { createKernel, loadWasmModule } from '../dist/workers/kernels/select.js';
import { rng } from './helpers/data.js';
import { KERNELS } from './helpers/pools.js';

describe('8-bit input kernels (bytesPlanes, bytesPattern)', () => {
  // Any start in the tensor (a pattern's period entered in its middle), any byte offset of x and y,
  // lengths around the 16-byte vectors: every value as float32 operations give it, bit for bit, and
  // nothing written past the end.
  const X = 1 << 16;
  const Y = 1 << 18;
  const PARAMS = 1 << 20;
  const GUARD = -7777;
  for (const name of KERNELS) {
    const memory = new WebAssembly.Memory({ initial: 32, maximum: 32, shared: true });
    const kernel = createKernel(name, memory, name === 'wasm' ? loadWasmModule() : null);
    const u8 = new Uint8Array(memory.buffer);
    const f32 = new Float32Array(memory.buffer);
    /** Fills bytes and parameters (L positions); returns the expected output of element i at position pos(i). */
    const prepare = (n: number, xOff: number, L: number, seed: number) => {
      const rand = rng(seed);
      for (let i = 0; i < n + 32; i++) u8[X + xOff + i] = Math.floor(256 * rand());
      for (let k = 0; k < L; k++) {
        f32[PARAMS / 4 + k] = 40 + 150 * rand();
        f32[PARAMS / 4 + L + k] = 0.01 + 0.05 * rand();
        f32[PARAMS / 4 + 2 * L + k] = 2 * rand() - 1;
      }
      return (i: number, k: number, relu: boolean): number => {
        const r = Math.fround;
        const v = r(r(r(u8[X + xOff + i] - f32[PARAMS / 4 + k]) * f32[PARAMS / 4 + L + k]) + f32[PARAMS / 4 + 2 * L + k]);
        return relu && v < 0 ? 0 : v;
      };
    };
    const check = (n: number, yOff: number, want: (i: number) => number): void => {
      for (let i = 0; i < n; i++) {
        if (!Object.is(f32[Y / 4 + yOff + i], want(i))) throw new Error(`element ${i}: got ${f32[Y / 4 + yOff + i]}, want ${want(i)}`);
      }
      expect(f32[Y / 4 + yOff + n]).toBe(GUARD);
    };
    it(`${name}: planes from any element, any offsets, both ReLU forms`, () => {
      for (const [C, S] of [[1, 5], [3, 17], [2, 64], [5, 1], [4, 33]]) {
        const total = 2 * C * S + 3;
        for (const first of [0, 1, S - 1, S, S + 7, 2 * S + 1]) {
          for (const n of [1, 15, 16, 17, 33, total - first]) {
            for (const [xOff, yOff] of [[0, 0], [3, 1], [13, 2]]) {
              for (const relu of [false, true]) {
                const want = prepare(n, xOff, C, C * 1000 + first * 10 + n);
                f32.fill(GUARD, Y / 4 + yOff, Y / 4 + yOff + n + 8);
                kernel.bytesPlanes(X + xOff, Y + 4 * yOff, n, first, C, S, PARAMS, relu);
                check(n, yOff, (i) => want(i, Math.floor((first + i) / S) % C, relu));
              }
            }
          }
        }
      }
    });
    it(`${name}: a pattern from any element of its period, any offsets, both ReLU forms`, () => {
      for (const P of [16, 48, 80, 272]) {
        for (const first of [0, 1, 15, 16, 17, P - 1, P, P + 5]) {
          for (const n of [1, 15, 16, 17, 47, 48, 49, 3 * P + 11]) {
            for (const [xOff, yOff] of [[0, 0], [5, 3]]) {
              for (const relu of [false, true]) {
                const want = prepare(n, xOff, P, P * 1000 + first * 10 + n);
                f32.fill(GUARD, Y / 4 + yOff, Y / 4 + yOff + n + 8);
                kernel.bytesPattern(X + xOff, Y + 4 * yOff, n, first, P, PARAMS, relu);
                check(n, yOff, (i) => want(i, (first + i) % P, relu));
              }
            }
          }
        }
      }
    });
    it(`${name}: channels last to channels first from any pixel, across images, any offsets, both ReLU forms`, () => {
      for (const [C, S] of [[3, 37], [3, 16], [3, 5], [2, 33], [4, 20], [5, 7]]) {
        const images = 3;
        const pixels = images * S;
        for (const first of [0, 1, 15, 16, S - 1, S, S + 17, 2 * S + 3].filter((f) => f < pixels)) {
          for (const n of [1, 16, 17, 33, pixels - first].filter((k) => k >= 1 && first + k <= pixels)) {
            for (const xOff of [0, 7]) {
              for (const relu of [false, true]) {
                const want = prepare(n * C, xOff, C, C * 1000 + S * 10 + first + n);
                const total = images * C * S;
                f32.fill(GUARD, Y / 4, Y / 4 + total + 8);
                kernel.bytesToPlanes(X + xOff, Y, n, first, C, S, PARAMS, relu);
                for (let k = 0; k < total; k++) {
                  const image = Math.floor(k / (C * S));
                  const c = Math.floor(k / S) % C;
                  const q = image * S + (k % S);
                  const expected = q >= first && q < first + n ? want((q - first) * C + c, c, relu) : GUARD;
                  if (!Object.is(f32[Y / 4 + k], expected)) throw new Error(`C ${C} S ${S} first ${first} n ${n}: element ${k}: got ${f32[Y / 4 + k]}, want ${expected}`);
                }
                expect(f32[Y / 4 + total]).toBe(GUARD);
              }
            }
          }
        }
      }
    });
  }
});
