import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tarballGunzip } from '../../archive/gunzip.js';
import * as tar from 'tar-stream';
import { errorMessage, PlateError } from '../../errors.js';
import type { ListingEntry } from '../../integrity/listings.js';
import type { TarballLayout } from '../../layout/layout.js';
import { isAbort, s3ErrorCode, type ArchiveHead, type S3Store } from '../../s3/store.js';
import type { PathFilter } from './glob.js';
import { rangedChunks } from './ranged-read.js';
import { nameSome } from '../sources.js';
import { MemberHasher, type Expected, type MemberProof } from './member-check.js';
import { BACKGROUND_MEMBER_MAX, BackgroundPuts } from './member-puts.js';
import type { Existing, MemberWriter, Target } from './targets.js';

export interface TarballJob {
  store: S3Store;
  coldBucket: string;
  tag: string;
  compressed: boolean;
  tarball: TarballLayout;
  head: ArchiveHead;
  /** The md5 X.md5 records. */
  md5: string;
  expected: Map<string, Expected>;
  filter: PathFilter;
  target: Target;
  overwrite: boolean;
  /** Tarball bytes read since the last call. */
  progress?: (bytes: number) => void;
}

export interface TarballOutcome {
  /** Every file member (filtered or not), for the listing check. */
  members: ListingEntry[];
  written: number;
  skipped: number;
  folders: number;
  bytesWritten: number;
  conflicts: string[];
  /** Existing objects --overwrite left alone: the member is proven only by the tarball's md5. */
  unprovable: string[];
  proofs: Record<MemberProof, number>;
}

/** Why a tar member name cannot be restored safely, or its listing path. */
export function memberPath(
  tag: string,
  name: string,
  type: string | null | undefined,
): { path: string } | { refused: string } {
  if (type !== 'file' && type !== 'directory')
    return { refused: `is a ${type ?? 'special'} entry (only files and folders are restored)` };
  if (!name.startsWith(`${tag}/`)) return { refused: `is not under ${tag}/` };
  const rest = name.slice(tag.length + 1).replace(/\/$/, '');
  if (rest === '') return { path: '' };
  for (const s of rest.split('/')) {
    if (s === '..' || s === '.' || s === '') return { refused: `has a "${s}" path segment` };
  }
  return { path: rest };
}

/**
 * Streams one tarball from S3 (GET → md5 → gunzip → tar parse) and writes each wanted file
 * member to the target. A member is published under its final name once its own check passes
 * (md5 or multipart ETag against the archive's record); one with no own check waits for the
 * tarball's md5 on disk, and on S3 is deleted again if that md5 then fails. Nothing is staged.
 */
export async function restoreTarball(job: TarballJob): Promise<TarballOutcome> {
  const out: TarballOutcome = {
    members: [],
    written: 0,
    skipped: 0,
    folders: 0,
    bytesWritten: 0,
    conflicts: [],
    unprovable: [],
    proofs: { md5: 0, 'multipart-etag': 0, 'tarball-md5': 0 },
  };
  const whole = createHash('md5');
  const deferred: { path: string; w: MemberWriter }[] = [];
  const unproven: { path: string; w: MemberWriter }[] = [];
  let current: { path: string; w: MemberWriter } | undefined;
  let currentName = '';
  const puts = new BackgroundPuts();
  const body = Readable.from(rangedChunks(job.store, job.coldBucket, job.head));
  const extract = tar.extract();
  const tap = new Transform({
    transform(chunk: Buffer, _e, done) {
      whole.update(chunk);
      job.progress?.(chunk.length);
      done(null, chunk);
    },
  });
  const parse = job.compressed
    ? pipeline(body, tap, tarballGunzip(), extract)
    : pipeline(body, tap, extract);
  const consume = (async () => {
    for await (const entry of extract) {
      currentName = entry.header.name;
      await member(job, entry as AsyncIterable<Buffer> & { header: tar.Header }, {
        out,
        deferred,
        unproven,
        puts,
        setCurrent: (m) => (current = m),
      });
      current = undefined;
    }
  })();
  try {
    await Promise.all([parse, consume]);
    await puts.drain();
  } catch (err) {
    body.destroy();
    // A member still being written or published stops, or lands in `deferred` or `unproven`,
    // before the clean-up reads them; the same for the small ones uploading in the background.
    await consume.catch(() => {});
    await puts.settle();
    const left = await discardAll(job, [...(current ? [current] : []), ...deferred, ...unproven]);
    if (job.store.signal.aborted) throw err;
    if (err instanceof PlateError) throw left ? new PlateError(`${err.message}${left}`) : err;
    throw new PlateError(
      `${job.tarball.fileName}: not a readable tarball at member ${currentName || '(first)'} (${(err as Error).message}); nothing of that member was written${left}`,
    );
  }
  const md5 = whole.digest('hex');
  if (md5 !== job.md5) {
    const left = await discardAll(job, [...deferred, ...unproven]);
    throw new PlateError(
      `${job.tarball.fileName}: md5 of the bytes read is ${md5}, ${job.tarball.fileName}.md5 says ${job.md5}; members checked only by it were not kept${left}`,
    );
  }
  for (const [i, d] of deferred.entries()) {
    try {
      await writing(job.target.where(d.path), () => d.w.publish());
    } catch (err) {
      // Those published are proven; the rest leave no temp file behind.
      for (const rest of deferred.slice(i)) await rest.w.discard().catch(() => {});
      throw err;
    }
  }
  return out;
}

/**
 * Discards every member given, whatever one of them answers, and says which could not be: ''
 * when all went, else a clause naming them, since their bytes were never proven.
 */
async function discardAll(
  job: TarballJob,
  members: { path: string; w: MemberWriter }[],
): Promise<string> {
  const left: string[] = [];
  let why = '';
  for (const m of members) {
    await m.w.discard().catch((err: unknown) => {
      left.push(job.target.where(m.path));
      why ||= errorMessage(err);
    });
  }
  if (left.length === 0) return '';
  return `, except ${left.length} that could not be removed (${why}), whose bytes are not proven: remove them: ${nameSome(left)}`;
}

/** A tarball's restore state that each member adds to. */
interface MemberState {
  out: TarballOutcome;
  /** Finished on disk, published once the tarball's md5 is proven. */
  deferred: { path: string; w: MemberWriter }[];
  /** Published on S3 with only the tarball's md5 to prove them: deleted if it fails. */
  unproven: { path: string; w: MemberWriter }[];
  puts: BackgroundPuts;
  /** The member being written, until it is published, deferred or discarded. */
  setCurrent: (m: { path: string; w: MemberWriter } | undefined) => void;
}

async function member(
  job: TarballJob,
  entry: AsyncIterable<Buffer> & { header: tar.Header },
  st: MemberState,
): Promise<void> {
  const { out, deferred, unproven, setCurrent } = st;
  const h = entry.header;
  const drain = async (hasher?: MemberHasher) => {
    for await (const c of entry) hasher?.update(c);
  };
  const p = memberPath(job.tag, h.name, h.type);
  if ('refused' in p)
    throw new PlateError(`${job.tarball.fileName}: member ${h.name} ${p.refused}; refused`);
  if (h.type === 'directory') {
    await drain();
    if (p.path !== '' && job.filter.wants(p.path)) {
      await job.target.folder(p.path);
      out.folders += 1;
    }
    return;
  }
  const size = h.size ?? 0;
  out.members.push({ path: p.path, size });
  if (!job.filter.wants(p.path)) return drain();
  const expected = job.expected.get(p.path);
  const hasher = new MemberHasher(expected ?? { size });
  const bad = (problem: string) =>
    new PlateError(`${job.tarball.fileName}: member ${p.path}: ${problem}; it was not written`);
  if (!job.target.holdsUnpublished && size <= BACKGROUND_MEMBER_MAX) {
    const chunks: Buffer[] = [];
    for await (const c of entry) {
      hasher.update(c);
      chunks.push(c);
    }
    const v = hasher.verdict();
    if (v.problem) throw bad(v.problem);
    // Not concatenated: the upload copies them into its part buffer anyway.
    return st.puts.add(size, () => putChecked(job, p.path, expected, { chunks, size }, v, st));
  }
  const there = await destination(job, p.path);
  if (there && !job.overwrite) {
    await drain(hasher);
    const v = hasher.verdict();
    if (v.problem) throw bad(v.problem);
    if (there.size === size && (await there.same(v.md5))) out.skipped += 1;
    else out.conflicts.push(job.target.where(p.path));
    return;
  }
  const where = job.target.where(p.path);
  const w = await writing(where, () =>
    job.target.open(p.path, expected ?? { size }, job.overwrite),
  );
  setCurrent({ path: p.path, w });
  for await (const c of entry) {
    hasher.update(c);
    await writing(where, () => w.write(c));
  }
  const v = hasher.verdict();
  if (v.problem) {
    await w.discard();
    throw bad(v.problem);
  }
  // An object replaced now could not be put back if the tarball's md5 then failed.
  if (there && v.proof === 'tarball-md5' && !job.target.holdsUnpublished) {
    await w.discard();
    if (there.size === size && (await there.same(v.md5))) out.skipped += 1;
    else out.unprovable.push(where);
    return;
  }
  await writing(where, () => w.finish(v.md5));
  out.proofs[v.proof] += 1;
  out.written += 1;
  out.bytesWritten += size;
  if (v.proof !== 'tarball-md5') return writing(where, () => w.publish());
  if (job.target.holdsUnpublished) deferred.push({ path: p.path, w });
  else {
    await writing(where, () => w.publish());
    unproven.push({ path: p.path, w });
  }
}

/**
 * A small member read whole and already checked (`v`), to S3: skipped if the same bytes are
 * there, reported if others are (unless --overwrite), else uploaded, as `member` does inline.
 */
async function putChecked(
  job: TarballJob,
  path: string,
  expected: Expected | undefined,
  bytes: { chunks: Buffer[]; size: number },
  v: { md5: string; proof: MemberProof },
  st: MemberState,
): Promise<void> {
  const { out } = st;
  const where = job.target.where(path);
  const there = await destination(job, path);
  const same = async () => there!.size === bytes.size && (await there!.same(v.md5));
  if (there && !job.overwrite) {
    if (await same()) out.skipped += 1;
    else out.conflicts.push(where);
    return;
  }
  // An object replaced now could not be put back if the tarball's md5 then failed.
  if (there && v.proof === 'tarball-md5') {
    if (await same()) out.skipped += 1;
    else out.unprovable.push(where);
    return;
  }
  const w = await writing(where, () =>
    job.target.open(path, expected ?? { size: bytes.size }, job.overwrite),
  );
  try {
    // Each chunk is let go once the upload has copied it: a member is not held twice.
    for (let c = bytes.chunks.shift(); c; c = bytes.chunks.shift())
      await writing(where, () => w.write(c));
    await writing(where, () => w.finish(v.md5));
    await writing(where, () => w.publish());
  } catch (err) {
    await w.discard().catch(() => {});
    throw err;
  }
  out.proofs[v.proof] += 1;
  out.written += 1;
  out.bytesWritten += bytes.size;
  if (v.proof === 'tarball-md5') st.unproven.push({ path, w });
}

/**
 * A failed write (a full disk, a refused upload) is the destination's fault, not the tarball's:
 * say so, naming the destination, rather than calling the tarball unreadable.
 */
export function writing<T>(where: string, fn: () => Promise<T>): Promise<T> {
  return blamingDestination(
    fn,
    (why) => `cannot write ${where} (${why}); nothing of it is presented as restored`,
  );
}

/**
 * What is at a member's destination. Reading it (a HEAD refused, a file that cannot be read
 * back) fails in the destination's name too: the tarball is fine, and reading it another way
 * would not help.
 */
export async function destination(job: TarballJob, path: string): Promise<Existing | undefined> {
  const where = job.target.where(path);
  const look = <T>(fn: () => Promise<T>) =>
    blamingDestination(
      fn,
      (why) =>
        `cannot check what is at ${where} (${why}); nothing of it was written: give this run read access there, then re-run`,
    );
  const there = await look(() => job.target.existing(path));
  return there && { size: there.size, same: (md5) => look(() => there.same(md5)) };
}

/** Runs `fn`; an error that is not already a plate's (or an abort) becomes `message(why)`. */
async function blamingDestination<T>(
  fn: () => Promise<T>,
  message: (why: string) => string,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PlateError || isAbort(err)) throw err;
    throw new PlateError(message(destinationTrouble(err)));
  }
}

function destinationTrouble(err: unknown): string {
  return (err as NodeJS.ErrnoException).code === 'ENOSPC'
    ? 'the disk is full'
    : `${s3ErrorCode(err)}: ${errorMessage(err)}`;
}
