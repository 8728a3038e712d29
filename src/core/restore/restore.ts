import { writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import pLimit from 'p-limit';
import { PlateError, UsageError } from '../../errors.js';
import {
  normalizedListing,
  oldScriptPath,
  parseEtagListing,
  parseListing,
  type ListingEntry,
} from '../../integrity/listings.js';
import { listingPath, type LayoutOptions, type PlateLayout } from '../../layout/layout.js';
import type { Logger } from '../../log/log.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import type { ArchiveHead, S3Store } from '../../s3/store.js';
import { checkOwnership, diffListings, LineBag } from '../archive-state.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from '../pool.js';
import { NO_GUARD, openGuard, withClaim, type Guard } from '../lifecycle/plate-life.js';
import { checkBuckets } from '../preflight.js';
import { nameSome } from '../sources.js';
import { coldObjects, type What } from './cold-objects.js';
import { parseIndex, type TarIndex } from '../../archive/tar-index.js';
import { restoreTarball, type TarballJob, type TarballOutcome } from './extract.js';
import { IndexFallback, restoreIndexed } from './indexed.js';
import { pathFilter, type PathFilter } from './glob.js';
import type { Expected, MemberProof } from './member-check.js';
import { describeState, isReadable } from './state.js';
import { DirTarget, S3Target, type Target } from './targets.js';
import { restoreInWorker } from '../workers/jobs.js';

export type Destination =
  { kind: 's3'; bucket: string; prefix: string } | { kind: 'dir'; dir: string };

export interface RestoreOptions extends RunOptions {
  layout: LayoutOptions;
  what: What;
  to: Destination;
  includes: string[];
  excludes: string[];
  overwrite: boolean;
  dryRun: boolean;
  toolVersion: string;
  /** A plate's restore starts: the tarball bytes it will read. */
  onPlan?: (plateId: string, totalBytes: number) => void;
  /** Tarball bytes a plate read since its last call. */
  progress?: (plateId: string, bytes: number) => void;
}

/** What a plate's restore needs, all read before anything is written (plain data: it crosses to a worker). */
export interface Prepared {
  L: PlateLayout;
  tarballs: {
    t: PlateLayout['tarballs'][number];
    head: ArchiveHead;
    md5: string;
    /** With --include: the tarball's index, or why there is none to use. */
    index: TarIndex | string;
  }[];
  /** The tar listing's entries of the selected tarballs. */
  listing: ListingEntry[];
  expected: Map<string, Expected>;
}

export interface RestoredRecord {
  plateId: string;
  tag: string;
  time: string;
  tool: string;
  to: string;
  what: What;
  includes: string[];
  excludes: string[];
  tarballs: { key: string; md5: string; read: string }[];
  counts: { written: number; skipped: number; folders: number; bytesWritten: number };
  /**
   * How many members each proof covered. The member list was compared with the listing: as
   * read from each tarball streamed whole, or, for one read through its index (`tarballs[].read`
   * says which), the index's list, against which the tar header of each file read was checked.
   */
  checks: Record<MemberProof, number> & { tarballMd5: number; memberListEqualsListing: boolean };
}

function notReadable(
  L: PlateLayout,
  o: { key: string; cls: string; state: Parameters<typeof describeState>[0] },
) {
  const where = `s3://${L.coldBucket}/${o.key}`;
  if (o.state.state === 'in progress')
    return new PlateError(
      `${where} (${o.cls}): restore in progress; wait with imgbackup restore-status --wait`,
    );
  return new PlateError(
    `${where} is in ${o.cls} and not restored (never requested, or its restore expired): run imgbackup restore-request`,
  );
}

/** Is this listing entry in the backend tarball? (old listings' paths may be cut at a space) */
function inBackend(L: PlateLayout, e: ListingEntry): boolean {
  const backend = listingPath(L.sources[3]!.prefix);
  return e.path.startsWith(backend) || e.path.startsWith(oldScriptPath(backend));
}

async function prepare(store: S3Store, opts: RestoreOptions, plate: PlateRow): Promise<Prepared> {
  const p = await coldObjects(store, opts.layout, plate, opts.what);
  const { L } = p;
  // Tags are not unique: another plate's tarballs would restore under this plate's name, and
  // their listing would prove them complete.
  await checkOwnership(store, opts.layout, L);
  for (const o of p.objects) {
    if (o.role !== 'etag' && !isReadable(o.state)) throw notReadable(L, o);
  }
  const tarballs = [];
  for (const t of p.tarballs) {
    const head = p.objects.find((o) => o.key === t.key)!.head;
    const md5 = ((await store.getText(L.coldBucket, t.md5Key)) ?? '').split(' ')[0] ?? '';
    if (!/^[0-9a-f]{32}$/.test(md5))
      throw new PlateError(
        `s3://${L.coldBucket}/${t.md5Key} holds no md5; cannot check the tarball`,
      );
    tarballs.push({ t, head, md5, index: await readIndex(store, opts, L, t) });
  }
  const listingText = await store.getText(L.bucket, L.tarListingKey);
  if (listingText === undefined) {
    throw new PlateError(
      `s3://${L.bucket}/${L.tarListingKey} is missing: without it the restore cannot be proven complete`,
    );
  }
  const all = parseListing(listingText);
  const listing =
    opts.what === 'all' ? all : all.filter((e) => inBackend(L, e) === (opts.what === 'backend'));
  const etagText = await store.getText(L.bucket, L.etagListingKey);
  const expected = new Map<string, Expected>(
    (etagText ? parseEtagListing(etagText) : []).map((e) => [
      e.path,
      { size: e.size, etag: e.etag },
    ]),
  );
  return { L, tarballs, listing, expected };
}

/** The tarball's index when --include may use it; else why the tarball is streamed whole. */
async function readIndex(
  store: S3Store,
  opts: RestoreOptions,
  L: PlateLayout,
  t: PlateLayout['tarballs'][number],
): Promise<TarIndex | string> {
  if (opts.includes.length === 0) return 'no --include';
  const text = await store.getText(L.bucket, t.indexKey);
  if (text === undefined) return 'it has no index (archived without one)';
  try {
    return parseIndex(text);
  } catch (err) {
    return `its index s3://${L.bucket}/${t.indexKey} is unreadable (${(err as Error).message})`;
  }
}

interface ReadTarball extends TarballOutcome {
  /** How the tarball was read: through its index (bytes fetched), or whole and why. */
  how: string;
  /** Read whole, so its md5 was checked. */
  whole: boolean;
}

/**
 * Through the index when there is one to use; else, or when it does not hold for a wanted
 * file, the tarball is streamed whole (files already restored through it are skipped then).
 */
async function readTarball(
  job: TarballJob,
  index: TarIndex | string,
  listing: ListingEntry[],
): Promise<ReadTarball> {
  let why = index;
  if (typeof index !== 'string') {
    try {
      const r = await restoreIndexed(job, index, listing);
      return {
        ...r,
        how: `read through its index: ${r.bytesRead} of ${job.head.size} bytes`,
        whole: false,
      };
    } catch (err) {
      if (!(err instanceof IndexFallback)) throw err;
      why = err.message;
    }
  }
  const r = await restoreTarball(job);
  return { ...r, how: `streamed whole: ${why}`, whole: true };
}

/** The members equal the stored listing: exactly (imgbackup), or as cut paths (old script). */
function checkMembers(members: ListingEntry[], listing: ListingEntry[]): void {
  if (normalizedListing(members) === normalizedListing(listing)) return;
  const bag = new LineBag(listing);
  const old = members.every((m) => bag.take({ path: oldScriptPath(m.path), size: m.size }));
  if (old && bag.lines().length === 0) return;
  throw new PlateError(
    `the tarballs' members differ from the tar listing: ${nameSome(diffListings(listing, members))}`,
  );
}

function recordWhere(opts: Pick<RestoreOptions, 'to'>, L: PlateLayout): string {
  if (opts.to.kind === 'dir')
    return join(dirname(opts.to.dir), `${basename(opts.to.dir)}.${L.tag}_restored.json`);
  return `s3://${L.bucket}/${L.verifiedKey.replace(/_verified\.json$/, '_restored.json')}`;
}

async function writeRecord(
  store: S3Store,
  opts: Pick<RestoreOptions, 'to'>,
  L: PlateLayout,
  r: RestoredRecord,
) {
  const text = `${JSON.stringify(r, null, 1)}\n`;
  if (opts.to.kind === 'dir') await writeFile(recordWhere(opts, L), text);
  else
    await store.put(L.bucket, L.verifiedKey.replace(/_verified\.json$/, '_restored.json'), text, {
      contentType: 'application/json',
    });
}

async function target(store: S3Store, to: Destination): Promise<Target> {
  if (to.kind === 'dir') return DirTarget.create(to.dir);
  return new S3Target(store, to.bucket, `${to.prefix}projects/`);
}

/** What one plate's restore takes of the run's options (a worker is handed these). */
export type RestorePlateOptions = Pick<
  RestoreOptions,
  | 'to'
  | 'what'
  | 'includes'
  | 'excludes'
  | 'overwrite'
  | 'dryRun'
  | 'toolVersion'
  | 'onPlan'
  | 'progress'
>;

/** One prepared plate's restore, on this thread (a plate's worker calls it). */
export function restorePrepared(
  store: S3Store,
  opts: RestorePlateOptions,
  prep: Prepared,
  guard: Guard,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const filter = pathFilter(opts.includes, opts.excludes);
  return restoreClaimed(store, opts, prep, filter, guard, log);
}

/**
 * Held while it writes, so no delete of the plate's sources runs meanwhile; the objects it
 * writes back are the user's own, as they were: no generation is added to them.
 */
function restoreClaimed(
  store: S3Store,
  opts: RestorePlateOptions,
  prep: Prepared,
  filter: PathFilter,
  guard: Guard,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const claim = { guard, work: 'restore' as const, log, stamp: false };
  return withClaim(store, prep.L, claim, (_c, s) => restorePlate(s, opts, prep, filter));
}

async function restorePlate(
  store: S3Store,
  opts: RestorePlateOptions,
  prep: Prepared,
  filter: PathFilter,
): Promise<Omit<PlateResult, 'seconds'>> {
  const { L } = prep;
  const wanted = prep.listing.filter((e) => filter.wants(e.path));
  const base = {
    plateId: L.plate.plateId,
    tag: L.tag,
    files: wanted.length,
    filesBytes: wanted.reduce((n, e) => n + e.size, 0),
  };
  const dest =
    opts.to.kind === 'dir' ? opts.to.dir : `s3://${opts.to.bucket}/${opts.to.prefix}projects/`;
  if (opts.dryRun) {
    return {
      ...base,
      status: 'planned',
      bytesIn: prep.tarballs.reduce((n, t) => n + t.head.size, 0),
      bytesOut: base.filesBytes,
      message: `would restore ${wanted.length} file(s), ${base.filesBytes} bytes, to ${dest}`,
    };
  }
  const t = await target(store, opts.to);
  const id = L.plate.plateId;
  opts.onPlan?.(
    id,
    prep.tarballs.reduce((n, tb) => n + tb.head.size, 0),
  );
  const outcomes: ReadTarball[] = [];
  for (const tb of prep.tarballs) {
    const listing = prep.listing.filter((e) => inBackend(L, e) === (tb.t.name === 'backend'));
    outcomes.push(
      await readTarball(
        {
          store,
          coldBucket: L.coldBucket,
          tag: L.tag,
          compressed: L.compressed,
          tarball: tb.t,
          head: tb.head,
          md5: tb.md5,
          expected: prep.expected,
          filter,
          target: t,
          overwrite: opts.overwrite,
          ...(opts.progress ? { progress: (n: number) => opts.progress!(id, n) } : {}),
        },
        tb.index,
        listing,
      ),
    );
  }
  checkMembers(
    outcomes.flatMap((o) => o.members),
    prep.listing,
  );
  const sum = (f: (o: TarballOutcome) => number) => outcomes.reduce((n, o) => n + f(o), 0);
  const conflicts = outcomes.flatMap((o) => o.conflicts);
  if (conflicts.length > 0) {
    throw new PlateError(
      `${conflicts.length} file(s) already there with other bytes, left alone (--overwrite replaces them): ${nameSome(conflicts)}`,
    );
  }
  const unprovable = outcomes.flatMap((o) => o.unprovable);
  if (unprovable.length > 0) {
    throw new PlateError(
      `${unprovable.length} file(s) already there with other bytes were left alone even with --overwrite: the archive records no ETag that proves their bytes before the whole tarball is read, and a replaced object could not be put back if that check then failed: ${nameSome(unprovable)}; restore them under --to-prefix or --to-dir and compare`,
    );
  }
  const counts = {
    written: sum((o) => o.written),
    skipped: sum((o) => o.skipped),
    folders: sum((o) => o.folders),
    bytesWritten: sum((o) => o.bytesWritten),
  };
  // With --include, say how each tarball was read: a fallback to the whole tarball costs time.
  const reads =
    opts.includes.length === 0
      ? ''
      : `; ${outcomes.map((o, i) => `${prep.tarballs[i]!.t.fileName} ${o.how}`).join('; ')}`;
  const record: RestoredRecord = {
    plateId: L.plate.plateId,
    tag: L.tag,
    time: new Date().toISOString(),
    tool: `imgbackup ${opts.toolVersion}`,
    to: dest,
    what: opts.what,
    includes: opts.includes,
    excludes: opts.excludes,
    tarballs: prep.tarballs.map((tb, i) => ({
      key: tb.t.key,
      md5: tb.md5,
      read: outcomes[i]!.how,
    })),
    counts,
    checks: {
      md5: sum((o) => o.proofs.md5),
      'multipart-etag': sum((o) => o.proofs['multipart-etag']),
      'tarball-md5': sum((o) => o.proofs['tarball-md5']),
      tarballMd5: outcomes.filter((o) => o.whole).length,
      memberListEqualsListing: true,
    },
  };
  await writeRecord(store, opts, L, record);
  return {
    ...base,
    status: 'restored',
    message: `${counts.written} written, ${counts.skipped} already there (same bytes) to ${dest}; record ${recordWhere(opts, L)}${reads}`,
    bytesIn: prep.tarballs.reduce((n, tb) => n + tb.head.size, 0),
    bytesOut: counts.bytesWritten,
    details: { ...counts, checks: record.checks },
  };
}

/**
 * Reads every plate's state first (tarballs readable, md5s, listings), so that an --include
 * matching nothing stops the run before anything is written; then restores plate by plate.
 */
export async function restore(store: S3Store, opts: RestoreOptions): Promise<PlateResult[]> {
  await checkBuckets(store, [
    opts.layout.bucket,
    opts.layout.coldBucket,
    ...(opts.to.kind === 's3' ? [opts.to.bucket] : []),
  ]);
  const filter = pathFilter(opts.includes, opts.excludes);
  const limit = pLimit(Math.max(1, opts.maxProcs));
  const prepared = await Promise.all(
    opts.plates.map((plate) =>
      limit(() =>
        prepare(store, opts, plate).then(
          (r) => ({ ok: true as const, r }),
          (err: unknown) => ({ ok: false as const, err }),
        ),
      ),
    ),
  );
  for (const p of prepared) if (!p.ok && !(p.err instanceof PlateError)) throw p.err;
  const ready = prepared.flatMap((p) => (p.ok ? [p.r] : []));
  if (ready.length > 0) {
    const none = filter.unmatchedIncludes(ready.flatMap((p) => p.listing.map((e) => e.path)));
    if (none.length > 0)
      throw new UsageError(
        `--include ${none.map((g) => JSON.stringify(g)).join(', ')} matches no archived file of these plates (globs match paths like P/B/images/<plate>/file.tiff)`,
      );
  }
  const byPlate = new Map<PlateRow, (typeof prepared)[number]>();
  opts.plates.forEach((p, i) => byPlate.set(p, prepared[i]!));
  const guard = opts.dryRun ? NO_GUARD : await openGuard(store, opts);
  return runPlates(
    opts.plates,
    async (plate, signal) => {
      const p = byPlate.get(plate)!;
      if (!p.ok) throw p.err;
      // A plate that moves bytes gets an event loop of its own, as in archive; it claims the
      // plate there.
      if (opts.s3 && !opts.dryRun) return restoreInWorker(opts, opts.s3, plate, p.r, guard, signal);
      const log = opts.log.child({ plate: plate.plateId });
      return restoreClaimed(store.withSignal(signal), opts, p.r, filter, guard, log);
    },
    poolOptions(opts, 'restore'),
  );
}
