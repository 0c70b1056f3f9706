/**
 * Several BatchNorms' state from one file `torch.save` (or `torch.jit.save`) wrote, each under
 * its prefix: the free function beside `loadSafetensors` (safetensors-modules.ts), reading
 * through torch-weights.ts.
 */
import { type BatchNormsByPrefix, loadModules } from './safetensors-modules.js';
import { readTorchModules } from './torch-weights.js';

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
