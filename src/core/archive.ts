import { rm } from 'node:fs/promises';
import pLimit from 'p-limit';
import { join } from 'node:path';
import { errorMessage, PlateError, UsageError } from '../errors.js';
import { TarballWriter, tarballSizeBound } from '../archive/tarball.js';
import { formatIndex, type TarIndex } from '../archive/tar-index.js';
import { partSizeFor, type EtagResult } from '../integrity/etag.js';
import {
  deleteScript,
  etagFile,
  etagListing,
  md5File,
  normalizedListing,
  rawListingLine,
} from '../integrity/listings.js';
import {
  listingPath,
  tarPath,
  type LayoutOptions,
  type PlateLayout,
  type TarballLayout,
} from '../layout/layout.js';
import { withPlateLog, type Logger } from '../log/log.js';
import type { PlateRow } from '../plates/plates-csv.js';
import { ArchivedObjectError } from '../s3/read-object.js';
import { CLEANUP_TIMEOUT_MS, httpStatus, type ObjectInfo, type S3Store } from '../s3/store.js';
import { FileUpload, type KeyClaim, MultipartSink } from '../s3/upload.js';
import {
  gzipEngine,
  slowerDefault,
  type GzipEngine,
  type GzipEngineName,
} from '../archive/gzip-engine.js';
import { sourceBodies, type SourceReadOptions } from './source-bodies.js';
import {
  isFolderMarker,
  listSources,
  nameSome,
  sourceFiles,
  type ListedSource,
} from './sources.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from './pool.js';
import { DiskBudget, freeBytes } from './disk.js';
import { checkOwnership, plateOwner, resolveLayout } from './archive-state.js';
import { abortStaleUploads, inProgressRecord, removeStaleLocal } from './resume.js';
import {
  NO_GUARD,
  openGuard,
  withClaim,
  type Guard,
  type PlateClaim,
} from './lifecycle/plate-life.js';
import {
  clearMarker,
  probeOutputs,
  refuseForeignPartial,
  removeOutputs,
  tidyCompleted,
  type Tidied,
  type OutputState,
} from './lifecycle/outputs.js';
import { checkBuckets, checkTmpdir } from './preflight.js';
import { archiveInWorker } from './workers/jobs.js';

export { GZIP_ENGINES, type GzipEngineName } from '../archive/gzip-engine.js';

export interface ArchiveOptions {
  layout: LayoutOptions;
  tmpdir: string;
  /** gzip level, 1 (fastest) to 9. */
  level: number;
  /** What compresses the gzip blocks; by default the fastest one built for the level. */
  engine?: GzipEngine;
  readAhead: SourceReadOptions;
  log: Logger;
  /** Called with each chunk of source bytes written into a tarball. */
  progress?: (plateId: string, bytes: number) => void;
  /** Called once a plate's sources are listed, with the source bytes it will write. */
  onPlan?: (plateId: string, totalBytes: number) => void;
  /** List and report what would be archived; write nothing, locally or on S3. */
  dryRun?: boolean;
  /** Upload parts while each tarball is produced: nothing is written to the tmpdir. */
  stream?: boolean;
  /** The tmpdir space plates share; none with --stream. */
  disk?: DiskBudget;
  /** How plates are kept from two runs at once (the run's lease probe); none for a dry run. */
  guard?: Guard;
}

/**
 * The gzip engine for a run at `level`: the one named, or the fastest one built for the level,
 * with `fallback` saying what a faster one would need when it is not built.
 */
export function chooseGzipEngine(
  name: GzipEngineName | undefined,
  level: number,
): { engine: GzipEngine; fallback?: string } {
  let engine: GzipEngine;
  try {
    engine = gzipEngine(name, level);
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  const fallback = name === undefined ? slowerDefault(level) : undefined;
  return fallback ? { engine, fallback } : { engine };
}

export { DEFAULT_READ_AHEAD } from './source-bodies.js';

/** HEADs in flight when looking for objects that need a restore. */
const HEAD_CONCURRENCY = 32;

type Entry =
  | { kind: 'dir'; name: string; mtime: Date }
  | { kind: 'file'; name: string; obj: ObjectInfo; size: number };

/**
 * The tar entries of one tarball: every file, plus a directory entry for each source folder and
 * every folder below it (as `tar -c` of the downloaded tree would write), sorted by byte order.
 */
export function tarEntries(tag: string, listed: ListedSource[]): Entry[] {
  const dirs = new Map<string, Date>();
  const files: Entry[] = [];
  for (const { source, objects } of listed) {
    for (const o of objects) {
      // Each folder from the source root down to the object's parent (or the marker itself).
      const rel = o.key.slice(source.prefix.length);
      const parts = rel.split('/');
      parts.pop();
      let dir = source.prefix;
      const chain = [dir, ...parts.map((p) => (dir = `${dir}${p}/`))];
      for (const d of chain) {
        const name = tarPath(tag, d);
        const seen = dirs.get(name);
        if (!seen || seen < o.lastModified) dirs.set(name, o.lastModified);
      }
      if (!isFolderMarker(o))
        files.push({ kind: 'file', name: tarPath(tag, o.key), obj: o, size: o.size });
    }
  }
  const entries: Entry[] = [
    ...[...dirs].map(([name, mtime]) => ({ kind: 'dir' as const, name, mtime })),
    ...files,
  ];
  return entries.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
}

interface BuiltTarball {
  layout: TarballLayout;
  claim: KeyClaim;
  path: string;
  hash: EtagResult;
  tarListing: string;
  index: TarIndex;
  /** The upload of the local file, started while it was written; none with --stream. */
  upload: FileUpload | undefined;
}

export async function archivePlate(
  store: S3Store,
  opts: ArchiveOptions,
  plate: PlateRow,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const L = await resolveLayout(store, opts.layout, plate);
  // Outputs under this tag may be another plate's (tags are not unique): never redo or tidy them.
  await checkOwnership(store, opts.layout, L);
  const guard = opts.dryRun ? NO_GUARD : (opts.guard ?? NO_GUARD);
  return withClaim(store, L, { guard, work: 'archive', log, tmpdir: opts.tmpdir }, (claim, s) =>
    archiveClaimed(s, opts, plate, L, claim, log),
  );
}

const TIDIED_MESSAGE: Record<Tidied, string> = {
  nothing: 'already archived; nothing changed',
  lock: 'already archived; removed the lock left in the tmpdir by the run that archived it',
  marker: 'already archived; removed the in-progress marker and lock of the run that archived it',
};

/** The plate's archive, once it is claimed: outputs probed, sources listed, work, publish. */
async function archiveClaimed(
  store: S3Store,
  opts: ArchiveOptions,
  plate: PlateRow,
  L: PlateLayout,
  claim: PlateClaim,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const base = { plateId: plate.plateId, tag: L.tag };
  const state = await probeOutputs(store, L, claim);
  if (state.complete) {
    // A run killed after the plate's last output landed leaves its marker or lock behind.
    const tidied = opts.dryRun
      ? 'nothing'
      : await tidyCompleted(
          store,
          claim,
          state.interrupted,
          { tmpdir: opts.tmpdir, L },
          log,
          opts.log,
        );
    return {
      ...base,
      status: 'skipped',
      message: TIDIED_MESSAGE[tidied],
      files: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
  }
  if (state.stale) log.warn({ why: state.stale }, 'the outputs there are partial');
  refuseForeignPartial(state);

  const listed = await listSources(store, L);
  const files = sourceFiles(listed);
  if (files.length === 0) {
    throw new PlateError(
      `no objects under its four sources (${L.sources.map((s) => `s3://${L.bucket}/${s.prefix}`).join(', ')}); check the plate ids and --project-name/--batch-id`,
    );
  }
  const bytesIn = files.reduce((n, o) => n + o.size, 0);
  log.info({ files: files.length, bytes: bytesIn }, 'listed sources');
  if (opts.dryRun) return dryRunResult(base, L, listed, files.length, bytesIn);
  opts.onPlan?.(plate.plateId, bytesIn);

  const release = await reserveTmpdir(opts, L, listed, log, store.signal);
  try {
    await claim.beginWrites();
    const built = await writeOutputs(store, opts, L, state, listed, plate, claim, log);
    return {
      ...base,
      status: 'archived',
      files: files.length,
      bytesIn,
      bytesOut: built.reduce((n, b) => n + b.hash.size, 0),
      details: Object.fromEntries(
        built.map((b) => [
          b.layout.name,
          { key: b.layout.key, etag: b.hash.etag, md5: b.hash.md5, bytes: b.hash.size },
        ]),
      ),
    };
  } finally {
    release();
  }
}

function dryRunResult(
  base: { plateId: string; tag: string },
  L: PlateLayout,
  listed: ListedSource[],
  files: number,
  bytesIn: number,
): Omit<PlateResult, 'seconds'> {
  const tarballs = L.tarballs.map((t) => {
    const tFiles = sourceFiles(listed.filter((l) => t.sources.includes(l.source)));
    return {
      bucket: L.coldBucket,
      key: t.key,
      files: tFiles.length,
      bytes: tFiles.reduce((n, o) => n + o.size, 0),
    };
  });
  return {
    ...base,
    status: 'planned',
    message: `dry run: would write ${tarballs.map((t) => `s3://${t.bucket}/${t.key}`).join(', ')}`,
    files,
    bytesIn,
    bytesOut: 0,
    details: { dryRun: true, tarballs },
  };
}

/**
 * Holding the plate (lock or lease): removes what an interrupted run left, writes the marker,
 * the tarballs, their sums and the listings, the delete script last. On failure it removes
 * what it wrote, the marker last; a lost lease stops it without removing anything.
 */
async function writeOutputs(
  store: S3Store,
  opts: ArchiveOptions,
  L: PlateLayout,
  state: OutputState,
  listed: ListedSource[],
  plate: PlateRow,
  claim: PlateClaim,
  log: Logger,
): Promise<BuiltTarball[]> {
  const files = sourceFiles(listed);
  const built: BuiltTarball[] = [];
  const written = new Written();
  const claims = new Map<TarballLayout, KeyClaim>();
  try {
    // Holding the plate, whatever an earlier run of this plate left is stale: redo it cleanly.
    await removeStaleLocal(opts.tmpdir, L);
    await abortStaleUploads(store, L, log, opts.log);
    if (state.interrupted || state.present.some(Boolean)) {
      log.warn('redoing a plate whose earlier archive run was interrupted');
      // Its marker stays (ours replaces it next), so a failure here still reads as ours.
      const theirs = state.probed.filter((k, i) => state.present[i] && k.key !== L.inProgressKey);
      const left = await removeOutputs(store, L, theirs, log);
      if (left) throw new PlateError(`its interrupted run's outputs could not be removed: ${left}`);
    }
    // Not cut short by Ctrl-C: a PUT aborted in flight may still land after the cleanup has
    // removed the marker, leaving it behind. It is one small request, bounded like cleanup.
    await written.put(
      store.withSignal(AbortSignal.timeout(CLEANUP_TIMEOUT_MS)),
      L.bucket,
      L.inProgressKey,
      inProgressRecord(plateOwner(opts.layout, plate)),
      { overwrite: true },
    );
    await writeTarballs(store, opts, L, listed, plate, log, built, written, claims);
    await publish(store, L, listed, files, built, written);
    // Still holding the plate: a marker removed after the release could be the next run's.
    await clearMarker(store, L, log);
    return built;
  } catch (err) {
    // Another run holds the plate now: what is there may be its own. Nothing more is removed.
    const lost = claim.lost();
    if (lost) throw lost;
    // Remove this run's partial output so a re-run starts clean instead of finding a partial
    // archive: what this run wrote, and each tarball whose final write was sent and is not
    // someone else's. The in-progress marker goes last, once the rest is gone.
    const tarballs = [...claims]
      .filter(([, claim]) => claim.sent && !claim.taken)
      .map(([t]) => ({ bucket: L.coldBucket, key: t.key }));
    const left = await removeOutputs(store, L, [...tarballs, ...written.keys()], log);
    if (!left) throw err;
    if (!(err instanceof PlateError)) log.error({ err }, 'unexpected error');
    throw new PlateError(`${errorMessage(err)}; and then ${left}`, { cause: err });
  }
}

async function writeTarballs(
  store: S3Store,
  opts: ArchiveOptions,
  L: PlateLayout,
  listed: ListedSource[],
  plate: PlateRow,
  log: Logger,
  built: BuiltTarball[],
  written: Written,
  claims: Map<TarballLayout, KeyClaim>,
): Promise<void> {
  const uploads: Promise<void>[] = [];
  try {
    const bytesOf = (t: TarballLayout) =>
      listed
        .filter((l) => t.sources.includes(l.source))
        .reduce((n, l) => n + l.objects.reduce((m, o) => m + o.size, 0), 0);
    // Largest first: its upload's end (the last parts, then Complete, which takes S3 a while
    // for a big object) overlaps the writing of the smaller one, and the plate ends with the
    // small tarball's short upload to wait for.
    const order = [...L.tarballs].sort((a, b) => bytesOf(b) - bytesOf(a));
    for (const t of order) {
      const tListed = listed.filter((l) => t.sources.includes(l.source));
      const claim: KeyClaim = { sent: false, taken: false };
      claims.set(t, claim);
      const tb = await buildTarball(store, opts, L, t, tListed, plate.plateId, log, claim);
      built.push(tb);
      // Upload while the next tarball is being written.
      const up = uploadAndCheck(store, L, tb, log, written);
      up.catch(() => {});
      uploads.push(up);
    }
    await Promise.all(uploads);
  } catch (err) {
    if (err instanceof ArchivedObjectError)
      throw await archivedError(store, L.bucket, sourceFiles(listed), log, err);
    throw err;
  } finally {
    await Promise.allSettled(uploads);
    // Only the tarballs this plate wrote; a partial one was already removed by its writer.
    await Promise.all(built.map((b) => rm(b.path, { force: true })));
  }
}

/** The listings, checked against the tarballs, and the delete script last. */
async function publish(
  store: S3Store,
  L: PlateLayout,
  listed: ListedSource[],
  files: ObjectInfo[],
  built: BuiltTarball[],
  written: Written,
): Promise<void> {
  const s3Listing = normalizedListing(
    files.map((o) => ({ path: listingPath(o.key), size: o.size })),
  );
  const tarListing = built.map((b) => b.tarListing).join('');
  const sortedTar = normalizedListing(
    tarListing
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const tab = line.lastIndexOf('\t');
        return { path: line.slice(0, tab), size: Number(line.slice(tab + 1)) };
      }),
  );
  if (sortedTar !== s3Listing) {
    throw new PlateError(
      'the tarballs do not hold exactly the listed files (internal check; a bug: please report it with the plate log)',
    );
  }
  const raw = listed.flatMap((l) => l.objects.map(rawListingLine)).join('');
  const put = (bucket: string, key: string, text: string) =>
    written.put(store, bucket, key, text, { contentType: 'text/plain; charset=utf-8' });
  await put(L.coldBucket, L.untrimmedListingKey, raw);
  await put(L.bucket, L.s3ListingKey, s3Listing);
  await put(L.bucket, L.tarListingKey, sortedTar);
  await put(
    L.bucket,
    L.etagListingKey,
    etagListing(
      files.map((o) => ({
        path: listingPath(o.key),
        size: o.size,
        etag: o.etag,
        ...(o.versionId !== undefined ? { versionId: o.versionId } : {}),
      })),
    ),
  );
  // Last: its presence marks the plate's archive complete. It names exactly the keys (and
  // versions) archived, so running it can never remove what was added or changed since.
  await put(L.bucket, L.deleteScriptKey, deleteScript(L.bucket, files));
}

async function buildTarball(
  store: S3Store,
  opts: ArchiveOptions,
  L: PlateLayout,
  t: TarballLayout,
  listed: ListedSource[],
  plateId: string,
  log: Logger,
  claim: KeyClaim,
): Promise<BuiltTarball> {
  const entries = tarEntries(L.tag, listed);
  const fileEntries = entries.filter(
    (e): e is Extract<Entry, { kind: 'file' }> => e.kind === 'file',
  );
  const partSize = partSizeFor(
    tarballSizeBound(entries.map((e) => ({ size: e.kind === 'file' ? e.obj.size : 0 }))),
  );
  const path = join(opts.tmpdir, t.fileName);
  // The sink's parts are the writer's hashed parts: it takes their md5s instead of hashing again.
  let writer: TarballWriter | undefined = undefined; // set below; the sink reads it only later
  const sink = opts.stream
    ? new MultipartSink(store, L.coldBucket, t.key, partSize, {
        hashedParts: () => writer?.hashedParts ?? [],
        claim,
      })
    : undefined;
  const upload = sink
    ? undefined
    : new FileUpload(store, { bucket: L.coldBucket, key: t.key, path, partSize, claim });
  writer = new TarballWriter({
    path,
    partSize,
    ...(L.compressed ? { level: opts.level, ...(opts.engine ? { engine: opts.engine } : {}) } : {}),
    signal: store.signal,
    ...(sink ? { sink } : {}),
    ...(upload ? { onWritten: (bytes, md5s) => upload.written(bytes, md5s) } : {}),
  });
  try {
    const bodies = sourceBodies(store, L.bucket, fileEntries, opts.readAhead);
    const it = bodies[Symbol.asyncIterator]();
    let nextBody = await it.next();
    for (const e of entries) {
      if (e.kind === 'dir') {
        await writer.addDirectory(e.name, e.mtime);
        continue;
      }
      if (nextBody.done || nextBody.value.item !== e) throw new Error('read-ahead out of order');
      const body = nextBody.value.body;
      const counted = Array.isArray(body)
        ? body
        : countBytes(body, (n) => opts.progress?.(plateId, n));
      await writer.addFile(e.name, e.obj.size, e.obj.lastModified, counted);
      if (Array.isArray(body)) opts.progress?.(plateId, e.obj.size);
      upload?.throwIfFailed(); // a failed part fails the plate now, not at the end of the tarball
      nextBody = await it.next();
    }
    const hash = await writer.finish();
    log.info({ tarball: t.fileName, bytes: hash.size, etag: hash.etag }, 'tarball written');
    const tarListing = writer.entries
      .filter((w) => w.type === 'file')
      .map((w) => `${w.name.slice(L.tag.length + 1)}\t${w.size}\n`)
      .join('');
    return { layout: t, claim, path, hash, tarListing, index: writer.index(hash), upload };
  } catch (err) {
    await upload?.abort();
    await writer.discard();
    throw err;
  }
}

async function* countBytes(body: AsyncIterable<Buffer>, add: (n: number) => void) {
  for await (const c of body) {
    add(c.length);
    yield c;
  }
}

/**
 * Waits until the tmpdir can hold both of the plate's tarballs (an upper bound of their size)
 * next to those of the plates in flight; fails at once if it never could.
 */
async function reserveTmpdir(
  opts: ArchiveOptions,
  L: PlateLayout,
  listed: ListedSource[],
  log: Logger,
  signal: AbortSignal,
): Promise<() => void> {
  if (!opts.disk) return () => {};
  const need = L.tarballs.reduce(
    (n, t) => n + tarballSizeBound(sourceFiles(listed.filter((l) => t.sources.includes(l.source)))),
    0,
  );
  if (need > opts.disk.capacity) {
    throw new PlateError(
      `needs up to ${formatSize(need)} in --tmpdir ${opts.tmpdir}, which has ${formatSize(opts.disk.capacity)} free; free space, pass a larger --tmpdir, or use --stream`,
    );
  }
  return opts.disk.reserve(need, signal, () =>
    log.warn({ need }, 'waiting for tmpdir space held by plates in flight'),
  );
}

function formatSize(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`;
}

/**
 * The outputs this run wrote, or may have written (a write whose answer was lost): failure
 * cleanup removes only these. A 412 to our If-None-Match: * write with other bytes there means
 * the object is someone else's: it is not ours to remove.
 */
class Written {
  private readonly all = new Map<string, { bucket: string; key: string }>();

  add(bucket: string, key: string): void {
    this.all.set(`${bucket}/${key}`, { bucket, key });
  }

  keys(): { bucket: string; key: string }[] {
    return [...this.all.values()];
  }

  async put(
    store: S3Store,
    bucket: string,
    key: string,
    text: string,
    opts: { contentType?: string; overwrite?: boolean } = {},
  ): Promise<void> {
    this.add(bucket, key);
    try {
      await store.put(bucket, key, text, {
        ...(opts.contentType ? { contentType: opts.contentType } : {}),
        ifNoneMatch: !opts.overwrite,
      });
    } catch (err) {
      if (httpStatus(err) !== 412) throw err;
      this.all.delete(`${bucket}/${key}`);
      throw new PlateError(
        `s3://${bucket}/${key} was written by someone else during this archive (a 412 to our write, other bytes there); left untouched: check whose it is, then re-run archive`,
      );
    }
  }
}

async function uploadAndCheck(
  store: S3Store,
  L: PlateLayout,
  tb: BuiltTarball,
  log: Logger,
  written: Written,
) {
  const { key } = tb.layout;
  if (tb.upload) {
    await tb.upload.finish(tb.hash);
    await rm(tb.path, { force: true });
  }
  const head = await store.head(L.coldBucket, key);
  if (!head)
    throw new PlateError(
      `s3://${L.coldBucket}/${key} is missing right after its upload; re-run archive`,
    );
  // S3 answers md5-of-part-md5s-N; some S3-compatible stores answer the whole object's md5.
  // What is there is not what we wrote (another writer, or a store fault): not ours to remove.
  if (head.etag !== tb.hash.etag && head.etag !== tb.hash.md5) {
    tb.claim.taken = true;
    throw new PlateError(
      `s3://${L.coldBucket}/${key}: ETag ${head.etag} after upload, expected ${tb.hash.etag} (md5 ${tb.hash.md5}); left untouched, the plate's other outputs were removed: check that object, remove it, then re-run archive`,
    );
  }
  if (head.size !== tb.hash.size) {
    tb.claim.taken = true;
    throw new PlateError(
      `s3://${L.coldBucket}/${key}: ${head.size} bytes after upload, wrote ${tb.hash.size}; left untouched, the plate's other outputs were removed: check that object, remove it, then re-run archive`,
    );
  }
  log.info({ key, etag: head.etag }, 'tarball uploaded');
  await written.put(
    store,
    L.coldBucket,
    tb.layout.md5Key,
    md5File(tb.hash.md5, tb.layout.fileName),
  );
  await written.put(store, L.coldBucket, tb.layout.etagKey, etagFile(head.etag));
  // The ETag S3 answers, so a restore can tell the index is this tarball's from a HEAD.
  const index = formatIndex({ ...tb.index, tarball: { ...tb.index.tarball, etag: head.etag } });
  await written.put(store, L.bucket, tb.layout.indexKey, index, {
    contentType: 'text/plain; charset=utf-8',
  });
}

/** Names every object of the plate that needs a restore, not just the first one a GET hit. */
async function archivedError(
  store: S3Store,
  bucket: string,
  files: ObjectInfo[],
  log: Logger,
  first: ArchivedObjectError,
): Promise<PlateError> {
  const candidates = files.filter((o) => o.storageClass && o.storageClass !== 'STANDARD');
  const limit = pLimit(HEAD_CONCURRENCY);
  const needs = await Promise.all(
    candidates.map((o) => limit(() => store.needsRestore(bucket, o.key).catch(() => false))),
  );
  const archived = candidates.filter((_, i) => needs[i]).map((o) => o.key);
  if (archived.length === 0) archived.push(first.key);
  log.error({ keys: archived }, 'objects that need a restore');
  return new PlateError(
    `${archived.length} source object(s) are in an archive tier and need a restore first: ${nameSome(archived)}`,
  );
}

export interface ArchiveRunOptions extends ArchiveOptions, RunOptions {}

/** The archive command: every plate of the CSV, maxProcs at a time. */
export async function archive(store: S3Store, opts: ArchiveRunOptions): Promise<PlateResult[]> {
  await checkTmpdir(opts.tmpdir);
  await checkBuckets(store, [opts.layout.bucket, opts.layout.coldBucket]);
  if (!opts.stream && !opts.dryRun && !opts.disk) {
    opts = { ...opts, disk: new DiskBudget(await freeBytes(opts.tmpdir)) };
  }
  if (!opts.dryRun && !opts.guard) opts = { ...opts, guard: await openGuard(store, opts) };
  return runPlates(
    opts.plates,
    (plate, signal) => {
      if (opts.s3) return archiveInWorker(opts, opts.s3, plate, signal);
      return withPlateLog(opts.log, plate.plateId, opts.logDir, (log) =>
        archivePlate(store.withSignal(signal), opts, plate, log),
      );
    },
    poolOptions(opts, 'archive'),
  );
}
