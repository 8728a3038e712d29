// The tarball index: its text format with exact bytes, its refusals, and the offsets the
// writer records, checked against the bytes of the tarball it wrote (each member gunzipped
// alone, each entry's header and data cut out by offset).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import {
  IndexChecker,
  formatIndex,
  parseIndex,
  tarballRange,
  TarScanner,
  type TarIndex,
} from '../../src/archive/tar-index.js';
import { TarballWriter } from '../../src/archive/tarball.js';

const MiB = 1024 * 1024;
const TAG = 'P_B_plate';
const MTIME = new Date('2020-01-02T03:04:05Z');

const SAMPLE: TarIndex = {
  tarball: {
    size: 3000,
    etag: '0123456789abcdef0123456789abcdef-2',
    md5: 'fedcba9876543210fedcba9876543210',
  },
  tarBytes: 4096,
  gzip: true,
  members: [
    { compressed: 0, tar: 0 },
    { compressed: 1700, tar: 2048 },
  ],
  entries: [
    { type: 'directory', header: 0, data: 512, size: 0, name: 'P_B_plate/' },
    { type: 'file', header: 512, data: 1024, size: 600, name: 'P_B_plate/P/a b.tiff' },
  ],
};

const SAMPLE_TEXT =
  'imgbackup-tar-index 1\n' +
  'tarball 3000 0123456789abcdef0123456789abcdef-2 fedcba9876543210fedcba9876543210\n' +
  'tar 4096 gzip\n' +
  'm 0 0\n' +
  'm 1700 2048\n' +
  'd 0 512 0 P_B_plate/\n' +
  'f 512 512 600 P_B_plate/P/a b.tiff\n' +
  'end 2 2\n';

describe('tarball index format', () => {
  test('writes the documented lines, byte for byte', () => {
    assert.equal(formatIndex(SAMPLE), SAMPLE_TEXT);
  });

  test('parses them back to the same index', () => {
    assert.deepEqual(parseIndex(SAMPLE_TEXT), SAMPLE);
  });

  test('refuses a damaged index, naming what is wrong', () => {
    const cases: [string, RegExp][] = [
      [SAMPLE_TEXT.replace('imgbackup-tar-index 1', 'imgbackup-tar-index 2'), /first line/],
      [SAMPLE_TEXT.replace('end 2 2\n', ''), /no end line/],
      [SAMPLE_TEXT.slice(0, -1), /no final newline/],
      [SAMPLE_TEXT.replace('end 2 2', 'end 2 3'), /counts differ/],
      [SAMPLE_TEXT.replace('m 1700 2048', 'm 1700 0'), /member 2: offsets/],
      [SAMPLE_TEXT.replace('f 512 512 600', 'f 512 512 9000'), /entry 2 .*out of range/],
      [SAMPLE_TEXT.replace('f 512 512', 'f 0512 512'), /not a number/],
      [SAMPLE_TEXT.replace('f 512', 'x 512'), /line 7: not an index line/],
    ];
    for (const [text, why] of cases) assert.throws(() => parseIndex(text), why);
  });

  test('maps a tar range to the members holding it', () => {
    assert.deepEqual(tarballRange(SAMPLE, 1024, 1624), { from: 0, to: 1700, tarFrom: 0 });
    assert.deepEqual(tarballRange(SAMPLE, 2000, 2100), { from: 0, to: 3000, tarFrom: 0 });
    assert.deepEqual(tarballRange(SAMPLE, 2048, 2100), { from: 1700, to: 3000, tarFrom: 2048 });
    const plain = { ...SAMPLE, gzip: false, members: [] };
    assert.deepEqual(tarballRange(plain, 1024, 1624), { from: 1024, to: 1624, tarFrom: 1024 });
  });
});

async function written(level: number | undefined) {
  const dir = await mkdtemp(join(tmpdir(), 'tar-index-'));
  const path = join(dir, 't.tar.gz');
  const w = new TarballWriter({ path, partSize: 5 * MiB, ...(level ? { level } : {}) });
  const big = randomBytes(2 * MiB + 100);
  const small = Buffer.from('hello\n');
  const longName = `${TAG}/${'d'.repeat(120)}/${'f'.repeat(150)}.csv`;
  await w.addDirectory(`${TAG}/`, MTIME);
  await w.addFile(`${TAG}/big.tiff`, big.length, MTIME, big);
  await w.addFile(longName, small.length, MTIME, small);
  await w.addFile(`${TAG}/empty`, 0, MTIME, Buffer.alloc(0));
  const hash = await w.finish();
  return { ix: w.index(hash), bytes: await readFile(path), big, small, longName, hash };
}

describe('the index the tarball writer records', () => {
  test('gzip: each member gunzips alone to its tar bytes; each entry is where it says', async () => {
    const { ix, bytes, big, small, longName, hash } = await written(1);
    assert.deepEqual(ix.tarball, { size: bytes.length, etag: hash.etag, md5: hash.md5 });
    assert.equal(ix.gzip, true);
    // Header 512 + 2 MiB + 100 bytes of data (rounded to 512), a PAX header group for the long
    // name, 512 for the empty file, then 1024 of end blocks, rounded up by tar-stream.
    assert.deepEqual(
      ix.members.map((m) => m.tar),
      Array.from({ length: Math.ceil(ix.tarBytes / MiB) }, (_, i) => i * MiB),
    );
    const tarParts = ix.members.map((m, i) =>
      gunzipSync(bytes.subarray(m.compressed, ix.members[i + 1]?.compressed ?? bytes.length)),
    );
    tarParts.forEach((p, i) =>
      assert.equal(p.length, Math.min(MiB, ix.tarBytes - i * MiB), `member ${i + 1}`),
    );
    const tar = Buffer.concat(tarParts);
    assert.equal(tar.length, ix.tarBytes);
    assert.deepEqual(
      ix.entries.map((e) => [e.type, e.name, e.size]),
      [
        ['directory', `${TAG}/`, 0],
        ['file', `${TAG}/big.tiff`, big.length],
        ['file', longName, small.length],
        ['file', `${TAG}/empty`, 0],
      ],
    );
    assert.deepEqual(
      ix.entries.map((e) => [e.header, e.data - e.header]),
      [
        [0, 512],
        [512, 512],
        // big.tiff's 2 MiB + 100 bytes of data end on a 512 boundary; then the long name's PAX
        // header, its body and the entry's own header, then 512 of data.
        [1024 + 2 * MiB + 512, 3 * 512],
        [1024 + 2 * MiB + 512 + 2048, 512],
      ],
    );
    const cut = (i: number) =>
      tar.subarray(ix.entries[i]!.data, ix.entries[i]!.data + ix.entries[i]!.size);
    assert.ok(cut(1).equals(big));
    assert.ok(cut(2).equals(small));
    // The text round-trips.
    assert.deepEqual(parseIndex(formatIndex(ix)), ix);
  });

  test('plain tar: no members, entry offsets are tarball offsets', async () => {
    const { ix, bytes, big, small } = await written(undefined);
    assert.equal(ix.gzip, false);
    assert.deepEqual(ix.members, []);
    assert.equal(ix.tarBytes, bytes.length);
    const e1 = ix.entries[1]!;
    const e2 = ix.entries[2]!;
    assert.ok(bytes.subarray(e1.data, e1.data + e1.size).equals(big));
    assert.ok(bytes.subarray(e2.data, e2.data + e2.size).equals(small));
    assert.deepEqual(parseIndex(formatIndex(ix)), ix);
  });

  test('the scanner finds the same entries fed a few bytes at a time', async () => {
    const { ix, bytes } = await written(undefined);
    const s = new TarScanner();
    for (let at = 0; at < bytes.length; at += 4093) s.push(bytes.subarray(at, at + 4093));
    assert.deepEqual(
      s.entries.map(({ flag: _f, ...e }) => e),
      ix.entries,
    );
    assert.equal(s.offset, bytes.length);
  });
});

describe('IndexChecker (verify --deep)', () => {
  const check = (ix: TarIndex, bytes: Buffer) => {
    const c = new IndexChecker(ix);
    for (let at = 0; at < bytes.length; at += 65536) c.update(bytes.subarray(at, at + 65536));
    return c.finish(bytes.length);
  };

  test('passes the index the writer recorded, gzip and plain', async () => {
    for (const level of [1, undefined]) {
      const { ix, bytes } = await written(level);
      assert.equal(check(ix, bytes), undefined);
    }
  });

  test('names the first member or entry that is not where the index says', async () => {
    const { ix, bytes } = await written(1);
    const m2 = ix.members[1]!.compressed;
    const shifted = {
      ...ix,
      members: ix.members.map((m, i) => (i === 1 ? { ...m, compressed: m2 + 1 } : m)),
    };
    assert.match(check(shifted, bytes)!, /^member 1 at offset 0 is not one whole gzip member/);
    const moved = {
      ...ix,
      entries: ix.entries.map((e, i) => (i === 2 ? { ...e, header: e.header + 512 } : e)),
    };
    assert.equal(
      check(moved, bytes),
      `entry 3: the tarball has ${ix.entries[2]!.name} at ${ix.entries[2]!.header}/${ix.entries[2]!.data}, 6 bytes, the index says ${ix.entries[2]!.name} at ${ix.entries[2]!.header + 512}/${ix.entries[2]!.data}, 6 bytes`,
    );
    const longer = {
      ...ix,
      members: ix.members.map((m, i) => (i === 1 ? { ...m, tar: m.tar + 512 } : m)),
    };
    assert.equal(
      check(longer, bytes),
      `member 1 at offset 0 holds ${MiB} tar bytes, the index says ${MiB + 512}`,
    );
    assert.equal(
      check(ix, bytes.subarray(0, bytes.length - 1)),
      `member 3 at offset ${ix.members[2]!.compressed} is not one whole gzip member (unexpected end of file)`,
    );
  });
});
