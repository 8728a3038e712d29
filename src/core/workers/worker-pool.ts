// The plate worker threads of the process, kept between plates: starting one and loading the
// plate's modules (the SDK, pino, the addon) costs about as much CPU as a small plate's work.
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { newSlotCell, returnSlots } from '../../archive/compress-limit.js';

/**
 * Each worker has a heap of its own; V8's default young generation (up to 48 MB on 64-bit) is
 * sized for one loop per process. Measured at --max-procs 4 (npm run bench): 8 MB cut peak RSS
 * from ~600 to ~525 MB at the same CPU (its objects are small; the bytes are Buffers outside it).
 */
const WORKER_YOUNG_GENERATION_MB = 8;

/**
 * A plate's heap is small (~12 MB live), but every socket read is a new Buffer and V8 counts
 * those bytes against the old generation's limit, which starts near twice the live heap: a full
 * mark-compact every ~12 MB a plate moved. Starting at 48 MB halves them; measured (npm run
 * bench, README): 6–18 % less CPU, ~10–15 MB more peak RSS per plate in flight. Node has no
 * Worker option for it (resourceLimits holds only maxima); V8 reads the flag as each isolate
 * is created, and the plate workers are the only isolates this process creates after startup.
 */
const WORKER_INITIAL_OLD_GENERATION_MB = 48;
let heapFlagSet = false;

export interface PlateWorker {
  worker: Worker;
  /** The compression slots this worker holds (compress-limit.ts), for its whole life. */
  held: SharedArrayBuffer;
  /** It raised an error or ended: never handed out again. */
  gone: boolean;
}

/**
 * Workers waiting for a plate. A plate takes one or starts one, so there are never more alive
 * than plates running at once: `--max-procs N` means at most N threads.
 */
const idle: PlateWorker[] = [];

/** A worker for one plate, ref()'d while it runs it. */
export function takeWorker(): PlateWorker {
  const w = idle.pop() ?? startWorker();
  w.worker.ref();
  return w;
}

function startWorker(): PlateWorker {
  if (!heapFlagSet) {
    setFlagsFromString(`--initial-old-space-size=${WORKER_INITIAL_OLD_GENERATION_MB}`);
    heapFlagSet = true;
  }
  const worker = new Worker(new URL('./plate-worker.js', import.meta.url), {
    name: 'plate worker',
    resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
  });
  const w: PlateWorker = { worker, held: newSlotCell(), gone: false };
  // Always listened to (an 'error' nobody listens to would throw on this thread); the plate
  // running on it, if any, listens too and fails with the message (run-plate.ts).
  const lost = () => {
    w.gone = true;
    const i = idle.indexOf(w);
    if (i >= 0) idle.splice(i, 1);
  };
  worker.on('error', lost);
  worker.on('exit', lost);
  return w;
}

/**
 * After its plate: back to the idle list if `reusable` (the plate ended cleanly) and it holds
 * no compression slot, else terminated, and whatever slots it held given back. Resolves once a
 * terminated thread is gone, so the next plate cannot find one more thread alive than running.
 */
export async function giveBack(w: PlateWorker, reusable: boolean): Promise<void> {
  if (reusable && !w.gone && Atomics.load(new Int32Array(w.held), 0) === 0) {
    // An idle worker never keeps the process alive: the run ends when its plates have.
    w.worker.unref();
    idle.push(w);
    return;
  }
  w.gone = true;
  await w.worker.terminate();
  returnSlots(w.held);
}
