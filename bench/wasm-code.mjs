// The x64 machine code V8 makes of the build's WebAssembly kernels, by export name: what a kernel's
// inner loop really costs (its loads, float operations and stack spills), beside the counts its
// source suggests. It runs the module's compile in a child Node process with V8's optimizing
// compiler up front, as the pool compiles it (README, "Kernels"), and V8's --print-wasm-code,
// then prints the functions asked for. Plain JavaScript: it reads a build's dist/ folder.
//
//     npm run build && node bench/wasm-code.mjs statsPlanes32 [normalizeRows32 ...] [--count] [--dist DIR]
//     npm run build && node bench/wasm-code.mjs --folded [--dist DIR]
//
// --count prints, instead of the code, how many of each AVX instruction each function holds
// (a loop unrolled four times counts four times) and its xmm moves to or from the stack (spills,
// and scalars kept there). With no names it lists the exports.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { foldedReluTests, wasmText } from '../workers/wasm/folded.mjs';

const args = process.argv.slice(2);
const at = args.indexOf('--dist');
const dist = at >= 0 ? args.splice(at, 2)[1] : 'dist';
const count = args.includes('--count');
const wasmPath = resolve(dist, 'workers/wasm/kernels.wasm');

if (args[0] === '--child') {
  // Compiled and instantiated over a shared memory, as in a worker; V8 prints as it compiles.
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  await WebAssembly.instantiate(readFileSync(args[1]), { env: { memory } });
  process.exit(0);
}

/**
 * Export name -> function index (imported functions first, as V8 numbers them), from the
 * module's export section; the import section is walked only to get past it.
 */
function functionIndices(bytes) {
  let p = 8;
  const leb = () => {
    let r = 0;
    let shift = 0;
    let b;
    do {
      b = bytes[p++];
      r += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return r;
  };
  const skipName = () => { p += leb(); };
  const skipLimits = () => { const flags = bytes[p++]; leb(); if (flags & 1) leb(); };
  const names = new Map();
  while (p < bytes.length) {
    const id = bytes[p++];
    const size = leb();
    const end = p + size;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        skipName();
        skipName();
        const kind = bytes[p++];
        if (kind === 0) leb(); else if (kind === 1) { p++; skipLimits(); } else if (kind === 2) skipLimits();
        else p += 2; // global: value type, mutability
      }
    } else if (id === 7) {
      for (let n = leb(); n > 0; n--) {
        const len = leb();
        const name = Buffer.from(bytes.subarray(p, p + len)).toString();
        p += len;
        const kind = bytes[p++];
        const index = leb();
        if (kind === 0) names.set(name, index);
      }
    }
    p = end;
  }
  return names;
}

if (args.includes('--folded')) {
  const hits = foldedReluTests(wasmText(wasmPath));
  console.log(hits.size === 0 ? 'no loop tests a ReLU flag' : [...hits].map(([f, n]) => `${f}: ${n}`).join('\n'));
  process.exit(hits.size === 0 ? 0 : 1);
}

const names = functionIndices(readFileSync(wasmPath));
const wanted = args.filter((a) => !a.startsWith('--'));
if (wanted.length === 0) {
  console.log([...names].map(([name, index]) => `${name} (function ${index})`).join('\n'));
  process.exit(0);
}
for (const name of wanted) if (!names.has(name)) throw new Error(`${name}: expected an export of ${wasmPath}: ${[...names.keys()].join(', ')}`);

const out = execFileSync(process.execPath, [
  '--no-wasm-lazy-compilation', '--no-liftoff', '--print-wasm-code', fileURLToPath(import.meta.url), '--child', wasmPath,
], { encoding: 'utf8', maxBuffer: 1 << 28 });
const blocks = new Map();
for (const block of out.split('--- WebAssembly code ---')) {
  const index = /^index: (\d+)$/m.exec(block);
  if (index !== null) blocks.set(Number(index[1]), block);
}
for (const name of wanted) {
  const block = blocks.get(names.get(name));
  if (block === undefined) throw new Error(`${name}: V8 printed no code for function ${names.get(name)} (is --print-wasm-code in this Node build?)`);
  if (!count) {
    console.log(`=== ${name} (function ${names.get(name)})${block}`);
    continue;
  }
  // Instruction lines: address, offset, bytes, then the mnemonic.
  const tally = new Map();
  for (const m of block.matchAll(/^0x[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+(?:REX\.W )?(v\w+)/gm)) tally.set(m[1], (tally.get(m[1]) ?? 0) + 1);
  const spills = [...block.matchAll(/vmov\w+ \[rbp[+-]0x[0-9a-f]+\],xmm|vmov\w+ xmm\d+,\[rbp[+-]0x[0-9a-f]+\]/g)].length;
  console.log(`${name}: ${[...tally].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}; xmm register moves to or from the stack ${spills}`);
}
