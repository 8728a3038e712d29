import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  BATCH,
  PROJECT,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { startServer, testServerNames, type TestServer } from '../helpers/servers.js';
import { mountTmpfs, unmountTmpfs } from '../helpers/tmpfs.js';

const MiB = 1024 * 1024;

/** A plate of incompressible bytes: its tarball is as large as its sources. */
function noisePlate(p: FixturePlate, bytes: number): Map<string, Buffer> {
  const [images, , , backend] = sourcePrefixes(p) as [string, string, string, string];
  return new Map([
    [`${images}noise.bin`, randomBytes(bytes)],
    [`${backend}${p.plateId}.sqlite`, randomBytes(64 * 1024)],
  ]);
}

for (const name of testServerNames()) {
  describe(`tmpdir space against ${name}`, () => {
    let server: TestServer;
    let client: S3Client;
    let work: string;
    let small: string; // a 10 MiB tmpfs: the tmpdir of these tests
    before(async () => {
      server = await startServer(name);
      client = server.client();
      work = await mkdtemp(join(tmpdir(), 'imgbackup-disk-'));
      small = join(work, 'small');
      await mkdir(small);
      mountTmpfs(small, '10m');
    });
    after(async () => {
      if (small) unmountTmpfs(small);
      await server?.close();
      await rm(work, { recursive: true, force: true });
    });

    test('a plate that alone cannot fit fails clearly; the others go on', async () => {
      const live = await server.newBucket('live');
      const cold = await server.newBucket('cold');
      const big: FixturePlate = { plateId: 'BIG', plateIdFull: 'BIG' };
      const ok: FixturePlate = { plateId: 'OK', plateIdFull: 'OK' };
      await uploadAll(client, live, noisePlate(big, 12 * MiB));
      await uploadAll(client, live, noisePlate(ok, 1 * MiB));
      const csv = await writePlatesCsv([big, ok], work);
      const r = await runCli(
        ['archive', ...plateArgs({ csv: csv, live: live, cold: cold }), '--tmpdir', small],
        serverEnv(server),
      );
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(
        r.stdout,
        /BIG\s+failed.*needs up to [\d.]+ MB in --tmpdir .* which has [\d.]+ MB free/,
      );
      assert.match(r.stdout, /OK\s+archived/);
      assert.deepEqual(await readdir(small), []);
    });

    test('plates that fit one at a time but not together wait for each other instead of failing', async () => {
      const live = await server.newBucket('live');
      const cold = await server.newBucket('cold');
      const plates: FixturePlate[] = [
        { plateId: 'W1', plateIdFull: 'W1' },
        { plateId: 'W2', plateIdFull: 'W2' },
      ];
      for (const p of plates) await uploadAll(client, live, noisePlate(p, 5 * MiB));
      const csv = await writePlatesCsv(plates, work);
      const r = await runCli(
        [
          'archive',
          ...plateArgs({ csv: csv, live: live, cold: cold }),
          '--tmpdir',
          small,
          '--max-procs',
          '2',
          '--verbose',
        ],
        serverEnv(server),
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /W1\s+archived/);
      assert.match(r.stdout, /W2\s+archived/);
      assert.match(r.stderr, /waiting for tmpdir space/);
      assert.deepEqual(await readdir(small), []);
    });

    test('the disk filling up mid-write (ENOSPC) fails that plate cleanly; the others go on', async () => {
      const live = await server.newBucket('live');
      const cold = await server.newBucket('cold');
      const victim: FixturePlate = { plateId: 'FULL', plateIdFull: 'FULL' };
      const after: FixturePlate = { plateId: 'AFTER', plateIdFull: 'AFTER' };
      await uploadAll(client, live, noisePlate(victim, 6 * MiB));
      await uploadAll(client, live, noisePlate(after, 256 * 1024));
      const csv = await writePlatesCsv([victim, after], work);
      // Something else fills the disk once the plate has started (its lock file appears).
      const filler = join(small, 'someone-elses-file');
      let filled = false;
      const fill = (async () => {
        for (let i = 0; i < 2000 && !filled; i++) {
          if ((await readdir(small)).some((f) => f.endsWith('.lock'))) {
            await writeFile(filler, Buffer.alloc(7 * MiB)).catch(() => {});
            filled = true;
          }
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      const r = await runCli(
        [
          'archive',
          ...plateArgs({ csv: csv, live: live, cold: cold }),
          '--tmpdir',
          small,
          '--max-procs',
          '1',
        ],
        serverEnv(server),
      );
      filled = true;
      await fill;
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /FULL\s+failed.*no space left on the --tmpdir device/);
      assert.match(r.stdout, /AFTER\s+archived/);
      assert.deepEqual(await readdir(small), ['someone-elses-file'], 'nothing of ours left behind');
      await rm(filler);
      const key = `imaging_analysis/${PROJECT}/plates/${PROJECT}_${BATCH}_FULL_images_illum_analysis.tar.gz`;
      const head = await client
        .send(new HeadObjectCommand({ Bucket: cold, Key: key }))
        .catch(() => undefined);
      assert.equal(head, undefined, 'no tarball of the failed plate');
    });
  });
}
