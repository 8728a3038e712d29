// Entry of a plate worker thread: plates of archive, verify or restore, one at a time, each on
// this event loop with its own S3 client, reporting to the main thread by messages
// (core/workers/run-plate.ts). The thread is kept between plates (worker-pool.ts), so whatever
// a plate sets up here is undone before its answer.
import { parentPort, type MessagePort } from 'node:worker_threads';
import { shareCompressSlots } from '../../archive/compress-limit.js';
import { gzipEngine } from '../../archive/gzip-engine.js';
import { forwardingLogger, openPlateLog, type Logger, type PlateLog } from '../../log/log.js';
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

/** One plate: its answer (done or failed) is sent only once everything it opened is closed. */
async function runPlate(port: MessagePort, job: PlateJob): Promise<void> {
  const send = (m: WorkerMessage) => port.postMessage(m);
  // The run's counter and this worker's cell, as the main thread handed them for this plate.
  shareCompressSlots(job.compressSlots, job.compressHeld);
  const ctl = new AbortController();
  const capacity = job.work.command === 'archive' ? job.work.opts.diskCapacity : undefined;
  const disk = capacity === undefined ? undefined : new RemoteDiskBudget(capacity, port);
  const onMessage = (m: MainMessage) => {
    if (m.type === 'abort') ctl.abort(new Error(m.reason));
    else if (m.type !== 'job') disk?.answer(m);
  };
  port.on('message', onMessage);
  let progressed = 0;
  const flush = () => {
    if (progressed > 0) send({ type: 'progress', bytes: progressed });
    progressed = 0;
  };
  const ticker = setInterval(flush, PROGRESS_MS);
  const { log, close } = plateLog(job, send);
  const client = createS3Client(job.s3);
  let answer: WorkerMessage;
  try {
    const result = await runJob(job, new S3Store(client, ctl.signal), log, port, {
      progress: (n) => (progressed += n),
      runLog: forwardingLogger(job.logLevel, (line) => send({ type: 'run-log', line })),
      ...(disk ? { disk } : {}),
    });
    answer = { type: 'done', result };
  } catch (err) {
    // Requests of the plate still in flight stop now, as they do when a plate fails in-process.
    ctl.abort(err);
    answer = { type: 'failed', error: serializeError(err) };
  } finally {
    clearInterval(ticker);
    port.off('message', onMessage);
    client.destroy();
    close();
  }
  flush();
  send(answer);
}

/** The plate's logger: lines for stderr go to the main thread, which draws the progress display. */
function plateLog(job: PlateJob, send: (m: WorkerMessage) => void): PlateLog {
  const base = forwardingLogger(job.logLevel, (line) => send({ type: 'log', line }));
  // restore keeps no plate log (in-process it never did).
  if (job.work.command === 'restore') {
    return { log: base.child({ plate: job.plate.plateId }), close: () => {} };
  }
  return openPlateLog(base, job.plate.plateId, job.logDir);
}

/** Jobs run one after another: the main thread sends the next only after this one's answer. */
function serve(port: MessagePort): void {
  let turn = Promise.resolve();
  port.on('message', (m: MainMessage) => {
    if (m.type === 'job') turn = turn.then(() => runPlate(port, m.job));
  });
}

if (parentPort) serve(parentPort);
