import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getBytes, snapshot } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import { heldFirstRange, rangesOf } from '../helpers/ranges.js';
import {
  BATCH,
  BIG_PLATE,
  bigPlateObjects,
  expectedListing,
  md5hex,
  PLATE_A,
  PLATE_B,
  plateObjects,
  PROJECT,
  readTree,
  SIBLINGS,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

/** S3's ETag rule, written out here independently of the tool's own implementation. */
function multipartEtag(data: Buffer, partSize: number): string {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += partSize) {
    parts.push(Buffer.from(md5hex(data.subarray(off, off + partSize)), 'hex'));
  }
  if (parts.length <= 1) return md5hex(data);
  return `${md5hex(Buffer.concat(parts))}-${parts.length}`;
}

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
const cold = (p: FixturePlate, name: string) =>
  `imaging_analysis/${PROJECT}/plates/${tag(p)}_${name}`;
const backup = (p: FixturePlate, name: string) =>
  `projects/${PROJECT}/workspace/backup/${tag(p)}_${name}`;

for (const name of testServerNames()) {
  describe(`archive against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-archive-test-');
    let live: string;
    let coldBucket: string;
    const truth = new Map<FixturePlate, GroundTruth>();

    before(async () => {
      live = await suite.server.newBucket('live');
      coldBucket = await suite.server.newBucket('cold');
      for (const p of [PLATE_A, PLATE_B, ...SIBLINGS]) {
        truth.set(p, plateObjects(p));
        await uploadAll(suite.client, live, truth.get(p)!);
      }
    });

    const args = (csv: string, tmp: string, extra: string[] = []) => [
      'archive',
      ...plateArgs({ csv: csv, live: live, cold: coldBucket }),
      '--tmpdir',
      tmp,
      '--max-procs',
      '2',
      ...extra,
    ];

    test('two plates end to end: tarballs rebuild every source file, listings and sums agree', async () => {
      const csv = await writePlatesCsv([PLATE_A, PLATE_B], suite.work);
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const logDir = join(suite.work, 'logs');
      // Watch the tmpdir during the run: only the tarballs in progress may ever be there.
      const seen = new Set<string>();
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          for (const f of await readdir(tmp)) seen.add(f);
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      const r = await runCli(args(csv, tmp, ['--log-dir', logDir]), serverEnv(suite.server));
      watching = false;
      await watcher;
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /BR00092655\s+archived/);
      assert.match(r.stdout, /2058\s+archived/);
      assert.deepEqual(await readdir(tmp), [], 'tmpdir is empty after the run');
      // The tarballs in progress, and each plate's few-byte lock file.
      const allowed = [PLATE_A, PLATE_B].flatMap((p) => [
        `${tag(p)}.lock`,
        `${tag(p)}_images_illum_analysis.tar.gz`,
        `${tag(p)}_backend.tar.gz`,
      ]);
      for (const f of seen) assert.ok(allowed.includes(f), `unexpected file in tmpdir: ${f}`);

      const joblog = (await readdir(logDir)).sort();
      assert.deepEqual(joblog, ['2058.log', 'BR00092655.log', 'archive.joblog']);

      for (const p of [PLATE_A, PLATE_B]) {
        const objects = truth.get(p)!;
        const extractDir = await mkdtemp(join(suite.work, `x-${p.plateId}-`));
        for (const t of ['images_illum_analysis', 'backend']) {
          const key = cold(p, `${t}.tar.gz`);
          const data = await getBytes(suite.client, coldBucket, key);
          const file = join(suite.work, `${p.plateId}-${t}.tar.gz`);
          await writeFile(file, data);
          execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', extractDir]);
          const md5 = (await getBytes(suite.client, coldBucket, cold(p, `${t}.md5`))).toString();
          const md5sum = execFileSync('md5sum', [file]).toString().split(' ')[0];
          assert.equal(md5, `${md5sum}  ${tag(p)}_${t}.tar.gz\n`);
          const head = await suite.client.send(
            new HeadObjectCommand({ Bucket: coldBucket, Key: key }),
          );
          const etag = (await getBytes(suite.client, coldBucket, cold(p, `${t}.etag`))).toString();
          assert.equal(etag, `${head.ETag!.replace(/"/g, '')}\n`);
          // S3's form (md5 of 8 MiB part md5s) or a plain md5, as some stores answer.
          assert.ok(
            [multipartEtag(data, 8 * 1024 * 1024), md5hex(data)].includes(etag.trim()),
            `ETag ${etag.trim()} is neither the multipart nor the plain md5 of the tarball`,
          );
          if (p === PLATE_A && t === 'images_illum_analysis') {
            assert.ok(
              data.length > 8 * 1024 * 1024,
              'plate A tarball is big enough to be multipart',
            );
          }
        }
        // GNU tar rebuilt exactly the uploaded files: same paths, same bytes, nothing else.
        const tree = await readTree(extractDir);
        const expected = new Map(
          [...objects]
            .filter(([k]) => !k.endsWith('/'))
            .map(([k, v]) => [k.slice('projects/'.length), v]),
        );
        assert.deepEqual([...tree.keys()].sort(), [...expected.keys()].sort());
        for (const [path, bytes] of expected)
          assert.ok(tree.get(path)!.equals(bytes), `${path} differs`);

        const listing = expectedListing(objects);
        const s3l = (
          await getBytes(suite.client, live, backup(p, 'file_listing_s3.txt'))
        ).toString();
        const tarl = (
          await getBytes(suite.client, live, backup(p, 'file_listing_tar.txt'))
        ).toString();
        assert.equal(s3l, listing);
        assert.equal(tarl, listing);

        const untrimmed = (
          await getBytes(suite.client, coldBucket, cold(p, 'file_listing_untrimmed_s3.txt'))
        ).toString();
        const rawLines = untrimmed.split('\n').filter(Boolean);
        assert.equal(rawLines.length, objects.size, 'one raw line per object, markers included');
        for (const line of rawLines) {
          assert.match(line, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [ \d]{10} projects\//);
          const key = line.slice(31);
          assert.ok(objects.has(key), `raw listing names an object not uploaded: ${key}`);
          assert.equal(Number(line.slice(20, 30)), objects.get(key)!.length);
        }

        // The delete script names exactly the uploaded files, each with its ETag, in batches.
        const script = (await getBytes(suite.client, live, backup(p, 'delete_s3.sh'))).toString();
        const head = `aws s3api delete-objects --bucket '${live}' --delete '`;
        const named = script
          .split('\n')
          .filter(Boolean)
          .flatMap((l) => {
            assert.ok(l.startsWith(head) && l.endsWith("'"), l.slice(0, 200));
            const json = l.slice(head.length, -1).replace(/'\\''/g, "'");
            return (JSON.parse(json) as { Objects: { Key: string; ETag: string }[] }).Objects;
          });
        assert.deepEqual(
          named.map((o) => `${o.Key} ${o.ETag}`).sort(),
          [...objects]
            .filter(([k]) => !k.endsWith('/'))
            .map(([k, v]) => `${k} "${md5hex(v)}"`)
            .sort(),
        );
      }
      // The folder marker became a directory in the tarball.
      const list = execFileSync('tar', [
        'tzf',
        join(suite.work, 'BR00092655-images_illum_analysis.tar.gz'),
      ]).toString();
      assert.ok(
        list
          .split('\n')
          .includes(`${tag(PLATE_A)}/${PROJECT}/${BATCH}/images/${PLATE_A.plateIdFull}/sub/`),
      );
    });

    test('re-running on archived plates changes nothing in either bucket and says why', async () => {
      const csv = await writePlatesCsv([PLATE_A, PLATE_B], suite.work);
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const before = [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)];
      const r = await runCli(args(csv, tmp), serverEnv(suite.server));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /BR00092655\s+skipped.*already archived/);
      assert.match(r.stdout, /2058\s+skipped.*already archived/);
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)],
        before,
      );
      assert.deepEqual(await readdir(tmp), []);
    });

    test('a plate archived by a run killed after removing its marker, before its lock: the re-run removes the lock and its tarball, nothing else', async () => {
      // The killed run's leftovers: its lock (a pid that cannot exist) and a tarball it had not
      // removed yet; its marker is gone, so the plate's outputs are complete and unmarked.
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const before = [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)];
      await writeFile(
        join(tmp, `${tag(PLATE_B)}.lock`),
        `${JSON.stringify({ pid: 999999999, host: hostname() })}\n`,
      );
      await writeFile(join(tmp, `${tag(PLATE_B)}_images_illum_analysis.tar.gz`), 'partial');
      const csv = await writePlatesCsv([PLATE_B], suite.work);
      const r = await runCli(args(csv, tmp), serverEnv(suite.server));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(
        r.stdout,
        /2058\s+skipped.*already archived; removed the lock left in the tmpdir/,
      );
      assert.deepEqual(await readdir(tmp), []);
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)],
        before,
      );
    });

    test('a plate archived by a run killed before it tidied up: the re-run removes its marker and lock, nothing else', async () => {
      // The killed run's leftovers: its in-progress marker and its lock (a pid that cannot exist).
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const marker = `projects/${PROJECT}/workspace/backup/${tag(PLATE_B)}_archive_in_progress.json`;
      const before = [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)];
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: marker, Body: '{"pid":999999999}\n' }),
      );
      await writeFile(join(tmp, `${tag(PLATE_B)}.lock`), '999999999\n');
      const csv = await writePlatesCsv([PLATE_B], suite.work);
      const r = await runCli(args(csv, tmp), serverEnv(suite.server));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /2058\s+skipped.*already archived; removed the in-progress marker/);
      assert.deepEqual(await readdir(tmp), []);
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)],
        before,
      );
    });

    test('a bad plates.csv changes nothing and names the line', async () => {
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const csv = join(suite.work, 'bad.csv');
      await writeFile(csv, 'plate_id,plate_id_full\n20586,20586\n../x,y\n');
      const before = [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)];
      const r = await runCli(args(csv, tmp), serverEnv(suite.server));
      assert.equal(r.code, 2);
      assert.match(r.stderr, /bad\.csv:3: plate_id "\.\.\/x" contains "\/"/);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one clear line');
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, coldBucket)],
        before,
      );
      assert.deepEqual(await readdir(tmp), []);
    });

    test('a plate locked by a live process is left alone; a stale tarball without one is redone', async () => {
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const p = SIBLINGS[1]!;
      const stale = join(tmp, `${tag(p)}_images_illum_analysis.tar.gz`);
      await writeFile(stale, 'left by a killed run');
      const lock = join(tmp, `${tag(p)}.lock`);
      await writeFile(lock, `${process.pid}\n`); // this test process: alive
      const csv = await writePlatesCsv([p], suite.work);
      const r = await runCli(args(csv, tmp), serverEnv(suite.server));
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`2058-old\\s+failed.*being archived by process ${process.pid}`),
      );
      assert.deepEqual((await readdir(tmp)).sort(), [
        `${tag(p)}.lock`,
        `${tag(p)}_images_illum_analysis.tar.gz`,
      ]);
      // Once that process is gone (here: its lock names a pid that cannot exist), the plate is redone.
      await writeFile(lock, '999999999\n');
      const again = await runCli(args(csv, tmp), serverEnv(suite.server));
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /2058-old\s+archived/);
      assert.deepEqual(await readdir(tmp), []);
    });

    test('a plate with no objects fails clearly; the others still run', async () => {
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const csv = await writePlatesCsv(
        [{ plateId: 'nothing-here', plateIdFull: 'nothing-here' }, SIBLINGS[0]!],
        suite.work,
      );
      const r = await runCli(args(csv, tmp), serverEnv(suite.server));
      assert.equal(r.code, 1);
      assert.match(r.stdout, /nothing-here\s+failed.*no objects under its four sources/);
      assert.match(r.stdout, /20586\s+archived/);
      const head = await suite.client
        .send(
          new HeadObjectCommand({
            Bucket: coldBucket,
            Key: cold({ plateId: 'nothing-here', plateIdFull: '' }, 'backend.tar.gz'),
          }),
        )
        .catch(() => undefined);
      assert.equal(head, undefined, 'no tarball for the empty plate');
      assert.deepEqual(await readdir(tmp), []);
    });

    test('a large source object is read as 8 MiB ranges, several in flight at once, and rebuilt byte for byte; verify --deep reads its tarball the same way', async () => {
      const bigLive = await suite.server.newBucket('live');
      const bigCold = await suite.server.newBucket('cold');
      const objects = bigPlateObjects();
      await uploadAll(suite.client, bigLive, objects);
      const [hugeKey, huge] = [...objects].find(([k]) => k.endsWith('huge.tiff'))!;
      const tarballKey = cold(BIG_PLATE, 'images_illum_analysis.tar.gz');
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const csv = await writePlatesCsv([BIG_PLATE], suite.work);
      const args = plateArgs({ csv, live: bigLive, cold: bigCold });

      const reading = await heldFirstRange(suite.server.endpoint, hugeKey, 3);
      try {
        const env = { ...serverEnv(suite.server), AWS_ENDPOINT_URL: reading.proxy.endpoint };
        const r = await runCli(['archive', ...args, '--tmpdir', tmp], env);
        assert.equal(r.code, 0, r.stdout + r.stderr);
      } finally {
        await reading.close();
      }
      assert.equal(reading.whileHeld() >= 3, true, `GETs while held: ${reading.whileHeld()}`);
      assert.deepEqual(reading.ranges(), rangesOf(huge.length, 8 * 1024 * 1024));

      const tarball = await getBytes(suite.client, bigCold, tarballKey);
      const file = join(suite.work, 'big-plate-images.tar.gz');
      await writeFile(file, tarball);
      const dir = await mkdtemp(join(suite.work, 'x-big-'));
      execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', dir]);
      const tree = await readTree(dir);
      assert.ok(tree.get(hugeKey.slice('projects/'.length))?.equals(huge), 'huge.tiff rebuilt');

      const checking = await heldFirstRange(suite.server.endpoint, tarballKey, 3);
      try {
        const env = { ...serverEnv(suite.server), AWS_ENDPOINT_URL: checking.proxy.endpoint };
        const v = await runCli(['verify', '--deep', ...args], env);
        assert.equal(v.code, 0, v.stdout + v.stderr);
      } finally {
        await checking.close();
      }
      assert.equal(checking.whileHeld() >= 3, true, `GETs while held: ${checking.whileHeld()}`);
      assert.deepEqual(checking.ranges(), rangesOf(tarball.length, 8 * 1024 * 1024));
    });
  });
}
