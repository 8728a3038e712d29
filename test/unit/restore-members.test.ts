import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { memberPath } from '../../src/core/restore/extract.js';
import { globRegExp, pathFilter } from '../../src/core/restore/glob.js';
import { candidatePartSizes, MemberHasher } from '../../src/core/restore/member-check.js';
import { ranges } from '../../src/core/restore/ranged-read.js';
import { DirTarget, partialName } from '../../src/core/restore/targets.js';
import { etagOf } from '../../src/integrity/etag.js';

const MiB = 1024 * 1024;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

describe('restore globs', () => {
  test('* and ? stay in a segment, ** spans them, classes and literals', () => {
    assert.equal(globRegExp('P/*.csv').test('P/a.csv'), true);
    assert.equal(globRegExp('P/*.csv').test('P/x/a.csv'), false);
    assert.equal(globRegExp('P/**/a.csv').test('P/a.csv'), true);
    assert.equal(globRegExp('P/**/a.csv').test('P/x/y/a.csv'), true);
    assert.equal(globRegExp('**').test('P/x/y'), true);
    assert.equal(globRegExp('P/?.tif').test('P/ab.tif'), false);
    assert.equal(globRegExp('P/[ab].tif').test('P/b.tif'), true);
    assert.equal(globRegExp('P/[!ab].tif').test('P/b.tif'), false);
    assert.equal(globRegExp('a+b(1).csv').test('a+b(1).csv'), true);
    assert.equal(globRegExp('a.csv').test('abcsv'), false);
  });

  test('filter: includes, excludes, and the includes that match nothing', () => {
    const f = pathFilter(['**/*.csv', '**/none'], ['**/Nuclei.csv']);
    assert.equal(f.wants('P/w/Cells.csv'), true);
    assert.equal(f.wants('P/w/Nuclei.csv'), false);
    assert.equal(f.wants('P/w/x.tif'), false);
    assert.deepEqual(f.unmatchedIncludes(['P/w/Cells.csv', 'P/x.tif']), ['**/none']);
    assert.equal(pathFilter([], []).wants('anything'), true);
  });
});

describe('restore member names', () => {
  test('under the tag, files and folders only, no . or .. segments', () => {
    assert.deepEqual(memberPath('T', 'T/P/B/x.tif', 'file'), { path: 'P/B/x.tif' });
    assert.deepEqual(memberPath('T', 'T/P/B/', 'directory'), { path: 'P/B' });
    assert.deepEqual(memberPath('T', 'T/P/../../etc/passwd', 'file'), {
      refused: 'has a ".." path segment',
    });
    assert.deepEqual(memberPath('T', '/etc/passwd', 'file'), { refused: 'is not under T/' });
    assert.deepEqual(memberPath('T', 'T/P/link', 'symlink'), {
      refused: 'is a symlink entry (only files and folders are restored)',
    });
    assert.deepEqual(memberPath('T', 'T/P//x', 'file'), { refused: 'has a "" path segment' });
    assert.deepEqual(memberPath('T', 'TT/P/x', 'file'), { refused: 'is not under T/' });
  });

  test('partial files sit beside their final name, hidden', () => {
    assert.equal(partialName('/d/P/B/x.tif'), '/d/P/B/.x.tif.imgbackup-partial');
    // 236 bytes of name is the most that fits with the dot and the suffix in 255
    const fits = 'a'.repeat(236);
    assert.equal(partialName(`/d/${fits}`), `/d/.${fits}.imgbackup-partial`);
    const long = 'é'.repeat(118) + 'a'; // 237 bytes in UTF-8
    assert.equal(
      partialName(`/d/${long}`),
      '/d/.51687cb624457ec777b708dc9a3d9e337e44f3e92819ab4f3936d3432d101a2f.imgbackup-partial',
      'its sha-256: sha256sum of the name',
    );
  });

  test('a file that appears while its member is restored is never replaced without --overwrite', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgbackup-dir-target-'));
    try {
      const target = await DirTarget.create(dir);
      const member = async (overwrite: boolean) => {
        const w = await target.open('P/x.tif', { size: 3 }, overwrite);
        await w.write(Buffer.from('new'));
        await w.finish();
        return w;
      };
      // Checked absent when the member began; another writer puts the file there meanwhile.
      const w = await member(false);
      await writeFile(join(dir, 'P/x.tif'), 'theirs');
      await assert.rejects(w.publish(), {
        message: `member P/x.tif: ${join(dir, 'P/x.tif')} appeared while it was being restored; left alone and this member not kept: re-run (the same bytes are skipped, other bytes reported)`,
      });
      assert.equal(await readFile(join(dir, 'P/x.tif'), 'utf8'), 'theirs');
      assert.deepEqual(await readdir(join(dir, 'P')), ['x.tif'], 'no temp file left');
      // With --overwrite it is replaced; with nothing there it is published.
      await (await member(true)).publish();
      assert.equal(await readFile(join(dir, 'P/x.tif'), 'utf8'), 'new');
      await rm(join(dir, 'P/x.tif'));
      await (await member(false)).publish();
      assert.equal(await readFile(join(dir, 'P/x.tif'), 'utf8'), 'new');
      assert.deepEqual(await readdir(join(dir, 'P')), ['x.tif']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a file whose name is too long for the usual temp name beside it is restored too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imgbackup-dir-target-'));
    try {
      const target = await DirTarget.create(dir);
      const name = `${'r01c01f01p01-ch1sk1fk1fl1-'.repeat(9)}.tiff`; // 239 bytes: 255 at most
      const w = await target.open(`P/${name}`, { size: 5 }, false);
      await w.write(Buffer.from('bytes'));
      await w.finish();
      await w.publish();
      assert.equal(await readFile(join(dir, 'P', name), 'utf8'), 'bytes');
      assert.deepEqual(await readdir(join(dir, 'P')), [name], 'no temp file left');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('restore member checks', () => {
  test('candidate part sizes reproduce the part count, the aws CLI rule first', () => {
    // 8 MiB by the aws CLI rule; 7 MiB = 20 MiB / 3 rounded up to a MiB (10 MiB would make 2 parts)
    assert.deepEqual(candidatePartSizes(20 * MiB, 'abc-3'), [8 * MiB, 7 * MiB]);
    assert.deepEqual(candidatePartSizes(11 * MiB, 'abc-3'), [5 * MiB]);
    assert.deepEqual(candidatePartSizes(11 * MiB, '0123456789abcdef0123456789abcdef'), []);
    // 3 parts of at least 5 MiB cannot hold 1 MiB
    assert.deepEqual(candidatePartSizes(MiB, 'abc-3'), []);
  });

  test('a plain-md5 record: equal bytes pass, one changed byte is named', () => {
    const data = Buffer.from('some member bytes\n');
    const ok = new MemberHasher({ size: data.length, etag: md5(data) });
    ok.update(data);
    assert.deepEqual(ok.verdict(), { md5: md5(data), proof: 'md5' });
    const bad = Buffer.from(data);
    bad[3] = bad[3]! ^ 1;
    const h = new MemberHasher({ size: data.length, etag: md5(data) });
    h.update(bad);
    assert.deepEqual(h.verdict(), {
      md5: md5(bad),
      proof: 'md5',
      problem: `md5 ${md5(bad)}, the archived object's ETag is ${md5(data)}`,
    });
  });

  test('a multipart record is proven by the part size that reproduces it', () => {
    const data = Buffer.alloc(11 * MiB, 7);
    data[6 * MiB] = 1;
    const etag = etagOf(data, 5 * MiB, 'node').etag;
    assert.match(etag, /-3$/);
    const h = new MemberHasher({ size: data.length, etag });
    h.update(data.subarray(0, 3 * MiB));
    h.update(data.subarray(3 * MiB));
    assert.equal(h.verdict().proof, 'multipart-etag');
    // bytes that do not reproduce it are left to the tarball's md5, not called good
    const other = Buffer.from(data);
    other[0] = 9;
    const o = new MemberHasher({ size: data.length, etag });
    o.update(other);
    assert.deepEqual(o.verdict(), { md5: md5(other), proof: 'tarball-md5' });
  });

  test('a size other than the listing is a problem whatever the bytes', () => {
    const h = new MemberHasher({ size: 5 });
    h.update(Buffer.from('abc'));
    assert.equal(h.verdict().problem, '3 bytes, the listing says 5');
  });
});

describe('restore ranged reads', () => {
  test('ranges cover the object exactly, the last one short', () => {
    assert.deepEqual(ranges(20, 8), [
      { start: 0, end: 7, size: 8 },
      { start: 8, end: 15, size: 8 },
      { start: 16, end: 19, size: 4 },
    ]);
    assert.deepEqual(ranges(16, 8), [
      { start: 0, end: 7, size: 8 },
      { start: 8, end: 15, size: 8 },
    ]);
    assert.deepEqual(ranges(0, 8), []);
  });
});
