// What a plain-array call's copies cost: 512 KB copied into and out of a shared WebAssembly
// memory (the pool's) against an ordinary one (the private memory of inline calls), at three
// offsets; medians of 7 rounds of 20,000 copies / 7. README, "Small inputs". Then a large input's
// copy onto the pool: 100 MB whole, and a 4 MiB slice (COPY_SLICE_BYTES) of it; medians of 7.
// README, "What copies".
//
//     node bench/copies.mjs
const n = 131072;
const x = new Float32Array(n).map(() => Math.random());
const out = new Float32Array(n);
const shared = new WebAssembly.Memory({ initial: 256, maximum: 65536, shared: true });
const ordinary = new WebAssembly.Memory({ initial: 256, maximum: 65536 });

function time(name, f, calls = 20000) {
  for (let i = 0; i < 2000; i++) f();
  const rounds = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    for (let i = 0; i < calls / 7; i++) f();
    rounds.push((performance.now() - t0) / (calls / 7));
  }
  rounds.sort((a, b) => a - b);
  console.log(name.padEnd(34), (rounds[3] * 1000).toFixed(1), 'µs');
}

for (const offset of [65536, 65536 + 64, 1 << 20]) {
  const s = new Float32Array(shared.buffer, offset, n);
  const o = new Float32Array(ordinary.buffer, offset, n);
  time(`${offset} ordinary -> shared`, () => s.set(x));
  time(`${offset} shared -> ordinary`, () => out.set(s));
  time(`${offset} ordinary -> private`, () => o.set(x));
  time(`${offset} private -> ordinary`, () => out.set(o));
}

const big = 25 << 20; // 100 MiB of float32
const bigX = new Float32Array(big).map((_, i) => i % 1000);
const bigShared = new WebAssembly.Memory({ initial: (big * 4) / 65536 + 1, maximum: 65536, shared: true });
const bigDest = new Float32Array(bigShared.buffer, 0, big);
const slice = 1 << 20; // 4 MiB of float32
function timeLarge(name, f) {
  f();
  const rounds = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    f();
    rounds.push(performance.now() - t0);
  }
  rounds.sort((a, b) => a - b);
  return rounds[3];
}
const whole = timeLarge('whole', () => bigDest.set(bigX));
const slices = timeLarge('slices', () => {
  for (let i = 0; i < big; i += slice) bigDest.set(bigX.subarray(i, i + slice), i);
});
console.log('100 MiB ordinary -> shared'.padEnd(34), whole.toFixed(1), 'ms');
console.log('  in 4 MiB slices, a slice'.padEnd(34), (slices / (big / slice)).toFixed(2), 'ms');
