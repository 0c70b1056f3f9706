/**
 * Several BatchNorms in one `.safetensors` file, each under its prefix, as a model's
 * `state_dict()` names them: what `safetensors.torch.save_file(model.state_dict(), path)` holds of
 * a model's BatchNorms, written from bnpool's modules, and read back into them.
 */
import { writeFile } from 'node:fs/promises';
import { BatchNorm } from './batch-norm.js';
import { checkModuleArrays } from './batch-norm-checks.js';
import type { BatchNormStateDict } from './batch-norm-types.js';
import { ArgumentError, describe } from './errors.js';
import { checkPath } from './files.js';
import { checkPrefix, type ModulesWriter, type NameEncoding, readModulesFile, SAFETENSORS_WRITER } from './weights.js';

/** Modules by the prefix of their keys in a file: `{ 'bn1.': bn1, 'layer1.1.': bn2 }`. */
export type BatchNormsByPrefix = Readonly<Record<string, BatchNorm>>;

/**
 * Writes the modules' state dicts into one `.safetensors` file, each module's keys after its
 * prefix (`{ 'bn1.': bn1 }`: `bn1.weight`, `bn1.bias`, ...), as PyTorch names a model's. A model
 * loads the file with `load_state_dict(..., strict=False)` (the file holds its BatchNorms alone),
 * and `loadSafetensors(path, modules)`, or a module's `loadSafetensors` with its prefix, reads it back.
 *
 * @example
 * await saveSafetensors('bn.safetensors', { 'bn1.': bn1, 'layer1.1.bn.': bn2 });
 * // Python: model.load_state_dict(safetensors.torch.load_file('bn.safetensors'), strict=False)
 */
export async function saveSafetensors(path: string | URL, modules: BatchNormsByPrefix): Promise<void> {
  await saveModules(path, modules, SAFETENSORS_WRITER);
}

/**
 * Writes `modules` into one file, all checked first: the path, then the modules (their prefixes
 * for `writer`'s names), then the bytes `writer` gives written. The free save functions of every
 * format (`saveSafetensors`, `saveTorchFile`) are this with their writer; the save side of
 * loadModules.
 */
export async function saveModules(path: unknown, modules: BatchNormsByPrefix, writer: ModulesWriter): Promise<void> {
  const target = checkPath(path);
  const bytes = writer.encode(modulesOf(modules, writer.names), target);
  await writeFile(target, bytes);
}

/**
 * Loads each module's state from one `.safetensors` file, under its prefix (a model's file, as
 * `safetensors.torch.save_file(model.state_dict(), path)` writes it, or one `saveSafetensors`
 * wrote). It reads the header once and the modules' own tensors alone, and takes for each what a
 * module's `loadSafetensors` takes; every module is checked before any changes, so a file that
 * does not fit one of them changes none (an `ArgumentError`; a malformed file a `FormatError`).
 *
 * @example
 * const found = await BatchNorm.findInSafetensors('model.safetensors');
 * const modules = Object.fromEntries(found.map((f) => [f.prefix, new BatchNorm(f.numFeatures, { affine: f.affine })]));
 * await loadSafetensors('model.safetensors', modules);
 */
export async function loadSafetensors(path: string | URL, modules: BatchNormsByPrefix): Promise<void> {
  await loadModules(path, modules, readModulesFile);
}

/**
 * Loads each module of `modules` from one file, all or none: the path and the modules checked,
 * then `read` gives every module's state dict (each checked), then the modules load. The free
 * functions of every format (`loadSafetensors`, `loadTorchFile`) are this with their reader.
 */
export async function loadModules(
  path: unknown, modules: BatchNormsByPrefix,
  read: (path: string, entries: ReadonlyArray<readonly [string, BatchNorm]>) => Promise<BatchNormStateDict[]>,
): Promise<void> {
  const source = checkPath(path);
  const entries = modulesOf(modules, 'load');
  const states = await read(source, entries);
  // No await from here on: the checks and the loads see the same modules, and all load or none.
  for (const [, m] of entries) checkModuleArrays(m);
  for (const [i, [, m]] of entries.entries()) m.loadStateDict(states[i]);
}

/**
 * `modules` checked for `use` (to load, or to save a format whose names are so written): an
 * object of at least one BatchNorm, each its own module when loading.
 */
function modulesOf(modules: unknown, use: 'load' | NameEncoding): [string, BatchNorm][] {
  const verb = use === 'load' ? 'load' : 'save';
  if (modules === null || typeof modules !== 'object' || Array.isArray(modules) || modules instanceof BatchNorm) {
    throw new ArgumentError(`modules must be an object of BatchNorms by prefix ({ 'bn1.': bn1, ... }); got ${describe(modules)}`);
  }
  const entries = Object.entries(modules);
  if (entries.length === 0) throw new ArgumentError(`modules must name at least one BatchNorm to ${verb}; got an empty object`);
  const seen = new Map<BatchNorm, string>();
  for (const [prefix, m] of entries) {
    checkPrefix(prefix, 'a key of modules', use);
    if (!(m instanceof BatchNorm)) throw new ArgumentError(`modules[${JSON.stringify(prefix)}] must be a BatchNorm; got ${describe(m)}`);
    const other = seen.get(m);
    if (verb === 'load' && other !== undefined) {
      throw new ArgumentError(`modules[${JSON.stringify(prefix)}] is the module of modules[${JSON.stringify(other)}] too: one module loads from one prefix`);
    }
    seen.set(m, prefix);
  }
  return entries;
}
