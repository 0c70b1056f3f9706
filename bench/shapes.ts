/** The benchmark shapes (float32, channels-first), from the kernel issue. */
export interface BenchShape {
  readonly id: string;
  readonly shape: readonly number[];
  readonly note: string;
}

export const SHAPES: readonly BenchShape[] = [
  { id: 'A', shape: [32, 64, 112, 112], note: 'ResNet stem' },
  { id: 'B', shape: [256, 256, 14, 14], note: 'deep, small planes' },
  { id: 'C', shape: [64, 3, 224, 224], note: 'few channels' },
  { id: 'D', shape: [8, 16, 32, 32], note: 'small' },
  { id: 'E', shape: [4096, 1024], note: '2-D' },
];

/**
 * A shape named on a command line (`flag` names it in the error): a benchmark shape's id, or any
 * float32 shape, channels first, of rank 2 to 5, its sizes joined by x (`16x64x32x32`).
 */
export function benchShapeOf(arg: string, flag: string): BenchShape {
  const known = SHAPES.find((s) => s.id === arg);
  if (known !== undefined) return known;
  const dims = arg.split('x').map(Number);
  if (dims.length < 2 || dims.length > 5 || dims.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`${flag}: expected a shape id (${SHAPES.map((s) => s.id).join(', ')}) or 2 to 5 sizes joined by x, such as 16x64x32x32; got ${JSON.stringify(arg)}`);
  }
  return { id: arg, shape: dims, note: 'from the command line' };
}

/**
 * The suite's channels-last version of a shape, the same bytes with the channel axis last: of A
 * and C only (the NHWC rows), else null.
 */
export function nhwcOf({ id, shape: d }: BenchShape): number[] | null {
  return id === 'A' || id === 'C' ? [d[0], d[2], d[3], d[1]] : null;
}

export function elementsOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Channel c gets mean c mod 7 - 3 and spread 0.5 to 1.5: seeded, never constant. */
export function fillInput(x: Float32Array, shape: readonly number[]): void {
  const [N, C] = shape;
  const S = x.length / (N * C);
  let seed = 1234567;
  for (let i = 0; i < x.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const c = Math.floor(i / S) % C;
    x[i] = ((c % 7) - 3) + (0.5 + (c % 3) * 0.5) * ((seed / 4294967296) * 3.4641 - 1.732);
  }
}
