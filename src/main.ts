/**
 * `npm start`: the main job on an embedded default. Makes a random [32, 64, 112, 112] float32
 * batch on the pool, runs training forwards on it, checks a sample of channels against a float64
 * two-pass reference, and prints the time, the bandwidth and the ratio to the streaming floor
 * (one SIMD pass y = a*x + b over the same bytes on the same threads), measured in turn with it.
 */
import { streamFloor } from './floor.js';
import { BatchNorm, Pool } from './index.js';

const SHAPE = [32, 64, 112, 112] as const;
/** Untimed first calls: the output's first-touch page faults and V8's warm-up. */
const WARMUP = 3;
const RUNS = 15;

async function main(): Promise<void> {
  const [N, C, H, W] = SHAPE;
  const S = H * W;
  const length = N * C * S;
  const pool = new Pool();
  const x = pool.alloc(length);
  const out = pool.alloc(length);
  fillRandom(x, C, S);

  const bn = new BatchNorm(C, { pool });
  const floor = pool.kernel === 'wasm' ? pool.alloc(length) : null;
  const times: number[] = [];
  const floorTimes: number[] = [];
  for (let i = 0; i < WARMUP + RUNS; i++) {
    let t0 = process.hrtime.bigint();
    await bn.forward(x, SHAPE, { out });
    if (i >= WARMUP) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (floor === null) continue;
    t0 = process.hrtime.bigint();
    await streamFloor(pool, x, floor);
    if (i >= WARMUP) floorTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const worst = checkSample(x, out, C, S, N);
  const median = medianOf(times);
  const bytes = 2 * length * 4; // one read and one write of the tensor
  console.log(`bnpool training forward, float32 [${SHAPE.join(', ')}] (${(length * 4 / 1e6).toFixed(1)} MB), ${pool.threads} threads, ${pool.kernel} kernel`);
  console.log(`median of ${RUNS}: ${median.toFixed(2)} ms, ${(bytes / median / 1e6).toFixed(1)} GB/s (read + write)`);
  if (floorTimes.length > 0) {
    const f = medianOf(floorTimes);
    console.log(`streaming floor, same bytes and threads: ${f.toFixed(2)} ms, ${(bytes / f / 1e6).toFixed(1)} GB/s; training forward / floor = ${(median / f).toFixed(2)}`);
  }
  console.log(`check against the float64 reference on channels 0, ${C >> 1}, ${C - 1}: max |error| ${worst.toExponential(2)} ${worst < 1e-4 ? 'OK' : 'FAILED'}`);
  pool.free(x);
  pool.free(out);
  if (floor !== null) pool.free(floor);
  await pool.close();
  if (worst >= 1e-4) process.exitCode = 1;
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Channel c is normal with its own mean and spread, from a seeded generator. */
function fillRandom(x: Float32Array, C: number, S: number): void {
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed + 0.5) / 4294967296;
  };
  const planes = x.length / S;
  for (let p = 0; p < planes; p++) {
    const c = p % C;
    const mean = (c % 7) - 3;
    const sd = 0.5 + (c % 5) * 0.25;
    for (let s = p * S; s < (p + 1) * S; s += 2) {
      const r = Math.sqrt(-2 * Math.log(rand()));
      const t = 2 * Math.PI * rand();
      x[s] = mean + sd * r * Math.cos(t);
      if (s + 1 < (p + 1) * S) x[s + 1] = mean + sd * r * Math.sin(t);
    }
  }
}

/** Largest |y - reference| over three channels, the reference in float64 with two passes. */
function checkSample(x: Float32Array, y: Float32Array, C: number, S: number, N: number): number {
  let worst = 0;
  for (const c of [0, C >> 1, C - 1]) {
    let sum = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
    const mean = sum / (N * S);
    let sq = 0;
    for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) sq += (x[(n * C + c) * S + s] - mean) ** 2;
    const invstd = 1 / Math.sqrt(sq / (N * S) + 1e-5);
    for (let n = 0; n < N; n++) {
      for (let s = 0; s < S; s++) {
        const i = (n * C + c) * S + s;
        worst = Math.max(worst, Math.abs(y[i] - (x[i] - mean) * invstd));
      }
    }
  }
  return worst;
}

await main();
