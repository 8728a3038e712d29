// TarballWriter against GNU tar: the members it lists, the bytes it extracts, the md5/ETag of the
// file on disk (computed here over explicit slices), refusals, and the size bound.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TarballWriter, tarballSizeBound } from '../../src/archive/tarball.js';

const TAG = '2013_Gustafsdottir_PLOSONE_BBBC022_BR00092655';
const DIR = `${TAG}/2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1`;
const ILLUM = `${TAG}/2013_Gustafsdottir_PLOSONE/BBBC022/illum/BR00092655`;
const MTIME = new Date('2017-12-10T12:48:16.750Z');
const MTIME_TEXT = '2017-12-10 12:48:16';

const md5hex = (b: Buffer) => createHash('md5').update(b).digest('hex');
const md5raw = (b: Buffer) => createHash('md5').update(b).digest();

/** The S3 ETag rule, written independently of src/integrity/etag.ts. */
function s3Etag(data: Buffer, partSize: number): { etag: string; parts: Buffer[] } {
  if (data.length <= partSize) return { etag: md5hex(data), parts: [md5raw(data)] };
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += partSize) {
    parts.push(md5raw(data.subarray(off, off + partSize)));
  }
  return { etag: `${md5hex(Buffer.concat(parts))}-${parts.length}`, parts };
}

/** Runs GNU tar in a UTF-8 locale and UTC, refusing any warning on stderr. */
function gnuTar(args: string[], cwd?: string): string {
  const r = spawnSync('tar', args, {
    cwd,
    env: { ...process.env, LC_ALL: 'C.UTF-8', TZ: 'UTC' },
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.error, undefined);
  assert.equal(r.stderr.toString('utf8'), '', `tar ${args.join(' ')}`);
  assert.equal(r.status, 0, `tar ${args.join(' ')}`);
  return r.stdout.toString('utf8');
}

interface Listed {
  mode: string;
  size: number;
  time: string;
  name: string;
}

/** `tar tv --full-time` lines: mode, owner/group, size, date time, name (which may hold spaces). */
function listTar(file: string, gz: boolean): Listed[] {
  const out = gnuTar([gz ? '-tvzf' : '-tvf', file, '--full-time', '--quoting-style=literal']);
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const m = /^(\S+) \S+\s+(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$/.exec(line);
      assert.ok(m, `unexpected tar line: ${line}`);
      return { mode: m[1]!, size: Number(m[2]), time: m[3]!, name: m[4]! };
    });
}

async function* chunksOf(data: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(off, off + n);
    off += n;
    // let the pipeline run between chunks, as a network body would
    if (i % 7 === 0) await new Promise((r) => setImmediate(r));
  }
}

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imgbackup-tarball-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('TarballWriter, gzip', () => {
  const BUF = randomBytes(70000);
  const ITER = randomBytes(300001);
  const SMALL = Buffer.from('hello\n');
  // exactly 150 bytes, splittable into a ustar prefix and name
  const LONG_SPLIT = `${DIR}/${'a'.repeat(150 - DIR.length - 1 - 5)}.tiff`;
  // exactly 150 bytes whose last segment is over 100 bytes: needs a PAX header
  const LONG_PAX = `${TAG}/${'b'.repeat(150 - TAG.length - 1 - 4)}.npy`;
  const UNICODE = `${ILLUM}/Ünïcødé µm 顕微鏡 🔬.npy`;
  const FILES: [string, Buffer][] = [
    [`${DIR}/r01c01f01p01-ch1sk1fk1fl1.tiff`, BUF],
    [`${DIR}/r01c01f01p01-ch2sk1fk1fl1.tiff`, ITER],
    [`${DIR}/empty.txt`, Buffer.alloc(0)],
    [LONG_SPLIT, SMALL],
    [LONG_PAX, SMALL],
    [UNICODE, SMALL],
  ];
  const PART = 4096;
  let path = '';
  let result: Awaited<ReturnType<TarballWriter['finish']>>;
  let writer: TarballWriter;

  before(async () => {
    assert.equal(Buffer.byteLength(LONG_SPLIT), 150);
    assert.equal(Buffer.byteLength(LONG_PAX), 150);
    path = join(dir, `${TAG}_images_illum_analysis.tar.gz`);
    writer = new TarballWriter({ path, partSize: PART, level: 6 });
    await writer.addDirectory(DIR, MTIME);
    await writer.addFile(`${DIR}/r01c01f01p01-ch1sk1fk1fl1.tiff`, BUF.length, MTIME, BUF);
    await writer.addFile(
      `${DIR}/r01c01f01p01-ch2sk1fk1fl1.tiff`,
      ITER.length,
      MTIME,
      chunksOf(ITER, [1, 4095, 65537, 3, 17000]),
    );
    await writer.addFile(`${DIR}/empty.txt`, 0, MTIME, Buffer.alloc(0));
    await writer.addDirectory(`${ILLUM}/`, MTIME);
    await writer.addFile(LONG_SPLIT, SMALL.length, MTIME, SMALL);
    await writer.addFile(LONG_PAX, SMALL.length, MTIME, chunksOf(SMALL, [2]));
    await writer.addFile(UNICODE, SMALL.length, MTIME, SMALL);
    result = await writer.finish();
  });

  test('the writer records what it wrote', () => {
    assert.deepEqual(writer.entries, [
      { name: `${DIR}/`, size: 0, type: 'directory' },
      { name: `${DIR}/r01c01f01p01-ch1sk1fk1fl1.tiff`, size: 70000, type: 'file' },
      { name: `${DIR}/r01c01f01p01-ch2sk1fk1fl1.tiff`, size: 300001, type: 'file' },
      { name: `${DIR}/empty.txt`, size: 0, type: 'file' },
      { name: `${ILLUM}/`, size: 0, type: 'directory' },
      { name: LONG_SPLIT, size: 6, type: 'file' },
      { name: LONG_PAX, size: 6, type: 'file' },
      { name: UNICODE, size: 6, type: 'file' },
    ]);
  });

  test('(a) tar tvzf lists exactly these members, sizes and times', () => {
    assert.deepEqual(listTar(path, true), [
      { mode: 'drwxr-xr-x', size: 0, time: MTIME_TEXT, name: `${DIR}/` },
      {
        mode: '-rw-r--r--',
        size: 70000,
        time: MTIME_TEXT,
        name: `${DIR}/r01c01f01p01-ch1sk1fk1fl1.tiff`,
      },
      {
        mode: '-rw-r--r--',
        size: 300001,
        time: MTIME_TEXT,
        name: `${DIR}/r01c01f01p01-ch2sk1fk1fl1.tiff`,
      },
      { mode: '-rw-r--r--', size: 0, time: MTIME_TEXT, name: `${DIR}/empty.txt` },
      { mode: 'drwxr-xr-x', size: 0, time: MTIME_TEXT, name: `${ILLUM}/` },
      { mode: '-rw-r--r--', size: 6, time: MTIME_TEXT, name: LONG_SPLIT },
      { mode: '-rw-r--r--', size: 6, time: MTIME_TEXT, name: LONG_PAX },
      { mode: '-rw-r--r--', size: 6, time: MTIME_TEXT, name: UNICODE },
    ]);
  });

  test('(b) tar xzf extracts identical bytes', async () => {
    const out = join(dir, 'extract');
    await mkdir(out);
    gnuTar(['-xzf', path], out);
    for (const [name, data] of FILES) {
      assert.deepEqual(await readFile(join(out, name)), data, name);
    }
    assert.ok((await stat(join(out, DIR))).isDirectory());
    // --strip-components=1 rebuilds the P/... tree
    const strip = join(dir, 'strip');
    await mkdir(strip);
    gnuTar(['-xzf', path, '--strip-components=1'], strip);
    assert.deepEqual(
      await readFile(
        join(
          strip,
          '2013_Gustafsdottir_PLOSONE/BBBC022/images/BR00092655__2017-12-10T12_48_16-Measurement 1/r01c01f01p01-ch1sk1fk1fl1.tiff',
        ),
      ),
      BUF,
    );
  });

  test('(c) md5 and ETag of finish() are those of the file on disk', async () => {
    const onDisk = await readFile(path);
    assert.equal(result.size, onDisk.length);
    assert.equal(result.md5, md5hex(onDisk));
    assert.ok(onDisk.length > 10 * PART, 'the test needs several parts');
    const want = s3Etag(onDisk, PART);
    assert.equal(result.etag, want.etag);
    assert.match(result.etag, new RegExp(`-${Math.ceil(onDisk.length / PART)}$`));
    assert.deepEqual(result.partMd5s, want.parts);
    // gzip magic, and the whole file is sound to gzip -t
    assert.deepEqual([...onDisk.subarray(0, 2)], [0x1f, 0x8b]);
    assert.equal(spawnSync('gzip', ['-t', path]).status, 0);
  });

  test('the file already existing is refused, not overwritten', async () => {
    const before = await readFile(path);
    const w = new TarballWriter({ path, partSize: PART, level: 6 });
    await assert.rejects(
      (async () => {
        await w.addFile('x', 1, MTIME, Buffer.from('x'));
        await w.finish();
      })(),
      {
        name: 'PlateError',
        message: `${path} already exists (another run on this --tmpdir, or left by a killed run); remove it and re-run`,
      },
    );
    assert.deepEqual(await readFile(path), before);
  });
});

describe('TarballWriter refusals', { timeout: 30000 }, () => {
  test('(d) a Buffer body of the wrong size is refused; discard removes the file', async () => {
    const path = join(dir, 'wrong-buffer.tar.gz');
    const w = new TarballWriter({ path, partSize: 1 << 20, level: 1 });
    await w.addFile('T/ok.txt', 3, MTIME, Buffer.from('abc'));
    await assert.rejects(w.addFile('T/bad.txt', 10, MTIME, Buffer.alloc(9)), {
      message: 'T/bad.txt: 9 bytes, expected 10',
    });
    await assert.rejects(w.addFile('T/bad2.txt', 1, MTIME, Buffer.alloc(2)), {
      message: 'T/bad2.txt: 2 bytes, expected 1',
    });
    await w.discard();
    assert.equal(existsSync(path), false);
  });

  // A streamed body that goes wrong must make addFile reject and leave the process running (one
  // plate's network error must not end the batch). Today tar-stream's entry stream emits an
  // 'error' event nobody listens to, which kills the process with an uncaught exception; so each
  // case runs in a child process, which reports what addFile did and whether the file is gone.
  const CHILD = `
    import { existsSync } from 'node:fs';
    const [modUrl, path, kind] = process.argv.slice(1);
    const { TarballWriter } = await import(modUrl);
    const ac = new AbortController();
    const w = new TarballWriter({ path, partSize: 1 << 20, level: 1, signal: ac.signal });
    await w.addFile('T/ok.txt', 3, new Date(0), Buffer.from('abc'));
    async function* body() {
      yield Buffer.alloc(4, 1);
      await new Promise((r) => setTimeout(r, 10));
      if (kind === 'throws') throw new Error('socket hang up');
      if (kind === 'abort') {
        ac.abort(new Error('stop'));
        await new Promise((r) => setTimeout(r, 50));
      }
      yield Buffer.alloc(kind === 'shorter' ? 5 : kind === 'longer' ? 7 : 6, 1);
    }
    let outcome = 'resolved';
    try {
      await w.addFile('T/bad.txt', 10, new Date(0), body());
    } catch (err) {
      outcome = 'rejected: ' + err.message;
    }
    await w.discard();
    await new Promise((r) => setTimeout(r, 100));
    console.log(JSON.stringify({ outcome, exists: existsSync(path) }));
  `;
  for (const [kind, outcome] of [
    ['shorter', /^rejected: /], // 9 bytes for a size of 10
    ['longer', /^rejected: /], // 11 bytes
    ['throws', /^rejected: socket hang up$/], // the body fails, as an S3 GET can mid-object
    ['abort', /^rejected: /], // the run is cancelled (Ctrl-C) while an entry is written
  ] as const) {
    test(`(d) a streamed body that ${kind === 'abort' ? 'is aborted' : kind === 'throws' ? 'fails' : `is ${kind} than its size`} is refused; discard removes the file`, async () => {
      const path = join(dir, `stream-${kind}.tar.gz`);
      const modUrl = new URL('../../src/archive/tarball.js', import.meta.url).href;
      const r = spawnSync(
        process.execPath,
        ['--input-type=module', '-e', CHILD, modUrl, path, kind],
        { timeout: 20000 },
      );
      const stderr = r.stderr.toString('utf8');
      assert.equal(r.status, 0, `child died: ${stderr.split('\n').slice(0, 8).join('\n')}`);
      assert.equal(stderr, '');
      const report = JSON.parse(r.stdout.toString('utf8')) as {
        outcome: string;
        exists: boolean;
      };
      assert.match(report.outcome, outcome);
      assert.equal(report.exists, false);
    });
  }

  test('discard before any entry removes the file', async () => {
    const path = join(dir, 'nothing.tar.gz');
    const w = new TarballWriter({ path, partSize: 1 << 20, level: 1 });
    await w.discard();
    assert.equal(existsSync(path), false);
  });
});

describe('TarballWriter, no compression', () => {
  test('(e) level undefined writes a plain tar that tar tvf reads', async () => {
    const path = join(dir, 'plain.tar');
    const data = randomBytes(1000);
    const w = new TarballWriter({ path, partSize: 1024 });
    await w.addDirectory('T/d', MTIME);
    await w.addFile('T/d/f.bin', 1000, MTIME, data);
    const r = await w.finish();
    const onDisk = await readFile(path);
    // header + directory header + 1000 bytes rounded to 1024 + two zero blocks, then tar-stream
    // pads nothing more: 512 + 512 + 1024 + 1024
    assert.equal(onDisk.length, 3072);
    assert.equal(onDisk.subarray(257, 262).toString('latin1'), 'ustar');
    assert.notDeepEqual([...onDisk.subarray(0, 2)], [0x1f, 0x8b]);
    assert.deepEqual(onDisk.subarray(1024, 2024), data);
    assert.deepEqual(listTar(path, false), [
      { mode: 'drwxr-xr-x', size: 0, time: MTIME_TEXT, name: 'T/d/' },
      { mode: '-rw-r--r--', size: 1000, time: MTIME_TEXT, name: 'T/d/f.bin' },
    ]);
    assert.equal(r.md5, md5hex(onDisk));
    assert.equal(r.etag, s3Etag(onDisk, 1024).etag);
    assert.match(r.etag, /-3$/);
  });
});

describe('tarballSizeBound', () => {
  const cases: [string, number[]][] = [
    ['nothing', []],
    ['empty files', [0, 0, 0]],
    ['block edges', [1, 511, 512, 513, 1023, 1024, 1025]],
    ['many tiny files', Array.from({ length: 300 }, (_, i) => i % 5)],
    ['large files', [(1 << 20) + 7, 3 << 20, 12345]],
    // gzip grows incompressible data by ~100 bytes a MiB: more than a tar header's slack
    ['one 40 MiB file', [40 << 20]],
  ];
  for (const level of [1, 9, undefined]) {
    for (const [what, sizes] of cases) {
      test(`>= the file size for random data: ${what}, level ${level}`, async () => {
        const path = join(dir, `bound-${what.replace(/ /g, '-')}-${level}.tar.gz`);
        const w = new TarballWriter({ path, partSize: 1 << 20, level });
        let i = 0;
        for (const size of sizes) {
          // long non-ASCII names take PAX headers
          const name = `${TAG}/${'é'.repeat(200)}/${i++}`;
          await w.addFile(name, size, MTIME, randomBytes(size));
        }
        const r = await w.finish();
        const actual = (await stat(path)).size;
        assert.equal(r.size, actual);
        const bound = tarballSizeBound(sizes.map((size) => ({ size })));
        assert.ok(bound >= actual, `bound ${bound} < actual ${actual}`);
      });
    }
  }
});
