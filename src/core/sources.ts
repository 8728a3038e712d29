import { PlateError } from '../errors.js';
import { type PlateLayout, type Source, unsafeKeyReason } from '../layout/layout.js';
import type { ObjectInfo, S3Store } from '../s3/store.js';

export interface ListedSource {
  source: Source;
  /** Every object under the prefix (folder markers included), in UTF-8 byte order of keys. */
  objects: ObjectInfo[];
}

export const byKeyBytes = (a: ObjectInfo, b: ObjectInfo) =>
  Buffer.compare(Buffer.from(a.key, 'utf8'), Buffer.from(b.key, 'utf8'));

export const isFolderMarker = (o: { key: string }) => o.key.endsWith('/');

/** How many offending keys a message names; the plate log has all of them. */
const KEYS_IN_MESSAGE = 5;

export function nameSome(keys: string[]): string {
  const shown = keys.slice(0, KEYS_IN_MESSAGE).map((k) => JSON.stringify(k));
  const more = keys.length > KEYS_IN_MESSAGE ? ` and ${keys.length - KEYS_IN_MESSAGE} more` : '';
  return shown.join(', ') + more;
}

/**
 * Lists a plate's four sources. Each is sorted here, not trusted to come sorted, so the tarball
 * and listings do not depend on a server's order. A key that cannot be archived safely fails the
 * plate before anything is written.
 */
export async function listSources(store: S3Store, layout: PlateLayout): Promise<ListedSource[]> {
  const listed = await Promise.all(
    layout.sources.map(async (source) => ({
      source,
      objects: (await store.listAll(layout.bucket, source.prefix)).sort(byKeyBytes),
    })),
  );
  const unsafe: string[] = [];
  for (const { source, objects } of listed) {
    for (const o of objects) {
      const why = unsafeKeyReason(source, o.key);
      if (why) unsafe.push(`${o.key} ${why}`);
    }
  }
  if (unsafe.length > 0) {
    throw new PlateError(
      `source keys that cannot be archived safely: ${nameSome(unsafe)}; rename those objects, then re-run`,
    );
  }
  return listed;
}

export function sourceFiles(listed: ListedSource[]): ObjectInfo[] {
  return listed.flatMap((l) => l.objects.filter((o) => !isFolderMarker(o)));
}
