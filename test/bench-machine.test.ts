/** The machine line of the benchmarks' results (bench/machine.ts). */
import { availableParallelism, cpus } from 'node:os';
import { describe, expect, it } from 'vitest';
import { describeMachine, formatMachine, type MachineFacts } from '../dist/bench/machine.js';

const facts: MachineFacts = {
  model: 'AMD EPYC', family: 26, modelNumber: 2, caches: [48 * 1024, 1 << 20, 532676608], threads: 2, memoryBytes: 24 * 2 ** 30, node: 'v20.20.2',
};

describe('the machine line', () => {
  it('gives the family, the model and the caches where the OS tells them', () => {
    expect(formatMachine(facts)).toBe('AMD EPYC (family 26, model 2; L1d 48 KiB, L2 1 MiB, L3 508 MiB), 2 threads available, 24 GiB, Node v20.20.2');
    expect(formatMachine({ ...facts, caches: [32 * 1024, 2 ** 21, 36 * 2 ** 20 + 512 * 1024] }))
      .toBe('AMD EPYC (family 26, model 2; L1d 32 KiB, L2 2 MiB, L3 36.5 MiB), 2 threads available, 24 GiB, Node v20.20.2');
  });

  it('leaves out what the OS did not tell', () => {
    expect(formatMachine({ ...facts, family: null, modelNumber: null })).toBe('AMD EPYC (L1d 48 KiB, L2 1 MiB, L3 508 MiB), 2 threads available, 24 GiB, Node v20.20.2');
    expect(formatMachine({ ...facts, modelNumber: null, caches: [null, 1 << 20, null] })).toBe('AMD EPYC (family 26; L2 1 MiB), 2 threads available, 24 GiB, Node v20.20.2');
    expect(formatMachine({ ...facts, family: null, caches: [null, null, null] })).toBe('AMD EPYC, 2 threads available, 24 GiB, Node v20.20.2');
  });

  it('describes this machine: its model first, its threads and Node last', () => {
    const line = describeMachine();
    expect(line.startsWith(cpus()[0].model.trim())).toBe(true);
    expect(line).toMatch(new RegExp(`, ${availableParallelism()} threads available, \\d+ GiB, Node ${process.version.replace(/\./g, '\\.')}$`));
    expect(describeMachine(7)).toContain(', 7 threads available, ');
  });
});
