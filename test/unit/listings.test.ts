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
  deleteScript,
  etagFile,
  md5File,
  normalizedListing,
  parseListing,
  rawListingLine,
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

describe('deleteScript', () => {
  test('exact text: one quoted aws s3 rm per prefix, trailing "/" kept', () => {
    assert.equal(
      deleteScript('imaging-platform', [
        'projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/',
        'projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/BR00092655/',
        'projects/2013_Gustafsdottir_PLOSONE/workspace/analysis/BBBC022/BR00092655/',
        'projects/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/',
      ]),
      "aws s3 rm --recursive 's3://imaging-platform/projects/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/'\n" +
        "aws s3 rm --recursive 's3://imaging-platform/projects/2013_Gustafsdottir_PLOSONE/BBBC022/illum/BR00092655/'\n" +
        "aws s3 rm --recursive 's3://imaging-platform/projects/2013_Gustafsdottir_PLOSONE/workspace/analysis/BBBC022/BR00092655/'\n" +
        "aws s3 rm --recursive 's3://imaging-platform/projects/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/BR00092655/'\n",
    );
    assert.equal(deleteScript('b', []), '');
  });

  test('a hostile plate id reaches aws as one argument and runs nothing', async () => {
    const id = `x"y'z $(touch PWNED) \`touch PWNED2\` a  b;touch PWNED3 & * \${HOME}\\`;
    const prefixes = [
      `projects/P/B/images/${id} full/`,
      `projects/P/B/illum/${id}/`,
      `projects/P/workspace/analysis/B/${id}/`,
      `projects/P/workspace/backend/B/${id}/`,
    ];
    const work = await mkdtemp(join(dir, 'sh-'));
    // a file a glob would match if the star were unquoted
    await writeFile(join(work, 'GLOBBED'), '');
    const scriptPath = join(work, 'delete_s3.sh');
    await writeFile(scriptPath, deleteScript('imaging-platform', prefixes));
    const out = execFileSync(
      'sh',
      ['-c', 'aws() { printf "%s\\0" "$@"; printf "\\n"; }; . "$1"', 'sh', scriptPath],
      { cwd: work },
    ).toString('utf8');
    const calls = out.split('\n').filter((l) => l !== '');
    assert.deepEqual(
      calls.map((c) => c.split('\0').slice(0, -1)),
      prefixes.map((p) => ['s3', 'rm', '--recursive', `s3://imaging-platform/${p}`]),
    );
    assert.equal(
      calls[1],
      `s3\0rm\0--recursive\0s3://imaging-platform/projects/P/B/illum/${id}/\0`,
    );
    assert.deepEqual((await readdir(work)).sort(), ['GLOBBED', 'delete_s3.sh']);
    for (const f of ['PWNED', 'PWNED2', 'PWNED3']) assert.equal(existsSync(join(work, f)), false);
  });
});
