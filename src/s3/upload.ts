import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { PlateError } from '../errors.js';
import type { EtagResult } from '../integrity/etag.js';
import { CLEANUP_TIMEOUT_MS, httpStatus, s3ErrorCode, type S3Store } from './store.js';

/**
 * What an upload tells its caller about the key it writes, so failure cleanup removes only our
 * own object: `sent` once the final write (Complete, or the single PUT) was sent, after which
 * the object there may be ours; `taken` when nothing there is ours (another writer's object).
 */
export interface KeyClaim {
  sent: boolean;
  taken: boolean;
}

/** The command whose run writes the object: what the user re-runs once a conflict is settled. */
export type Writer = 'archive' | 'restore';

/** Another object holds the key (If-None-Match: * answered 412, and it is not ours). */
export class KeyTakenError extends PlateError {
  override name = 'KeyTakenError';
  constructor(bucket: string, key: string, what: string, writer: Writer = 'archive') {
    super(
      `s3://${bucket}/${key} was written by someone else during this ${writer} (${what}); left untouched, not removed: check whose it is, remove it if it is not needed, then re-run ${writer}`,
    );
  }
}

/** A 412 on a single PUT with If-None-Match: * (store.put has already compared the bytes). */
async function putOnce(
  store: S3Store,
  bucket: string,
  key: string,
  body: Buffer,
  md5: Buffer,
  claim: KeyClaim | undefined,
  ifNoneMatch = true,
  writer: Writer = 'archive',
): Promise<{ versionId?: string }> {
  if (claim) claim.sent = true;
  try {
    return await store.put(bucket, key, body, { contentMd5: md5, ifNoneMatch });
  } catch (err) {
    if (httpStatus(err) !== 412) throw err;
    if (claim) claim.taken = true;
    throw new KeyTakenError(
      bucket,
      key,
      'the PUT answered 412 and the object there has other bytes',
      writer,
    );
  }
}

/** Parts uploaded at once per tarball: enough to hide latency; memory is this × part size. */
export const UPLOAD_QUEUE_SIZE = 4;

/**
 * One multipart upload whose parts are added as they become available. At most `queueSize`
 * parts are in flight (`add` waits for a free slot), each with its Content-MD5 so S3 refuses
 * bytes that differ from those hashed. The first failure stops the other parts' requests at once
 * and is what every later call throws. `abort` aborts the upload unless it was completed
 * (orphaned parts are billed until aborted). lib-storage's Upload does neither per-part MD5 nor
 * abort signals for requests already in flight, hence this small uploader.
 */
class PartUploader {
  private uploadId: Promise<string> | undefined;
  private readonly etags: string[] = [];
  private readonly md5s: Buffer[] = [];
  private bytes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private readonly parts: S3Store;
  private failure: unknown;

  constructor(
    private readonly store: S3Store,
    private readonly bucket: string,
    private readonly key: string,
    private readonly queueSize: number,
    private readonly claim: KeyClaim | undefined,
    /** false: replace an existing object (restore --overwrite); else refuse to (412). */
    private readonly ifNoneMatch = true,
    private readonly writer: Writer = 'archive',
  ) {
    this.parts = store.withSignal(AbortSignal.any([store.signal, this.stop.signal]));
  }

  /** Starts part `n` (1-based) once fewer than `queueSize` parts are in flight. */
  async add(
    n: number,
    body: () => Promise<Buffer>,
    md5: Buffer,
    release?: (body: Buffer) => void,
  ): Promise<void> {
    while (this.inFlight.size >= this.queueSize && !this.failure) {
      await Promise.race(this.inFlight);
    }
    this.throwIfFailed();
    this.uploadId ??= this.parts.createMultipart(this.bucket, this.key);
    this.md5s[n - 1] = md5;
    const p: Promise<void> = this.uploadId
      .then(async (id) => {
        const buf = await body();
        this.bytes += buf.length;
        try {
          this.etags[n - 1] = await this.parts.uploadPart(this.bucket, this.key, id, n, buf, md5);
        } finally {
          release?.(buf);
        }
      })
      .catch((err: unknown) => {
        this.failure ??= err;
        this.stop.abort(err);
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /**
   * Waits for the parts in flight, then completes the upload with `If-None-Match: *`. A 412 (or
   * NoSuchUpload) is a retried Complete whose first attempt succeeded only if the object there
   * now is ours: our size and multipart ETag (or `md5`, the whole object's, as some stores answer).
   * Otherwise our upload is aborted and KeyTakenError thrown: the object there is someone else's.
   * Answers the version id of the object made, on a versioned bucket.
   */
  async complete(md5?: string): Promise<{ versionId?: string }> {
    await Promise.all(this.inFlight);
    this.throwIfFailed();
    if (!this.uploadId) throw new Error(`s3://${this.bucket}/${this.key}: no part was uploaded`);
    const id = await this.uploadId;
    if (this.claim) this.claim.sent = true;
    let made: { versionId?: string };
    try {
      made = await this.store.completeMultipart(
        this.bucket,
        this.key,
        id,
        this.etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })),
        { ifNoneMatch: this.ifNoneMatch },
      );
    } catch (err) {
      const status = httpStatus(err);
      if (status !== 412 && s3ErrorCode(err) !== 'NoSuchUpload') throw err;
      const there = await this.store.head(this.bucket, this.key);
      const etag = `${createHash('md5').update(Buffer.concat(this.md5s)).digest('hex')}-${this.md5s.length}`;
      const ours =
        there !== undefined &&
        there.size === this.bytes &&
        (there.etag === etag || (md5 !== undefined && there.etag === md5));
      if (!ours) {
        if (this.claim) this.claim.taken = true; // nothing there is ours: cleanup leaves the key
        if (status === 412) await this.abort(); // our parts are still there, billed until aborted
        this.uploadId = undefined;
        const answered = status === 412 ? '412' : 'NoSuchUpload';
        if (!there) {
          throw new PlateError(
            `s3://${this.bucket}/${this.key}: CompleteMultipartUpload answered ${answered} and no object is there (another writer, or our upload aborted by someone else); re-run ${this.writer}`,
          );
        }
        throw new KeyTakenError(
          this.bucket,
          this.key,
          `CompleteMultipartUpload answered ${answered}; the object there has ${there.size} bytes, ETag ${there.etag}, ours ${this.bytes} bytes, ETag ${etag}`,
          this.writer,
        );
      }
      made = there.versionId ? { versionId: there.versionId } : {};
    }
    this.uploadId = undefined; // completed: nothing to abort
    return made;
  }

  /** Stops the parts in flight and aborts the upload, unless it was completed. */
  async abort(): Promise<void> {
    this.failure ??= new Error(`s3://${this.bucket}/${this.key}: upload aborted`); // no more parts
    this.stop.abort();
    await Promise.allSettled(this.inFlight);
    const pending = this.uploadId;
    this.uploadId = undefined;
    const id = await pending?.catch(() => undefined);
    if (id === undefined) return;
    await this.store
      .withSignal(AbortSignal.timeout(CLEANUP_TIMEOUT_MS))
      .abortMultipart(this.bucket, this.key, id)
      .catch(() => {
        // Some stores (s3rver) do not implement abort; a later run's resume sweeps leftovers.
      });
  }
}

export interface FileUploadInput {
  bucket: string;
  key: string;
  /** The local file, being written by someone else; only bytes reported by `written` are read. */
  path: string;
  partSize: number;
  queueSize?: number;
  /** Told when the final write was sent, and when another object holds the key. */
  claim?: KeyClaim;
}

/**
 * Uploads a local file while it is being written, as one object with `If-None-Match: *`: each
 * part goes up as soon as it is on disk and more bytes follow it, so the upload overlaps the
 * writing instead of starting after it. Parts are read back from the file and carry the md5
 * computed while the bytes were written, so S3 refuses a part whose bytes changed on the way.
 * A file of at most one part is sent as a single PUT when it is finished. Memory: queueSize ×
 * partSize.
 */
export class FileUpload {
  private readonly parts: PartUploader;
  private fh: Promise<FileHandle> | undefined;
  private queued = 0;
  private pump: Promise<void> = Promise.resolve();
  /** Part buffers whose upload ended, reused for the next parts. */
  private readonly free: Buffer[] = [];

  constructor(
    private readonly store: S3Store,
    private readonly input: FileUploadInput,
  ) {
    this.parts = new PartUploader(
      store,
      input.bucket,
      input.key,
      input.queueSize ?? UPLOAD_QUEUE_SIZE,
      input.claim,
    );
  }

  /** `bytes` of the file are on disk; `partMd5s` holds the md5 of each complete part so far. */
  written(bytes: number, partMd5s: readonly Buffer[]): void {
    const { partSize } = this.input;
    // Part i goes up once a byte after it exists: a file of exactly one part stays a single PUT.
    const ready = Math.min(bytes > 0 ? Math.floor((bytes - 1) / partSize) : 0, partMd5s.length);
    while (this.queued < ready) this.queue(this.queued, partSize, partMd5s[this.queued]!);
  }

  /** Throws the first part failure, if any, so the writer can stop early. */
  throwIfFailed(): void {
    this.parts.throwIfFailed();
  }

  /** The file is complete, with these sums: uploads what is left and completes the object. */
  async finish(hash: EtagResult): Promise<void> {
    const { bucket, key, path, partSize } = this.input;
    const count = hash.partMd5s.length;
    try {
      if (count !== Math.max(1, Math.ceil(hash.size / partSize))) {
        throw new Error(`${path}: ${count} part md5s for ${hash.size} bytes at ${partSize} a part`);
      }
      if (count === 1) {
        const body = await this.read(0, hash.size);
        await putOnce(this.store, bucket, key, body, hash.partMd5s[0]!, this.input.claim);
        return;
      }
      this.written(hash.size, hash.partMd5s);
      const last = count - 1;
      this.queue(last, hash.size - last * partSize, hash.partMd5s[last]!);
      await this.pump;
      await this.parts.complete(hash.md5);
    } catch (err) {
      await this.parts.abort();
      throw err;
    } finally {
      await this.close();
    }
  }

  /** Stops uploading and aborts the multipart upload (the file is the writer's to remove). */
  async abort(): Promise<void> {
    await this.parts.abort();
    await this.pump.catch(() => {});
    await this.close();
  }

  private queue(index: number, length: number, md5: Buffer): void {
    this.queued = index + 1;
    this.pump = this.pump.then(() =>
      this.parts.add(
        index + 1,
        () => this.read(index, length),
        md5,
        (buf) => {
          if (buf.length === this.input.partSize) this.free.push(buf);
        },
      ),
    );
    this.pump.catch(() => {}); // surfaced by finish (or throwIfFailed)
  }

  private async read(index: number, length: number): Promise<Buffer> {
    const start = index * this.input.partSize;
    this.fh ??= open(this.input.path, 'r');
    const buf =
      length === this.input.partSize
        ? (this.free.pop() ?? Buffer.allocUnsafe(length))
        : Buffer.allocUnsafe(length);
    const { bytesRead } = await (await this.fh).read(buf, 0, length, start);
    if (bytesRead !== length) throw new Error(`${this.input.path}: short read at ${start}`);
    return buf;
  }

  private async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.then((h) => h.close()).catch(() => {});
  }
}

/**
 * A Writable that uploads what is written to it as one object, part by part, while it is being
 * produced: nothing touches the disk. Parts are exactly `partSize` (the last may be shorter), so
 * the ETag computed by whoever hashes the same bytes matches; each carries its Content-MD5. At
 * most `queueSize` parts are in flight (memory: (queueSize + 1) × partSize); a write waits for a
 * free slot. An object of at most one part is sent as a single PUT. On error or destroy the
 * multipart upload is aborted.
 */
export class MultipartSink extends Writable {
  private buf: Buffer;
  private fill = 0;
  private partNumber = 0;
  private readonly parts: PartUploader;
  private readonly hashedParts: (() => readonly Buffer[]) | undefined;
  private readonly claim: KeyClaim | undefined;
  private readonly ifNoneMatch: boolean;
  private readonly wholeMd5: (() => Buffer | undefined) | undefined;
  private readonly writer: Writer;
  /** Once finished on a versioned bucket: the version made, so a discard removes it alone. */
  versionId: string | undefined;

  /**
   * `hashedParts`: the md5 of each part already hashed upstream, at this part size, by whoever
   * writes into this sink; those parts are not hashed again (a wrong one S3 refuses, never
   * stores). The last part, still open upstream when this sink ends, is always hashed here.
   * `wholeMd5`: the md5 of everything written, from whoever hashed the same bytes upstream; an
   * object of one part is sent with it as its Content-MD5 instead of being hashed again, so S3
   * refuses the PUT unless it received exactly the bytes that were hashed.
   */
  constructor(
    private readonly store: S3Store,
    private readonly bucket: string,
    private readonly key: string,
    private readonly partSize: number,
    opts: {
      queueSize?: number;
      hashedParts?: () => readonly Buffer[];
      claim?: KeyClaim;
      ifNoneMatch?: boolean;
      wholeMd5?: () => Buffer | undefined;
      /** Named in the errors of a conflict, as the command to re-run. */
      writer?: Writer;
    } = {},
  ) {
    super();
    this.buf = Buffer.allocUnsafe(partSize);
    this.ifNoneMatch = opts.ifNoneMatch ?? true;
    this.writer = opts.writer ?? 'archive';
    this.parts = new PartUploader(
      store,
      bucket,
      key,
      opts.queueSize ?? UPLOAD_QUEUE_SIZE,
      opts.claim,
      this.ifNoneMatch,
      this.writer,
    );
    this.hashedParts = opts.hashedParts;
    this.claim = opts.claim;
    this.wholeMd5 = opts.wholeMd5;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.take(chunk).then(() => done(), done);
  }

  private async take(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.fill === this.partSize) await this.dispatch();
      const n = Math.min(this.partSize - this.fill, chunk.length - offset);
      chunk.copy(this.buf, this.fill, offset, offset + n);
      this.fill += n;
      offset += n;
    }
  }

  /** Sends the full buffer as the next part; only called once more bytes are known to follow. */
  private async dispatch(): Promise<void> {
    const body = this.buf.subarray(0, this.fill);
    this.buf = Buffer.allocUnsafe(this.partSize);
    this.fill = 0;
    const n = ++this.partNumber;
    const md5 = this.hashedParts?.()[n - 1] ?? createHash('md5').update(body).digest();
    await this.parts.add(n, () => Promise.resolve(body), md5);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.finish().then(() => done(), done);
  }

  private async finish(): Promise<void> {
    if (this.partNumber === 0) {
      const body = this.buf.subarray(0, this.fill);
      const md5 = this.wholeMd5?.() ?? createHash('md5').update(body).digest();
      const made = await putOnce(
        this.store,
        this.bucket,
        this.key,
        body,
        md5,
        this.claim,
        this.ifNoneMatch,
        this.writer,
      );
      this.versionId = made.versionId;
      return;
    }
    await this.dispatch();
    this.versionId = (await this.parts.complete()).versionId;
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.parts.abort().finally(() => done(err));
  }
}
