/**
 * A module's state from a file `torch.save` wrote (`.pt`, `.pth`, `.ckpt`), or `torch.jit.save`:
 * a model's `state_dict()`, a checkpoint dict that holds one, or a pickled model, read by torch-file.ts;
 * and the BatchNorms such a file holds. The same checks and messages as for `.safetensors`
 * files (tensor-states.ts).
 */
import type { BatchNormOptions, BatchNormStateDict } from './batch-norm-types.js';
import { ArgumentError, FormatError } from './errors.js';
import { checkPath } from './files.js';
import type { Module } from './state-dict.js';
import { batchNormsIn, heldModules, type SafetensorsBatchNorm, statesOf } from './tensor-states.js';
import { type TorchFile, type TorchModuleSettings, withTorchFile } from './torch-file.js';
import { checkEps, checkMomentum, checkObject } from './validate.js';
import { checkPrefix, loadModuleFile, type SafetensorsOptions, saveModuleFile, TORCH_FILE_WRITER } from './weights.js';

/** The call that lists a `torch.save` file's BatchNorms, as messages name it. */
const FINDER = 'BatchNorm.findInTorchFile';

/**
 * A BatchNorm of a file `torch.save` or `torch.jit.save` wrote, as `BatchNorm.findInTorchFile`
 * finds it: what `findInSafetensors` tells, and what a pickled or TorchScript module says of
 * itself (absent where the file does not say: a state dict says none of them).
 */
export interface TorchBatchNorm extends SafetensorsBatchNorm, TorchModuleSettings {}

/** The BatchNorms a file opened holds, by prefix, each with what the file says of its settings. */
function torchBatchNormsIn(file: TorchFile): TorchBatchNorm[] {
  return batchNormsIn(file.tensors).map((found) => ({ ...found, ...file.modules.get(found.prefix) }));
}

/** `BatchNorm.findInTorchFile(path)`: the BatchNorms whose state the file holds, by prefix, with what the file says of their settings. */
export async function findBatchNormsInTorchFile(path: unknown): Promise<TorchBatchNorm[]> {
  const source = checkPath(path);
  return withTorchFile(source, async (file) => torchBatchNormsIn(file));
}

/** Each module's state dict from the file, under its prefix, all checked before any is returned. */
export function readTorchModules(path: string, modules: ReadonlyArray<readonly [string, Module]>): Promise<BatchNormStateDict[]> {
  return withTorchFile(path, (file) => statesOf(file.tensors, modules, { where: path, finder: FINDER }, (t) => file.bytesOf(t)));
}

/** `bn.loadTorchFile(path, options)`: the module's state from the file, under `options.prefix`. */
export async function loadTorchFileInto(m: Module, path: unknown, options: unknown): Promise<void> {
  await loadModuleFile(m, path, options, readTorchModules);
}

/**
 * Options of `bn.loadTorchFile` and `bn.saveTorchFile`: those of the `.safetensors` calls, the
 * module's keys' `prefix` in the file (`'layer1.0.bn1.'`).
 */
export type TorchFileOptions = SafetensorsOptions;

/** `bn.saveTorchFile(path, options)`: the state dict to a file `torch.load` reads, its keys after `options.prefix`. */
export async function saveTorchFileOf(m: Module, path: unknown, options: unknown): Promise<void> {
  await saveModuleFile(m, path, options, TORCH_FILE_WRITER);
}

/** Options of `BatchNorm.fromTorchFile`: the module's prefix in the file, and the module's options (BatchNormOptions). */
export interface FromTorchFileOptions extends BatchNormOptions {
  /**
   * The module's keys' prefix (`'layer1.0.bn1.'`), as `findInTorchFile` lists it. Needed only
   * where the file holds more than one BatchNorm.
   */
  prefix?: string;
}

/** `BatchNorm.fromTorchFile`'s options, split: the prefix, and the module's options. */
export function splitFromTorchFileOptions(options: unknown): { prefix: string | undefined; moduleOptions: BatchNormOptions } {
  const { prefix, ...moduleOptions } = checkObject(options, 'options') as FromTorchFileOptions;
  return { prefix: prefix === undefined ? undefined : checkPrefix(prefix, 'options.prefix', 'load'), moduleOptions };
}

/**
 * One BatchNorm of a `torch.save` file, made and loaded: the module the file holds under `prefix`
 * (or its only one), made by `make` from what the file says of it (channels, affine, dtype, and a
 * pickled module's eps, momentum and mode; those the `given` options leave to the file checked:
 * a `FormatError` where no module takes them), then loaded with its state. Nothing is made where
 * the file has no such module.
 */
export async function readTorchBatchNorm<M extends Module>(
  path: unknown, prefix: string | undefined, given: BatchNormOptions, make: (found: TorchBatchNorm) => M,
): Promise<M> {
  const where = checkPath(path);
  return withTorchFile(where, async (file) => {
    const all = torchBatchNormsIn(file);
    let found: TorchBatchNorm | undefined;
    if (prefix !== undefined) {
      found = all.find((f) => f.prefix === prefix);
      if (found === undefined) {
        throw new ArgumentError(`options.prefix ${JSON.stringify(prefix)} names no BatchNorm in ${where}; ${heldModules(file.tensors, FINDER).held}`);
      }
    } else if (all.length === 1) {
      found = all[0];
    } else {
      throw new ArgumentError(all.length === 0
        ? `${where} holds no BatchNorm's running statistics`
        : `${where} holds ${all.length} BatchNorms (${heldModules(file.tensors, FINDER).listed}): options.prefix picks one`);
    }
    try {
      // Only what the caller's options leave to the file.
      if (found.eps !== undefined && given.eps === undefined) checkEps(found.eps, 'its eps');
      if (found.momentum !== undefined && given.momentum === undefined) checkMomentum(found.momentum, true, 'its momentum');
    } catch (err) {
      throw new FormatError(`the pickled module ${JSON.stringify(found.prefix)} in ${where}: ${(err as Error).message}`);
    }
    const m = make(found);
    const [sd] = await statesOf(file.tensors, [[found.prefix, m]], { where, finder: FINDER }, (t) => file.bytesOf(t));
    m.loadStateDict(sd);
    return m;
  });
}
