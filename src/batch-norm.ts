import type { Dtype } from '../workers/protocol.js';
import { throwIfAbortedBeforeStart } from './abort.js';
import {
  BACKWARD_OPTIONS, checkBytesForward, checkModuleArrays, checkModuleSettings, checkMoreThanOneValue, checkSavedArrays, checkSavedForward,
  FORWARD_OPTIONS, type SavedForward,
} from './batch-norm-checks.js';
import type {
  BackwardOptions, BatchNormGradients, BatchNormOptions, BatchNormStateDict, ForwardOptions,
} from './batch-norm-types.js';
import { CallQueue } from './call-queue.js';
import { type Convention, type ConventionRules, newBatchWeight } from './conventions.js';
import { type ByteArray, checkBytesOut, isByteArray, runBytes } from './bytes.js';
import { type ChannelResults, runBatchNormBackward } from './engine.js';
import { ArgumentError, describe } from './errors.js';
import { showAs } from './inspect.js';
import {
  findBatchNormsInOnnxFile, type FromOnnxOptions, type OnnxBatchNorm, readOnnxBatchNorm, splitFromOnnxOptions,
} from './onnx.js';
import { allocationOf, checkLive, pinArrays, type PoolInternals, poolInternals } from './pool-internals.js';
import { getDefaultPool, type Pool } from './pool.js';
import { runningStatsUpdate, updateRunningStats } from './running.js';
import { checkStateDict } from './state-dict.js';
import { gradientReducer, runForward } from './sync.js';
import type { SafetensorsBatchNorm } from './tensor-states.js';
import {
  findBatchNormsInTorchFile, type FromTorchFileOptions, loadTorchFileInto, readTorchBatchNorm, saveTorchFileOf, splitFromTorchFileOptions,
  type TorchBatchNorm, type TorchFileOptions,
} from './torch-weights.js';
import {
  checkAttached, checkBoolean, checkChannelOuts, checkDtype, checkEps, checkMomentum, checkOptionalFunction, checkOptions,
  checkOut, checkShape, checkSignal, type FloatArray, type Layout, lengthGiven, lockFields, type SameDtype,
} from './validate.js';
import {
  checkFormat, findBatchNormsInFile, fromKeras, fromOnnx, type KerasWeightsOptions, loadSafetensorsFile, type OnnxBatchNormInputs,
  onlyKerasOptions, type SafetensorsOptions, saveSafetensorsFile, toKeras, toOnnx, type WeightFormat,
} from './weights.js';

/**
 * Batch Normalization over the channel axis of (N, C, *spatial) inputs of rank 2 to 5, with
 * PyTorch's semantics (`torch.nn.BatchNorm1d/2d/3d`).
 *
 * Calls on one module run in call order: each sees the running statistics that every earlier
 * call left, and no call sees another half-applied. A call that fails changes nothing.
 *
 * @example
 * const bn = new BatchNorm(64, { pool });
 * const y = await bn.forward(x, [32, 64, 112, 112]); // training: batch statistics
 * bn.eval();
 * const z = await bn.forward(x, [32, 64, 112, 112], { out: pool.alloc(x.length) });
 */
export class BatchNorm {
  /** C, the number of channels (PyTorch's `num_features`). */
  readonly numFeatures: number;
  /** The running-statistics convention (`'torch'` unless given; see `CONVENTIONS`). */
  readonly convention: Convention;
  /** Where the channel axis is: second (`'channels-first'`, the default) or last. */
  readonly layout: Layout;
  /** `'relu'` when ReLU is fused into the output (and the backward masks with it), else null. */
  readonly activation: 'relu' | null;
  /** True when the module has `weight` and `bias`. */
  readonly affine: boolean;
  /** True when the module keeps running statistics (and eval mode normalizes with them). */
  readonly trackRunningStats: boolean;
  /** The element type of inputs, outputs and per-channel arrays. */
  readonly dtype: Dtype;
  /** Per-channel scale (ones), editable in place; null when `affine` is false. */
  readonly weight: FloatArray | null;
  /** Per-channel shift (zeros), editable in place; null when `affine` is false. */
  readonly bias: FloatArray | null;
  /** Running mean (zeros); null when `trackRunningStats` is false. */
  readonly runningMean: FloatArray | null;
  /** Running (unbiased) variance (ones); null when `trackRunningStats` is false. */
  readonly runningVar: FloatArray | null;
  #eps: number;
  #momentum: number | null;
  #numBatchesTracked = 0;
  /** Counts the module's own writes of its running buffers (resetRunningStats, loadStateDict): see #commit. */
  #writes = 0;
  #training = true;
  readonly #pool: Pool | null;
  readonly #rules: ConventionRules;
  /** The latest forward's, for backward; 'bytes' after a forward of 8-bit input (not differentiable here). */
  #saved: SavedForward | 'bytes' | null = null;
  /**
   * Where forwards copy their per-channel results (saved for backward, read by the running
   * update): two sets, each allocated once, and a forward writes the one the saved forward does
   * not read. Its results are in before its commit, which can still fail (a running buffer
   * detached meanwhile), and the forward saved before must then stay whole. Calls on a module
   * run one at a time.
   */
  readonly #results: ChannelResults[] = [];
  /** Keeps the module's calls in call order. */
  readonly #calls = new CallQueue();

  constructor(numFeatures: number, options?: BatchNormOptions) {
    const settings = checkModuleSettings(numFeatures, options);
    this.numFeatures = numFeatures;
    this.convention = settings.convention;
    this.#rules = settings.rules;
    this.layout = settings.layout;
    this.activation = settings.activation;
    this.#eps = settings.eps;
    this.#momentum = settings.momentum;
    this.affine = settings.affine;
    this.trackRunningStats = settings.trackRunningStats;
    this.dtype = settings.dtype;
    this.#pool = settings.pool;
    const make = (fill: number): FloatArray => {
      const array = this.dtype === 'float64' ? new Float64Array(numFeatures) : new Float32Array(numFeatures);
      return array.fill(fill);
    };
    this.weight = this.affine ? make(1) : null;
    this.bias = this.affine ? make(0) : null;
    this.runningMean = this.trackRunningStats ? make(0) : null;
    this.runningVar = this.trackRunningStats ? make(1) : null;
    // The arrays stay editable in place; the fields themselves cannot be replaced (eps and
    // momentum are set through their checks).
    lockFields(this, [
      'numFeatures', 'convention', 'layout', 'activation', 'affine', 'trackRunningStats', 'dtype',
      'weight', 'bias', 'runningMean', 'runningVar',
    ]);
  }

  /**
   * Added to the variance before its square root. Settable as PyTorch's `bn.eps` is (`bn.eps =
   * 1e-3`), and checked: anything but a finite number > 0 is an ArgumentError, and eps stays as
   * it was. A call uses the value at the time of the call.
   */
  get eps(): number {
    return this.#eps;
  }

  set eps(value: number) {
    this.#eps = checkEps(value, 'eps');
  }

  /**
   * The running statistics' momentum (the convention's meaning; null: a cumulative average).
   * Settable as PyTorch's `bn.momentum` is (`bn.momentum = 0.03`), and checked: a number in
   * [0, 1] or null, else an ArgumentError, and momentum stays as it was. A call uses the value at
   * the time of the call.
   */
  get momentum(): number | null {
    return this.#momentum;
  }

  set momentum(value: number | null) {
    this.#momentum = checkMomentum(value, true, 'momentum');
  }

  /** Training batches seen since creation (or since the loaded state). */
  get numBatchesTracked(): number {
    return this.#numBatchesTracked;
  }

  /** True in training mode (the default for a new module). */
  get training(): boolean {
    return this.#training;
  }

  /** Sets training mode (or eval mode with `false`). Returns this. */
  train(mode = true): this {
    this.#training = checkBoolean(mode, 'mode');
    return this;
  }

  /** Sets eval mode. Returns this. */
  eval(): this {
    this.#training = false;
    return this;
  }

  /**
   * PyTorch's `reset_running_stats()`: running mean 0, running variance 1, no batches tracked (so
   * a `momentum: null` cumulative average starts again). Calls already made still apply their
   * updates when they finish, as any edit of the buffers in place.
   */
  resetRunningStats(): void {
    if (!this.trackRunningStats) return;
    checkModuleArrays(this);
    this.runningMean!.fill(0);
    this.runningVar!.fill(1);
    this.#numBatchesTracked = 0;
    this.#writes++;
  }

  /** PyTorch's `reset_parameters()`: `resetRunningStats()`, then weight 1 and bias 0. */
  resetParameters(): void {
    checkModuleArrays(this);
    this.resetRunningStats();
    this.weight?.fill(1);
    this.bias?.fill(0);
  }

  /**
   * Normalizes `x`, of shape (N, C, *spatial), and resolves to the output: `options.out`, or a
   * new array of x's type (on its own SharedArrayBuffer, which no later call touches). In training
   * mode it updates the running statistics once the output is complete. A batch with a dimension
   * of 0 is empty, as in PyTorch: its output is empty, and in training it is counted in
   * `numBatchesTracked` but leaves the running statistics as they were (the onnx and keras
   * conventions: NaN, the statistics of no values, as in their frameworks).
   *
   * The mode, eps and momentum are those at the time of the call. Weight, bias and running
   * statistics are read when the call starts running, after the module's earlier calls finished
   * (over more than 131,072 channels, during its first turns of the event loop; a training
   * forward's running update then reads them during its last turns and sets them at its end). Do
   * not write them in place while it is in flight.
   *
   * @example
   * const x = pool.alloc(8 * 16 * 32 * 32);             // filled by the caller
   * const out = pool.alloc(x.length);
   * await bn.forward(x, [8, 16, 32, 32], { out });       // zero-copy: both on the module's pool
   * const y = await bn.forward(Float32Array.from(x), [8, 16, 32, 32]); // an ordinary array: a new output
   */
  forward<T extends FloatArray>(x: T, shape: readonly number[], options?: ForwardOptions): Promise<SameDtype<T>>;
  /**
   * Eval forward of 8-bit input (pixels 0-255: a Uint8Array, a Buffer or a Uint8ClampedArray) into
   * float32, with the running statistics, weight, bias, eps and activation, as `batchNorm` of 8-bit
   * input: a float32 module in eval mode with running statistics. `out`, if given, is a
   * Float32Array that does not overlap x. A later `backward` is refused (nothing to differentiate).
   *
   * @example
   * bn.eval();
   * const y = await bn.forward(rgb, [16, 3, 224, 224]);  // rgb: a Uint8Array; y: a Float32Array
   */
  forward(x: ByteArray, shape: readonly number[], options?: ForwardOptions): Promise<Float32Array>;
  async forward(x: FloatArray | ByteArray, shape: readonly number[], options?: ForwardOptions): Promise<FloatArray> {
    if (isByteArray(x)) return this.#forwardBytes(x, shape, options);
    checkDtype(x, 'x', this.dtype);
    checkAttached(x, 'x');
    const dims = checkShape(shape, x.length, this.numFeatures, this.layout);
    const opts = checkOptions(options, 'options', FORWARD_OPTIONS);
    const out = checkOut(opts.out, x, this.dtype);
    const signal = checkSignal(opts.signal);
    const reduceStats = checkOptionalFunction<NonNullable<ForwardOptions['reduceStats']>>(opts.reduceStats, 'options.reduceStats');
    // The mode, eps and momentum at the time of the call (the arrays are read when it starts running).
    const training = this.#training;
    const eps = this.#eps;
    const momentum = this.#momentum;
    const useBatchStats = training || !this.trackRunningStats;
    // Synced, a shard may hold one value per channel: the merged count is what must exceed 1
    // (checked on the hook's answer), as PyTorch's SyncBatchNorm allows across processes. The
    // onnx and keras conventions take one value (conventions.ts).
    const moreThanOne = this.#rules.moreThanOneValue;
    if (useBatchStats && reduceStats === undefined && moreThanOne) checkMoreThanOneValue(dims);
    const pool = this.#pool ?? getDefaultPool();
    const ctx = poolInternals(pool);
    ctx.assertOpen();
    checkLive([[x, 'x'], [out, 'options.out']]);
    throwIfAbortedBeforeStart(signal);

    // From here until it settles, queued or running, pool.free refuses x and out.
    return this.#calls.run(ctx, signal, pinArrays([x, out]), async () => {
      const request = {
        x, dims, dtype: this.dtype, useBatchStats,
        weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar,
        eps, out, signal, relu: this.activation === 'relu',
        into: this.#unsavedResults(),
      };
      const { result, count } = await runForward(pool, request, useBatchStats ? reduceStats : undefined, this.numFeatures, moreThanOne);
      if (training && this.trackRunningStats) await this.#commit(ctx, result.mean, result.var, count, momentum);
      const y = this.activation === 'relu' ? result.y : null;
      this.#saved = {
        x, dims, y, inPlace: out !== null && out.buffer === x.buffer && out.byteOffset === x.byteOffset,
        mean: result.mean, var: result.var, eps,
        mode: useBatchStats ? 'train' : 'eval', syncedCount: useBatchStats && reduceStats !== undefined ? count : null,
        allocations: [allocationOf(x), y === null ? null : allocationOf(y)],
      };
      // x's dtype (checked above): the new output is made of it, and out must have it.
      return result.y;
    });
  }

  /**
   * forward of 8-bit input (eval only): the module's running statistics, weight, bias, eps and
   * activation, as `batchNorm` of 8-bit input applies them; a float32 module (its output is
   * float32). In call order with the module's other calls; leaves nothing for backward.
   */
  #forwardBytes(x: ByteArray, shape: readonly number[], options?: ForwardOptions): Promise<Float32Array> {
    checkAttached(x, 'x');
    const dims = checkShape(shape, x.length, this.numFeatures, this.layout);
    const opts = checkOptions(options, 'options', FORWARD_OPTIONS);
    checkBytesForward(x, this, opts.reduceStats);
    const out = checkBytesOut(opts.out, x);
    const signal = checkSignal(opts.signal);
    const eps = this.#eps;
    const pool = this.#pool ?? getDefaultPool();
    const ctx = poolInternals(pool);
    ctx.assertOpen();
    checkLive([[x, 'x'], [out, 'options.out']]);
    throwIfAbortedBeforeStart(signal);
    return this.#calls.run(ctx, signal, pinArrays([x, out]), async () => {
      const y = await runBytes(ctx, {
        x, dims, runningMean: this.runningMean!, runningVar: this.runningVar!, weight: this.weight, bias: this.bias, eps, out, signal,
        relu: this.activation === 'relu', outLayout: dims.layout,
      });
      this.#saved = 'bytes';
      return y;
    });
  }

  /**
   * Gradients of the latest forward, given dy (of x's type and length): PyTorch's formulas with
   * x̂ = (x - mean)·invstd. After a training forward (batch statistics): dBias = Σdy,
   * dWeight = Σdy·x̂, dx = weight·invstd·(dy - mean(dy) - x̂·mean(dy·x̂)). After an eval forward
   * (running statistics): the same dWeight and dBias, and dx = weight·invstd·dy.
   *
   * It reads the forward's input again: x must not change between forward and backward (nor, with
   * `activation: 'relu'`, the forward's output, which serves as the mask). It runs after the
   * module's earlier calls, in order, and changes no state.
   *
   * After a forward with `reduceStats` (SyncBatchNorm), `options.reduceGrads` all-reduces the
   * gradient sums the same way; it is required then, and refused otherwise.
   *
   * @example
   * const y = await bn.forward(x, [8, 16, 32, 32]);
   * const { dx, dWeight, dBias } = await bn.backward(dy); // dy: the loss's gradient at y, as x
   */
  async backward<T extends FloatArray>(dy: T, options?: BackwardOptions): Promise<BatchNormGradients<SameDtype<T>>> {
    checkDtype(dy, 'dy', this.dtype);
    checkAttached(dy, 'dy');
    const opts = checkOptions(options, 'options', BACKWARD_OPTIONS);
    const signal = checkSignal(opts.signal);
    const reduceGrads = checkOptionalFunction<NonNullable<BackwardOptions['reduceGrads']>>(opts.reduceGrads, 'options.reduceGrads');
    const pool = this.#pool ?? getDefaultPool();
    const ctx = poolInternals(pool);
    ctx.assertOpen();
    if (!this.affine) {
      for (const key of ['dWeight', 'dBias'] as const) {
        if (opts[key] !== undefined && opts[key] !== null) {
          throw new ArgumentError(`options.${key} is for an affine module's gradients; this module has affine false (its ${key} is null); got ${describe(opts[key])}`);
        }
      }
    }
    // dy, out and the latest forward's x and output, pinned now; a forward still queued before
    // this call pins its own until it settles, and its arrays are pinned here once it has.
    checkLive([[dy, 'dy'], [opts.out, 'options.out'], [opts.dWeight, 'options.dWeight'], [opts.dBias, 'options.dBias']]);
    throwIfAbortedBeforeStart(signal);
    const atCall = this.#saved;
    const unpinArgs = pinArrays([
      dy, opts.out, opts.dWeight, opts.dBias, ...(typeof atCall === 'object' && atCall !== null ? [atCall.x, atCall.y] : []),
    ]);
    let unpinSaved = (): void => {};
    const unpin = (): void => {
      unpinArgs();
      unpinSaved();
    };
    return this.#calls.run(ctx, signal, unpin, async () => {
      const saved = checkSavedForward(this.#saved, reduceGrads);
      if (saved !== atCall) unpinSaved = pinArrays([saved.x, saved.y]);
      const kept = checkSavedArrays(saved);
      if (dy.length !== saved.dims.length) {
        throw new ArgumentError(`dy must have the forward input's length ${saved.dims.length}; got ${lengthGiven(dy)}`);
      }
      const out = checkOut(opts.out, dy, this.dtype, 'dy', kept);
      const [dWeightOut, dBiasOut] = checkChannelOuts(
        [[opts.dWeight, 'options.dWeight'], [opts.dBias, 'options.dBias']], this.dtype, this.numFeatures, [[dy, 'dy'], [out, 'options.out'], ...kept],
      );
      const r = await runBatchNormBackward(pool, {
        x: saved.x, dims: saved.dims, dtype: this.dtype, weight: this.weight, out, signal,
        backward: {
          dy, mean: saved.mean, invstd: null, var: saved.var, eps: saved.eps, mode: saved.mode, mask: saved.y, gradDtype: this.dtype, dWeightOut, dBiasOut,
          reduce: reduceGrads === undefined ? undefined : gradientReducer(reduceGrads, this.numFeatures),
          count: saved.syncedCount ?? undefined, sums: this.affine,
        },
      });
      // All of the module's dtype, which dy was checked to have.
      const grads = { dx: r.dx, dWeight: this.affine ? r.dWeight : null, dBias: this.affine ? r.dBias : null };
      return grads as BatchNormGradients<SameDtype<T>>;
    });
  }

  /** The set of #results that the saved forward does not read (made on first use). */
  #unsavedResults(): ChannelResults {
    const saved = typeof this.#saved === 'object' && this.#saved !== null ? this.#saved.mean : null;
    let set = this.#results.find((r) => r.mean !== saved);
    if (set === undefined) {
      set = { mean: new Float64Array(this.numFeatures), var: new Float64Array(this.numFeatures) };
      this.#results.push(set);
    }
    return set;
  }

  /**
   * The running update of a training forward. Over many channels it is made between turns of the
   * event loop (updateRunningStats); where `resetRunningStats` or `loadStateDict` wrote the
   * buffers meanwhile, it is made again in one piece on what they wrote, as a call that finished
   * after them applies its update. It throws, changing nothing, where the running buffers lost
   * values: the count waits for it. An empty batch (count 0) is counted; the torch convention
   * leaves the running statistics as they were, onnx and keras update them with its NaN statistics.
   */
  async #commit(ctx: PoolInternals, mean: Float64Array, variance: Float64Array, count: number, momentum: number | null): Promise<void> {
    const writes = this.#writes;
    const tracked = this.#numBatchesTracked + 1;
    if (count === 0 && this.#rules.emptyBatchKeeps) {
      this.#numBatchesTracked = tracked;
      return;
    }
    const unbiased = this.#rules.unbiased;
    const factor = newBatchWeight(this.#rules, momentum, tracked);
    if (await updateRunningStats(ctx, this.runningMean!, this.runningVar!, mean, variance, count, factor, unbiased, () => this.#writes === writes)) {
      this.#numBatchesTracked = tracked;
      return;
    }
    const now = this.#numBatchesTracked + 1;
    runningStatsUpdate(this.runningMean!, this.runningVar!, mean, variance, count, newBatchWeight(this.#rules, momentum, now), unbiased);
    this.#numBatchesTracked = now;
  }

  /** A copy of the state, with PyTorch's `state_dict` keys. */
  stateDict(): BatchNormStateDict {
    checkModuleArrays(this);
    const sd: BatchNormStateDict = {};
    if (this.affine) {
      sd.weight = this.weight!.slice();
      sd.bias = this.bias!.slice();
    }
    if (this.trackRunningStats) {
      sd.running_mean = this.runningMean!.slice();
      sd.running_var = this.runningVar!.slice();
      sd.num_batches_tracked = this.#numBatchesTracked;
    }
    return sd;
  }

  /**
   * Loads a state with exactly the keys `stateDict()` gives, but for `num_batches_tracked`, which
   * may be left out: the module then keeps its count, as PyTorch's `load_state_dict` does with a
   * dict that has no version metadata. Everything is checked before anything is copied: a bad
   * state dict changes nothing.
   *
   * @example
   * const copy = new BatchNorm(bn.numFeatures);
   * copy.loadStateDict(bn.stateDict());
   * copy.loadStateDict(JSON.parse(jsonFromPython));      // plain number arrays are taken too
   */
  loadStateDict(stateDict: BatchNormStateDict): void {
    const { arrays, numBatchesTracked } = checkStateDict(this, stateDict);
    checkModuleArrays(this);
    const targets = { weight: this.weight, bias: this.bias, running_mean: this.runningMean, running_var: this.runningVar };
    for (const [key, values] of arrays) targets[key]!.set(values);
    if (numBatchesTracked !== null) this.#numBatchesTracked = numBatchesTracked;
    this.#writes++;
  }

  /**
   * The weights in another framework's form: `'torch'` (a state dict), `'keras'`
   * ([gamma, beta, moving_mean, moving_variance]; for a layer with `scale` or `center` false,
   * `options` says so and gamma or beta is left out) or `'onnx'` (BatchNormalization's scale, B,
   * input_mean, input_var). Copies.
   */
  exportWeights(format: 'torch'): BatchNormStateDict;
  exportWeights(format: 'keras', options?: KerasWeightsOptions): FloatArray[];
  exportWeights(format: 'onnx'): OnnxBatchNormInputs;
  exportWeights(format: WeightFormat, options?: KerasWeightsOptions): BatchNormStateDict | FloatArray[] | OnnxBatchNormInputs {
    const f = checkFormat(format);
    onlyKerasOptions(f, options);
    return f === 'torch' ? this.stateDict() : f === 'keras' ? toKeras(this, options) : toOnnx(this);
  }

  /**
   * Loads weights given in `exportWeights`'s forms; checked whole before anything changes.
   *
   * @example
   * bn.importWeights('keras', [gamma, beta, movingMean, movingVariance]); // Keras's get_weights() order
   * bn.importWeights('keras', [beta, movingMean, movingVariance], { scale: false }); // BatchNormalization(scale=False)
   * bn.importWeights('onnx', { scale, B, input_mean, input_var });
   */
  importWeights(format: 'keras', weights: unknown, options?: KerasWeightsOptions): void;
  importWeights(format: WeightFormat, weights: unknown): void;
  importWeights(format: WeightFormat, weights: unknown, options?: KerasWeightsOptions): void {
    const f = checkFormat(format);
    onlyKerasOptions(f, options);
    if (f === 'torch') this.loadStateDict(weights as BatchNormStateDict);
    else if (f === 'keras') fromKeras(this, weights, options);
    else fromOnnx(this, weights);
  }

  /**
   * Writes the state dict to a `.safetensors` file (little-endian, readable by `safetensors`),
   * its keys after `options.prefix` where given (`'bn1.'`: `bn1.weight`, ...).
   *
   * @example
   * await bn.saveSafetensors('bn.safetensors');          // Python: safetensors.torch.load_file('bn.safetensors')
   * await new BatchNorm(bn.numFeatures).loadSafetensors('bn.safetensors');
   */
  async saveSafetensors(path: string | URL, options?: SafetensorsOptions): Promise<void> {
    await saveSafetensorsFile(this, path, options);
  }

  /**
   * Reads the state dict from a `.safetensors` file: the whole file, or with `options.prefix` the
   * module's tensors in a model's file (`'layer1.0.bn1.'`, as the model's `state_dict()` names
   * them), where only the header and those tensors are read. It takes what `loadStateDict` takes
   * (exactly the module's keys, num_batches_tracked optional; float tensors of any precision); a
   * malformed file is a `FormatError`, and either error changes nothing. Several modules of one
   * file load at once with `loadSafetensors(path, { prefix: module, ... })`.
   *
   * @example
   * // model.safetensors: safetensors.torch.save_file(model.state_dict(), 'model.safetensors')
   * await bn.loadSafetensors('model.safetensors', { prefix: 'layer1.0.bn1.' });
   */
  async loadSafetensors(path: string | URL, options?: SafetensorsOptions): Promise<void> {
    await loadSafetensorsFile(this, path, options);
  }

  /**
   * Writes the state dict to a file `torch.load` reads (`.pt`), as `torch.save(bn.state_dict(),
   * path)` writes it (PyTorch's ZIP format, pickle protocol 2, tensors of the module's dtype and
   * num_batches_tracked as an int64 scalar), its keys after `options.prefix` where given (`'bn1.'`:
   * `bn1.weight`, ...). Several modules go into one file with `saveTorchFile(path, { prefix:
   * module, ... })`.
   *
   * @example
   * await bn.saveTorchFile('bn.pt');                     // Python: torch.nn.BatchNorm2d(C).load_state_dict(torch.load('bn.pt'))
   * await new BatchNorm(bn.numFeatures).loadTorchFile('bn.pt');
   */
  async saveTorchFile(path: string | URL, options?: TorchFileOptions): Promise<void> {
    await saveTorchFileOf(this, path, options);
  }

  /**
   * Reads the state dict from a file `torch.save` wrote (`.pt`, `.pth`): a `state_dict()`, a
   * checkpoint dict holding one, or a pickled model (PyTorch 1.6's ZIP format, or the legacy one
   * before it); or a TorchScript archive (`torch.jit.save`, scripted or traced). Its pickle is
   * read as data, never run, so a file from anywhere is safe to read; then only the module's own
   * storages. `options.prefix` picks the module's keys as
   * `loadSafetensors`' does (`'layer1.0.bn1.'`); a checkpoint dict's keys lead them
   * (`'state_dict.layer1.0.bn1.'`), as `BatchNorm.findInTorchFile` lists. Takes what
   * `loadStateDict` takes; a malformed file is a `FormatError`, and either error changes nothing.
   * Several modules load at once with `loadTorchFile(path, { prefix: module, ... })`.
   *
   * @example
   * // Python: torch.save(model.state_dict(), 'model.pt')
   * await bn.loadTorchFile('model.pt', { prefix: 'layer1.0.bn1.' });
   */
  async loadTorchFile(path: string | URL, options?: TorchFileOptions): Promise<void> {
    await loadTorchFileInto(this, path, options);
  }

  /**
   * The BatchNorms whose state a `.safetensors` file holds (a model's, or one module's): each one's
   * prefix (`options.prefix` of `loadSafetensors`), channels, whether it is affine, and the dtype
   * its values load into, by prefix. It reads the file's header alone, checked whole (a malformed
   * one is a `FormatError`). A module is found by its running statistics (P + running_mean and
   * P + running_var, vectors of one length): one without them is not, and an InstanceNorm that
   * tracks them looks the same.
   *
   * @example
   * for (const { prefix, numFeatures, affine } of await BatchNorm.findInSafetensors('model.safetensors')) {
   *   const bn = new BatchNorm(numFeatures, { affine, pool });
   *   await bn.loadSafetensors('model.safetensors', { prefix });
   * }
   */
  static findInSafetensors(path: string | URL): Promise<SafetensorsBatchNorm[]> {
    return findBatchNormsInFile(path);
  }

  /**
   * The BatchNorms whose state a file `torch.save` (or `torch.jit.save`) wrote holds, as
   * `findInSafetensors` finds them in a `.safetensors` file: each one's prefix (`options.prefix`
   * of `loadTorchFile`), channels, whether it is affine, and its dtype, by prefix; and what a
   * pickled model or a TorchScript module says of its eps, momentum and mode (`fromTorchFile`
   * takes them), where it says so. It reads the file's pickle (as data) and checks every tensor
   * in it against its storage, not the storages' values.
   *
   * @example
   * for (const { prefix, numFeatures, affine } of await BatchNorm.findInTorchFile('checkpoint.pth')) {
   *   await new BatchNorm(numFeatures, { affine, pool }).loadTorchFile('checkpoint.pth', { prefix });
   * }
   */
  static findInTorchFile(path: string | URL): Promise<TorchBatchNorm[]> {
    return findBatchNormsInTorchFile(path);
  }

  /**
   * A module made from a BatchNorm of a file `torch.save` wrote: its channels, whether it is
   * affine, float64 where its running variance is, and its state; where the file is a pickled
   * model (`torch.save(model)`) or a scripted TorchScript one, its eps, momentum (None: `null`, a
   * cumulative average) and mode too, from a traced one its eps and mode, else PyTorch's defaults
   * and training mode (a state dict records none of them).
   * `options.prefix` names the module (as `findInTorchFile` lists it) where the file holds more
   * than one; the rest are the module's options and override the file's (`{ eps: 1e-3, pool }`;
   * with a `convention` other than `'torch'`, the module takes that convention's momentum, as
   * PyTorch's weights the other value). Options are checked before the file is read; a pickled
   * module's eps or momentum that the module would take and no module can is a `FormatError`.
   *
   * @example
   * const bn = await BatchNorm.fromTorchFile('checkpoint.pth', { prefix: 'state_dict.layer1.0.bn1.', pool });
   */
  static async fromTorchFile(path: string | URL, options?: FromTorchFileOptions): Promise<BatchNorm> {
    const { prefix, moduleOptions } = splitFromTorchFileOptions(options);
    checkModuleSettings(1, moduleOptions);
    // A pickled momentum is PyTorch's (it weights the new batch): a module of another convention takes that convention's.
    const torchMomentum = (moduleOptions.convention ?? 'torch') === 'torch';
    return readTorchBatchNorm(path, prefix, torchMomentum ? moduleOptions : { ...moduleOptions, momentum: null }, ({ numFeatures, dtype, affine, eps, momentum, training }) => {
      const bn = new BatchNorm(numFeatures, {
        dtype, affine, ...(eps !== undefined ? { eps } : {}), ...(momentum !== undefined && torchMomentum ? { momentum } : {}), ...moduleOptions,
      });
      return training === false ? bn.eval() : bn;
    });
  }

  /**
   * The BatchNormalization nodes of an ONNX model file whose scale, B, mean and variance are
   * constants (initializers or Constant nodes; stored in the file or beside it as external
   * data), in graph order: each one's name, output, channels, epsilon, momentum, training_mode
   * and dtype. Reads the whole `.onnx` file (a protocol buffer is at most 2 GiB; larger models
   * keep their tensors outside it) and its main graph alone; a malformed one is a `FormatError`.
   */
  static findInOnnx(path: string | URL): Promise<OnnxBatchNorm[]> {
    return findBatchNormsInOnnxFile(path);
  }

  /**
   * A module made from a BatchNormalization node of an ONNX model file: its channels, the ONNX
   * convention with the node's epsilon and momentum (which weights the old value, as ONNX's
   * does), float64 where its variance is DOUBLE, scale, B, mean and variance as weight, bias and
   * running statistics (FLOAT16 and BFLOAT16 values convert exactly), and the node's mode: eval
   * where its training_mode is 0 (an inference graph's), training where 1. `options.node` names the
   * node (its name or its output's) where the model has more than one; the rest are the module's
   * options and override the node's (`{ layout: 'channels-last', pool }`). Options are checked
   * before the file is read; a node whose epsilon or momentum no module takes is a `FormatError`.
   *
   * @example
   * const bn = await BatchNorm.fromOnnx('model.onnx', { node: 'bn1', pool });
   * await bn.forward(x, shape);                         // eval mode, as an inference graph runs it
   */
  static async fromOnnx(path: string | URL, options?: FromOnnxOptions): Promise<BatchNorm> {
    const { node, moduleOptions } = splitFromOnnxOptions(options);
    checkModuleSettings(1, moduleOptions);
    const { node: found, values } = await readOnnxBatchNorm(path, node);
    const bn = new BatchNorm(found.numFeatures, { convention: 'onnx', eps: found.epsilon, momentum: found.momentum, dtype: found.dtype, ...moduleOptions });
    bn.loadStateDict({ weight: values[0], bias: values[1], running_mean: values[2], running_var: values[3] });
    return found.trainingMode ? bn : bn.eval();
  }
}

// console.log and util.inspect show a module's settings and state, eps, momentum, the mode and
// numBatchesTracked included (accessors and private fields).
showAs(BatchNorm.prototype, 'BatchNorm', (bn) => ({
  numFeatures: bn.numFeatures, convention: bn.convention, layout: bn.layout, activation: bn.activation,
  eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats,
  dtype: bn.dtype, training: bn.training, numBatchesTracked: bn.numBatchesTracked,
  weight: bn.weight, bias: bn.bias, runningMean: bn.runningMean, runningVar: bn.runningVar,
}));
