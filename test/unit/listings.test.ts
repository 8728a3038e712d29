// The text formats of SPEC.md, byte for byte: normalized listings (checked against the system's
// `LC_ALL=C sort`), the raw `aws s3 ls` listing, .md5 (checked against `md5sum`), .etag, and the
// delete script (run by /bin/sh with a stub `aws` to prove every argument arrives whole).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DELETE_LINE_MAX_BYTES,
  deleteScript,
  etagFile,
  etagListing,
  parseEtagListing,
  md5File,
  normalizedListing,
  parseListing,
  parseRawListingLine,
  rawListingLine,
  sameListedTime,
  shellQuote,
  type ListingEntry,
} from '../../src/integrity/listings.js';

// Local time is what `aws s3 ls` prints: pin it so the expected strings below hold anywhere.
// (Node re-reads TZ when process.env.TZ is assigned.)
process.env.TZ = 'UTC';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imgbackup-listings-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ENTRIES: ListingEntry[] = [
  { path: 'P/B/images/p 1/a b', size: 1 },
  { path: 'P/workspace/analysis/B/p/Image.csv', size: 123456789012 },
  { path: 'P/B/images/p 1/😀.tif', size: 10 },
  { path: 'P/B/images/p 1/a', size: 2 },
  { path: 'P/B/images/p 1/z.tif', size: 6 },
  { path: 'P/B/images/p 1/a.tif', size: 3 },
  { path: 'P/B/images/p 1/é.tif', size: 7 },
  { path: 'P/B/images/p 1/Z.tif', size: 5 },
  { path: 'P/B/images/p 1/x9', size: 12 },
  { path: 'P/B/images/p 1/！.tif', size: 9 },
  { path: 'P/B/images/p 1/a/b', size: 4 },
  { path: 'P/B/images/p 1/~.tif', size: 8 },
  { path: 'P/B/images/p', size: 0 },
  { path: 'P/B/images/p 1/x10', size: 11 },
  { path: 'P/B/illum/p/x.npy', size: 13 },
];

const SORTED =
  'P/B/illum/p/x.npy\t13\n' +
  'P/B/images/p\t0\n' +
  'P/B/images/p 1/Z.tif\t5\n' +
  'P/B/images/p 1/a\t2\n' +
  'P/B/images/p 1/a b\t1\n' +
  'P/B/images/p 1/a.tif\t3\n' +
  'P/B/images/p 1/a/b\t4\n' +
  'P/B/images/p 1/x10\t11\n' +
  'P/B/images/p 1/x9\t12\n' +
  'P/B/images/p 1/z.tif\t6\n' +
  'P/B/images/p 1/~.tif\t8\n' +
  'P/B/images/p 1/é.tif\t7\n' +
  'P/B/images/p 1/！.tif\t9\n' +
  'P/B/images/p 1/😀.tif\t10\n' +
  'P/workspace/analysis/B/p/Image.csv\t123456789012\n';

describe('normalizedListing', () => {
  test('exact bytes: tab before space, uppercase before lowercase, non-ASCII after ASCII', () => {
    assert.equal(normalizedListing(ENTRIES), SORTED);
  });

  test('order does not depend on the input order', () => {
    assert.equal(normalizedListing([...ENTRIES].reverse()), SORTED);
    assert.equal(normalizedListing(new Set(ENTRIES)), SORTED);
  });

  test('"a\\t" sorts before "a b" (a locale sort would not)', () => {
    assert.equal(
      normalizedListing([
        { path: 'a b', size: 1 },
        { path: 'a', size: 2 },
      ]),
      'a\t2\na b\t1\n',
    );
  });

  test('UTF-8 byte order, not UTF-16 order: U+FF01 before U+1F600', () => {
    // JavaScript's default sort compares UTF-16 code units and would put the emoji first
    assert.equal(
      normalizedListing([
        { path: '😀', size: 1 },
        { path: '！', size: 2 },
      ]),
      '！\t2\n😀\t1\n',
    );
  });

  test('same bytes as LC_ALL=C sort', () => {
    const unsorted = ENTRIES.map((e) => `${e.path}\t${e.size}\n`).join('');
    const sorted = execFileSync('sort', [], {
      input: Buffer.from(unsorted, 'utf8'),
      env: { ...process.env, LC_ALL: 'C' },
    });
    assert.equal(sorted.toString('utf8'), SORTED);
    assert.deepEqual(Buffer.from(normalizedListing(ENTRIES), 'utf8'), sorted);
  });

  test('nothing is an empty file', () => {
    assert.equal(normalizedListing([]), '');
  });
});

describe('parseListing', () => {
  test('round trip', () => {
    const parsed = parseListing(SORTED);
    assert.equal(parsed.length, 15);
    assert.deepEqual(parsed[0], { path: 'P/B/illum/p/x.npy', size: 13 });
    assert.deepEqual(parsed[4], { path: 'P/B/images/p 1/a b', size: 1 });
    assert.deepEqual(parsed[14], {
      path: 'P/workspace/analysis/B/p/Image.csv',
      size: 123456789012,
    });
    assert.equal(normalizedListing(parsed), SORTED);
    assert.deepEqual(
      [...parsed].sort((a, b) => a.size - b.size),
      [...ENTRIES].sort((a, b) => a.size - b.size),
    );
  });

  test('an old-script line, cut at the first space, is kept as stored', () => {
    const old =
      '2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement\t5324\n' +
      '2013_Gustafsdottir_PLOSONE/BBBC022/illum/BR00092655/BR00092655_IllumAGP.npy\t8388736\n';
    assert.deepEqual(parseListing(old), [
      {
        path: '2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement',
        size: 5324,
      },
      {
        path: '2013_Gustafsdottir_PLOSONE/BBBC022/illum/BR00092655/BR00092655_IllumAGP.npy',
        size: 8388736,
      },
    ]);
  });

  test('no final newline, and blank lines', () => {
    assert.deepEqual(parseListing('a\t1\n\nb c\t2'), [
      { path: 'a', size: 1 },
      { path: 'b c', size: 2 },
    ]);
    assert.deepEqual(parseListing(''), []);
  });

  test('the size is after the last tab', () => {
    assert.deepEqual(parseListing('a\tb\t3\n'), [{ path: 'a\tb', size: 3 }]);
  });

  test('lines that are not listing lines are refused', () => {
    for (const line of ['a 1', 'a\t', 'a\t-1', 'a\t1.5', 'a\t1 ', 'a\t1\r', 'a\tx', '\t']) {
      assert.throws(() => parseListing(`ok\t1\n${line}\n`), {
        message: `not a listing line: ${JSON.stringify(line)}`,
      });
    }
  });
});

describe('rawListingLine', () => {
  const KEY =
    'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/r01c01f01p01-ch1sk1fk1fl1.tiff';

  test('aws s3 ls format: local time, size right-aligned to 10, full key with spaces', () => {
    assert.equal(
      rawListingLine({
        key: KEY,
        size: 123456,
        lastModified: new Date('2017-12-10T12:48:16.789Z'),
      }),
      '2017-12-10 12:48:16     123456 projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/r01c01f01p01-ch1sk1fk1fl1.tiff\n',
    );
  });

  test('zero padding of the date and sizes of every width', () => {
    const at = new Date('2018-01-02T03:04:05Z');
    const line = (size: number) => rawListingLine({ key: 'projects/k', size, lastModified: at });
    assert.equal(line(0), '2018-01-02 03:04:05          0 projects/k\n');
    assert.equal(line(7), '2018-01-02 03:04:05          7 projects/k\n');
    assert.equal(line(999999999), '2018-01-02 03:04:05  999999999 projects/k\n');
    assert.equal(line(1234567890), '2018-01-02 03:04:05 1234567890 projects/k\n');
    assert.equal(line(12345678901), '2018-01-02 03:04:05 12345678901 projects/k\n');
  });

  test('folder markers and odd keys are printed as they are', () => {
    assert.equal(
      rawListingLine({
        key: 'projects/P/B/illum/p/',
        size: 0,
        lastModified: new Date('2019-12-31T23:59:59Z'),
      }),
      '2019-12-31 23:59:59          0 projects/P/B/illum/p/\n',
    );
  });

  test('the time is local time', () => {
    try {
      process.env.TZ = 'America/New_York';
      assert.equal(
        rawListingLine({
          key: 'projects/k',
          size: 1,
          lastModified: new Date('2017-12-10T17:48:16Z'),
        }),
        '2017-12-10 12:48:16          1 projects/k\n',
      );
      // daylight saving time, and a day earlier than in UTC
      assert.equal(
        rawListingLine({
          key: 'projects/k',
          size: 1,
          lastModified: new Date('2018-07-01T00:30:00Z'),
        }),
        '2018-06-30 20:30:00          1 projects/k\n',
      );
    } finally {
      process.env.TZ = 'UTC';
    }
    assert.equal(
      rawListingLine({
        key: 'projects/k',
        size: 1,
        lastModified: new Date('2018-07-01T00:30:00Z'),
      }),
      '2018-07-01 00:30:00          1 projects/k\n',
    );
  });
});

describe('md5File and etagFile', () => {
  const NAME = '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.tar.gz';

  test('md5File: md5, two spaces, name, newline', () => {
    assert.equal(
      md5File('d41d8cd98f00b204e9800998ecf8427e', NAME),
      'd41d8cd98f00b204e9800998ecf8427e  2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655_images_illum_analysis.tar.gz\n',
    );
  });

  test('md5File is what md5sum prints, and md5sum -c accepts it', async () => {
    const data = Buffer.from('some tarball bytes\n');
    await writeFile(join(dir, NAME), data);
    const printed = execFileSync('md5sum', [NAME], { cwd: dir }).toString('utf8');
    const md5 = createHash('md5').update(data).digest('hex');
    assert.equal(md5File(md5, NAME), printed);
    await writeFile(join(dir, 'check.md5'), md5File(md5, NAME));
    const ok = execFileSync('md5sum', ['-c', 'check.md5'], { cwd: dir }).toString('utf8');
    assert.equal(ok, `${NAME}: OK\n`);
  });

  test('etagFile: the ETag without quotes, newline', () => {
    assert.equal(
      etagFile('0a9d4f0e2e6b6c1b2f3e4d5c6b7a8f90-17'),
      '0a9d4f0e2e6b6c1b2f3e4d5c6b7a8f90-17\n',
    );
    assert.equal(
      etagFile('d41d8cd98f00b204e9800998ecf8427e'),
      'd41d8cd98f00b204e9800998ecf8427e\n',
    );
  });
});

describe('shellQuote', () => {
  test('exact quoting', () => {
    assert.equal(shellQuote('abc'), "'abc'");
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote("''"), "''\\'''\\'''");
    assert.equal(shellQuote('a b $(x) `y` "z" \\'), '\'a b $(x) `y` "z" \\\'');
  });

  test('sh reads back every string unchanged as one word', () => {
    const strings = [
      'plain',
      '',
      ' ',
      'a  b',
      "it's",
      "'",
      '"',
      '$(touch PWNED)',
      '`touch PWNED`',
      '$HOME ${HOME} $1 $@ $#',
      '*',
      'a\\b\\\\',
      'semi;colon & amp | pipe > gt < lt',
      'new\nline',
      'tab\there',
      '!history',
      'ünïcødé 顕微鏡',
      '#comment',
      '~',
    ];
    const script = strings.map((s) => `printf '%s\\0' ${shellQuote(s)}\n`).join('');
    const out = execFileSync('sh', ['-c', script], { cwd: dir });
    assert.deepEqual(out.toString('utf8').split('\0'), [...strings, '']);
  });
});

describe('etagListing', () => {
  test('unversioned: three fields, exactly as before versions were kept', () => {
    const text = etagListing([
      { path: 'P/B/images/p 1/b.tif', size: 2, etag: 'bb' },
      { path: 'P/B/images/p 1/a.tif', size: 1, etag: 'aa-2' },
    ]);
    assert.equal(text, 'P/B/images/p 1/a.tif\t1\taa-2\nP/B/images/p 1/b.tif\t2\tbb\n');
    assert.deepEqual(parseEtagListing(text), [
      { path: 'P/B/images/p 1/a.tif', size: 1, etag: 'aa-2' },
      { path: 'P/B/images/p 1/b.tif', size: 2, etag: 'bb' },
    ]);
  });

  test('versioned: a fourth field, the version id (also the literal null); both forms parse', () => {
    const text = etagListing([
      { path: 'P/x', size: 5, etag: 'e1', versionId: 'v.1_Abc' },
      { path: 'P/w', size: 0, etag: 'e0', versionId: 'null' },
    ]);
    assert.equal(text, 'P/w\t0\te0\tnull\nP/x\t5\te1\tv.1_Abc\n');
    assert.deepEqual(parseEtagListing(`${text}P/y\t3\te3\n`), [
      { path: 'P/w', size: 0, etag: 'e0', versionId: 'null' },
      { path: 'P/x', size: 5, etag: 'e1', versionId: 'v.1_Abc' },
      { path: 'P/y', size: 3, etag: 'e3' },
    ]);
    assert.throws(() => parseEtagListing('P/z\tbig\te\n'), /not an ETag listing line/);
  });
});

describe('deleteScript', () => {
  test('exact text: one aws s3api delete-objects line naming each key, its version or ETag', () => {
    // A real version id names bytes that never change, and S3 would check an ETag against the
    // current version only: the ETag goes with keys deleted by name (none, or the null version).
    assert.equal(
      deleteScript('imaging-platform', [
        { key: 'projects/P/B/images/p 1/a b.tif', etag: 'aa' },
        { key: "projects/P/B/images/p 1/it's.tif", etag: 'bb-2', versionId: 'v1' },
        { key: 'projects/P/B/illum/p/x.npy', versionId: 'null' },
        { key: 'projects/P/B/illum/p/y.npy', etag: 'cc', versionId: 'null' },
      ]),
      "aws s3api delete-objects --bucket 'imaging-platform' --delete " +
        `'{"Objects":[{"Key":"projects/P/B/images/p 1/a b.tif","ETag":"\\"aa\\""},` +
        `{"Key":"projects/P/B/images/p 1/it'\\''s.tif","VersionId":"v1"},` +
        `{"Key":"projects/P/B/illum/p/x.npy","VersionId":"null"},` +
        `{"Key":"projects/P/B/illum/p/y.npy","VersionId":"null","ETag":"\\"cc\\""}],"Quiet":true}'\n`,
    );
    assert.equal(deleteScript('b', []), '');
  });

  test('at most 1000 keys a line, every key once, in order', () => {
    const keys = Array.from({ length: 2345 }, (_, i) => ({ key: `projects/P/k${i}`, etag: 'e' }));
    const lines = deleteScript('b', keys).split('\n').slice(0, -1);
    assert.equal(lines.length, 3);
    const named = lines.map((l) => {
      const json = l.slice(l.indexOf("'{") + 1, -1);
      return (JSON.parse(json) as { Objects: { Key: string }[] }).Objects.map((o) => o.Key);
    });
    assert.deepEqual(
      named.map((n) => n.length),
      [1000, 1000, 345],
    );
    assert.deepEqual(
      named.flat(),
      keys.map((k) => k.key),
    );
  });

  test('a line stays under Linux 128 KiB argument limit, long keys and quotes counted', () => {
    const long = `projects/P/B/images/${"q'".repeat(200)}/`;
    const keys = Array.from({ length: 1000 }, (_, i) => ({
      key: `${long}${i}.tif`,
      etag: 'd41d8cd98f00b204e9800998ecf8427e',
      versionId: 'A'.repeat(32),
    }));
    const lines = deleteScript('b', keys).split('\n').slice(0, -1);
    assert.ok(lines.length > 1, 'split by size before 1000 keys');
    for (const l of lines) assert.ok(Buffer.byteLength(`${l}`) <= DELETE_LINE_MAX_BYTES, 'fits');
    // Each line is as long as it may be: one more key would not have fit.
    const first = Buffer.byteLength(lines[0]!);
    assert.ok(first > DELETE_LINE_MAX_BYTES - 2000, `line 1 is ${first} bytes`);
  });

  test('hostile keys reach aws as one JSON argument, whole, and run nothing', async () => {
    const keys = [
      `projects/P/B/images/x"y'z $(touch PWNED) \`touch PWNED2\` a  b;touch PWNED3 & * \${HOME}\\.tif`,
      'projects/P/B/images/ünïcødé 顕微鏡.tif',
      "projects/P/B/images/''.tif",
    ];
    const work = await mkdtemp(join(dir, 'sh-'));
    // a file a glob would match if the star were unquoted
    await writeFile(join(work, 'GLOBBED'), '');
    const scriptPath = join(work, 'delete_s3.sh');
    await writeFile(
      scriptPath,
      deleteScript(
        `imaging-platform`,
        keys.map((key) => ({ key, etag: 'e1' })),
      ),
    );
    const out = execFileSync(
      'sh',
      ['-c', 'aws() { printf "%s\\0" "$@"; printf "\\n"; }; . "$1"', 'sh', scriptPath],
      { cwd: work },
    ).toString('utf8');
    const calls = out.split('\n').filter((l) => l !== '');
    assert.equal(calls.length, 1);
    const argv = calls[0]!.split('\0').slice(0, -1);
    assert.deepEqual(argv.slice(0, 5), [
      's3api',
      'delete-objects',
      '--bucket',
      'imaging-platform',
      '--delete',
    ]);
    assert.equal(argv.length, 6);
    assert.deepEqual(JSON.parse(argv[5]!), {
      Objects: keys.map((Key) => ({ Key, ETag: '"e1"' })),
      Quiet: true,
    });
    assert.deepEqual((await readdir(work)).sort(), ['GLOBBED', 'delete_s3.sh']);
    for (const f of ['PWNED', 'PWNED2', 'PWNED3']) assert.equal(existsSync(join(work, f)), false);
  });
});

describe('an object against its `aws s3 ls` line', () => {
  test('parses key, size and the local time as printed', () => {
    assert.deepEqual(
      parseRawListingLine('2026-11-20 10:11:12      12345 projects/P/B/images/p 1/a  b.tif'),
      { key: 'projects/P/B/images/p 1/a  b.tif', size: 12345, listedAt: '2026-11-20 10:11:12' },
    );
    assert.throws(() => parseRawListingLine('PRE projects/'), /not an s3 ls line/);
  });

  test('the same time in any zone matches: a whole number of quarter hours off UTC', () => {
    const at = new Date('2026-11-20T10:11:12.000Z');
    assert.equal(sameListedTime(at, '2026-11-20 10:11:12'), true, 'UTC');
    assert.equal(sameListedTime(at, '2026-11-20 15:56:12'), true, 'UTC+05:45');
    assert.equal(sameListedTime(at, '2026-11-21 00:11:12'), true, 'UTC+14');
    assert.equal(sameListedTime(at, '2026-11-19 22:11:12'), true, 'UTC-12');
    // Listings print whole seconds; S3 may keep milliseconds.
    assert.equal(sameListedTime(new Date('2026-11-20T10:11:12.999Z'), '2026-11-20 10:11:12'), true);
  });

  test('written again after the listing: another second, or beyond any zone', () => {
    const at = new Date('2026-11-20T10:11:13.000Z');
    assert.equal(sameListedTime(at, '2026-11-20 10:11:12'), false, 'a second later');
    assert.equal(sameListedTime(at, '2026-11-20 10:37:12'), false, '26 min and a second');
    assert.equal(sameListedTime(at, '2026-11-21 00:26:13'), false, 'UTC+14:15 is no zone');
    assert.equal(sameListedTime(at, 'not a time'), false);
  });
});
