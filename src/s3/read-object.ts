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

/** Bytes [start, end) of an object, and what its GETs said about it. */
export interface Span {
  start: number;
  end: number;
  /** Set when a GET said SSE-KMS: then the ETag is not the md5 of the bytes. */
  kms?: boolean;
}

/**
 * Streams one span of an object exactly as listed. On a versioned bucket the GET names the
 * listed version; it also carries If-Match with the listed ETag, so an object overwritten since
 * the listing (unversioned) fails instead of archiving other bytes; a body cut mid-way is resumed
 * with a Range request from the byte it reached; more bytes than the span, or fewer, fail.
 */
export async function* spanChunks(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
  span: Span,
): AsyncGenerator<Buffer> {
  let pos = span.start;
  let resumes = 0;
  // A piece of the object names its last byte; the whole object resumes as `bytes=N-`, so a body
  // longer than listed still shows.
  const piece = span.start > 0 || span.end < obj.size;
  const last = piece ? { end: span.end - 1 } : {};
  for (;;) {
    try {
      // The listed version exactly: a version written since cannot slip into the tarball.
      const r = await store.get(bucket, obj.key, {
        ifMatch: obj.etag,
        start: pos,
        ...last,
        ...(obj.versionId ? { versionId: obj.versionId } : {}),
      });
      if (r.encryption === 'aws:kms' || r.encryption === 'aws:kms:dsse') span.kms = true;
      for await (const c of r.body) {
        const chunk = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        pos += chunk.length;
        if (pos > span.end) {
          throw new PlateError(
            piece
              ? `${obj.key}: more bytes than asked for (bytes ${span.start}-${span.end - 1} of ${obj.size}): the store ignored the Range; check the endpoint`
              : `${obj.key}: more bytes than the listed ${obj.size}; it changed: re-run once the source is stable`,
          );
        }
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
  if (pos !== span.end) {
    throw new PlateError(
      piece
        ? `${obj.key}: got ${pos - span.start} bytes of the ${span.end - span.start} asked for (bytes ${span.start}-${span.end - 1} of ${obj.size}); re-run once the source is stable`
        : `${obj.key}: got ${pos} bytes, the listing says ${obj.size}; re-run once the source is stable`,
    );
  }
}

/**
 * Checks what the whole of an object's bytes, as they pass in order, come to: the md5 against
 * the ETag where the ETag is one (not multipart, not SSE-KMS). Fed by one GET or by several
 * spans read ahead of it.
 */
export class ObjectCheck {
  private md5: StreamMd5 | undefined;

  constructor(private readonly obj: ObjectInfo) {
    this.md5 = isPlainMd5(obj.etag) ? new StreamMd5() : undefined;
  }

  /** `kms`: a GET said the object is SSE-KMS encrypted, so its ETag is no md5 to check. */
  async update(chunk: Buffer, kms = false): Promise<void> {
    if (kms) this.md5 = undefined;
    await this.md5?.update(chunk);
  }

  /** After the last byte. */
  async done(kms = false): Promise<void> {
    if (kms) this.md5 = undefined;
    if (!this.md5) return;
    if ((await this.md5.digest()) !== this.obj.etag) {
      throw new PlateError(
        `${this.obj.key}: bytes read do not match its ETag ${this.obj.etag} (changed or corrupted); re-run, and check the object if it repeats`,
      );
    }
  }
}

/**
 * Streams one object's bytes exactly as listed, as spanChunks does, and checks at the end that
 * the md5, where the ETag is one, matches, so a corrupted body never reaches the tarball silently.
 */
export async function* objectChunks(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
): AsyncGenerator<Buffer> {
  const span: Span = { start: 0, end: obj.size };
  const check = new ObjectCheck(obj);
  for await (const chunk of spanChunks(store, bucket, obj, span)) {
    await check.update(chunk, span.kms);
    yield chunk;
  }
  await check.done(span.kms);
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

/** Reads one span of an object whole, checked as spanChunks checks it, chunks as they came. */
export async function readSpan(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
  span: Span,
): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const c of spanChunks(store, bucket, obj, span)) chunks.push(c);
  return chunks;
}
