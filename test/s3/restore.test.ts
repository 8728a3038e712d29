import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import { createGzip } from 'node:zlib';
import {
  DeleteObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import * as tar from 'tar-stream';
import { formatBytes } from '../../src/cli/render.js';
import { BIN, plateArgs, runCli, serverEnv } from '../helpers/cli.js';
import {
  PLATE_A,
  PLATE_B,
  readTree,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  BATCH,
  PROJECT,
  BIG_PLATE,
  bigPlateObjects,
  md5hex,
  plateObjects,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import {
  archivedCase,
  coldDir,
  moveCold,
  plateLines,
  tagOf,
  type ArchivedCase,
} from '../helpers/restore.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { heldFirstRange, rangesOf } from '../helpers/ranges.js';
import { getBytes, keysUnder, snapshot } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { mountTmpfs, unmountTmpfs } from '../helpers/tmpfs.js';
import { useServer, type ServerSuite } from '../helpers/suite.js';

const PLATES = [PLATE_A, PLATE_B];
const recordKey = (p: FixturePlate) =>
  `projects/2013_Gustafsdottir_PLOSONE/workspace/backup/${tagOf(p)}_restored.json`;
const headEtag = async (suite: ServerSuite, bucket: string, key: string) =>
  (
    (await suite.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ETag ?? ''
  ).replace(/"/g, '');
const tarballKey = (p: FixturePlate, name: string) => `${coldDir}${tagOf(p)}_${name}.tar.gz`;

/** Archive, verify --deep and delete, as a user does before the tarballs go cold. */
async function archivedAndDeleted(suite: ServerSuite): Promise<ArchivedCase> {
  const c = await archivedCase(suite, PLATES);
  const v = await c.run('verify', ['--deep']);
  assert.equal(v.code, 0, v.stderr + v.stdout);
  const d = await c.run('delete', ['--yes']);
  assert.equal(d.code, 0, d.stderr + d.stdout);
  // delete removes the archived files; folder markers are not archived, so they stay
  for (const p of PLATES)
    for (const prefix of sourcePrefixes(p)) {
      const left = await keysUnder(suite.client, c.live, prefix);
      assert.deepEqual(
        left.filter((k) => !k.endsWith('/')),
        [],
        `${prefix} not deleted`,
      );
    }
  return c;
}

/**
 * `restore --to-s3` through a proxy that holds each PUT whose URL `match`es for `ms`, as a slow
 * link would (uploads one after another never overlap there); how many it held at once.
 */
async function restoreHoldingPuts(
  suite: ServerSuite,
  c: ArchivedCase,
  match: (url: string) => boolean,
  ms: number,
): Promise<number> {
  let holding = 0;
  let most = 0;
  const proxy = await startFaultProxy(suite.server.endpoint, {
    rate: 0,
    onRequest: async (req) => {
      if (req.method !== 'PUT' || !match(req.url ?? '')) return;
      holding += 1;
      most = Math.max(most, holding);
      await new Promise((r) => setTimeout(r, ms));
      holding -= 1;
    },
  });
  try {
    const r = await c.run('restore', ['--to-s3', '--endpoint-url', proxy.endpoint]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
  } finally {
    await proxy.close();
  }
  return most;
}

/** Every file the test uploaded is back at its key with its bytes, and nothing else. */
async function assertRebuiltOnS3(suite: ServerSuite, c: ArchivedCase, plates = PLATES) {
  for (const p of plates) {
    const truth = c.truth.get(p.plateId)!;
    const files = [...truth.keys()].filter((k) => !k.endsWith('/')).sort();
    const there = (
      await Promise.all(sourcePrefixes(p).map((x) => keysUnder(suite.client, c.live, x)))
    )
      .flat()
      .filter((k) => !k.endsWith('/'))
      .sort();
    assert.deepEqual(there, files);
    for (const k of files)
      assert.ok((await getBytes(suite.client, c.live, k)).equals(truth.get(k)!), k);
  }
}

/** What GNU tar makes of the plates' tarballs, extracted with --strip-components=1. */
async function gnuTarTree(suite: ServerSuite, c: ArchivedCase, plates = PLATES) {
  const out = await mkdtemp(join(c.dir, 'gnutar-'));
  for (const p of plates) {
    for (const name of ['images_illum_analysis', 'backend']) {
      const file = join(c.dir, `${tagOf(p)}_${name}.tar.gz`);
      await writeFile(file, await getBytes(suite.client, c.cold, tarballKey(p, name)));
      execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', out]);
    }
  }
  return out;
}

async function dirsUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => join(e.parentPath, e.name).slice(dir.length))
    .sort();
}

for (const name of testServerNames('all')) {
  describe(`restore from readable tarballs against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-restore-test-');

    test('--to-s3 rebuilds every source object byte for byte; a second run changes nothing', async () => {
      const c = await archivedAndDeleted(suite);
      const markers = (await keysUnder(suite.client, c.live, 'projects/')).filter((k) =>
        k.endsWith('/'),
      );
      const r = await c.run('restore', ['--to-s3', '--json']);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.deepEqual(
        plateLines(r.stdout).map((l) => l.status),
        ['restored', 'restored'],
      );
      await assertRebuiltOnS3(suite, c);
      // folder entries make no objects on S3
      assert.deepEqual(
        (await keysUnder(suite.client, c.live, 'projects/')).filter((k) => k.endsWith('/')),
        markers,
      );
      const record = JSON.parse(
        (
          await getBytes(
            suite.client,
            c.live,
            `projects/2013_Gustafsdottir_PLOSONE/workspace/backup/${tagOf(PLATE_B)}_restored.json`,
          )
        ).toString(),
      ) as { counts: { written: number; skipped: number }; checks: { md5: number } };
      const bFiles = [...c.truth.get(PLATE_B.plateId)!.keys()].filter(
        (k) => !k.endsWith('/'),
      ).length;
      assert.equal(record.counts.written, bFiles);
      // every source was a single PUT: each member proven by its own md5
      assert.equal(record.checks.md5, bFiles);

      const before = await snapshot(suite.client, c.live);
      const again = await c.run('restore', ['--to-s3', '--json']);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      const lines = plateLines(again.stdout);
      assert.match(String(lines[0]!.message), new RegExp(`^0 written, ${bFiles} already there`));
      const after = (await snapshot(suite.client, c.live)).filter(
        (l) => !l.includes('_restored.json'),
      );
      assert.deepEqual(
        after,
        before.filter((l) => !l.includes('_restored.json')),
      );

      // Each plate's line gives its files' bytes, not the tarballs' it read them from.
      const human = await c.run('restore', ['--to-s3']);
      assert.equal(human.code, 0, human.stderr + human.stdout);
      for (const p of [PLATE_A, PLATE_B]) {
        const truth = [...c.truth.get(p.plateId)!.values()];
        const bytes = truth.reduce((n, b) => n + b.length, 0);
        const files = plateLines(r.stdout).find((l) => l.plateId === p.plateId)!.files;
        assert.ok(
          human.stderr.includes(`${p.plateId}: restored (${files} files, ${formatBytes(bytes)})`),
          human.stderr,
        );
      }
    });

    test('--to-s3 uploads small members several at once, not one round trip after another', async () => {
      const c = await archivedAndDeleted(suite);
      const most = await restoreHoldingPuts(
        suite,
        c,
        (url) => !/[?&](partNumber|uploadId)=/.test(url),
        150,
      );
      await assertRebuiltOnS3(suite, c);
      assert.ok(most >= 4, `at most ${most} member upload(s) in flight at once`);
    });

    test('--to-s3 uploads members of 8-16 MiB (one PUT each) several at once too', async () => {
      // Real plates are ~15 MB images: each would otherwise wait its HEAD and its PUT in turn.
      const c = await archivedCase(suite, [PLATE_B], (p) => {
        const m = plateObjects(p);
        const images = sourcePrefixes(p)[0]!;
        for (let i = 0; i < 4; i++)
          m.set(`${images}large${i}.tiff`, randomBytes(9 * 1024 * 1024 + i * 1_000_003));
        return m;
      });
      for (const prefix of sourcePrefixes(PLATE_B))
        for (const k of await keysUnder(suite.client, c.live, prefix))
          await suite.client.send(new DeleteObjectCommand({ Bucket: c.live, Key: k }));
      const most = await restoreHoldingPuts(suite, c, (url) => /large\d\.tiff/.test(url), 1000);
      await assertRebuiltOnS3(suite, c, [PLATE_B]);
      assert.ok(most >= 2, `at most ${most} large member upload(s) in flight at once`);
    });

    test('reads each tarball as 4 MiB ranges, more than four in flight at once', async () => {
      const c = await archivedCase(suite, [BIG_PLATE], () => bigPlateObjects());
      const key = tarballKey(BIG_PLATE, 'images_illum_analysis');
      const tarball = await getBytes(suite.client, c.cold, key);
      const range = 4 * 1024 * 1024;
      assert.ok(
        tarball.length > 8 * range,
        `the tarball holds more than 8 ranges: ${tarball.length}`,
      );
      const seen = await heldFirstRange(suite.server.endpoint, key, 7);
      const dir = await mkdtemp(join(c.dir, 'to-dir-'));
      try {
        const r = await c.run('restore', ['--to-dir', dir, '--endpoint-url', seen.proxy.endpoint]);
        assert.equal(r.code, 0, r.stderr + r.stdout);
      } finally {
        await seen.close();
      }
      assert.equal(seen.whileHeld() >= 7, true, `GETs while held: ${seen.whileHeld()}`);
      assert.deepEqual(seen.ranges(), rangesOf(tarball.length, range));
      const tree = await readTree(dir);
      for (const [k, bytes] of bigPlateObjects())
        assert.ok(tree.get(k.slice('projects/'.length))?.equals(bytes), `${k} rebuilt`);
    });

    test('--to-dir rebuilds the tree GNU tar makes; a second run changes nothing; other bytes are left alone', async () => {
      const c = await archivedCase(suite, PLATES);
      const dir = await mkdtemp(join(c.dir, 'to-dir-'));
      const r = await c.run('restore', ['--to-dir', dir]);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const gnu = await gnuTarTree(suite, c);
      assert.deepEqual(await readTree(dir), await readTree(gnu));
      assert.deepEqual(await dirsUnder(dir), await dirsUnder(gnu));

      const again = await c.run('restore', ['--to-dir', dir]);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      assert.deepEqual(await readTree(dir), await readTree(gnu));

      // a file changed locally: reported, left alone, the plate not restored
      const changed = join(
        dir,
        '2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/2058/2058.sqlite',
      );
      await writeFile(changed, 'local edits');
      const clash = await c.run('restore', ['--to-dir', dir, '--json'], [PLATE_B]);
      assert.equal(clash.code, 1);
      assert.match(
        String(plateLines(clash.stdout)[0]!.message),
        /1 file\(s\) already there with other bytes, left alone \(--overwrite replaces them\): ".*2058\.sqlite"/,
      );
      assert.equal(
        (await readTree(dir))
          .get('2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/2058/2058.sqlite')!
          .toString(),
        'local edits',
      );
      const forced = await c.run('restore', ['--to-dir', dir, '--overwrite'], [PLATE_B]);
      assert.equal(forced.code, 0, forced.stderr + forced.stdout);
      assert.deepEqual(await readTree(dir), await readTree(gnu));
    });

    test('a multipart source comes back with its own ETag; without the ETag record, files wait for the tarball md5', async (t) => {
      const mpKey = `${sourcePrefixes(PLATE_B)[0]}mp.bin`;
      const mpData = randomBytes(11 * 1024 * 1024);
      const c = await archivedCase(
        suite,
        [PLATE_B],
        (p) => new Map([...plateObjects(p), [mpKey, mpData]]),
        { keys: new Set([mpKey]), partSize: 5 * 1024 * 1024 },
      );
      const original = await headEtag(suite, c.live, mpKey);
      if (name === 's3rver')
        return t.diagnostic(
          's3rver gives a multipart upload a plain-md5 ETag: checked on the others',
        );
      assert.match(original, /-3$/);
      const r = await c.run('restore', ['--to-s3', '--to-prefix', 'copy/']);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.equal(await headEtag(suite, c.live, `copy/${mpKey}`), original);
      const truth = c.truth.get(PLATE_B.plateId)!;
      for (const [k, v] of truth)
        if (!k.endsWith('/'))
          assert.ok((await getBytes(suite.client, c.live, `copy/${k}`)).equals(v), k);
      const record = JSON.parse(
        (await getBytes(suite.client, c.live, recordKey(PLATE_B))).toString(),
      ) as Record<string, Record<string, number>>;
      assert.equal(record.checks!['multipart-etag'], 1);
      assert.equal(record.checks!.md5, truth.size - 1);

      // an archive without T_file_etags_s3.txt (the old script wrote none)
      await suite.client.send(
        new DeleteObjectCommand({
          Bucket: c.live,
          Key: `projects/2013_Gustafsdottir_PLOSONE/workspace/backup/${tagOf(PLATE_B)}_file_etags_s3.txt`,
        }),
      );
      const dir = await mkdtemp(join(c.dir, 'to-dir-'));
      const d = await c.run('restore', ['--to-dir', dir]);
      assert.equal(d.code, 0, d.stderr + d.stdout);
      const local = JSON.parse(
        await readFile(`${dir}.${tagOf(PLATE_B)}_restored.json`, 'utf8'),
      ) as Record<string, Record<string, number>>;
      assert.equal(local.checks!['tarball-md5'], truth.size);
      assert.deepEqual(await readTree(dir), await readTree(await gnuTarTree(suite, c, [PLATE_B])));
    });

    test('--overwrite to S3 leaves an object alone when only the whole tarball could prove the new bytes', async () => {
      const c = await archivedCase(suite, [PLATE_B]);
      // without T_file_etags_s3.txt no member has a proof of its own before the tarball's md5
      await suite.client.send(
        new DeleteObjectCommand({
          Bucket: c.live,
          Key: `projects/2013_Gustafsdottir_PLOSONE/workspace/backup/${tagOf(PLATE_B)}_file_etags_s3.txt`,
        }),
      );
      const key = `${sourcePrefixes(PLATE_B)[3]}${PLATE_B.plateId}.sqlite`;
      await suite.client.send(new PutObjectCommand({ Bucket: c.live, Key: key, Body: 'newer' }));
      const r = await c.run('restore', ['--to-s3', '--overwrite', '--json']);
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.match(
        String(plateLines(r.stdout)[0]!.message),
        /1 file\(s\) already there with other bytes were left alone even with --overwrite.*2058\.sqlite/,
      );
      assert.equal((await getBytes(suite.client, c.live, key)).toString(), 'newer');
    });

    test('members a failed tarball md5 leaves on S3, because they cannot be removed, are named', async () => {
      const c = await archivedCase(suite, [PLATE_B]);
      // Without T_file_etags_s3.txt each member is proven by its tarball's md5 alone, and a
      // `.md5` that is not the backend tarball's fails them all once they are uploaded.
      await suite.client.send(
        new DeleteObjectCommand({
          Bucket: c.live,
          Key: `projects/2013_Gustafsdottir_PLOSONE/workspace/backup/${tagOf(PLATE_B)}_file_etags_s3.txt`,
        }),
      );
      await suite.client.send(
        new PutObjectCommand({
          Bucket: c.cold,
          Key: `${coldDir}${tagOf(PLATE_B)}_backend.md5`,
          Body: `${'0'.repeat(32)}  ${tagOf(PLATE_B)}_backend.tar.gz\n`,
        }),
      );
      // A role without s3:DeleteObject: the clean-up's DeleteObjects is refused.
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        answer: (req) =>
          req.method === 'POST' && /[?&]delete(=|&|$)/.test(req.url ?? '')
            ? { status: 403, code: 'AccessDenied', message: 'Access Denied' }
            : undefined,
      });
      try {
        const r = await c.run('restore', [
          '--to-s3',
          '--to-prefix',
          'copy/',
          '--json',
          '--endpoint-url',
          proxy.endpoint,
        ]);
        assert.equal(r.code, 1, r.stderr + r.stdout);
        const msg = String(plateLines(r.stdout)[0]!.message);
        const backend = `copy/${sourcePrefixes(PLATE_B)[3]}`;
        const left = await keysUnder(suite.client, c.live, backend);
        assert.ok(left.length > 0, `the backend members are still there: ${msg}`);
        assert.match(
          msg,
          new RegExp(
            `says 0{32}; members checked only by it were not kept, except ${left.length} that could not be removed \\(Access Denied\\), whose bytes are not proven: remove them: "s3://${c.live}/${backend}`,
          ),
        );
      } finally {
        await proxy.close();
      }
    });

    test('a link member is refused and nothing is written for it', async () => {
      const c = await archivedCase(suite, [PLATE_B]);
      const T = tagOf(PLATE_B);
      const pack = tar.pack();
      pack.entry({
        name: `${T}/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/2058/`,
        type: 'directory',
      });
      pack.entry({
        name: `${T}/2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/2058/evil`,
        type: 'symlink',
        linkname: '/etc/passwd',
      });
      pack.finalize();
      const chunks: Buffer[] = [];
      for await (const ch of pack.pipe(createGzip())) chunks.push(ch as Buffer);
      const body = Buffer.concat(chunks);
      const key = tarballKey(PLATE_B, 'backend');
      await suite.client.send(new PutObjectCommand({ Bucket: c.cold, Key: key, Body: body }));
      await suite.client.send(
        new PutObjectCommand({
          Bucket: c.cold,
          Key: key.replace(/\.tar\.gz$/, '.md5'),
          Body: `${md5hex(body)}  ${T}_backend.tar.gz\n`,
        }),
      );
      const dir = await mkdtemp(join(c.dir, 'to-dir-'));
      const r = await c.run('restore', ['--to-dir', dir, '--what', 'backend', '--json']);
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.match(
        String(plateLines(r.stdout)[0]!.message),
        /_backend\.tar\.gz: member .*2058\/evil is a symlink entry \(only files and folders are restored\); refused/,
      );
      assert.deepEqual([...(await readTree(dir)).keys()], []);
    });

    test('kill -9 mid-restore, then a re-run: it finishes, rewrites nothing restored, leaves no upload', async (t) => {
      if (name === 's3rver')
        return t.diagnostic('s3rver lists no multipart uploads: checked on the others');
      const [images] = sourcePrefixes(BIG_PLATE) as [string];
      const c = await archivedCase(
        suite,
        [BIG_PLATE],
        () => new Map([[`${images}a-small.txt`, Buffer.from('small\n')], ...bigPlateObjects()]),
      );
      let pid = 0;
      const run = runCli(
        [
          'restore',
          ...plateArgs({ csv: c.csv, live: c.live, cold: c.cold }),
          '--to-s3',
          '--to-prefix',
          'r/',
        ],
        serverEnv(suite.server),
        { onSpawn: (p) => (pid = p) },
      );
      let uploads = 0;
      for (let i = 0; i < 1000 && uploads === 0; i++) {
        uploads =
          (await suite.client.send(new ListMultipartUploadsCommand({ Bucket: c.live }))).Uploads
            ?.length ?? 0;
        if (uploads === 0) await new Promise((res) => setTimeout(res, 20));
      }
      assert.equal(uploads, 1, 'the restore never started its multipart upload');
      process.kill(pid, 'SIGKILL');
      assert.equal((await run).signal, 'SIGKILL');
      const smallKey = `r/${images}a-small.txt`;
      const small = await suite.client.send(
        new HeadObjectCommand({ Bucket: c.live, Key: smallKey }),
      );

      const again = await c.run('restore', ['--to-s3', '--to-prefix', 'r/']);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      assert.equal(
        (await suite.client.send(new ListMultipartUploadsCommand({ Bucket: c.live }))).Uploads
          ?.length ?? 0,
        0,
      );
      const after = await suite.client.send(
        new HeadObjectCommand({ Bucket: c.live, Key: smallKey }),
      );
      assert.equal(after.LastModified?.getTime(), small.LastModified?.getTime());
      for (const [k, v] of c.truth.get(BIG_PLATE.plateId)!)
        assert.ok((await getBytes(suite.client, c.live, `r/${k}`)).equals(v), k);
    });
  });
}

for (const name of testServerNames('glacier')) {
  describe(`restore from Glacier against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-restore-glacier-test-');

    test('archive, verify, delete, GLACIER, restore-request, restore-status --wait, restore --to-s3 and --to-dir', async () => {
      const c = await archivedAndDeleted(suite);
      await moveCold(suite.client, c.cold, PLATES, 'GLACIER');
      const dir = await mkdtemp(join(c.dir, 'to-dir-'));

      const early = await c.run('restore', ['--to-dir', dir, '--json']);
      assert.equal(early.code, 1);
      for (const l of plateLines(early.stdout)) {
        assert.equal(l.status, 'failed');
        assert.match(
          String(l.message),
          /is in GLACIER and not restored .*: run imgbackup restore-request$/,
        );
      }
      assert.deepEqual(await readdir(dir), []);

      assert.equal((await c.run('restore-request')).code, 0);
      const waited = await c.run('restore-status', ['--wait', '--timeout', '1m']);
      assert.equal(waited.code, 0, waited.stderr + waited.stdout);

      const r = await c.run('restore', ['--to-s3']);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      await assertRebuiltOnS3(suite, c);
      const d = await c.run('restore', ['--to-dir', dir]);
      assert.equal(d.code, 0, d.stderr + d.stdout);
      assert.deepEqual(await readTree(dir), await readTree(await gnuTarTree(suite, c)));
      const before = await snapshot(suite.client, c.live);
      assert.equal((await c.run('restore', ['--to-s3'])).code, 0);
      assert.deepEqual(
        (await snapshot(suite.client, c.live)).filter((l) => !l.includes('_restored.json')),
        before.filter((l) => !l.includes('_restored.json')),
      );
    });

    test('a tarball with one flipped byte fails its plate, naming the member; the other plate restores', async () => {
      const c = await archivedCase(suite, PLATES);
      const key = tarballKey(PLATE_B, 'images_illum_analysis');
      const bytes = await getBytes(suite.client, c.cold, key);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = bytes[at]! ^ 0x01;
      await suite.client.send(new PutObjectCommand({ Bucket: c.cold, Key: key, Body: bytes }));
      const dir = await mkdtemp(join(c.dir, 'to-dir-'));
      const r = await c.run('restore', ['--to-dir', dir, '--json']);
      assert.equal(r.code, 1, r.stderr + r.stdout);
      const [b, a] = plateLines(r.stdout);
      assert.equal(a!.status, 'restored');
      assert.equal(b!.status, 'failed');
      assert.match(String(b!.message), /_images_illum_analysis\.tar\.gz: .*member /);
      // no file of B with wrong bytes under its final name, and no partial file left
      const truth = new Map<string, Buffer>();
      for (const p of PLATES)
        for (const [k, v] of c.truth.get(p.plateId)! as GroundTruth)
          truth.set(k.slice('projects/'.length), v);
      const tree = await readTree(dir);
      for (const [path, data] of tree) {
        assert.ok(!path.includes('.imgbackup-partial'), `left a partial file ${path}`);
        assert.ok(truth.get(path)?.equals(data), `${path} has bytes that were never uploaded`);
      }
      const aFiles = [...c.truth.get(PLATE_A.plateId)!.keys()].filter((k) => !k.endsWith('/'));
      for (const k of aFiles) assert.ok(tree.has(k.slice('projects/'.length)), k);
    });

    test('bad input: one line, non-zero, nothing written', async () => {
      const c = await archivedCase(suite, [PLATE_B]);
      const dir = await mkdtemp(join(c.dir, 'to-dir-'));
      const none = await c.run('restore', [
        '--to-dir',
        dir,
        '--include',
        '**/nothing-like-this.tif',
      ]);
      assert.equal(none.code, 2);
      assert.equal(none.stderr.trim().split('\n').length, 1, none.stderr);
      assert.match(
        none.stderr,
        /--include "\*\*\/nothing-like-this\.tif" matches no archived file/,
      );

      const dry = await c.run('restore', ['--to-dir', dir, '--dry-run', '--json']);
      assert.equal(dry.code, 0, dry.stderr);
      const files = [...c.truth.get(PLATE_B.plateId)!].filter(([k]) => !k.endsWith('/'));
      const bytes = files.reduce((n, [, v]) => n + v.length, 0);
      assert.equal(
        plateLines(dry.stdout)[0]!.message,
        `would restore ${files.length} file(s), ${bytes} bytes, to ${await realpath(dir)}`,
      );
      assert.deepEqual(await readdir(dir), []);

      const missing = join(c.dir, 'no-such-dir');
      const nodir = await c.run('restore', ['--to-dir', missing]);
      assert.equal(nodir.code, 2);
      assert.match(nodir.stderr, /--to-dir .*no-such-dir: not a writable directory \(ENOENT\)/);
      const both = await c.run('restore', ['--to-dir', dir, '--to-s3']);
      assert.equal(both.code, 2);
      assert.match(both.stderr, /give exactly one of --to-s3 and --to-dir DIR/);

      const unknown = await c.run(
        'restore',
        ['--to-dir', dir, '--json'],
        [{ plateId: 'NOPE', plateIdFull: 'NOPE' }],
      );
      assert.equal(unknown.code, 1);
      assert.match(
        String(plateLines(unknown.stdout)[0]!.message),
        /not archived: .*NOPE_images_illum_analysis\.tar\.gz.* missing/,
      );

      // --what backend: the backend tarball alone, its members checked against its part of the listing
      const back = await mkdtemp(join(c.dir, 'to-dir-'));
      const wb = await c.run('restore', ['--to-dir', back, '--what', 'backend']);
      assert.equal(wb.code, 0, wb.stderr + wb.stdout);
      assert.deepEqual(
        [...(await readTree(back)).keys()],
        [...c.truth.get(PLATE_B.plateId)!.keys()]
          .filter((k) => k.includes('/workspace/backend/'))
          .map((k) => k.slice('projects/'.length)),
      );

      // a symlink already in DIR that leads out of it: refused, nothing created where it points
      const outside = await mkdtemp(join(c.dir, 'outside-'));
      const trap = await mkdtemp(join(c.dir, 'to-dir-'));
      await symlink(outside, join(trap, '2013_Gustafsdottir_PLOSONE'));
      const sym = await c.run('restore', ['--to-dir', trap, '--json']);
      assert.equal(sym.code, 1);
      assert.match(
        String(plateLines(sym.stdout)[0]!.message),
        /leads outside .* \(a symlink\); refused/,
      );
      assert.deepEqual(await readdir(outside), []);

      await mkdir(join(dir, 'x'));
      await c.run('restore', ['--to-dir', dir, '--include', '**/*.sqlite']);
      const tree = await readTree(dir);
      assert.deepEqual(
        [...tree.keys()],
        ['2013_Gustafsdottir_PLOSONE/workspace/backend/BBBC022/2058/2058.sqlite'],
      );
      assert.deepEqual(await readdir(dir), ['2013_Gustafsdottir_PLOSONE', 'x']);
    });

    test('an archive made by the old bash script restores too', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const objs = plateObjects(PLATE_A, { manyFiles: 20 });
      await uploadAll(suite.client, live, objs);
      const dir = await mkdtemp(join(suite.work, 'old-'));
      const csv = await writePlatesCsv([PLATE_A], dir);
      await mkdir(join(dir, 'tmp'));
      execFileSync(
        'bash',
        [
          join(BIN, '../../bench/old_workflow.sh'),
          ...['--plates', csv, '--project_name', PROJECT, '--batch_id', BATCH],
          ...['--bucket', live, '--cold_bucket', cold, '--tmpdir', join(dir, 'tmp')],
          ...[
            '--max_procs',
            '1',
            '--endpoint_url',
            suite.server.endpoint,
            '--log_dir',
            join(dir, 'log'),
          ],
        ],
        { env: { ...process.env, ...serverEnv(suite.server) }, stdio: 'ignore' },
      );
      await moveCold(suite.client, cold, [PLATE_A], 'GLACIER');
      const run = (cmd: string, extra: string[]) =>
        runCli([cmd, ...plateArgs({ csv, live, cold }), ...extra], serverEnv(suite.server));
      assert.equal((await run('restore-request', [])).code, 0);
      const out = await mkdtemp(join(dir, 'to-dir-'));
      const r = await run('restore', ['--to-dir', out, '--json']);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const expected = new Map(
        [...objs]
          .filter(([k]) => !k.endsWith('/'))
          .map(([k, v]) => [k.slice('projects/'.length), v]),
      );
      assert.deepEqual(await readTree(out), expected);
    });

    test('a disk that fills mid-restore: the plate fails in one line, no partial file, no record', async () => {
      const c = await archivedCase(suite, [PLATE_B]);
      const dir = await mkdtemp(join(c.dir, 'small-disk-'));
      // 64 KiB holds some of plate B's files but not all (its backend file alone is 50 kB)
      mountTmpfs(dir, '64k');
      try {
        const r = await c.run('restore', ['--to-dir', dir, '--json']);
        assert.equal(r.code, 1, r.stderr + r.stdout);
        assert.match(
          String(plateLines(r.stdout)[0]!.message),
          /cannot write .* \(the disk is full\); nothing of it is presented as restored/,
        );
        const truth = c.truth.get(PLATE_B.plateId)!;
        for (const [path, data] of await readTree(dir)) {
          assert.ok(!path.includes('.imgbackup-partial'), `left a partial file ${path}`);
          assert.ok(
            truth.get(`projects/${path}`)?.equals(data),
            `${path} has bytes that were never uploaded`,
          );
        }
        await assert.rejects(readFile(`${dir}.${tagOf(PLATE_B)}_restored.json`), {
          code: 'ENOENT',
        });
      } finally {
        unmountTmpfs(dir);
      }
    });
  });
}
