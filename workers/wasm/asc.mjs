// How the kernels are compiled with AssemblyScript (asc, from npm): the flags and a runner, shared
// by the build (build.mjs) and by the bench scripts that compile a probe or a variant of the
// kernels (bench/patterns.mjs, bench/relaxed.mjs), so that those are built as the product is.
//
// The flags: SIMD and threads (a shared memory) enabled, the memory imported and not exported,
// the stub runtime, no assertions and no abort import: the kernels declare nothing that would live
// in the shared memory (test/wasm-module.test.ts reads the module's sections to check it).
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const ASC_FLAGS = [
  '-O3', '--enable', 'simd', '--enable', 'threads', '--importMemory', '--sharedMemory', '--initialMemory', '1',
  '--maximumMemory', '65536', '--runtime', 'stub', '--noAssert', '--use', 'abort=', '--noExportMemory',
];

/** Compiles `entry` to `output` with ASC_FLAGS and then `extra` (more features, say). */
export function compileWasm(entry, output, extra = []) {
  const asc = join(root, 'node_modules', 'assemblyscript', 'bin', 'asc.js');
  execFileSync(process.execPath, [asc, entry, ...ASC_FLAGS, ...extra, '-o', output], { cwd: root, stdio: 'inherit' });
}
