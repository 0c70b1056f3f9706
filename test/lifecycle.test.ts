/** A script that never calls close() exits on its own; the default pool is shared. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { getDefaultPool } from '../dist/src/index.js';

const entry = fileURLToPath(new URL('../dist/src/index.js', import.meta.url));

describe('lifecycle', () => {
  it('a script using the default pool without close() exits by itself', () => {
    const script = `
      const { BatchNorm, batchNorm, Pool } = await import(${JSON.stringify(entry)});
      const x = new Float32Array(8 * 16 * 64 * 64).map((_, i) => Math.sin(i));
      const y = await new BatchNorm(16).forward(x, [8, 16, 64, 64]);
      const own = new Pool({ threads: 2, inlineThreshold: 0 });
      const r = await batchNorm(x, [8, 16, 64, 64], { training: true, pool: own });
      console.log('ok', y.length, r.y[5] === y[5]);
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    expect(run.error).toBeUndefined();
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('ok 524288 true');
    expect(run.status).toBe(0);
  });

  it('a closed pool lets its memory go', () => {
    // piscina's close() leaves a timer of its closeTimeout (30 s) that holds the pool, and with it
    // the workers' data (this pool's memory): a process that made and closed pools one after
    // another kept every memory for 30 s (200 MB each, 1.2 GB after six).
    const script = `
      const { BatchNorm, Pool } = await import(${JSON.stringify(entry)});
      let pool = new Pool({ threads: 2, inlineThreshold: 0 });
      const x = pool.alloc(8 * 16 * 64 * 64).map((_, i) => Math.sin(i));
      const y = await new BatchNorm(16, { pool }).forward(x, [8, 16, 64, 64]);
      const memory = new WeakRef(pool.memory);
      await pool.close();
      pool = null;
      for (let i = 0; i < 10 && memory.deref() !== undefined; i++) {
        await new Promise((r) => setTimeout(r, 20));
        globalThis.gc();
      }
      console.log(memory.deref() === undefined ? 'released' : 'held', y.length);
    `;
    const run = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('released 524288');
  });

  it('getDefaultPool returns one shared pool', () => {
    expect(getDefaultPool()).toBe(getDefaultPool());
  });
});
