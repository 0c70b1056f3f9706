/**
 * The package's declarations as a TypeScript caller sees them: imported by name ('bnpool', through
 * package.json's "exports" and its "types"), from the build's dist/. Compiled, never run, by
 * test/types.test.ts (`tsc -p test/types`): each `expectType` holds only where the type is exactly
 * the one named, and each `@ts-expect-error` line must be an error, or the compile fails.
 */
import {
  type BatchNormGradients, type BatchNormResult, type BnPoolErrorCode, type ChannelStatsJSON, type FloatArray, type GradientSums,
  type BatchNormsByPrefix, type FromOnnxOptions, type FromTorchFileOptions, type OnnxBatchNorm, type SafetensorsBatchNorm, type SafetensorsOptions, type TorchBatchNorm,
  type TorchFileOptions,
  ArgumentError, AUTO_GRAIN, BatchNorm, batchNorm, batchNormBackward, BnPoolError, ChannelStats, DEFAULT_GRAIN_SIZE, loadSafetensors, loadTorchFile, Pool,
  saveSafetensors, saveTorchFile,
} from 'bnpool';

/** True where A and B are the same type (not merely assignable either way). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
declare function expectType<T extends true>(): void;

export async function outputsFollowTheInputsDtype(pool: Pool): Promise<void> {
  const x32 = pool.alloc(12);
  const x64 = pool.alloc(12, 'float64');
  const pixels = pool.alloc(12, 'uint8');
  expectType<Equal<typeof x32, Float32Array>>();
  expectType<Equal<typeof x64, Float64Array>>();
  expectType<Equal<typeof pixels, Uint8Array>>();

  const bn = new BatchNorm(3, { pool });
  const y = await bn.forward(x32, [4, 3]);
  expectType<Equal<typeof y, Float32Array>>();
  const z = await new BatchNorm(3, { pool, dtype: 'float64' }).forward(x64, [4, 3], { out: pool.alloc(12, 'float64') });
  expectType<Equal<typeof z, Float64Array>>();
  const fromPixels = await bn.eval().forward(pixels, [4, 3]);
  expectType<Equal<typeof fromPixels, Float32Array>>();

  const g = await bn.backward(x32);
  expectType<Equal<typeof g, BatchNormGradients<Float32Array>>>();
  expectType<Equal<typeof g.dx, Float32Array>>();
  expectType<Equal<typeof g.dWeight, Float32Array | null>>();

  const r = await batchNorm(x64, [4, 3], { training: true });
  expectType<Equal<typeof r, BatchNormResult<Float64Array>>>();
  expectType<Equal<typeof r.y, Float64Array>>();
  expectType<Equal<typeof r.mean, Float64Array>>();
  const rPixels = await batchNorm(pixels, [4, 3], { runningMean: r.mean, runningVar: r.var });
  expectType<Equal<typeof rPixels.y, Float32Array>>();
  const b = await batchNormBackward(x32, x32, [4, 3], { mean: r.mean, var: r.var, eps: 1e-5 });
  expectType<Equal<typeof b.dx, Float32Array>>();
  expectType<Equal<typeof b.dWeight, Float64Array>>();

  // An input typed only as one of the two float arrays gives an output of that union.
  const either: FloatArray = Math.random() < 0.5 ? x32 : x64;
  const w = await batchNorm(either, [4, 3], { training: true });
  expectType<Equal<typeof w.y, Float32Array | Float64Array>>();
}

export async function statisticsAndHooks(pool: Pool, x: Float32Array): Promise<void> {
  const stats = await ChannelStats.fromBatch(x, [4, 3], { pool });
  expectType<Equal<typeof stats, ChannelStats>>();
  const json: ChannelStatsJSON = stats.toJSON();
  const back = ChannelStats.fromJSON(JSON.parse(JSON.stringify(json)) as ChannelStatsJSON).merge(stats);
  expectType<Equal<ReturnType<typeof back.variance>, Float64Array>>();
  const bn = new BatchNorm(3, { pool });
  await bn.forward(x, [4, 3], { reduceStats: async (local) => local.merge(await Promise.resolve(local)) });
  const reduceGrads = (local: GradientSums): GradientSums => local;
  await bn.backward(x, { reduceGrads });
}

export async function aPoolClosesAtTheEndOfItsBlock(x: Float32Array): Promise<void> {
  expectType<Equal<ReturnType<Pool[typeof Symbol.asyncDispose]>, Promise<void>>>();
  await using pool = new Pool({ threads: 1 });
  await new BatchNorm(3, { pool }).forward(x, [4, 3]);
}

export async function aModelsBatchNormByItsPrefix(bn: BatchNorm): Promise<void> {
  const options: SafetensorsOptions = { prefix: 'layer1.0.bn1.' };
  await bn.loadSafetensors('model.safetensors', options);
  await bn.saveSafetensors(new URL('file:///tmp/bn.safetensors'), options);
  const found = await BatchNorm.findInSafetensors('model.safetensors');
  expectType<Equal<typeof found, SafetensorsBatchNorm[]>>();
  expectType<Equal<typeof found[number]['dtype'], 'float32' | 'float64'>>();
}

export async function aModelsBatchNormsInOneFile(bn1: BatchNorm, bn2: BatchNorm): Promise<void> {
  const modules: BatchNormsByPrefix = { 'bn1.': bn1, 'layer1.1.': bn2 };
  expectType<Equal<ReturnType<typeof saveSafetensors>, Promise<void>>>();
  await saveSafetensors('bn.safetensors', modules);
  await loadSafetensors(new URL('file:///tmp/bn.safetensors'), modules);
  // @ts-expect-error: modules are BatchNorms by prefix, not a list.
  await loadSafetensors('bn.safetensors', [bn1, bn2]);
}

export async function modulesFromATorchSaveFile(bn1: BatchNorm, bn2: BatchNorm): Promise<void> {
  const found = await BatchNorm.findInTorchFile('checkpoint.pth');
  expectType<Equal<typeof found, TorchBatchNorm[]>>();
  // What a pickled or TorchScript module says of itself, where it says so.
  expectType<Equal<typeof found[0]['momentum'], number | null | undefined>>();
  const listed: SafetensorsBatchNorm = found[0];
  expectType<Equal<typeof listed.prefix, string>>();
  const options: SafetensorsOptions = { prefix: found[0].prefix };
  await bn1.loadTorchFile(new URL('file:///tmp/checkpoint.pth'), options);
  expectType<Equal<ReturnType<typeof loadTorchFile>, Promise<void>>>();
  await loadTorchFile('checkpoint.pth', { 'state_dict.bn1.': bn1, 'state_dict.layer1.1.': bn2 });
  const made = await BatchNorm.fromTorchFile('model.pt', { prefix: '1.', eps: 1e-3 } satisfies FromTorchFileOptions);
  expectType<Equal<typeof made, BatchNorm>>();
  // Written for torch.load: one module, or several under their prefixes; a prefix is a string.
  expectType<Equal<ReturnType<typeof bn1.saveTorchFile>, Promise<void>>>();
  await bn1.saveTorchFile(new URL('file:///tmp/bn.pt'), { prefix: 'bn1.' } satisfies TorchFileOptions);
  expectType<Equal<Parameters<typeof bn1.loadTorchFile>[1], TorchFileOptions | undefined>>();
  expectType<Equal<ReturnType<typeof saveTorchFile>, Promise<void>>>();
  await saveTorchFile('bn.pt', { 'bn1.': bn1, 'layer1.1.': bn2 });
  // @ts-expect-error: modules by prefix, not a list.
  await saveTorchFile('bn.pt', [bn1, bn2]);
  // @ts-expect-error: the prefix is a string.
  await bn1.saveTorchFile('bn.pt', { prefix: 1 });
}

export async function aModuleFromAnOnnxModel(pool: Pool): Promise<void> {
  const found = await BatchNorm.findInOnnx('model.onnx');
  expectType<Equal<typeof found, OnnxBatchNorm[]>>();
  expectType<Equal<typeof found[number]['trainingMode'], boolean>>();
  const options: FromOnnxOptions = { node: found[0].name || found[0].output, pool, layout: 'channels-last' };
  const bn = await BatchNorm.fromOnnx(new URL('file:///tmp/model.onnx'), options);
  expectType<Equal<typeof bn, BatchNorm>>();
  // @ts-expect-error: a node is named by a string.
  await BatchNorm.fromOnnx('model.onnx', { node: 1 });
}

export async function aPoolsGrainIsAutoOrANumber(): Promise<void> {
  await using byDefault = new Pool({ threads: 1 });
  expectType<Equal<typeof byDefault.grainSize, number | 'auto'>>();
  expectType<Equal<typeof DEFAULT_GRAIN_SIZE, 'auto'>>();
  expectType<Equal<typeof AUTO_GRAIN, 65536>>();
  await using auto = new Pool({ threads: 1, grainSize: 'auto' });
  await using numbered = new Pool({ threads: 1, grainSize: 4096 });
  // @ts-expect-error: 'fast' is neither 'auto' nor a number.
  await using refusedGrain = new Pool({ threads: 1, grainSize: 'fast' });
  void [auto, numbered, refusedGrain];
}

export function errorsHaveTheirCodes(err: unknown): BnPoolErrorCode | null {
  if (err instanceof ArgumentError) {
    expectType<Equal<typeof err.code, 'ERR_BNPOOL_ARG'>>();
  }
  return err instanceof BnPoolError ? err.code : null;
}

export async function refused(pool: Pool, x: Float32Array): Promise<void> {
  const bn = new BatchNorm(3, { pool });
  // @ts-expect-error: an Int16Array is neither float input nor 8-bit pixels.
  await bn.forward(new Int16Array(12), [4, 3]);
  // @ts-expect-error: an option the module does not take (a misspelt momentum).
  new BatchNorm(3, { momentun: 0.01 });
  // @ts-expect-error: the layouts are named in full.
  new BatchNorm(3, { layout: 'nhwc' });
  // @ts-expect-error: the conventions are torch, onnx and keras.
  new BatchNorm(3, { convention: 'tensorflow' });
  // @ts-expect-error: the shape is an array of dimensions.
  await bn.forward(x, 12);
  // @ts-expect-error: batchNormBackward needs the forward's mean.
  await batchNormBackward(x, x, [4, 3], { var: new Float64Array(3) });
  // @ts-expect-error: pool.alloc makes float32, float64 or uint8 arrays.
  pool.alloc(12, 'int32');
  // @ts-expect-error: a safetensors file's module is found by its prefix, a string.
  await bn.loadSafetensors('model.safetensors', { prefix: 1 });
}
