import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { getBytes } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  BATCH,
  expectedListing,
  md5hex,
  PLATE_A,
  PLATE_B,
  plateObjects,
  PROJECT,
  readTree,
  uploadAll,
  writePlatesCsv,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

for (const name of testServerNames()) {
  describe(`archive --stream against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-stream-');

    test('uploads while writing: nothing in the tmpdir, same archive, verify --deep passes', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const truth: GroundTruth = new Map([
        // 20 MiB of noise: a multipart tarball of three 8 MiB parts
        ...plateObjects(PLATE_A, { manyFiles: 100, bigFile: 20 * 1024 * 1024 }),
        ...plateObjects(PLATE_B),
      ]);
      await uploadAll(suite.client, live, truth);
      const csv = await writePlatesCsv([PLATE_A, PLATE_B], suite.work);
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const seen = new Set<string>();
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          for (const f of await readdir(tmp)) seen.add(f);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const common = [...plateArgs({ csv: csv, live: live, cold: cold })];
      const r = await runCli(
        ['archive', ...common, '--tmpdir', tmp, '--stream'],
        serverEnv(suite.server),
      );
      watching = false;
      await watcher;
      assert.equal(r.code, 0, r.stdout + r.stderr);
      for (const f of seen) assert.match(f, /\.lock$/, `only lock files in the tmpdir, saw ${f}`);
      assert.deepEqual(await readdir(tmp), []);

      const T = `${PROJECT}_${BATCH}_${PLATE_A.plateId}`;
      const dir = await mkdtemp(join(suite.work, 'x-'));
      for (const t of ['images_illum_analysis', 'backend']) {
        const data = await getBytes(
          suite.client,
          cold,
          `imaging_analysis/${PROJECT}/plates/${T}_${t}.tar.gz`,
        );
        const md5 = (
          await getBytes(suite.client, cold, `imaging_analysis/${PROJECT}/plates/${T}_${t}.md5`)
        ).toString();
        assert.equal(md5, `${md5hex(data)}  ${T}_${t}.tar.gz\n`);
        const file = join(suite.work, `${t}.tar.gz`);
        await writeFile(file, data);
        execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', dir]);
      }
      const plateA = new Map(
        [...truth].filter(([k]) => k.includes(PLATE_A.plateId) && !k.endsWith('/')),
      );
      const tree = await readTree(dir);
      assert.deepEqual(
        [...tree.keys()].sort(),
        [...plateA.keys()].map((k) => k.slice('projects/'.length)).sort(),
      );
      for (const [k, v] of plateA)
        assert.ok(tree.get(k.slice('projects/'.length))!.equals(v), `${k} differs`);
      const listing = (
        await getBytes(
          suite.client,
          live,
          `projects/${PROJECT}/workspace/backup/${T}_file_listing_tar.txt`,
        )
      ).toString();
      assert.equal(listing, expectedListing(plateA));

      const v = await runCli(['verify', '--deep', ...common], serverEnv(suite.server));
      assert.equal(v.code, 0, v.stdout + v.stderr);
    });
  });
}
