export { Pool, getDefaultPool, type AllocDtype } from './pool.js';
export { AUTO_GRAIN, DEFAULT_CACHE_BYTES, DEFAULT_GRAIN_SIZE, DEFAULT_INLINE_THRESHOLD, type PoolOptions } from './pool-options.js';
export { BatchNorm } from './batch-norm.js';
export type {
  BackwardOptions, BatchNormGradients, BatchNormOptions, BatchNormStateDict, ForwardOptions,
} from './batch-norm-types.js';
export type { GradientSums } from './sync.js';
export {
  batchNorm, batchNormBackward, type BatchNormBackwardOptions, type BatchNormFunctionalOptions, type BatchNormResult,
} from './functional.js';
export {
  ChannelStats, type ChannelStatsJSON, type FromBatchOptions, type VarianceOptions,
} from './channel-stats.js';
export type { JsonNumber } from './channel-stats-values.js';
export { CONVENTIONS, type Convention, type ConventionRules } from './conventions.js';
export type { KerasWeightsOptions, OnnxBatchNormInputs, SafetensorsOptions, WeightFormat } from './weights.js';
export type { SafetensorsBatchNorm } from './tensor-states.js';
export { loadSafetensors, saveSafetensors, type BatchNormsByPrefix } from './safetensors-modules.js';
export { loadTorchFile, saveTorchFile } from './torch-modules.js';
export type { FromTorchFileOptions, TorchBatchNorm, TorchFileOptions } from './torch-weights.js';
export type { FromOnnxOptions, OnnxBatchNorm } from './onnx.js';
export {
  AbortError, ArgumentError, BnPoolError, ClosedError, DtypeError, FormatError, NoForwardError, OutOfMemoryError,
  ShapeError, SingleValueError, WorkerError, type BnPoolErrorCode,
} from './errors.js';
export type { FloatArray, Layout, SameDtype } from './validate.js';
export type { ByteArray } from './bytes.js';
export type { Dtype, KernelName } from '../workers/protocol.js';
