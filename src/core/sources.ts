import { PlateError } from '../errors.js';
import {
  fileFolderClashes,
  type PlateLayout,
  type Source,
  unsafeKeyReason,
} from '../layout/layout.js';
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

/** Key pairs (e.g. those tar cannot both restore) as `"a" and "a/b"`, a few of them. */
export function namePairs(pairs: [string, string][]): string {
  const shown = pairs
    .slice(0, KEYS_IN_MESSAGE)
    .map(([a, b]) => `${JSON.stringify(a)} and ${JSON.stringify(b)}`);
  const more = pairs.length > KEYS_IN_MESSAGE ? `; and ${pairs.length - KEYS_IN_MESSAGE} more` : '';
  return shown.join('; ') + more;
}

/**
 * Lists a plate's four sources. Each is sorted here, not trusted to come sorted, so the tarball
 * and listings do not depend on a server's order. A key that cannot be archived safely fails the
 * plate before anything is written.
 */
export async function listSources(
  store: S3Store,
  layout: PlateLayout,
  /** Ask the listing for each object's RestoreStatus too (plan). */
  opts: { restoreStatus?: boolean } = {},
): Promise<ListedSource[]> {
  const listed = await Promise.all(
    layout.sources.map(async (source) => ({
      source,
      objects: (await store.listAll(layout.bucket, source.prefix, opts)).sort(byKeyBytes),
    })),
  );
  const refused = refusal(listed);
  if (refused) throw new PlateError(refused);
  return listed;
}

/**
 * Why a plate's listed objects cannot be archived, or undefined if they can: keys that would
 * escape their folder in the tarball or break a listing line, pairs of keys `tar x` cannot both
 * restore (a file and a key below it: the folder replaces the file, and tar exits 0), and objects
 * listed without an ETag (nothing could be proven about them). Every kind found is named.
 */
export function refusal(
  listed: { source: Source; objects: { key: string; etag: string }[] }[],
): string | undefined {
  const unsafe: string[] = [];
  const noEtag: string[] = [];
  for (const { source, objects } of listed) {
    for (const o of objects) {
      const why = unsafeKeyReason(source, o.key);
      if (why) unsafe.push(`${o.key} ${why}`);
      // A folder marker is not archived as bytes, but its ETag is still what S3 always lists.
      if (o.etag === '') noEtag.push(o.key);
    }
  }
  const clashes = fileFolderClashes(listed.flatMap((l) => l.objects.map((o) => o.key)));
  const parts: string[] = [];
  if (unsafe.length > 0) {
    parts.push(
      `source keys that cannot be archived safely: ${nameSome(unsafe)}; rename those objects, then re-run`,
    );
  }
  if (clashes.length > 0) {
    parts.push(
      `source keys that tar cannot both restore (extracting the folder replaces the file, silently): ${namePairs(clashes)}; rename the file or the folder, then re-run`,
    );
  }
  if (noEtag.length > 0) {
    parts.push(
      `objects listed without an ETag, so nothing can be proven about them: ${nameSome(noEtag)}; re-run, and if it persists check the store or any proxy in front of it (S3 lists every object with its ETag)`,
    );
  }
  return parts.length > 0 ? parts.join('; ') : undefined;
}

export function sourceFiles(listed: ListedSource[]): ObjectInfo[] {
  return listed.flatMap((l) => l.objects.filter((o) => !isFolderMarker(o)));
}
