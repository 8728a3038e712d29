import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, lstat, mkdir, open, realpath, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { PlateError } from '../../errors.js';
import { partSizeFor } from '../../integrity/etag.js';
import type { S3Store } from '../../s3/store.js';
import { MultipartSink } from '../../s3/upload.js';
import { candidatePartSizes, type Expected } from './member-check.js';

/** One member being written: bytes go in, then it is published under its name or discarded. */
export interface MemberWriter {
  write(chunk: Buffer): Promise<void>;
  /**
   * All bytes are in; make them durable but not yet visible under the final name (disk). `md5`:
   * theirs (hex), hashed by the caller, so an upload need not hash them again.
   */
  finish(md5?: string): Promise<void>;
  /** Make the member visible under its final name. */
  publish(): Promise<void>;
  /**
   * Nothing of the member stays: temp file removed, multipart upload aborted, or (S3, after
   * publish) the object this run created deleted again.
   */
  discard(): Promise<void>;
}

/** What is at a member's destination before the restore writes it. */
export interface Existing {
  size: number;
  /** Whether it holds exactly the bytes with this md5 (and, for S3, one of these ETags). */
  same(md5: string): Promise<boolean>;
}

export interface Target {
  /** Whether a finished member can wait unpublished (a temp file) for the tarball's md5. */
  readonly holdsUnpublished: boolean;
  /** Where a listing path goes, as the user reads it. */
  where(path: string): string;
  folder(path: string): Promise<void>;
  existing(path: string): Promise<Existing | undefined>;
  open(path: string, expected: Expected | undefined, overwrite: boolean): Promise<MemberWriter>;
}

const PARTIAL_SUFFIX = '.imgbackup-partial';
/** Bytes in a file name on the filesystems restores go to (ext4, xfs, tmpfs: NAME_MAX). */
const NAME_MAX = 255;

/**
 * A file being restored is first written under this name beside its final one: the name
 * itself where it fits, else its sha-256, so a long member name still gets a temp file.
 */
export function partialName(file: string): string {
  const base = basename(file);
  const named = `.${base}${PARTIAL_SUFFIX}`;
  const name =
    Buffer.byteLength(named) <= NAME_MAX
      ? named
      : `.${createHash('sha256').update(base).digest('hex')}${PARTIAL_SUFFIX}`;
  return join(dirname(file), name);
}

async function md5OfFile(file: string): Promise<string> {
  const h = createHash('md5');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/**
 * The tree `tar xzf X.tar.gz --strip-components=1` makes under DIR. Every path is checked to
 * stay inside DIR after symlinks already on disk are resolved, so no member lands elsewhere.
 */
export class DirTarget implements Target {
  readonly holdsUnpublished = true;
  private constructor(private readonly root: string) {}

  static async create(dir: string): Promise<DirTarget> {
    return new DirTarget(await realpath(dir));
  }

  where(path: string): string {
    return join(this.root, path);
  }

  /** Throws unless `dir`, with every symlink resolved, is the root or below it. */
  private async checkInside(dir: string, path: string): Promise<void> {
    const real = await realpath(dir);
    if (real !== this.root && !real.startsWith(this.root + sep)) {
      throw new PlateError(
        `member ${path}: ${dir} leads outside ${this.root} (a symlink); refused`,
      );
    }
  }

  /**
   * The member's file name, its directory created (when asked) and inside the root. The
   * deepest existing ancestor is checked before anything is created, so a symlink already on
   * disk cannot make mkdir create folders elsewhere.
   */
  private async inside(path: string, create: boolean): Promise<string> {
    const file = join(this.root, path);
    if (!file.startsWith(this.root + sep))
      throw new PlateError(`member ${path} would land outside ${this.root}`);
    const parent = dirname(file);
    let existing = parent;
    while (!(await lstat(existing).catch(() => undefined))) existing = dirname(existing);
    await this.checkInside(existing, path);
    if (!create) return file;
    try {
      await mkdir(parent, { recursive: true });
    } catch (err) {
      throw new PlateError(`cannot create ${parent} (${(err as NodeJS.ErrnoException).code})`);
    }
    await this.checkInside(parent, path);
    return file;
  }

  async folder(path: string): Promise<void> {
    // inside() creates the parent of its path: here, the folder itself
    await this.inside(`${path}/.folder`, true);
  }

  async existing(path: string): Promise<Existing | undefined> {
    const file = await this.inside(path, false);
    const s = await lstat(file).catch(() => undefined);
    if (!s) return undefined;
    if (!s.isFile()) return { size: -1, same: () => Promise.resolve(false) };
    return { size: s.size, same: async (md5) => (await md5OfFile(file)) === md5 };
  }

  async open(
    path: string,
    _expected: Expected | undefined,
    overwrite: boolean,
  ): Promise<MemberWriter> {
    const file = await this.inside(path, true);
    const tmp = partialName(file);
    // a partial file left by a killed run is ours to replace; 'wx' never follows a symlink there
    await rm(tmp, { force: true });
    let fh: FileHandle | undefined = await open(tmp, 'wx');
    return {
      write: async (chunk) => {
        await fh!.write(chunk);
      },
      finish: async () => {
        await fh!.sync();
        await fh!.close();
        fh = undefined;
      },
      publish: () => (overwrite ? rename(tmp, file) : publishNew(tmp, file, path)),
      discard: async () => {
        await fh?.close().catch(() => {});
        fh = undefined;
        await rm(tmp, { force: true });
      },
    };
  }
}

/** Filesystems without hard links answer link() with one of these. */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EMLINK']);

/**
 * Without --overwrite: the temp file becomes `file` only if nothing is there yet. A file can
 * appear between the check at the member's start and now (hours, for members waiting for the
 * tarball's md5); rename would replace it silently, link refuses.
 */
async function publishNew(tmp: string, file: string, path: string): Promise<void> {
  const appeared = async () => {
    await rm(tmp, { force: true });
    return new PlateError(
      `member ${path}: ${file} appeared while it was being restored; left alone and this member not kept: re-run (the same bytes are skipped, other bytes reported)`,
    );
  };
  try {
    await link(tmp, file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') throw await appeared();
    if (!NO_HARD_LINKS.has(code)) throw err;
    // No hard links here: the narrowest check left is one just before the rename.
    if (await lstat(file).catch(() => undefined)) throw await appeared();
    return rename(tmp, file);
  }
  await rm(tmp, { force: true });
}

/** A member of at most this size is uploaded as a single PUT (plain-md5 ETag), buffered whole. */
const SINGLE_PUT_MAX = 16 * 1024 * 1024;
/** The archived object's own part size is reused up to this; memory is (queue + 1) × part size. */
const MAX_REUSED_PART = 64 * 1024 * 1024;

/** Each member back to its key (`projects/` + path) in a bucket, optionally under another prefix. */
export class S3Target implements Target {
  readonly holdsUnpublished = false;
  constructor(
    private readonly store: S3Store,
    private readonly bucket: string,
    private readonly prefix: string,
  ) {}

  key(path: string): string {
    return `${this.prefix}${path}`;
  }

  where(path: string): string {
    return `s3://${this.bucket}/${this.key(path)}`;
  }

  /**
   * Multipart uploads of this key left by a run that was killed (billed until aborted). Only
   * members large enough for a multipart upload can have one, so only they pay for the listing.
   */
  private async abortStale(path: string): Promise<void> {
    let ids: string[];
    try {
      ids = await this.store.listUploads(this.bucket, this.key(path));
    } catch {
      return; // a store without ListMultipartUploads (s3rver) has nothing we could abort
    }
    for (const id of ids) await this.store.abortMultipart(this.bucket, this.key(path), id);
  }

  /** Folder entries are not objects: S3 has no directories, and markers were never archived as data. */
  async folder(): Promise<void> {}

  async existing(path: string): Promise<Existing | undefined> {
    const h = await this.store.head(this.bucket, this.key(path));
    if (!h) return undefined;
    return {
      size: h.size,
      // Equal md5 ETags are equal bytes; any other ETag is compared by reading the object back.
      same: async (md5) => {
        if (h.etag === md5) return true;
        const got = createHash('md5');
        const { body } = await this.store.get(this.bucket, this.key(path), { ifMatch: h.etag });
        for await (const c of body) got.update(c);
        return got.digest('hex') === md5;
      },
    };
  }

  /**
   * Uploads with the part size that reproduces the archived object's ETag when it can be told,
   * so the restored object has the ETag it had (parts up to 64 MiB); else one PUT up to 16 MiB,
   * then the aws CLI rule. Memory: (upload queue + 1) × part size.
   */
  async open(
    path: string,
    expected: Expected | undefined,
    overwrite: boolean,
  ): Promise<MemberWriter> {
    const size = expected?.size ?? 0;
    const partSize =
      candidatePartSizes(size, expected?.etag ?? '').find((p) => p <= MAX_REUSED_PART) ??
      (size <= SINGLE_PUT_MAX ? Math.max(size, 1) : partSizeFor(size));
    if (partSize < size) await this.abortStale(path);
    let md5: Buffer | undefined;
    const sink = new MultipartSink(this.store, this.bucket, this.key(path), partSize, {
      ifNoneMatch: !overwrite,
      wholeMd5: () => md5,
      writer: 'restore',
    });
    let failure: Error | undefined;
    sink.on('error', (err: Error) => (failure ??= err));
    const done = new Promise<void>((resolve, reject) => {
      sink.on('finish', resolve);
      sink.on('error', reject);
      // Closed without finishing (destroyed): the upload did not complete, whatever is pending.
      sink.on('close', () => reject(failure ?? new Error('the upload was stopped')));
    });
    done.catch(() => {});
    let published = false;
    return {
      write: async (chunk) => {
        if (failure) throw failure;
        if (!sink.write(chunk)) {
          await new Promise<void>((resolve) => {
            const go = () => {
              sink.off('drain', go);
              sink.off('close', go);
              resolve();
            };
            sink.on('drain', go);
            sink.on('close', go);
          });
        }
        if (failure) throw failure;
      },
      finish: (hex) => {
        md5 = hex === undefined ? undefined : Buffer.from(hex, 'hex');
        return Promise.resolve();
      },
      publish: async () => {
        sink.end();
        await done;
        published = true;
      },
      discard: async () => {
        if (published) {
          // By its version id where the bucket keeps versions: a delete by name would only
          // hide the unproven bytes under a delete marker, still stored and billed.
          const { versionId } = sink;
          const r = await this.store.deleteBatch(this.bucket, [
            { key: this.key(path), ...(versionId !== undefined ? { versionId } : {}) },
          ]);
          const e = r.errors[0];
          if (e) throw new Error(`${e.code}${e.message ? ` ${e.message}` : ''}`);
          return;
        }
        sink.destroy();
        await done.catch(() => {});
      },
    };
  }
}
