import type { PlateRow } from '../../plates/plates-csv.js';
import type { S3Options } from '../../s3/client.js';
import type { ArchiveRunOptions } from '../archive.js';
import type { PlateResult } from '../pool.js';
import type { VerifyRunOptions } from '../verify.js';
import type { Prepared, RestoreOptions } from '../restore/restore.js';
import type { Guard } from '../lifecycle/plate-life.js';
import type { ArchiveJob, PlateJob } from './protocol.js';
import { runPlateInWorker } from './run-plate.js';

type Result = Promise<Omit<PlateResult, 'seconds'>>;

function common(
  opts: { log: { level: string }; logDir?: string },
  s3: S3Options,
  plate: PlateRow,
): Omit<PlateJob, 'compressSlots' | 'compressHeld' | 'work'> {
  return { plate, s3, logLevel: opts.log.level, ...(opts.logDir ? { logDir: opts.logDir } : {}) };
}

/** One plate of archive on a worker thread of its own. */
export function archiveInWorker(
  opts: ArchiveRunOptions,
  s3: S3Options,
  plate: PlateRow,
  signal: AbortSignal,
): Result {
  // Only data crosses, named one by one: a callback or other option added to a run (such as
  // archive --restore-sources' own) stays on this thread instead of failing to clone.
  const { log, engine, progress, onPlan, disk } = opts;
  const work: ArchiveJob = {
    command: 'archive',
    opts: {
      layout: opts.layout,
      tmpdir: opts.tmpdir,
      level: opts.level,
      readAhead: opts.readAhead,
      ...(opts.guard ? { guard: opts.guard } : {}),
      ...(opts.dryRun !== undefined ? { dryRun: opts.dryRun } : {}),
      ...(opts.stream !== undefined ? { stream: opts.stream } : {}),
      ...(engine ? { engine: engine.name } : {}),
      ...(disk ? { diskCapacity: disk.capacity } : {}),
    },
  };
  return runPlateInWorker({ ...common(opts, s3, plate), work }, signal, {
    ...(progress ? { progress: (n: number) => progress(plate.plateId, n) } : {}),
    ...(onPlan ? { onPlan: (n: number) => onPlan(plate.plateId, n) } : {}),
    ...(disk ? { disk } : {}),
    log,
  });
}

/** One plate of verify on a worker thread of its own. */
export function verifyInWorker(
  opts: VerifyRunOptions,
  s3: S3Options,
  plate: PlateRow,
  signal: AbortSignal,
): Result {
  const work = {
    command: 'verify' as const,
    opts: {
      layout: opts.layout,
      deep: opts.deep,
      toolVersion: opts.toolVersion,
      ...(opts.guard ? { guard: opts.guard } : {}),
    },
  };
  return runPlateInWorker({ ...common(opts, s3, plate), work }, signal, { log: opts.log });
}

/** One prepared plate of restore on a worker thread of its own. */
export function restoreInWorker(
  opts: RestoreOptions,
  s3: S3Options,
  plate: PlateRow,
  prep: Prepared,
  guard: Guard,
  signal: AbortSignal,
): Result {
  const { to, what, includes, excludes, overwrite, dryRun, toolVersion, progress, onPlan } = opts;
  const work = {
    command: 'restore' as const,
    opts: { to, what, includes, excludes, overwrite, dryRun, toolVersion },
    prep,
    guard,
  };
  const id = plate.plateId;
  return runPlateInWorker({ ...common(opts, s3, plate), work }, signal, {
    ...(progress ? { progress: (n: number) => progress(id, n) } : {}),
    ...(onPlan ? { onPlan: (n: number) => onPlan(id, n) } : {}),
    log: opts.log,
  });
}
