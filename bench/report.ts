/** Turns benchmark rows into markdown tables and an SVG bar chart. */
import type { BenchShape } from './shapes.js';

export interface Row {
  shape: string;
  impl: string;
  /** 'stats': statistics only (ChannelStats.fromBatch); 'read', 'write': the floor's halves. */
  mode: 'train' | 'eval' | 'backward' | 'stats' | 'read' | 'write';
  input: 'zero-copy' | 'plain' | 'inline' | '-';
  threads: number;
  medianMs: number | null;
  samples: number;
  gbps: number | null;
  vsFloor: number | null;
  /** Best peer's median / ours, at the same thread count and mode (> 1: we are faster). */
  vsBestPeer: number | null;
  note?: string;
}

export const PEERS = new Set(['onnxruntime', 'tfjs-wasm', 'tfjs-cpu']);

const fmt = (v: number | null, digits = 2): string => (v === null ? '—' : v.toFixed(digits));

/** Fills in the ratio columns from the rows of one shape. */
export function addRatios(rows: Row[]): void {
  for (const row of rows) {
    if (row.medianMs === null) continue;
    const floor = rows.find((r) => r.impl === 'floor' && r.threads === row.threads && r.medianMs !== null);
    row.vsFloor = floor ? row.medianMs / floor.medianMs! : null;
    const peers = rows.filter((r) => PEERS.has(r.impl) && r.mode === row.mode && r.threads === row.threads && r.medianMs !== null);
    const best = peers.length ? Math.min(...peers.map((r) => r.medianMs!)) : null;
    row.vsBestPeer = best === null || row.impl === 'floor' ? null : best / row.medianMs;
  }
}

export function markdownTable(shape: BenchShape, rows: Row[]): string {
  const lines = [
    `### ${shape.id} [${shape.shape.join(', ')}] (${shape.note})`,
    '',
    '| implementation | mode | input | threads | median ms | GB/s | ÷ floor | × vs best peer |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const impl = r.note ? `${r.impl} (${r.note})` : r.impl;
    lines.push(`| ${impl} | ${r.mode} | ${r.input} | ${r.threads} | ${fmt(r.medianMs, 3)} | ${fmt(r.gbps, 1)} | ${fmt(r.vsFloor)} | ${fmt(r.vsBestPeer)} |`);
  }
  return lines.join('\n');
}

/** One of the issues' speed and memory targets, as measured in a run. */
export interface Target {
  readonly what: string;
  /** Null where the run did not measure it (a shape left out, a peer that did not load). */
  readonly value: number | null;
  readonly op: '<=' | '>=';
  readonly limit: number;
  /**
   * Training targets: the floor plus the read pass of the same run, in the target's units (÷
   * floor; channels-last: ÷ channels-first training): what a training forward takes that reduces
   * x in one pass and then normalizes it in another, each as fast as the floor's halves. Null
   * where unmeasured; absent for the other targets.
   */
  readonly twoPasses?: number | null;
}

/**
 * The kernel issue's targets (zero-copy calls at `threads` threads: training and eval ÷ floor per
 * shape, D against the kernel inline and the naive port, training against the fastest peer, the
 * peak RSS over input + output) and the training issue's (backward ÷ training per shape,
 * channels-last ÷ channels-first on A and C), from one run's rows.
 */
export function targetsOf(rows: readonly Row[], threads: number, rssExtraMb: number | null): Target[] {
  // bnpool's zero-copy call of a mode at `threads` threads, channels-first (the NHWC rows have a note).
  const ours = (shape: string, mode: Row['mode']): Row | undefined => rows.find((r) => r.shape === shape
    && r.impl === 'bnpool wasm' && r.mode === mode && r.input === 'zero-copy' && r.threads === threads && r.note === undefined && r.medianMs !== null);
  const ratio = (a: Row | undefined, b: Row | undefined): number | null => (a && b ? a.medianMs! / b.medianMs! : null);
  const list: Target[] = [];
  // The floor's row, or its read pass's, of a shape at `threads` threads.
  const pass = (shape: string, impl: 'floor' | 'read pass'): Row | undefined => rows.find((r) => r.shape === shape
    && r.impl === impl && r.threads === threads && r.medianMs !== null);
  // The floor plus the read pass (two passes over x at the speed of the floor's halves) over `by`.
  const twoPasses = (shape: string, by: Row | undefined): number | null => {
    const floor = pass(shape, 'floor');
    const read = pass(shape, 'read pass');
    return floor && read && by ? (floor.medianMs! + read.medianMs!) / by.medianMs! : null;
  };
  const floorBounds: [string, number, number][] = [['A', 1.3, 1.15], ['B', 1.3, 1.15], ['C', 1.4, 1.15], ['E', 1.5, 1.2]];
  for (const [id, train, evalLimit] of floorBounds) {
    list.push({ what: `${id} training ÷ floor`, value: ours(id, 'train')?.vsFloor ?? null, op: '<=', limit: train, twoPasses: twoPasses(id, pass(id, 'floor')) });
    list.push({ what: `${id} eval ÷ floor`, value: ours(id, 'eval')?.vsFloor ?? null, op: '<=', limit: evalLimit });
  }
  const inline = rows.find((r) => r.shape === 'D' && r.note === 'kernel inline' && r.medianMs !== null);
  const naive = rows.find((r) => r.shape === 'D' && r.impl === 'naive port' && r.medianMs !== null);
  list.push({ what: 'D training ÷ the kernel inline', value: ratio(ours('D', 'train'), inline), op: '<=', limit: 1.5 });
  list.push({ what: 'D training: × faster than the naive port', value: ratio(naive, ours('D', 'train')), op: '>=', limit: 4 });
  for (const id of ['A', 'B', 'C']) {
    list.push({ what: `${id} training: × faster than the fastest peer`, value: ours(id, 'train')?.vsBestPeer ?? null, op: '>=', limit: 3 });
  }
  list.push({ what: 'A peak RSS over input + output (MB)', value: rssExtraMb, op: '<=', limit: 16 });
  for (const id of ['A', 'B', 'C', 'D', 'E']) {
    list.push({ what: `${id} backward ÷ training`, value: ratio(ours(id, 'backward'), ours(id, 'train')), op: '<=', limit: 1.5 });
  }
  for (const id of ['A', 'C']) {
    const nhwc = rows.find((r) => r.shape === id && r.impl === 'bnpool wasm' && r.mode === 'train' && r.input === 'zero-copy'
      && r.threads === threads && r.note?.startsWith('NHWC') === true && r.medianMs !== null);
    list.push({
      what: `${id} channels-last training ÷ channels-first`, value: ratio(nhwc, ours(id, 'train')), op: '<=', limit: 1.3,
      twoPasses: twoPasses(id, ours(id, 'train')),
    });
  }
  return list;
}

/** Whether a target was met: null where it was not measured. */
export function isMet(t: Target): boolean | null {
  if (t.value === null) return null;
  return t.op === '<=' ? t.value <= t.limit : t.value >= t.limit;
}

export function targetsTable(targets: readonly Target[], threads: number): string {
  const lines = [
    `### Targets (zero-copy calls, ${threads} threads, float32)`,
    '',
    '| target | measured | bound | met | two passes over x (floor + read pass) |',
    '| --- | ---: | ---: | --- | ---: |',
  ];
  for (const t of targets) {
    const met = isMet(t);
    const two = t.twoPasses === undefined ? '' : fmt(t.twoPasses);
    lines.push(`| ${t.what} | ${fmt(t.value)} | ${t.op === '<=' ? '≤' : '≥'} ${t.limit} | ${met === null ? 'not measured' : met ? 'yes' : 'no'} | ${two} |`);
  }
  lines.push(
    '',
    'The last column, for the training targets: the floor plus the read pass of the same run, in the target\'s units. A training forward that reduces x in one pass and then normalizes it in another, each as fast as the floor\'s halves, takes that long. Below it needs the two passes overlapped (the phased path, with `cacheBytes` given: a group\'s statistics under the normalization of the group before), x kept in cache between them (the fused path of A: a channel at a time), or each thread\'s part of x in its own cache between them (the split path of B, C and E: each task normalizes its own range of the items, last reduced first). Channels-last rows hold every channel: no channel is whole before the last row is read, and overlapping groups of channels made it slower, so channels-last training makes the two passes in turn (README, "Performance").',
  );
  return lines.join('\n');
}

const COLORS: Record<string, string> = {
  floor: '#9e9e9e', 'bnpool wasm': '#1565c0', 'bnpool js': '#64b5f6', 'naive port': '#8d6e63',
  onnxruntime: '#ef6c00', 'tfjs-wasm': '#2e7d32', 'tfjs-cpu': '#81c784',
};

/**
 * GB/s of a training forward per shape and implementation, at the most threads measured (bnpool:
 * zero-copy).
 */
export function svgChart(shapes: readonly BenchShape[], rows: Row[], title: string): string {
  const impls = Object.keys(COLORS);
  const pick = (shape: string, impl: string): Row | undefined => {
    // bnpool's zero-copy rows (the peers take plain arrays), at the most threads measured.
    const bnpool = impl.startsWith('bnpool');
    const cands = rows.filter((r) => r.shape === shape && r.impl === impl && r.mode === 'train' && r.gbps !== null
      && (!bnpool || (r.input === 'zero-copy' && r.note === undefined)));
    return cands.sort((a, b) => b.threads - a.threads)[0];
  };
  const max = Math.max(1, ...rows.filter((r) => r.gbps !== null).map((r) => r.gbps!));
  const W = 900;
  const H = 360;
  const left = 50;
  const bottom = 300;
  const groupW = (W - left - 20) / shapes.length;
  const barW = (groupW - 16) / impls.length;
  const y = (v: number): number => bottom - (v / max) * 250;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13">${title}</text>`,
  ];
  for (let t = 0; t <= max; t += max > 40 ? 10 : 5) {
    out.push(`<line x1="${left}" x2="${W - 10}" y1="${y(t)}" y2="${y(t)}" stroke="#eee"/>`, `<text x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${t}</text>`);
  }
  out.push(`<text x="14" y="${bottom - 120}" transform="rotate(-90 14 ${bottom - 120})" text-anchor="middle">GB/s (read + write)</text>`);
  shapes.forEach((s, gi) => {
    const gx = left + 8 + gi * groupW;
    impls.forEach((impl, ii) => {
      const r = pick(s.id, impl);
      if (!r || r.gbps === null) return;
      const x = gx + ii * barW;
      out.push(`<rect x="${x.toFixed(1)}" y="${y(r.gbps).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(bottom - y(r.gbps)).toFixed(1)}" fill="${COLORS[impl]}"><title>${impl} ${r.threads}t: ${r.gbps.toFixed(1)} GB/s</title></rect>`);
    });
    out.push(`<text x="${gx + groupW / 2 - 8}" y="${bottom + 16}" text-anchor="middle">${s.id} [${s.shape.join(',')}]</text>`);
  });
  impls.forEach((impl, i) => {
    const x = left + (i % 7) * 120;
    out.push(`<rect x="${x}" y="${bottom + 32}" width="12" height="12" fill="${COLORS[impl]}"/>`, `<text x="${x + 16}" y="${bottom + 42}">${impl}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
