import assert from 'node:assert/strict';
import { mkdtemp, readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import {
  BATCH,
  PLATE_B,
  plateObjects,
  PROJECT,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

/** stderr without Node's own warnings: what the tool itself said. */
const said = (stderr: string) =>
  stderr.split('\n').filter((l) => l.trim() !== '' && !/^\(node:\d+\)|--trace-warnings/.test(l));

/** A port on 127.0.0.1 that refuses connections: bound once, then closed. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

for (const name of testServerNames()) {
  describe(`bad input against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-bad-');
    let live: string;
    let cold: string;
    let csv: string;
    before(async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      await uploadAll(suite.client, live, plateObjects(PLATE_B));
      csv = await writePlatesCsv([PLATE_B], suite.work);
    });

    const archive = (env: NodeJS.ProcessEnv, extra: string[] = []) =>
      runCli(
        [
          'archive',
          ...plateArgs({ csv: csv, live: live, cold: cold }),
          '--tmpdir',
          suite.work,
          ...extra,
        ],
        env,
      );

    async function nothingWritten() {
      const key = `imaging_analysis/${PROJECT}/plates/${PROJECT}_${BATCH}_${PLATE_B.plateId}_backend.tar.gz`;
      const head = await suite.client
        .send(new HeadObjectCommand({ Bucket: cold, Key: key }))
        .catch(() => undefined);
      assert.equal(head, undefined, 'no tarball written');
      assert.deepEqual(
        (await readdir(suite.work)).filter((f) => f !== 'plates.csv'),
        [],
      );
    }

    test('no credentials at all: one line naming what to set, exit 2', async () => {
      const env: NodeJS.ProcessEnv = {
        ...serverEnv(suite.server),
        AWS_EC2_METADATA_DISABLED: 'true',
      };
      delete env.AWS_ACCESS_KEY_ID;
      delete env.AWS_SECRET_ACCESS_KEY;
      const r = await archive(env);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(said(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, /no AWS credentials found; set AWS_ACCESS_KEY_ID/);
      await nothingWritten();
    });

    test('an endpoint that refuses connections: one line after bounded retries, exit 2', async () => {
      const r = await archive(
        { ...serverEnv(suite.server), AWS_ENDPOINT_URL: `http://127.0.0.1:${await closedPort()}` },
        ['--max-attempts', '2'],
      );
      assert.equal(r.code, 2, r.stderr);
      assert.equal(said(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, /cannot reach the S3 endpoint \(ECONNREFUSED\); check --endpoint-url/);
      await nothingWritten();
    });

    test('a bucket in another region (S3 answers 301): one line saying --region, exit 2', async () => {
      // What AWS answers a HeadBucket sent to the wrong region; neither test server has regions.
      const aws = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        answer: (req) =>
          req.method === 'HEAD' && req.url?.replace(/\?.*/, '').replace(/\/$/, '') === `/${live}`
            ? { status: 301, code: 'PermanentRedirect', message: 'wrong region' }
            : undefined,
      });
      try {
        const r = await archive({ ...serverEnv(suite.server), AWS_ENDPOINT_URL: aws.endpoint });
        assert.equal(r.code, 2, r.stderr);
        assert.equal(said(r.stderr).length, 1, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(`s3://${live}: bucket is in another region; pass --region`),
        );
        await nothingWritten();
      } finally {
        await aws.close();
      }
    });

    // s3rver checks no signature at all; these need a server that authenticates requests.
    if (name === 'rgw') {
      test('access denied (credentials of a user who owns neither bucket): one line, exit 2', async () => {
        const ak = process.env.IMGBACKUP_TEST_RGW_OTHER_ACCESS_KEY;
        const sk = process.env.IMGBACKUP_TEST_RGW_OTHER_SECRET_KEY;
        assert.ok(ak && sk, 'scripts/test.sh sets IMGBACKUP_TEST_RGW_OTHER_ACCESS_KEY/_SECRET_KEY');
        const r = await archive({
          ...serverEnv(suite.server),
          AWS_ACCESS_KEY_ID: ak,
          AWS_SECRET_ACCESS_KEY: sk,
        });
        assert.equal(r.code, 2, r.stderr);
        assert.equal(said(r.stderr).length, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`s3://${live}: access denied`));
        await nothingWritten();
      });

      test('refused credentials: one line, exit 2, nothing written', async () => {
        const r = await archive({
          ...serverEnv(suite.server),
          AWS_SECRET_ACCESS_KEY: 'not-the-secret',
        });
        assert.equal(r.code, 2, r.stderr);
        assert.equal(said(r.stderr).length, 1, r.stderr);
        assert.match(r.stderr, /credentials were refused|access denied/);
        await nothingWritten();
      });

      test('--verbose adds the stack trace that a plain run leaves out', async () => {
        const r = await archive(
          { ...serverEnv(suite.server), AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
          ['--verbose'],
        );
        assert.equal(r.code, 2);
        assert.match(r.stderr, /\n\s+at /, 'a stack trace');
      });
    }

    test('a source overwritten between listing and reading fails the plate, never a wrong archive', async () => {
      const p: FixturePlate = { plateId: 'CHG', plateIdFull: 'CHG' };
      const objects = plateObjects(p);
      await uploadAll(suite.client, live, objects);
      const victim = `${sourcePrefixes(p)[0]}Index.idx.xml`;
      let changed = false;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        onRequest: async (req) => {
          if (
            !changed &&
            req.method === 'GET' &&
            decodeURIComponent(req.url ?? '').includes(victim)
          ) {
            changed = true;
            // Same size, other bytes: only the ETag can tell.
            const size = objects.get(victim)!.length;
            await suite.client.send(
              new PutObjectCommand({ Bucket: live, Key: victim, Body: Buffer.alloc(size, 0x21) }),
            );
          }
        },
      });
      try {
        const chgCsv = await writePlatesCsv([p], await mkdtemp(join(suite.work, 'chg-')));
        const tmp = await mkdtemp(join(suite.work, 'chg-tmp-'));
        const r = await runCli(
          ['archive', ...plateArgs({ csv: chgCsv, live: live, cold: cold }), '--tmpdir', tmp],
          { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint },
        );
        assert.ok(changed, 'the object was overwritten mid-run');
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(r.stdout, /CHG\s+failed/);
        assert.ok(r.stdout.includes(victim), 'names the key');
        assert.match(r.stdout, /changed since it was listed|do not match its ETag/);
        assert.deepEqual(await readdir(tmp), []);
        const key = `imaging_analysis/${PROJECT}/plates/${PROJECT}_${BATCH}_CHG_images_illum_analysis.tar.gz`;
        const head = await suite.client
          .send(new HeadObjectCommand({ Bucket: cold, Key: key }))
          .catch(() => undefined);
        assert.equal(head, undefined, 'no tarball of the changed plate');
      } finally {
        await proxy.close();
      }
    });
  });
}
