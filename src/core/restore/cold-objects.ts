import { PlateError } from '../../errors.js';
import type { LayoutOptions, PlateLayout, TarballLayout } from '../../layout/layout.js';
import type { PlateRow } from '../../plates/plates-csv.js';
import type { ArchiveHead, S3Store } from '../../s3/store.js';
import { resolveLayout } from '../archive-state.js';
import { archiveClass, restoreState, type ArchiveClass, type RestoreState } from './state.js';

/** Which tarballs a restore command works on. */
export type What = 'all' | 'images' | 'backend';
export const WHATS: readonly What[] = ['all', 'images', 'backend'];

export function selectTarballs(L: PlateLayout, what: What): TarballLayout[] {
  if (what === 'all') return L.tarballs;
  return L.tarballs.filter((t) =>
    what === 'images' ? t.name !== 'backend' : t.name === 'backend',
  );
}

export interface ColdObject {
  key: string;
  role: 'tarball' | 'md5' | 'etag';
  tarball: TarballLayout;
  head: ArchiveHead;
  cls: ArchiveClass;
  state: RestoreState;
}

export interface PlateColdObjects {
  L: PlateLayout;
  tarballs: TarballLayout[];
  objects: ColdObject[];
}

/**
 * A plate's tarballs and their .md5 / .etag in the cold bucket, with what HeadObject says of
 * each. A missing tarball or .md5 fails the plate: nothing could be restored and checked. The
 * .etag is only informational (restore checks the md5), so a missing one is left out.
 */
export async function coldObjects(
  store: S3Store,
  layout: LayoutOptions,
  plate: PlateRow,
  what: What,
): Promise<PlateColdObjects> {
  const L = await resolveLayout(store, layout, plate);
  const tarballs = selectTarballs(L, what);
  const wanted = tarballs.flatMap((t) => [
    { key: t.key, role: 'tarball' as const, tarball: t },
    { key: t.md5Key, role: 'md5' as const, tarball: t },
    { key: t.etagKey, role: 'etag' as const, tarball: t },
  ]);
  const heads = await Promise.all(wanted.map((w) => store.head(L.coldBucket, w.key)));
  const missing = wanted.filter((w, i) => !heads[i] && w.role !== 'etag');
  if (missing.length > 0) {
    const names = missing.map((w) => `s3://${L.coldBucket}/${w.key}`).join(', ');
    throw new PlateError(
      `not archived: ${names} missing (is the plate id right? was it archived with imgbackup archive?)`,
    );
  }
  const objects: ColdObject[] = [];
  wanted.forEach((w, i) => {
    const head = heads[i];
    if (head) objects.push({ ...w, head, cls: archiveClass(head), state: restoreState(head) });
  });
  return { L, tarballs, objects };
}
