/**
 * A plate's SOURCE objects (the live bucket's four prefixes) as far as restores go: which are in
 * an archive tier, which are on their way back, which are readable. A listing tells most of it;
 * HeadObject only what the listing cannot say.
 */
import pLimit from 'p-limit';
import type { PlateLayout } from '../../layout/layout.js';
import { PlateError } from '../../errors.js';
import { isAbort, s3ErrorCode, type ObjectInfo, type S3Store } from '../../s3/store.js';
import { isFolderMarker } from '../sources.js';
import { archiveClass, restoreState, type ArchiveClass, type RestoreState } from './state.js';

/** HEADs in flight per run: a HEAD costs as much as a small GET, and S3 serves 5500 GETs/s per prefix. */
export const SOURCE_HEADS_IN_FLIGHT = 32;

export interface SourceObject {
  key: string;
  size: number;
  /** As listed; STANDARD when the listing names none. */
  storageClass: string;
  cls: ArchiveClass;
  state: RestoreState;
  /** Left alone because the ledger says its restore was requested or needs none (no HEAD). */
  inLedger?: true;
}

/**
 * Whether the listing's RestoreStatus can be trusted to be absent for "never requested": only
 * once a store has sent it for some object (moto, like older S3-compatible stores, ignores the
 * ask; AWS S3 answers it).
 */
export interface ListingTrust {
  restoreStatusSeen: boolean;
}

/** Needs a RestoreObject before a GET can read it (not readable and not already on its way). */
export function needsRequest(o: SourceObject): boolean {
  return o.cls !== 'none' && o.state.state === 'not requested';
}

export function isArchivedClass(storageClass: string | undefined): boolean {
  return (
    storageClass === 'GLACIER' ||
    storageClass === 'DEEP_ARCHIVE' ||
    storageClass === 'INTELLIGENT_TIERING'
  );
}

/** What the listing alone says; undefined when only a HEAD can tell. */
function fromListing(o: ObjectInfo, trust: ListingTrust): SourceObject | undefined {
  const storageClass = o.storageClass ?? 'STANDARD';
  const base = { key: o.key, size: o.size, storageClass };
  if (!isArchivedClass(storageClass)) return { ...base, cls: 'none', state: { state: 'readable' } };
  if (o.restoreStatus) {
    trust.restoreStatusSeen = true;
    // For Intelligent-Tiering the tier (archive or deep) is not listed; it matters only for a
    // new request, and an object with a restore under way or done needs none.
    const cls = archiveClass({ storageClass }) === 'none' ? 'IT_ARCHIVE' : archiveClass(o);
    const state: RestoreState = o.restoreStatus.inProgress
      ? { state: 'in progress' }
      : o.restoreStatus.expiry
        ? { state: 'ready', expiry: o.restoreStatus.expiry }
        : { state: 'ready' };
    return { ...base, cls, state };
  }
  // Intelligent-Tiering's frequent / infrequent tiers look the same as its archive tiers here.
  if (storageClass === 'INTELLIGENT_TIERING' || !trust.restoreStatusSeen) return undefined;
  return { ...base, cls: archiveClass(o), state: { state: 'not requested' } };
}

async function fromHead(store: S3Store, bucket: string, o: ObjectInfo): Promise<SourceObject> {
  const head = await store.head(bucket, o.key).catch((err: unknown) => {
    if (isAbort(err)) throw err;
    throw new PlateError(`HeadObject s3://${bucket}/${o.key} failed (${s3ErrorCode(err)})`);
  });
  // Gone since the listing: nothing to restore, and archive will list again anyway.
  if (!head)
    return {
      key: o.key,
      size: o.size,
      storageClass: 'STANDARD',
      cls: 'none',
      state: { state: 'readable' },
    };
  return {
    key: o.key,
    size: head.size,
    storageClass: head.storageClass ?? 'STANDARD',
    cls: archiveClass(head),
    state: restoreState(head),
  };
}

/** Classifies listed objects, with HEADs (bounded by `heads`) only where the listing cannot say. */
export async function classify(
  store: S3Store,
  bucket: string,
  listed: ObjectInfo[],
  trust: ListingTrust,
  heads: ReturnType<typeof pLimit>,
  skip: (key: string) => boolean = () => false,
): Promise<SourceObject[]> {
  const files = listed.filter((o) => !isFolderMarker(o));
  // Seen anywhere in the listing, RestoreStatus is answered: its absence means "never requested".
  if (files.some((o) => o.restoreStatus)) trust.restoreStatusSeen = true;
  const known = files.map((o): SourceObject | undefined =>
    skip(o.key)
      ? {
          key: o.key,
          size: o.size,
          storageClass: o.storageClass ?? 'STANDARD',
          cls: 'none',
          state: { state: 'in progress' },
          inLedger: true,
        }
      : fromListing(o, trust),
  );
  return Promise.all(files.map((o, i) => known[i] ?? heads(() => fromHead(store, bucket, o))));
}

/** Every source object of the plate, listed with RestoreStatus asked for, then classified. */
export async function plateSourceObjects(
  store: S3Store,
  L: PlateLayout,
  trust: ListingTrust,
  heads: ReturnType<typeof pLimit>,
  skip?: (key: string) => boolean,
): Promise<SourceObject[]> {
  const listed: ObjectInfo[] = [];
  for (const s of L.sources) {
    for await (const o of store.list(L.bucket, s.prefix, { restoreStatus: true })) listed.push(o);
  }
  return classify(store, L.bucket, listed, trust, heads, skip);
}

export interface SourceCounts {
  objects: number;
  archived: number;
  archivedBytes: number;
  inProgress: number;
  readable: number;
}

export function countSources(objects: SourceObject[]): SourceCounts {
  const c: SourceCounts = {
    objects: objects.length,
    archived: 0,
    archivedBytes: 0,
    inProgress: 0,
    readable: 0,
  };
  for (const o of objects) {
    if (o.state.state === 'readable' || o.state.state === 'ready') c.readable += 1;
    else if (o.state.state === 'in progress') c.inProgress += 1;
    else {
      c.archived += 1;
      c.archivedBytes += o.size;
    }
  }
  return c;
}

/** Per archive class: the objects and bytes a restore-request --sources would ask for. */
export function restoreNeed(objects: SourceObject[]) {
  const byClass: Record<string, { objects: number; bytes: number }> = {};
  let count = 0;
  let bytes = 0;
  for (const o of objects.filter(needsRequest)) {
    const c = (byClass[o.cls] ??= { objects: 0, bytes: 0 });
    c.objects += 1;
    c.bytes += o.size;
    count += 1;
    bytes += o.size;
  }
  const inProgress = objects.filter((o) => o.state.state === 'in progress').length;
  return { objects: count, bytes, inProgress, byClass };
}
