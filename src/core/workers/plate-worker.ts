// Entry of a plate's worker thread: one plate of archive or verify on an event loop of its own,
// with its own S3 client, reporting to the main thread by messages (core/workers/run-plate.ts).
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { shareCompressSlots } from '../../archive/compress-limit.js';
import { gzipEngine } from '../../archive/gzip-engine.js';
import { forwardingLogger, plateLogger, type Logger } from '../../log/log.js';
import { createS3Client } from '../../s3/client.js';
import { S3Store } from '../../s3/store.js';
import type { PlateResult } from '../pool.js';
import { RemoteDiskBudget } from './remote-disk.js';
import { serializeError, type MainMessage, type PlateJob, type WorkerMessage } from './protocol.js';

/** Progress is summed and sent this often, not per chunk: the main thread only renders it. */
const PROGRESS_MS = 200;

async function runJob(
  job: PlateJob,
  store: S3Store,
  log: Logger,
  port: MessagePort,
  hooks: { progress: (n: number) => void; disk?: RemoteDiskBudget; runLog: Logger },
): Promise<Omit<PlateResult, 'seconds'>> {
  const send = (m: WorkerMessage) => port.postMessage(m);
  if (job.work.command === 'verify') {
    const { verifyPlate } = await import('../verify.js');
    return verifyPlate(store, job.work.opts, job.plate, log);
  }
  if (job.work.command === 'restore') {
    const { restorePrepared } = await import('../restore/restore.js');
    return restorePrepared(
      store,
      {
        ...job.work.opts,
        progress: (_plate, n) => hooks.progress(n),
        onPlan: (_plate, bytes) => send({ type: 'plan', bytes }),
      },
      job.work.prep,
      job.work.guard,
      log,
    );
  }
  const { archivePlate } = await import('../archive.js');
  const { engine, diskCapacity, ...opts } = job.work.opts;
  void diskCapacity;
  return archivePlate(
    store,
    {
      ...opts,
      ...(engine ? { engine: gzipEngine(engine, opts.level) } : {}),
      ...(hooks.disk ? { disk: hooks.disk } : {}),
      log: hooks.runLog,
      progress: (_plate, n) => hooks.progress(n),
      onPlan: (_plate, bytes) => send({ type: 'plan', bytes }),
    },
    job.plate,
    log,
  );
}

async function main(port: MessagePort, job: PlateJob): Promise<void> {
  const send = (m: WorkerMessage) => port.postMessage(m);
  shareCompressSlots(job.compressSlots, job.compressHeld);
  const ctl = new AbortController();
  const capacity = job.work.command === 'archive' ? job.work.opts.diskCapacity : undefined;
  const disk = capacity === undefined ? undefined : new RemoteDiskBudget(capacity, port);
  port.on('message', (m: MainMessage) => {
    if (m.type === 'abort') ctl.abort(new Error(m.reason));
    else disk?.answer(m);
  });
  let progressed = 0;
  const flush = () => {
    if (progressed > 0) send({ type: 'progress', bytes: progressed });
    progressed = 0;
  };
  const ticker = setInterval(flush, PROGRESS_MS);
  // Lines for stderr are written by the main thread, where the progress display is drawn.
  const base = forwardingLogger(job.logLevel, (line) => send({ type: 'log', line }));
  const runLog = forwardingLogger(job.logLevel, (line) => send({ type: 'run-log', line }));
  // restore keeps no plate log (in-process it never did).
  const log =
    job.work.command === 'restore'
      ? base.child({ plate: job.plate.plateId })
      : plateLogger(base, job.plate.plateId, job.logDir);
  const client = createS3Client(job.s3);
  try {
    const result = await runJob(job, new S3Store(client, ctl.signal), log, port, {
      progress: (n) => (progressed += n),
      runLog,
      ...(disk ? { disk } : {}),
    });
    flush();
    send({ type: 'done', result });
  } catch (err) {
    // Requests of the plate still in flight stop now, as they do when a plate fails in-process.
    ctl.abort(err);
    flush();
    send({ type: 'failed', error: serializeError(err) });
  } finally {
    clearInterval(ticker);
    client.destroy();
  }
}

if (parentPort) void main(parentPort, workerData as PlateJob);
