import { Worker } from 'node:worker_threads';
import { compressSlotsBuffer, newSlotCell, returnSlots } from '../../archive/compress-limit.js';
import { writeForwarded, type Logger } from '../../log/log.js';
import type { DiskBudget } from '../disk.js';
import type { PlateResult } from '../pool.js';
import {
  deserializeError,
  serializeError,
  type MainMessage,
  type PlateJob,
  type WorkerMessage,
} from './protocol.js';

/**
 * Each worker has a heap of its own; V8's default young generation (up to 48 MB on 64-bit) is
 * sized for one loop per process. Measured at --max-procs 4 (npm run bench): 8 MB cut peak RSS
 * from ~600 to ~525 MB at the same CPU (its objects are small; the bytes are Buffers outside it).
 */
const WORKER_YOUNG_GENERATION_MB = 8;

export interface PlateHooks {
  /** The run's log: the worker's log lines are written where it writes. */
  log: Logger;
  /** Source bytes written for the plate since the last call. */
  progress?: (bytes: number) => void;
  onPlan?: (bytes: number) => void;
  /** The run's tmpdir budget, which the worker reserves from by message. */
  disk?: DiskBudget;
}

/**
 * Runs one plate on a worker thread of its own (plate-worker.ts) and resolves with its result,
 * or rejects with its error, typed as it was thrown there. An abort of `signal` is passed on;
 * the worker's own cleanup runs before this settles, and the thread is gone once it has.
 */
export async function runPlateInWorker(
  job: Omit<PlateJob, 'compressSlots' | 'compressHeld'>,
  signal: AbortSignal,
  hooks: PlateHooks,
): Promise<Omit<PlateResult, 'seconds'>> {
  const held = newSlotCell();
  const worker = new Worker(new URL('./plate-worker.js', import.meta.url), {
    workerData: {
      ...job,
      compressSlots: compressSlotsBuffer(),
      compressHeld: held,
    } satisfies PlateJob,
    name: `plate ${job.plate.plateId}`,
    resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
  });
  const send = (m: MainMessage) => worker.postMessage(m);
  const onAbort = () => send({ type: 'abort', reason: String(errorText(signal.reason)) });
  const holds = new DiskHolds(hooks.disk, send);
  try {
    return await new Promise<Omit<PlateResult, 'seconds'>>((resolve, reject) => {
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) onAbort();
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'log') writeForwarded(hooks.log, m.line);
        else if (m.type === 'run-log') runLogLine(hooks.log, m.line);
        else if (m.type === 'progress') hooks.progress?.(m.bytes);
        else if (m.type === 'plan') hooks.onPlan?.(m.bytes);
        else if (m.type === 'reserve') holds.reserve(m.id, m.need);
        else if (m.type === 'release') holds.release(m.id);
        else if (m.type === 'done') resolve(m.result);
        else reject(deserializeError(m.error));
      });
      // An exception nothing in the worker caught, or a thread that ended without a word.
      worker.on('error', reject);
      worker.on('exit', (code) =>
        reject(new Error(`the plate's worker thread exited (code ${code}) before it finished`)),
      );
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
    holds.releaseAll();
    await worker.terminate();
    returnSlots(held);
  }
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
