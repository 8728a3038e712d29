import { statfs } from 'node:fs/promises';
import pLimit from 'p-limit';
import { tarballSizeBound } from '../archive/tarball.js';
import { optionalOutputKeys, outputKeys, type LayoutOptions } from '../layout/layout.js';
import { withPlateLog, type Logger } from '../log/log.js';
import type { PlateRow } from '../plates/plates-csv.js';
import type { S3Store } from '../s3/store.js';
import { tarEntries } from './archive.js';
import { checkOwnership, resolveLayout } from './archive-state.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from './pool.js';
import { checkBuckets } from './preflight.js';
import { classify, restoreNeed, SOURCE_HEADS_IN_FLIGHT } from './restore/source-objects.js';
import { listSources, sourceFiles } from './sources.js';
import { readVerifiedRecord } from './verify.js';
import { describeHolder, readLease, type LeaseView } from './lifecycle/lease.js';
import { staleGenerations } from './lifecycle/outputs.js';

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
  heads: ReturnType<typeof pLimit> = pLimit(SOURCE_HEADS_IN_FLIGHT),
): Promise<Omit<PlateResult, 'seconds'>> {
  const L = await resolveLayout(store, opts.layout, plate);
  await checkOwnership(store, opts.layout, L);
  const listed = await listSources(store, L, { restoreStatus: true });
  const files = sourceFiles(listed);
  const bytesIn = files.reduce((n, o) => n + o.size, 0);

  const outputs = [...outputKeys(L), ...optionalOutputKeys(L)];
  const found = await Promise.all(outputs.map((o) => store.head(o.bucket, o.key)));
  const present = found.map((h) => h !== undefined);
  const lease = await readLease(store, L.bucket, L.leaseKey);
  const stale = staleGenerations(
    found.flatMap((h) => (h ? [h.generation] : [])),
    lease?.body?.archiveGeneration ?? 0,
  );
  const complete = present.slice(0, outputKeys(L).length).every(Boolean) && stale === undefined;
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
  // Only a plate still to archive reads its sources; the HEADs are for what listings cannot say.
  const restore =
    state === 'not archived' || state === 'partial'
      ? restoreNeed(await classify(store, L.bucket, files, { restoreStatusSeen: false }, heads))
      : undefined;
  log.info({ files: files.length, bytes: bytesIn, state, tmpdirBytes, restore }, 'planned');
  const said =
    state === 'not archived' && files.length === 0
      ? 'no objects under its four sources'
      : restore && restore.objects + restore.inProgress > 0
        ? restoreMessage(restore)
        : undefined;
  const held =
    lease?.body?.state === 'held'
      ? `lease held by ${describeHolder(lease.body)}, expires ${lease.body.expires}`
      : undefined;
  const message = [stale, said, held].filter(Boolean).join('; ') || undefined;
  return {
    plateId: plate.plateId,
    tag: L.tag,
    status: state,
    ...(message ? { message } : {}),
    files: files.length,
    bytesIn,
    bytesOut: 0,
    details: { state, tmpdirBytes, ...(restore ? { restore } : {}), lease: leaseDetails(lease) },
  };
}

/** What plan and --json show of a plate's lease (its wall-clock times, as the holder wrote them). */
export function leaseDetails(view: LeaseView | undefined): Record<string, unknown> | 'none' {
  if (!view) return 'none';
  const b = view.body;
  if (!b) return { state: 'unreadable' };
  return {
    state: b.state,
    holder: `${b.owner.host} pid ${b.owner.pid}`,
    work: b.work,
    generation: b.generation,
    since: b.since,
    expires: b.expires,
  };
}

export interface PlanRunOptions extends PlanOptions, RunOptions {}

export async function plan(store: S3Store, opts: PlanRunOptions): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.bucket, opts.layout.coldBucket]);
  const heads = pLimit(SOURCE_HEADS_IN_FLIGHT);
  return runPlates(
    opts.plates,
    (plate, signal) =>
      withPlateLog(opts.log, plate.plateId, opts.logDir, (log) =>
        planPlate(store.withSignal(signal), opts, plate, log, heads),
      ),
    // listing is cheap; plan every plate at once
    { ...poolOptions(opts, 'plan'), maxProcs: Math.max(opts.maxProcs, 8) },
  );
}

/** "3 source object(s), 1234 bytes need a restore first (GLACIER: 3, 1234 bytes)…" */
function restoreMessage(r: ReturnType<typeof restoreNeed>): string {
  const classes = Object.entries(r.byClass)
    .map(([cls, c]) => `${cls}: ${c.objects}, ${c.bytes} bytes`)
    .join('; ');
  return (
    (r.objects > 0
      ? `${r.objects} source object(s), ${r.bytes} bytes need a restore first (${classes})`
      : 'no source object needs a new restore') +
    (r.inProgress > 0 ? `; ${r.inProgress} restoring` : '') +
    '; see imgbackup restore-request --sources'
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
