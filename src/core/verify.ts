import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tarballGunzip } from '../archive/gunzip.js';
import * as tar from 'tar-stream';
import { errorMessage, ForeignOutputsError, PlateError, VerificationError } from '../errors.js';
import { isPlainMd5 } from '../integrity/etag.js';
import { IndexChecker, parseIndex, type TarIndex } from '../archive/tar-index.js';
import {
  normalizedListing,
  parseListing,
  parseRawListingLine,
  type ListingEntry,
} from '../integrity/listings.js';
import {
  fileFolderClashes,
  optionalOutputKeys,
  outputKeys,
  type LayoutOptions,
  type PlateLayout,
  type TarballLayout,
} from '../layout/layout.js';
import { withPlateLog, type Logger } from '../log/log.js';
import type { PlateRow } from '../plates/plates-csv.js';
import type { ObjectInfo, S3Store } from '../s3/store.js';
import {
  checkOwnership,
  compareSources,
  diffListings,
  LineBag,
  pathRule,
  plateOwner,
  type ListingFormat,
  type PlateOwner,
  resolveLayout,
  type SourceComparison,
} from './archive-state.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from './pool.js';
import { NO_GUARD, openGuard, withClaim, type Guard } from './lifecycle/plate-life.js';
import { staleGenerations } from './lifecycle/outputs.js';
import { checkBuckets } from './preflight.js';
import { readAheadChunks } from './source-bodies.js';
import { namePairs, nameSome } from './sources.js';
import { verifyInWorker } from './workers/jobs.js';

export interface VerifiedRecord extends PlateOwner {
  passed: true;
  tag: string;
  time: string;
  tool: string;
  checks: string[];
  format: ListingFormat;
  tarballs: { key: string; etag: string; size: number; lastModified: string }[];
  /** The two listings as verified, so delete trusts no record of listings rewritten since. */
  listings: { key: string; etag: string }[];
  /** The archived source objects, unchanged when verified: the only keys delete may remove. */
  objects: { key: string; size: number; etag: string; versionId?: string }[];
}

/** What a failed verify leaves in place of a passing record, so delete cannot trust one. */
export interface FailedRecord extends PlateOwner {
  passed: false;
  tag: string;
  time: string;
  tool: string;
  problem: string;
}

export type PlateRecord = VerifiedRecord | FailedRecord;

export interface VerifyOptions {
  layout: LayoutOptions;
  deep: boolean;
  toolVersion: string;
  /** How plates are kept from two runs at once (the run's lease probe). */
  guard?: Guard;
}

/** What the checks found: problems fail the plate as a mismatch, undecided ones as a failure. */
interface Findings {
  problems: string[];
  undecided: string[];
  notes: string[];
  checks: string[];
}

const baseName = (key: string) => key.slice(key.lastIndexOf('/') + 1);

/**
 * Proves a plate's archive complete, or says exactly what is wrong. A passing verify writes the
 * verification record that delete requires; a failing one replaces any earlier record with a
 * failed one (or removes it), and fails loudly if it can do neither.
 */
export async function verifyPlate(
  store: S3Store,
  opts: VerifyOptions,
  plate: PlateRow,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const L = await resolveLayout(store, opts.layout, plate);
  const claim = { guard: opts.guard ?? NO_GUARD, work: 'verify' as const, log };
  return withClaim(store, L, claim, async (held, store) => {
    try {
      await checkOwnership(store, opts.layout, L);
      await checkGenerations(store, L, held.priorArchiveGeneration);
      return await provePlate(store, opts, plate, L, log);
    } catch (err) {
      // Another plate's outputs under this tag (its record included) stay exactly as found; a
      // lost lease writes nothing more.
      if (err instanceof PlateError && !(err instanceof ForeignOutputsError) && !held.lost())
        await recordFailure(store, opts, L, err);
      throw err;
    }
  });
}

/** Outputs of different lease generations, or older than the last archive: a fenced-off writer's. */
async function checkGenerations(store: S3Store, L: PlateLayout, archiveGeneration: number) {
  const keys = [...outputKeys(L), ...optionalOutputKeys(L)];
  const heads = await Promise.all(keys.map((o) => store.head(o.bucket, o.key)));
  const stale = staleGenerations(
    heads.flatMap((h) => (h ? [h.generation] : [])),
    archiveGeneration,
  );
  if (stale)
    throw new PlateError(
      `the archive is partial: ${stale} (a late write of a run a newer lease fenced off, or an object replaced since); re-run archive while the sources are there, which redoes it, else check those objects`,
    );
}

async function provePlate(
  store: S3Store,
  opts: VerifyOptions,
  plate: PlateRow,
  L: PlateLayout,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const f: Findings = { problems: [], undecided: [], notes: [], checks: [] };
  const { s3h, tarh, s3Text, tarText } = await checkListings(store, L, f);
  const tarballs = await checkTarballs(store, opts, L, f);
  const cmp = await compareSources(store, L, s3Text, s3h.lastModified);
  noteSources(cmp, f, log);
  const held = await heldKeys(store, L, cmp.format, s3Text);
  if (opts.deep && f.problems.length === 0) {
    const members = await checkDeep(store, L, cmp, tarText, f);
    held.push(...members);
  }
  const clashes = fileFolderClashes(new Set(held));
  if (clashes.length > 0) {
    f.problems.push(
      `the archive holds keys that tar cannot both restore (extracting the folder replaces the file, so the file would be lost): ${namePairs(clashes)}`,
    );
  }
  f.checks.push('restorable-keys');
  if (f.problems.length > 0) throw new VerificationError(f.problems.join('; '));
  if (f.undecided.length > 0) throw new PlateError(f.undecided.join('; '));

  const record: VerifiedRecord = {
    passed: true,
    ...plateOwner(opts.layout, plate),
    tag: L.tag,
    time: new Date().toISOString(),
    tool: `imgbackup ${opts.toolVersion}`,
    checks: f.checks,
    format: cmp.format,
    tarballs,
    listings: [
      { key: L.s3ListingKey, etag: s3h.etag },
      { key: L.tarListingKey, etag: tarh.etag },
    ],
    objects: cmp.archived.map((o) => ({
      key: o.key,
      size: o.size,
      etag: o.etag,
      ...(o.versionId !== undefined ? { versionId: o.versionId } : {}),
    })),
  };
  await store.put(L.bucket, L.verifiedKey, `${JSON.stringify(record, null, 1)}\n`, {
    contentType: 'application/json',
  });
  return {
    plateId: plate.plateId,
    tag: L.tag,
    status: 'verified',
    ...(f.notes.length ? { message: f.notes.join('; ') } : {}),
    files: cmp.archived.length,
    bytesIn: cmp.archived.reduce((n, o) => n + o.size, 0),
    bytesOut: tarballs.reduce((n, t) => n + t.size, 0),
    details: {
      checks: f.checks,
      added: cmp.added,
      changed: cmp.changed,
      gone: cmp.gone.length,
      deep: opts.deep,
    },
  };
}

/** The old check, made honest: both listings must exist, not just have equal (empty) ETags. */
async function checkListings(store: S3Store, L: PlateLayout, f: Findings) {
  const [s3h, tarh] = await Promise.all([
    store.head(L.bucket, L.s3ListingKey),
    store.head(L.bucket, L.tarListingKey),
  ]);
  if (!s3h || !tarh) {
    const missing = [!s3h && L.s3ListingKey, !tarh && L.tarListingKey].filter(Boolean);
    throw new VerificationError(
      `not archived: missing ${missing.join(' and ')}; run imgbackup archive`,
    );
  }
  const [s3Text, tarText] = await Promise.all([
    store.getText(L.bucket, L.s3ListingKey),
    store.getText(L.bucket, L.tarListingKey),
  ]);
  if (s3h.etag !== tarh.etag || s3Text !== tarText) {
    const diff = diffListings(parseListing(s3Text ?? ''), parseListing(tarText ?? ''));
    f.problems.push(`listings differ (s3 vs tar): ${nameSome(diff)}`);
  }
  f.checks.push('listings-equal');
  return { s3h, tarh, s3Text: s3Text ?? '', tarText: tarText ?? '' };
}

/**
 * Every output exists, and each tarball's ETag is the one recorded at archive time. A tarball
 * copied in place (a storage-class change, replication) gets a new ETag: if it is the md5 in
 * X.md5 the bytes are the archived ones; any other new ETag needs --deep to decide.
 */
async function checkTarballs(
  store: S3Store,
  opts: VerifyOptions,
  L: PlateLayout,
  f: Findings,
): Promise<VerifiedRecord['tarballs']> {
  const heads = await Promise.all(
    outputKeys(L).map(async (o) => ({ o, h: await store.head(o.bucket, o.key) })),
  );
  const missing = heads.filter((x) => !x.h).map((x) => `s3://${x.o.bucket}/${x.o.key}`);
  if (missing.length > 0) f.problems.push(`missing outputs: ${nameSome(missing)}`);
  f.checks.push('outputs-exist');

  const tarballs: VerifiedRecord['tarballs'] = [];
  for (const t of L.tarballs) {
    const head = heads.find((x) => x.o.key === t.key)?.h;
    if (!head) continue;
    tarballs.push({
      key: t.key,
      etag: head.etag,
      size: head.size,
      lastModified: head.lastModified.toISOString(),
    });
    const stored = (await store.getText(L.coldBucket, t.etagKey))?.trim();
    if (stored === undefined || head.etag === stored) continue;
    const md5 = (await store.getText(L.coldBucket, t.md5Key))?.split(' ')[0];
    const changed = `${t.fileName}: ETag changed since the archive (${head.etag}; ${baseName(t.etagKey)} says ${stored})`;
    if (head.etag === md5) {
      f.notes.push(
        `${t.fileName}: ETag changed since the archive, to the md5 that ${baseName(t.md5Key)} holds (copied in place): same bytes`,
      );
    } else if (opts.deep) {
      f.notes.push(`${changed}; its bytes were read and decide`);
    } else {
      f.undecided.push(`${changed}; run verify --deep`);
    }
  }
  f.checks.push('tarball-etags');
  return tarballs;
}

function noteSources(cmp: SourceComparison, f: Findings, log: Logger): void {
  if (cmp.added.length)
    f.notes.push(`added since the archive (not archived, never deleted): ${nameSome(cmp.added)}`);
  if (cmp.changed.length)
    f.notes.push(`changed since the archive (never deleted): ${nameSome(cmp.changed)}`);
  if (cmp.superseded.length)
    f.notes.push(
      `overwritten since the archive (the archived version is deletable, the later one is kept): ${nameSome(cmp.superseded)}`,
    );
  if (cmp.gone.length) f.notes.push(`no longer on S3: ${cmp.gone.length} archived file(s)`);
  if (cmp.added.length || cmp.changed.length)
    log.warn({ added: cmp.added, changed: cmp.changed }, 'sources changed since the archive');
  // An archive of other sources (another plate_id_full, another plate) matches none by key.
  if (cmp.archived.length === 0 && cmp.changed.length === 0 && cmp.added.length > 0) {
    f.problems.push(
      `the archive holds none of this plate's ${cmp.added.length} current file(s) by full key (${nameSome(cmp.added)}): it was made from other sources (another plate_id_full or plate); not verified`,
    );
  }
  f.checks.push('sources-match-listing');
}

/** The full keys the archive says it holds: its untrimmed listing, and a whole-path listing. */
async function heldKeys(
  store: S3Store,
  L: PlateLayout,
  format: ListingFormat,
  s3Text: string,
): Promise<string[]> {
  const raw = (await store.getText(L.coldBucket, L.untrimmedListingKey)) ?? '';
  const keys: string[] = [];
  for (const line of raw.split('\n')) {
    if (line.trim() === '') continue;
    try {
      keys.push(parseRawListingLine(line).key);
    } catch {
      // Not a listing line: the old-format comparison refuses it; here it holds no key.
    }
  }
  if (format === 'new') keys.push(...parseListing(s3Text).map((e) => `projects/${e.path}`));
  return keys;
}

/**
 * Reads every tarball back: its md5 against X.md5, its members against the tar listing and each
 * member against its source's ETag, and a member for every object a delete may remove. Returns
 * the members as full keys (folders with their '/').
 */
async function checkDeep(
  store: S3Store,
  L: PlateLayout,
  cmp: SourceComparison,
  tarText: string,
  f: Findings,
): Promise<string[]> {
  const current = new Map(cmp.archived.map((o) => [o.key, o]));
  const members: ListingEntry[] = [];
  const folders: string[] = [];
  let indexed = false;
  for (const t of L.tarballs) {
    const md5 = ((await store.getText(L.coldBucket, t.md5Key)) ?? '').split(' ')[0];
    const r = await readTarball(store, L, t, current);
    members.push(...r.members);
    folders.push(...r.folders);
    indexed ||= r.indexed;
    if (md5 !== r.md5) {
      f.problems.push(
        `${t.fileName}: md5 of the bytes on S3 is ${r.md5}, ${baseName(t.md5Key)} says ${md5}`,
      );
    }
    f.problems.push(...r.problems);
  }
  const rule = pathRule(cmp.format);
  const rebuilt = normalizedListing(members.map((m) => ({ path: rule(m.path), size: m.size })));
  const stored = parseListing(tarText);
  if (cmp.format === 'new' ? rebuilt !== tarText : !sameBag(stored, parseListing(rebuilt))) {
    f.problems.push(
      `tarball members differ from the tar listing: ${nameSome(diffListings(stored, parseListing(rebuilt)))}`,
    );
  }
  const inTar = new Set(members.map((m) => `projects/${m.path}\t${m.size}`));
  const absent = cmp.archived.filter((o) => !inTar.has(`${o.key}\t${o.size}`)).map((o) => o.key);
  if (absent.length > 0)
    f.problems.push(`files listed as archived but not in the tarballs: ${nameSome(absent)}`);
  f.checks.push('deep-tar-listing', 'deep-md5', 'deep-member-md5', 'deep-members-by-key');
  if (indexed) f.checks.push('deep-index');
  return [...members.map((m) => `projects/${m.path}`), ...folders.map((p) => `projects/${p}`)];
}

function sameBag(a: ListingEntry[], b: ListingEntry[]): boolean {
  if (a.length !== b.length) return false;
  const bag = new LineBag(a);
  return b.every((e) => bag.take(e));
}

/**
 * Leaves no passing record behind a failed verify: replaces any record with a failed one and
 * reads it back, or else removes it and checks it is gone. If neither took, the failure is
 * loud, since delete would trust the passing record that is still there.
 */
async function recordFailure(
  store: S3Store,
  opts: VerifyOptions,
  L: PlateLayout,
  failure: PlateError,
): Promise<void> {
  const where = `s3://${L.bucket}/${L.verifiedKey}`;
  const failed: FailedRecord = {
    passed: false,
    ...plateOwner(opts.layout, L.plate),
    tag: L.tag,
    time: new Date().toISOString(),
    tool: `imgbackup ${opts.toolVersion}`,
    problem: failure.message,
  };
  let why: string;
  try {
    if (!(await store.head(L.bucket, L.verifiedKey))) return;
    await store.put(L.bucket, L.verifiedKey, `${JSON.stringify(failed, null, 1)}\n`, {
      contentType: 'application/json',
    });
    const back = await readVerifiedRecord(store, L);
    if (back?.passed === false && back.time === failed.time) return;
    why = 'the failed record did not read back';
  } catch (err) {
    why = errorMessage(err);
  }
  try {
    await store.deleteBatch(L.bucket, [{ key: L.verifiedKey }]);
    if (!(await store.head(L.bucket, L.verifiedKey))) return;
    why += '; it is still there after removing it';
  } catch (err) {
    why += `; removing it: ${errorMessage(err)}`;
  }
  throw new PlateError(
    `${failure.message}; AND the earlier record ${where} could be neither replaced by a failed one nor removed (${why}): remove it by hand before any delete`,
  );
}

/**
 * Streams a tarball back from S3 (GET → md5 → gunzip → tar parse), never to disk: its md5, its
 * members (paths without the tag), and a per-file md5 check against every source object whose
 * ETag is a plain md5.
 */
/** The tarball's index and what checks it, if it has one; an unreadable one is a problem. */
async function indexCheck(
  store: S3Store,
  L: PlateLayout,
  t: TarballLayout,
  problems: string[],
): Promise<{ ix: TarIndex; check: IndexChecker } | undefined> {
  const text = await store.getText(L.bucket, t.indexKey);
  if (text === undefined) return undefined;
  try {
    const ix = parseIndex(text);
    return { ix, check: new IndexChecker(ix) };
  } catch (err) {
    problems.push(
      `s3://${L.bucket}/${t.indexKey}: unreadable index (${(err as Error).message}); remove it (restore then reads ${t.fileName} whole)`,
    );
    return undefined;
  }
}

async function readTarball(
  store: S3Store,
  L: PlateLayout,
  t: TarballLayout,
  current: Map<string, ObjectInfo>,
): Promise<{
  md5: string;
  members: ListingEntry[];
  folders: string[];
  problems: string[];
  indexed: boolean;
}> {
  const key = t.key;
  const whole = createHash('md5');
  const members: ListingEntry[] = [];
  const folders: string[] = [];
  const problems: string[] = [];
  const head = await store.head(L.coldBucket, key);
  if (!head) throw new VerificationError(`${key} is missing`);
  const index = await indexCheck(store, L, t, problems);
  // Read like a source object: ranges read ahead (one GET stream would bound a deep verify to
  // one connection's rate), each resumed if cut and refused if the tarball changes meanwhile.
  const body = Readable.from(readAheadChunks(store, L.coldBucket, head));
  const extract = tar.extract();
  const tagPrefix = `${L.tag}/`;
  const consume = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      if (!h.name.startsWith(tagPrefix))
        problems.push(`${key}: member outside ${tagPrefix}: ${h.name}`);
      const md5 = createHash('md5');
      let size = 0;
      for await (const c of entry as AsyncIterable<Buffer>) {
        md5.update(c);
        size += c.length;
      }
      const path = h.name.slice(tagPrefix.length);
      if (h.type === 'directory') folders.push(path.endsWith('/') ? path : `${path}/`);
      if (h.type !== 'file') continue;
      members.push({ path, size });
      const src = current.get(`projects/${path}`);
      if (src && isPlainMd5(src.etag) && src.size === size && md5.digest('hex') !== src.etag) {
        problems.push(`${key}: member ${path} differs from s3 object (md5 vs ETag ${src.etag})`);
      }
    }
  })();
  const tap = new Transform({
    transform(chunk: Buffer, _e, done) {
      whole.update(chunk);
      index?.check.update(chunk);
      done(null, chunk);
    },
  });
  try {
    const parse = L.compressed
      ? pipeline(body, tap, tarballGunzip(), extract)
      : pipeline(body, tap, extract);
    await Promise.all([parse, consume]);
  } catch (err) {
    // A read that failed is not a verdict on the tarball; bytes that do not parse are.
    if (err instanceof PlateError || store.signal.aborted) throw err;
    throw new VerificationError(`${key}: not a readable tarball (${(err as Error).message})`);
  }
  const md5 = whole.digest('hex');
  if (index) {
    const wrong =
      index.check.finish(head.size) ??
      (index.ix.tarball.md5 === md5
        ? undefined
        : `it is of a tarball with md5 ${index.ix.tarball.md5}`);
    if (wrong)
      problems.push(
        `s3://${L.bucket}/${t.indexKey} does not match ${t.fileName}: ${wrong}; remove it (restore then reads ${t.fileName} whole)`,
      );
  }
  return { md5, members, folders, problems, indexed: index !== undefined };
}

export interface VerifyRunOptions extends VerifyOptions, RunOptions {}

export async function verify(store: S3Store, opts: VerifyRunOptions): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.bucket, opts.layout.coldBucket]);
  if (!opts.guard) opts = { ...opts, guard: await openGuard(store, opts) };
  return runPlates(
    opts.plates,
    (plate, signal) =>
      // Only --deep moves bytes; a plain verify's few requests are not worth a thread's start.
      opts.s3 && opts.deep
        ? verifyInWorker(opts, opts.s3, plate, signal)
        : withPlateLog(opts.log, plate.plateId, opts.logDir, (log) =>
            verifyPlate(store.withSignal(signal), opts, plate, log),
          ),
    poolOptions(opts, 'verify'),
  );
}

/**
 * Reads a plate's verification record, if any: passed or failed (a record written before
 * records said so has `passed` undefined, and is trusted by nothing).
 */
export async function readVerifiedRecord(
  store: S3Store,
  L: PlateLayout,
): Promise<PlateRecord | undefined> {
  const text = await store.getText(L.bucket, L.verifiedKey);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as PlateRecord;
  } catch {
    throw new PlateError(`s3://${L.bucket}/${L.verifiedKey} is not valid JSON; run verify again`);
  }
}
