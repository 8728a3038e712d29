import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import {
  BATCH,
  BIG_PLATE,
  bigPlateObjects,
  PLATE_A,
  PLATE_B,
  plateObjects,
  PROJECT,
  readTree,
  SIBLINGS,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const FAULT_RATE = 0.05;

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;

for (const name of testServerNames()) {
  describe(`through a fault-injecting proxy (${FAULT_RATE * 100} % faults) against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-faults-');
    let proxy: FaultProxy;

    before(async () => {
      proxy = await startFaultProxy(suite.server.endpoint, { rate: FAULT_RATE, seed: 20261126 });
    });
    after(async () => {
      await proxy?.close();
    });

    test('archive, verify --deep and delete of three plates finish with byte-identical results', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const plates: FixturePlate[] = [
        PLATE_A,
        PLATE_B,
        { plateId: 'F3', plateIdFull: 'F3 Measurement 1' },
      ];
      const truth = new Map<FixturePlate, GroundTruth>();
      for (const p of [...plates, ...SIBLINGS]) {
        truth.set(p, plateObjects(p, { manyFiles: 300, bigFile: 12 * 1024 * 1024 }));
        await uploadAll(suite.client, live, truth.get(p)!);
      }
      const csv = await writePlatesCsv(plates, suite.work);
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const env = { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint };
      const common = [...plateArgs({ csv: csv, live: live, cold: cold }), '--max-attempts', '8'];

      const a = await runCli(['archive', ...common, '--tmpdir', tmp, '--max-procs', '3'], env);
      assert.equal(a.code, 0, a.stdout + a.stderr);
      assert.deepEqual(await readdir(tmp), []);
      const v = await runCli(['verify', '--deep', ...common], env);
      assert.equal(v.code, 0, v.stdout + v.stderr);

      // Byte-identical: GNU tar rebuilds every uploaded file of every plate, nothing else.
      for (const p of plates) {
        const dir = await mkdtemp(join(suite.work, `x-${p.plateId}-`));
        for (const t of ['images_illum_analysis', 'backend']) {
          const file = join(suite.work, `${p.plateId}-${t}.tar.gz`);
          await writeFile(
            file,
            await getBytes(
              suite.client,
              cold,
              `imaging_analysis/${PROJECT}/plates/${tag(p)}_${t}.tar.gz`,
            ),
          );
          execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', dir]);
        }
        const tree = await readTree(dir);
        const expected = [...truth.get(p)!].filter(([k]) => !k.endsWith('/'));
        assert.equal(tree.size, expected.length, `${p.plateId}: file count`);
        for (const [k, bytes] of expected)
          assert.ok(tree.get(k.slice('projects/'.length))?.equals(bytes), `${k} differs`);
      }

      const d = await runCli(['delete', '--yes', ...common], env);
      assert.equal(d.code, 0, d.stdout + d.stderr);
      for (const p of plates) {
        for (const pre of sourcePrefixes(p)) {
          const markers = [...truth.get(p)!.keys()].filter(
            (k) => k.startsWith(pre) && k.endsWith('/'),
          );
          assert.deepEqual(
            await keysUnder(suite.client, live, pre),
            markers.sort(),
            `${pre} emptied but for folder markers`,
          );
        }
      }
      for (const s of SIBLINGS) {
        for (const pre of sourcePrefixes(s)) {
          assert.deepEqual(
            await keysUnder(suite.client, live, pre),
            [...truth.get(s)!.keys()].filter((k) => k.startsWith(pre)).sort(),
          );
        }
      }
      const total = Object.values(proxy.injected).reduce((n, x) => n + x, 0);
      assert.ok(
        total >= 10,
        `faults were injected: ${JSON.stringify(proxy.injected)} of ${proxy.requests}`,
      );
      for (const kind of ['slowdown', 'internal', 'reset', 'cut'] as const) {
        assert.ok(
          proxy.injected[kind] > 0,
          `${kind} injected at least once: ${JSON.stringify(proxy.injected)}`,
        );
      }
    });

    test('a source object in an archive tier fails its plate, naming the key to restore', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const p: FixturePlate = { plateId: 'ARCH1', plateIdFull: 'ARCH1' };
      const objects = plateObjects(p);
      await uploadAll(suite.client, live, objects);
      await uploadAll(suite.client, live, plateObjects(PLATE_B));
      const archivedKey = [...objects.keys()].find((k) => k.endsWith('.sqlite'))!;
      const glacier = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        answer: (req) =>
          req.method === 'GET' && decodeURIComponent(req.url ?? '').includes(archivedKey)
            ? {
                status: 403,
                code: 'InvalidObjectState',
                message: 'The operation is not valid for the object storage class',
              }
            : undefined,
      });
      try {
        const csv = await writePlatesCsv([p, PLATE_B], suite.work);
        const tmp = await mkdtemp(join(suite.work, 'tmp-'));
        const env = { ...serverEnv(suite.server), AWS_ENDPOINT_URL: glacier.endpoint };
        const r = await runCli(
          ['archive', ...plateArgs({ csv: csv, live: live, cold: cold }), '--tmpdir', tmp],
          env,
        );
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(r.stdout, /ARCH1\s+failed.*need a restore first/);
        assert.ok(r.stdout.includes(archivedKey), 'names the key to restore');
        assert.match(r.stdout, /2058\s+archived/);
        assert.deepEqual(await readdir(tmp), []);
        assert.deepEqual(
          await keysUnder(suite.client, cold, `imaging_analysis/${PROJECT}/plates/${tag(p)}`),
          [],
        );
      } finally {
        await glacier.close();
      }
    });

    for (const mode of ['file', 'stream'] as const) {
      test(`a tarball part refused every time fails its plate; nothing is left of it (${mode})`, async () => {
        const live = await suite.server.newBucket('live');
        const cold = await suite.server.newBucket('cold');
        await uploadAll(suite.client, live, bigPlateObjects());
        await uploadAll(suite.client, live, plateObjects(PLATE_B));
        let refused = 0;
        const refusing = await startFaultProxy(suite.server.endpoint, {
          rate: 0,
          answer: (req) => {
            const url = decodeURIComponent(req.url ?? '');
            if (req.method !== 'PUT' || !/[?&]partNumber=/.test(url)) return undefined;
            if (!url.includes(tag(BIG_PLATE))) return undefined;
            refused += 1;
            return {
              status: 500,
              code: 'InternalError',
              message: 'We encountered an internal error',
            };
          },
        });
        try {
          const csv = await writePlatesCsv([BIG_PLATE, PLATE_B], suite.work);
          const tmp = await mkdtemp(join(suite.work, 'tmp-'));
          const r = await runCli(
            [
              'archive',
              ...plateArgs({ csv, live, cold }),
              '--tmpdir',
              tmp,
              ...(mode === 'stream' ? ['--stream'] : []),
            ],
            { ...serverEnv(suite.server), AWS_ENDPOINT_URL: refusing.endpoint },
          );
          assert.equal(r.code, 1, r.stdout + r.stderr);
          assert.ok(refused > 0, 'parts were refused');
          assert.match(r.stdout, /big-plate\s+failed/);
          assert.match(r.stdout, /2058\s+archived/);
          assert.deepEqual(await readdir(tmp), [], 'no tarball or lock left in the tmpdir');
          assert.deepEqual(
            await keysUnder(
              suite.client,
              cold,
              `imaging_analysis/${PROJECT}/plates/${tag(BIG_PLATE)}`,
            ),
            [],
          );
          assert.deepEqual(
            await keysUnder(
              suite.client,
              live,
              `projects/${PROJECT}/workspace/backup/${tag(BIG_PLATE)}`,
            ),
            [],
            'no partial outputs (nor the in-progress marker) in the backup folder',
          );
          // s3rver does not implement ListMultipartUploads; radosgw does, as S3.
          if (name === 'rgw') {
            const open = await suite.client.send(new ListMultipartUploadsCommand({ Bucket: cold }));
            assert.deepEqual(open.Uploads ?? [], [], 'the multipart upload was aborted');
          }
        } finally {
          await refusing.close();
        }
      });
    }
  });
}
