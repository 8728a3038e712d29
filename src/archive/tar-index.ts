/**
 * A tarball's index (README, "Tarball index"): where each gzip member starts in the tarball and
 * in the tar stream, and where each entry's header and data are in the tar stream. With it, a
 * few files are read from a large tarball by fetching only the members that hold them.
 */
import { gunzipSync } from 'node:zlib';

export const INDEX_MAGIC = 'imgbackup-tar-index 1';

/** tar rounds every header and body up to this. */
export const TAR_BLOCK = 512;

export interface IndexMember {
  /** Offset of the member in the tarball (the object's bytes). */
  compressed: number;
  /** Offset in the tar stream of the first byte the member holds. */
  tar: number;
}

export interface IndexEntry {
  type: 'file' | 'directory';
  /** Offset in the tar stream of the entry's first header (a PAX header, if it has one). */
  header: number;
  /** Offset in the tar stream of its first data byte. */
  data: number;
  size: number;
  /** The tar member name, as written. */
  name: string;
}

export interface TarIndex {
  /** The tarball the index describes: its size, ETag and md5 when it was written. */
  tarball: { size: number; etag: string; md5: string };
  /** Bytes of the tar stream (before gzip). */
  tarBytes: number;
  gzip: boolean;
  /** gzip members in order; none for a plain .tar (its offsets are tarball offsets). */
  members: IndexMember[];
  entries: IndexEntry[];
}

export function formatIndex(ix: TarIndex): string {
  const lines = [
    INDEX_MAGIC,
    `tarball ${ix.tarball.size} ${ix.tarball.etag} ${ix.tarball.md5}`,
    `tar ${ix.tarBytes} ${ix.gzip ? 'gzip' : 'plain'}`,
    ...ix.members.map((m) => `m ${m.compressed} ${m.tar}`),
    ...ix.entries.map(
      (e) =>
        `${e.type === 'file' ? 'f' : 'd'} ${e.header} ${e.data - e.header} ${e.size} ${e.name}`,
    ),
    `end ${ix.members.length} ${ix.entries.length}`,
  ];
  return `${lines.join('\n')}\n`;
}

const NUM = /^(0|[1-9][0-9]*)$/;

function num(s: string | undefined, what: string): number {
  if (s === undefined || !NUM.test(s)) throw new Error(`${what}: not a number (${s ?? 'none'})`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`${what}: out of range (${s})`);
  return n;
}

/**
 * Parses an index and checks that it is self-consistent (offsets increase, members cover the
 * tar stream, entries lie inside it), so a damaged one is refused rather than trusted.
 */
export function parseIndex(text: string): TarIndex {
  if (!text.endsWith('\n')) throw new Error('truncated (no final newline)');
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== INDEX_MAGIC) throw new Error(`first line is not "${INDEX_MAGIC}"`);
  const t = (lines[1] ?? '').split(' ');
  if (t[0] !== 'tarball' || t.length !== 4)
    throw new Error('line 2 is not "tarball SIZE ETAG MD5"');
  const tarball = { size: num(t[1], 'tarball size'), etag: t[2]!, md5: t[3]! };
  const s = (lines[2] ?? '').split(' ');
  if (s[0] !== 'tar' || s.length !== 3 || (s[2] !== 'gzip' && s[2] !== 'plain'))
    throw new Error('line 3 is not "tar BYTES gzip|plain"');
  const ix: TarIndex = {
    tarball,
    tarBytes: num(s[1], 'tar bytes'),
    gzip: s[2] === 'gzip',
    members: [],
    entries: [],
  };
  let ended = false;
  for (let i = 3; i < lines.length; i++) {
    const line = lines[i]!;
    const at = `line ${i + 1}`;
    if (ended) throw new Error(`${at}: after the end line`);
    const [kind, ...f] = line.split(' ');
    if (kind === 'm' && f.length === 2 && ix.entries.length === 0) {
      ix.members.push({ compressed: num(f[0], at), tar: num(f[1], at) });
    } else if ((kind === 'f' || kind === 'd') && f.length >= 4) {
      const header = num(f[0], at);
      ix.entries.push({
        type: kind === 'f' ? 'file' : 'directory',
        header,
        data: header + num(f[1], at),
        size: num(f[2], at),
        name: f.slice(3).join(' '),
      });
    } else if (kind === 'end' && f.length === 2) {
      if (num(f[0], at) !== ix.members.length || num(f[1], at) !== ix.entries.length)
        throw new Error(`${at}: counts differ from the lines above`);
      ended = true;
    } else throw new Error(`${at}: not an index line`);
  }
  if (!ended) throw new Error('truncated (no end line)');
  checkConsistent(ix);
  return ix;
}

function checkConsistent(ix: TarIndex): void {
  if (ix.gzip !== ix.members.length > 0) throw new Error('gzip members and the format disagree');
  ix.members.forEach((m, i) => {
    const prev = ix.members[i - 1];
    const ok = prev
      ? m.compressed > prev.compressed && m.tar > prev.tar
      : m.compressed === 0 && m.tar === 0;
    if (!ok || m.compressed >= ix.tarball.size || m.tar > ix.tarBytes)
      throw new Error(`member ${i + 1}: offsets out of order or out of range`);
  });
  let end = 0;
  ix.entries.forEach((e, i) => {
    if (e.header < end || e.data < e.header + TAR_BLOCK || e.data + e.size > ix.tarBytes)
      throw new Error(`entry ${i + 1} (${e.name}): offsets out of order or out of range`);
    end = e.data + Math.ceil(e.size / TAR_BLOCK) * TAR_BLOCK;
  });
  if (!ix.gzip && ix.tarBytes !== ix.tarball.size)
    throw new Error('a plain tar whose size differs from the tarball');
}

/** The tarball byte range holding tar bytes [start, end), and the tar offset it starts at. */
export function tarballRange(
  ix: TarIndex,
  start: number,
  end: number,
): { from: number; to: number; tarFrom: number } {
  if (!ix.gzip) return { from: start, to: end, tarFrom: start };
  // The last member starting at or before `start`, and the first starting at or after `end`.
  let first = 0;
  while (first + 1 < ix.members.length && ix.members[first + 1]!.tar <= start) first++;
  let last = first;
  while (last + 1 < ix.members.length && ix.members[last + 1]!.tar < end) last++;
  const next = ix.members[last + 1];
  return {
    from: ix.members[first]!.compressed,
    to: next ? next.compressed : ix.tarball.size,
    tarFrom: ix.members[first]!.tar,
  };
}

/** Reads a tar header's numeric field: octal text, or base-256 (high bit set) for big values. */
function tarNumber(field: Buffer): number {
  if ((field[0]! & 0x80) !== 0) {
    let n = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}

/** PAX records "LEN key=value\n": the path and size this entry's next header is overridden by. */
function paxRecords(data: Buffer): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let at = 0;
  while (at < data.length) {
    const sp = data.indexOf(0x20, at);
    if (sp < 0) break;
    const len = parseInt(data.subarray(at, sp).toString('latin1'), 10);
    if (!(len > 0)) break;
    const rec = data.subarray(sp + 1, at + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    const key = rec.slice(0, eq);
    if (key === 'path') out.path = rec.slice(eq + 1);
    if (key === 'size') out.size = Number(rec.slice(eq + 1));
    at += len;
  }
  return out;
}

export interface ScannedEntry extends IndexEntry {
  /** Typeflag of an entry that is neither a file nor a folder ('file' or 'directory' otherwise). */
  flag: string;
}

/**
 * Finds every entry of a tar stream fed to it in chunks, with its header and data offsets: what
 * the archive writer records and what verify recomputes. Understands ustar names, PAX `path` and
 * `size`, and GNU long names, which covers what tar-stream and GNU tar write.
 */
export class TarScanner {
  readonly entries: ScannedEntry[] = [];
  offset = 0;
  private head = Buffer.alloc(0);
  /** Bytes of the current body still to pass, and whether they are kept (PAX / long name). */
  private skip = 0;
  private keep: Buffer[] | undefined;
  private keepKind: 'x' | 'L' | undefined;
  private keepLeft = 0;
  private groupStart: number | undefined;
  private pax: { path?: string; size?: number } = {};
  private longName: string | undefined;

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        if (this.keep && this.keepLeft > 0) {
          const k = Math.min(n, this.keepLeft);
          this.keep.push(chunk.subarray(at, at + k));
          this.keepLeft -= k;
        }
        this.skip -= n;
        at += n;
        this.offset += n;
        if (this.skip === 0 && this.keep) this.kept();
        continue;
      }
      const n = Math.min(TAR_BLOCK - this.head.length, chunk.length - at);
      this.head = Buffer.concat([this.head, chunk.subarray(at, at + n)]);
      at += n;
      this.offset += n;
      if (this.head.length === TAR_BLOCK) {
        const h = this.head;
        this.head = Buffer.alloc(0);
        this.header(h, this.offset - TAR_BLOCK);
      }
    }
  }

  private header(h: Buffer, at: number): void {
    if (h.every((b) => b === 0)) return; // end-of-archive blocks
    const flag = String.fromCharCode(h[156]!);
    const size = tarNumber(h.subarray(124, 136));
    this.groupStart ??= at;
    const body = Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
    if (flag === 'x' || flag === 'L' || flag === 'g') {
      this.skip = body;
      this.keep = flag === 'g' ? undefined : [];
      this.keepKind = flag === 'g' ? undefined : flag;
      this.keepLeft = size;
      if (this.skip === 0 && this.keep) this.kept();
      return;
    }
    let name = cString(h.subarray(0, 100));
    const prefix =
      h.subarray(257, 262).toString('latin1') === 'ustar' ? cString(h.subarray(345, 500)) : '';
    if (prefix !== '') name = `${prefix}/${name}`;
    const realSize = this.pax.size ?? size;
    const type = flag === '0' || flag === '\0' ? 'file' : flag === '5' ? 'directory' : 'file';
    this.entries.push({
      type,
      flag: flag === '0' || flag === '\0' || flag === '5' ? type : flag,
      header: this.groupStart,
      data: at + TAR_BLOCK,
      size: realSize,
      name: this.pax.path ?? this.longName ?? name,
    });
    this.groupStart = undefined;
    this.pax = {};
    this.longName = undefined;
    this.skip = Math.ceil(realSize / TAR_BLOCK) * TAR_BLOCK;
  }

  private kept(): void {
    const data = Buffer.concat(this.keep ?? []);
    if (this.keepKind === 'x') this.pax = paxRecords(data);
    if (this.keepKind === 'L') this.longName = cString(data);
    this.keep = undefined;
    this.keepKind = undefined;
  }
}

/**
 * Checks an index against the tarball's bytes as they stream by: each gzip member, cut at the
 * index's offsets, gunzips alone to exactly the tar bytes the index gives it, and the tar entries
 * found in those bytes are the index's, offset for offset. `finish` names the first difference.
 */
export class IndexChecker {
  private readonly scan = new TarScanner();
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private at = 0;
  private member = 0;
  private problem: string | undefined;

  constructor(private readonly ix: TarIndex) {}

  update(chunk: Buffer): void {
    if (this.problem) return;
    if (!this.ix.gzip) return this.scan.push(chunk);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.at += chunk.length;
    while (!this.problem && this.member < this.ix.members.length) {
      const end = this.ix.members[this.member + 1]?.compressed;
      if (end === undefined || this.at < end) return;
      this.cut(end);
    }
  }

  /** Gunzips the member that ends at tarball offset `end` (buffered bytes before it). */
  private cut(end: number): void {
    const all = Buffer.concat(this.pending);
    const start = this.at - this.pendingBytes;
    const bytes = all.subarray(0, end - start);
    this.pending = [all.subarray(end - start)];
    this.pendingBytes = all.length - (end - start);
    const m = this.ix.members[this.member]!;
    const tarEnd = this.ix.members[this.member + 1]?.tar ?? this.ix.tarBytes;
    let tar: Buffer;
    try {
      tar = gunzipSync(bytes);
    } catch (err) {
      this.problem = `member ${this.member + 1} at offset ${m.compressed} is not one whole gzip member (${(err as Error).message})`;
      return;
    }
    if (tar.length !== tarEnd - m.tar) {
      this.problem = `member ${this.member + 1} at offset ${m.compressed} holds ${tar.length} tar bytes, the index says ${tarEnd - m.tar}`;
      return;
    }
    this.scan.push(tar);
    this.member += 1;
  }

  finish(size: number): string | undefined {
    if (!this.problem && this.ix.gzip && this.member === this.ix.members.length - 1)
      this.cut(this.at);
    if (this.problem) return this.problem;
    if (this.ix.gzip && this.member !== this.ix.members.length)
      return `the tarball ends inside member ${this.member + 1} of the ${this.ix.members.length} the index lists`;
    if (size !== this.ix.tarball.size)
      return `it is of a tarball of ${this.ix.tarball.size} bytes, this one has ${size}`;
    if (this.scan.offset !== this.ix.tarBytes)
      return `the tar stream has ${this.scan.offset} bytes, the index says ${this.ix.tarBytes}`;
    const found = this.scan.entries;
    for (let i = 0; i < Math.max(found.length, this.ix.entries.length); i++) {
      const f = found[i];
      const e = this.ix.entries[i];
      const same =
        f &&
        e &&
        f.flag === e.type &&
        f.name === e.name &&
        f.header === e.header &&
        f.data === e.data &&
        f.size === e.size;
      if (!same)
        return `entry ${i + 1}: the tarball has ${f ? `${f.name} at ${f.header}/${f.data}, ${f.size} bytes` : 'none'}, the index says ${e ? `${e.name} at ${e.header}/${e.data}, ${e.size} bytes` : 'none'}`;
    }
    return undefined;
  }
}
