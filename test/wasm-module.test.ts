/**
 * The compiled kernels share one memory between every worker, so they must declare nothing that
 * would live in it: no data segments, no globals, no memory of their own (AssemblyScript issue
 * 921). Read from the module's own sections. And the kernels made in copies per flag (the fused
 * ReLU; the backward's mask and x read) keep them (workers/wasm/assembly/common.ts, `On`): read
 * from its text.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build helper, without types
import { foldedReluTests, loopFlagTests, wasmText } from '../workers/wasm/folded.mjs';

const bytes = readFileSync(new URL('../dist/workers/wasm/kernels.wasm', import.meta.url));

/** Section ids of a WebAssembly binary, in order. */
function sectionIds(b: Uint8Array): number[] {
  const ids: number[] = [];
  let at = 8; // magic and version
  while (at < b.length) {
    const id = b[at++];
    let size = 0;
    let shift = 0;
    for (;;) {
      const byte = b[at++];
      size |= (byte & 0x7f) << shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
    }
    ids.push(id);
    at += size;
  }
  return ids;
}

describe('kernels.wasm', () => {
  it('imports only the shared memory and declares no globals, data or memory', () => {
    const module = new WebAssembly.Module(bytes);
    expect(WebAssembly.Module.imports(module)).toEqual([{ module: 'env', name: 'memory', kind: 'memory' }]);
    expect(WebAssembly.Module.exports(module).every((e) => e.kind === 'function')).toBe(true);
    const ids = sectionIds(bytes);
    expect(ids).not.toContain(5); // memory
    expect(ids).not.toContain(6); // global
    expect(ids).not.toContain(11); // data
    expect(ids).not.toContain(12); // data count
    expect(ids).toContain(10); // code
  });

  const text: string = wasmText(fileURLToPath(new URL('../dist/workers/wasm/kernels.wasm', import.meta.url)));

  it('tests no ReLU flag inside a loop: each walk has its two copies', () => {
    // The module's text is what the check reads: the walks are there, with and without the pmax.
    expect(text).toMatch(/\(export "normalizeRows32"/);
    expect(text).toMatch(/f32x4\.pmax/);
    expect(Object.fromEntries(foldedReluTests(text))).toEqual({});
  });

  it('the kernels made in copies per flag test no flag inside their loops', () => {
    // Before their flags were type parameters (the walks' ReLU until fd10562, the backward's mask
    // and x read until the commit after it): bwdStatsApplyPlanes32 21 tests, bwdApplyPlanes32 6,
    // bwdStatsPlanes32 3, bwdStatsRows32 3 on fd10562's build.
    const copied = ['normalizeRows32', 'statsNormRows32', 'bwdStatsApplyPlanes32', 'bwdApplyPlanes32', 'bwdStatsPlanes32', 'bwdStatsRows32'];
    const tests = loopFlagTests(text);
    for (const name of copied) expect(text).toContain(`(export "${name}"`);
    expect(Object.fromEntries(copied.map((name) => [name, tests.get(name)?.length ?? 0]))).toEqual(Object.fromEntries(copied.map((name) => [name, 0])));
    // Kernels whose flag is a value tested as they go (the float64 backward's mask) are seen.
    expect(tests.get('bwdApplyPlanes64')?.length ?? 0).toBeGreaterThan(0);
  });

  it('the check finds a ReLU test inside a loop', () => {
    // What Binaryen's code folding made of normalizeRows32's walks before they were generic in R.
    const folded = [
      ' (func $7 (param $0 i32)',
      '  (loop $label',
      '   (if',
      '    (local.get $4)',
      '    (then',
      '     (v128.store',
      '      (local.get $1)',
      '      (f32x4.pmax',
      ' (export "normalizeRows32" (func $7))',
    ].join('\n');
    expect(Object.fromEntries(foldedReluTests(folded))).toEqual({ normalizeRows32: 1 });
    // The same test outside any loop is the copies' one choice, not a fold.
    const chosen = folded.replace('  (loop $label\n', '');
    expect(Object.fromEntries(foldedReluTests(chosen))).toEqual({});
  });
});
