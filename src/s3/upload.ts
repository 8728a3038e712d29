import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { CLEANUP_TIMEOUT_MS, httpStatus, s3ErrorCode, type S3Store } from './store.js';

/** Parts uploaded at once per tarball: enough to hide latency; memory is this × part size. */
export const UPLOAD_QUEUE_SIZE = 4;

export interface UploadFileInput {
  bucket: string;
  key: string;
  path: string;
  size: number;
  partSize: number;
  /** md5 of each part, computed while the file was written; S3 checks each part against it. */
  partMd5s: Buffer[];
  queueSize?: number;
}

/**
 * Uploads a local file as one object with `If-None-Match: *`, never overwriting. Parts are read
 * from the file by N workers pulling part numbers from one iterator, so memory is bounded by
 * queueSize × partSize. Each part carries its Content-MD5, so S3 refuses bytes that differ from
 * those hashed while writing. On any failure the multipart upload is aborted (orphaned parts are
 * billed until aborted). lib-storage's Upload does neither per-part MD5 nor abort signals for
 * requests already in flight, hence this small uploader.
 */
export async function uploadFile(store: S3Store, input: UploadFileInput): Promise<void> {
  const { bucket, key, path, size, partSize, partMd5s } = input;
  const partCount = partMd5s.length;
  if (partCount !== Math.max(1, Math.ceil(size / partSize))) {
    throw new Error(`${path}: ${partCount} part md5s for ${size} bytes at ${partSize} a part`);
  }
  const fh = await open(path, 'r');
  try {
    const readPart = async (index: number): Promise<Buffer> => {
      const start = index * partSize;
      const length = Math.min(partSize, size - start);
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, start);
      if (bytesRead !== length) throw new Error(`${path}: short read at ${start}`);
      return buf;
    };
    if (partCount === 1) {
      await store.put(bucket, key, await readPart(0), {
        contentMd5: partMd5s[0]!,
        ifNoneMatch: true,
      });
      return;
    }
    const uploadId = await store.createMultipart(bucket, key);
    // The first failed part stops the other workers' requests at once.
    const stop = new AbortController();
    const parts = store.withSignal(AbortSignal.any([store.signal, stop.signal]));
    try {
      const etags: string[] = new Array<string>(partCount);
      const indexes = Array.from({ length: partCount }, (_, i) => i)[Symbol.iterator]();
      const worker = async () => {
        try {
          for (const i of indexes) {
            const body = await readPart(i);
            etags[i] = await parts.uploadPart(bucket, key, uploadId, i + 1, body, partMd5s[i]!);
          }
        } catch (err) {
          stop.abort(err);
          throw err;
        }
      };
      const workers = Array.from(
        { length: Math.min(input.queueSize ?? UPLOAD_QUEUE_SIZE, partCount) },
        worker,
      );
      const settled = await Promise.allSettled(workers);
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed) throw stop.signal.reason ?? failed.reason;
      try {
        await store.completeMultipart(
          bucket,
          key,
          uploadId,
          etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })),
          { ifNoneMatch: true },
        );
      } catch (err) {
        // A retried Complete whose first attempt succeeded (response lost) answers 412 or
        // NoSuchUpload; the caller's HEAD + ETag check then tells our object from another.
        if (httpStatus(err) !== 412 && s3ErrorCode(err) !== 'NoSuchUpload') throw err;
      }
    } catch (err) {
      const cleanup = store.withSignal(AbortSignal.timeout(CLEANUP_TIMEOUT_MS));
      await cleanup.abortMultipart(bucket, key, uploadId).catch(() => {
        // Some stores (s3rver) do not implement abort; a later run's resume sweeps leftovers.
      });
      throw err;
    }
  } finally {
    await fh.close();
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
  private uploadId: Promise<string> | undefined;
  private readonly etags: string[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failed: unknown;

  constructor(
    private readonly store: S3Store,
    private readonly bucket: string,
    private readonly key: string,
    private readonly partSize: number,
    private readonly queueSize = UPLOAD_QUEUE_SIZE,
  ) {
    super();
    this.buf = Buffer.allocUnsafe(partSize);
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
    if (this.failed) throw this.failed;
    while (this.inFlight.size >= this.queueSize) await Promise.race(this.inFlight);
    if (this.failed) throw this.failed;
    this.uploadId ??= this.store.createMultipart(this.bucket, this.key);
    const body = this.buf.subarray(0, this.fill);
    const n = ++this.partNumber;
    this.buf = Buffer.allocUnsafe(this.partSize);
    this.fill = 0;
    const md5 = createHash('md5').update(body).digest();
    const p = this.uploadId
      .then((id) => this.store.uploadPart(this.bucket, this.key, id, n, body, md5))
      .then(
        (etag) => {
          this.etags[n - 1] = etag;
        },
        (err: unknown) => {
          this.failed ??= err;
        },
      )
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.finish().then(() => done(), done);
  }

  private async finish(): Promise<void> {
    if (!this.uploadId) {
      const body = this.buf.subarray(0, this.fill);
      const md5 = createHash('md5').update(body).digest();
      await this.store.put(this.bucket, this.key, body, { contentMd5: md5, ifNoneMatch: true });
      return;
    }
    await this.dispatch();
    await Promise.all(this.inFlight);
    if (this.failed) throw this.failed;
    const id = await this.uploadId;
    try {
      await this.store.completeMultipart(
        this.bucket,
        this.key,
        id,
        this.etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })),
        { ifNoneMatch: true },
      );
    } catch (err) {
      if (httpStatus(err) !== 412 && s3ErrorCode(err) !== 'NoSuchUpload') throw err;
    }
    this.uploadId = undefined; // completed: nothing to abort
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const pending = this.uploadId;
    if (!pending || !err) return done(err);
    Promise.allSettled(this.inFlight)
      .then(() => pending)
      .then((id) =>
        this.store
          .withSignal(AbortSignal.timeout(CLEANUP_TIMEOUT_MS))
          .abortMultipart(this.bucket, this.key, id),
      )
      .catch(() => {})
      .finally(() => done(err));
  }
}
