// The check that the built module kept the kernels' copies per flag (workers/wasm/assembly/
// common.ts, `On`): Binaryen's code folding can merge an inlined kernel's copy with a flag on and
// its copy with it off back into one that tests the flag inside its loops, which only the module's
// text shows. Used by test/wasm-module.test.ts and `node bench/wasm-code.mjs --folded`.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The module at `wasmPath` as text, from Binaryen's wasm-dis (installed with AssemblyScript). */
export function wasmText(wasmPath) {
  const binaryen = join(root, 'node_modules', 'binaryen', 'bin', 'wasm-dis');
  return execFileSync(process.execPath, [binaryen, wasmPath], { encoding: 'utf8', maxBuffer: 1 << 28 });
}

/**
 * The tests of a bare local (`if (local.get $n)`) inside loops, function by function (export name,
 * else `$index`): each as { pmax }, whether a pmax lies within its next 40 lines (a ReLU test).
 */
export function loopFlagTests(text) {
  const lines = text.split('\n');
  const exported = new Map();
  for (const line of lines) {
    const m = /^\s*\(export "(\w+)" \(func \$(\d+)\)/.exec(line);
    if (m !== null) exported.set(m[2], m[1]);
  }
  const tests = new Map();
  let fn = '';
  let loops = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const head = /^ \(func \$(\d+) /.exec(line);
    if (head !== null) {
      fn = exported.get(head[1]) ?? `$${head[1]}`;
      loops = [];
      continue;
    }
    const indent = line.length - line.trimStart().length;
    while (loops.length > 0 && indent <= loops.at(-1)) loops.pop();
    if (line.trim().startsWith('(loop')) {
      loops.push(indent);
    } else if (loops.length > 0 && /^\(if( \(result \w+\))?$/.test(line.trim()) && /^\s*\(local\.get \$\d+\)$/.test(lines[i + 1] ?? '')) {
      const list = tests.get(fn) ?? [];
      list.push({ pmax: lines.slice(i, i + 40).some((l) => l.includes('pmax')) });
      tests.set(fn, list);
    }
  }
  return tests;
}

/** The functions whose loops test a ReLU flag (loopFlagTests' with a pmax), each with how many. */
export function foldedReluTests(text) {
  const hits = new Map();
  for (const [fn, list] of loopFlagTests(text)) {
    const n = list.filter((t) => t.pmax).length;
    if (n > 0) hits.set(fn, n);
  }
  return hits;
}
