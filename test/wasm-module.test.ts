/**
 * The compiled kernels share one memory between every worker, so they must declare nothing that
 * would live in it: no data segments, no globals, no memory of their own (AssemblyScript issue
 * 921). Read from the module's own sections.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

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
});
