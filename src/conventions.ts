/**
 * The three running-statistics conventions users port weights between.
 *
 * | | momentum weights | default momentum | default eps | running variance |
 * | --- | --- | --- | --- | --- |
 * | torch (`nn.BatchNorm*`) | the new batch | 0.1 | 1e-5 | unbiased (m / (m - 1)) |
 * | onnx (`BatchNormalization`, opset 15, training_mode 1) | the old value | 0.9 | 1e-5 | biased |
 * | keras (`layers.BatchNormalization`) | the old value | 0.99 | 1e-3 | biased |
 *
 * So with the same number, torch's momentum m is onnx's and keras's 1 - m.
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
  torch: Object.freeze({ momentum: 0.1, eps: 1e-5, momentumOnOld: false, unbiased: true }),
  onnx: Object.freeze({ momentum: 0.9, eps: 1e-5, momentumOnOld: true, unbiased: false }),
  keras: Object.freeze({ momentum: 0.99, eps: 1e-3, momentumOnOld: true, unbiased: false }),
});

/**
 * The weight f of the new batch in `running = (1 - f) * running + f * batch`, for a momentum
 * (null: a cumulative average, f = 1 / batches).
 */
export function newBatchWeight(rules: ConventionRules, momentum: number | null, batches: number): number {
  if (momentum === null) return 1 / batches;
  return rules.momentumOnOld ? 1 - momentum : momentum;
}
