import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { plateArgs, runCli, serverEnv } from '../helpers/cli.js';
import {
  BATCH,
  md5hex,
  PLATE_B,
  plateObjects,
  PROJECT,
  readTree,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
} from '../helpers/fixtures.js';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

for (const name of testServerNames()) {
  describe(`archive --no-compress, --gzip-engine zlib against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-plain-');

    test('plain .tar tarballs that tar xf rebuilds; verify, a re-run and delete find them unasked', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const truth = plateObjects(PLATE_B);
      await uploadAll(suite.client, live, truth);
      const csv = await writePlatesCsv([PLATE_B], suite.work);
      const flags = plateArgs({ csv, live, cold });
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const a = await runCli(
        ['archive', ...flags, '--tmpdir', tmp, '--no-compress'],
        serverEnv(suite.server),
      );
      assert.equal(a.code, 0, a.stdout + a.stderr);

      const T = `${PROJECT}_${BATCH}_${PLATE_B.plateId}`;
      const plates = `imaging_analysis/${PROJECT}/plates/`;
      assert.deepEqual(await keysUnder(suite.client, cold, plates), [
        `${plates}${T}_backend.etag`,
        `${plates}${T}_backend.md5`,
        `${plates}${T}_backend.tar`,
        `${plates}${T}_file_listing_untrimmed_s3.txt`,
        `${plates}${T}_images_illum_analysis.etag`,
        `${plates}${T}_images_illum_analysis.md5`,
        `${plates}${T}_images_illum_analysis.tar`,
      ]);
      const dir = await mkdtemp(join(suite.work, 'x-'));
      for (const t of ['images_illum_analysis', 'backend']) {
        const data = await getBytes(suite.client, cold, `${plates}${T}_${t}.tar`);
        assert.equal(
          (await getBytes(suite.client, cold, `${plates}${T}_${t}.md5`)).toString(),
          `${md5hex(data)}  ${T}_${t}.tar\n`,
        );
        const file = join(suite.work, `${t}.tar`);
        await writeFile(file, data);
        execFileSync('tar', ['xf', file, '--strip-components=1', '-C', dir]);
      }
      const expected = [...truth].filter(([k]) => !k.endsWith('/'));
      const tree = await readTree(dir);
      assert.equal(tree.size, expected.length);
      for (const [k, v] of expected) assert.ok(tree.get(k.slice('projects/'.length))?.equals(v), k);

      const v = await runCli(['verify', '--deep', ...flags], serverEnv(suite.server));
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /2058\s+verified/);
      const again = await runCli(['archive', ...flags, '--tmpdir', tmp], serverEnv(suite.server));
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /2058\s+skipped.*already archived/);
      assert.deepEqual(await readdir(tmp), []);
      const d = await runCli(['delete', '--yes', ...flags], serverEnv(suite.server));
      assert.equal(d.code, 0, d.stdout + d.stderr);
      for (const pre of sourcePrefixes(PLATE_B))
        assert.deepEqual(await keysUnder(suite.client, live, pre), []);
    });

    test('--gzip-engine zlib: tar xzf rebuilds the sources; verify --deep passes', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const truth = plateObjects(PLATE_B);
      await uploadAll(suite.client, live, truth);
      const csv = await writePlatesCsv([PLATE_B], suite.work);
      const flags = plateArgs({ csv, live, cold });
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const a = await runCli(
        ['archive', ...flags, '--tmpdir', tmp, '--gzip-engine', 'zlib'],
        serverEnv(suite.server),
      );
      assert.equal(a.code, 0, a.stdout + a.stderr);
      const T = `${PROJECT}_${BATCH}_${PLATE_B.plateId}`;
      const plates = `imaging_analysis/${PROJECT}/plates/`;
      const dir = await mkdtemp(join(suite.work, 'x-'));
      for (const t of ['images_illum_analysis', 'backend']) {
        const data = await getBytes(suite.client, cold, `${plates}${T}_${t}.tar.gz`);
        assert.equal(
          (await getBytes(suite.client, cold, `${plates}${T}_${t}.md5`)).toString(),
          `${md5hex(data)}  ${T}_${t}.tar.gz\n`,
        );
        const file = join(suite.work, `${t}.tar.gz`);
        await writeFile(file, data);
        execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', dir]);
      }
      const expected = [...truth].filter(([k]) => !k.endsWith('/'));
      const tree = await readTree(dir);
      assert.equal(tree.size, expected.length);
      for (const [k, v] of expected) assert.ok(tree.get(k.slice('projects/'.length))?.equals(v), k);
      const v = await runCli(['verify', '--deep', ...flags], serverEnv(suite.server));
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /2058\s+verified/);
    });
  });
}
