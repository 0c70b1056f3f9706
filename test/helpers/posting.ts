/**
 * The tasks a pool posts to its workers, seen by wrapping piscina's `run` (every pool's: the
 * prototype's), and edited on their way where a test needs a worker to get something else.
 */
import { Piscina } from 'piscina';

/** What the tests read of a posted task: its op, and the memory's length it was posted with. */
export type Sent = { op: string; memoryBytes: number };

/**
 * Runs `body` with piscina's `run` wrapped: every task posted to a worker is pushed on `sent`
 * (which `body` gets), after `edit` made what the worker gets of it, if given.
 */
export async function posting(body: (sent: Sent[]) => Promise<void>, edit?: (task: Sent) => object): Promise<Sent[]> {
  const sent: Sent[] = [];
  const run = Piscina.prototype.run;
  Piscina.prototype.run = function recordedRun(this: Piscina, task: Sent, options?: object) {
    sent.push(task);
    return run.call(this, edit === undefined ? task : edit(task), options);
  } as typeof run;
  try {
    await body(sent);
  } finally {
    Piscina.prototype.run = run;
  }
  return sent;
}
