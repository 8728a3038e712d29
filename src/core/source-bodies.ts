import { ObjectCheck, readObject, readSpan, type Span } from '../s3/read-object.js';
import type { ObjectInfo, S3Store } from '../s3/store.js';
import { readAhead, type ReadAheadOptions } from './read-ahead.js';

export interface SourceReadOptions extends ReadAheadOptions {
  /**
   * Objects larger than this are read as ranged GETs of this size, read ahead like small objects
   * are: one GET stream is latency-bound well below a link's rate, so a plate of large images
   * read one GET at a time would be bound by it.
   */
  pieceBytes: number;
}

/**
 * Per plate: up to 16 GETs ahead within 32 MiB buffered; objects over 8 MiB are read as 8 MiB
 * ranges (the aws CLI's own default chunk for downloads), so a plate of ~10 MB images still has
 * four GETs in flight. With the upload queue this keeps a plate near 100 MB of memory (npm run
 * bench, README).
 */
export const DEFAULT_READ_AHEAD: SourceReadOptions = {
  maxCount: 16,
  maxBytes: 32 * 1024 * 1024,
  pieceBytes: 8 * 1024 * 1024,
};

/** What one GET reads: an object whole, or one range of a larger one. */
export interface Piece<T> {
  item: T;
  /** Bytes this GET reads: the whole object when `of` is 1, else one range. */
  span: Span;
  size: number;
  /** Pieces of this object (1: read whole). */
  of: number;
}

/** The GETs that read these objects, in order: one per object up to `pieceBytes`, else ranges. */
export function piecesOf<T extends { obj: ObjectInfo }>(
  items: readonly T[],
  pieceBytes: number,
): Piece<T>[] {
  const out: Piece<T>[] = [];
  for (const item of items) {
    const size = item.obj.size;
    const of = Math.max(1, Math.ceil(size / pieceBytes));
    if (of === 1) {
      out.push({ item, span: { start: 0, end: size }, size, of });
      continue;
    }
    for (let start = 0; start < size; start += pieceBytes) {
      const span = { start, end: Math.min(size, start + pieceBytes) };
      out.push({ item, span, size: span.end - span.start, of });
    }
  }
  return out;
}

export type SourceBody = Buffer[] | AsyncIterable<Buffer>;

/**
 * Yields each object with its body, in order: small ones read whole (checked by readObject),
 * larger ones as their ranges arrive, md5-checked across the ranges in order. Up to `maxCount`
 * GETs run ahead of the consumer within `maxBytes`, whatever the objects' sizes. Each body must
 * be consumed before the next object is asked for (a tarball takes them one after another).
 */
export async function* sourceBodies<T extends { obj: ObjectInfo }>(
  store: S3Store,
  bucket: string,
  items: readonly T[],
  opts: SourceReadOptions,
): AsyncGenerator<{ item: T; body: SourceBody }> {
  const pieces = readAhead(
    piecesOf(items, opts.pieceBytes),
    (p) =>
      p.of === 1
        ? readObject(store, bucket, p.item.obj)
        : readSpan(store, bucket, p.item.obj, p.span),
    opts,
  )[Symbol.asyncIterator]();
  const nextPiece = async (item: T) => {
    const r = await pieces.next();
    if (r.done || r.value.item.item !== item) throw new Error('read-ahead out of order');
    return r.value;
  };
  for (const item of items) {
    const first = await nextPiece(item);
    if (first.item.of === 1) {
      yield { item, body: first.body };
      continue;
    }
    let consumed = false;
    const body = async function* () {
      const check = new ObjectCheck(item.obj);
      let piece = first;
      for (let i = 1; ; i++) {
        for (const c of piece.body) {
          await check.update(c, piece.item.span.kms);
          yield c;
        }
        if (i === first.item.of) break;
        piece = await nextPiece(item);
      }
      await check.done(piece.item.span.kms);
      consumed = true;
    };
    yield { item, body: body() };
    if (!consumed) throw new Error(`${item.obj.key}: its body was not read to the end`);
  }
}

/**
 * One object's bytes in order, read as sourceBodies reads a large source (ranges read ahead,
 * each pinned to the listed version and ETag, the md5 checked where the ETag is one).
 */
export async function* readAheadChunks(
  store: S3Store,
  bucket: string,
  obj: ObjectInfo,
  opts: SourceReadOptions = DEFAULT_READ_AHEAD,
): AsyncGenerator<Buffer> {
  for await (const { body } of sourceBodies(store, bucket, [{ obj }], opts)) yield* body;
}
