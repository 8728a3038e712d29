import { ForeignOutputsError, PlateError, VerificationError } from '../errors.js';
import {
  parseEtagListing,
  parseListing,
  parseRawListingLine,
  oldScriptPath,
  sameListedTime,
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
import { isFolderMarker, listSources, nameSome } from './sources.js';

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
 * Compares what is under the plate's sources now with what the archive holds. An imgbackup
 * archive is matched by its listing's whole paths (and the ETags recorded at archive time); an
 * old-script archive by full key against its untrimmed listing, never by its cut paths, which
 * the files of another plate_id_full (or any same-size file) would match.
 */
export async function compareSources(
  store: S3Store,
  L: PlateLayout,
  listingText: string,
  archivedAt: Date,
): Promise<SourceComparison> {
  const stored = parseListing(listingText);
  const current = (await listSources(store, L)).flatMap((l) =>
    l.objects.filter((o) => !isFolderMarker(o)),
  );
  const format = detectFormat(stored, current);
  const out: SourceComparison = {
    format,
    archived: [],
    added: [],
    changed: [],
    gone: [],
    superseded: [],
  };
  // HEAD's Last-Modified has whole seconds, listings may have milliseconds: compare seconds.
  const writtenAfter = (o: ObjectInfo) =>
    Math.floor(o.lastModified.getTime() / 1000) > Math.floor(archivedAt.getTime() / 1000);
  if (format === 'old') return compareByFullKey(store, L, stored, current, writtenAfter);
  const etagText = await store.getText(L.bucket, L.etagListingKey);
  let etags: Map<string, EtagEntry>;
  try {
    etags = new Map((etagText ? parseEtagListing(etagText) : []).map((e) => [e.path, e]));
  } catch (err) {
    throw new VerificationError(`s3://${L.bucket}/${L.etagListingKey}: ${(err as Error).message}`);
  }
  // Without ETags recorded (an old-script archive whose paths have no space), each key's time
  // in the untrimmed listing is what tells a same-size rewrite.
  const listed = etagText === undefined ? await untrimmedKeys(store, L) : undefined;
  const bag = new LineBag(stored);
  for (const o of current) {
    const path = listingPath(o.key);
    if (!bag.take({ path, size: o.size })) {
      const known = stored.some((s) => s.path === path);
      (known ? out.changed : out.added).push(o.key);
      continue;
    }
    const then = etags.get(path);
    // imgbackup records every key's ETag: a key its ETag listing lacks is not proven unchanged.
    const rewritten = then
      ? then.etag !== o.etag || then.size !== o.size || otherVersion(then, o)
      : !listed || rewrittenSince(o, listed.get(o.key), writtenAfter);
    if (rewritten) out.changed.push(o.key);
    else out.archived.push(o);
  }
  out.gone = bag.lines().map((l) => l.slice(0, l.lastIndexOf('\t')));
  await keepArchivedVersions(store, L, out, etags);
  return out;
}

/**
 * Without an ETag, a same-size key counts as rewritten unless its Last-Modified is the one its
 * untrimmed listing line shows and not after the listings were written. The listings' own time
 * alone would pass a rewrite made while the archive was built: the old script uploaded them
 * last, hours after `aws s3 ls` and the download.
 */
function rewrittenSince(
  o: ObjectInfo,
  listed: { listedAt: string } | undefined,
  writtenAfter: (o: ObjectInfo) => boolean,
): boolean {
  return !listed || writtenAfter(o) || !sameListedTime(o.lastModified, listed.listedAt);
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

/**
 * An old-script archive's side of compareSources. The untrimmed listing names each key; the cut
 * listing (what the tar listing matched) must hold its cut line too, or the two listings
 * disagree about it and it is not deletable.
 */
async function compareByFullKey(
  store: S3Store,
  L: PlateLayout,
  stored: ListingEntry[],
  current: ObjectInfo[],
  writtenAfter: (o: ObjectInfo) => boolean,
): Promise<SourceComparison> {
  const out: SourceComparison = {
    format: 'old',
    archived: [],
    added: [],
    changed: [],
    gone: [],
    superseded: [],
  };
  const held = await untrimmedKeys(store, L);
  const bag = new LineBag(stored);
  for (const o of current) {
    const listed = held.get(o.key);
    const cut = { path: oldScriptPath(listingPath(o.key)), size: o.size };
    if (listed === undefined || (listed.size === o.size && !bag.take(cut))) out.added.push(o.key);
    else if (listed.size !== o.size || rewrittenSince(o, listed, writtenAfter))
      out.changed.push(o.key);
    else out.archived.push(o);
  }
  const now = new Set(current.map((o) => o.key));
  out.gone = [...held.keys()].filter(
    (k) => !now.has(k) && !k.endsWith('/') && L.sources.some((s) => k.startsWith(s.prefix)),
  );
  return out;
}

/** What the archive's untrimmed `aws s3 ls` listing says of each full key. */
type Untrimmed = Map<string, { size: number; listedAt: string }>;

async function untrimmedKeys(store: S3Store, L: PlateLayout): Promise<Untrimmed> {
  const where = `s3://${L.coldBucket}/${L.untrimmedListingKey}`;
  const text = await store.getText(L.coldBucket, L.untrimmedListingKey);
  if (text === undefined)
    throw new VerificationError(
      `missing ${where}: an old-script archive's files are known by full key only from it`,
    );
  const held: Untrimmed = new Map();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const { key, size, listedAt } = parseRawListingLine(line);
      held.set(key, { size, listedAt });
    } catch (err) {
      throw new VerificationError(`${where}: ${(err as Error).message}`);
    }
  }
  return held;
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

/**
 * Who a plate's records say they belong to. The tag `P_B_plate_id` is not unique (batch `X_1`
 * plate `2` and batch `X` plate `1_2` share it), so records name the plate itself.
 */
export interface PlateOwner {
  project: string;
  batch: string;
  plateId: string;
  plateIdFull: string;
}

export function plateOwner(opts: LayoutOptions, plate: PlateRef): PlateOwner {
  return {
    project: opts.projectName,
    batch: opts.batchId,
    plateId: plate.plateId,
    plateIdFull: plate.plateIdFull,
  };
}

const describeOwner = (o: Partial<PlateOwner>) =>
  `project ${JSON.stringify(o.project)} batch ${JSON.stringify(o.batch)} plate ${JSON.stringify(o.plateId)}` +
  (o.plateIdFull !== undefined && o.plateIdFull !== o.plateId
    ? ` (plate_id_full ${JSON.stringify(o.plateIdFull)})`
    : '');

/** Whether a listing path lies under one of the plate's sources (an old script's cut path too). */
export function ownsPath(L: PlateLayout, path: string): boolean {
  return L.sources.some((s) => {
    const p = listingPath(s.prefix);
    if (path.startsWith(p)) return true;
    // The old script cut every path at its first space (so each path under a prefix with a
    // space became the prefix's cut), and listed without the trailing '/' (sweeping in 20586/).
    const bare = p.slice(0, -1);
    const cut = oldScriptPath(bare);
    return cut !== bare ? path === cut : path.startsWith(bare);
  });
}

/** The plate a listing path names, as far as the path shows it. */
export function ownerOfPath(path: string): string {
  const m =
    /^([^/]+)\/([^/]+)\/(?:images|illum)\/([^/]+)\//.exec(path) ??
    /^([^/]+)\/workspace\/(?:analysis|backend)\/([^/]+)\/([^/]+)\//.exec(path);
  return m ? `project "${m[1]}" batch "${m[2]}" plate "${m[3]}"` : `another plate`;
}

/**
 * Fails the plate if an output found under its tag is another plate's: a stored listing naming
 * paths outside this plate's four sources, or a record (verification, in-progress) naming
 * another project, batch or plate. Nothing is written or removed here, so neither plate's
 * outputs are touched. Records from before they named their plate are left to the other checks.
 */
export async function checkOwnership(
  store: S3Store,
  opts: LayoutOptions,
  L: PlateLayout,
): Promise<void> {
  const foreign = (key: string, whose: string, evidence = '') =>
    new ForeignOutputsError(
      `s3://${L.bucket}/${key} belongs to ${whose}, not to this plate (both have the tag ${L.tag}${evidence}); not touching either plate's outputs: archive one of them under another --batch-id or tag`,
    );
  for (const key of [L.s3ListingKey, L.tarListingKey]) {
    const text = await store.getText(L.bucket, key);
    if (text === undefined) continue;
    let paths: string[];
    try {
      paths = parseListing(text).map((e) => e.path);
    } catch (err) {
      throw new PlateError(`s3://${L.bucket}/${key}: ${(err as Error).message}`);
    }
    const outside = paths.filter((p) => !ownsPath(L, p));
    if (outside.length > 0)
      throw foreign(key, ownerOfPath(outside[0]!), `; it lists ${nameSome(outside)}`);
  }
  const me = plateOwner(opts, L.plate);
  for (const key of [L.inProgressKey, L.verifiedKey]) {
    const text = await store.getText(L.bucket, key);
    if (text === undefined) continue;
    let named: Partial<PlateOwner>;
    try {
      named = JSON.parse(text) as Partial<PlateOwner>;
    } catch {
      throw new PlateError(
        `s3://${L.bucket}/${key} is not valid JSON; check it, remove it, re-run`,
      );
    }
    if (named.project === undefined && named.batch === undefined) continue;
    if (
      named.project !== me.project ||
      named.batch !== me.batch ||
      named.plateId !== me.plateId ||
      named.plateIdFull !== me.plateIdFull
    )
      throw foreign(key, describeOwner(named));
  }
}
