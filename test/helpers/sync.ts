/** Helpers of the SyncBatchNorm tests (reduceStats, reduceGrads). */

/** An in-process all-reduce among two callers: each resolves to `combine` of both parts. */
export function rendezvous<T>(combine: (parts: T[]) => T): (part: T) => Promise<T> {
  let parts: T[] = [];
  let waiting: ((value: T) => void)[] = [];
  return (part) => new Promise<T>((resolve) => {
    parts.push(part);
    waiting.push(resolve);
    if (parts.length === 2) {
      const result = combine(parts);
      for (const w of waiting) w(result);
      parts = [];
      waiting = [];
    }
  });
}
