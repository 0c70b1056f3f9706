/**
 * Several BatchNorms' state from one file `torch.save` (or `torch.jit.save`) wrote, each under
 * its prefix, and into one file `torch.load` reads: the free functions beside `loadSafetensors`
 * and `saveSafetensors` (safetensors-modules.ts), reading through torch-weights.ts and writing
 * through torch-save.ts.
 */
import { type BatchNormsByPrefix, loadModules, saveModules } from './safetensors-modules.js';
import { readTorchModules } from './torch-weights.js';
import { TORCH_FILE_WRITER } from './weights.js';

/**
 * Loads each module's state from one file `torch.save` wrote, under its prefix (`{ 'bn1.': bn1,
 * 'layer1.0.bn1.': bn2 }`, as the model's `state_dict()` names them; a checkpoint dict's
 * entries add theirs: `'state_dict.bn1.'`). It reads the pickle once and the modules' own
 * storages alone, and checks every module before any changes: a file that does not fit one of
 * them changes none (an `ArgumentError`; a malformed file a `FormatError`).
 *
 * @example
 * // Python: torch.save(model.state_dict(), 'model.pt')
 * const found = await BatchNorm.findInTorchFile('model.pt');
 * const modules = Object.fromEntries(found.map((f) => [f.prefix, new BatchNorm(f.numFeatures, { affine: f.affine })]));
 * await loadTorchFile('model.pt', modules);
 */
export async function loadTorchFile(path: string | URL, modules: BatchNormsByPrefix): Promise<void> {
  await loadModules(path, modules, readTorchModules);
}

/**
 * Writes the modules' state dicts into one file `torch.load` reads, each module's keys after its
 * prefix (`{ 'bn1.': bn1 }`: `bn1.weight`, `bn1.bias`, ...), as `torch.save(model.state_dict(),
 * path)` writes a model's: a model loads it with `load_state_dict(torch.load(path),
 * strict=False)` (the file holds its BatchNorms alone), and `loadTorchFile(path, modules)`
 * reads it back.
 *
 * @example
 * await saveTorchFile('bn.pt', { 'bn1.': bn1, 'layer1.1.bn.': bn2 });
 * // Python: model.load_state_dict(torch.load('bn.pt'), strict=False)
 */
export async function saveTorchFile(path: string | URL, modules: BatchNormsByPrefix): Promise<void> {
  await saveModules(path, modules, TORCH_FILE_WRITER);
}
