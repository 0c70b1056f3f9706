// The check that the built module kept its copies per ReLU (workers/wasm/assembly/common.ts,
// `Relu`): Binaryen's code folding can merge an inlined walk's copy with the fused ReLU and its
// copy without back into one that tests the flag inside its loops, which only the module's text
// shows. Used by test/wasm-module.test.ts and `node bench/wasm-code.mjs --folded`.
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
 * The functions (export name, else `$index`) whose loops hold an `if` on a bare local with a
 * pmax within its next 40 lines, each with how many: a ReLU test made inside a loop.
 */
export function foldedReluTests(text) {
  const lines = text.split('\n');
  const exported = new Map();
  for (const line of lines) {
    const m = /^\s*\(export "(\w+)" \(func \$(\d+)\)/.exec(line);
    if (m !== null) exported.set(m[2], m[1]);
  }
  const hits = new Map();
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
    } else if (loops.length > 0 && line.trim() === '(if' && /^\s*\(local\.get \$\d+\)$/.test(lines[i + 1] ?? '')
      && lines[i + 2]?.trim() === '(then' && lines.slice(i, i + 40).some((l) => l.includes('pmax'))) {
      hits.set(fn, (hits.get(fn) ?? 0) + 1);
    }
  }
  return hits;
}
