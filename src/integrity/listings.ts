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

/** `<path>\t<size>\t<etag>\n`, sorted like the normalized listing. */
export function etagListing(entries: Iterable<ListingEntry & { etag: string }>): string {
  const lines = [...entries].map((e) => Buffer.from(`${e.path}\t${e.size}\t${e.etag}\n`, 'utf8'));
  lines.sort(Buffer.compare);
  return Buffer.concat(lines).toString('utf8');
}

export function parseEtagListing(text: string): (ListingEntry & { etag: string })[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = /^(.*)\t(\d+)\t([^\t]*)$/.exec(line);
      if (!m) throw new Error(`not an ETag listing line: ${JSON.stringify(line)}`);
      return { path: m[1]!, size: Number(m[2]), etag: m[3]! };
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

/** Parses one `aws s3 ls --recursive` line back into its key and size. */
export function parseRawListingLine(line: string): { key: string; size: number } {
  const m = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +(\d+) (.*)$/.exec(line);
  if (!m) throw new Error(`not an s3 ls line: ${JSON.stringify(line)}`);
  return { key: m[2]!, size: Number(m[1]) };
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

/** One `aws s3 rm` line per source prefix (each with its trailing '/'), every argument quoted. */
export function deleteScript(bucket: string, prefixes: string[]): string {
  return prefixes
    .map((p) => `aws s3 rm --recursive ${shellQuote(`s3://${bucket}/${p}`)}\n`)
    .join('');
}
