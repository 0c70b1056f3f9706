/**
 * The benchmark's targets table (bench/report.ts): the README's met / not met counts are read off
 * it, so its ratios and comparisons are checked here on rows made up for the purpose.
 */
import { describe, expect, it } from 'vitest';
import { addRatios, isMet, type Row, targetsOf, targetsTable } from '../dist/bench/report.js';

function row(shape: string, impl: string, mode: Row['mode'], input: Row['input'], threads: number, medianMs: number, note?: string): Row {
  return { shape, impl, mode, input, threads, medianMs, samples: 10, gbps: null, vsFloor: null, vsBestPeer: null, note };
}

/** Rows of A and D as `npm run bench` makes them (B, C and E left out), ratios filled in per shape. */
function rowsOfRun(): Row[] {
  const a = [
    row('A', 'floor', 'train', '-', 2, 10),
    row('A', 'read pass', 'read', '-', 2, 6),
    row('A', 'bnpool wasm', 'train', 'zero-copy', 2, 12),
    row('A', 'bnpool wasm', 'eval', 'zero-copy', 2, 12.5),
    row('A', 'bnpool wasm', 'backward', 'zero-copy', 2, 20),
    row('A', 'bnpool wasm', 'train', 'zero-copy', 2, 15, 'NHWC [32,112,112,64]'),
    // Another thread count and the plain-array calls: not what the targets read.
    row('A', 'floor', 'train', '-', 1, 20),
    row('A', 'bnpool wasm', 'train', 'zero-copy', 1, 40),
    row('A', 'bnpool wasm', 'train', 'plain', 2, 50),
    row('A', 'onnxruntime', 'train', 'plain', 2, 60, 'training_mode 1'),
    row('A', 'tfjs-wasm', 'train', 'plain', 1, 30),
  ];
  const d = [
    row('D', 'floor', 'train', '-', 2, 0.2),
    row('D', 'bnpool wasm', 'train', 'inline', 1, 0.08, 'kernel inline'),
    row('D', 'bnpool wasm', 'train', 'zero-copy', 2, 0.1),
    row('D', 'bnpool wasm', 'backward', 'zero-copy', 2, 0.14),
    row('D', 'naive port', 'train', 'plain', 1, 0.3),
  ];
  addRatios(a);
  addRatios(d);
  return [...a, ...d];
}

describe('benchmark targets', () => {
  it('reads each target off the 2-thread zero-copy rows and compares it with its bound', () => {
    const targets = targetsOf(rowsOfRun(), 2, 0.5);
    const byName = new Map(targets.map((t) => [t.what, t]));
    const check = (what: string, value: number | null, met: boolean | null): void => {
      const t = byName.get(what);
      expect(t, what).toBeDefined();
      if (value === null) expect(t!.value, what).toBeNull();
      else expect(t!.value, what).toBeCloseTo(value, 12);
      expect(isMet(t!), what).toBe(met);
    };
    check('A training ÷ floor', 1.2, true);
    check('A eval ÷ floor', 1.25, false);
    check('A training: × faster than the fastest peer', 5, true);
    check('A backward ÷ training', 20 / 12, false);
    check('A channels-last training ÷ channels-first', 1.25, true);
    check('D training ÷ the kernel inline', 1.25, true);
    check('D training: × faster than the naive port', 3, false);
    check('D backward ÷ training', 1.4, true);
    check('A peak RSS over input + output (MB)', 0.5, true);
    // Two passes over x: floor + read pass (16 ms), over the floor and over channels-first training.
    expect(byName.get('A training ÷ floor')!.twoPasses).toBeCloseTo(1.6, 12);
    expect(byName.get('A channels-last training ÷ channels-first')!.twoPasses).toBeCloseTo(16 / 12, 12);
    expect(byName.get('B training ÷ floor')!.twoPasses).toBeNull(); // not measured
    expect(byName.get('A eval ÷ floor')!.twoPasses).toBeUndefined(); // not a training target
    // Shapes the run left out are not measured, not failed.
    check('B training ÷ floor', null, null);
    check('E eval ÷ floor', null, null);
    check('C channels-last training ÷ channels-first', null, null);
    expect(targets).toHaveLength(21);
  });

  it('prints the bounds, the measured values and whether each is met', () => {
    const text = targetsTable(targetsOf(rowsOfRun(), 2, null), 2);
    expect(text).toContain('### Targets (zero-copy calls, 2 threads, float32)');
    expect(text).toContain('| A training ÷ floor | 1.20 | ≤ 1.3 | yes | 1.60 |');
    expect(text).toContain('| A eval ÷ floor | 1.25 | ≤ 1.15 | no |  |');
    expect(text).toContain('| B training ÷ floor | — | ≤ 1.3 | not measured | — |');
    expect(text).toContain('| A channels-last training ÷ channels-first | 1.25 | ≤ 1.3 | yes | 1.33 |');
    expect(text).toContain('| D training: × faster than the naive port | 3.00 | ≥ 4 | no |  |');
    expect(text).toContain('| A peak RSS over input + output (MB) | — | ≤ 16 | not measured |  |');
  });
});
