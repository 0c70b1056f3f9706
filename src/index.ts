export { Pool, getDefaultPool, DEFAULT_INLINE_THRESHOLD, type PoolOptions } from './pool.js';
export {
  BatchNorm, type BatchNormOptions, type BatchNormStateDict, type ForwardOptions,
} from './batch-norm.js';
export { batchNorm, type BatchNormFunctionalOptions, type BatchNormResult } from './functional.js';
export {
  AbortError, ArgumentError, BnPoolError, ClosedError, DtypeError, NoForwardError, OutOfMemoryError,
  ShapeError, SingleValueError, WorkerError, type BnPoolErrorCode,
} from './errors.js';
export type { FloatArray } from './validate.js';
export type { Dtype, KernelName } from '../workers/protocol.js';
