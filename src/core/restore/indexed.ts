import { Readable } from 'node:stream';
import { tarballGunzip } from '../../archive/gunzip.js';
import { isAbort } from '../../s3/store.js';
import { PlateError } from '../../errors.js';
import { normalizedListing, type ListingEntry } from '../../integrity/listings.js';
import {
  tarballRange,
  TarScanner,
  type IndexEntry,
  type TarIndex,
} from '../../archive/tar-index.js';
import { isPlainMd5 } from '../../integrity/etag.js';
import {
  destination,
  memberPath,
  writing,
  type TarballJob,
  type TarballOutcome,
} from './extract.js';
import { MemberHasher } from './member-check.js';
import { rangedChunks } from './ranged-read.js';

/** Why the index cannot be used and the tarball is streamed whole instead. */
export class IndexFallback extends Error {}

interface Wanted {
  e: IndexEntry;
  path: string;
}

interface Span {
  from: number;
  to: number;
  tarFrom: number;
  files: Wanted[];
}

/** Reads a byte stream by absolute offsets: skip ahead, or take the next n bytes. */
class Cursor {
  private buf: Buffer = Buffer.alloc(0);
  constructor(
    private readonly it: AsyncIterator<Buffer>,
    public at: number,
  ) {}

  private async more(): Promise<void> {
    const r = await this.it.next();
    if (r.done) throw new IndexFallback(`the members end before tar offset ${this.at}`);
    this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
  }

  async skipTo(offset: number): Promise<void> {
    while (this.at + this.buf.length < offset) {
      this.at += this.buf.length;
      this.buf = Buffer.alloc(0);
      await this.more();
    }
    this.buf = this.buf.subarray(offset - this.at);
    this.at = offset;
  }

  async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) await this.more();
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.at += n;
    return out;
  }

  async *chunks(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0) await this.more();
      const c = this.buf.subarray(0, Math.min(left, this.buf.length));
      this.buf = this.buf.subarray(c.length);
      this.at += c.length;
      left -= c.length;
      yield c;
    }
  }
}

/**
 * The entries of this tarball the filter wants, or why the index cannot serve them: it is of
 * another tarball, differs from the tar listing, or a wanted file has no proof of its own.
 */
function wantedEntries(job: TarballJob, ix: TarIndex, listing: ListingEntry[]): Wanted[] {
  // A tarball copied in place (a storage-class change) has its md5 as ETag: same bytes.
  const etagOk = job.head.etag === ix.tarball.etag || job.head.etag === ix.tarball.md5;
  if (ix.tarball.size !== job.head.size || !etagOk)
    throw new IndexFallback(
      `its index is of another tarball (${ix.tarball.size} bytes, ETag ${ix.tarball.etag}; the tarball has ${job.head.size}, ${job.head.etag})`,
    );
  if (ix.gzip !== job.compressed || ix.tarball.md5 !== job.md5)
    throw new IndexFallback('its index is of another tarball (format or md5 differ)');
  const all: Wanted[] = [];
  for (const e of ix.entries) {
    const p = memberPath(job.tag, e.name, e.type);
    if ('refused' in p) throw new IndexFallback(`its index names ${e.name}, which ${p.refused}`);
    all.push({ e, path: p.path });
  }
  const files = all.filter((w) => w.e.type === 'file');
  if (
    normalizedListing(files.map((w) => ({ path: w.path, size: w.e.size }))) !==
    normalizedListing(listing)
  )
    throw new IndexFallback("its index's files differ from the tar listing");
  const wanted = all.filter((w) => w.path !== '' && job.filter.wants(w.path));
  for (const w of wanted) {
    if (w.e.type !== 'file') continue;
    const etag = job.expected.get(w.path)?.etag;
    if (etag === undefined)
      throw new IndexFallback(
        `${w.path} has no ETag record of its own, so only the whole tarball's md5 can prove it`,
      );
    if (!isPlainMd5(etag) && job.expected.get(w.path)!.size !== w.e.size)
      throw new IndexFallback(`${w.path}: its size differs from its ETag record`);
  }
  return wanted;
}

/** Wanted files grouped by the tarball bytes that hold them; members shared are read once. */
function spans(ix: TarIndex, wanted: Wanted[]): Span[] {
  const out: Span[] = [];
  const files = wanted.filter((w) => w.e.type === 'file').sort((a, b) => a.e.header - b.e.header);
  for (const w of files) {
    const r = tarballRange(ix, w.e.header, w.e.data + w.e.size);
    const last = out[out.length - 1];
    if (last && r.from <= last.to) {
      last.to = Math.max(last.to, r.to);
      last.files.push(w);
    } else out.push({ ...r, files: [w] });
  }
  return out;
}

/**
 * Restores the wanted files of one tarball through its index: GETs only the byte ranges of the
 * gzip members that hold them, gunzips those, cuts each file out by its tar offset, checks that
 * its tar header there names it with its size, and proves its bytes by its own ETag record
 * before it is published. Anything that does not hold throws IndexFallback (nothing of that file
 * written; files already published were each proven on their own).
 */
export async function restoreIndexed(
  job: TarballJob,
  ix: TarIndex,
  listing: ListingEntry[],
): Promise<TarballOutcome & { bytesRead: number }> {
  const wanted = wantedEntries(job, ix, listing);
  const out = {
    members: ix.entries
      .filter((e) => e.type === 'file')
      .map((e) => ({
        path: (memberPath(job.tag, e.name, e.type) as { path: string }).path,
        size: e.size,
      })),
    written: 0,
    skipped: 0,
    folders: 0,
    bytesWritten: 0,
    conflicts: [] as string[],
    unprovable: [] as string[],
    proofs: { md5: 0, 'multipart-etag': 0, 'tarball-md5': 0 },
    bytesRead: 0,
  };
  for (const w of wanted) {
    if (w.e.type !== 'directory') continue;
    await job.target.folder(w.path);
    out.folders += 1;
  }
  for (const s of spans(ix, wanted)) await readSpan(job, ix, s, out);
  return out;
}

async function readSpan(
  job: TarballJob,
  ix: TarIndex,
  s: Span,
  out: TarballOutcome & { bytesRead: number },
): Promise<void> {
  async function* counted() {
    for await (const c of rangedChunks(job.store, job.coldBucket, job.head, s)) {
      out.bytesRead += c.length;
      job.progress?.(c.length);
      yield c;
    }
  }
  const raw = Readable.from(counted());
  const tar = ix.gzip ? raw.pipe(tarballGunzip()) : raw;
  if (tar !== raw) raw.on('error', (err) => tar.destroy(err));
  const cursor = new Cursor(tar[Symbol.asyncIterator]() as AsyncIterator<Buffer>, s.tarFrom);
  try {
    for (const w of s.files) {
      await cursor.skipTo(w.e.header);
      checkHeader(w, await cursor.take(w.e.data - w.e.header));
      await oneFile(job, w, cursor, out);
    }
  } catch (err) {
    if (err instanceof PlateError || err instanceof IndexFallback || isAbort(err)) throw err;
    if (job.store.signal.aborted) throw err;
    throw new IndexFallback(`its members did not read back (${(err as Error).message})`);
  } finally {
    raw.destroy();
    tar.destroy();
  }
}

/** The tar header the index points at names this file with its size. */
function checkHeader(w: Wanted, header: Buffer): void {
  const scan = new TarScanner();
  scan.push(header);
  const h = scan.entries[0];
  if (!h || h.name !== w.e.name || h.size !== w.e.size || h.data !== header.length)
    throw new IndexFallback(`the tar header at the index's offset of ${w.path} is not that file's`);
}

/** One file cut out of the member bytes: published once proven, or nothing of it is left. */
async function oneFile(
  job: TarballJob,
  w: Wanted,
  cursor: Cursor,
  out: TarballOutcome,
): Promise<void> {
  const expected = job.expected.get(w.path)!;
  const hasher = new MemberHasher(expected);
  const there = await destination(job, w.path);
  if (there && !job.overwrite) {
    for await (const c of cursor.chunks(w.e.size)) hasher.update(c);
    const v = hasher.verdict();
    if (v.problem || v.proof === 'tarball-md5') throw unproven(w, v.problem);
    if (there.size === w.e.size && (await there.same(v.md5))) out.skipped += 1;
    else out.conflicts.push(job.target.where(w.path));
    return;
  }
  const where = job.target.where(w.path);
  const writer = await writing(where, () => job.target.open(w.path, expected, job.overwrite));
  try {
    for await (const c of cursor.chunks(w.e.size)) {
      hasher.update(c);
      await writing(where, () => writer.write(c));
    }
    const v = hasher.verdict();
    if (v.problem || v.proof === 'tarball-md5') throw unproven(w, v.problem);
    // The check's md5: a member that goes up as one PUT is sent with it, not hashed again.
    await writing(where, () => writer.finish(v.md5));
    await writing(where, () => writer.publish());
    out.proofs[v.proof] += 1;
  } catch (err) {
    await writer.discard();
    throw err;
  }
  out.written += 1;
  out.bytesWritten += w.e.size;
}

function unproven(w: Wanted, problem: string | undefined): IndexFallback {
  return new IndexFallback(
    problem
      ? `${w.path} read through the index does not match its record (${problem})`
      : `${w.path}: its multipart ETag could not be reproduced, so only the whole tarball's md5 can prove it`,
  );
}
