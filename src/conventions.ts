/**
 * The three running-statistics conventions users port weights between.
 *
 * | | momentum weights | default momentum | default eps | running variance | one value a channel | an empty batch |
 * | --- | --- | --- | --- | --- | --- | --- |
 * | torch (`nn.BatchNorm*`) | the new batch | 0.1 | 1e-5 | unbiased (m / (m - 1)) | refused | running statistics kept |
 * | onnx (`BatchNormalization`, opset 15, training_mode 1) | the old value | 0.9 | 1e-5 | biased | normalized | running statistics NaN |
 * | keras (`layers.BatchNormalization`) | the old value | 0.99 | 1e-3 | biased | normalized | running statistics NaN |
 *
 * So with the same number, torch's momentum m is onnx's and keras's 1 - m. The last two columns
 * are each framework's training step on degenerate batches: PyTorch raises on one value per
 * channel (its unbiased variance divides by m - 1) and skips the running update of an empty
 * batch; onnxruntime and Keras have neither check, so one value gives a variance of 0 (every
 * output `bias`) and an empty batch's mean and variance, of no values, are NaN, which their
 * update formula carries into the running statistics.
 */
export type Convention = 'torch' | 'onnx' | 'keras';

/**
 * What a convention sets (CONVENTIONS holds the three).
 *
 * @example
 * CONVENTIONS.keras.momentum;      // 0.99, weighting the old value: momentumOnOld true
 * CONVENTIONS.torch.unbiased;      // true: the running variance takes m / (m - 1) of the batch's
 */
export interface ConventionRules {
  /** The default momentum, in the convention's meaning. */
  readonly momentum: number;
  /** The default eps. */
  readonly eps: number;
  /** True when momentum weights the old running value (onnx, keras). */
  readonly momentumOnOld: boolean;
  /** True when the running variance takes the unbiased batch variance (torch). */
  readonly unbiased: boolean;
  /**
   * True when batch statistics need more than one value per channel, else a `SingleValueError`
   * (torch); onnx and keras normalize such a batch (its biased variance is 0) and update with it.
   */
  readonly moreThanOneValue: boolean;
  /**
   * True when an empty training batch leaves the running statistics as they were (torch); onnx
   * and keras apply their update to its statistics, NaN, as onnxruntime and Keras do.
   */
  readonly emptyBatchKeeps: boolean;
}

/**
 * Each convention's rules. Frozen, entries too: every module reads its defaults here, so no
 * caller may change them.
 *
 * @example
 * const bn = new BatchNorm(64, { convention: 'keras' });
 * bn.momentum === CONVENTIONS.keras.momentum; // true: 0.99
 */
export const CONVENTIONS: Readonly<Record<Convention, ConventionRules>> = Object.freeze({
  torch: Object.freeze({ momentum: 0.1, eps: 1e-5, momentumOnOld: false, unbiased: true, moreThanOneValue: true, emptyBatchKeeps: true }),
  onnx: Object.freeze({ momentum: 0.9, eps: 1e-5, momentumOnOld: true, unbiased: false, moreThanOneValue: false, emptyBatchKeeps: false }),
  keras: Object.freeze({ momentum: 0.99, eps: 1e-3, momentumOnOld: true, unbiased: false, moreThanOneValue: false, emptyBatchKeeps: false }),
});

/**
 * The weight f of the new batch in `running = (1 - f) * running + f * batch`, for a momentum
 * (null: a cumulative average, f = 1 / batches).
 */
export function newBatchWeight(rules: ConventionRules, momentum: number | null, batches: number): number {
  if (momentum === null) return 1 / batches;
  return rules.momentumOnOld ? 1 - momentum : momentum;
}
