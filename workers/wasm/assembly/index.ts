// bnpool's WebAssembly SIMD kernels, in AssemblyScript: the module's entry, which exports them.
//
// Contract (shared with workers/kernels/kernel.ts): pointers are byte offsets into the imported
// shared memory, strides are in elements. The kernels allocate nothing and hold no static data,
// so one compiled module is instantiated by every worker over the same memory (AssemblyScript
// issue 921: instances of a module write their data segments to the same addresses).
//
// Statistics: a partial is (count, mean, m2) as f64. Shifted sums d = x - K, K the run's first
// value. float32 data are reduced in f32x4 lanes over at most 8 vectors (a tree, so each lane sum
// carries at most 3 roundings), then folded into f64x2 accumulators: float32 speed, float64
// accuracy (design notes: "folding float32 SIMD lanes into float64 every ~1024 elements keeps the
// accuracy"; we fold every 32). float64 data are reduced in f64x2 lanes directly.
//
// Normalization of float32: mean = mHi + mLo is split into two float32s and
// y = (x - mHi) * scale + (bias - mLo * scale), the second term folded in float64. So float32
// data lose nothing to rounding the mean (x - mHi is exact near the mean, and a constant channel
// gives exactly bias), at the cost of y = a*x + b. Scalar tails use the same float32 operations
// as the lanes, so an element's result does not depend on where a vector boundary fell.

export { statsNormPlanes32, statsPlaneGroups, statsPlanes32, statsPlanes64 } from './stats';
export { statsNormRows32, statsRows32, statsRows64 } from './stats-rows';
export { normalizePlanes32, normalizePlanes64, normalizeRows32, normalizeRows64 } from './normalize';
export {
  bwdStatsApplyPlanes32, bwdStatsApplyRows32, bwdStatsPlanes32, bwdStatsPlanes64, bwdStatsRows32, bwdStatsRows64,
} from './backward-stats';
export { bwdApplyPlanes32, bwdApplyPlanes64, bwdApplyRows32, bwdApplyRows64 } from './backward-apply';
export { mergeBackward, mergeChannels, prepBackward, prepEval } from './merge';
export { fill32, read32, stream32 } from './floor';
export { bytesPattern32, bytesPlanes32, bytesSumsPattern, bytesSumsPlanes, bytesToPlanes32 } from './bytes';
