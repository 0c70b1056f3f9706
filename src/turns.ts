/**
 * Turns of the event loop between calls made at once on the calling thread. Each call holds the
 * thread a fraction of a millisecond, but calls made together (a server's burst of requests,
 * awaited together) follow one another on microtasks alone: 64 evals of 224x224 RGB images held
 * the event loop 10-13 ms in one piece here. So the thread keeps a clock that starts with the
 * first call or step after its last turn, and past INLINE_TURN_MS a call that comes waits for a
 * turn first, as copies wait between slices of COPY_SLICE_BYTES (placement.ts). A lone call
 * never waits: the clock starts again at each turn.
 *
 * Inline calls run one at a time, in the order they came: a call that comes while another one
 * admitted since the last turn runs waits for it to finish (or for the turn), and then checks the
 * clock. Calls started together would otherwise all pass the check before any of them had run,
 * and the clock would hold none of them (README, "Small inputs"). Waiting never outlasts the next
 * turn, which admits the first call in line whatever runs: a call parked on a caller's hook (a
 * synced backward's all-reduce) may be waiting for the very calls behind it.
 *
 * Calls on the workers run at once, and their steps on this thread (starting, each slice of a
 * copy, posting tasks) check the clock instead (`stepDue`): where other calls stepped since the
 * last turn and the clock has run out, a step waits for a turn.
 */
import { abortError } from './abort.js';

/**
 * The longest the calling thread runs bnpool's calls between two turns (inline calls, and the
 * steps of those on the workers), measured from the first call or step after a turn to the start
 * of the next. A turn cost a loop of awaited calls ~40 µs here;
 * until this clock, a count of 2,097,152 elements held the calls between turns, which assumed the
 * data in cache: calls over arrays of their own (a burst's distinct requests) took 0.98-1.92 ns an
 * element here, 2-4 ms for that count (README, "Small inputs").
 */
export const INLINE_TURN_MS = 1;

/** An inline call admitted to run; `done()` once, as it has finished, however it ended. */
export interface InlineSlot {
  done(): void;
}

/** A call waiting for its turn to run inline; `wake` makes it check again. */
interface Waiter {
  wake: () => void;
}

/** Inline calls admitted since the calling thread's last turn. */
let admitted = 0;
/** When the clock started: the first inline call or step since the last turn (performance.now()). */
let since = 0;
/** Admitted since the last turn and still running. */
let running = 0;
/** Turns seen so far: a slot admitted before the latest counts no more in `running`. */
let turns = 0;
/** The first call that took a step on the workers' side since the last turn (see `stepDue`). */
let stepper: object | null = null;
/** Whether another call took one since, too. */
let stepped = false;
/** The immediate that marks the next turn; null where none is set. */
let turn: NodeJS.Immediate | null = null;
/** Calls waiting, first come first. */
const line: Waiter[] = [];

/** At each turn the clock starts again, and the first call in line checks again. */
function turned(): void {
  turn = null;
  turns++;
  admitted = 0;
  running = 0;
  stepper = null;
  stepped = false;
  line[0]?.wake();
}

/** The time now; the clock starts with the first step or call since the last turn. */
function clock(): { now: number; turn: NodeJS.Immediate } {
  const now = performance.now();
  if (turn === null) {
    since = now;
    // Unref'd: a turn that no call waits for keeps no process alive.
    turn = setImmediate(turned).unref();
  }
  return { now, turn };
}

/**
 * Whether a call on the workers should wait for a turn before its next step on the calling
 * thread (a slice of a copy, or posting its tasks): INLINE_TURN_MS or more have passed since the
 * first step or inline call after the last turn, and another call (`caller`, the call's own
 * token) took a step since. Calls started together take their steps together, each its copy in
 * and its posts; a lone call never waits here (its copies still pause between slices of
 * COPY_SLICE_BYTES).
 */
export function stepDue(caller: object): boolean {
  const { now } = clock();
  if (stepper === null) stepper = caller;
  else if (stepper !== caller) stepped = true;
  return (stepped || admitted > 0) && now - since >= INLINE_TURN_MS;
}

/**
 * Admits a call where it may run now: no call waits before it, none admitted since the last turn
 * still runs, and no call or step came before it since the turn, or it comes within
 * INLINE_TURN_MS of the clock's start; a `continued` call always. Null where it must wait.
 */
function admit(continued: boolean, waiting: Waiter | null): InlineSlot | null {
  const { now, turn } = clock();
  const first = line.length === 0 || line[0] === waiting;
  if (!continued && (!first || running > 0 || ((admitted > 0 || stepper !== null) && now - since >= INLINE_TURN_MS))) {
    // A call that waits keeps the process alive until its turn comes.
    turn.ref();
    return null;
  }
  admitted++;
  running++;
  const at = turns;
  return {
    done: () => {
      if (at !== turns) return;
      running--;
      if (running === 0) line[0]?.wake();
    },
  };
}

/**
 * A slot where an inline call may run now; else a promise of one, once it may (after the calls
 * before it finished, or after one or more turns of the event loop), or that rejects with an
 * AbortError where `signal` fires meanwhile (the call has done nothing yet). A `continued` call
 * (the second part of one that was admitted at its start: a synced forward's normalization) runs
 * now: a lone call never waits.
 */
function inlineTurn(signal: AbortSignal | null, continued = false): InlineSlot | Promise<InlineSlot> {
  return admit(continued, null) ?? wait(signal);
}

/** Waits in line until the call is admitted, or rejects as `signal` fires (the call leaves the line). */
function wait(signal: AbortSignal | null): Promise<InlineSlot> {
  return new Promise<InlineSlot>((resolve, reject) => {
    const me: Waiter = {
      wake: () => {
        const slot = admit(false, me);
        if (slot === null) return;
        leave();
        resolve(slot);
      },
    };
    const onAbort = (): void => {
      leave();
      reject(abortError(signal));
    };
    const leave = (): void => {
      signal?.removeEventListener('abort', onAbort);
      const at = line.indexOf(me);
      if (at >= 0) line.splice(at, 1);
      // The call behind may run now where nothing else holds it (a call admitted, or the clock).
      if (at === 0 && running === 0) line[0]?.wake();
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    line.push(me);
  });
}

/** Runs `call` as an inline call: once admitted (`inlineTurn`), its slot given back however it ends. */
export async function whenAdmitted<T>(signal: AbortSignal | null, continued: boolean, call: () => Promise<T>): Promise<T> {
  const taken = inlineTurn(signal, continued);
  const slot = taken instanceof Promise ? await taken : taken;
  try {
    return await call();
  } finally {
    slot.done();
  }
}
