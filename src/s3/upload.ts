import { open } from 'node:fs/promises';
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
