/**
 * The work items a call's tasks share: claimed from counters on the shared memory in tapered
 * runs, each task its own range first, every item visited once whichever task claims it; and the
 * grid they come from, whose blocks each hold at least one value.
 */
import { describe, expect, it } from 'vitest';
import { planGrid } from '../dist/src/plan.js';
import { Claims, claimBounds, rangeBounds } from '../dist/workers/execute.js';
import type { Task } from '../dist/workers/protocol.js';
import { scratchLayout } from '../dist/workers/scratch.js';

describe('claimBounds (tapered claims)', () => {
  it('cuts the items into claims in order, each at most chunk and ceil(left / taper), the last ones single', () => {
    expect(claimBounds(64, 8, 4)).toEqual([0, 8, 16, 24, 32, 40, 46, 51, 55, 58, 60, 61, 62, 63, 64]);
    for (const [items, chunk, taper] of [[1, 1, 2], [3, 1, 4], [10, 8, 4], [97, 13, 6], [1000, 250, 2]]) {
      const bounds = claimBounds(items, chunk, taper);
      expect(bounds[0]).toBe(0);
      expect(bounds.at(-1)).toBe(items);
      for (let k = 0; k + 1 < bounds.length; k++) {
        const size = bounds[k + 1] - bounds[k];
        expect(size).toBe(Math.max(1, Math.min(chunk, Math.ceil((items - bounds[k]) / taper))));
      }
      expect(bounds.at(-1)! - bounds.at(-2)!).toBe(1);
    }
  });
});

describe('Claims (each task its own range first)', () => {
  /** `count` tasks' Claims over `items` items cut into `count` ranges, on one Int32Array. */
  function claimsOf(items: number, chunk: number, taper: number, count: number): Claims[] {
    const layout = scratchLayout(planGrid(4, 3, 5000), 0, count);
    const i32 = new Int32Array(layout.totalBytes / 4);
    return Array.from({ length: count }, (_, slot) => {
      const task = { items, chunk, taper, slot, ranges: count } as unknown as Task;
      return new Claims(task, i32, layout, 0);
    });
  }

  it('hands each task its own range while it lasts, every item exactly once', () => {
    for (const [items, chunk, taper, count] of [[100, 7, 0, 3], [64, 8, 4, 2], [5, 1, 0, 4], [1000, 250, 0, 2], [37, 3, 6, 5]]) {
      const tasks = claimsOf(items, chunk, taper, count);
      const owner = new Int32Array(items).fill(-1);
      const stolen = tasks.map(() => false);
      // Round-robin turns, as tasks that keep pace: a task steals only once its own range is empty.
      for (let live = count; live > 0;) {
        live = 0;
        tasks.forEach((claims, slot) => {
          const start = claims.next();
          if (start < 0) return;
          live++;
          const [lo, hi] = rangeBounds(items, count, slot);
          const own = start >= lo && start < hi;
          if (!own) stolen[slot] = true;
          expect(own || stolen[slot]).toBe(true);
          for (let i = start; i < claims.end(); i++) {
            expect(owner[i]).toBe(-1);
            owner[i] = slot;
          }
        });
      }
      expect(owner.every((o) => o >= 0)).toBe(true);
      // Ranges of equal size (within one item) and in order.
      for (let r = 0; r < count; r++) {
        const [lo, hi] = rangeBounds(items, count, r);
        expect(hi - lo).toBeGreaterThanOrEqual(Math.floor(items / count));
        expect(hi - lo).toBeLessThanOrEqual(Math.ceil(items / count));
        if (r > 0) expect(lo).toBe(rangeBounds(items, count, r - 1)[1]);
      }
    }
  });

  it('lets a lone task take every range, its own first, then the next ones in turn, tapered per range', () => {
    const [items, chunk, taper, count] = [64, 8, 4, 3];
    const tasks = claimsOf(items, chunk, taper, count);
    const starts: number[] = [];
    const ends: number[] = [];
    for (let i = tasks[1].next(); i >= 0; i = tasks[1].next()) {
      starts.push(i);
      ends.push(tasks[1].end());
    }
    const [r1, r2, r0] = [1, 2, 0].map((r) => rangeBounds(items, count, r));
    const expected = [r1, r2, r0].flatMap(([lo, hi]) => claimBounds(hi - lo, chunk, taper).slice(0, -1).map((b) => lo + b));
    expect(starts).toEqual(expected);
    expect(ends.at(-1)).toBe(r0[1]);
    expect(tasks[0].next()).toBe(-1);
  });

  it("gives a split's second pass its own items and chunk where the task has them (Task.second)", () => {
    const layout = scratchLayout(planGrid(4, 3, 5000), 0, 2);
    const i32 = new Int32Array(layout.totalBytes / 4);
    const task = { items: 6, chunk: 1, taper: 0, slot: 0, ranges: 2, second: { items: 40, chunk: 4 } } as unknown as Task;
    const claimed = (claims: Claims): number[][] => {
      const out: number[][] = [];
      for (let i = claims.next(); i >= 0; i = claims.next()) out.push([i, claims.end()]);
      return out;
    };
    // The first pass: 6 items a claim at a time, its own range [0, 3) first.
    expect(claimed(new Claims(task, i32, layout, 0))).toEqual([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]);
    // The second: 40 items, 4 a claim, on counters of its own.
    const second = claimed(new Claims(task, i32, layout, 1));
    expect(second.length).toBe(10);
    expect(second[0]).toEqual([0, 4]);
    expect(second.every(([i, end]) => end - i === 4)).toBe(true);
    expect(second.at(-1)).toEqual([36, 40]);
  });

  it('mirrors a claim within its range, so that a second pass visits each range last item first', () => {
    const [items, chunk, count] = [50, 4, 3];
    const tasks = claimsOf(items, chunk, 0, count);
    const seen = new Int32Array(items);
    const visit = (claims: Claims, i: number): void => {
      for (let j = i; j < claims.end(); j++) seen[claims.mirror(j)]++;
    };
    // Each task's first claim: the first items of its range, which stand for its last ones.
    tasks.forEach((claims, slot) => {
      const [lo, hi] = rangeBounds(items, count, slot);
      const first = claims.next();
      expect(first).toBe(lo);
      expect(claims.mirror(first)).toBe(hi - 1);
      expect(claims.mirror(claims.end() - 1)).toBe(hi - chunk);
      visit(claims, first);
    });
    // Then task 0 alone takes the rest: mirrored within whichever range a claim came from.
    for (let i = tasks[0].next(); i >= 0; i = tasks[0].next()) visit(tasks[0], i);
    expect(seen.every((v) => v === 1)).toBe(true);
  });
});

describe('planGrid', () => {
  it('cuts rows, stretches and bands that tile the tensor, none of them empty', () => {
    // The kernels' merge takes every partial to count at least one value (Kernel.mergeChannels):
    // the WebAssembly lanes would merge a first block of none differently (a call of no values
    // never reaches the kernels: engine.ts, emptyCall). Plane and row modes, narrow and tall row
    // groups, bands, long planes cut into stretches; channels-last calls plan (N * S, C, 1).
    const modes = new Set<string>();
    for (let N = 1; N <= 130; N++) {
      for (const C of [1, 2, 3, 7, 16, 33, 257, 4096]) {
        for (const S of [1, 2, 3, 7, 63, 64, 1023, 1024, 1025, 16383, 16384, 16385, 50176, 100001]) {
          const g = planGrid(N, C, S);
          const label = JSON.stringify({ N, C, S });
          // Every part but the last is full, and the last holds at least one: [1, full].
          const last = (total: number, parts: number, full: number): number => total - (parts - 1) * full;
          for (const [total, parts, full] of [[N, g.nGroups, g.groupRows], [S, g.sChunks, g.sChunkLen], [C, g.bands, g.bandChannels]]) {
            const left = last(total, parts, full);
            expect(left >= 1 && left <= full, label).toBe(true);
          }
          expect(g.blocksPerChannel, label).toBe(g.nGroups * g.sChunks);
          expect([g.N, g.C, g.S], label).toEqual([N, C, S]);
          modes.add(`${g.mode} ${g.sChunks > 1 ? 'stretches' : g.bands > 1 ? 'bands' : g.groupRows > 1 ? 'groups' : 'rows'}`);
        }
      }
    }
    expect([...modes].sort()).toEqual(['plane groups', 'plane rows', 'plane stretches', 'row bands', 'row groups', 'row rows']);
  });
});
