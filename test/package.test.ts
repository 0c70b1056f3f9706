/**
 * The published package: `npm pack` gives a tarball that installs into an empty project, where
 * `import { Pool, BatchNorm, batchNorm } from 'bnpool'` type-checks (strict, no skipLibCheck;
 * without the DOM lib and with it) and runs, as does `require('bnpool')` from CommonJS, whose
 * source maps find their sources, and which carries its licence.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'bnpool-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const npm = (args: string[], cwd: string): string =>
  execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('npm pack', () => {
  it('installs into an empty project with working imports and types', () => {
    const tarball = npm(['pack', '--ignore-scripts', '--pack-destination', work], root).trim().split('\n').at(-1)!;
    const app = join(work, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // typescript and @types/node are in npm's cache after the project's own install.
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, tarball), 'typescript@5', '@types/node@20'], app);
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, lib: ['ES2022'], types: ['node'], outDir: 'out' },
    }));
    writeFileSync(join(app, 'index.ts'), `
      import { Pool, BatchNorm, batchNorm, batchNormBackward, BnPoolError } from 'bnpool';
      const pool = new Pool({ threads: 2 });
      const x: Float32Array = pool.alloc(2 * 3 * 4);
      x.forEach((_, i) => { x[i] = Math.sin(i); });
      const bn = new BatchNorm(3, { pool });
      // Outputs are typed as the input's dtype: Float32Array in, Float32Array out.
      const y: Float32Array = await bn.forward(x, [2, 3, 4]);
      const grads = await bn.backward(y);
      const dx: Float32Array = grads.dx;
      const dWeight: Float32Array | null = grads.dWeight;
      // @ts-expect-error: not any: a float32 call does not give a Float64Array
      const notWide: Float64Array = await bn.forward(x, [2, 3, 4]);
      const r = await batchNorm(x, [2, 3, 4], { training: true, pool });
      const ry: Float32Array = r.y;
      const mean: Float64Array = r.mean;
      const x64 = pool.alloc(2 * 3 * 4, 'float64');
      x64.set(x);
      const r64 = await batchNorm(x64, [2, 3, 4], { training: true, pool });
      const y64: Float64Array = r64.y;
      const b64 = await batchNormBackward(x64, y64, [2, 3, 4], { mean: r64.mean, var: r64.var, eps: 1e-5, pool });
      const dx64: Float64Array = b64.dx;
      // Either dtype in (a union), either out.
      const either: Float32Array | Float64Array = Math.random() < 2 ? x : x64;
      const yEither: Float32Array | Float64Array = (await batchNorm(either, [2, 3, 4], { training: true, pool })).y;
      // 8-bit input on the pool, and alloc of a dtype known only at run time.
      const rgb: Uint8Array = pool.alloc(2 * 3 * 4, 'uint8');
      const stats = await batchNorm(rgb, [2, 3, 4], { runningMean: r.mean, runningVar: r.var, pool });
      const fromBytes: Float32Array = stats.y;
      const wide = (flag: boolean): 'float32' | 'float64' => (flag ? 'float64' : 'float32');
      const runtimeDtype: Float32Array | Float64Array = pool.alloc(4, wide(fromBytes.length > 100));
      pool.free(rgb);
      pool.free(runtimeDtype);
      let code = '';
      try { await bn.forward(x, [5, 5]); } catch (e) { if (e instanceof BnPoolError) code = e.code; }
      console.log(y.length, mean.length, bn.numBatchesTracked, code, pool.kernel);
      await pool.close();
    `);
    execFileSync(join(app, 'node_modules', '.bin', 'tsc'), ['-p', app], { cwd: app, encoding: 'utf8' });
    // A consumer whose build includes lib.dom (TypeScript's default libs), still without
    // skipLibCheck: bnpool's WebAssembly declarations merge with the DOM's.
    writeFileSync(join(app, 'tsconfig.dom.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, lib: ['ES2022', 'DOM'], types: ['node'], noEmit: true },
      files: ['index.ts'],
    }));
    execFileSync(join(app, 'node_modules', '.bin', 'tsc'), ['-p', join(app, 'tsconfig.dom.json')], { cwd: app, encoding: 'utf8' });
    const out = execFileSync(process.execPath, [join(app, 'out', 'index.js')], { encoding: 'utf8' });
    // 'wasm': the compiled kernels ship in the tarball and load from it.
    expect(out.trim()).toBe('24 3 2 ERR_BNPOOL_SHAPE wasm'); // two training forwards
    // A CommonJS consumer: require('bnpool') gets the ES module itself (Node's require of an ES
    // module, Node 20.19 on), the very namespace import() gives, so no second copy of the pools.
    // Until 2026-12-06 the exports had only an "import" condition: require() threw
    // ERR_PACKAGE_PATH_NOT_EXPORTED.
    writeFileSync(join(app, 'index.cjs'), `
      const bnpool = require('bnpool');
      const { BatchNorm, Pool } = bnpool;
      (async () => {
        const pool = new Pool({ threads: 2 });
        const y = await new BatchNorm(3, { pool }).forward(Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), [2, 3, 4]);
        const same = (await import('bnpool')) === bnpool;
        console.log(y.length, same, pool.kernel, bnpool.getDefaultPool() === require('bnpool').getDefaultPool());
        await pool.close();
      })();
    `);
    const cjs = execFileSync(process.execPath, [join(app, 'index.cjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(cjs.trim()).toBe('24 true wasm true');
    // Every source map of the package (.js.map: stack traces, debuggers) names sources that the
    // package holds: the TypeScript of src/ and workers/ ships beside dist/.
    const installed = join(app, 'node_modules', 'bnpool');
    const maps = readdirSync(join(installed, 'dist'), { recursive: true, encoding: 'utf8' })
      .filter((path) => path.endsWith('.js.map'))
      .map((path) => join(installed, 'dist', path));
    expect(maps.length).toBeGreaterThan(30);
    const missing = maps.flatMap((map) => (JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] }).sources
      .map((source) => join(dirname(map), source))
      .filter((source) => !existsSync(source)));
    expect(missing).toEqual([]);
    // The licence package.json names ships as its text (npm packs LICENSE whatever `files` says).
    expect(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).license).toBe('MIT');
    expect(readFileSync(join(installed, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) 2026 /);
  }, 180_000);
});
