/**
 * TensorFlow.js: `tf.moments` + `tf.batchNorm`, on the wasm backend (single-threaded in Node,
 * tfjs issue 3830) or the cpu backend. `dataSync()` reads the output back, as a caller would.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { PeerRunner } from './onnx.js';

type Tf = typeof import('@tensorflow/tfjs-core');

let tf: Tf | null | undefined;
let loadError = '';

export async function loadTfjs(backend: 'wasm' | 'cpu'): Promise<{ ok: true } | { ok: false; reason: string }> {
  const require = createRequire(import.meta.url);
  if (tf === undefined) {
    try {
      tf = require('@tensorflow/tfjs-core') as Tf;
      require('@tensorflow/tfjs-backend-cpu');
      const wasm = require('@tensorflow/tfjs-backend-wasm') as { setWasmPaths(p: string): void };
      wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
    } catch (err) {
      tf = null;
      loadError = (err as Error).message.split('\n')[0];
    }
  }
  if (tf === null) return { ok: false, reason: loadError };
  try {
    if (!(await tf.setBackend(backend))) return { ok: false, reason: `backend ${backend} did not initialise` };
    await tf.ready();
  } catch (err) {
    return { ok: false, reason: (err as Error).message.split('\n')[0] };
  }
  return { ok: true };
}

export function tfjsRunner(x: Float32Array, shape: readonly number[], training: boolean): PeerRunner {
  const api = tf!;
  const C = shape[1];
  const axes = shape.map((_, i) => i).filter((i) => i !== 1);
  const statShape = shape.map((d, i) => (i === 1 ? d : 1));
  const input = api.tensor(x, shape as number[]);
  const scale = api.ones(statShape);
  const offset = api.zeros(statShape);
  const runningMean = api.zeros(statShape);
  const runningVar = api.ones(statShape);
  void C;
  return {
    async run() {
      const y = api.tidy(() => {
        if (!training) return api.batchNorm(input, runningMean, runningVar, offset, scale, 1e-5);
        const { mean, variance } = api.moments(input, axes, true);
        return api.batchNorm(input, mean, variance, offset, scale, 1e-5);
      });
      y.dataSync();
      y.dispose();
    },
    async close() {
      for (const t of [input, scale, offset, runningMean, runningVar]) t.dispose();
    },
  };
}
