// Mutation check of the test suite: each mutant below breaks one rule of the product in a small,
// plausible way (a dropped eps, a check removed, two statements swapped), and the tests named
// beside it must fail on it. A mutant they pass is a rule no test holds. Run by hand (each mutant
// builds and runs its tests: 7-10 minutes for the first 51 on the project's 2-vCPU machine of
// the time), not by `npm test`:
//
//     node test/mutants.mjs            # every mutant
//     node test/mutants.mjs eps-eval running-var-check   # those only
//     node test/mutants.mjs --check    # that each mutant's text is still in the source, once
//     node test/mutants.mjs --limit-s=300 wait-cancel   # each mutant's tests stopped after 300 s
//     node test/mutants.mjs --help     # this usage; an option it does not know is refused
//
// A mutant's tests that run past the limit (900 s unless given) are stopped, with every process
// they started (coreutils `timeout` signals its whole process group), and the mutant counts as
// killed: a suite that never finishes fails CI as surely as a failing test. The unmutated run has
// no limit.
//
// It works on a copy of the working tree in a temporary folder (node_modules linked, dist built
// there), so the checkout and its dist/ are left alone, and first runs every chosen mutant's
// tests on the copy unmutated, which must pass. Each mutant's `find` must occur exactly
// once in its file, so that a change to the code makes the mutant fail loudly ("stale") rather
// than pass in silence. The first list came from a run of 2026-12-03, in which three mutants
// passed every test of the time (running-var-check, count-before-update, in-place-backward) and
// one the ChannelStats tests, which ran on the default kernel only (mean-lo-merge); the tests
// that catch them were written then. Plain JavaScript, like bench/alternate.mjs.
//
// Tried and left out as equivalent in value (no data can tell them from the code; do not add
// them back): the TypeScript kernel's farShift bound for blocks under 128 values at `count`
// rather than `count * 0.5` (it sums in float64, where the resum gains at most ~6 bits); the
// float32 backward's all-zero check of lanes past the last group of four (zeroProductLanes32's
// one-by-one lanes) or of a pattern's values past its last whole period, both summed in float64
// (backward-partial.ts says why); a pattern's statistics shifted by channel 0's first value for
// every position (writePartial32's farShift resums such a block: it costs only speed); the
// TypeScript kernel's test of s1 * s1 for overflow where s2 is finite (farShift, which then sees
// an infinite s1², resums the block about its mean, where the sums are finite: other bits
// within the sums' rounding), and its clamp of m2 at 0 (a negative m2 passes farShift's test,
// and under its bound m2 is at least s2 / 65, which the float64 sums' rounding, n·2^-53
// relative, reaches only past 10^14 values).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The float32 backward sums' suites (adversarial.test.ts holds their hard data), which the
 * mutants of backward-partial.ts and of the kernels that call it run, with their layout's own.
 */
const BACKWARD_SUMS = ['test/backward.test.ts', 'test/adversarial.test.ts', 'test/kernel-properties.test.ts', 'test/kernels-rows.test.ts', 'test/scales.test.ts'];
/** `new Pool`'s option checks: the mutants of pool-options.ts. */
const POOL_OPTIONS = ['test/errors-arguments.test.ts', 'test/fuzz.test.ts', 'test/memory.test.ts', 'test/lifecycle.test.ts'];

/**
 * name, what it breaks, file, the text it replaces (once), the replacement, the tests that must
 * fail, and `only`: where given, just the tests whose names contain it run on the mutant (vitest's
 * `-t`, given it as a literal pattern: 'pool.alloc(0)' as a regular expression had matched no test,
 * and a run of none passes).
 */
const MUTANTS = [
  {
    name: 'unbiased-factor', breaks: 'the running variance takes m / (m - 1) of the batch variance',
    file: 'src/running.ts', find: 'count / (count - 1) : 1', replace: '(count + 1) / count : 1',
    tests: ['test/running-stats.test.ts', 'test/forward.test.ts'],
  },
  {
    name: 'running-update-float32', breaks: 'a float32 module\'s running update is made in float64 and rounded to float32 once (not in float32 steps)',
    file: 'src/running.ts', find: 'toMean[c] = (1 - factor) * runningMean[c] + factor * mean[c];',
    replace: 'toMean[c] = runningMean instanceof Float32Array ? Math.fround(Math.fround((1 - factor) * runningMean[c]) + Math.fround(factor * mean[c])) : (1 - factor) * runningMean[c] + factor * mean[c];',
    tests: ['test/running-long.test.ts', 'test/channels.test.ts'],
  },
  {
    name: 'cumulative-average', breaks: 'momentum null weights the new batch 1 / num_batches_tracked',
    file: 'src/conventions.ts', find: 'return 1 / batches;', replace: 'return 1 / (batches + 1);',
    tests: ['test/torch-vectors.test.ts', 'test/running-stats.test.ts'],
  },
  {
    name: 'onnx-biased', breaks: "onnx's running variance takes the biased batch variance",
    file: 'src/conventions.ts', find: 'onnx: Object.freeze({ momentum: 0.9, eps: 1e-5, momentumOnOld: true, unbiased: false',
    replace: 'onnx: Object.freeze({ momentum: 0.9, eps: 1e-5, momentumOnOld: true, unbiased: true', tests: ['test/conventions.test.ts'],
  },
  {
    name: 'keras-eps', breaks: "keras's default eps is 1e-3",
    file: 'src/conventions.ts', find: 'keras: Object.freeze({ momentum: 0.99, eps: 1e-3', replace: 'keras: Object.freeze({ momentum: 0.99, eps: 1e-5',
    tests: ['test/conventions.test.ts'],
  },
  {
    name: 'synced-count', breaks: "a synced forward's running update counts every shard's values",
    file: 'src/sync.ts', find: '  return { result, count };', replace: '  return { result, count: request.dims.N * request.dims.S };',
    tests: ['test/sync.test.ts'],
  },
  {
    name: 'channel-slices', breaks: 'a per-channel step over more than CHANNEL_SLICE channels goes in slices, a turn of the event loop before each',
    file: 'src/channels.ts', find: '  if (C <= CHANNEL_SLICE) {\n    step(0, C);', replace: '  if (C > 0) {\n    step(0, C);',
    tests: ['test/sync-wide.test.ts', 'test/channels.test.ts'],
  },
  {
    name: 'columns-pair-far', breaks: 'statsColumns32 takes two channels at once only where neither shift lies far from its mean (else each is summed again)',
    file: 'workers/wasm/assembly/common.ts', find: 'v128.andnot(v128.and(finite, notTiny), far)', replace: 'v128.and(finite, notTiny)',
    tests: ['test/kernel-properties.test.ts', 'test/adversarial.test.ts', 'test/kernels-rows.test.ts'],
  },
  {
    name: 'columns-pair-tiny', breaks: 'statsColumns32 takes two channels at once only where neither mean square is tiny (else each is summed again in float64)',
    file: 'workers/wasm/assembly/common.ts', find: 'v128.andnot(v128.and(finite, notTiny), far)', replace: 'v128.andnot(finite, far)',
    tests: ['test/kernel-properties.test.ts', 'test/adversarial.test.ts', 'test/kernels-rows.test.ts', 'test/scales.test.ts'],
  },
  {
    name: 'merge-pair-lanes', breaks: "the merge's and the eval prep's two-channel steps write each lane's row parameters to its own channel",
    file: 'workers/wasm/assembly/merge.ts',
    find: '    rowParamsOf(rowParams, rowStride, c + 1, f64x2.extract_lane(mean, 1), f64x2.extract_lane(scale, 1), f64x2.extract_lane(bias, 1));\n  }\n}',
    replace: '    rowParamsOf(rowParams, rowStride, c + 1, f64x2.extract_lane(mean, 1), f64x2.extract_lane(scale, 0), f64x2.extract_lane(bias, 1));\n  }\n}',
    tests: ['test/kernels-rows.test.ts', 'test/forward.test.ts'],
  },
  {
    name: 'pattern-params', breaks: "the merge and the eval prep write the float64 parameters that the pattern kernel's rows read",
    file: 'workers/wasm/assembly/normalize.ts', find: '  return rowParams == 0 || patternRows(C);', replace: '  return rowParams == 0;',
    tests: ['test/kernels-rows.test.ts', 'test/channels-last.test.ts'],
  },
  {
    name: 'put-slices', breaks: "a call's per-channel inputs go onto the pool in slices, a turn of the event loop (where an abort stops it) before each",
    file: 'src/channels.ts', find: '    }\n  }, pause);\n}', replace: '    }\n  }, pause && (async () => undefined));\n}',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'put-check', breaks: 'a per-channel input detached during the turns before its slice fails the call with an ArgumentError',
    file: 'src/channels.ts', find: '      checkIntact(values, C, name);\n', replace: '      checkIntact(values, 0, name);\n',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'view-per-slice', breaks: "a sliced copy of a call's per-channel results makes its view of the pool's memory again for each slice (a private memory's growth detaches the old one)",
    file: 'src/channels.ts', find: '  await inChannelSlices(copy.length, (c0, c1) => copy.set(viewOf().subarray(c0, c1), c0), nextTurn, FRESH_SLICE);',
    replace: '  const once = viewOf();\n  await inChannelSlices(copy.length, (c0, c1) => copy.set(once.subarray(c0, c1), c0), nextTurn, FRESH_SLICE);',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'lanes-halves-row', breaks: "channels in lanes, rows in groups (laneSpread32): the second row of each group is normalized",
    file: 'workers/wasm/assembly/normalize-lanes.ts', find: 'laneLine32<R>(px + q, py + q, h0,',
    replace: 'laneLine32<R>(px, py, h0,', tests: ['test/kernels-rows.test.ts'],
  },
  {
    name: 'apply-halves-row', breaks: "the backward's dx of channels in lanes: the second row of each pair reads its own dy",
    file: 'workers/wasm/assembly/backward-apply-lanes.ts', find: 'columnHalfLine32<X, M>(x + o + half, dy + o + half,',
    replace: 'columnHalfLine32<X, M>(x + o + half, dy + o,', tests: ['test/kernel-properties.test.ts'],
  },
  {
    name: 'fused-backward-copy', breaks: "the fused backward's copy where k is not 0 and dy is masked reads x",
    file: 'workers/wasm/assembly/backward-stats.ts', find: '      bwdPlanes32<On, On>(',
    replace: '      bwdPlanes32<Off, On>(', tests: ['test/kernels-planes.test.ts', 'test/relu.test.ts'],
  },
  {
    name: 'fresh-slices', breaks: 'new result arrays over many channels are written in slices of FRESH_SLICE (their page faults)',
    file: 'src/channels.ts', find: 'copy.set(viewOf().subarray(c0, c1), c0), nextTurn, FRESH_SLICE);',
    replace: 'copy.set(viewOf().subarray(c0, c1), c0), nextTurn);',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'view-per-slice-into', breaks: 'a sliced copy into an array given makes its view again for each slice too',
    file: 'src/channels.ts', find: '  const C = viewOf().length;\n', replace: '  const once = viewOf();\n  const C = once.length;\n  viewOf = () => once;\n',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'copy-slices', breaks: "a call's per-channel results are copied into the arrays given in slices, a turn of the event loop before each",
    file: 'src/channels.ts', find: '  await inChannelSlices(C, (c0, c1) => {\n    checkIntact(into, C, name);',
    replace: '  ((step: (c0: number, c1: number) => void) => step(0, C))((c0, c1) => {\n    checkIntact(into, C, name);', tests: ['test/channels.test.ts'],
  },
  {
    name: 'running-slices', breaks: 'the running update over more than CHANNEL_SLICE channels is made in slices, a turn of the event loop before each',
    file: 'src/running.ts', find: 'const meanAt = C > CHANNEL_SLICE ?', replace: 'const meanAt = C > CHANNEL_SLICE * Infinity ?',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'running-in-one-piece', breaks: 'the running buffers change in one piece at the end of a sliced update (no one sees one half made)',
    file: 'src/running.ts', find: '      const [nextMean, nextVar] = scratch();\n      blend(', replace: '      const [nextMean, nextVar] = [runningMean, runningVar];\n      blend(',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'running-rewritten', breaks: 'a sliced running update is made again on what resetRunningStats or loadStateDict wrote during its turns',
    file: 'src/batch-norm.ts', find: '() => this.#writes === writes)', replace: '() => writes === writes)',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'reset-writes', breaks: 'resetRunningStats during the turns of a sliced running update has the update made again on the reset statistics',
    file: 'src/batch-norm.ts', find: '    this.#numBatchesTracked = 0;\n    this.#writes++;\n', replace: '    this.#numBatchesTracked = 0;\n',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'count-scan-check', breaks: "a synced forward checks its answer's arrays whole in each slice of its count check (the caller may transfer them during the turns)",
    file: 'src/sync.ts', find: '  await inChannelSlices(C, (c0, c1) => {\n    checkStatsHeld(merged, "options.reduceStats\'s result\'s ");\n',
    replace: '  await inChannelSlices(C, (c0, c1) => {\n',
    tests: ['test/sync-wide.test.ts'],
  },
  {
    name: 'rewrite-slices', breaks: "a synced backward rewrites the dx coefficients from the caller's answer in slices between turns",
    file: 'src/engine.ts', find: '  }, pause);\n}\n', replace: '  }, async () => { void pause; });\n}\n',
    tests: ['test/sync-wide.test.ts'],
  },
  {
    name: 'rewrite-check', breaks: "a synced backward checks the answer's sums whole in each slice of the rewrite (the caller may transfer them during the turns)",
    file: 'src/engine.ts', find: "    checkIntact(sumDyXhat, C, 'options.reduceGrads(...).sumDyXhat');\n",
    replace: '',
    tests: ['test/sync-wide.test.ts'],
  },
  {
    name: 'bytes-param-slices', breaks: "an 8-bit input's parameters over many channels are made in slices between turns",
    file: 'src/bytes.ts', find: "      if (++c === dims.C) c = 0;\n    }\n  }, pause);\n",
    replace: "      if (++c === dims.C) c = 0;\n    }\n  }, async () => { void pause; });\n",
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'bytes-param-check', breaks: "an 8-bit input's per-channel arrays are checked whole in each slice of its parameters (their owner may transfer one during a turn)",
    file: 'src/bytes.ts', find: '    for (const [array, name] of named) if (array !== null) checkIntact(array, dims.C, name);\n', replace: '    void named;\n',
    tests: ['test/channels.test.ts'],
  },
  {
    name: 'synced-variance', breaks: 'a synced forward normalizes with the merged variance, m2 over every shard\'s count',
    file: 'src/sync.ts', find: 'runningVarDivisor: count,', replace: 'runningVarDivisor: request.dims.N * request.dims.S,',
    tests: ['test/sync.test.ts', 'test/sync-wide.test.ts'],
  },
  {
    name: 'eps-backward-wasm', breaks: "the WebAssembly backward prep's invstd = 1 / sqrt(var + eps), two channels a step",
    file: 'workers/wasm/assembly/merge.ts', find: 'f64x2.div(one, f64x2.sqrt(f64x2.add(v, e)))', replace: 'f64x2.div(one, f64x2.sqrt(v))',
    tests: ['test/prep.test.ts', 'test/backward.test.ts'],
  },
  {
    name: 'eps-eval', breaks: "the WebAssembly eval prep's scale = weight / sqrt(var + eps), two channels a step",
    file: 'workers/wasm/assembly/merge.ts', find: 'f64x2.sqrt(f64x2.add(v128.load(arrayAt(channels, C, VAR, c)), e))',
    replace: 'f64x2.sqrt(v128.load(arrayAt(channels, C, VAR, c)))', tests: ['test/prep.test.ts', 'test/torch-vectors.test.ts'],
  },
  {
    name: 'eps-train-wasm', breaks: "the WebAssembly merge's scale = weight / sqrt(var + eps)",
    file: 'workers/wasm/assembly/merge.ts', find: 'Math.sqrt(variance + eps)', replace: 'Math.sqrt(variance)',
    tests: ['test/forward.test.ts'],
  },
  {
    name: 'eps-backward-js', breaks: "the TypeScript backward prep's invstd = 1 / sqrt(var + eps)",
    file: 'src/merge.ts', find: '1 / Math.sqrt(mem[variance + c] + eps)', replace: '1 / Math.sqrt(mem[variance + c] + eps * 0)',
    tests: ['test/prep.test.ts', 'test/backward.test.ts'],
  },
  {
    name: 'lanes-tail-bias', breaks: "channels in lanes: the scalar tail's channels get their bias",
    file: 'workers/wasm/assembly/normalize-lanes.ts', find: '* load<f32>(scA + o) + load<f32>(bA + o), floor));\n  }\n}',
    replace: '* load<f32>(scA + o), floor));\n  }\n}', tests: ['test/kernels-rows.test.ts', 'test/channels-last.test.ts'],
  },
  {
    name: 'bytes-rounding', breaks: "8-bit input, TypeScript kernel: each step rounded to float32, as the WebAssembly lanes",
    file: 'workers/kernels/js-bytes.ts', find: 'const v = round(round(round(bytes[i * C + c] - f32[p]) * f32[p + C]) + f32[p + 2 * C]);',
    replace: 'const v = round(round(bytes[i * C + c] - f32[p]) * f32[p + C] + f32[p + 2 * C]);', tests: ['test/bytes-kernels.test.ts', 'test/bytes.test.ts'],
  },
  {
    name: 'auto-kernel', breaks: "kernel 'auto' picks WebAssembly where SIMD validates",
    file: 'src/pool-options.ts', find: "const kernel: KernelName = requested !== 'js' && wasmSupported()",
    replace: "const kernel: KernelName = requested === 'wasm' && wasmSupported()", tests: ['test/lifecycle.test.ts'],
  },
  {
    name: 'relu-mask-js', breaks: "TypeScript kernel: a fused ReLU's backward zeroes dy where y <= 0 (y is 0 there)",
    file: 'workers/kernels/js.ts',
    find: '// A fused ReLU zeroes the gradient where its output is <= 0 (a NaN output passes it).\n        const g = maskByte !== 0 && v[ms + i] <= 0 ? 0 : v[gs + i];',
    replace: '// A fused ReLU zeroes the gradient where its output is <= 0 (a NaN output passes it).\n        const g = maskByte !== 0 && v[ms + i] < 0 ? 0 : v[gs + i];',
    tests: ['test/relu.test.ts'],
  },
  {
    name: 'group-bytes', breaks: "float32 sums' groups count from a call's start in 512 bytes, so the bits do not depend on the blocks a call holds",
    file: 'workers/wasm/assembly/stats.ts', find: 'export const GROUP_BYTES: usize = 512;', replace: 'export const GROUP_BYTES: usize = 1024;',
    tests: ['test/kernels-planes.test.ts'],
  },
  {
    name: 'mean-lo-merge', breaks: "the TypeScript merge keeps what rounding the mean left out (MEAN_LO)",
    file: 'src/merge.ts', find: 'let lo = lowPart(K, r, mean);', replace: 'let lo = 0 * lowPart(K, r, mean);',
    tests: ['test/channel-stats.test.ts'],
  },
  {
    name: 'running-var-check', breaks: 'the running update checks both buffers whole before it writes either',
    file: 'src/running.ts', find: "  checkIntact(runningVar, mean.length, 'the running variance');\n", replace: '',
    tests: ['test/memory-copies.test.ts'],
  },
  {
    name: 'count-before-update', breaks: 'num_batches_tracked moves only once the running update has succeeded',
    file: 'src/batch-norm.ts',
    find: '    const factor = newBatchWeight(this.#rules, momentum, tracked);\n',
    replace: '    const factor = newBatchWeight(this.#rules, momentum, tracked);\n    this.#numBatchesTracked = tracked;\n',
    tests: ['test/memory-copies.test.ts', 'test/fuzz.test.ts'],
  },
  {
    name: 'in-place-backward', breaks: 'backward refuses a forward that wrote its output over x',
    file: 'src/batch-norm.ts', find: 'out.buffer === x.buffer && out.byteOffset === x.byteOffset,',
    replace: 'out.buffer === x.buffer && out.byteOffset === x.byteOffset && false,', tests: ['test/backward.test.ts'],
  },
  {
    name: 'state-dict-order', breaks: 'loadStateDict checks everything before it copies anything',
    file: 'src/batch-norm.ts', find: '    const { arrays, numBatchesTracked } = checkStateDict(this, stateDict);\n',
    replace: "    if (this.affine && (stateDict.weight?.length === this.numFeatures)) this.weight!.set(stateDict.weight!);\n    const { arrays, numBatchesTracked } = checkStateDict(this, stateDict);\n",
    tests: ['test/errors.test.ts', 'test/errors-arguments.test.ts', 'test/fuzz.test.ts'],
  },
  {
    name: 'eps-at-call', breaks: 'a call uses the eps set at the time of the call, not when its turn comes',
    file: 'src/batch-norm.ts', find: "        eps, out, signal, relu: this.activation === 'relu',",
    replace: "        eps: this.#eps, out, signal, relu: this.activation === 'relu',", tests: ['test/running-stats.test.ts'],
  },
  {
    name: 'call-order', breaks: "a module's calls run in call order",
    file: 'src/call-queue.ts', find: '        await waitForTurn(turn, signal);\n', replace: '        void waitForTurn;\n        void signal;\n',
    tests: ['test/concurrency.test.ts', 'test/errors.test.ts', 'test/errors-arguments.test.ts'],
  },
  {
    name: 'hook-answer', breaks: "a synced backward checks its all-reduce's Σdy·x̂",
    file: 'src/sync.ts', find: "sumDyXhat: checkChannelValues(sums.sumDyXhat, 'options.reduceGrads(...).sumDyXhat', C),",
    replace: 'sumDyXhat: sums.sumDyXhat as ArrayLike<number>,', tests: ['test/sync.test.ts'],
  },
  {
    name: 'out-overlap', breaks: 'out must be x itself or not overlap it',
    file: 'src/validate.ts', find: 'if (overlaps(y, input) && y.byteOffset !== input.byteOffset)',
    replace: 'if (false && overlaps(y, input) && y.byteOffset !== input.byteOffset)', tests: ['test/errors.test.ts', 'test/errors-arguments.test.ts'],
  },
  {
    name: 'mean-lo-json', breaks: "ChannelStats.fromJSON keeps the means' low parts",
    file: 'src/channel-stats.ts', find: '    return adopt(count, mean, m2, meanLo ?? null);\n  }\n\n  /**\n   * This merged',
    replace: '    return adopt(count, mean, m2, null);\n  }\n\n  /**\n   * This merged', tests: ['test/channel-stats.test.ts'],
  },
  {
    name: 'safetensors-cover', breaks: "a .safetensors file's tensors cover its buffer with no gap or overlap",
    file: 'src/safetensors.ts', find: 'if (span.begin !== end) throw', replace: 'if (false && span.begin !== end) throw', tests: ['test/weights.test.ts'],
  },
  {
    name: 'cancel-flag', breaks: "a call's tasks poll its cancel flag between blocks and stop",
    file: 'workers/execute.ts', find: 'const flag = (): boolean => Atomics.load(i32, cancelIndex) !== 0;',
    replace: 'const flag = (): boolean => cancelIndex < 0;', tests: ['test/abort.test.ts'],
    // Only these: with the flag ignored, the tasks that wait at a prep for a stalled one wait
    // for the fault's 30 s and the tests about them time out (killed, but a minute later).
    only: 'a task that starts after the abort writes no element of the output',
  },
  {
    name: 'saved-results', breaks: "a module's forward writes its statistics where the saved forward does not read them",
    file: 'src/batch-norm.ts', find: 'this.#results.find((r) => r.mean !== saved)', replace: 'this.#results.find((r) => r.mean !== saved || true)',
    tests: ['test/memory-copies.test.ts'], only: 'fails at its commit',
  },
  {
    name: 'module-arrays', breaks: "a module's state methods check its arrays whole before changing any",
    file: 'src/batch-norm-checks.ts', find: "if (array !== null) checkIntact(array, m.numFeatures, name, '');",
    replace: "if (array !== null) checkIntact(array, 0, name, '');", tests: ['test/running-stats.test.ts'],
  },
  {
    name: 'freed-arrays', breaks: 'a call refuses an array that pool.free returned, even once its block is handed out again',
    file: 'src/memory.ts', find: 'return this.#live.get(view.byteOffset)?.serial === made ? made : 0;',
    replace: 'return this.#live.get(view.byteOffset)?.serial ?? 0;', tests: ['test/memory.test.ts'],
  },
  {
    name: 'detached-length', breaks: 'a detached typed array is told by its buffer (a Node 20 V8 fault)',
    file: 'src/validate.ts', find: 'return ArrayBuffer.isView(array) && array.buffer.byteLength === 0 ? 0 : array.length;',
    replace: 'return array.length;', tests: ['test/validate.test.ts'],
  },
  {
    name: 'split-rows-items', breaks: "a split's normalization over whole rows claims the rows, not the statistics pass's blocks",
    file: 'workers/execute.ts', find: 'this.#items = own?.items ?? task.items;',
    replace: 'this.#items = task.items;', tests: ['test/wide.test.ts', 'test/claims.test.ts'],
  },
  {
    name: 'cover-memory', breaks: "a worker makes its view of the memory as long as its task was posted with (V8 can leave a starting worker's short)",
    file: 'workers/worker.ts', find: 'coverMemory(memory, task.memoryBytes);', replace: 'coverMemory(memory, 0);', tests: ['test/memory-growth.test.ts'],
  },
  {
    name: 'grain-ignored', breaks: 'a call runs on at most one thread per grainSize elements of input',
    file: 'src/pool-internals.ts', find: 'return elements <= ctx.inlineThreshold ? 1 : workerThreads(ctx, elements);', replace: 'return elements <= ctx.inlineThreshold ? 1 : ctx.threads;', tests: ['test/grain-size.test.ts'],
  },
  {
    name: 'count-required', breaks: 'a state dict or file without num_batches_tracked loads, the module keeping its count (as PyTorch)',
    file: 'src/state-dict.ts', find: "return expected.filter((key) => key !== 'num_batches_tracked' && !has(key));", replace: 'return expected.filter((key) => !has(key));', tests: ['test/weights.test.ts'],
  },
  {
    name: 'count-zeroed', breaks: 'a state dict without num_batches_tracked keeps the module\'s count (not 0, as older PyTorch versions set it)',
    file: 'src/state-dict.ts', find: "numBatchesTracked: m.trackRunningStats && 'num_batches_tracked' in sd ? checkCount(sd.num_batches_tracked) : null };", replace: "numBatchesTracked: m.trackRunningStats ? ('num_batches_tracked' in sd ? checkCount(sd.num_batches_tracked) : 0) : null };", tests: ['test/weights.test.ts'],
  },
  {
    name: 'modules-half-loaded', breaks: 'loadSafetensors(path, modules) checks every module before any loads (one that does not fit changes none)',
    file: 'src/tensor-states.ts', find: '      checkStateDict(m, sd);\n', replace: '      void [m, sd, checkStateDict];\n', tests: ['test/weights.test.ts'],
  },
  {
    name: 'onnx-raw-offset', breaks: "an ONNX tensor's raw_data is read where it stands in the file (its view's offset)",
    file: 'src/onnx.ts', find: 'const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);', replace: 'const view = new DataView(raw.buffer);', tests: ['test/onnx-file.test.ts'],
  },
  {
    name: 'onnx-constant-nodes-ignored', breaks: "a BatchNormalization's state may come from Constant nodes, not only initializers",
    file: 'src/onnx.ts', find: 'if (t !== null && output !== undefined) constants.set(', replace: 'if (t !== null && output !== undefined && index < 0) constants.set(', tests: ['test/onnx-file.test.ts'],
  },
  {
    name: 'onnx-external-escapes', breaks: "an ONNX tensor's external data stays inside the model's folder",
    file: 'src/onnx.ts', find: "if (isAbsolute(relative) || relative === '..' || relative.startsWith(`..${sep}`)) {", replace: 'if (isAbsolute(relative) || sep.length === 0) {', tests: ['test/onnx-file.test.ts'],
  },
  {
    name: 'onnx-mode-ignored', breaks: "a module from an ONNX node takes its mode (eval where training_mode is 0)",
    file: 'src/batch-norm.ts', find: 'return found.trainingMode ? bn : bn.eval();', replace: 'return bn;', tests: ['test/onnx-file.test.ts'],
  },
  {
    name: 'onnx-value-floats-ignored', breaks: "a Constant node's value_floats are a BatchNormalization's state too",
    file: 'src/onnx.ts', find: "const floats = attributes.get('value_floats');", replace: "const floats = attributes.get('value_floats!');", tests: ['test/onnx-file.test.ts'],
  },
  {
    name: 'torch-stride-ignored', breaks: "a torch.save tensor's values are read by its stride (a strided view of a storage)",
    file: 'src/torch-file.ts', find: 'for (let d = 0; d < index.length; d++) element += index[d] * t.stride[d];',
    replace: 'for (let d = 0; d < index.length; d++) element += index[d] * (d === index.length - 1 ? 1 : t.stride[d]);', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-view-offset-ignored', breaks: "a legacy torch.save storage view starts where its view_metadata says in its root storage",
    file: 'src/torch-file.ts', find: 'const first = t.storage.viewOffset + t.offset;', replace: 'const first = t.offset;', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-byteorder-ignored', breaks: "a torch.save archive whose byteorder record says 'big' has big-endian storages",
    file: 'src/torch-file.ts', find: "littleEndian = text === 'little';", replace: 'littleEndian = text.length > 0;', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-non-persistent-kept', breaks: "a pickled nn.Module's non-persistent buffers are not in its state dict",
    file: 'src/torch-file.ts', find: 'const nonPersistent = new Set(skipped instanceof PySet ? skipped.items : []);',
    replace: 'const nonPersistent = new Set<unknown>(skipped instanceof PySet ? [] : []);', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-script-state-all', breaks: "a TorchScript module's state is the attributes its code lists as parameters and buffers, not every tensor attribute",
    file: 'src/torch-file.ts', find: '(script.state.has(k) || isScriptObject(v))', replace: '(script.module || isScriptObject(v))', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-script-any-class-a-module', breaks: "a TorchScript object of a class that is not a Module holds no state",
    file: 'src/torch-script.ts', find: "module: header[2] === 'Module',", replace: "module: header[2] !== '',", tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-script-call-eps-first', breaks: "a scripted module's Final eps is its eps, before any batch_norm call's",
    file: 'src/torch-script.ts', find: "const eps = c.finals.get('eps') ?? (c.calls > 0",
    replace: "const eps = (c.callEps.size === 1 ? [...c.callEps][0] : undefined) ?? c.finals.get('eps') ?? (c.calls > 0", tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-script-eps-not-literal', breaks: "a traced module whose batch_norm call passes an eps that is not a literal has no eps read",
    file: 'src/torch-script.ts', find: 'c.calls > 0 && c.readCalls === c.calls && c.callEps.size === 1', replace: 'c.calls > 0 && c.callEps.size === 1',
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-script-code-unbounded', breaks: 'a TorchScript code record past MAX_CODE is a FormatError, before it is read',
    file: 'src/torch-script.ts', find: 'if (entry.size > MAX_CODE) throw', replace: 'if (entry.size > 2 * MAX_CODE) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'pickle-additems-dropped', breaks: "a pickle's ADDITEMS adds its items to the set (protocol 4's non-persistent buffer set)",
    file: 'src/pickle.ts', find: '        pushAll(set.items, items);\n', replace: '        void items;\n', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'pickle-large-int-refused', breaks: 'an integer too long to decode is kept as its length, not refused: a checkpoint may hold one',
    file: 'src/pickle.ts', find: 'return bytes.length > MAX_LONG_BYTES ? new PyLargeInt(bytes.length) : decodeLong(bytes);',
    replace: "if (bytes.length > MAX_LONG_BYTES) throw new FormatError(`a ${bytes.length}-byte integer`);\n  return bytes.length < 0 ? new PyLargeInt(0) : decodeLong(bytes);",
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'zip-duplicate-names', breaks: 'a ZIP archive with two entries of one name is refused (which one a reader takes would decide what it reads)',
    file: 'src/zip.ts', find: 'if (entries.has(name)) throw new FormatError', replace: 'if (entries.has(name) && name === "") throw new FormatError', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'zip-encrypted-read', breaks: 'an encrypted ZIP entry is refused, not read as if it were plain',
    file: 'src/zip.ts', find: 'if (flags & 1) throw', replace: 'if (flags & 0x10000) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'onnx-external-length-unchecked', breaks: "an ONNX tensor's external_data length must be its values' size",
    file: 'src/onnx.ts', find: 'if (length !== expected) throw new FormatError', replace: 'if (length !== expected && length < 0) throw new FormatError', tests: ['test/onnx-file.test.ts'],
  },
  {
    name: 'torch-legacy-module-id-dropped', breaks: "a legacy pickled model's module classes come by persistent id ('module', class, file, source), not refused as storages",
    file: 'src/torch-file.ts', find: "if (Array.isArray(pid) && pid[0] === 'module') return pid[1];", replace: "if (Array.isArray(pid) && pid[0] === 'modules') return pid[1];",
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-legacy-count-unchecked', breaks: "a legacy storage's count in the file must be its pickle's",
    file: 'src/torch-file.ts', find: 'if (count !== BigInt(root.numel)) throw', replace: 'if (count < 0n) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-find-settings-dropped', breaks: "findInTorchFile's entries carry what a pickled or TorchScript module says of its eps, momentum and mode",
    file: 'src/torch-weights.ts', find: '({ ...found, ...file.modules.get(found.prefix) })', replace: '({ ...found, ...(file.modules.size < 0 ? {} : {}) })',
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-big-record-whole', breaks: 'a storage record past 2 GiB - 1 is read only where a tensor lies, not refused for its size',
    file: 'src/torch-file.ts', find: 'return entry.size > MAX_ENTRY ? (from, length)', replace: 'return entry.size > 2 * MAX_ENTRY ? (from, length)',
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-span-unbounded', breaks: 'a tensor spanning more than 2 GiB - 1 bytes of its storage is a FormatError, not a read of that much',
    file: 'src/torch-file.ts', find: 'if (span > MAX_ENTRY) throw', replace: 'if (span > 2 * MAX_ENTRY) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-module-names', breaks: "a pickled nn.Module's _parameters, _buffers and _modules add no name of their own, as state_dict() names them",
    file: 'src/torch-file.ts', find: "walk(attributes.entries.get('_modules'), name);", replace: "walk(attributes.entries.get('_modules'), join(name, '_modules'));",
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-module-attributes', breaks: "a pickled nn.Module's state is its parameters, persistent buffers and submodules', not its other attributes",
    file: 'src/torch-file.ts', find: "if (!(attributes.entries.get('_parameters') instanceof PyDict)) {", replace: 'if (attributes.entries.size >= 0) {',
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-extent-unchecked', breaks: "a torch.save tensor that reaches past its storage is a FormatError",
    file: 'src/torch-file.ts', find: 'if (last >= ref.numel) throw', replace: 'if (last >= ref.numel && last < 0) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-record-unchecked', breaks: "a torch.save storage whose record is shorter than its elements is a FormatError",
    file: 'src/torch-file.ts', find: 'if (entry.size < ref.numel * ref.itemBytes) {', replace: 'if (entry.size < 0) {', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-depth-unbounded', breaks: "a pickle nested deeper than 1000 containers is a FormatError (not the call stack's RangeError)",
    file: 'src/torch-file.ts', find: 'if (path.size > MAX_DEPTH) throw', replace: 'if (path.size > MAX_DEPTH * 1000) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-names-twice', breaks: "two tensors of a torch.save file under one name (a dotted key and a nested dict) are a FormatError, not one chosen",
    file: 'src/torch-file.ts', find: 'if (names.has(name)) throw', replace: 'if (names.has(name) && name === null) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-wrap-unbounded', breaks: "a tensor wrapped in more than 8 parameters or subclasses is a FormatError (not the call stack's RangeError)",
    file: 'src/torch-file.ts', find: 'if (depth > 8) throw', replace: 'if (depth > 8e6) throw', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'pickle-appends-spread', breaks: "a pickle's APPENDS of more items than a call takes as arguments reads (no RangeError)",
    file: 'src/pickle.ts', find: 'if (Array.isArray(target) && !Object.isFrozen(target)) pushAll(target, items);',
    replace: 'if (Array.isArray(target) && !Object.isFrozen(target)) target.push(...items);', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-settings-ignored', breaks: "BatchNorm.fromTorchFile takes a pickled BatchNorm's eps and momentum (None as null)",
    file: 'src/batch-norm.ts', find: '...(momentum !== undefined && torchMomentum ? { momentum } : {})', replace: '...(momentum !== undefined && torchMomentum && momentum !== null ? { momentum } : {})',
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-mode-ignored', breaks: "BatchNorm.fromTorchFile gives a pickled BatchNorm's mode (eval where it was)",
    file: 'src/batch-norm.ts', find: 'return training === false ? bn.eval() : bn;', replace: 'return training === null ? bn.eval() : bn;', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'torch-momentum-convention', breaks: "BatchNorm.fromTorchFile gives a module of another convention that convention's momentum, not PyTorch's pickled one",
    file: 'src/batch-norm.ts', find: "const torchMomentum = (moduleOptions.convention ?? 'torch') === 'torch';", replace: 'const torchMomentum = Boolean(moduleOptions);',
    tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'zip-crc-unchecked', breaks: "a ZIP entry whose bytes do not match its CRC-32 is a FormatError",
    file: 'src/zip.ts', find: 'if (crc32(bytes) !== entry.crc32)', replace: 'if (crc32(bytes) !== entry.crc32 && entry.size < 0)', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'zip64-ignored', breaks: "a ZIP archive's ZIP64 end records are read where its end record defers to them",
    file: 'src/zip.ts', find: 'if (count === U16_MAX || directorySize === U32_MAX || directoryOffset === U32_MAX) {',
    replace: 'if (count === U16_MAX && directorySize < 0) {', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'pickle-mark-stack', breaks: "a pickle's TUPLE after a MARK is pushed on the stack the MARK saved",
    file: 'src/pickle.ts', find: "case 0x74: { const items = popMark('TUPLE'); stack.push(Object.freeze(items)); break; }",
    replace: "case 0x74: stack.push(Object.freeze(popMark('TUPLE'))); break;", tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'pickler-no-shared', breaks: "a string CPython shares ('storage', 'cpu', 'version') is fetched from the memo after its first time",
    file: 'src/pickler.ts', find: 'if (shared && this.fetch(`str ${text}`)) return;', replace: "if (shared && text === '' && this.fetch(`str ${text}`)) return;",
    tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'pickler-binput-wide', breaks: 'a memo index past 255 is put by LONG_BINPUT',
    file: 'src/pickler.ts', find: '    const index = this.memoSize++;\n    if (index < 256) {', replace: '    const index = this.memoSize++;\n    if (index < 512) {',
    tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'pickler-batch', breaks: "a dict's items go in SETITEMS batches of 1000, as CPython's pickler writes them",
    file: 'src/pickler.ts', find: 'export const BATCH_SIZE = 1000;', replace: 'export const BATCH_SIZE = 2000;', tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'torch-save-key-shared', breaks: "a storage key, str(n), is a new string object every time (never fetched from the memo)",
    file: 'src/torch-save.ts', find: 'w.str(key, false);', replace: 'w.str(key, isShared(key));', tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'torch-save-metadata-name', breaks: "_metadata names a module by its prefix without the dot",
    file: 'src/weights.ts', find: "prefix.endsWith('.') ? [prefix.slice(0, -1)] : []", replace: "prefix.endsWith('.') ? [prefix] : []", tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'torch-save-folder', breaks: "the archive's folder is the file's name without its extension",
    file: 'src/torch-save.ts', find: "return stem === '' ? 'archive' : stem;", replace: "return stem === '' || stem !== '' ? 'archive' : stem;", tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'torch-save-count-double', breaks: 'num_batches_tracked is stored as an int64, a LongStorage',
    file: 'src/torch-save.ts', find: 'F32: \'FloatStorage\', F64: \'DoubleStorage\', I64: \'LongStorage\',', replace: 'F32: \'FloatStorage\', F64: \'DoubleStorage\', I64: \'DoubleStorage\',', tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'zip-write-unaligned', breaks: "each record's data starts on a 64-byte boundary of the file",
    file: 'src/zip.ts', find: 'pads.push((RECORD_ALIGNMENT - (start % RECORD_ALIGNMENT)) % RECORD_ALIGNMENT);', replace: 'pads.push(0 * RECORD_ALIGNMENT);',
    tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'zip-write-offset', breaks: "the central directory gives each record's local header offset",
    file: 'src/zip.ts', find: 'view.setUint32(p + 42, at[i], true);', replace: 'view.setUint32(p + 42, at[0], true);', tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'prefix-lone-surrogate', breaks: 'a prefix with a lone surrogate (no UTF-8, which .safetensors names are in) is an ArgumentError to save as .safetensors',
    file: 'src/weights.ts', find: "if (use === 'utf-8' && holdsLoneSurrogate(value)) {", replace: "if (use === 'utf-8' && holdsLoneSurrogate(value) && name === '') {", tests: ['test/torch-save.test.ts'],
  },
  {
    name: 'torch-names-surrogatepass', breaks: 'a torch file takes a prefix with a lone surrogate: its pickle writes names "surrogatepass"',
    file: 'src/weights.ts', find: "{ encode: modulesToTorchFile, names: 'surrogatepass' }", replace: "{ encode: modulesToTorchFile, names: 'utf-8' }",
    tests: ['test/torch-save.test.ts'], only: 'surrogatepass',
  },
  {
    name: 'pickle-str-surrogatepass', breaks: 'the pickle writer writes a str as CPython\'s save_str: a lone surrogate as its three bytes, not U+FFFD\'s',
    file: 'src/pickler.ts', find: 'const encoded = encodeSurrogatePass(text);', replace: 'void encodeSurrogatePass; const encoded = utf8.encode(text);',
    tests: ['test/torch-save.test.ts'], only: 'surrogatepass',
  },
  {
    name: 'prefix-order-utf16', breaks: "a file's BatchNorms are listed by code point, as Python's sorted() lists them",
    file: 'src/tensor-states.ts', find: 'found.sort((a, b) => compareCodePoints(a.prefix, b.prefix))', replace: 'found.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : compareCodePoints(a.prefix, b.prefix)))',
    tests: ['test/torch-file.test.ts'], only: "lists each file's BatchNorms by prefix",
  },
  {
    name: 'safetensors-order-utf16', breaks: "safetensors names are laid out by their UTF-8 bytes, as the reference serializer lays them",
    file: 'src/safetensors.ts', find: 'DTYPE_RANK[ta.dtype] || compareCodePoints(a, b)', replace: 'DTYPE_RANK[ta.dtype] || (a < b ? -1 : a > b ? 1 : compareCodePoints(a, b))',
    tests: ['test/weights.test.ts'], only: 'lays tensors out as the reference serializer does',
  },
  {
    name: 'code-points-pair-split', breaks: 'a pair in one string against its leading surrogate alone in the other compares by the code points there',
    file: 'src/utf8.ts', find: 'if (before !== 0) return before;', replace: 'if (before !== 0 && i < 0) return before;',
    tests: ['test/utf8.test.ts'],
  },
  {
    name: 'path-url-scheme', breaks: "a URL that is not a file: URL of this machine is an ArgumentError, not fs's TypeError",
    file: 'src/files.ts', find: '      path = fileURLToPath(value);', replace: '      path = value.protocol === "file:" ? fileURLToPath(value) : value.href;',
    tests: ['test/torch-save.test.ts'], only: 'paths',
  },
  {
    name: 'path-nul', breaks: "a path holding a NUL character is an ArgumentError, not fs's TypeError",
    file: 'src/files.ts', find: "if (value.includes('\\0')) throw", replace: "if (value.includes('\\0') && value === '') throw", tests: ['test/torch-save.test.ts'], only: 'paths',
  },
  {
    name: 'find-torch-sync', breaks: 'BatchNorm.findInTorchFile rejects its promise on a bad path (it threw before returning one)',
    file: 'src/torch-weights.ts', find: 'export async function findBatchNormsInTorchFile(', replace: 'export function findBatchNormsInTorchFile(',
    tests: ['test/torch-save.test.ts'], only: 'paths',
  },
  {
    name: 'stateless-load-refused', breaks: 'a module without state (affine and trackRunningStats false) loads from a file, under any prefix, the nothing it takes',
    file: 'src/tensor-states.ts', find: 'if (prefix !== \'\' && chosen.length === 0 && expected.length > 0) {', replace: 'if (prefix !== \'\' && chosen.length === 0) {',
    tests: ['test/torch-save.test.ts'], only: 'random modules',
  },
  {
    name: 'auto-grain-linear', breaks: "grainSize 'auto' gives a call ceil(sqrt(n / AUTO_GRAIN)) threads (not one per 512 Ki elements, the default before)",
    file: 'src/pool-internals.ts', find: 'Math.ceil(Math.sqrt(elements / AUTO_GRAIN))', replace: 'Math.ceil(elements / (8 * AUTO_GRAIN))', tests: ['test/grain-size.test.ts'],
  },
  {
    name: 'spin-by-pool', breaks: "a call's tasks spin at their waits only where the call leaves a core free (not the pool)",
    file: 'src/dispatch.ts', find: 'const spinMs = hasSpareCore(call.ctx, call.threads) ? SPIN_MS : 0;', replace: 'const spinMs = hasSpareCore(call.ctx, call.ctx.threads) ? SPIN_MS : 0;', tests: ['test/spare-core.test.ts'],
  },
  {
    name: 'spin-always', breaks: 'tasks do not spin where the call has a task on every core (they took the cores the calling thread needed)',
    file: 'src/dispatch.ts', find: 'const spinMs = hasSpareCore(call.ctx, call.threads) ? SPIN_MS : 0;', replace: 'const spinMs = SPIN_MS;', tests: ['test/spare-core.test.ts'],
  },
  {
    name: 'spare-core-alone', breaks: "a call counts the workers other calls in flight hold, not only its own tasks, before it spins or overlaps its copies",
    file: 'src/dispatch.ts', find: 'return ctx.load.busyWith(threads) < CORES;', replace: 'return threads < CORES || ctx === null;', tests: ['test/spare-core.test.ts'],
  },
  {
    name: 'load-uncapped', breaks: "a pool's tasks in flight count as busy workers up to its threads only (piscina queues the rest)",
    file: 'src/pool-internals.ts', find: 'return Math.min(this.#inFlight + more, this.#threads);', replace: 'return this.#inFlight + more + 0 * this.#threads;', tests: ['test/spare-core.test.ts'],
  },
  {
    name: 'load-settled-twice', breaks: 'a task counted settled twice frees one worker',
    file: 'src/pool-internals.ts', find: 'if (settled) return;', replace: 'if (settled !== settled) return;', tests: ['test/spare-core.test.ts'],
  },
  {
    name: 'load-never-settled', breaks: "a pool's settled tasks no longer count among the busy workers",
    file: 'src/pool.ts', find: '.finally(settled);', replace: '.finally(() => {});', tests: ['test/spare-core.test.ts'],
  },
  {
    name: 'load-not-counted', breaks: "a pool's tasks count among the busy workers while they are in flight",
    file: 'src/pool.ts', find: '      return (this.#piscina!.run(posted) as Promise<TaskResult>).finally(settled);', replace: '      settled();\n      return this.#piscina!.run(posted) as Promise<TaskResult>;', tests: ['test/spare-core.test.ts'],
  },
  {
    name: 'floor-grain-ignored', breaks: "the floor runs on as many threads as a call of its length (the benchmark's 'same threads')",
    file: 'src/floor.ts', find: 'const parts = workerThreads(ctx, x.length);', replace: 'const parts = workerThreads({ ...ctx, grainSize: 1 }, x.length);', tests: ['test/grain-size.test.ts'],
  },
  {
    name: 'span-size-unchecked', breaks: "every tensor of a .safetensors header spans its shape's bytes, those not read too",
    file: 'src/safetensors.ts', find: '    if ((end - begin) * 8 !== total) {', replace: '    if ((end - begin) * 8 !== total && begin < 0) {',
    tests: ['test/weights.test.ts'],
  },
  {
    name: 'reads-whole-file', breaks: "loadSafetensors reads a file's header and the module's own tensors only",
    file: 'src/weights.ts', find: '(e) => readBytes(handle, base + e.begin, e.end - e.begin, `tensor ${JSON.stringify(e.name)}`)',
    replace: "async (e) => (await readBytes(handle, 0, (await handle.stat()).size, 'all')).subarray(base + e.begin, base + e.end)", tests: ['test/weights.test.ts'],
    only: 'reading the header and its own tensors only',
  },
  {
    name: 'found-without-mean', breaks: "findInSafetensors finds a module by its running mean and variance, of one length",
    file: 'src/tensor-states.ts', find: "if (C === null || C === 0 || vector(`${prefix}running_mean`) !== C) continue;", replace: 'if (C === null || C === 0) continue;',
    tests: ['test/weights.test.ts'], only: 'findInSafetensors',
  },
  {
    name: 'abort-listener-kept', breaks: "a call removes its listener from the caller's signal once it settles",
    file: 'src/engine.ts', find: '    stopWatching();\n    held.release();', replace: '    void stopWatching;\n    held.release();',
    tests: ['test/abort.test.ts'], only: 'shared by many',
  },
  {
    name: 'turn-listener-kept', breaks: "a queued call removes its listener from the caller's signal once its turn comes",
    file: 'src/abort.ts', find: '      stopWatching();\n      resolve();', replace: '      void stopWatching;\n      resolve();',
    tests: ['test/abort.test.ts'], only: 'shared by many',
  },
  {
    name: 'listener-per-call', breaks: 'the calls sharing a signal share one listener on it (Node 20 warns at eleven)',
    file: 'src/abort.ts', find: '  let entry = watched.get(signal);', replace: '  let entry: SignalCallbacks | undefined;',
    tests: ['test/abort.test.ts'], only: 'shared by many',
  },
  {
    name: 'shared-listener-kept', breaks: "the shared listener leaves the caller's signal once its last call settles",
    file: 'src/abort.ts', find: "    signal.removeEventListener('abort', listener);\n", replace: '    void listener;\n',
    tests: ['test/abort.test.ts'], only: 'shared by many',
  },
  {
    name: 'abort-first-callback', breaks: "a shared signal's abort reaches every call on it",
    file: 'src/abort.ts', find: 'for (const c of [...callbacks]) {', replace: 'for (const c of [...callbacks].slice(0, 1)) {',
    tests: ['test/abort.test.ts'], only: 'one abort of a signal shared',
  },
  {
    name: 'abort-removed-runs', breaks: 'a callback removed from a signal before its abort does not run',
    file: 'src/abort.ts', find: 'if (!callbacks.delete(own) || callbacks.size > 0) return;', replace: 'if (callbacks.size > 1) return;',
    tests: ['test/abort.test.ts'], only: 'onAbort runs each callback',
  },
  {
    name: 'copy-out-budget-reset', breaks: "the calling thread's copies out share the call's budget of COPY_SLICE_BYTES between turns",
    file: 'src/placement.ts', find: "  await copyBox(req, p.box, p.copyOutOnMain!", replace: "  budget.left = COPY_SLICE_BYTES;\n  await copyBox(req, p.box, p.copyOutOnMain!",
    tests: ['test/memory-copies.test.ts'], only: 'from one staging chunk',
  },
  {
    name: 'bytes-budget-per-chunk', breaks: "an 8-bit call's chunks share the call's budget of COPY_SLICE_BYTES between turns",
    file: 'src/bytes.ts', find: '    const len = Math.min(chunk, n - first);\n', replace: '    const len = Math.min(chunk, n - first);\n    budget.left = COPY_SLICE_BYTES;\n',
    tests: ['test/memory-copies.test.ts'], only: '8-bit input staged in chunks',
  },
  {
    name: 'piped-chunk-fixed', breaks: "a pipelined chunk holds at least the grid's smallest box",
    file: 'src/placement.ts', find: 'Math.max(PIPELINE_CHUNK_ELEMENTS, smallestBox(grid))', replace: 'PIPELINE_CHUNK_ELEMENTS',
    tests: ['test/pipelined.test.ts'], only: 'smallest box',
  },
  {
    name: 'piped-without-room', breaks: 'a call pipelines only where two chunks fit the pool',
    file: 'src/placement.ts', find: ' && pipedChunk * bpe <= roomFor(2);', replace: ';',
    tests: ['test/pipelined.test.ts'], only: 'smallest box',
  },
  {
    name: 'refusal-names-x', breaks: 'a refusal names the output, not x, where x is on the pool and only its output is staged',
    file: 'src/placement.ts', find: "!xOnPool ? 'x' : dy === null ? 'the output' : 'dx',", replace: "!xOnPool ? 'x' : 'x',",
    tests: ['test/faults.test.ts'], only: 'output off the pool',
  },
  {
    name: 'staging-dy-over-x', breaks: "a staged dy has its own part of the chunk, after x's",
    file: 'src/placement.ts', find: '  let next = staging + (xChunk ? chunkBytes : 0);', replace: '  let next = staging;',
    tests: ['test/backward.test.ts'],
  },
  {
    name: 'staging-dy-past-chunk', breaks: "a staged dy starts the chunk where x is not staged (it would lie past the staging it was given)",
    file: 'src/placement.ts', find: '  let next = staging + (xChunk ? chunkBytes : 0);', replace: '  let next = staging + chunkBytes;',
    tests: ['test/memory-bounds.test.ts'], only: 'dy alone staged',
  },
  {
    name: 'staging-chunk-short', breaks: 'a staging chunk holds every staged array whole (its block 64 bytes short)',
    file: 'src/placement.ts', find: "allocOrThrow(ctx, chunkBytes * staged * buffers, 'a staging chunk')", replace: "allocOrThrow(ctx, chunkBytes * staged * buffers - 64, 'a staging chunk')",
    tests: ['test/memory-bounds.test.ts'],
  },
  {
    name: 'bytes-output-chunk-short', breaks: "an 8-bit call's staged output holds its chunk's float32 values (its block 64 bytes short)",
    file: 'src/bytes.ts', find: "allocOrThrow(ctx, 4 * chunk, `the float32 output of ${chunk} elements`)", replace: "allocOrThrow(ctx, 4 * chunk - 64, `the float32 output of ${chunk} elements`)",
    tests: ['test/memory-bounds.test.ts'], only: '8-bit',
  },
  {
    name: 'row-scratch-halved', breaks: "a task's row scratch holds the pattern kernels' 60 lane positions (its 2048-byte allowance halved)",
    file: 'workers/kernels/kernel.ts', find: '  return 32 * C + 2048;', replace: '  return 32 * C + 1024;',
    tests: ['test/kernels-rows.test.ts'], only: 'row scratch',
  },
  {
    name: 'scratch-area-short', breaks: "a call's scratch area holds every task's row scratch (1024 bytes short, the last task's end)",
    file: 'src/engine.ts', find: "allocOrThrow(ctx, scratchBytes + threads * accBytes, 'its scratch area')", replace: "allocOrThrow(ctx, scratchBytes + threads * accBytes - 1024, 'its scratch area')",
    tests: ['test/memory-bounds.test.ts'], only: '15 interleaved',
  },
  {
    name: 'dx-beside-dy', breaks: "a backward with x on the pool and dy and dx off it writes dx over dy's staged copy, one chunk",
    file: 'src/placement.ts', find: '  const dxOverDy = dy !== null && xOnPool && !dyOnPool && dest !== null;', replace: '  const dxOverDy = false;',
    tests: ['test/faults.test.ts'], only: 'output off the pool',
  },
  {
    name: 'dx-over-dy-chunk-kept', breaks: "dx written over dy's staged copy leaves out the chunk it had of its own",
    file: 'src/placement.ts', find: '  const xChunk = (!xOnPool || dest !== null) && !dxOverDy;', replace: '  const xChunk = !xOnPool || dest !== null;',
    tests: ['test/faults.test.ts'], only: 'output off the pool',
  },
  {
    name: 'staging-mask-over-dy', breaks: "a staged ReLU mask has its own part of the chunk, after dy's",
    file: 'src/placement.ts', find: '  if (!dyOnPool) next += chunkBytes;\n', replace: '',
    tests: ['test/relu.test.ts'],
  },
  {
    name: 'backward-aborted-runs', breaks: 'a backward whose signal fired before the call is refused at once, pinning nothing',
    file: 'src/batch-norm.ts', find: '    throwIfAbortedBeforeStart(signal);\n    const atCall = this.#saved;', replace: '    const atCall = this.#saved;',
    tests: ['test/abort.test.ts'], only: 'every entry point refuses',
  },
  {
    name: 'stats-aborted-runs', breaks: 'ChannelStats.fromBatch with a signal fired before the call is refused at once, pinning nothing',
    file: 'src/channel-stats.ts', find: '    throwIfAbortedBeforeStart(signal);\n    const unpin = pinArrays([x]);', replace: '    const unpin = pinArrays([x]);\n    throwIfAbortedBeforeStart(null);',
    tests: ['test/abort.test.ts'], only: 'every entry point refuses',
  },
  {
    name: 'dispose-without-waiting', breaks: '`await using` closes the pool once the calls made in its block have settled',
    file: 'src/pool.ts', find: '    return this.close();', replace: '    void this.close();\n    return Promise.resolve();',
    tests: ['test/lifecycle.test.ts'], only: 'await using',
  },
  {
    name: 'empty-running-update', breaks: 'an empty batch leaves the running statistics as they were (the torch convention)',
    file: 'src/batch-norm.ts', find: 'if (count === 0 && this.#rules.emptyBatchKeeps) {', replace: 'if (count === 0 && this.#rules.emptyBatchKeeps && false) {',
    tests: ['test/empty.test.ts'],
  },
  {
    name: 'empty-running-nan', breaks: "an empty batch's NaN statistics reach the running ones under the onnx and keras conventions, as in onnxruntime and Keras",
    file: 'src/batch-norm.ts', find: 'if (count === 0 && this.#rules.emptyBatchKeeps) {', replace: 'if (count === 0) {',
    tests: ['test/empty.test.ts', 'test/conventions.test.ts'],
  },
  {
    name: 'empty-functional-update', breaks: "the functional form's empty batch leaves the running statistics as they were, as F.batch_norm",
    file: 'src/functional.ts', find: 'if (training && runningMean !== null && count > 0) {', replace: 'if (training && runningMean !== null) {',
    tests: ['test/empty.test.ts'],
  },
  {
    name: 'single-value-convention', breaks: 'the onnx and keras conventions normalize a batch of one value per channel, as onnxruntime and Keras',
    file: 'src/batch-norm.ts', find: '&& reduceStats === undefined && moreThanOne) checkMoreThanOneValue(dims);', replace: '&& reduceStats === undefined) checkMoreThanOneValue(dims);',
    tests: ['test/conventions.test.ts'],
  },
  {
    name: 'single-value-synced-convention', breaks: 'a synced onnx batch of one value per channel over every shard is normalized',
    file: 'src/sync.ts', find: 'if (moreThanOne && first !== 0 && !(first > 1)) {', replace: 'if ((moreThanOne || true) && first !== 0 && !(first > 1)) {',
    tests: ['test/conventions.test.ts'],
  },
  {
    name: 'single-value-torch', breaks: 'the torch convention refuses a batch of one value per channel, as PyTorch',
    file: 'src/conventions.ts', find: 'unbiased: true, moreThanOneValue: true,', replace: 'unbiased: true, moreThanOneValue: false,',
    tests: ['test/errors.test.ts', 'test/conventions.test.ts'],
  },
  {
    name: 'empty-shard-silent', breaks: "a synced backward's empty shard still sends its sums (0) through the all-reduce",
    file: 'src/engine.ts', find: '      await untilAborted(bwd.reduce({ sumDy: new Float64Array(C), sumDyXhat: new Float64Array(C) }), req.signal);\n',
    replace: '', tests: ['test/empty.test.ts'], only: 'synced',
  },
  {
    name: 'empty-stats-nan', breaks: 'the statistics of an empty batch are count 0, mean 0 and m2 0',
    file: 'src/engine.ts', find: 'return { y, mean: new Float64Array(C), var: new Float64Array(C), meanLo',
    replace: 'return { y, mean: new Float64Array(C).fill(NaN), var: new Float64Array(C), meanLo', tests: ['test/empty.test.ts'],
  },
  {
    name: 'empty-batch-stats', breaks: 'a training forward of an empty batch gives NaN statistics',
    file: 'src/engine.ts', find: "'options.meanOut', NaN, pause)", replace: "'options.meanOut', 0, pause)", tests: ['test/empty.test.ts'],
  },
  {
    name: 'empty-grads-zero', breaks: "an empty batch's dWeight and dBias are 0 (sums over no values)",
    file: 'src/engine.ts', find: 'if (into == null && value === 0) return new Ctor(C);', replace: 'if (into == null && value === 0) return new Ctor(C).fill(1);',
    tests: ['test/empty.test.ts'],
  },
  {
    name: 'synced-count-own', breaks: "a synced forward's merged count holds at least the shard's own values",
    file: 'src/sync.ts', find: 'if (!(first >= own)) {', replace: 'if (!(first >= 0)) {', tests: ['test/empty.test.ts'], only: 'fewer values',
  },
  {
    name: 'empty-pin', breaks: "an empty array a call uses is pinned as any other: pool.free refuses it until the call settles",
    file: 'src/memory.ts', find: 'view.byteOffset + Math.max(view.byteLength, 1)]', replace: 'view.byteOffset + view.byteLength]',
    tests: ['test/empty.test.ts'], only: 'pool.alloc(0) gives',
  },
  {
    name: 'empty-mean-nan', breaks: "ChannelStats.mean() of a channel of count 0 is NaN, as its variance",
    file: 'src/channel-stats.ts', find: 'if (count[c] === 0) mean[c] = NaN;', replace: 'if (count[c] === 0) mean[c] += 0;',
    tests: ['test/channel-stats.test.ts', 'test/empty.test.ts'],
  },
  {
    name: 'zero-channels', breaks: 'a shape has at least one channel',
    file: 'src/validate.ts', find: '!Number.isSafeInteger(dim) || dim < least)', replace: '!Number.isSafeInteger(dim) || dim < 0)',
    tests: ['test/empty.test.ts', 'test/errors.test.ts'],
  },
  {
    name: 'line-overtaken', breaks: 'a call that finds others waiting for memory goes behind them (none starves)',
    file: 'src/memory-line.ts', find: '    if (this.#line.length > 0) return null;\n', replace: '',
    tests: ['test/memory-line.test.ts'], only: 'first come first served',
  },
  {
    name: 'line-waits-for-nothing', breaks: 'a call fails with the OutOfMemoryError where no other call holds memory it will free',
    file: 'src/memory-line.ts', find: 'error instanceof OutOfMemoryError && this.#holders > 0', replace: 'error instanceof OutOfMemoryError && this.#holders >= 0',
    tests: ['test/memory-line.test.ts'], only: 'takes at once',
  },
  {
    name: 'line-parked-counted', breaks: 'a call waiting on its all-reduce hook is not waited for (the hook may wait for the call in line)',
    file: 'src/memory-line.ts', find: '  async parked<T>(hook: Promise<T>): Promise<T> {\n    this.#holders--;\n', replace: '  async parked<T>(hook: Promise<T>): Promise<T> {\n',
    tests: ['test/memory-line.test.ts'], only: 'does not count a call parked',
  },
  {
    name: 'line-next-not-woken', breaks: 'the next call in line tries as soon as the one before it leaves the line',
    file: 'src/memory-line.ts', find: '      if (first) this.#line[0]?.wake?.();', replace: '      void first;',
    tests: ['test/memory-line.test.ts'], only: 'the next in line then tries',
  },
  {
    name: 'line-free-silent', breaks: "a freed block wakes the first call in the pool's line",
    file: 'src/memory.ts', find: '    this.line.freed();\n', replace: '',
    tests: ['test/memory-line.test.ts'], only: 'where a pool too small for all at once',
  },
  {
    name: 'line-abort-ignored', breaks: 'an abort takes a call out of the line at once',
    file: 'src/memory-line.ts', find: '        me.wake = null;\n        reject(aborted(signal));\n', replace: '        me.wake = me.wake;\n',
    tests: ['test/memory-line.test.ts'], only: 'an abort takes',
  },
  {
    name: 'line-never-released', breaks: "a call's blocks count as held until it has freed them, and no longer",
    file: 'src/engine.ts', find: '    held.release();\n  }\n}', replace: '  }\n}',
    tests: ['test/memory-line.test.ts'], only: 'cannot fit even alone',
  },
  {
    name: 'line-not-woken-by-park', breaks: 'a call waiting for blocks of a call that parks on its hook tries again then (and fails, not deadlocks)',
    file: 'src/memory-line.ts', find: '    this.#holders--;\n    this.#line[0]?.wake?.();\n', replace: '    this.#holders--;\n',
    tests: ['test/memory-line.test.ts'], only: 'does not count a call parked',
  },
  {
    name: 'line-late-abort-missed', breaks: 'a call whose signal fired between a wake and its next try leaves the line then',
    file: 'src/memory-line.ts', find: '      if (signal?.aborted) {\n        reject(aborted(signal));\n        return;\n      }\n', replace: '',
    tests: ['test/memory-line.test.ts'], only: 'an abort takes a call out',
  },
  {
    name: 'inline-turns-no-clock', breaks: 'inline calls made at once let the event loop turn once INLINE_TURN_MS passed',
    file: 'src/turns.ts', find: '((admitted > 0 || stepper !== null) && now - since >= INLINE_TURN_MS)', replace: '((admitted > 0 || stepper !== null) && now < since)',
    tests: ['test/turns.test.ts'], only: 'once INLINE_TURN_MS passed',
  },
  {
    name: 'inline-turns-always', breaks: 'a lone inline call takes no turn of the event loop',
    file: 'src/turns.ts', find: '  return admit(continued, null) ?? wait(signal);', replace: '  return (continued ? admit(continued, null) : null) ?? wait(signal);',
    tests: ['test/turns.test.ts'], only: 'a lone inline call',
  },
  {
    name: 'inline-turns-interleaved', breaks: 'inline calls started together run one at a time',
    file: 'src/turns.ts', find: '(!first || running > 0 || ((admitted > 0', replace: '(!first || running < 0 || ((admitted > 0',
    tests: ['test/turns.test.ts'], only: 'run one at a time',
  },
  {
    name: 'inline-turns-done-wakes-none', breaks: 'an inline call that waits for the one before runs as that one ends, not at the next turn',
    file: 'src/turns.ts', find: '      if (running === 0) line[0]?.wake();', replace: '      if (running === -1) line[0]?.wake();',
    tests: ['test/turns.test.ts'], only: 'each runs as the one before ends',
  },
  {
    name: 'inline-turns-turn-wakes-none', breaks: 'a turn admits the first inline call in line whatever runs (no call waits on one behind it)',
    file: 'src/turns.ts', find: '  stepped = false;\n  line[0]?.wake();', replace: '  stepped = false;',
    tests: ['test/turns.test.ts'], only: 'waits on nothing behind it',
  },
  {
    name: 'inline-turns-abort-ignored', breaks: 'an abort takes an inline call out of the line before any work',
    file: 'src/turns.ts', find: "    signal?.addEventListener('abort', onAbort, { once: true });\n", replace: '',
    tests: ['test/turns.test.ts'], only: 'an abort while a call waits',
  },
  {
    name: 'step-due-never', breaks: 'calls on the workers made at once wait for a turn where other calls held the thread',
    file: 'src/turns.ts', find: '  return (stepped || admitted > 0) && now - since >= INLINE_TURN_MS;', replace: '  return (stepped || admitted > 0) && now < since;',
    tests: ['test/turns.test.ts'], only: 'calls on the workers made at once',
  },
  {
    name: 'step-due-lone', breaks: 'a lone call on the workers never waits for a turn between its steps',
    file: 'src/turns.ts', find: '  else if (stepper !== caller) stepped = true;', replace: '  else stepped = true;',
    tests: ['test/turns.test.ts'], only: 'stepDue',
  },
  {
    name: 'step-gate-none', breaks: 'a call on the workers waits for its turn before it takes any memory',
    file: 'src/engine.ts', find: '  if (!inline) while (stepDue(copies)) await pauseIn();\n', replace: '  if (!inline && stepDue(copies) && inline) await pauseIn();\n',
    tests: ['test/turns.test.ts'], only: 'before it takes any memory',
  },
  {
    name: 'slice-step-none', breaks: "a copy on the workers' side waits for a turn before its next slice where other calls held the thread",
    file: 'src/placement.ts', find: '  return budget.left < bpe || (budget.shared && stepDue(budget));', replace: '  return budget.left < bpe || (budget.shared && stepDue(budget) && !budget.shared);',
    tests: ['test/turns.test.ts'], only: 'before its next slice',
  },
  {
    name: 'post-gate-none', breaks: 'posting waits for a turn where other calls held the thread',
    file: 'src/dispatch.ts', find: '  if (!call.inline) while (stepDue(call.copies)) await call.pauseIn();\n', replace: '  if (!call.inline && stepDue(call.copies) && call.inline) await call.pauseIn();\n',
    tests: ['test/turns.test.ts'], only: 'posting waits',
  },
  {
    name: 'bytes-start-gate-none', breaks: 'an 8-bit eval on the workers waits for its turn before it takes any memory',
    file: 'src/bytes.ts', find: '  // (turns.ts, stepDue): calls started together start one after another.\n  const budget = copyBudget(!inline);\n  if (!inline) while (stepDue(budget)) await pause();\n',
    replace: '  // (turns.ts, stepDue): calls started together start one after another.\n  const budget = copyBudget(!inline);\n  if (!inline && stepDue(budget) && inline) await pause();\n',
    tests: ['test/turns.test.ts'], only: 'before it takes any memory',
  },
  {
    name: 'bytes-post-gate-none', breaks: "an 8-bit eval's posting waits for a turn where other calls held the thread",
    file: 'src/bytes.ts', find: '      // On the workers, posting waits where other calls\' steps held the thread (stepDue).\n      if (!inline) while (stepDue(budget)) await pause();\n',
    replace: '      // On the workers, posting waits where other calls\' steps held the thread (stepDue).\n      if (!inline && stepDue(budget) && inline) await pause();\n',
    tests: ['test/turns.test.ts'], only: 'posting waits',
  },
  {
    name: 'bytes-stats-start-gate-none', breaks: 'the statistics of 8-bit input on the workers wait for their turn before they take any memory',
    file: 'src/bytes.ts', find: '  const pause = pauseFor(signal);\n  const budget = copyBudget(!inline);\n  if (!inline) while (stepDue(budget)) await pause();\n',
    replace: '  const pause = pauseFor(signal);\n  const budget = copyBudget(!inline);\n  if (!inline && stepDue(budget) && inline) await pause();\n',
    tests: ['test/turns.test.ts'], only: 'before it takes any memory',
  },
  {
    name: 'bytes-stats-post-gate-none', breaks: "posting the statistics of 8-bit input waits for a turn where other calls held the thread",
    file: 'src/bytes.ts', find: '      }));\n      if (!inline) while (stepDue(budget)) await pause();\n',
    replace: '      }));\n      if (!inline && stepDue(budget) && inline) await pause();\n',
    tests: ['test/turns.test.ts'], only: 'posting waits',
  },
  {
    name: 'inline-turns-continued-waits', breaks: 'the second part of a synced forward never waits for a turn',
    file: 'src/turns.ts', find: '  if (!continued && (!first', replace: '  if (continued === continued && (!first',
    tests: ['test/turns.test.ts'], only: 'second part',
  },
  {
    name: 'poll-normalize-channel', breaks: "a fused channel's normalization polls the cancel flag between its blocks",
    file: 'workers/blocks.ts', find: '    for (let local = this.#regionBlocks - 1; local >= 0; local--) {\n      if (cancelled()) return false;\n',
    replace: '    for (let local = this.#regionBlocks - 1; local >= 0; local--) {\n      void cancelled;\n',
    tests: ['test/cancel-points.test.ts'], only: 'fused, plane mode, one channel',
  },
  {
    name: 'poll-reduce-channel', breaks: "a fused channel's statistics (and the normalization of the one before, in step) poll the cancel flag between runs of blocks",
    file: 'workers/blocks.ts', find: '    for (let g = 0; g < groups;) {\n      if (cancelled()) return false;\n',
    replace: '    for (let g = 0; g < groups;) {\n      void cancelled;\n',
    tests: ['test/cancel-points.test.ts'], only: 'in step with the next one',
  },
  {
    name: 'poll-fuse-band', breaks: "a fused band's normalization polls the cancel flag between its row groups",
    file: 'workers/blocks.ts', find: '    for (let g = groups - 1; g >= 0; g--) {\n      if (cancelled()) return false;\n',
    replace: '    for (let g = groups - 1; g >= 0; g--) {\n      void cancelled;\n',
    tests: ['test/cancel-points.test.ts'], only: 'fused bands',
  },
  {
    name: 'poll-whole-rows', breaks: "a normalization of whole rows polls the cancel flag before each claim's rows",
    file: 'workers/blocks.ts', find: "      // Items are rows: the claim's rows in one call (the same operations on every element).\n      if (cancelled()) return false;\n",
    replace: "      // Items are rows: the claim's rows in one call (the same operations on every element).\n      void cancelled;\n",
    tests: ['test/cancel-points.test.ts'], only: 'whole rows',
  },
  {
    name: 'poll-block-items', breaks: 'a normalization of row-mode blocks polls the cancel flag between them',
    file: 'workers/blocks.ts', find: '      for (let j = 0; j < hi - lo; j++) {\n        if (cancelled()) return false;\n',
    replace: '      for (let j = 0; j < hi - lo; j++) {\n        void cancelled;\n',
    tests: ['test/cancel-points.test.ts'], only: 'eval, row mode',
  },
  {
    name: 'poll-plane-runs', breaks: 'a normalization of planes of one row a row group polls the cancel flag between its runs',
    file: 'workers/blocks.ts', find: '    while (reverse ? i > lo : i < hi) {\n      if (cancelled()) return false;\n',
    replace: '    while (reverse ? i > lo : i < hi) {\n      void cancelled;\n',
    tests: ['test/cancel-points.test.ts'], only: 'runs of stretches',
  },
  {
    name: 'poll-stats-apply', breaks: "an eval-mode backward's blocks (sums, then dx) poll the cancel flag between them",
    file: 'workers/blocks.ts', find: "    for (let i = lo; i < hi; i++) {\n      if (cancelled()) return false;\n      if (grid.mode === 'row') {\n        const g = Math.floor(i / grid.bands);",
    replace: "    for (let i = lo; i < hi; i++) {\n      void cancelled;\n      if (grid.mode === 'row') {\n        const g = Math.floor(i / grid.bands);",
    tests: ['test/cancel-points.test.ts'], only: 'eval-mode backward',
  },
  {
    name: 'poll-in-order', breaks: 'a plane-mode normalization in memory order polls the cancel flag between row groups',
    file: 'workers/plane-blocks.ts', find: '    for (let i = lo; i < hi;) {\n      if (cancelled()) return false;\n',
    replace: '    for (let i = lo; i < hi;) {\n      void cancelled;\n',
    tests: ['test/cancel-points.test.ts'], only: 'memory order',
  },
  {
    name: 'poll-stats-items', breaks: "a statistics pass over row-mode (or several-row) blocks polls the cancel flag between them",
    file: 'workers/blocks.ts', find: "      for (let i = lo; i < hi; i++) {\n        if (cancelled()) return false;\n        if (grid.mode === 'row') this.#rows.stats(",
    replace: "      for (let i = lo; i < hi; i++) {\n        void cancelled;\n        if (grid.mode === 'row') this.#rows.stats(",
    tests: ['test/cancel-points.test.ts'], only: 'statistics',
  },
  {
    name: 'poll-stats-runs', breaks: 'a statistics pass over planes of one row a row group polls the cancel flag between its runs',
    file: 'workers/blocks.ts', find: '    for (let i = lo; i < hi;) {\n      if (cancelled()) return false;\n      const k = i % sChunks;',
    replace: '    for (let i = lo; i < hi;) {\n      void cancelled;\n      const k = i % sChunks;',
    tests: ['test/cancel-points.test.ts'], only: 'statistics',
  },
  {
    name: 'poll-fuse-band-stats', breaks: "a fused band's statistics poll the cancel flag between its row groups",
    file: 'workers/blocks.ts', find: '    for (let g = 0; g < groups; g++) {\n      if (cancelled()) return false;\n      this.#rows.stats(g, c0, c1);',
    replace: '    for (let g = 0; g < groups; g++) {\n      void cancelled;\n      this.#rows.stats(g, c0, c1);',
    tests: ['test/cancel-points.test.ts'], only: 'fused bands',
  },
  {
    name: 'poll-stats-groups', breaks: "the first phase's statistics poll the cancel flag between row groups",
    file: 'workers/blocks.ts', find: '      for (const end = claims.end(); g < end;) {\n        if (cancelled()) return false;',
    replace: '      for (const end = claims.end(); g < end;) {\n        void cancelled;',
    tests: ['test/cancel-points.test.ts'], only: 'phased on one worker',
  },
  {
    name: 'poll-stats-norm-groups', breaks: "a later phase's statistics, in step with the normalization of the phase before, poll the cancel flag between row groups",
    file: 'workers/blocks.ts', find: '    while (g >= 0 || i >= 0) {\n      if (cancelled()) return false;',
    replace: '    while (g >= 0 || i >= 0) {\n      void cancelled;',
    tests: ['test/cancel-points.test.ts'], only: 'phased on one worker',
  },
  {
    name: 'poll-norm-groups', breaks: "the last phase's normalization polls the cancel flag between row groups",
    file: 'workers/blocks.ts', find: '      for (const end = claims.end(); i < end; i++) {\n        if (cancelled()) return false;',
    replace: '      for (const end = claims.end(); i < end; i++) {\n        void cancelled;',
    tests: ['test/cancel-points.test.ts'], only: 'phased on one worker',
  },
  {
    name: 'phased-unpaired-stats', breaks: "a phase's statistics reduce the channels that pair with none of the normalization before",
    file: 'workers/blocks.ts', find: '        for (let cl = cl0 + pairs; cl < cl1; cl++) this.#planes.stretches(cl, g, count);',
    replace: '        for (let cl = cl0 + pairs; cl < cl1 - 1; cl++) this.#planes.stretches(cl, g, count);',
    tests: ['test/phased.test.ts'], only: '8,5,100,101',
  },
  {
    name: 'floor-last-part', breaks: "the benchmark's floor (and its read and write passes) covers every part of y, the last one too",
    file: 'src/floor.ts', find: '  for (let start = 0; start < x.length; start += step) {', replace: '  for (let start = 0; start + step < x.length; start += step) {',
    tests: ['test/kernels-floor.test.ts'],
  },
  {
    name: 'stream-pass-kind', breaks: "a worker runs the pass a stream task names (read x only, write y only, or the floor)",
    file: 'workers/worker.ts', find: "if (task.pass === 'read') kernel.read(task.xByte, task.n);\n      else if (task.pass === 'write') kernel.fill(task.yByte, task.n, task.a);",
    replace: "if (task.pass === 'read') kernel.fill(task.yByte, task.n, task.a);\n      else if (task.pass === 'write') kernel.read(task.xByte, task.n);",
    tests: ['test/kernels-floor.test.ts'],
  },
  {
    name: 'plan-box-rows', breaks: "staging chunks of whole rows hold whole row groups, so every block lies in one chunk",
    file: 'src/plan.ts', find: 'const rows = Math.floor(budget / groupElements) * groupRows;', replace: 'const rows = Math.floor(budget / (C * S));',
    tests: ['test/large-shapes.test.ts', 'test/wide.test.ts', 'test/memory-line.test.ts'],
  },
  {
    name: 'plan-phases-last', breaks: "a phased call's channel groups end at the last channel",
    file: 'src/plan.ts', find: 'Array.from({ length: count + 1 }, (_, i) => Math.round((i * channels) / count))',
    replace: 'Array.from({ length: count }, (_, i) => Math.round((i * channels) / count))',
    tests: ['test/phased.test.ts'],
  },
  {
    name: 'row-phases-last', breaks: "a row-mode phased call's channel groups end at the last channel",
    file: 'src/plan.ts', find: 'Array.from({ length: ROW_PHASES + 1 }', replace: 'Array.from({ length: ROW_PHASES }',
    tests: ['test/phased.test.ts'],
  },
  {
    name: 'row-statsnorm-copy', breaks: "a row-mode phase's normalization copies its rows out to an `out` on another shared buffer",
    file: 'workers/row-blocks.ts', find: 'this.#copy?.planes(norm.rowOff, norm.rows, norm.off, (p1 - p0) * grid.S, yByte);',
    replace: 'void yByte;',
    tests: ['test/phased.test.ts', 'test/memory-copies.test.ts', 'test/random-cases.test.ts'],
  },
  {
    name: 'in-order-never', breaks: "a call whose input and output outgrow cacheBytes has its tasks walk rows of channels in lanes in address order (Task.inOrder)",
    file: 'src/dispatch.ts', find: 'inOrder: 2 * elements * bytesPerElement(call.req.dtype) > call.ctx.cacheBytes,', replace: 'inOrder: 2 * elements * bytesPerElement(call.req.dtype) < 0 * call.ctx.cacheBytes,',
    tests: ['test/channels-last.test.ts'],
  },
  {
    name: 'prep-apply-var', breaks: "an eval backward's applied coefficients made from the running variance (prep 'apply-var') apply",
    file: 'workers/prep.ts', find: "task.prep === 'apply' || task.prep === 'apply-var'", replace: "task.prep === 'apply'",
    tests: ['test/backward-eval.test.ts', 'test/prep.test.ts', 'test/backward.test.ts'],
  },
  {
    name: 'copy-out-offset', breaks: "a task's copy out to an `out` on another shared buffer puts a band at its offset in the row",
    file: 'workers/copy-out.ts', find: '(rowOff + r) * this.#destRowStride + off', replace: '(rowOff + r) * this.#destRowStride + 0 * off',
    tests: ['test/memory-copies.test.ts', 'test/random-cases.test.ts', 'test/large-shapes.test.ts'],
  },
  {
    name: 'bytes-to-planes-offset', breaks: "an 8-bit call's copy out to channel planes puts a run at its pixel in the plane",
    file: 'workers/copy-out.ts', find: 'copy((image * t.C + c) * t.S + s, len)', replace: 'copy((image * t.C + c) * t.S + 0 * s, len)',
    tests: ['test/bytes.test.ts', 'test/bytes-module.test.ts'],
  },
  {
    name: 'statsnorm-rows-relu', breaks: "a row-mode phase's normalization in step with the next phase's statistics applies the fused ReLU",
    file: 'workers/wasm/assembly/stats-rows.ts', find: 'if (relu) shortStatsNorm32<Relu>', replace: 'if (relu) shortStatsNorm32<Plain>',
    tests: ['test/relu.test.ts', 'test/phased.test.ts', 'test/kernels-rows.test.ts', 'test/kernel-properties.test.ts'],
  },
  {
    name: 'modules-checked-first', breaks: 'loading several modules from one file checks every module before any loads (all or none)',
    file: 'src/safetensors-modules.ts', find: '  for (const [, m] of entries) checkModuleArrays(m);\n  for (const [i, [, m]] of entries.entries()) m.loadStateDict(states[i]);',
    replace: '  for (const [i, [, m]] of entries.entries()) {\n    checkModuleArrays(m);\n    m.loadStateDict(states[i]);\n  }',
    tests: ['test/torch-file.test.ts'], only: 'transferred away',
  },
  {
    name: 'modules-one-prefix', breaks: 'one module may not load from two prefixes of a file',
    file: 'src/safetensors-modules.ts', find: "if (verb === 'load' && other !== undefined)", replace: "if (verb === 'load' && other === prefix)",
    tests: ['test/weights.test.ts', 'test/errors-arguments.test.ts'],
  },
  {
    name: 'stats-m2-nan', breaks: "a ChannelStats' m2 may be NaN (data that held NaN)",
    file: 'src/channel-stats-values.ts', find: 'count[c] < Infinity && !(m2[c] < 0)) c++;', replace: 'count[c] < Infinity && m2[c] >= 0) c++;',
    tests: ['test/channel-stats.test.ts', 'test/errors-arguments.test.ts'],
  },
  {
    name: 'stats-low-part-infinite', breaks: "a ChannelStats' low part is 0 where its mean is not finite",
    file: 'src/channel-stats-values.ts', find: 'if (!(m - m === 0 ? m + l === m : l === 0)) break;', replace: 'if (!(m + l === m || Number.isNaN(m))) break;',
    tests: ['test/channel-stats.test.ts', 'test/errors-arguments.test.ts'],
  },
  {
    name: 'functional-eval-default', breaks: 'the functional forward is in eval mode unless told to train, as F.batch_norm',
    file: 'src/functional.ts', find: "const training = opts.training === undefined ? false : checkBoolean(opts.training, 'options.training');",
    replace: "const training = opts.training === undefined ? true : checkBoolean(opts.training, 'options.training');",
    tests: ['test/forward.test.ts', 'test/torch-vectors.test.ts', 'test/running-stats.test.ts', 'test/validate.test.ts'],
  },
  {
    name: 'functional-default-momentum', breaks: "the functional forward's momentum is 0.1 unless given, as F.batch_norm",
    file: 'src/functional.ts', find: "const momentum = opts.momentum === undefined ? 0.1 : checkMomentum(opts.momentum, false, 'options.momentum')!;",
    replace: "const momentum = opts.momentum === undefined ? 0.2 : checkMomentum(opts.momentum, false, 'options.momentum')!;",
    tests: ['test/forward.test.ts'], only: "F.batch_norm's defaults",
  },
  {
    name: 'functional-mean-out-apart', breaks: "the functional forward's meanOut and varOut may not overlap the running statistics it reads and updates",
    file: 'src/functional.ts', find: "[bias, 'options.bias'], [runningMean, 'options.runningMean'], [runningVar, 'options.runningVar'],\n  ]) as [Float64Array | null, Float64Array | null];",
    replace: "[bias, 'options.bias'], [runningMean, 'options.runningMean'],\n  ]) as [Float64Array | null, Float64Array | null];",
    tests: ['test/errors-arguments.test.ts', 'test/validate.test.ts', 'test/errors.test.ts', 'test/channels.test.ts', 'test/fuzz.test.ts'],
  },
  {
    name: 'functional-default-eps', breaks: "the functional forward's eps is 1e-5 unless given, as F.batch_norm",
    file: 'src/functional.ts', find: "'options.momentum')!;\n  const eps = opts.eps === undefined ? 1e-5 :",
    replace: "'options.momentum')!;\n  const eps = opts.eps === undefined ? 1e-3 :",
    tests: ['test/forward.test.ts'], only: "F.batch_norm's defaults",
  },
  {
    name: 'module-single-value', breaks: 'training refuses one value a channel (N * prod(spatial) = 1), as PyTorch, and takes one image of several pixels',
    file: 'src/batch-norm-checks.ts', find: 'if (dims.N * dims.S === 1) {', replace: 'if (dims.N === 1) {',
    tests: ['test/errors.test.ts', 'test/forward.test.ts', 'test/validate.test.ts', 'test/errors-arguments.test.ts'],
  },
  {
    name: 'bytes-eps-default', breaks: "an 8-bit functional eval's eps is 1e-5 unless given",
    file: 'src/functional.ts', find: "if (opts.momentum !== undefined) checkMomentum(opts.momentum, false, 'options.momentum');\n  const eps = opts.eps === undefined ? 1e-5 :",
    replace: "if (opts.momentum !== undefined) checkMomentum(opts.momentum, false, 'options.momentum');\n  const eps = opts.eps === undefined ? 1e-3 :",
    tests: ['test/bytes.test.ts', 'test/bytes-module.test.ts'],
  },
  {
    name: 'queue-holds-place', breaks: "a module's call aborted while it waits keeps its place until the call before it ends",
    file: 'src/call-queue.ts', find: 'void turn.then(release);', replace: 'release();',
    tests: ['test/abort.test.ts'], only: 'removed by its signal',
  },
  {
    name: 'phases-asked', breaks: 'a pool makes phases only where cacheBytes was given',
    file: 'src/engine.ts', find: '  if (!ctx.cacheBytesGiven) return null;\n', replace: '',
    tests: ['test/phased.test.ts', 'test/pipelined.test.ts', 'test/grain-size.test.ts'],
  },
  {
    name: 'reset-tracked', breaks: 'resetRunningStats() sets num_batches_tracked to 0, as PyTorch (a cumulative average starts again)',
    file: 'src/batch-norm.ts', find: '    this.#numBatchesTracked = 0;\n    this.#writes++;', replace: '    this.#writes++;',
    tests: ['test/running-stats.test.ts', 'test/forward.test.ts', 'test/weights.test.ts'],
  },
  {
    name: 'train-false', breaks: 'train(false) sets eval mode, as PyTorch',
    file: 'src/batch-norm.ts', find: "this.#training = checkBoolean(mode, 'mode');", replace: "this.#training = checkBoolean(mode, 'mode') || true;",
    tests: ['test/forward.test.ts', 'test/running-stats.test.ts', 'test/errors-arguments.test.ts', 'test/validate.test.ts'],
  },
  {
    name: 'mode-at-call', breaks: "a forward's mode is the module's at the call: eval() made while it is queued or running does not stop its update",
    file: 'src/batch-norm.ts', find: 'if (training && this.trackRunningStats) await this.#commit', replace: 'if (this.#training && this.trackRunningStats) await this.#commit',
    tests: ['test/concurrency.test.ts', 'test/running-stats.test.ts', 'test/forward.test.ts', 'test/interleavings.test.ts'],
  },
  {
    name: 'untracked-eval-batch-stats', breaks: 'a module without running statistics normalizes with the batch statistics in eval mode too, as PyTorch',
    file: 'src/batch-norm.ts', find: 'const useBatchStats = training || !this.trackRunningStats;', replace: 'const useBatchStats = training && this.trackRunningStats !== null;',
    tests: ['test/forward.test.ts', 'test/running-stats.test.ts', 'test/backward-eval.test.ts'],
  },
  {
    name: 'sync-counts-differ', breaks: "a synced forward refuses merged statistics whose channels' counts differ",
    file: 'src/sync.ts', find: 'if (counts[c] !== first) differs = c;', replace: 'if (counts[c] !== counts[c]) differs = c;',
    tests: ['test/sync.test.ts', 'test/sync-wide.test.ts'],
  },
  {
    name: 'sync-channels', breaks: "a synced forward refuses merged statistics of another number of channels",
    file: 'src/sync.ts', find: '|| merged.numChannels !== C) {', replace: '|| merged.numChannels < C) {',
    tests: ['test/sync.test.ts'], only: 'does not resolve to matching statistics',
  },
  {
    name: 'norm-tail-rounding', breaks: "the WebAssembly normalization's scalar tail rounds as its lanes do: an element's bits do not depend on where a vector boundary fell",
    file: 'workers/wasm/assembly/normalize.ts', find: '    store<f32>(py, relu32((load<f32>(px) - mHi) * sc + bs, floor));',
    replace: '    store<f32>(py, relu32(load<f32>(px) * sc - mHi * sc + bs, floor));',
    tests: ['test/kernel-properties.test.ts', 'test/kernels-planes.test.ts', 'test/determinism.test.ts', 'test/forward.test.ts', 'test/bytes.test.ts'],
  },
  {
    name: 'claims-second-pass-kept', breaks: "a call's claim counters of both passes start at zero",
    file: 'workers/scratch.ts', find: '    Atomics.store(i32, claimCounter(layout, 1, r), 0);\n', replace: '',
    tests: ['test/claims.test.ts', 'test/determinism.test.ts', 'test/phased.test.ts'],
  },
  {
    name: 'inspect-depth', breaks: 'util.inspect shows a bnpool object past its depth as [Name], as Node shows its own',
    file: 'src/inspect.ts', find: 'if (depth < 0) return', replace: 'if (depth < -1) return',
    tests: ['test/channel-stats.test.ts', 'test/running-stats.test.ts'],
  },
  {
    name: 'bwd-columns64-tail-mask', breaks: "a float64 ReLU backward of odd C in lanes masks the last channel's dy too",
    file: 'workers/wasm/assembly/backward-columns.ts', find: 'const g = useMask && load<f64>(mask + o) <= 0 ? 0 : load<f64>(dy + o);',
    replace: 'const g = load<f64>(dy + o);', tests: ['test/relu.test.ts', 'test/kernel-properties.test.ts', 'test/channels-last.test.ts', 'test/kernels-rows.test.ts'],
  },
  {
    name: 'bwd-half-lines-odd-row', breaks: "the backward sums of channels in lanes take a tile's odd last row",
    file: 'workers/wasm/assembly/backward-columns.ts', find: '  if (i < tile) {', replace: '  if (false) {',
    tests: ['test/backward.test.ts', 'test/kernel-properties.test.ts', 'test/kernels-rows.test.ts', 'test/channels-last.test.ts'],
  },
  {
    name: 'bwd-columns-check-any', breaks: 'channels in lanes check for all-zero products wherever any channel needs it, not only the last',
    file: 'workers/wasm/assembly/backward-columns.ts', find: 'check = check || zero;', replace: 'check = zero;',
    tests: BACKWARD_SUMS,
  },
  {
    name: 'bwd-zero-taken', breaks: "a float32 block's Σdy·(x - hi) of exactly zero beside a Σdy that is not is resummed unless every product is zero",
    file: 'workers/wasm/assembly/backward-partial.ts', find: '(sp == 0 && (sdy == 0 || zero))', replace: '(sp == 0)',
    tests: [...BACKWARD_SUMS, 'test/kernels-planes.test.ts'],
  },
  {
    name: 'bwd-tiny-bound', breaks: "a float32 block's Σdy·(x - hi) under the tiny bound is resummed in float64",
    file: 'workers/wasm/assembly/backward-partial.ts', find: 'abs(sp) >= count * TINY_MEAN_SQUARE ||', replace: 'abs(sp) > 0 ||',
    tests: [...BACKWARD_SUMS, 'test/kernels-planes.test.ts'],
  },
  {
    name: 'zero-lanes-and', breaks: 'a lane that left the all-zero list stays out in later rows',
    file: 'workers/wasm/assembly/backward-partial.ts', find: 'const left = v128.and(v128.load(flags + (i << 2)), v128.or(f32x4.eq(g, zero), xz));',
    replace: 'const left = v128.or(f32x4.eq(g, zero), xz);', tests: [...BACKWARD_SUMS, 'test/channels-last.test.ts'],
  },
  {
    name: 'products-zero-dy', breaks: 'a block has all-zero products only where dy is zero wherever x - hi is not',
    file: 'workers/wasm/assembly/backward-partial.ts', find: 'if (!i32x4.all_true(v128.or(f32x4.eq(g, zero), xz))) return false;',
    replace: 'if (!i32x4.all_true(v128.or(f32x4.eq(g, g), xz))) return false;', tests: [...BACKWARD_SUMS, 'test/kernels-planes.test.ts'],
  },
  {
    name: 'bwd-pattern-zero-all', breaks: "few interleaved channels take a channel's products as all zero only if every position of it says so",
    file: 'workers/wasm/assembly/backward-pattern.ts', find: 'zero = zero && load<i32>(fPat + (i << 2)) != 0;', replace: 'zero = load<i32>(fPat + (i << 2)) != 0;',
    tests: [...BACKWARD_SUMS, 'test/channels-last.test.ts'],
  },
  {
    name: 'pattern-norm1-rest', breaks: 'few interleaved channels (C = 1, 2) normalize the periods past the last four',
    file: 'workers/wasm/assembly/normalize-pattern.ts', find: '  return p;', replace: '  return periods;',
    tests: ['test/channels-last.test.ts', 'test/kernels-rows.test.ts', 'test/kernel-properties.test.ts'],
  },
  {
    name: 'pattern-norm-last', breaks: 'few interleaved channels normalize the values past the last whole period',
    file: 'workers/wasm/assembly/normalize-pattern.ts', find: 'for (let e = periods * P; e < total; e++) {', replace: 'for (let e = periods * P; e + 1 < total; e++) {',
    tests: ['test/channels-last.test.ts', 'test/kernels-rows.test.ts', 'test/kernel-properties.test.ts'],
  },
  {
    name: 'stats-pattern3-rest', breaks: 'few interleaved channels (C = 3, 6) sum the periods past the last eight',
    file: 'workers/wasm/assembly/stats-pattern.ts', find: '  return p;', replace: '  return periods;',
    tests: ['test/channels-last.test.ts', 'test/kernels-rows.test.ts', 'test/kernel-properties.test.ts'],
  },
  {
    name: 'bytes-sums-pattern-first', breaks: "8-bit sums of interleaved channels start at the position of the run's first pixel",
    file: 'workers/wasm/assembly/bytes.ts', find: 'scratch: usize): void {\n  const end = x + <usize>n;\n  let k = <usize>(first % P);', replace: 'scratch: usize): void {\n  const end = x + <usize>n;\n  let k: usize = 0;',
    tests: ['test/bytes-stats.test.ts', 'test/bytes-kernels.test.ts', 'test/bytes.test.ts'],
  },
  {
    name: 'bwd-apply-shift-lo', breaks: "a float32 dx's shift takes the low part of the mean (k·(mean - <f32>mean)) out of e",
    file: 'workers/wasm/assembly/backward-apply.ts', find: 'return <f32>(e - k * (mean - <f64><f32>mean));', replace: 'return <f32>e;',
    tests: ['test/backward.test.ts', 'test/adversarial.test.ts', 'test/kernel-properties.test.ts', 'test/kernels-planes.test.ts', 'test/scales.test.ts'],
  },
  {
    name: 'bwd-apply64-tail-mask', breaks: "a float64 ReLU backward of odd plane length masks the last value's dy",
    file: 'workers/wasm/assembly/backward-apply.ts', find: 'const g = useMask && load<f64>(pm) <= 0 ? 0 : load<f64>(pg);', replace: 'const g = load<f64>(pg);',
    tests: ['test/relu.test.ts', 'test/kernel-properties.test.ts', 'test/kernels-planes.test.ts'],
  },
  {
    name: 'floor-tail', breaks: "the floor's streaming pass writes a*x + b past the last 16 values",
    file: 'workers/wasm/assembly/floor.ts', find: '    store<f32>(y, load<f32>(x) * a + b);', replace: '    store<f32>(y, b);',
    tests: ['test/kernels-floor.test.ts'],
  },
  {
    name: 'read-tail', breaks: "the floor's read pass adds the values past the last 16",
    file: 'workers/wasm/assembly/floor.ts', find: '    t += load<f32>(x);', replace: '    t += 0;',
    tests: ['test/kernels-floor.test.ts'],
  },
  {
    name: 'pool-threads-cap', breaks: 'new Pool refuses more than 1024 threads',
    file: 'src/pool-options.ts', find: 'if (threads > MAX_THREADS) {', replace: 'if (threads > 2 * MAX_THREADS) {', tests: POOL_OPTIONS,
  },
  {
    name: 'pool-max-memory-floor', breaks: "new Pool refuses a maxMemory under two wasm pages (the reserved page and one to allocate)",
    file: 'src/pool-options.ts', find: 'maxGiven < 2 * RESERVED_BYTES)', replace: 'maxGiven < RESERVED_BYTES)', tests: POOL_OPTIONS,
  },
  {
    name: 'pool-max-memory-cap', breaks: "new Pool refuses a maxMemory past wasm32's 4 GiB",
    file: 'src/pool-options.ts', find: 'if (maxGiven > MAX_MEMORY ||', replace: 'if (maxGiven > 2 * MAX_MEMORY ||', tests: POOL_OPTIONS,
  },
  {
    name: 'pool-initial-memory', breaks: 'new Pool refuses an initialMemory past its maxMemory',
    file: 'src/pool-options.ts', find: 'if (initialMemory > maxMemory) {', replace: 'if (initialMemory > 2 * maxMemory) {', tests: POOL_OPTIONS,
  },
  {
    name: 'pool-inline-threshold-negative', breaks: 'new Pool refuses a negative inlineThreshold',
    file: 'src/pool-options.ts', find: '!Number.isSafeInteger(value) || value < 0) {', replace: '!Number.isSafeInteger(value) || value < -1) {', tests: POOL_OPTIONS,
  },
  {
    name: 'proven-shift-bound', breaks: 'zero float32 sums prove a block constant only about a shift of at least 2^-50',
    file: 'workers/wasm/assembly/common.ts', find: 'PROVEN_SHIFT: f64 = 8.881784197001252e-16;', replace: 'PROVEN_SHIFT: f64 = 1e-30;',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'all-equal-vectors', breaks: "the read of a block whose float32 sums are zero checks its whole vectors",
    file: 'workers/wasm/assembly/common.ts', find: '    if (v128.any_true(ne)) return false;\n', replace: '    void ne;\n',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'all-equal-tail', breaks: "the read of a block whose float32 sums are zero checks the values past its last whole vector",
    file: 'workers/wasm/assembly/common.ts', find: '    for (; q < end; q += 4) if (load<f32>(q) != k) return false;\n', replace: '',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'check-columns-early', breaks: 'channels in lanes whose float32 sums are zero about a tiny shift are taken for constant only when a read finds them so',
    file: 'workers/wasm/assembly/stats-rows.ts', find: 'if (!any || !maskedDiffer32(x, rows, rowBytes, c4, kArr, masks)) return;', replace: 'if (!any || C > 0) return;',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'check-columns-mask', breaks: "the read of channels in lanes sees the values of those whose float32 sums are zero about a tiny shift",
    file: 'workers/wasm/assembly/stats-rows.ts', find: 'store<i32>(masks + (c << 2), check ? -1 : 0);', replace: 'store<i32>(masks + (c << 2), check ? 0 : 0);',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'check-columns-nan', breaks: 'a channel in lanes that the read finds not constant is summed again in float64',
    file: 'workers/wasm/assembly/stats-rows.ts', find: '      store<f64>(s2Arr + (c << 3), NaN);', replace: '      store<f64>(s2Arr + (c << 3), 0);',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'check-pattern-early', breaks: 'interleaved channels whose float32 sums are zero about a tiny shift are taken for constant only when a read finds them so',
    file: 'workers/wasm/assembly/stats-pattern.ts', find: 'if (!maskedDiffer32(x, periods, P << 2, P, kPat, masks)) return 0;', replace: 'if (periods >= 0) return 0;',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'check-pattern-mask', breaks: "the read of interleaved channels sees the positions of those whose float32 sums are zero about a tiny shift",
    file: 'workers/wasm/assembly/stats-pattern.ts', find: '(check >> <i32>(i % <usize>C)) & 1 ? -1 : 0', replace: '(check >> <i32>(i % <usize>C)) & 1 ? 0 : 0',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'check-pattern-bit', breaks: 'the interleaved channel that the read finds not constant is the one summed again',
    file: 'workers/wasm/assembly/stats-pattern.ts', find: 'differ |= 1 << <i32>c;', replace: 'differ |= 1;',
    tests: ['test/adversarial.test.ts'], only: 'square to zero and cancel',
  },
  {
    name: 'js-far-shift', breaks: "the TypeScript kernel sums a block again about its mean where its shift lies far from it",
    file: 'workers/kernels/js-partials.ts', find: '  } else if (farShift(count, s1, s2)) {', replace: '  } else if (false) {',
    tests: ['test/adversarial.test.ts', 'test/kernel-properties.test.ts', 'test/kernels-rows.test.ts', 'test/kernels-planes.test.ts', 'test/channel-stats.test.ts'],
  },
  {
    name: 'js-resum-up-m2', breaks: "the TypeScript kernel scales a scaled-down block's m2 back by UP squared",
    file: 'workers/kernels/js-partials.ts', find: 'out[at + 2] = out[at + 2] * up * up;', replace: 'out[at + 2] = out[at + 2] * up;',
    tests: ['test/adversarial.test.ts', 'test/kernel-properties.test.ts', 'test/kernels-rows.test.ts', 'test/kernels-planes.test.ts', 'test/channel-stats.test.ts'],
  },
  {
    name: 'js-mean-lo', breaks: "the TypeScript kernel's partial keeps the low part of its mean",
    file: 'workers/kernels/js-partials.ts', find: 'out[at + 3] = lowPart(shift, rel, mean);', replace: 'out[at + 3] = 0 * lowPart(shift, rel, mean);',
    tests: ['test/adversarial.test.ts', 'test/kernel-properties.test.ts', 'test/kernels-rows.test.ts', 'test/kernels-planes.test.ts', 'test/channel-stats.test.ts'],
  },
  {
    name: 'compile-flags-restored', breaks: "V8's baseline and lazy wasm compile come back once the kernels' compile is done",
    file: 'workers/kernels/select.ts', find: 'if (--optimizedHolds === 0) for (const flag of flags) setFlagsFromString(`--${flag}`);',
    replace: '--optimizedHolds;', tests: ['test/lifecycle.test.ts'], only: "V8's",
  },
  {
    name: 'compile-flags-implied', breaks: "V8's dynamic tiering, which --no-liftoff turns off, comes back with Liftoff",
    file: 'workers/kernels/select.ts', find: "if (startedWith('wasm-dynamic-tiering', execArgv) !== false) flags.push('wasm-dynamic-tiering');",
    replace: '', tests: ['test/lifecycle.test.ts'], only: "V8's",
  },
  {
    name: 'compile-flags-implied-user', breaks: "V8's dynamic tiering is left off where the process was started with it off",
    file: 'workers/kernels/select.ts', find: "if (startedWith('wasm-dynamic-tiering', execArgv) !== false) flags.push(",
    replace: 'flags.push(', tests: ['test/lifecycle.test.ts'], only: 'V8 flag the process',
  },
  {
    name: 'compile-flags-deopt', breaks: "from V8 14, wasm deopts are off while the kernels compile without Liftoff (Node 26 aborted the process)",
    file: 'workers/kernels/select.ts', find: "if (startedWith('wasm-deopt', execArgv) ?? Number.parseInt(v8Version, 10) >= 14) flags.push('wasm-deopt');",
    replace: "if (startedWith('wasm-deopt', execArgv) ?? Number.parseInt(v8Version, 10) >= 99) flags.push('wasm-deopt');", tests: ['test/lifecycle.test.ts'], only: 'the flags held off',
  },
  {
    name: 'compile-flags-user', breaks: 'a V8 flag the process was started with is left as its user set it',
    file: 'workers/kernels/select.ts', find: "if (startedWith('liftoff', execArgv) === undefined) {",
    replace: 'if (startedWith.length > 0) {', tests: ['test/lifecycle.test.ts'], only: 'V8 flag the process',
  },
  {
    name: 'compile-flags-last', breaks: "of a V8 flag given more than once, the last counts, as in V8",
    file: 'workers/kernels/select.ts', find: 'if (match !== null) value = match[1] === undefined;',
    replace: 'if (match !== null) value ??= match[1] === undefined;', tests: ['test/lifecycle.test.ts'], only: 'the flags held off',
  },
  {
    name: 'compile-flags-held', breaks: "the optimizing flags stay on until the kernels' async compile settles",
    file: 'workers/kernels/select.ts', find: '  if (result instanceof Promise) result.then(release, release);\n  else release();',
    replace: '  release();', tests: ['test/lifecycle.test.ts'], only: "V8's",
  },
  {
    name: 'compile-open', breaks: "the event loop stays open while the kernels compile (Node 24 exited a script awaiting pool.ready)",
    file: 'workers/kernels/select.ts', find: 'const open = setInterval(() => {}, 2 ** 30);', replace: 'const open = undefined;',
    tests: ['test/lifecycle.test.ts'], only: 'the event loop stays open',
  },
  {
    name: 'describe-self-array', breaks: "an error message renders an array's elements one level down only (an array that holds itself)",
    file: 'src/errors.ts', find: 'value.length <= 8 && depth === 0 ?', replace: 'value.length <= 8 && depth >= 0 ?',
    tests: ['test/errors.test.ts', 'test/errors-arguments.test.ts', 'test/validate.test.ts', 'test/faults.test.ts'],
  },
  {
    name: 'describe-long-string', breaks: 'an error message cuts a long string short',
    file: 'src/errors.ts', find: "value.length <= 64 ? JSON.stringify(value) :", replace: "value.length <= 1e9 ? JSON.stringify(value) :",
    tests: ['test/errors.test.ts', 'test/errors-arguments.test.ts', 'test/validate.test.ts', 'test/faults.test.ts'],
  },
  {
    name: 'serialize-code', breaks: "a worker's error keeps its code across postMessage, and so its class",
    file: 'src/errors.ts', find: "code: typeof code === 'string' ? code : undefined };", replace: "code: undefined }; void code;",
    tests: ['test/errors.test.ts', 'test/errors-arguments.test.ts', 'test/validate.test.ts', 'test/faults.test.ts'],
  },
  {
    name: 'detached-view', breaks: 'a view whose buffer was transferred away is told as detached',
    file: 'src/errors.ts', find: '  } catch {\n    return true;\n  }', replace: '  } catch {\n    return false;\n  }',
    tests: ['test/errors.test.ts', 'test/errors-arguments.test.ts', 'test/validate.test.ts', 'test/faults.test.ts'],
  },
  {
    name: 'describe-article', breaks: "an error message names an object's class with 'an' before a vowel",
    file: 'src/errors.ts', find: "/^[AEIOU]/.test(ctor.name) ? 'an' : 'a'", replace: "'a'",
    tests: ['test/errors.test.ts', 'test/errors-arguments.test.ts', 'test/validate.test.ts', 'test/faults.test.ts'],
  },
  {
    name: 'buffer-memory-grow', breaks: "a runtime without WebAssembly: the pool's memory grows in place",
    file: 'src/wasm-types.ts', find: '    if (buffer.grow !== undefined) buffer.grow(bytes);\n    else buffer.resize!(bytes);\n',
    replace: '    void buffer;\n    void bytes;\n', tests: ['test/jitless.test.ts'],
  },
  {
    name: 'buffer-memory-workers', breaks: "a runtime without WebAssembly: the workers get the pool's buffer, and wrap it",
    file: 'src/wasm-types.ts', find: 'return posted instanceof SharedArrayBuffer ? new BufferMemory(posted) as unknown as WebAssembly.Memory : posted;',
    replace: 'return posted as WebAssembly.Memory;', tests: ['test/jitless.test.ts'],
  },
  {
    name: 'copy-out-odd-buffer', breaks: "the workers copy to an out on a SharedArrayBuffer whose length is no multiple of the element size",
    file: 'workers/copy-out.ts', find: 'this.#dest = this.#view(out.buffer, out.byteOffset, length);',
    replace: 'this.#dest = this.#f64 ? new Float64Array(out.buffer, out.byteOffset) : new Float32Array(out.buffer, out.byteOffset + 0 * length);',
    tests: ['test/determinism.test.ts'], only: 'no multiple of its element size',
  },
  {
    name: 'whole-view-tracking', breaks: "the kernels' views of a growable buffer keep a fixed length (a length-tracking one ran ~30x slower)",
    file: 'src/wasm-types.ts', find: '  return new Type(buffer, 0, buffer.byteLength / Type.BYTES_PER_ELEMENT);\n',
    replace: '  return new Type(buffer, 0, undefined as unknown as number);\n', tests: ['test/memory-growth.test.ts'], only: 'wholeView',
  },
  {
    name: 'workers-denied', breaks: "new Pool() refuses to start where Node's permission model denies worker threads",
    file: 'src/pool.ts', find: "  return permission !== undefined && !permission.has('worker');",
    replace: '  void permission;\n  return false;', tests: ['test/lifecycle.test.ts'], only: 'permission model',
  },
  {
    name: 'no-wasm-memory-auto', breaks: "an 'auto' pool whose process cannot reserve a WebAssembly memory runs the TypeScript kernels",
    file: 'src/pool.ts', find: "      if (settings.requested === 'wasm') {", replace: "      if (settings.requested !== 'js') {", tests: ['test/address-space.test.ts'],
  },
  {
    name: 'no-wasm-memory-kernel', breaks: 'a pool on a BufferMemory runs the TypeScript kernels',
    file: 'src/pool.ts', find: "  return { arena, settings: { ...settings, kernel: 'js', inlineThreshold } };",
    replace: '  return { arena, settings: { ...settings, inlineThreshold } };', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'no-wasm-memory-threshold', breaks: "an 'auto' pool that falls back to the TypeScript kernels takes their default inline threshold",
    file: 'src/pool.ts', find: 'settings.inlineThresholdGiven ? settings.inlineThreshold : DEFAULT_INLINE_THRESHOLD.js',
    replace: 'settings.inlineThresholdGiven ? settings.inlineThreshold : settings.inlineThreshold + 0 * DEFAULT_INLINE_THRESHOLD.js', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'no-wasm-memory-warn-once', breaks: 'the warning that pools run without a WebAssembly memory comes once per process',
    file: 'src/pool.ts', find: '    warnedNoWasmMemory = true;', replace: '    warnedNoWasmMemory = false;', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'private-memory-kind', breaks: "the calling thread's private memory is of the shared memory's kind",
    file: 'src/pool.ts', find: 'RESERVED_BYTES, false, !isBufferMemory(this.#arena.memory));',
    replace: 'RESERVED_BYTES, false, !isBufferMemory(this.#arena.memory) || true);', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'private-memory-unreserved', breaks: "inline calls stage on the shared memory where the private one cannot be reserved",
    file: 'src/pool.ts', find: '      if (err instanceof RangeError) return ctx;\n      throw err;',
    replace: '      void ctx;\n      throw err;', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'wasm-memory-limit-read', breaks: 'a pool reads --wasm-max-mem-pages=N from process.execArgv',
    file: 'src/pool-options.ts', find: '    if (match !== null) pages =', replace: '    if (match !== null && argv.length < 0) pages =', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'wasm-memory-limit-clamp', breaks: "a pool's maxMemory stops at the pages --wasm-max-mem-pages lets a WebAssembly memory have",
    file: 'src/pool-options.ts', find: 'const maxMemory = Math.min(maxGiven, limit);', replace: 'const maxMemory = maxGiven + 0 * limit;', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'wasm-memory-limit-initial', breaks: 'an initialMemory past what --wasm-max-mem-pages allows is an ArgumentError that names the flag',
    file: 'src/pool-options.ts', find: '  if (initialMemory > limit) {', replace: '  if (initialMemory > 2 * limit) {', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'wasm-memory-limit-floor', breaks: 'a --wasm-max-mem-pages too small for any pool is an ArgumentError that names the flag',
    file: 'src/pool-options.ts', find: '  if (limit < 2 * RESERVED_BYTES) {', replace: '  if (limit < RESERVED_BYTES) {', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'onnx-varint-length', breaks: 'an ONNX varint of more than 10 bytes is a FormatError',
    file: 'src/onnx.ts', find: 'for (let i = 0; i < 10; i++) {', replace: 'for (let i = 0; i < 11; i++) {', tests: ['test/onnx-file.test.ts'],
  },
  {
    name: 'legacy-view-bounds', breaks: "a legacy torch.save storage view must lie inside its storage",
    file: 'src/torch-file.ts', find: 'view[1] + view[2] > ref.numel)', replace: 'view[1] + view[2] > ref.numel + 8)', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'legacy-storage-twice', breaks: 'a legacy torch.save storage described twice must be described the same way',
    file: 'src/torch-file.ts', find: 'known.numel !== ref.numel)', replace: 'known.numel !== ref.numel && known === ref)', tests: ['test/torch-file.test.ts'],
  },
  {
    name: 'memory-refused-cap', breaks: "a memory whose growth the runtime refuses takes the length it could grow to as its maxBytes",
    file: 'src/memory.ts', find: '    this.#maxBytes = current + grown * PAGE;', replace: '    this.#maxBytes += 0 * grown;', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'memory-refused-halving', breaks: 'a memory whose growth the runtime refuses grows as far as it may',
    file: 'src/memory.ts', find: 'if (grown + step < minPages && this.#tryGrow(step))', replace: 'if (grown + step < 0 && this.#tryGrow(step))', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'blocks-plan-again', breaks: "a call whose blocks did not fit where the memory learned its cap is planned again",
    file: 'src/memory-line.ts', find: '        if (!(error instanceof OutOfMemoryError) || arena.maxBytes === maxBytes) throw error;',
    replace: '        void maxBytes;\n        throw error;', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'initial-refused', breaks: "new Pool() whose initialMemory V8 refuses, where it makes a smaller memory, is an OutOfMemoryError that says so",
    file: 'src/pool.ts', find: '      if (initialRefused(maxMemory)) {', replace: '      if (maxMemory < 0 && initialRefused(maxMemory)) {', tests: ['test/address-space.test.ts'],
  },
  {
    name: 'merge-lo-overflow', breaks: "the TypeScript merge's MEAN_LO is 0 where TwoSum's own steps overflow",
    file: 'src/merge.ts', find: "    lo = 0; // a + b near float64's largest: TwoSum's own steps overflowed", replace: '    void 0;',
    tests: ['test/kernels-channels.test.ts'], only: "TwoSum's own steps overflow",
  },
  {
    name: 'wasm-merge-lo-overflow', breaks: "the WebAssembly merge's MEAN_LO is 0 where TwoSum's own steps overflow",
    file: 'workers/wasm/assembly/merge.ts', find: '    if (!isFinite(lo)) lo = 0;', replace: '    if (!isFinite(lo)) lo = lo;',
    tests: ['test/kernels-channels.test.ts'], only: "TwoSum's own steps overflow",
  },
  {
    name: 'grid-empty-group', breaks: "planGrid's blocks each hold at least one value (the kernels' merge takes none to be empty)",
    file: 'src/plan.ts', find: 'const nGroups = Math.ceil(N / tallest);', replace: 'const nGroups = Math.ceil(N / tallest) + 1;',
    tests: ['test/claims.test.ts'],
  },
  {
    name: 'running-scratch-free', breaks: "a running update that gets only its first scratch array from the pool gives it back",
    file: 'src/running.ts', find: '    if (meanAt >= 0) ctx.arena.free(meanAt);', replace: '    if (meanAt < 0) ctx.arena.free(meanAt);',
    tests: ['test/channels.test.ts'], only: 'gives the first scratch array but not the second',
  },
  {
    name: 'post-rejects', breaks: "a task that piscina's run refuses at once is a rejection: the call's other tasks are still awaited, and it fails typed",
    file: 'src/pool.ts', find: '      return Promise.reject(err);', replace: '      throw err;',
    tests: ['test/faults.test.ts'], only: "piscina's run throwing",
  },
  {
    name: 'onnx-spatial-listed', breaks: 'a BatchNormalization of opset 6-8 with spatial 0 (state per element) is no module\'s',
    file: 'src/onnx.ts', find: "if (intAttribute(attributes, 'spatial', 1, what) === 0) continue;", replace: "void intAttribute;",
    tests: ['test/onnx-file.test.ts'], only: 'passes over nodes no module can be',
  },
  {
    name: 'torch-appended-unnamed', breaks: 'the items APPENDS gives an object (a list subclass) are named by their index',
    file: 'src/torch-file.ts', find: '        value.appended.forEach((v, i) => walk(v, join(name, String(i))));\n', replace: '',
    tests: ['test/torch-file.test.ts'], only: 'APPENDS gives an object',
  },
  {
    name: 'torch-legacy-text', breaks: 'a legacy file pickled with protocol 0 or 1 is named as one, not as a file that is no ZIP archive',
    file: 'src/torch-file.ts', find: 'String.fromCharCode(...head) === LEGACY_TEXT_MAGIC) {', replace: "String.fromCharCode(...head) === LEGACY_TEXT_MAGIC + '!') {",
    tests: ['test/torch-file.test.ts'], only: 'neither format',
  },
  {
    name: 'pickle-codecs-bytes', breaks: "protocol 2's bytes (_codecs.encode(text, 'latin1')) are bytes",
    file: 'src/pickle.ts', find: "func.path === '_codecs.encode' && args.length === 2", replace: "func.path === '_codecs.encode!' && args.length === 2",
    tests: ['test/torch-file.test.ts'], only: 'operands cannot be',
  },
  {
    name: 'pickle-codecs-wide', breaks: "text with a character past 0xFF, which latin1 cannot encode, is refused as Python's _codecs.encode refuses it",
    file: 'src/pickle.ts', find: '      if (past >= 0) {\n', replace: '      if (past > text.length) {\n',
    tests: ['test/torch-file.test.ts'], only: "protocol 2's bytes",
  },
  {
    name: 'pickle-codecs-encoding', breaks: "only _codecs.encode(text, 'latin1') is read as bytes; another encoding stays a call",
    file: 'src/pickle.ts', find: " && args[1] === 'latin1') {", replace: ') {',
    tests: ['test/torch-file.test.ts'], only: "protocol 2's bytes",
  },
  {
    name: 'pickle-empty-bytes', breaks: "protocol 2's empty bytes, bytes(), are bytes",
    file: 'src/pickle.ts', find: "func.path === 'builtins.bytes' && args.length === 0", replace: "func.path === 'builtins.bytes!' && args.length === 0",
    tests: ['test/torch-file.test.ts'], only: "protocol 2's bytes",
  },
  {
    name: 'pickle-operand-byte', breaks: "a pickle's refusal names its opcode's byte, not the byte of the operand read last",
    file: 'src/pickle.ts', find: "      case 0x71: memo.set(bytes[need(1, 'BINPUT')], top('BINPUT')); break;",
    replace: "      case 0x71: opAt = need(1, 'BINPUT'); memo.set(bytes[opAt], top('BINPUT')); break;",
    tests: ['test/torch-file.test.ts'], only: 'stack, MARK or memo',
  },
  {
    name: 'pickle-stop-mark', breaks: 'STOP takes the top of the stack in use with a MARK still open, as CPython does',
    file: 'src/pickle.ts', find: "      case 0x2e: return { value: pop('STOP'), end: at };",
    replace: "      case 0x2e: if (marks.length > 0) throw new FormatError('within a MARK'); return { value: pop('STOP'), end: at };",
    tests: ['test/torch-file.test.ts'], only: 'stack, MARK or memo',
  },
  {
    name: 'pickle-pop-mark', breaks: 'POP on an empty stack pops the MARK open, as CPython does',
    file: 'src/pickle.ts', find: "case 0x30: if (stack.length === 0 && marks.length > 0) popMark('POP'); else pop('POP'); break;",
    replace: "case 0x30: pop('POP'); break;",
    tests: ['test/torch-file.test.ts'], only: 'stack, MARK or memo',
  },
  {
    name: 'pickle-proto-range', breaks: 'a PROTO past protocol 5 is refused, as CPython refuses it',
    file: 'src/pickle.ts', find: 'if (protocol > 5) throw', replace: 'if (protocol > 255) throw',
    tests: ['test/torch-file.test.ts'], only: 'stack, MARK or memo',
  },
  {
    name: 'keras-missing-gamma', breaks: "a Keras layer with scale false loads as weight ones",
    file: 'src/weights.ts', find: 'weight: gamma ?? filled(m, 1)', replace: 'weight: gamma ?? filled(m, 0)',
    tests: ['test/weights.test.ts'], only: 'keras layers with scale or center false',
  },
  {
    name: 'keras-export-weight', breaks: "a module whose weight is not all ones is refused for a Keras layer with scale false, not written without it",
    file: 'src/weights.ts', find: "if (weight !== undefined && !scale) checkIdentity(", replace: "if (weight !== undefined && !scale && m.numFeatures < 0) checkIdentity(",
    tests: ['test/weights.test.ts'], only: 'keras layers with scale or center false',
  },
  {
    name: 'keras-options-elsewhere', breaks: "options given with a format other than 'keras' are refused",
    file: 'src/weights.ts', find: "if (options !== undefined && format !== 'keras') {", replace: "if (options !== undefined && format === ('none' as WeightFormat)) {",
    tests: ['test/weights.test.ts'], only: 'keras layers with scale or center false',
  },
  {
    name: 'identity-signed-zero', breaks: 'a beta or B of -0 is the identity, as 0 is',
    file: 'src/weights.ts', find: '    if (values[c] !== fill) {', replace: '    if (!Object.is(values[c], fill)) {',
    tests: ['test/weights.test.ts'], only: 'keras layers with scale or center false',
  },
  {
    name: 'onnx-group-fields', breaks: "the fields inside a protobuf group are skipped with it, as protobuf skips an unknown field",
    file: 'src/onnx.ts', find: '    if (groups.length === 0) fields.push({ field, wire, value, bytes: body });',
    replace: '    fields.push({ field, wire, value, bytes: body });',
    tests: ['test/onnx-file.test.ts'], only: 'skips a group',
  },
  {
    name: 'onnx-field-max', breaks: "a key whose field number is past protobuf's 2^29 - 1 is refused, as protobuf refuses it",
    file: 'src/onnx.ts', find: 'if (field === 0 || field > MAX_FIELD) throw', replace: 'if (field === 0 || field > MAX_FIELD * 8) throw',
    tests: ['test/onnx-file.test.ts'], only: 'skips a group',
  },
  {
    name: 'onnx-message-last', breaks: 'a message field written in parts is read merged, as protobuf merges it',
    file: 'src/onnx.ts', find: '  if (found.length <= 1) return found.length === 0 ? null : found[0].bytes;',
    replace: '  if (found.length >= 1) return found[found.length - 1].bytes;\n  if (found.length === 0) return null;',
    tests: ['test/onnx-file.test.ts'], only: 'written in parts',
  },
  {
    name: 'onnx-bytes-first', breaks: 'a bytes field written twice is its last, as protobuf reads it',
    file: 'src/onnx.ts', find: '.filter((f) => f.field === field && f.wire === BYTES).at(-1)?.bytes ?? null;',
    replace: '.filter((f) => f.field === field && f.wire === BYTES).at(0)?.bytes ?? null;',
    tests: ['test/onnx-file.test.ts'], only: 'written in parts',
  },
  {
    name: 'onnx-segment', breaks: 'a segmented tensor is refused, as onnx.numpy_helper refuses it, not read as a whole one',
    file: 'src/onnx.ts', find: 'if (bytesOf(t.fields, 3) !== null) throw', replace: 'if (bytesOf(t.fields, 3) === EMPTY) throw',
    tests: ['test/onnx-file.test.ts'], only: 'refuses each field a reader cannot take',
  },
  {
    name: 'safetensors-bom', breaks: "a header starting with a byte order mark is refused, as the reference reader's JSON parser refuses it",
    file: 'src/safetensors.ts', find: "{ fatal: true, ignoreBOM: true }", replace: '{ fatal: true }',
    tests: ['test/weights.test.ts'], only: "reference reader's rules",
  },
  {
    name: 'safetensors-null-metadata', breaks: 'a header whose __metadata__ is null reads as one without metadata',
    file: 'src/safetensors.ts', find: 'if (value === null) return {};', replace: "if (value === null) throw new FormatError('__metadata__ must map strings to strings');",
    tests: ['test/weights.test.ts'], only: "reference reader's rules",
  },
  {
    name: 'safetensors-count-order', breaks: 'a shape whose dimensions pass 2^64 multiplied in order is refused, a later 0 or not',
    file: 'src/safetensors.ts', find: '    if (count >= 2n ** 64n) return null;\n', replace: '',
    tests: ['test/weights.test.ts'], only: "reference reader's rules",
  },
  {
    name: 'safetensors-subbyte', breaks: 'F4 and F6 values that end within a byte are refused as such',
    file: 'src/safetensors.ts', find: '    if (total % 8 !== 0) {', replace: '    if (total % 8 > 8) {',
    tests: ['test/weights.test.ts'], only: "reference reader's rules",
  },
  {
    name: 'safetensors-field-twice', breaks: "a tensor's entry naming dtype, shape or data_offsets twice is refused, as serde refuses it",
    file: 'src/safetensors.ts', find: 'if (Object.hasOwn(fields, known)) throw', replace: 'if (Object.hasOwn(fields, known) && known.length < 0) throw',
    tests: ['test/weights.test.ts'], only: "serde_json does",
  },
  {
    name: 'safetensors-metadata-twice', breaks: 'a header naming __metadata__ twice is refused, as serde refuses it',
    file: 'src/safetensors.ts', find: "      if (metadata !== null) throw new FormatError('the header names __metadata__ twice');\n", replace: '',
    tests: ['test/weights.test.ts'], only: "serde_json does",
  },
  {
    name: 'safetensors-size-text', breaks: 'a size written as serde reads a float (2.0, 2e0, -0) is refused',
    file: 'src/json-text.ts', find: 'return String(n) === number ? n : new JsonNumber(number);', replace: 'return n;',
    tests: ['test/weights.test.ts'], only: "serde_json does",
  },
  {
    name: 'safetensors-replaced-entry', breaks: 'an entry a later one of the same name replaces is read still, as serde reads it',
    file: 'src/safetensors.ts', find: '  for (const [name, value] of parsed.members) {',
    replace: '  for (const [name, value] of parsed.members.filter(([n], i, all) => all.map(([m]) => m).lastIndexOf(n) === i)) {',
    tests: ['test/weights.test.ts'], only: "serde_json does",
  },
  {
    name: 'safetensors-replaced-checked', breaks: 'only the entry a name keeps is checked against the buffer, as in the reference reader',
    file: 'src/safetensors.ts', find: '      tensors.set(name, readEntry(name, value));', replace: '      tensors.set(name, readEntry(name, value));\n      checkEntry(tensors.get(name)!, bufferLength);',
    tests: ['test/weights.test.ts'], only: "serde_json does",
  },
  {
    name: 'json-lone-low', breaks: "a lone trailing surrogate escaped in a header's JSON is refused, as serde_json refuses it",
    file: 'src/json-text.ts', find: 'if (unit >= 0xdc00 && unit <= 0xdfff) fail(', replace: 'if (unit >= 0xdc00 && unit <= 0xdfff && !unit) fail(',
    tests: ['test/json-text.test.ts'],
  },
  {
    name: 'json-lone-high', breaks: "a leading surrogate escaped must be followed by a trailing one escaped, as serde_json requires",
    file: 'src/json-text.ts', find: 'if (low < 0xdc00 || low > 0xdfff) fail(', replace: 'if (low < 0) fail(',
    tests: ['test/json-text.test.ts'],
  },
  {
    name: 'json-range', breaks: 'a number past float64 (1e400) is refused, as serde_json refuses it',
    file: 'src/json-text.ts', find: 'if (!Number.isFinite(n)) {', replace: 'if (Number.isNaN(n)) {',
    tests: ['test/json-text.test.ts'],
  },
  {
    name: 'json-depth', breaks: "arrays and objects nested past 127 levels are refused, as serde_json's recursion limit refuses them",
    file: 'src/json-text.ts', find: 'if (depth === MAX_DEPTH) fail(', replace: 'if (depth === MAX_DEPTH + 1) fail(',
    tests: ['test/json-text.test.ts'],
  },
  {
    name: 'json-escapes', breaks: "a header's JSON reads each escape as JSON defines it",
    file: 'src/json-text.ts', find: "b: '\\b', f: '\\f',", replace: "b: '\\f', f: '\\b',",
    tests: ['test/json-text.test.ts'],
  },
  {
    name: 'onnx-name-lenient', breaks: 'ONNX names are matched byte for byte: two that differ only in bytes that are not UTF-8 stay two',
    file: 'src/onnx.ts', find: '.map((f) => decodeSurrogateEscape(f.bytes));', replace: ".map((f) => decodeSurrogateEscape(f.bytes).replace(/[\\udc80-\\udcff]/gu, '\\ufffd'));",
    tests: ['test/onnx-file.test.ts'], only: 'byte for byte',
  },
  {
    name: 'utf8-surrogates', breaks: "bytes that encode a surrogate (ED A0 80) are not UTF-8: surrogateescape escapes them, surrogatepass alone reads them",
    file: 'src/utf8.ts', find: 'lead === 0xed ? [3, 0x80, surrogates ? 0xbf : 0x9f]', replace: 'lead === 0xed ? [3, 0x80, surrogates ? 0xbf : 0xbf]',
    tests: ['test/utf8.test.ts'],
  },
  {
    name: 'onnx-location-not-utf8', breaks: 'an external data location that is not UTF-8 is refused, as onnx.load refuses it',
    file: 'src/onnx.ts', find: '  if (hasEscapedBytes(location)) throw', replace: '  if (hasEscapedBytes(location) && !location) throw',
    tests: ['test/onnx-file.test.ts'], only: 'refuses external data that names no location',
  },
  {
    name: 'pickle-surrogatepass', breaks: "a pickle's str holding a lone surrogate's bytes reads as CPython's unpickler reads it",
    file: 'src/pickle.ts', find: "unicode(view.getUint32(need(4, 'BINUNICODE'), true), 'BINUNICODE')", replace: "text(view.getUint32(need(4, 'BINUNICODE'), true), 'BINUNICODE')",
    tests: ['test/torch-file.test.ts'], only: 'lone surrogate',
  },
  {
    name: 'utf8-pair-apart', breaks: "a leading surrogate's bytes then a trailing one's are refused: a JavaScript string cannot keep them apart from the character they pair to",
    file: 'src/utf8.ts', find: 'if (leading && unit >= 0xdc00) return null;', replace: 'if (leading && unit < 0) return null;',
    tests: ['test/utf8.test.ts'],
  },
  {
    name: 'prefix-lone-load', breaks: 'a prefix with a lone surrogate is refused to save as .safetensors (UTF-8 names) and taken to load',
    file: 'src/weights.ts', find: "if (use === 'utf-8' && holdsLoneSurrogate(value)) {", replace: "if (use !== 'utf-8' && holdsLoneSurrogate(value)) {",
    tests: ['test/torch-save.test.ts'], only: 'refuses bad arguments before writing anything',
  },
  {
    name: 'inline-failure-wrapped', breaks: 'a kernel that throws inline fails the call as in a worker: a bnpool error as itself',
    file: 'src/dispatch.ts', find: '      if (s.reason instanceof BnPoolError) throw s.reason;\n', replace: '      void BnPoolError;\n',
    tests: ['test/faults.test.ts'], only: 'throws inline',
  },
  {
    // Tasks that wait at the prep never see the cancel and wait for good, so the aborted call never
    // settles: its test times out (60 s), then the file's close hook (60 s more). On the whole of
    // abort, cancel-points, faults and pipelined (no `only`) it ran past 15 minutes (2026-12-06).
    name: 'wait-cancel', breaks: 'a task waiting for another (the prep, the barrier, staged channels) gives up when the call is cancelled',
    file: 'workers/wait.ts', find: '    if (cancelled()) return false;\n', replace: '    void cancelled;\n',
    tests: ['test/abort.test.ts'], only: 'wait at the prep for a stalled task',
  },
];

const args = process.argv.slice(2);
const USAGE = `usage: node test/mutants.mjs [--check] [--limit-s=SECONDS] [MUTANT...]
  no names: every mutant (each builds and runs its tests: about 100 minutes here)
  --check: only that each mutant's text is still in the source, once
  --limit-s=SECONDS: each mutant's tests stopped after that long (900 unless given)`;
if (args.includes('--help')) {
  console.log(USAGE);
  process.exit(0);
}
// An option this script does not know is refused: ignored, it would leave every mutant chosen.
const badOptions = args.filter((a) => a.startsWith('-') && a !== '--check' && !a.startsWith('--limit-s='));
if (badOptions.length > 0) {
  console.error(`unknown options: ${badOptions.join(', ')}\n${USAGE}`);
  process.exit(2);
}
const checkOnly = args.includes('--check');
const limitArg = args.find((a) => a.startsWith('--limit-s='));
const limitS = limitArg === undefined ? 900 : Number(limitArg.slice('--limit-s='.length));
if (!Number.isSafeInteger(limitS) || limitS < 1) {
  console.error(`--limit-s must be a whole number of seconds, at least 1; got ${JSON.stringify(limitArg)}`);
  process.exit(2);
}
const wanted = args.filter((a) => !a.startsWith('--'));
const unknown = wanted.filter((name) => !MUTANTS.some((m) => m.name === name));
if (unknown.length > 0) {
  console.error(`unknown mutants: ${unknown.join(', ')}; known: ${MUTANTS.map((m) => m.name).join(', ')}`);
  process.exit(2);
}
const chosen = wanted.length === 0 ? MUTANTS : MUTANTS.filter((m) => wanted.includes(m.name));

/** The source with the mutant applied, or null where its text is not there exactly once. */
function mutate(source, m) {
  const once = (text) => text !== undefined && source.split(text).length === 2;
  if (!once(m.find) || (m.after !== undefined && !once(m.after))) return null;
  const cut = source.replace(m.find, m.replace);
  // `after`: the found text moves to just after this one (statements swapped).
  return m.after === undefined ? cut : cut.replace(m.after, m.after + m.find);
}

const stale = chosen.filter((m) => mutate(readFileSync(join(root, m.file), 'utf8'), m) === null);
for (const m of stale) console.log(`stale: ${m.name} (${m.file} no longer holds its text once)`);
if (checkOnly) {
  console.log(`${chosen.length - stale.length} of ${chosen.length} mutants apply`);
  process.exit(stale.length > 0 ? 1 : 0);
}

const work = mkdtempSync(join(tmpdir(), 'bnpool-mutants-'));
const skip = new Set(['node_modules', 'dist', '.git']);
cpSync(root, work, { recursive: true, filter: (path) => !skip.has(path.slice(root.length + 1).split('/')[0]) });
symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
const run = (command, commandArgs) => spawnSync(command, commandArgs, {
  cwd: work, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, maxBuffer: 64 << 20,
});

/** `text` as a pattern that matches it as written: vitest's `-t` takes a regular expression. */
const literal = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const rows = [];
try {
  // Without a mutant, the chosen mutants' tests must pass: else "killed" would mean nothing.
  const tests = [...new Set(chosen.flatMap((m) => m.tests))];
  if (run('npm', ['run', 'build']).status !== 0) throw new Error('the unmutated copy does not build');
  const baseline = run('npx', ['vitest', 'run', ...tests]);
  if (baseline.status !== 0) {
    console.error(baseline.stdout.slice(-4000));
    throw new Error(`without a mutant, the tests fail (${tests.join(', ')}): fix them first`);
  }
  console.log(`without a mutant: ${tests.length} test files pass`);
  for (const m of chosen) {
    if (stale.includes(m)) {
      rows.push([m, 'stale']);
      continue;
    }
    const path = join(work, m.file);
    const original = readFileSync(path, 'utf8');
    writeFileSync(path, mutate(original, m));
    const started = Date.now();
    let result;
    if (run('npm', ['run', 'build']).status !== 0) result = 'does not build';
    else {
      // `timeout` exits 124 when it stopped the command (137 where the command ignored SIGTERM and took -k's SIGKILL).
      const vitest = ['npx', 'vitest', 'run', ...m.tests, ...(m.only === undefined ? [] : ['-t', literal(m.only)])];
      const status = run('timeout', ['-k', '10', String(limitS), ...vitest]).status;
      result = status === 0 ? 'SURVIVED' : status === 124 || status === 137 ? `killed (stopped at the ${limitS} s limit)` : 'killed';
    }
    writeFileSync(path, original);
    rows.push([m, result]);
    console.log(`${m.name}: ${result} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

console.log();
console.log('| mutant | what it breaks | tests | result |');
console.log('| --- | --- | --- | --- |');
for (const [m, result] of rows) console.log(`| ${m.name} | ${m.breaks} | ${m.tests.join(', ')} | ${result} |`);
process.exit(rows.every(([, result]) => result.startsWith('killed')) ? 0 : 1);
