/**
 * The text formats of SPEC.md: normalized listings, the raw `aws s3 ls` listing, the .md5 and
 * .etag files and the delete script. Pure functions, tested byte for byte.
 */

export interface ListingEntry {
  /** The key without `projects/` (or the tar member name without `T/`). */
  path: string;
  size: number;
}

/** `<path>\t<size>\n` lines sorted by byte order, as `LC_ALL=C sort` orders them. */
export function normalizedListing(entries: Iterable<ListingEntry>): string {
  const lines = [...entries].map((e) => Buffer.from(`${e.path}\t${e.size}\n`, 'utf8'));
  lines.sort(Buffer.compare);
  return Buffer.concat(lines).toString('utf8');
}

/** Parses a normalized listing; paths of old-script listings may be cut at spaces, as stored. */
export function parseListing(text: string): ListingEntry[] {
  const out: ListingEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const tab = line.lastIndexOf('\t');
    const sizeText = tab >= 0 ? line.slice(tab + 1) : '';
    if (!/^\d+$/.test(sizeText)) throw new Error(`not a listing line: ${JSON.stringify(line)}`);
    out.push({ path: line.slice(0, tab), size: Number(sizeText) });
  }
  return out;
}

export interface EtagEntry extends ListingEntry {
  etag: string;
  /** Only on a versioned bucket: the version archived. */
  versionId?: string;
}

/**
 * `<path>\t<size>\t<etag>\n`, sorted like the normalized listing; on a versioned bucket each
 * line ends with `\t<version id>` (a key holds no tab: archive refuses control characters).
 */
export function etagListing(entries: Iterable<EtagEntry>): string {
  const lines = [...entries].map((e) =>
    Buffer.from(
      `${e.path}\t${e.size}\t${e.etag}${e.versionId !== undefined ? `\t${e.versionId}` : ''}\n`,
      'utf8',
    ),
  );
  lines.sort(Buffer.compare);
  return Buffer.concat(lines).toString('utf8');
}

/** Reads both forms: three fields (unversioned, and every listing before versions were kept) or four. */
export function parseEtagListing(text: string): EtagEntry[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = /^([^\t]*)\t(\d+)\t([^\t]*)(?:\t([^\t]+))?$/.exec(line);
      if (!m) throw new Error(`not an ETag listing line: ${JSON.stringify(line)}`);
      const e: EtagEntry = { path: m[1]!, size: Number(m[2]), etag: m[3]! };
      if (m[4] !== undefined) e.versionId = m[4];
      return e;
    });
}

/**
 * The path rule of listings made by the old bash script: cut at the first space, and
 * `projects/` removed anywhere. Applied to a path that already lost its leading `projects/`.
 */
export function oldScriptPath(path: string): string {
  return (path.split(' ')[0] ?? '').replaceAll('projects/', '');
}

export interface RawListingObject {
  key: string;
  size: number;
  lastModified: Date;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** `aws s3 ls --recursive` line: local time, size right-aligned to 10, full key. */
export function rawListingLine(o: RawListingObject): string {
  const d = o.lastModified;
  const time =
    `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return `${time} ${String(o.size).padStart(10, ' ')} ${o.key}\n`;
}

/** Parses one `aws s3 ls --recursive` line back into its key, size and (local) time. */
export function parseRawListingLine(line: string): { key: string; size: number; listedAt: string } {
  const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) +(\d+) (.*)$/.exec(line);
  if (!m) throw new Error(`not an s3 ls line: ${JSON.stringify(line)}`);
  return { key: m[3]!, size: Number(m[2]), listedAt: m[1]! };
}

/** Every UTC offset in use is a whole number of quarter hours, from UTC-12 to UTC+14. */
const TZ_OFFSET_STEP_S = 15 * 60;
const MAX_TZ_OFFSET_S = 14 * 3600;

/**
 * Whether an object's Last-Modified is the one its `aws s3 ls` line shows. The line is in the
 * local time of the machine that listed, unknown here, so equal means "differs by a whole UTC
 * offset": an object written again after the listing matches only if that happened a whole
 * number of quarter hours later, to the second.
 */
export function sameListedTime(lastModified: Date, listedAt: string): boolean {
  const listed = Date.parse(`${listedAt.replace(' ', 'T')}Z`) / 1000;
  const gap = Math.floor(lastModified.getTime() / 1000) - listed;
  return Number.isFinite(gap) && gap % TZ_OFFSET_STEP_S === 0 && Math.abs(gap) <= MAX_TZ_OFFSET_S;
}

/** What `md5sum X.tar.gz` prints. */
export function md5File(md5: string, fileName: string): string {
  return `${md5}  ${fileName}\n`;
}

export function etagFile(etag: string): string {
  return `${etag}\n`;
}

/** POSIX shell single-quoting: nothing inside '...' is expanded, so no id can run a command. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** One key of a delete script: with a version id, exactly that version is deleted. */
export interface DeleteScriptKey {
  key: string;
  etag?: string;
  versionId?: string;
}

/** S3 refuses a DeleteObjects call with more keys than this. */
export const DELETE_BATCH = 1000;
/**
 * Longest script line: `parallel -a` hands each line to `sh -c` as one argument, and Linux
 * refuses any single argument over 128 KiB (MAX_ARG_STRLEN) with E2BIG.
 */
export const DELETE_LINE_MAX_BYTES = 100_000;

/**
 * A key deleted by name alone: with no version id, or with the `null` version, which a write
 * while versioning is suspended replaces in place. Only such a delete can hit other bytes than
 * the archived ones, so only it carries the archived ETag: a real version's bytes never change,
 * and S3 checks a delete's ETag against the current version only, refusing a superseded one.
 */
export const deletesByName = (k: { versionId?: string | undefined }) =>
  k.versionId === undefined || k.versionId === 'null';

/** The JSON object aws s3api delete-objects takes for one key (its ETag makes AWS refuse a changed object). */
function identifier(k: DeleteScriptKey): string {
  return JSON.stringify({
    Key: k.key,
    ...(k.versionId !== undefined ? { VersionId: k.versionId } : {}),
    ...(k.etag && deletesByName(k) ? { ETag: `"${k.etag}"` } : {}),
  });
}

/**
 * The delete script: `aws s3api delete-objects` lines naming exactly these keys, at most 1000
 * keys and DELETE_LINE_MAX_BYTES a line, so `parallel -a` runs one aws process per line. Every
 * argument is shell-quoted; nothing is a prefix, so nothing added or changed later is swept in.
 */
export function deleteScript(bucket: string, keys: DeleteScriptKey[]): string {
  const head = `aws s3api delete-objects --bucket ${shellQuote(bucket)} --delete `;
  const open = '{"Objects":[';
  const close = '],"Quiet":true}';
  // The line's length, kept as keys are added: quoting turns each ' into four bytes.
  const quotedBytes = (s: string) => Buffer.byteLength(s) + 3 * (s.split("'").length - 1);
  const empty = Buffer.byteLength(head) + 2 + quotedBytes(open) + quotedBytes(close) + 1;
  const lines: string[] = [];
  let batch: string[] = [];
  let bytes = empty;
  const flush = () => {
    if (batch.length > 0) lines.push(`${head}${shellQuote(`${open}${batch.join(',')}${close}`)}\n`);
    batch = [];
    bytes = empty;
  };
  for (const k of keys) {
    const id = identifier(k);
    const add = quotedBytes(id) + (batch.length > 0 ? 1 : 0);
    if (batch.length >= DELETE_BATCH || (batch.length > 0 && bytes + add > DELETE_LINE_MAX_BYTES)) {
      flush();
      bytes += quotedBytes(id);
    } else {
      bytes += add;
    }
    batch.push(id);
  }
  flush();
  return lines.join('');
}
