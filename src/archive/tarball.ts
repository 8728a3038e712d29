import { once } from 'node:events';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { PlateError } from '../errors.js';
import { EtagHasher, type EtagResult } from '../integrity/etag.js';
import { GZIP_BLOCK_SIZE, GzipBlocks } from './gzip-blocks.js';
import { TarScanner, type IndexMember, type TarIndex } from './tar-index.js';
import { COMPRESS_SLOTS } from './compress-limit.js';
import type { GzipEngine } from './gzip-engine.js';

/** tar rounds every entry up to this. */
const TAR_BLOCK = 512;
/** Header + a PAX header (path of up to S3's 1024-byte key) + its own header, rounded up. */
const TAR_ENTRY_OVERHEAD = 3 * 1024;
/** Two zero blocks end a tar. */
const TAR_END = 1024;

export interface TarEntryPlan {
  size: number;
}

/**
 * An upper bound of the tarball's size, known before any byte is written. The upload's part size
 * is chosen from it, so the multipart ETag can be computed while the tarball is being written.
 * Deflate never grows data by more than ~0.03 % plus per-member headers; 1 % + 1 MiB covers both.
 */
export function tarballSizeBound(entries: Iterable<TarEntryPlan>): number {
  let tarBytes = TAR_END;
  for (const e of entries)
    tarBytes += TAR_ENTRY_OVERHEAD + Math.ceil(e.size / TAR_BLOCK) * TAR_BLOCK;
  return Math.ceil(tarBytes * 1.01) + 1024 * 1024;
}

export interface TarballOptions {
  /** The local file to write; ignored when `sink` is given. */
  path: string;
  /** Where the bytes go instead of a file (e.g. an upload that runs while they are produced). */
  sink?: NodeJS.WritableStream;
  partSize: number;
  /** gzip level 1–9, or undefined for a plain .tar. */
  level?: number;
  /** What compresses the gzip blocks (default: the fastest built for the level). */
  engine?: GzipEngine;
  signal?: AbortSignal;
  /**
   * Called each time more of the file is on disk, with its size so far and the md5 of every
   * part complete so far (those bytes were hashed before they were written).
   */
  onWritten?: (bytes: number, partMd5s: readonly Buffer[]) => void;
}

export interface WrittenEntry {
  name: string;
  size: number;
  type: 'file' | 'directory';
}

function isChunkList(body: readonly Buffer[] | AsyncIterable<Buffer>): body is readonly Buffer[] {
  return Array.isArray(body);
}

/** Hashes bytes on their way to disk: the md5 and ETag are of exactly the bytes written. */
class HashTap extends Transform {
  constructor(readonly hasher: EtagHasher) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, done: TransformCallback): void {
    // Hashed on the thread pool; the chunk goes on once hashed, so the part md5s always cover
    // every byte passed downstream (the uploads take them from here).
    this.hasher.updateAsync(chunk).then(() => done(null, chunk), done);
  }
}

/** Finds entry offsets in the tar stream on its way to gzip (or to the plain .tar). */
class ScanTap extends Transform {
  readonly scanner = new TarScanner();
  override _transform(chunk: Buffer, _e: BufferEncoding, done: TransformCallback): void {
    this.scanner.push(chunk);
    done(null, chunk);
  }
}

/** Writes to a new file ('wx': never over one it did not create), reporting bytes on disk. */
class FileSink extends Writable {
  private fh: FileHandle | undefined;
  private bytes = 0;
  created = false;

  constructor(
    private readonly path: string,
    private readonly onWritten: (bytes: number) => void,
  ) {
    super();
  }

  override _construct(done: (err?: Error | null) => void): void {
    open(this.path, 'wx').then((fh) => {
      this.fh = fh;
      this.created = true;
      done();
    }, done);
  }

  override _write(chunk: Buffer, _e: BufferEncoding, done: (err?: Error | null) => void): void {
    this.writeAll(chunk).then(() => done(), done);
  }

  private async writeAll(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const { bytesWritten } = await this.fh!.write(
        chunk,
        offset,
        chunk.length - offset,
        this.bytes,
      );
      offset += bytesWritten;
      this.bytes += bytesWritten;
    }
    this.onWritten(this.bytes);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    if (!fh) return done(err);
    fh.close().then(
      () => done(err),
      (closeErr: unknown) => done(err ?? (closeErr as Error)),
    );
  }
}

/**
 * Writes one tarball to a local file, entry by entry (tar-stream → gzip blocks → md5/ETag → disk).
 * Entry sizes come from the listing; tar-stream refuses a body of another size.
 */
export class TarballWriter {
  private readonly pack = tar.pack();
  private readonly hasher: EtagHasher;
  private readonly done: Promise<void>;
  private failure: unknown;
  private file: FileSink | undefined;
  private rejectEntry: ((err: unknown) => void) | undefined;
  private readonly out: NodeJS.WritableStream & { closed?: boolean };
  private readonly scan = new ScanTap();
  private readonly members: IndexMember[] = [];
  readonly entries: WrittenEntry[] = [];

  constructor(readonly opts: TarballOptions) {
    this.hasher = new EtagHasher(opts.partSize);
    // 'wx': never write over a file this writer did not create (another run, a killed run).
    if (opts.sink) {
      this.out = opts.sink;
    } else {
      this.file = new FileSink(opts.path, (bytes) => opts.onWritten?.(bytes, this.hashedParts));
      this.out = this.file;
    }
    const out = this.out;
    const stages: NodeJS.ReadWriteStream[] = [this.scan];
    if (opts.level !== undefined) {
      const at = { compressed: 0, tar: 0 };
      const onMember = (compressed: number, tarBytes: number) => {
        this.members.push({ ...at });
        at.compressed += compressed;
        at.tar += tarBytes;
      };
      stages.push(
        new GzipBlocks(opts.level, opts.engine, GZIP_BLOCK_SIZE, COMPRESS_SLOTS, onMember),
      );
    }
    // Every failure of the pipeline passes here once, so a user sees what it means for them.
    this.done = pipeline(
      this.pack,
      ...(stages as [NodeJS.ReadWriteStream]),
      new HashTap(this.hasher),
      out,
      ...(opts.signal ? [{ signal: opts.signal }] : []),
    ).catch((err: unknown) => {
      const described = this.describe(err);
      this.failure ??= described;
      this.rejectEntry?.(described);
      throw described;
    });
    this.done.catch(() => {}); // observed through failure / rejectEntry / finish()
  }

  /** md5 of each part of the output hashed so far (at `partSize`); all of them after `finish`. */
  get hashedParts(): readonly Buffer[] {
    return this.hasher.completedParts;
  }

  async addDirectory(name: string, mtime: Date): Promise<void> {
    const dirName = name.endsWith('/') ? name : `${name}/`;
    await this.entry({ name: dirName, type: 'directory', mtime, mode: 0o755 }, []);
    this.entries.push({ name: dirName, size: 0, type: 'directory' });
  }

  /** `body`: the bytes, whole (one Buffer or the chunks they were read in) or as a stream. */
  async addFile(
    name: string,
    size: number,
    mtime: Date,
    body: Buffer | readonly Buffer[] | AsyncIterable<Buffer>,
  ) {
    const chunks = Buffer.isBuffer(body) ? [body] : body;
    if (isChunkList(chunks)) {
      const got = chunks.reduce((n, c) => n + c.length, 0);
      if (got !== size) throw new Error(`${name}: ${got} bytes, expected ${size}`);
    }
    const written = await this.entry({ name, type: 'file', size, mtime, mode: 0o644 }, chunks);
    this.entries.push({ name, size: written, type: 'file' });
  }

  private async entry(
    header: Partial<tar.Header> & { name: string },
    body: readonly Buffer[] | AsyncIterable<Buffer>,
  ): Promise<number> {
    this.throwIfFailed();
    let written = 0;
    await new Promise<void>((resolve, reject) => {
      // One listener per writer, pointed at the current entry: a closure per entry on `done`
      // would keep every entry's body alive until the whole tarball is finished.
      this.rejectEntry = reject;
      const sink = this.pack.entry(header, (err) => (err ? reject(err) : resolve()));
      // A body that fails or has the wrong size errors the entry; unhandled, that would end
      // the process instead of failing the plate.
      sink.on('error', reject);
      if (isChunkList(body)) {
        // Already in memory: tar-stream holds the chunks until gzip takes them, no extra copy.
        for (const c of body) {
          written += c.length;
          if (c.length > 0) sink.write(c);
        }
        sink.end(undefined);
        return;
      }
      (async () => {
        for await (const chunk of body) {
          written += chunk.length;
          if (!sink.write(chunk)) {
            await new Promise<void>((r) => sink.once('drain', () => r()));
          }
          this.throwIfFailed();
        }
        sink.end(undefined);
      })().catch((err: unknown) => {
        sink.destroy(err as Error);
        reject(err);
      });
    });
    this.rejectEntry = undefined;
    return written;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private describe(err: unknown): unknown {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'EEXIST') {
      return new PlateError(
        `${this.opts.path} already exists (another run on this --tmpdir, or left by a killed run); remove it and re-run`,
      );
    }
    if (code === 'ENOSPC') {
      return new PlateError(
        `${this.opts.path}: no space left on the --tmpdir device; free space or lower --max-procs`,
      );
    }
    return err;
  }

  /** Ends the tar and waits until every byte is on disk. */
  async finish(): Promise<EtagResult> {
    this.throwIfFailed();
    this.pack.finalize();
    await this.done;
    return this.hasher.digest();
  }

  /** The index of the tarball `finish` returned (README, "Tarball index"). */
  index(hash: EtagResult): TarIndex {
    const entries = this.scan.scanner.entries.map(({ flag: _flag, ...e }) => e);
    return {
      tarball: { size: hash.size, etag: hash.etag, md5: hash.md5 },
      tarBytes: this.scan.scanner.offset,
      gzip: this.opts.level !== undefined,
      members: this.members,
      entries,
    };
  }

  /** Stops writing and removes the partial file. */
  async discard(): Promise<void> {
    this.pack.destroy();
    await this.done.catch(() => {});
    // A stream destroyed before its open finished still opens (creating the file), then closes.
    if (!this.out.closed) await once(this.out, 'close').catch(() => {});
    if (this.file?.created) await rm(this.opts.path, { force: true });
  }
}
