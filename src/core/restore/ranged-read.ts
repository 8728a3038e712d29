import { setTimeout as sleep } from 'node:timers/promises';
import { PlateError } from '../../errors.js';
import { ArchivedObjectError, MAX_BODY_RESUMES } from '../../s3/read-object.js';
import { httpStatus, isAbort, s3ErrorCode, type ObjectInfo, type S3Store } from '../../s3/store.js';
import { readAhead } from '../read-ahead.js';

/**
 * Bytes per ranged GET of a tarball: small enough to retry cheaply, large enough that a GET's
 * first-byte wait stays small beside its transfer.
 */
export const RANGE_BYTES = 4 * 1024 * 1024;
/**
 * Ranged GETs in flight per tarball: one GET stream is latency-bound well below a link's rate.
 * Eight (32 MiB, the read-ahead archive keeps per plate) rather than four: through the bench's
 * emulated link a restore took ~0.8× the time, for ~16 MB more per plate (README, Restore).
 */
export const RANGES_IN_FLIGHT = 8;
const RETRY_BACKOFF_MS = 200;

interface Range {
  start: number;
  /** Inclusive, as the Range header counts. */
  end: number;
  size: number;
}

/** Ranges of at most `rangeBytes` covering bytes [from, size). */
export function ranges(size: number, rangeBytes = RANGE_BYTES, from = 0): Range[] {
  const out: Range[] = [];
  for (let start = from; start < size; start += rangeBytes) {
    const end = Math.min(size, start + rangeBytes) - 1;
    out.push({ start, end, size: end - start + 1 });
  }
  return out;
}

async function fetchRange(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
  r: Range,
): Promise<Buffer[]> {
  for (let attempt = 0; ; attempt++) {
    try {
      const chunks: Buffer[] = [];
      let got = 0;
      for await (const c of await store.getRange(bucket, obj.key, r.start, r.end, {
        ifMatch: obj.etag,
      })) {
        const b = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        got += b.length;
        chunks.push(b);
      }
      if (got !== r.size) throw new Error(`bytes ${r.start}-${r.end}: got ${got} bytes`);
      return chunks;
    } catch (err) {
      if (isAbort(err) || store.signal.aborted) throw err;
      const code = s3ErrorCode(err);
      if (code === 'InvalidObjectState') throw new ArchivedObjectError(obj.key);
      if (httpStatus(err) === 412 || code === 'PreconditionFailed')
        throw new PlateError(
          `${obj.key} changed while it was read (ETag is no longer ${obj.etag}); run again`,
        );
      if (attempt >= MAX_BODY_RESUMES)
        throw new PlateError(
          `${obj.key}: bytes ${r.start}-${r.end} failed ${attempt + 1} times (${code}); run again later`,
        );
      await sleep(RETRY_BACKOFF_MS * 2 ** attempt * Math.random(), undefined, {
        signal: store.signal,
      });
    }
  }
}

/**
 * An object's bytes in order, read as ranged GETs of RANGE_BYTES with RANGES_IN_FLIGHT of them
 * in flight; each pinned to the listed ETag (If-Match) so an object replaced mid-read fails, and
 * each retried alone when it fails. Memory: RANGES_IN_FLIGHT + 1 ranges (36 MiB), the one being
 * consumed included.
 */
export async function* rangedChunks(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
  /** Only bytes [from, to) of the object (a few gzip members, through its index). */
  span: { from: number; to: number } = { from: 0, to: obj.size },
): AsyncGenerator<Buffer> {
  const all = ranges(span.to, RANGE_BYTES, span.from);
  const opts = { maxCount: RANGES_IN_FLIGHT, maxBytes: RANGES_IN_FLIGHT * RANGE_BYTES };
  for await (const { body } of readAhead(all, (r) => fetchRange(store, bucket, obj, r), opts)) {
    yield* body;
  }
}
