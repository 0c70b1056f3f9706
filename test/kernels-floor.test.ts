/**
 * The benchmark floor's kernels, both implementations: the streaming pass y = a * x + b, and the
 * read and write passes, over odd lengths and offsets; and the passes as the benchmark runs them,
 * on a pool's workers in parts (src/floor.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamPass } from '../dist/src/floor.js';
import { Pool } from '../dist/src/index.js';
import { rng } from './helpers/data.js';
import { DATA, GUARD, LENGTHS, OFFSETS, OUT, setup } from './helpers/kernels.js';

for (const name of ['js', 'wasm'] as const) {
  describe(`${name} kernel`, () => {
    it('stream computes y = a * x + b over odd lengths', () => {
      const { kernel, f32 } = setup(name);
      for (const len of LENGTHS) {
        for (let i = 0; i < len; i++) f32[DATA / 4 + 1 + i] = i * 0.25 - 3;
        f32[OUT / 4 + 3 + len] = GUARD;
        kernel.stream(DATA + 4, OUT + 12, len, 1.5, 0.25);
        for (let i = 0; i < len; i++) expect(f32[OUT / 4 + 3 + i]).toBe(Math.fround(Math.fround(f32[DATA / 4 + 1 + i] * 1.5) + 0.25));
        expect(f32[OUT / 4 + 3 + len]).toBe(GUARD);
      }
    });

    it('read sums n float32 and fill writes n, over odd lengths and offsets', () => {
      const { kernel, f32 } = setup(name);
      const rand = rng(5);
      for (const len of LENGTHS) {
        for (const off of OFFSETS) {
          // Small integers: every order of summation gives the exact sum.
          let want = 0;
          for (let i = 0; i < len; i++) want += f32[DATA / 4 + off + i] = Math.floor(rand() * 64) - 32;
          f32[DATA / 4 + off + len] = 1e30; // past the end: must not be read into the sum
          expect(kernel.read(DATA + 4 * off, len)).toBe(want);
          f32[OUT / 4 + off - 1] = GUARD;
          f32[OUT / 4 + off + len] = GUARD;
          kernel.fill(OUT + 4 * off, len, 2.5);
          expect(Array.from(f32.subarray(OUT / 4 + off, OUT / 4 + off + len))).toEqual(new Array(len).fill(2.5));
          expect([f32[OUT / 4 + off - 1], f32[OUT / 4 + off + len]]).toEqual([GUARD, GUARD]);
        }
      }
    });
  });
}

for (const name of ['js', 'wasm'] as const) {
  describe(`the passes on a pool's workers (${name} kernel)`, () => {
    let pool: Pool;
    // grainSize 1: every length takes both workers, each a part on 16-element boundaries.
    beforeAll(() => { pool = new Pool({ threads: 2, kernel: name, grainSize: 1 }); });
    afterAll(() => pool.close());

    for (const n of [1, 17, 100_003]) {
      it(`over ${n} values: stream writes 1.5x + 0.25 and write 1.5 to every one of y, read none`, async () => {
        const x = pool.alloc(n);
        const y = pool.alloc(n + 1);
        const rand = rng(n);
        for (let i = 0; i < n; i++) x[i] = rand() * 8 - 4;
        const out = y.subarray(0, n);
        const fresh = (): void => { y.fill(GUARD); };
        fresh();
        await streamPass(pool, 'stream', x, out);
        // Rounded to float32 after each operation (WebAssembly's f32x4) or once (the JS loop's doubles).
        const streamed = (v: number, i: number): boolean => v === Math.fround(Math.fround(x[i] * 1.5) + 0.25) || v === Math.fround(x[i] * 1.5 + 0.25);
        expect(out.every(streamed)).toBe(true);
        expect(y[n]).toBe(GUARD);
        fresh();
        await streamPass(pool, 'write', x, out);
        expect(out.every((v) => v === 1.5)).toBe(true);
        expect(y[n]).toBe(GUARD);
        fresh();
        await streamPass(pool, 'read', x, out);
        expect(y.every((v) => v === GUARD)).toBe(true);
        pool.free(x);
        pool.free(y);
      });
    }
  });
}
