/**
 * The tasks a pool posts to its workers, seen by wrapping piscina's `run` (every pool's: the
 * prototype's), and edited on their way where a test needs a worker to get something else, or
 * refused (faults.test.ts).
 */
import { Piscina } from 'piscina';

/** What the tests read of a posted task: its op, and the memory's length it was posted with. */
export type Sent = { op: string; memoryBytes: number };

/** piscina's own `run`, called on the pool that posts. */
export type Run = (task: unknown, options?: object) => Promise<unknown>;

/**
 * Runs `body` with piscina's `run` replaced by `replacement`, which gets each task, its options,
 * piscina's own `run` (bound to the posting pool) and that pool (a bnpool Pool's own piscina);
 * piscina's is put back as `body` settles.
 */
export async function wrappingRun<T>(
  replacement: (task: unknown, options: object | undefined, run: Run, poster: Piscina) => Promise<unknown>, body: () => Promise<T>,
): Promise<T> {
  const run = Piscina.prototype.run;
  Piscina.prototype.run = function wrappedRun(this: Piscina, task: unknown, options?: object) {
    return replacement(task, options, (t, o) => run.call(this, t, o), this);
  } as typeof run;
  try {
    return await body();
  } finally {
    Piscina.prototype.run = run;
  }
}

/**
 * Runs `body` with piscina's `run` wrapped: every task posted to a worker is pushed on `sent`
 * (which `body` gets), after `edit` made what the worker gets of it, if given.
 */
export async function posting(body: (sent: Sent[]) => Promise<void>, edit?: (task: Sent) => object): Promise<Sent[]> {
  const sent: Sent[] = [];
  await wrappingRun((task, options, run) => {
    sent.push(task as Sent);
    return run(edit === undefined ? task : edit(task as Sent), options);
  }, () => body(sent));
  return sent;
}
