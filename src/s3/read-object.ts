import { setTimeout as sleep } from 'node:timers/promises';
import { PlateError } from '../errors.js';
import { isPlainMd5, StreamMd5 } from '../integrity/etag.js';
import {
  httpStatus,
  isAbort,
  isNotFound,
  s3ErrorCode,
  type ObjectInfo,
  type S3Store,
} from './store.js';

/** A body cut mid-stream is resumed from the byte it reached this many times before giving up. */
export const MAX_BODY_RESUMES = 5;
const RESUME_BACKOFF_MS = 200;

/** The object is in Glacier / an Intelligent-Tiering archive tier: it must be restored first. */
export class ArchivedObjectError extends PlateError {
  override name = 'ArchivedObjectError';
  constructor(readonly key: string) {
    super(`${key} is in an archive storage class (InvalidObjectState); restore it first`);
  }
}

/**
 * Streams one object's bytes exactly as listed. On a versioned bucket the GET names the listed
 * version; it also carries If-Match with the listed ETag, so an object overwritten since the
 * listing (unversioned) fails instead of archiving other bytes; a body cut
 * mid-way is resumed with a Range request; the byte count, and the md5 where the ETag is one,
 * are checked at the end so a short, long or corrupted body never reaches the tarball silently.
 */
export async function* objectChunks(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
): AsyncGenerator<Buffer> {
  let pos = 0;
  let resumes = 0;
  let md5 = isPlainMd5(obj.etag) ? new StreamMd5() : undefined;
  for (;;) {
    try {
      // The listed version exactly: a version written since cannot slip into the tarball.
      const r = await store.get(bucket, obj.key, {
        ifMatch: obj.etag,
        start: pos,
        ...(obj.versionId ? { versionId: obj.versionId } : {}),
      });
      // SSE-KMS ETags are not the md5 of the bytes.
      if (r.encryption === 'aws:kms' || r.encryption === 'aws:kms:dsse') md5 = undefined;
      for await (const c of r.body) {
        const chunk = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        pos += chunk.length;
        if (pos > obj.size) {
          throw new PlateError(
            `${obj.key}: more bytes than the listed ${obj.size}; it changed: re-run once the source is stable`,
          );
        }
        await md5?.update(chunk);
        yield chunk;
      }
      break;
    } catch (err) {
      if (err instanceof PlateError || isAbort(err) || store.signal.aborted) throw err;
      const code = s3ErrorCode(err);
      if (code === 'InvalidObjectState') throw new ArchivedObjectError(obj.key);
      if (httpStatus(err) === 412 || code === 'PreconditionFailed') {
        throw new PlateError(
          `${obj.key} changed since it was listed (ETag is no longer ${obj.etag}); re-run once the source is stable`,
        );
      }
      if (isNotFound(err))
        throw new PlateError(
          `${obj.key} was deleted since it was listed; re-run once the source is stable`,
        );
      if (resumes >= MAX_BODY_RESUMES) {
        throw new PlateError(
          `${obj.key}: read failed ${resumes + 1} times (${code}); re-run later, the plate is redone from the start`,
        );
      }
      resumes += 1;
      await sleep(RESUME_BACKOFF_MS * 2 ** resumes * Math.random(), undefined, {
        signal: store.signal,
      });
    }
  }
  if (pos !== obj.size) {
    throw new PlateError(
      `${obj.key}: got ${pos} bytes, the listing says ${obj.size}; re-run once the source is stable`,
    );
  }
  if (md5 && (await md5.digest()) !== obj.etag) {
    throw new PlateError(
      `${obj.key}: bytes read do not match its ETag ${obj.etag} (changed or corrupted); re-run, and check the object if it repeats`,
    );
  }
}

/**
 * Reads one object whole, checked as objectChunks checks it, and keeps the chunks as they came:
 * joining them would copy every source byte once more only for the gzip stage to cut it again.
 */
export async function readObject(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const c of objectChunks(store, bucket, obj)) chunks.push(c);
  return chunks;
}
