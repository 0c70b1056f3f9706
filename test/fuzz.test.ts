/**
 * Random bad input to every public entry point: each call either succeeds or fails with a
 * BnPoolError (a stable code, never a TypeError from inside), and a module (its saved forward
 * too: what its backward gives), running buffers or ChannelStats it was given are left exactly as
 * they were. The arguments are drawn from a pool of
 * values of every kind (numbers, strings long and short, arrays, one that holds itself, typed
 * arrays, detached ones too, objects, functions, symbols, bigints, a signal, a pool, all-reduce
 * hooks with right and wrong answers), a few options a call, and assigned to a module's eps and
 * momentum; calls whose input, out or a module's own buffer (weight, bias, running statistics) is
 * shrunk or detached by its owner while they run (inline, or on workers, where a turn later is
 * mid-call); then Pool options, alloc and free, a second free of a freed array refused. Then mutated
 * `.safetensors` files: bytes flipped, cut, inserted, and header fields replaced. A fixed seed
 * keeps CI repeatable; `BNPOOL_FUZZ=20000` (and `BNPOOL_FUZZ_SEED`) run a longer search locally.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BatchNorm, BnPoolError, ChannelStats, Pool, batchNorm, batchNormBackward,
} from '../dist/src/index.js';
import { fromSafetensors, toSafetensors } from '../dist/src/weights.js';
import { detached, rng } from './helpers/data.js';

const TRIALS = Number(process.env.BNPOOL_FUZZ ?? 2000);
const SEED = Number(process.env.BNPOOL_FUZZ_SEED ?? 1);

let pool: Pool;
/** Never inline: its calls run on the workers, so an array lost a turn later is lost mid-call. */
let workers: Pool;
beforeAll(async () => {
  pool = new Pool({ threads: 2 });
  workers = new Pool({ threads: 2, inlineThreshold: 0, grainSize: 1 });
  await Promise.all([pool.ready, workers.ready]);
});
afterAll(() => Promise.all([pool.close(), workers.close()]));

/** Everything a module holds, as text: weight, bias, running statistics, batches tracked. */
const snapshot = (bn: BatchNorm): string => JSON.stringify(
  [bn.stateDict(), bn.numBatchesTracked],
  (_, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : typeof v === 'bigint' ? String(v) : v),
);

/** An array that holds itself: error messages must name it without recursing. */
function cyclic(): unknown[] {
  const a: unknown[] = [1];
  a.push(a);
  return a;
}

/** What went wrong in a search: label, what, and the message (empty when none). */
type Finding = [string, string, string];

/**
 * What a module's backward gives now (dx and the sums, or the error's code): its saved forward,
 * which no snapshot shows. A backward changes no state; after a synced forward it needs an
 * all-reduce, here the identity.
 */
async function backwardNow(bn: BatchNorm, dy: Float32Array): Promise<string> {
  for (const options of [undefined, { reduceGrads: (sums: unknown) => sums }]) {
    try {
      const g = await bn.backward(dy, options as never);
      return JSON.stringify([g.dx, g.dWeight, g.dBias].map((a) => (a === null ? null : Array.from(a))));
    } catch (err) {
      if (options === undefined && (err as BnPoolError).code === 'ERR_BNPOOL_ARG') continue;
      return (err as BnPoolError).code;
    }
  }
  return '';
}

/** Runs `call`; records a failure that is not a BnPoolError, or that changed what `state` reads. */
async function attempt(
  findings: Finding[], codes: Map<string, number>, label: string, call: () => unknown, state?: () => string | Promise<string>,
): Promise<void> {
  const before = await state?.();
  try {
    await call();
    codes.set('ok', (codes.get('ok') ?? 0) + 1);
  } catch (err) {
    if (!(err instanceof BnPoolError)) {
      findings.push([label, 'not a BnPoolError', String(err)]);
      return;
    }
    codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
    if (state && (await state()) !== before) findings.push([label, 'state changed', err.message]);
  }
}

describe(`random arguments (${TRIALS} trials, seed ${SEED})`, () => {
  it('every call succeeds or throws a BnPoolError, and a failed call changes nothing', async () => {
    const rand = rng(SEED);
    const pick = <T>(values: readonly T[]): T => values[Math.floor(rand() * values.length)];
    const values = (): unknown[] => [
      undefined, null, 0, -1, 1.5, NaN, Infinity, 2 ** 40, '', 'x', 'float32', 'float64', 'relu', 'channels-last', 'torch',
      'channels-first', true, false, [], [1], [3, 4], [4, 3], [1, 3, 5], [0, 3], [2, 3, 0], [NaN, 1, 2], {}, { a: 1 }, () => 1, Symbol('s'), 10n,
      new Uint8Array(12), new Uint8ClampedArray(60),
      new Float32Array(3), new Float64Array(3), new Float32Array(12), new Float32Array(0), new Int32Array(3),
      new Float32Array(60), new AbortController().signal, pool, Object.create(null), cyclic(), 'x'.repeat(10_000),
      detached(new Float32Array(60)), detached(new Float32Array(3)),
    ];
    // All-reduce hooks (reduceStats, reduceGrads) whose answers are right, wrong or of no kind at all.
    const hooks = (): unknown[] => [
      (local: unknown) => local,
      async (local: unknown) => local,
      () => junk(),
      async () => junk(),
      () => new ChannelStats([1], [0], [0]),
      () => new ChannelStats([8, 8, 0], [0, 1, 2], [1, 1, 0]),
      (sums: { sumDy?: unknown }) => ({ sumDy: sums?.sumDy, sumDyXhat: junk() }),
    ];
    const junk = (): unknown => pick(rand() < 0.15 ? hooks() : values());
    const some = (keys: readonly string[], base: Record<string, unknown> = {}): Record<string, unknown> => {
      const o = { ...base };
      for (let n = Math.floor(rand() * 4); n > 0; n--) o[pick(keys)] = junk();
      return o;
    };
    const x = Float32Array.from({ length: 60 }, (_, i) => Math.sin(i * 1.7) * 3 + 1);
    const dy = x.map((v) => 0.5 * v - 1);
    const pixels = Uint8Array.from({ length: 60 }, (_, i) => (i * 37) & 255);
    const shape = [4, 3, 5];
    const findings: Finding[] = [];
    const codes = new Map<string, number>();
    const at = (label: string, call: () => unknown, state?: () => string | Promise<string>) => attempt(findings, codes, label, call, state);
    // A module's state, its saved forward included (what its backward gives).
    const whole = (bn: BatchNorm) => async (): Promise<string> => snapshot(bn) + await backwardNow(bn, dy);
    for (let t = 0; t < TRIALS; t++) {
      const kind = Math.floor(rand() * 9);
      if (kind === 0) {
        const keys = ['convention', 'eps', 'momentum', 'affine', 'trackRunningStats', 'dtype', 'pool', 'layout', 'activation', 'extra'];
        await at('new BatchNorm', () => new BatchNorm(rand() < 0.5 ? 3 : junk() as number, rand() < 0.8 ? some(keys) : junk() as never));
      } else if (kind === 1 || kind === 2) {
        const bn = new BatchNorm(3, { pool });
        // A synced forward (reduceStats) before some backwards: they then need reduceGrads.
        if (rand() < 0.6) await bn.forward(x, shape, rand() < 0.3 ? { reduceStats: (local: ChannelStats) => local } : undefined);
        if (rand() < 0.3) bn.eval();
        if (kind === 1) {
          const opts = rand() < 0.8 ? some(['out', 'signal', 'reduceStats', 'extra']) : junk();
          await at('forward', () => bn.forward(rand() < 0.7 ? x : junk() as never, rand() < 0.7 ? shape : junk() as never, opts as never), whole(bn));
        } else {
          const opts = rand() < 0.8 ? some(['out', 'signal', 'reduceGrads', 'extra']) : junk();
          await at('backward', () => bn.backward(rand() < 0.7 ? dy : junk() as never, opts as never), whole(bn));
        }
      } else if (kind === 3) {
        const keys = ['training', 'runningMean', 'runningVar', 'weight', 'bias', 'momentum', 'eps', 'pool', 'out', 'signal', 'layout', 'activation', 'reduceStats', 'outLayout', 'extra'];
        const opts = some(keys, { pool, runningMean: new Float32Array([0.5, -1, 2]), runningVar: new Float32Array([1, 2, 3]) });
        const buffers = [opts.runningMean, opts.runningVar].filter((v): v is Float32Array => v instanceof Float32Array && v.length === 3);
        const state = () => JSON.stringify(buffers.map((b) => Array.from(b)));
        // Float input, or 8-bit pixels (eval only: training and reduceStats are refused for them).
        const input = rand() < 0.7 ? (rand() < 0.3 ? pixels : x) : junk() as never;
        await at('batchNorm', () => batchNorm(input as Float32Array, rand() < 0.7 ? shape : junk() as never, opts), state);
      } else if (kind === 4) {
        const keys = ['weight', 'mean', 'var', 'invstd', 'training', 'eps', 'layout', 'pool', 'out', 'signal', 'activation', 'y', 'reduceGrads', 'count', 'extra'];
        const opts = some(keys, { pool, mean: new Float64Array(3), var: new Float64Array([1, 2, 3]) });
        await at('batchNormBackward', () => batchNormBackward(rand() < 0.8 ? x : junk() as never, rand() < 0.8 ? dy : junk() as never, rand() < 0.8 ? shape : junk() as never, opts as never));
      } else if (kind === 5) {
        const json = rand() < 0.5 ? junk() : { count: rand() < 0.5 ? [1, 2] : junk(), mean: rand() < 0.5 ? [0, 'NaN'] : junk(), m2: rand() < 0.5 ? [0, 1] : junk() };
        await at('ChannelStats.fromJSON', () => ChannelStats.fromJSON(json as never));
        await at('new ChannelStats', () => new ChannelStats(junk() as never, junk() as never, junk() as never));
        await at('ChannelStats.fromBatch', () => ChannelStats.fromBatch(rand() < 0.5 ? x : junk() as never, rand() < 0.5 ? shape : junk() as never, some(['layout', 'signal', 'extra'], { pool })));
        const stats = new ChannelStats([2, 3, 4], [0, 1, 2], [1, 1, 1]);
        const state = () => JSON.stringify(stats);
        await at('variance', () => stats.variance(junk() as never), state);
        await at('merge', () => stats.merge(junk() as never), state);
      } else if (kind === 6) {
        // eps and momentum are set as in PyTorch: a bad value is refused and changes nothing.
        const bn = new BatchNorm(3, { pool });
        const key = pick(['eps', 'momentum'] as const);
        const value = rand() < 0.3 ? pick([1e-3, 0.5, 0, 1, null]) : junk();
        await at(`set ${key}`, () => { (bn as unknown as Record<string, unknown>)[key] = value; }, () => JSON.stringify([snapshot(bn), bn.eps, bn.momentum]));
      } else if (kind === 8) {
        // An array of the call that its owner shrinks (a resizable buffer) or detaches (a
        // transfer) right after the call is made, or after a turn or two of the event loop: x or
        // dy, out, or one of the module's own buffers (weight, bias, running statistics).
        const bn = new BatchNorm(3, { pool: rand() < 0.5 ? pool : workers });
        const backward = rand() < 0.4;
        // A forward before, so that what a failed call must leave alone includes a saved forward.
        if (backward || rand() < 0.5) await bn.forward(x, shape);
        if (rand() < 0.3) bn.eval();
        const resizable = (from: Float32Array): Float32Array => {
          const array = new Float32Array(new ArrayBuffer(from.byteLength, { maxByteLength: from.byteLength }));
          array.set(from);
          return array;
        };
        // Other values than the forward before, whose statistics the failed call must not leave saved.
        const input = resizable(backward ? dy : x.map((v) => 1.5 * v + 2));
        const out = resizable(new Float32Array(60));
        const own = [bn.weight!, bn.bias!, bn.runningMean!, bn.runningVar!] as Float32Array[];
        const draw = rand();
        const victim = draw < 0.35 ? input : draw < 0.7 ? out : pick(own);
        const lose = (): void => {
          if ((victim.buffer as ArrayBuffer & { resizable: boolean }).resizable && rand() < 0.5) (victim.buffer as ArrayBuffer & { resize(n: number): void }).resize(4 * Math.floor(rand() * 59));
          else detached(victim);
        };
        // The module's state but the lost buffer, which its owner emptied, and its saved forward
        // (what a backward gives, which reads the weight: not where the weight is the one lost).
        const kept = async (): Promise<string> => (own.includes(victim)
          ? JSON.stringify([bn.numBatchesTracked, ...own.filter((a) => a !== victim).map((a) => Array.from(a))])
          : snapshot(bn)) + (victim === bn.weight ? '' : await backwardNow(bn, dy));
        const turns = Math.floor(rand() * 3) - 1;
        const when = turns < 0 ? 'at once' : `after ${turns + 1} turn(s)`;
        const name = victim === input ? 'input' : victim === out ? 'out' : ['weight', 'bias', 'runningMean', 'runningVar'][own.indexOf(victim)];
        await at(`${backward ? 'backward' : 'forward'} (${bn.training ? 'training' : 'eval'}), ${name} lost ${when}`, () => {
          const call = backward ? bn.backward(input, { out }) : bn.forward(input, shape, { out });
          if (turns < 0) lose();
          else {
            let n = 0;
            const tick = (): void => { if (n++ === turns) lose(); else setImmediate(tick); };
            setImmediate(tick);
          }
          return call;
        }, kept);
      } else {
        const bn = new BatchNorm(3, { pool, affine: rand() < 0.5 });
        const format = pick(['torch', 'keras', 'onnx', junk()]);
        const weights = rand() < 0.4 ? junk()
          : format === 'keras' ? [junk(), junk(), junk(), junk()].slice(0, rand() < 0.5 ? 2 : 4)
            : format === 'onnx' ? { scale: junk(), B: junk(), input_mean: junk(), input_var: junk() }
              : some(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
        await at('importWeights', () => bn.importWeights(format as 'torch', weights), () => snapshot(bn));
      }
    }
    expect(findings).toEqual([]);
    // The draw reaches every kind of outcome: successes and each of these refusals.
    for (const code of ['ok', 'ERR_BNPOOL_ARG', 'ERR_BNPOOL_DTYPE', 'ERR_BNPOOL_SHAPE', 'ERR_BNPOOL_NO_FORWARD']) {
      expect(codes.get(code) ?? 0, code).toBeGreaterThan(0);
    }
  }, Math.max(60_000, TRIALS * 20));

  it('pool options, alloc and free: a Pool, an array or a BnPoolError', async () => {
    const rand = rng(SEED + 2);
    const pick = <T>(values: readonly T[]): T => values[Math.floor(rand() * values.length)];
    const values: unknown[] = [
      undefined, null, 0, -1, 1, 1.5, NaN, Infinity, 2 ** 31, 2 ** 40, 4096, 1 << 20, '', 'js', 'wasm', 'float64', 'int8',
      true, [], [3], {}, () => 1, Symbol('s'), 2n, new Float32Array(3), Object.create(null),
    ];
    const findings: Finding[] = [];
    const codes = new Map<string, number>();
    const keys = ['threads', 'kernel', 'initialMemory', 'maxMemory', 'inlineThreshold', 'cacheBytes', 'grainSize', 'extra'];
    // A pool that starts spawns a worker (~30 ms): fewer of these.
    for (let t = 0; t < Math.max(50, TRIALS / 20); t++) {
      const options: Record<string, unknown> = { threads: 1 };
      for (let n = 1 + Math.floor(rand() * 2); n > 0; n--) options[pick(keys)] = pick(values);
      await attempt(findings, codes, 'new Pool', async () => {
        const p = new Pool(rand() < 0.9 ? options : pick(values) as never);
        expect(p.threads).toBeGreaterThanOrEqual(1);
        await p.close();
      });
    }
    const live: Float32Array[] = [];
    // Arrays freed already: a second free is refused, and must not free the array that holds the
    // block now (the pool's live bytes stay as they are).
    const freed: Float32Array[] = [];
    const liveBytes = (): string => String(pool.memoryStats.liveBytes);
    for (let t = 0; t < TRIALS; t++) {
      if (rand() < 0.1 && freed.length > 0) {
        const a = pick(freed);
        await attempt(findings, codes, 'pool.free again', () => {
          pool.free(a);
          findings.push(['pool.free again', 'accepted', `${a.length} values at byte offset ${a.byteOffset}`]);
        }, liveBytes);
      } else if (rand() < 0.5) {
        await attempt(findings, codes, 'pool.alloc', () => {
          const a = pool.alloc(pick(values) as number, pick([undefined, 'float32', 'float64', 'uint8', ...values]) as 'float32');
          expect(ArrayBuffer.isView(a)).toBe(true);
          if (live.length < 8) live.push(a as Float32Array);
          else pool.free(a);
        });
      } else {
        const own = rand() < 0.3 && live.length > 0;
        const a = (own ? live.pop() : pick(values)) as Float32Array;
        await attempt(findings, codes, 'pool.free', () => pool.free(a));
        if (own && freed.length < 64) freed.push(a);
      }
    }
    for (const a of live) pool.free(a);
    expect(findings).toEqual([]);
    expect(codes.get('ok') ?? 0).toBeGreaterThan(0);
    expect(codes.get('ERR_BNPOOL_ARG') ?? 0).toBeGreaterThan(0);
  }, Math.max(60_000, TRIALS * 20));

  it('mutated safetensors files load whole or fail with a BnPoolError, changing nothing', async () => {
    const rand = rng(SEED + 1);
    const int = (n: number): number => Math.floor(rand() * n);
    const findings: Finding[] = [];
    const codes = new Map<string, number>();
    for (const dtype of ['float32', 'float64'] as const) {
      // '': a file of one module; 'layer.0.': its keys as a model's file names them (options.prefix).
      for (const [affine, prefix] of [[true, ''], [false, ''], [true, 'layer.0.']] as const) {
        const source = new BatchNorm(5, { dtype, affine, pool });
        source.weight?.set([1.5, 2, 3, 4, 5]);
        source.bias?.set([-1, 0, 1, 2, 3]);
        source.runningMean!.set([0.1, 0.2, 0.3, 0.4, 0.5]);
        const good = toSafetensors(source, prefix);
        const headerLength = Number(new DataView(good.buffer).getBigUint64(0, true));
        const header = new TextDecoder().decode(good.subarray(8, 8 + headerLength));
        const data = good.subarray(8 + headerLength);
        const fields = [null, 0, -1, 1.5, 2 ** 53, 'F32', 'F16', 'BF16', 'I64', 'U8', [], [1], [5], [0, 20], [20, 0], [5, 1], [-1], {}, true, '__proto__'];
        for (let t = 0; t < TRIALS; t++) {
          let bytes: Uint8Array;
          const kind = int(6);
          if (kind === 0) {
            bytes = good.slice();
            for (let n = 1 + int(4); n > 0; n--) bytes[int(bytes.length)] = int(256);
          } else if (kind === 1) {
            bytes = good.slice(0, int(good.length));
          } else if (kind === 2) {
            const cut = int(good.length);
            bytes = new Uint8Array([...good.subarray(0, cut), ...Array.from({ length: 1 + int(9) }, () => int(256)), ...good.subarray(cut)]);
          } else {
            const h = JSON.parse(header) as Record<string, Record<string, unknown>>;
            const names = Object.keys(h).filter((n) => n !== '__metadata__');
            const value = fields[int(fields.length)];
            if (kind === 3) h[names[int(names.length)]][['dtype', 'shape', 'data_offsets'][int(3)]] = value;
            else if (kind === 4 && rand() < 0.5) delete h[names[int(names.length)]];
            else if (kind === 4) h[['extra', 'weight', 'num_batches_tracked', `${prefix}extra`][int(4)]] = { dtype: 'F32', shape: [5], data_offsets: [0, 20] };
            else h.__metadata__ = value as never;
            let json = JSON.stringify(h);
            json += ' '.repeat((8 - (json.length % 8)) % 8);
            const text = new TextEncoder().encode(json);
            bytes = new Uint8Array(8 + text.length + data.length);
            new DataView(bytes.buffer).setBigUint64(0, BigInt(text.length), true);
            bytes.set(text, 8);
            bytes.set(data, 8 + text.length);
          }
          const target = new BatchNorm(5, { dtype, affine, pool });
          target.weight?.fill(9);
          await attempt(findings, codes, `${dtype} affine ${affine} prefix '${prefix}' mutation ${kind}`, () => fromSafetensors(target, bytes, prefix), () => snapshot(target));
        }
      }
    }
    expect(findings).toEqual([]);
    expect(codes.get('ERR_BNPOOL_FORMAT') ?? 0).toBeGreaterThan(0);
    expect(codes.get('ok') ?? 0).toBeGreaterThan(0);
  }, Math.max(60_000, TRIALS * 20));
});
