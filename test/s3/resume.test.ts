import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import {
  PLATE_A,
  PLATE_B,
  plateObjects,
  PROJECT,
  uploadAll,
  writePlatesCsv,
} from '../helpers/fixtures.js';
import { isLeaseKey } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

/** Every object of a bucket as key → md5 of its bytes. */
async function contents(client: S3Client, bucket: string) {
  const out: Record<string, string> = {};
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }),
    );
    for (const o of (page.Contents ?? []).filter((c) => !isLeaseKey(c.Key))) {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
      const bytes = Buffer.from(await r.Body!.transformToByteArray());
      out[o.Key!] = createHash('md5').update(bytes).digest('hex');
    }
    token = page.NextContinuationToken;
  } while (token);
  return out;
}

for (const name of testServerNames()) {
  describe(`resume after SIGKILL against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-resume-');

    test('archive killed mid-upload, then re-run: buckets end exactly as after an uninterrupted run', async () => {
      const plates = [PLATE_A, PLATE_B];
      const fixture = () => {
        const all = new Map<string, Buffer>();
        for (const p of plates)
          for (const [k, v] of plateObjects(p, { manyFiles: 50, bigFile: 20 * 1024 * 1024 }))
            all.set(k, v);
        return all;
      };
      const objects = fixture(); // one set of bytes for both runs
      const run = async (
        live: string,
        cold: string,
        tmp: string,
        env: NodeJS.ProcessEnv,
        onSpawn?: (pid: number) => void,
      ) => {
        const csv = await writePlatesCsv(plates, suite.work);
        return runCli(
          [
            'archive',
            ...plateArgs({ csv: csv, live: live, cold: cold }),
            '--tmpdir',
            tmp,
            '--max-procs',
            '2',
          ],
          env,
          onSpawn ? { onSpawn } : {},
        );
      };

      // Reference: an uninterrupted run. Then its outputs are removed and the same sources
      // (same bytes, same mtimes, so the same tarball bytes) are archived again, killed and resumed.
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      await uploadAll(suite.client, live, objects);
      const ref = await run(
        live,
        cold,
        await mkdtemp(join(suite.work, 'tmp-')),
        serverEnv(suite.server),
      );
      assert.equal(ref.code, 0, ref.stdout + ref.stderr);
      const expected = [await contents(suite.client, live), await contents(suite.client, cold)];
      for (const [bucket, prefix] of [
        [cold, ''],
        [live, `projects/${PROJECT}/workspace/backup/`],
      ] as const) {
        for (const key of Object.keys(await contents(suite.client, bucket))) {
          if (key.startsWith(prefix))
            await suite.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
        }
      }

      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      let pid = 0;
      let killed = false;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        onRequest: (req) => {
          if (!killed && pid && req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '')) {
            killed = true;
            process.kill(pid, 'SIGKILL');
          }
        },
      });
      try {
        const first = await run(
          live,
          cold,
          tmp,
          { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint },
          (p) => (pid = p),
        );
        assert.equal(first.signal, 'SIGKILL', 'the first run was killed mid-upload');
      } finally {
        await proxy.close();
      }
      assert.ok(killed);
      const second = await run(live, cold, tmp, serverEnv(suite.server));
      assert.equal(second.code, 0, second.stdout + second.stderr);
      assert.deepEqual(await readdir(tmp), [], 'tmpdir empty (no tarball, no lock)');

      assert.deepEqual(
        [await contents(suite.client, live), await contents(suite.client, cold)],
        expected,
      );
      // The killed run's multipart upload was aborted, not left to be billed. (s3rver does not
      // implement ListMultipartUploads; radosgw does, as S3.)
      if (name === 'rgw') {
        const open = await suite.client.send(new ListMultipartUploadsCommand({ Bucket: cold }));
        assert.deepEqual(open.Uploads ?? [], [], 'no multipart upload left in the cold bucket');
      }
    });
  });
}
