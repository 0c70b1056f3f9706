/**
 * onnxruntime-node's CPU `BatchNormalization` (opset 15). training_mode 1 returns the batch-
 * normalized output and running statistics (ONNX convention); 0 uses the given statistics.
 */
import { createRequire } from 'node:module';
import { batchNormModel } from './onnx-model.js';

type Ort = typeof import('onnxruntime-node');

export interface PeerRunner {
  run(): Promise<void>;
  close(): Promise<void>;
}

let ort: Ort | null | undefined;
let loadError = '';

export function loadOnnx(): { ok: true } | { ok: false; reason: string } {
  if (ort === undefined) {
    try {
      ort = createRequire(import.meta.url)('onnxruntime-node') as Ort;
    } catch (err) {
      ort = null;
      loadError = (err as Error).message.split('\n')[0];
    }
  }
  return ort === null ? { ok: false, reason: loadError } : { ok: true };
}

export async function onnxRunner(x: Float32Array, shape: readonly number[], training: boolean, threads: number): Promise<PeerRunner> {
  const api = ort!;
  const C = shape[1];
  const session = await api.InferenceSession.create(batchNormModel(shape, { training, epsilon: 1e-5, momentum: 0.9 }), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const vec = (fill: number) => new api.Tensor('float32', new Float32Array(C).fill(fill), [C]);
  const feeds = {
    X: new api.Tensor('float32', x, shape as number[]),
    scale: vec(1), B: vec(0), input_mean: vec(0), input_var: vec(1),
  };
  return {
    async run() {
      const out = await session.run(feeds);
      if ((out.Y.data as Float32Array).length !== x.length) throw new Error('onnxruntime: bad output length');
    },
    async close() {
      await session.release();
    },
  };
}
