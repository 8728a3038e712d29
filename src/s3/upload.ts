import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import type { EtagResult } from '../integrity/etag.js';
import { CLEANUP_TIMEOUT_MS, httpStatus, s3ErrorCode, type S3Store } from './store.js';

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
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private readonly parts: S3Store;
  private failure: unknown;

  constructor(
    private readonly store: S3Store,
    private readonly bucket: string,
    private readonly key: string,
    private readonly queueSize: number,
    /** false: replace an existing object (restore --overwrite); else refuse to (412). */
    private readonly ifNoneMatch = true,
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
    const p: Promise<void> = this.uploadId
      .then(async (id) => {
        const buf = await body();
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

  /** Waits for the parts in flight, then completes the upload with `If-None-Match: *`. */
  async complete(): Promise<void> {
    await Promise.all(this.inFlight);
    this.throwIfFailed();
    if (!this.uploadId) throw new Error(`s3://${this.bucket}/${this.key}: no part was uploaded`);
    const id = await this.uploadId;
    try {
      await this.store.completeMultipart(
        this.bucket,
        this.key,
        id,
        this.etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })),
        { ifNoneMatch: this.ifNoneMatch },
      );
    } catch (err) {
      // A retried Complete whose first attempt succeeded (response lost) answers 412 or
      // NoSuchUpload; the caller's HEAD + ETag check then tells our object from another.
      if (httpStatus(err) !== 412 && s3ErrorCode(err) !== 'NoSuchUpload') throw err;
    }
    this.uploadId = undefined; // completed: nothing to abort
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
        await this.store.put(bucket, key, body, {
          contentMd5: hash.partMd5s[0]!,
          ifNoneMatch: true,
        });
        return;
      }
      this.written(hash.size, hash.partMd5s);
      const last = count - 1;
      this.queue(last, hash.size - last * partSize, hash.partMd5s[last]!);
      await this.pump;
      await this.parts.complete();
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
  private readonly ifNoneMatch: boolean;

  /**
   * `hashedParts`: the md5 of each part already hashed upstream, at this part size, by whoever
   * writes into this sink; those parts are not hashed again (a wrong one S3 refuses, never
   * stores). The last part, still open upstream when this sink ends, is always hashed here.
   */
  constructor(
    private readonly store: S3Store,
    private readonly bucket: string,
    private readonly key: string,
    private readonly partSize: number,
    opts: { queueSize?: number; hashedParts?: () => readonly Buffer[]; ifNoneMatch?: boolean } = {},
  ) {
    super();
    this.buf = Buffer.allocUnsafe(partSize);
    this.ifNoneMatch = opts.ifNoneMatch ?? true;
    this.parts = new PartUploader(
      store,
      bucket,
      key,
      opts.queueSize ?? UPLOAD_QUEUE_SIZE,
      this.ifNoneMatch,
    );
    this.hashedParts = opts.hashedParts;
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
      const md5 = createHash('md5').update(body).digest();
      await this.store.put(this.bucket, this.key, body, {
        contentMd5: md5,
        ifNoneMatch: this.ifNoneMatch,
      });
      return;
    }
    await this.dispatch();
    await this.parts.complete();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.parts.abort().finally(() => done(err));
  }
}
