/**
 * Typed errors. Every error bnpool raises is a `BnPoolError` with a fixed `name` and a stable
 * `code`, in the manner of undici's `lib/core/errors.js`. Messages name the argument, what was
 * expected and what was given.
 */

/** Stable error codes. */
export type BnPoolErrorCode =
  | 'ERR_BNPOOL_SHAPE'
  | 'ERR_BNPOOL_DTYPE'
  | 'ERR_BNPOOL_ARG'
  | 'ERR_BNPOOL_SINGLE_VALUE'
  | 'ERR_BNPOOL_WORKER'
  | 'ERR_BNPOOL_CLOSED'
  | 'ERR_BNPOOL_OUT_OF_MEMORY'
  | 'ERR_BNPOOL_NO_FORWARD'
  | 'ERR_BNPOOL_FORMAT'
  | 'ABORT_ERR';

/**
 * Base class of every bnpool error.
 *
 * @example
 * try { await bn.forward(x, [2, 3]); }
 * catch (err) { if (err instanceof BnPoolError && err.code === 'ERR_BNPOOL_SHAPE') { ... } }
 */
export class BnPoolError extends Error {
  /** Stable across releases, unlike the message: test it, not the text (`'ERR_BNPOOL_SHAPE'`, ...). */
  readonly code: BnPoolErrorCode;

  constructor(message: string, code: BnPoolErrorCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BnPoolError';
    this.code = code;
  }
}

/** Bad rank, dimensions, element count, or channel count. */
export class ShapeError extends BnPoolError {
  /** Always `'ERR_BNPOOL_SHAPE'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_SHAPE';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_SHAPE');
    this.name = 'ShapeError';
  }
}

/** An array that is not a Float32Array/Float64Array, or not of the module's dtype. */
export class DtypeError extends BnPoolError {
  /** Always `'ERR_BNPOOL_DTYPE'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_DTYPE';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_DTYPE');
    this.name = 'DtypeError';
  }
}

/** Any other invalid argument or option. */
export class ArgumentError extends BnPoolError {
  /** Always `'ERR_BNPOOL_ARG'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_ARG';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_ARG');
    this.name = 'ArgumentError';
  }
}

/**
 * Training with one value per channel, where the unbiased batch variance is undefined: the torch
 * convention and the functional forms, as PyTorch (the onnx and keras conventions take it).
 */
export class SingleValueError extends BnPoolError {
  /** Always `'ERR_BNPOOL_SINGLE_VALUE'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_SINGLE_VALUE';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_SINGLE_VALUE');
    this.name = 'SingleValueError';
  }
}

/**
 * A worker threw or died while running a slice of the call (or the kernels threw on the calling
 * thread, where the call ran inline), or the pool cannot start: its kernels did not compile, or
 * the process may not start worker threads (Node's permission model).
 */
export class WorkerError extends BnPoolError {
  /** Always `'ERR_BNPOOL_WORKER'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_WORKER';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_BNPOOL_WORKER', options);
    this.name = 'WorkerError';
  }
}

/** The pool was closed. */
export class ClosedError extends BnPoolError {
  /** Always `'ERR_BNPOOL_CLOSED'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_CLOSED';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_CLOSED');
    this.name = 'ClosedError';
  }
}

/**
 * The pool's shared memory cannot hold an allocation, or even the smallest staging chunk; or
 * `new Pool()` cannot reserve that memory at all (a process whose virtual memory is limited).
 */
export class OutOfMemoryError extends BnPoolError {
  /** Always `'ERR_BNPOOL_OUT_OF_MEMORY'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_OUT_OF_MEMORY';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_OUT_OF_MEMORY');
    this.name = 'OutOfMemoryError';
  }
}

/** `backward` was called before any `forward`. */
export class NoForwardError extends BnPoolError {
  /** Always `'ERR_BNPOOL_NO_FORWARD'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_NO_FORWARD';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_NO_FORWARD');
    this.name = 'NoForwardError';
  }
}

/** A file or serialized state that does not follow its format (safetensors, ONNX), or holds what no module takes. */
export class FormatError extends BnPoolError {
  /** Always `'ERR_BNPOOL_FORMAT'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ERR_BNPOOL_FORMAT';

  constructor(message: string) {
    super(message, 'ERR_BNPOOL_FORMAT');
    this.name = 'FormatError';
  }
}

/**
 * The call's `AbortSignal` fired. `name` is `'AbortError'` and `code` is `'ABORT_ERR'`, as for
 * Node's own abortable APIs; `cause` is the signal's reason.
 */
export class AbortError extends BnPoolError {
  /** Always `'ABORT_ERR'` (typed as that literal, so `instanceof` narrows it). */
  declare readonly code: 'ABORT_ERR';

  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, 'ABORT_ERR', options);
    this.name = 'AbortError';
  }
}

/** Plain description of an error, as it crosses from a worker to the main thread. */
export interface SerializedError {
  name: string;
  code?: string;
  message: string;
}

const byCode: Record<string, new (message: string) => BnPoolError> = {
  ERR_BNPOOL_SHAPE: ShapeError,
  ERR_BNPOOL_DTYPE: DtypeError,
  ERR_BNPOOL_ARG: ArgumentError,
  ERR_BNPOOL_SINGLE_VALUE: SingleValueError,
  ERR_BNPOOL_WORKER: WorkerError,
  ERR_BNPOOL_CLOSED: ClosedError,
  ERR_BNPOOL_OUT_OF_MEMORY: OutOfMemoryError,
  ERR_BNPOOL_NO_FORWARD: NoForwardError,
  ERR_BNPOOL_FORMAT: FormatError,
  ABORT_ERR: AbortError,
};

/** Flattens an error for `postMessage`; structured clone would drop `code`. */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, code: typeof code === 'string' ? code : undefined };
  }
  return { name: 'Error', message: String(err) };
}

/**
 * Rebuilds a worker's error on the main thread with name, code and message intact. Errors that
 * are not bnpool's own become a `WorkerError` whose message keeps the original one, after
 * `failed` (where it was thrown: a worker, or the calling thread for an inline call), with
 * `cause` where the original is at hand.
 */
export function deserializeError(info: SerializedError, failed = 'worker failed', cause?: unknown): BnPoolError {
  const Ctor = info.code !== undefined ? byCode[info.code] : undefined;
  const err = Ctor !== undefined
    ? new Ctor(info.message)
    : new WorkerError(`${failed}: ${info.name}: ${info.message}`, cause === undefined ? undefined : { cause });
  if (Ctor !== undefined) err.name = info.name;
  return err;
}

/** Renders a value for an error message: short, unambiguous, never the whole of a big array. */
export function describe(value: unknown, depth = 0): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return value.length <= 64 ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, 48))}... (${value.length} characters)`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) {
    // Elements one level down only: an array that holds itself must not recurse.
    return value.length <= 8 && depth === 0 ? `[${value.map((v) => describe(v, 1)).join(', ')}]` : `Array(${value.length})`;
  }
  if (ArrayBuffer.isView(value)) {
    if (isDetached(value)) return `${value.constructor.name}(detached)`;
    const len = (value as unknown as { length?: number }).length ?? value.byteLength;
    return `${value.constructor.name}(${len})`;
  }
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'symbol') return value.toString();
  const ctor = (value as object).constructor;
  // Object of any realm (a vm context's plain objects have their own): 'an object', not 'an Object'.
  if (ctor === undefined || typeof ctor.name !== 'string' || ctor.name === '' || ctor.name === 'Object') return 'an object';
  return `${/^[AEIOU]/.test(ctor.name) ? 'an' : 'a'} ${ctor.name}`;
}

/**
 * True where `view`'s buffer was detached (transferred away by `postMessage` or `structuredClone`
 * with a transfer list). Told by the buffer: its byteLength reads 0, and its own `slice` throws
 * on a detached buffer only (an empty one, or a SharedArrayBuffer, slices). Not by `length`,
 * which Node 20's V8 can report from before the transfer (validate.ts, heldLength).
 */
export function isDetached(view: ArrayBufferView): boolean {
  const buffer = view.buffer as ArrayBufferLike & { slice(begin: number, end: number): unknown };
  if (buffer.byteLength !== 0) return false;
  try {
    buffer.slice(0, 0);
    return false;
  } catch {
    return true;
  }
}
