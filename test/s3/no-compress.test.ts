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
  type GroundTruth,
} from '../helpers/fixtures.js';
import { BUILT, NOT_BUILT } from '../helpers/built.js';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const T = `${PROJECT}_${BATCH}_${PLATE_B.plateId}`;
const PLATES = `imaging_analysis/${PROJECT}/plates/`;

for (const name of testServerNames()) {
  describe(`archive --no-compress, other gzip engines and levels against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-plain-');

    /** Uploads plate B's sources and archives them with `extra` flags; the run must succeed. */
    const archiveB = async (extra: string[]) => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const truth = plateObjects(PLATE_B);
      await uploadAll(suite.client, live, truth);
      const csv = await writePlatesCsv([PLATE_B], suite.work);
      const flags = plateArgs({ csv, live, cold });
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const a = await runCli(
        ['archive', ...flags, '--tmpdir', tmp, ...extra],
        serverEnv(suite.server),
      );
      assert.equal(a.code, 0, a.stdout + a.stderr);
      return { live, cold, truth, flags, tmp };
    };

    /** Each tarball (`ext`) matches its .md5, and tar extracts exactly the uploaded sources. */
    const assertTarballsRebuild = async (
      cold: string,
      truth: GroundTruth,
      ext: '.tar' | '.tar.gz',
    ) => {
      const dir = await mkdtemp(join(suite.work, 'x-'));
      for (const t of ['images_illum_analysis', 'backend']) {
        const data = await getBytes(suite.client, cold, `${PLATES}${T}_${t}${ext}`);
        assert.equal(
          (await getBytes(suite.client, cold, `${PLATES}${T}_${t}.md5`)).toString(),
          `${md5hex(data)}  ${T}_${t}${ext}\n`,
        );
        const file = join(suite.work, `${t}${ext}`);
        await writeFile(file, data);
        execFileSync('tar', [
          ext === '.tar' ? 'xf' : 'xzf',
          file,
          '--strip-components=1',
          '-C',
          dir,
        ]);
      }
      const expected = [...truth].filter(([k]) => !k.endsWith('/'));
      const tree = await readTree(dir);
      assert.equal(tree.size, expected.length);
      for (const [k, v] of expected) assert.ok(tree.get(k.slice('projects/'.length))?.equals(v), k);
    };

    const verifyDeep = async (flags: string[]) => {
      const v = await runCli(['verify', '--deep', ...flags], serverEnv(suite.server));
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /2058\s+verified/);
    };

    test('plain .tar tarballs that tar xf rebuilds; verify, a re-run and delete find them unasked', async () => {
      const { live, cold, truth, flags, tmp } = await archiveB(['--no-compress']);
      assert.deepEqual(await keysUnder(suite.client, cold, PLATES), [
        `${PLATES}${T}_backend.etag`,
        `${PLATES}${T}_backend.md5`,
        `${PLATES}${T}_backend.tar`,
        `${PLATES}${T}_file_listing_untrimmed_s3.txt`,
        `${PLATES}${T}_images_illum_analysis.etag`,
        `${PLATES}${T}_images_illum_analysis.md5`,
        `${PLATES}${T}_images_illum_analysis.tar`,
      ]);
      await assertTarballsRebuild(cold, truth, '.tar');
      await verifyDeep(flags);
      const again = await runCli(['archive', ...flags, '--tmpdir', tmp], serverEnv(suite.server));
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /2058\s+skipped.*already archived/);
      assert.deepEqual(await readdir(tmp), []);
      const d = await runCli(['delete', '--yes', ...flags], serverEnv(suite.server));
      assert.equal(d.code, 0, d.stdout + d.stderr);
      for (const pre of sourcePrefixes(PLATE_B))
        assert.deepEqual(await keysUnder(suite.client, live, pre), []);
    });

    for (const engine of ['zlib', 'libdeflate']) {
      if (engine === 'libdeflate' && !BUILT.libdeflate) {
        test('--gzip-engine libdeflate where the addon is not built: exit 2, what to install, nothing written', async () => {
          const live = await suite.server.newBucket('live');
          const cold = await suite.server.newBucket('cold');
          await uploadAll(suite.client, live, plateObjects(PLATE_B));
          const csv = await writePlatesCsv([PLATE_B], suite.work);
          const tmp = await mkdtemp(join(suite.work, 'tmp-'));
          const r = await runCli(
            [
              'archive',
              ...plateArgs({ csv, live, cold }),
              '--tmpdir',
              tmp,
              '--gzip-engine',
              engine,
            ],
            serverEnv(suite.server),
          );
          assert.equal(r.code, 2, r.stdout + r.stderr);
          assert.match(r.stderr, NOT_BUILT.libdeflate);
          assert.deepEqual(await keysUnder(suite.client, cold, ''), []);
        });
        continue;
      }
      test(`--gzip-engine ${engine}: tar xzf rebuilds the sources; verify --deep passes`, async () => {
        const { cold, truth, flags } = await archiveB(['--gzip-engine', engine]);
        await assertTarballsRebuild(cold, truth, '.tar.gz');
        await verifyDeep(flags);
      });
    }

    test('--compression-level 6 (libdeflate, or zlib where it is not built): tar xzf rebuilds the sources; verify --deep passes', async () => {
      const { cold, truth, flags } = await archiveB(['--compression-level', '6']);
      await assertTarballsRebuild(cold, truth, '.tar.gz');
      await verifyDeep(flags);
    });
  });
}
