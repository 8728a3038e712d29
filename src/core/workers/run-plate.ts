import { compressSlotsBuffer } from '../../archive/compress-limit.js';
import { writeForwarded, type Logger } from '../../log/log.js';
import type { DiskBudget } from '../disk.js';
import type { PlateResult } from '../pool.js';
import {
  deserializeError,
  serializeError,
  type MainMessage,
  type PlateJob,
  type SerializedError,
  type WorkerMessage,
} from './protocol.js';
import { giveBack, takeWorker } from './worker-pool.js';

export interface PlateHooks {
  /** The run's log: the worker's log lines are written where it writes. */
  log: Logger;
  /** Source bytes written for the plate since the last call. */
  progress?: (bytes: number) => void;
  onPlan?: (bytes: number) => void;
  /** The run's tmpdir budget, which the worker reserves from by message. */
  disk?: DiskBudget;
}

type Outcome = Omit<PlateResult, 'seconds'>;

/**
 * Runs one plate on a worker thread of the pool (worker-pool.ts, plate-worker.ts) and resolves
 * with its result, or rejects with its error, typed as it was thrown there. An abort of `signal`
 * is passed on; the worker's own cleanup runs before this settles. A worker that may be in a bad
 * state afterwards (aborted, crashed, ended, or failed with anything but a PlateError) is
 * terminated, and gone once this settles; any other goes back to the pool for the next plate.
 */
export async function runPlateInWorker(
  job: Omit<PlateJob, 'compressSlots' | 'compressHeld'>,
  signal: AbortSignal,
  hooks: PlateHooks,
): Promise<Outcome> {
  const w = takeWorker();
  const { worker } = w;
  const send = (m: MainMessage) => worker.postMessage(m);
  let reusable = false;
  const onAbort = () => send({ type: 'abort', reason: String(errorText(signal.reason)) });
  const holds = new DiskHolds(hooks.disk, send);
  let onMessage: (m: WorkerMessage) => void = () => {};
  let onError: (err: Error) => void = () => {};
  let onExit: (code: number) => void = () => {};
  try {
    return await new Promise<Outcome>((resolve, reject) => {
      onMessage = (m) => {
        if (m.type === 'done' || m.type === 'failed') reusable = !signal.aborted && clean(m);
        if (m.type === 'done') resolve(m.result);
        else if (m.type === 'failed') reject(deserializeError(m.error));
        else relay(m, hooks, holds);
      };
      // An exception nothing in the worker caught, or a thread that ended without a word.
      onError = reject;
      onExit = (code) =>
        reject(new Error(`the plate's worker thread exited (code ${code}) before it finished`));
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      signal.addEventListener('abort', onAbort, { once: true });
      send({
        type: 'job',
        job: { ...job, compressSlots: compressSlotsBuffer(), compressHeld: w.held },
      });
      if (signal.aborted) onAbort();
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
    worker.off('message', onMessage);
    worker.off('error', onError);
    worker.off('exit', onExit);
    holds.releaseAll();
    // An abort sent may reach the worker after its answer: it is not reused either way.
    await giveBack(w, reusable && !signal.aborted);
  }
}

/** A plate's end that leaves its worker fit for the next: done, or a plain PlateError. */
function clean(m: { type: 'done' } | { type: 'failed'; error: SerializedError }): boolean {
  return m.type === 'done' || m.error.name === 'PlateError';
}

/** A message of a plate in flight, to the hook or the budget it is for. */
function relay(m: WorkerMessage, hooks: PlateHooks, holds: DiskHolds): void {
  if (m.type === 'log') writeForwarded(hooks.log, m.line);
  else if (m.type === 'run-log') runLogLine(hooks.log, m.line);
  else if (m.type === 'progress') hooks.progress?.(m.bytes);
  else if (m.type === 'plan') hooks.onPlan?.(m.bytes);
  else if (m.type === 'reserve') holds.reserve(m.id, m.need);
  else if (m.type === 'release') holds.release(m.id);
}

/** The run-log messages already shown, per run log: each plate's thread would say them again. */
const told = new WeakMap<Logger, Set<string>>();

/** A line of a worker's run log, unless a plate of this run already said the same. */
function runLogLine(log: Logger, line: string): void {
  let msg: string;
  try {
    msg = String((JSON.parse(line) as { msg?: unknown }).msg);
  } catch {
    msg = line;
  }
  const seen = told.get(log) ?? new Set<string>();
  told.set(log, seen);
  if (seen.has(msg)) return;
  seen.add(msg);
  writeForwarded(log, line);
}

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/** The main thread's side of a worker's tmpdir reservations. */
class DiskHolds {
  private readonly holds = new Map<number, { cancel: AbortController; release?: () => void }>();

  constructor(
    private readonly disk: DiskBudget | undefined,
    private readonly send: (m: MainMessage) => void,
  ) {}

  reserve(id: number, need: number): void {
    if (!this.disk) {
      this.send({ type: 'reserved', id });
      return;
    }
    const hold: { cancel: AbortController; release?: () => void } = {
      cancel: new AbortController(),
    };
    this.holds.set(id, hold);
    this.disk
      .reserve(need, hold.cancel.signal, () => this.send({ type: 'waiting', id }))
      .then((release) => {
        if (hold.cancel.signal.aborted) return release();
        hold.release = release;
        this.send({ type: 'reserved', id });
      })
      .catch((err: unknown) => {
        if (!hold.cancel.signal.aborted)
          this.send({ type: 'reserve-failed', id, error: serializeError(err) });
      });
  }

  release(id: number): void {
    const hold = this.holds.get(id);
    this.holds.delete(id);
    if (!hold) return;
    if (hold.release) hold.release();
    else hold.cancel.abort();
  }

  /** Whatever the worker still held when it ended. */
  releaseAll(): void {
    for (const id of [...this.holds.keys()]) this.release(id);
  }
}
