import { randomBytes } from 'node:crypto';
import pLimit from 'p-limit';
import type { PlateLayout } from '../layout/layout.js';
import type { Logger } from '../log/log.js';
import { deletesByName } from '../integrity/listings.js';
import type { DeleteTarget, S3Store } from '../s3/store.js';

/** HEADs in flight when a batch's keys are checked again just before it is sent. */
const RECHECK_CONCURRENCY = 32;

/** An ETag no object has: a store that honours the condition refuses to delete with it. */
const WRONG_ETAG = '0'.repeat(32);

/** Where the store ignores the per-key ETag, only these keys need checking again. */
export const needsRecheck = deletesByName;

/**
 * Whether the bucket's store honours the per-key ETag of DeleteObjects (AWS does; some
 * S3-compatible stores delete anyway): a scratch object of ours in the plate's backup folder is
 * put, deleted with a wrong ETag, looked for, and removed. Any failure of the probe itself counts
 * as "not honoured", so the caller takes the careful path.
 */
export async function probeConditionalDelete(
  store: S3Store,
  L: PlateLayout,
  log: Logger,
): Promise<boolean> {
  const folder = L.verifiedKey.slice(0, L.verifiedKey.lastIndexOf('/') + 1);
  const key = `${folder}.imgbackup-delete-probe-${process.pid}-${randomBytes(6).toString('hex')}`;
  // With its version id, a store that ignores the ETag removes exactly that version, and so
  // does the clean-up: no delete marker is left behind on a versioned bucket.
  let target: { key: string; versionId?: string } = { key };
  try {
    const { versionId } = await store.put(L.bucket, key, 'imgbackup conditional-delete probe\n');
    if (versionId !== undefined) target = { key, versionId };
    const put = await store.head(L.bucket, key, versionId);
    if (!put) throw new Error('the probe object is not there right after its PUT');
    if (put.versionId !== undefined) target = { key, versionId: put.versionId };
    await store.deleteBatch(L.bucket, [{ ...target, etag: WRONG_ETAG }]);
    const survived = (await store.head(L.bucket, key, put.versionId)) !== undefined;
    if (survived) {
      const r = await store.deleteBatch(L.bucket, [target]);
      if (r.errors.length > 0) log.warn({ key, errors: r.errors }, 'could not remove the probe');
    }
    log.info({ bucket: L.bucket, honoured: survived }, 'conditional delete probe');
    return survived;
  } catch (err) {
    log.warn({ key, err }, 'conditional delete probe failed; taking the store as not honouring it');
    await store.deleteBatch(L.bucket, [target]).catch(() => {});
    return false;
  }
}

/**
 * A batch's keys as they are just before the batch is sent (HEAD: size, ETag, version): those
 * that changed since the plan are kept out and named, those gone are counted.
 */
export async function recheckBatch<K extends DeleteTarget & { size: number; etag: string }>(
  store: S3Store,
  bucket: string,
  batch: K[],
): Promise<{ unchanged: K[]; changed: string[]; gone: number }> {
  const limit = pLimit(RECHECK_CONCURRENCY);
  const now = await Promise.all(
    batch.map((k) =>
      needsRecheck(k) ? limit(() => store.head(bucket, k.key, k.versionId)) : undefined,
    ),
  );
  const out = { unchanged: [] as K[], changed: [] as string[], gone: 0 };
  batch.forEach((k, i) => {
    const h = now[i];
    if (!needsRecheck(k)) out.unchanged.push(k);
    else if (!h) out.gone += 1;
    else if (h.size !== k.size || h.etag !== k.etag) out.changed.push(k.key);
    else out.unchanged.push(k);
  });
  return out;
}
