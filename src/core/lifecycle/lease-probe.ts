import { randomBytes } from 'node:crypto';
import type { PlateLayout } from '../../layout/layout.js';
import type { Logger } from '../../log/log.js';
import { httpStatus, s3ErrorCode, type EtagForm, type S3Store } from '../../s3/store.js';

/** An ETag no object has: a store that honours If-Match refuses a PUT naming it. */
const WRONG_ETAG = '0'.repeat(32);

export type LeaseProbe = { ok: true; form: EtagForm } | { ok: false; why: string };

/** Whether a PUT's failure is the 412 of a condition not met. */
async function refused(put: Promise<unknown>): Promise<boolean> {
  try {
    await put;
    return false;
  } catch (err) {
    if (httpStatus(err) === 412) return true;
    throw err;
  }
}

/**
 * Whether leases can be trusted on the live bucket's store: on a scratch key of ours in the
 * plate's backup folder, a second `If-None-Match: *` PUT and a wrong `If-Match` must both answer
 * 412, and the right `If-Match` must land. AWS takes the ETag quoted (as documented); radosgw
 * matches only the bare hex, so the bare form is tried when the quoted one is refused. Any
 * other failure of the probe counts as "no leases": the run keeps today's local lock.
 */
export async function probeLeases(
  store: S3Store,
  L: PlateLayout,
  log: Logger,
): Promise<LeaseProbe> {
  const folder = L.verifiedKey.slice(0, L.verifiedKey.lastIndexOf('/') + 1);
  const key = `${folder}.imgbackup-lease-probe-${process.pid}-${randomBytes(6).toString('hex')}`;
  const put = (n: number, cond: Parameters<S3Store['putConditional']>[3]) =>
    store.putConditional(L.bucket, key, `imgbackup lease probe ${n}\n`, cond);
  let answer: LeaseProbe;
  // On a versioned bucket each PUT that lands is a version: each is removed by its id.
  const versions: string[] = [];
  const landed = async (n: number, cond: Parameters<S3Store['putConditional']>[3]) => {
    const r = await put(n, cond);
    if (r.versionId) versions.push(r.versionId);
    return r;
  };
  try {
    const { etag } = await landed(1, { ifNoneMatch: true });
    if (!(await refused(landed(2, { ifNoneMatch: true })))) {
      answer = { ok: false, why: 'a second If-None-Match: * PUT was not refused' };
    } else if (!(await refused(landed(3, { ifMatch: WRONG_ETAG, form: 'quoted' })))) {
      answer = { ok: false, why: 'a PUT with a wrong If-Match was not refused' };
    } else if (!(await refused(landed(4, { ifMatch: etag, form: 'quoted' })))) {
      answer = { ok: true, form: 'quoted' };
    } else if (!(await refused(landed(5, { ifMatch: etag, form: 'bare' })))) {
      answer = { ok: true, form: 'bare' };
    } else {
      answer = { ok: false, why: 'a PUT with the right If-Match was refused' };
    }
  } catch (err) {
    answer = { ok: false, why: `the probe's PUTs failed (${s3ErrorCode(err)})` };
  }
  const targets =
    versions.length > 0 ? versions.map((versionId) => ({ key, versionId })) : [{ key }];
  const r = await store.deleteBatch(L.bucket, targets).catch(() => undefined);
  if (!r || r.errors.length > 0) log.warn({ key }, 'could not remove the lease probe object');
  log.info({ bucket: L.bucket, ...answer }, 'lease probe');
  return answer;
}
