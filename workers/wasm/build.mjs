// Builds dist/workers/wasm/kernels.wasm from workers/wasm/assembly/ with AssemblyScript (asc, from
// npm): `npm run build:wasm`, which `npm run build` (and so `npm ci`, `npm test` and `npm run
// bench`) runs first. Like make, it does nothing when the .wasm is newer than every file it is
// built from (the sources, this script and asc.mjs, which holds the flags, package.json and
// package-lock.json, which pin asc): asc takes ~7 s here, most of a `npm run bench -- --quick`
// that has nothing to rebuild. `--force` builds anyway.
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileWasm } from './asc.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const source = join(root, 'workers', 'wasm', 'assembly');
const output = join(root, 'dist', 'workers', 'wasm', 'kernels.wasm');

const inputs = [
  ...readdirSync(source).map((name) => join(source, name)),
  fileURLToPath(import.meta.url), join(root, 'workers', 'wasm', 'asc.mjs'), join(root, 'package.json'), join(root, 'package-lock.json'),
];
const newestInput = Math.max(...inputs.map((file) => statSync(file).mtimeMs));
let built = -Infinity;
try {
  built = statSync(output).mtimeMs;
} catch {
  // Not built yet.
}
if (built > newestInput && !process.argv.includes('--force')) {
  console.log('dist/workers/wasm/kernels.wasm is up to date (npm run build:wasm -- --force rebuilds it)');
} else {
  mkdirSync(dirname(output), { recursive: true });
  compileWasm(join(source, 'index.ts'), output);
}
