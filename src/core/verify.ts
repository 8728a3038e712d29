import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { PlateError, VerificationError } from '../errors.js';
import { isPlainMd5 } from '../integrity/etag.js';
import { normalizedListing, parseListing, type ListingEntry } from '../integrity/listings.js';
import { outputKeys, type LayoutOptions, type PlateLayout } from '../layout/layout.js';
import { plateLogger, type Logger } from '../log/log.js';
import type { PlateRow } from '../plates/plates-csv.js';
import { objectChunks } from '../s3/read-object.js';
import type { ObjectInfo, S3Store } from '../s3/store.js';
import {
  compareSources,
  diffListings,
  LineBag,
  pathRule,
  type ListingFormat,
  resolveLayout,
} from './archive-state.js';
import { poolOptions, runPlates, type PlateResult, type RunOptions } from './pool.js';
import { checkBuckets } from './preflight.js';
import { nameSome } from './sources.js';
import { verifyInWorker } from './workers/jobs.js';

export interface VerifiedRecord {
  plateId: string;
  tag: string;
  time: string;
  tool: string;
  checks: string[];
  format: ListingFormat;
  tarballs: { key: string; etag: string; size: number; lastModified: string }[];
  /** The archived source objects, unchanged when verified: the only keys delete may remove. */
  objects: { key: string; size: number; etag: string }[];
}

export interface VerifyOptions {
  layout: LayoutOptions;
  deep: boolean;
  toolVersion: string;
}

/**
 * Proves a plate's archive complete, or says exactly what is wrong. A passing verify writes the
 * verification record that delete requires; a failing one removes any earlier record.
 */
export async function verifyPlate(
  store: S3Store,
  opts: VerifyOptions,
  plate: PlateRow,
  log: Logger,
): Promise<Omit<PlateResult, 'seconds'>> {
  const L = await resolveLayout(store, opts.layout, plate);
  const problems: string[] = [];
  const checks: string[] = [];
  try {
    // The old check, made honest: both listings must exist, not just have equal (empty) ETags.
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
      problems.push(`listings differ (s3 vs tar): ${nameSome(diff)}`);
    }
    checks.push('listings-equal');

    const heads = await Promise.all(
      outputKeys(L).map(async (o) => ({ o, h: await store.head(o.bucket, o.key) })),
    );
    const missing = heads.filter((x) => !x.h).map((x) => `s3://${x.o.bucket}/${x.o.key}`);
    if (missing.length > 0) problems.push(`missing outputs: ${nameSome(missing)}`);
    checks.push('outputs-exist');

    const tarballs: VerifiedRecord['tarballs'] = [];
    for (const t of L.tarballs) {
      const head = heads.find((x) => x.o.key === t.key)?.h;
      const stored = (await store.getText(L.coldBucket, t.etagKey))?.trim();
      if (head && stored !== undefined && head.etag !== stored) {
        problems.push(`${t.fileName}: ETag ${head.etag} but ${t.fileName}.etag says ${stored}`);
      }
      if (head)
        tarballs.push({
          key: t.key,
          etag: head.etag,
          size: head.size,
          lastModified: head.lastModified.toISOString(),
        });
    }
    checks.push('tarball-etags');

    const cmp = await compareSources(store, L, s3Text ?? '', s3h.lastModified);
    const notes: string[] = [];
    if (cmp.added.length)
      notes.push(`added since the archive (not archived, never deleted): ${nameSome(cmp.added)}`);
    if (cmp.changed.length)
      notes.push(`changed since the archive (never deleted): ${nameSome(cmp.changed)}`);
    if (cmp.gone.length) notes.push(`no longer on S3: ${cmp.gone.length} archived file(s)`);
    if (cmp.added.length || cmp.changed.length)
      log.warn({ added: cmp.added, changed: cmp.changed }, 'sources changed since the archive');
    checks.push('sources-match-listing');

    if (opts.deep && problems.length === 0) {
      const current = new Map(cmp.archived.map((o) => [o.key, o]));
      const members: ListingEntry[] = [];
      for (const t of L.tarballs) {
        const md5Text = (await store.getText(L.coldBucket, t.md5Key)) ?? '';
        const r = await readTarball(store, L, t.key, current);
        members.push(...r.members);
        if (md5Text.split(' ')[0] !== r.md5) {
          problems.push(
            `${t.fileName}: md5 of the bytes on S3 is ${r.md5}, ${t.fileName}.md5 says ${md5Text.split(' ')[0]}`,
          );
        }
        problems.push(...r.problems);
      }
      const rule = pathRule(cmp.format);
      const rebuilt = normalizedListing(members.map((m) => ({ path: rule(m.path), size: m.size })));
      const stored = parseListing(tarText ?? '');
      if (cmp.format === 'new' ? rebuilt !== tarText : !sameBag(stored, parseListing(rebuilt))) {
        problems.push(
          `tarball members differ from the tar listing: ${nameSome(diffListings(stored, parseListing(rebuilt)))}`,
        );
      }
      checks.push('deep-tar-listing', 'deep-md5', 'deep-member-md5');
    }

    if (problems.length > 0) throw new VerificationError(problems.join('; '));

    const record: VerifiedRecord = {
      plateId: plate.plateId,
      tag: L.tag,
      time: new Date().toISOString(),
      tool: `imgbackup ${opts.toolVersion}`,
      checks,
      format: cmp.format,
      tarballs,
      objects: cmp.archived.map((o) => ({ key: o.key, size: o.size, etag: o.etag })),
    };
    await store.put(L.bucket, L.verifiedKey, `${JSON.stringify(record, null, 1)}\n`, {
      contentType: 'application/json',
    });
    return {
      plateId: plate.plateId,
      tag: L.tag,
      status: 'verified',
      ...(notes.length ? { message: notes.join('; ') } : {}),
      files: cmp.archived.length,
      bytesIn: cmp.archived.reduce((n, o) => n + o.size, 0),
      bytesOut: tarballs.reduce((n, t) => n + t.size, 0),
      details: {
        checks,
        added: cmp.added,
        changed: cmp.changed,
        gone: cmp.gone.length,
        deep: opts.deep,
      },
    };
  } catch (err) {
    if (err instanceof PlateError) {
      await removeRecord(store, L);
    }
    throw err;
  }
}

function sameBag(a: ListingEntry[], b: ListingEntry[]): boolean {
  if (a.length !== b.length) return false;
  const bag = new LineBag(a);
  return b.every((e) => bag.take(e));
}

async function removeRecord(store: S3Store, L: PlateLayout): Promise<void> {
  if (await store.head(L.bucket, L.verifiedKey)) {
    await store.deleteBatch(L.bucket, [{ key: L.verifiedKey }]);
  }
}

/**
 * Streams a tarball back from S3 (GET → md5 → gunzip → tar parse), never to disk: its md5, its
 * members (paths without the tag), and a per-file md5 check against every source object whose
 * ETag is a plain md5.
 */
async function readTarball(
  store: S3Store,
  L: PlateLayout,
  key: string,
  current: Map<string, ObjectInfo>,
): Promise<{ md5: string; members: ListingEntry[]; problems: string[] }> {
  const whole = createHash('md5');
  const members: ListingEntry[] = [];
  const problems: string[] = [];
  const head = await store.head(L.coldBucket, key);
  if (!head) throw new VerificationError(`${key} is missing`);
  // Read like a source object: resumed if cut, and refused if it changes while being read.
  const body = Readable.from(objectChunks(store, L.coldBucket, head));
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
      if (h.type !== 'file') continue;
      const path = h.name.slice(tagPrefix.length);
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
      done(null, chunk);
    },
  });
  try {
    const parse = L.compressed
      ? pipeline(body, tap, createGunzip(), extract)
      : pipeline(body, tap, extract);
    await Promise.all([parse, consume]);
  } catch (err) {
    // A read that failed is not a verdict on the tarball; bytes that do not parse are.
    if (err instanceof PlateError || store.signal.aborted) throw err;
    throw new VerificationError(`${key}: not a readable tarball (${(err as Error).message})`);
  }
  return { md5: whole.digest('hex'), members, problems };
}

export interface VerifyRunOptions extends VerifyOptions, RunOptions {}

export async function verify(store: S3Store, opts: VerifyRunOptions): Promise<PlateResult[]> {
  await checkBuckets(store, [opts.layout.bucket, opts.layout.coldBucket]);
  return runPlates(
    opts.plates,
    (plate, signal) =>
      // Only --deep moves bytes; a plain verify's few requests are not worth a thread's start.
      opts.s3 && opts.deep
        ? verifyInWorker(opts, opts.s3, plate, signal)
        : verifyPlate(
            store.withSignal(signal),
            opts,
            plate,
            plateLogger(opts.log, plate.plateId, opts.logDir),
          ),
    poolOptions(opts, 'verify'),
  );
}

/** Reads a plate's verification record, if any. */
export async function readVerifiedRecord(
  store: S3Store,
  L: PlateLayout,
): Promise<VerifiedRecord | undefined> {
  const text = await store.getText(L.bucket, L.verifiedKey);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as VerifiedRecord;
  } catch {
    throw new PlateError(`s3://${L.bucket}/${L.verifiedKey} is not valid JSON; run verify again`);
  }
}
