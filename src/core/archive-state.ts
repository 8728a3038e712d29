import {
  parseEtagListing,
  parseListing,
  oldScriptPath,
  type EtagEntry,
  type ListingEntry,
} from '../integrity/listings.js';
import {
  listingPath,
  plateLayout,
  type LayoutOptions,
  type PlateLayout,
  type PlateRef,
} from '../layout/layout.js';
import type { ObjectInfo, S3Store } from '../s3/store.js';
import { isFolderMarker, listSources } from './sources.js';

/** `new`: whole paths (imgbackup); `old`: paths cut at the first space (the bash script). */
export type ListingFormat = 'new' | 'old';

export function pathRule(format: ListingFormat): (path: string) => string {
  return format === 'new' ? (p) => p : oldScriptPath;
}

/** A multiset of listing lines, so listings can be compared whatever their order or format. */
export class LineBag {
  private readonly counts = new Map<string, number>();
  constructor(entries: Iterable<ListingEntry>) {
    for (const e of entries) this.add(e);
  }
  static line(e: ListingEntry): string {
    return `${e.path}\t${e.size}`;
  }
  add(e: ListingEntry): void {
    const l = LineBag.line(e);
    this.counts.set(l, (this.counts.get(l) ?? 0) + 1);
  }
  /** Removes one occurrence; false if there was none. */
  take(e: ListingEntry): boolean {
    const l = LineBag.line(e);
    const n = this.counts.get(l) ?? 0;
    if (n === 0) return false;
    if (n === 1) this.counts.delete(l);
    else this.counts.set(l, n - 1);
    return true;
  }
  lines(): string[] {
    return [...this.counts].flatMap(([l, n]) => Array<string>(n).fill(l));
  }
}

/** What `missing / extra / size differs` between two listings, named by path. */
export function diffListings(expected: ListingEntry[], actual: ListingEntry[]): string[] {
  const exp = new Map<string, number[]>();
  for (const e of expected) exp.set(e.path, [...(exp.get(e.path) ?? []), e.size]);
  const act = new Map<string, number[]>();
  for (const e of actual) act.set(e.path, [...(act.get(e.path) ?? []), e.size]);
  const out: string[] = [];
  for (const [path, sizes] of exp) {
    const got = act.get(path);
    if (!got) out.push(`missing ${path}`);
    else if (got.join() !== sizes.join())
      out.push(`size differs ${path} (${sizes.join()} vs ${got.join()})`);
  }
  for (const path of act.keys()) if (!exp.has(path)) out.push(`extra ${path}`);
  return out;
}

export interface SourceComparison {
  format: ListingFormat;
  /** Current objects that are in the archive and unchanged since: the only deletable keys. */
  archived: ObjectInfo[];
  /** In the sources now but not in the archive. Never deleted. */
  added: string[];
  /** In the archive, but the object now has another size or ETag, or was written after. */
  changed: string[];
  /** In the archive, no longer in the sources. */
  gone: string[];
  /**
   * Versioned bucket: overwritten since the archive, but the version archived is still there
   * (it is in `archived`, by its version id; the later version is never deleted).
   */
  superseded: string[];
}

/**
 * Compares what is under the plate's sources now with what the archive holds (its stored
 * listing, and where present the ETags recorded at archive time).
 */
export async function compareSources(
  store: S3Store,
  L: PlateLayout,
  listingText: string,
  archivedAt: Date,
): Promise<SourceComparison> {
  const stored = parseListing(listingText);
  const etagText = await store.getText(L.bucket, L.etagListingKey);
  const etags = new Map(
    (etagText ? parseEtagListing(etagText) : []).map((e) => [e.path, e] as const),
  );
  const current = (await listSources(store, L)).flatMap((l) =>
    l.objects.filter((o) => !isFolderMarker(o)),
  );
  const format = detectFormat(stored, current);
  const rule = pathRule(format);
  const bag = new LineBag(stored);
  const out: SourceComparison = {
    format,
    archived: [],
    added: [],
    changed: [],
    gone: [],
    superseded: [],
  };
  for (const o of current) {
    const path = listingPath(o.key);
    if (!bag.take({ path: rule(path), size: o.size })) {
      const known = stored.some((s) => s.path === rule(path));
      (known ? out.changed : out.added).push(o.key);
      continue;
    }
    const then = etags.get(path);
    // HEAD's Last-Modified has whole seconds, listings may have milliseconds: compare seconds.
    const rewritten = then
      ? then.etag !== o.etag || then.size !== o.size || otherVersion(then, o)
      : Math.floor(o.lastModified.getTime() / 1000) > Math.floor(archivedAt.getTime() / 1000);
    if (rewritten) out.changed.push(o.key);
    else out.archived.push(o);
  }
  out.gone = bag.lines().map((l) => l.slice(0, l.lastIndexOf('\t')));
  await keepArchivedVersions(store, L, out, etags);
  return out;
}

/** The current object is another version than the one archived (both known). */
const otherVersion = (then: EtagEntry, o: ObjectInfo) =>
  then.versionId !== undefined && o.versionId !== undefined && then.versionId !== o.versionId;

/**
 * On a versioned bucket a changed key may still hold the version archived, unchanged: that
 * version is in the archive and deletable by its id (the later one is kept). Moves such keys
 * from `changed` to `superseded`, and their archived versions into `archived`.
 */
async function keepArchivedVersions(
  store: S3Store,
  L: PlateLayout,
  out: SourceComparison,
  etags: Map<string, EtagEntry>,
): Promise<void> {
  const stillChanged: string[] = [];
  for (const key of out.changed) {
    const then = etags.get(listingPath(key));
    const v = then?.versionId
      ? await store.head(L.bucket, key, then.versionId).catch(() => undefined)
      : undefined;
    if (then && v && v.size === then.size && v.etag === then.etag) {
      out.archived.push({ ...v, versionId: then.versionId! });
      out.superseded.push(key);
    } else {
      stillChanged.push(key);
    }
  }
  out.changed = stillChanged;
}

/** An old-script listing is recognised by a key with a space that only its cut path matches. */
function detectFormat(stored: ListingEntry[], current: ObjectInfo[]): ListingFormat {
  const paths = new Set(stored.map((s) => s.path));
  for (const o of current) {
    const p = listingPath(o.key);
    if (paths.has(p)) continue;
    if (p !== oldScriptPath(p) && paths.has(oldScriptPath(p))) return 'old';
  }
  return 'new';
}

/**
 * The plate's layout as it was archived: the form asked for (`.tar.gz` unless --no-compress),
 * or the other one if only that one is in the cold bucket, so no command needs to be told.
 */
export async function resolveLayout(
  store: S3Store,
  opts: LayoutOptions,
  plate: PlateRef,
): Promise<PlateLayout> {
  const asked = plateLayout(opts, plate);
  if (await store.head(asked.coldBucket, asked.tarballs[0]!.key)) return asked;
  const other = plateLayout({ ...opts, compressed: !asked.compressed }, plate);
  if (await store.head(other.coldBucket, other.tarballs[0]!.key)) return other;
  return asked;
}
