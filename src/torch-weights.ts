/**
 * A module's state from a file `torch.save` wrote (`.pt`, `.pth`, `.ckpt`): a model's
 * `state_dict()`, a checkpoint dict that holds one, or a pickled model, read by torch-file.ts;
 * and the BatchNorms such a file holds. The same checks and messages as for `.safetensors`
 * files (tensor-states.ts).
 */
import type { BatchNormStateDict } from './batch-norm-types.js';
import { checkPath } from './files.js';
import type { Module } from './state-dict.js';
import { batchNormsIn, type SafetensorsBatchNorm, statesOf } from './tensor-states.js';
import { withTorchFile } from './torch-file.js';
import { checkSafetensorsOptions } from './weights.js';

/** The call that lists a `torch.save` file's BatchNorms, as messages name it. */
const FINDER = 'BatchNorm.findInTorchFile';

/** `BatchNorm.findInTorchFile(path)`: the BatchNorms whose state the file holds, by prefix. */
export function findBatchNormsInTorchFile(path: unknown): Promise<SafetensorsBatchNorm[]> {
  return withTorchFile(checkPath(path), async (file) => batchNormsIn(file.tensors));
}

/** Each module's state dict from the file, under its prefix, all checked before any is returned. */
export function readTorchModules(path: string | URL, modules: ReadonlyArray<readonly [string, Module]>): Promise<BatchNormStateDict[]> {
  return withTorchFile(path, (file) => statesOf(file.tensors, modules, { where: String(path), finder: FINDER }, (t) => file.bytesOf(t)));
}

/** `bn.loadTorchFile(path, options)`: the module's state from the file, under `options.prefix`. */
export async function loadTorchFileInto(m: Module, path: unknown, options: unknown): Promise<void> {
  const source = checkPath(path);
  const prefix = checkSafetensorsOptions(options);
  const [sd] = await readTorchModules(source, [[prefix, m]]);
  m.loadStateDict(sd);
}
