import { statfs } from 'node:fs/promises';
import { tarballSizeBound } from '../archive/tarball.js';
import { optionalOutputKeys, outputKeys, type LayoutOptions } from '../layout/layout.js';
import { plateLogger, type Logger } from '../log/log.js';
import type { PlateRow } from '../plates/plates-csv.js';
import type { S3Store } from '../s3/store.js';
import { tarEntries } from './archive.js';
import { checkOwnership, resolveLayout } from './archive-state.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from './pool.js';
import { checkBuckets } from './preflight.js';
import { listSources, sourceFiles } from './sources.js';
import { readVerifiedRecord } from './verify.js';

/** Where a plate stands; plan changes nothing. */
export type PlateState = 'not archived' | 'partial' | 'archived' | 'verified' | 'deleted';

export interface PlanOptions {
  layout: LayoutOptions;
}

/**
 * One plate's sources, state and the tmpdir space archiving it would need: both tarballs may be
 * on disk at once (the first uploads while the second is written), so the sum of their bounds.
 */
export async function planPlate(
  store: S3Store,
  opts: PlanOptions,
  plate: PlateRow,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const L = await resolveLayout(store, opts.layout, plate);
  await checkOwnership(store, opts.layout, L);
  const listed = await listSources(store, L);
  const files = sourceFiles(listed);
  const bytesIn = files.reduce((n, o) => n + o.size, 0);

  const outputs = [...outputKeys(L), ...optionalOutputKeys(L)];
  const present = await Promise.all(
    outputs.map(async (o) => (await store.head(o.bucket, o.key)) !== undefined),
  );
  const complete = present.slice(0, outputKeys(L).length).every(Boolean);
  const record = await readVerifiedRecord(store, L);
  let state: PlateState;
  if (record?.passed === true) {
    const now = new Set(files.map((o) => o.key));
    const remaining = record.objects.filter((o) => now.has(o.key)).length;
    state = record.objects.length > 0 && remaining === 0 ? 'deleted' : 'verified';
  } else if (complete) state = 'archived';
  else if (present.some(Boolean)) state = 'partial';
  else state = 'not archived';

  // Only a plate archive would write needs tmpdir space.
  const tmpdirBytes =
    state === 'not archived'
      ? L.tarballs.reduce((n, t) => {
          const entries = tarEntries(
            L.tag,
            listed.filter((l) => t.sources.includes(l.source)),
          );
          return (
            n + tarballSizeBound(entries.map((e) => ({ size: e.kind === 'file' ? e.size : 0 })))
          );
        }, 0)
      : 0;
  log.info({ files: files.length, bytes: bytesIn, state, tmpdirBytes }, 'planned');
  return {
    plateId: plate.plateId,
    tag: L.tag,
    status: state,
    ...(state === 'not archived' && files.length === 0
      ? { message: 'no objects under its four sources' }
      : {}),
    files: files.length,
    bytesIn,
    bytesOut: 0,
    details: { state, tmpdirBytes },
  };
}

export interface PlanRunOptions extends PlanOptions, RunOptions {}

export async function plan(store: S3Store, opts: PlanRunOptions): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.bucket, opts.layout.coldBucket]);
  return runPlates(
    opts.plates,
    (plate, signal) =>
      planPlate(
        store.withSignal(signal),
        opts,
        plate,
        plateLogger(opts.log, plate.plateId, opts.logDir),
      ),
    // listing is cheap; plan every plate at once
    { ...poolOptions(opts, 'plan'), maxProcs: Math.max(opts.maxProcs, 8) },
  );
}

/** At most maxProcs plates write tarballs at once: the sum of the largest maxProcs needs. */
export function tmpdirNeeded(results: PlateResult[], maxProcs: number): number {
  return results
    .map((r) => Number(r.details?.tmpdirBytes ?? 0))
    .sort((a, b) => b - a)
    .slice(0, Math.max(1, maxProcs))
    .reduce((n, b) => n + b, 0);
}

/** Free bytes for an unprivileged user under dir, or undefined if it cannot be read. */
export async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}
