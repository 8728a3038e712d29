// A live bucket with versioning on: a delete without version ids would only add delete markers
// and free nothing. Archive must read exactly the version it listed, and delete must remove
// exactly the archived versions, keeping every version written later; what a failed restore
// takes back must go with the versions it made. radosgw keeps versions; s3rver does not, so this
// file runs on radosgw, and on moto for the one case radosgw cannot show (below).
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  DeleteObjectCommand,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getBytes } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import {
  BATCH,
  PLATE_B,
  plateObjects,
  PROJECT,
  SIBLINGS,
  sourcePrefixes,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { archivedCase, coldDir } from '../helpers/restore.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer, type ServerSuite } from '../helpers/suite.js';

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;

/** Every version and delete marker under the prefix: `key versionId` (markers end in " marker"). */
async function versionsUnder(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const r = await client.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        VersionIdMarker: versionMarker,
      }),
    );
    for (const v of r.Versions ?? []) out.push(`${v.Key} ${v.VersionId}`);
    for (const m of r.DeleteMarkers ?? []) out.push(`${m.Key} ${m.VersionId} marker`);
    if (!r.IsTruncated) return out.sort();
    keyMarker = r.NextKeyMarker;
    versionMarker = r.NextVersionIdMarker;
  }
}

const isDeleteObjects = (method?: string, url?: string) =>
  method === 'POST' && /[?&]delete(=|&|$)/.test(url ?? '');

for (const name of testServerNames().filter((n) => n === 'rgw')) {
  describe(`a versioned live bucket, against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-versions-');
    const proxies: FaultProxy[] = [];
    after(async () => {
      for (const p of proxies) await p.close();
    });

    test('archive reads the listed version; delete frees exactly the archived versions and keeps later ones', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      await suite.client.send(
        new PutBucketVersioningCommand({
          Bucket: live,
          VersioningConfiguration: { Status: 'Enabled' },
        }),
      );
      const put = async (key: string, body: Buffer) =>
        (await suite.client.send(new PutObjectCommand({ Bucket: live, Key: key, Body: body })))
          .VersionId!;
      // What the test uploaded, with the version id each PUT answered: the ground truth.
      const uploaded = new Map<string, { body: Buffer; versionId: string }>();
      for (const p of [PLATE_B, ...SIBLINGS]) {
        for (const [key, body] of plateObjects(p))
          uploaded.set(key, { body, versionId: await put(key, body) });
      }
      const [images, illum, analysis] = sourcePrefixes(PLATE_B) as [string, string, string];
      const files = [...uploaded.keys()].filter(
        (k) => !k.endsWith('/') && sourcePrefixes(PLATE_B).some((pre) => k.startsWith(pre)),
      );
      const later = new Map<string, { body: Buffer; versionId: string }>();
      const overwrite = async (key: string, fill: number) => {
        const body = Buffer.alloc(uploaded.get(key)!.body.length, fill);
        later.set(key, { body, versionId: await put(key, body) });
      };

      // During the archive: a new version of one image lands right before its GET is forwarded.
      const raced = `${images}r01c01f01p01-ch1sk1fk1fl1.tiff`;
      const archiveProxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        onRequest: async (req) => {
          const path = decodeURIComponent((req.url ?? '').split('?')[0]!);
          if (req.method === 'GET' && path === `/${live}/${raced}` && !later.has(raced))
            await overwrite(raced, 1);
        },
      });
      proxies.push(archiveProxy);
      const dir = await mkdtemp(join(suite.work, 'case-'));
      const csv = await writePlatesCsv([PLATE_B], dir);
      const args = plateArgs({ csv, live, cold });
      const env = (endpoint: string) => ({
        ...serverEnv(suite.server),
        AWS_ENDPOINT_URL: endpoint,
      });
      const a = await runCli(['archive', ...args, '--tmpdir', dir], env(archiveProxy.endpoint));
      assert.equal(a.code, 0, a.stdout + a.stderr);
      assert.ok(later.has(raced), 'the proxy put a new version during the archive');

      // The ETag listing names each archived version: the one the test's PUT answered.
      const etags = (
        await getBytes(
          suite.client,
          live,
          `projects/${PROJECT}/workspace/backup/${tag(PLATE_B)}_file_etags_s3.txt`,
        )
      ).toString('utf8');
      const listed = new Map(
        etags
          .trim()
          .split('\n')
          .map((l) => l.split('\t'))
          .map((f) => [`projects/${f[0]}`, f[3]]),
      );
      assert.deepEqual(
        [...listed].sort(),
        files.map((k) => [k, uploaded.get(k)!.versionId]).sort(),
      );

      // After the archive: another file gets a new version.
      const overwritten = `${illum}${PLATE_B.plateId}_IllumDNA.npy`;
      await overwrite(overwritten, 2);
      const v = await runCli(['verify', '--deep', ...args], env(suite.server.endpoint));
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout + v.stderr, /overwritten since the archive/);
      // The collected script names each archived version, the overwritten one's too.
      const out = join(dir, 'delete_s3.sh');
      const c = await runCli(
        ['collect-deletes', ...args, '--out', out],
        env(suite.server.endpoint),
      );
      assert.equal(c.code, 0, c.stdout + c.stderr);
      const named = (await readFile(out, 'utf8'))
        .trim()
        .split('\n')
        .flatMap((l) => {
          const json = l.slice(l.indexOf("'{") + 1, -1);
          return (JSON.parse(json) as { Objects: { Key: string; VersionId: string }[] }).Objects;
        })
        .map((o) => [o.Key, o.VersionId]);
      assert.deepEqual(named.sort(), files.map((k) => [k, uploaded.get(k)!.versionId]).sort());

      // During the delete: a key is overwritten right before the DeleteObjects naming it is
      // forwarded. The delete names the archived version, so the new one stays.
      const lastMinute = `${analysis}A01-1/Cells.csv`;
      const sent: string[] = [];
      const deleteProxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        inspectBody: {
          match: (req) => isDeleteObjects(req.method, req.url),
          hook: async (_req, body) => {
            const text = body.toString('utf8');
            if (files.some((k) => text.includes(k))) sent.push(text);
            if (text.includes(lastMinute) && !later.has(lastMinute)) await overwrite(lastMinute, 3);
          },
        },
      });
      proxies.push(deleteProxy);
      const d = await runCli(['delete', '--yes', ...args], env(deleteProxy.endpoint));
      assert.equal(d.code, 0, d.stdout + d.stderr);
      assert.ok(later.has(lastMinute), 'the proxy put a new version during the delete');
      assert.match(d.stdout, new RegExp(`${PLATE_B.plateId}\\s+deleted\\s+${files.length}\\b`));
      // S3 evaluates a delete's ETag against the current version only: an overwritten key's
      // archived version, named by its id with its ETag, would be refused on every run. A
      // version's bytes never change, so each names its version and no ETag.
      const objects = sent.flatMap((t) =>
        [...t.matchAll(/<Object>(.*?)<\/Object>/gs)].map((m) => m[1]!),
      );
      assert.equal(objects.length, files.length);
      for (const o of objects) {
        assert.match(o, /<VersionId>[^<]+<\/VersionId>/);
        assert.doesNotMatch(o, /<ETag>/);
      }

      // Every archived version is gone (not hidden by a marker); only the later ones are left.
      const left = (
        await Promise.all(
          sourcePrefixes(PLATE_B).map((pre) => versionsUnder(suite.client, live, pre)),
        )
      ).flat();
      assert.deepEqual(left.sort(), [...later].map(([k, l]) => `${k} ${l.versionId}`).sort());
      for (const [k, l] of later) assert.deepEqual(await getBytes(suite.client, live, k), l.body);
      // Sibling plates keep every version they had.
      for (const s of SIBLINGS) {
        const theirs = [...uploaded].filter(([k]) =>
          sourcePrefixes(s).some((pre) => k.startsWith(pre)),
        );
        const now = (
          await Promise.all(sourcePrefixes(s).map((pre) => versionsUnder(suite.client, live, pre)))
        ).flat();
        assert.deepEqual(now.sort(), theirs.map(([k, u]) => `${k} ${u.versionId}`).sort());
      }
    });

    test('suspended versioning: the null version and the older real ones are deleted by their ids', async () => {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const versioning = (Status: 'Enabled' | 'Suspended') =>
        suite.client.send(
          new PutBucketVersioningCommand({
            Bucket: live,
            VersioningConfiguration: { Status },
          }),
        );
      await versioning('Enabled');
      const truth = plateObjects(PLATE_B);
      const ids = new Map<string, string>();
      for (const [key, body] of truth) {
        const r = await suite.client.send(
          new PutObjectCommand({ Bucket: live, Key: key, Body: body }),
        );
        ids.set(key, r.VersionId!);
      }
      // Written while suspended: its current version is the null version.
      await versioning('Suspended');
      const [images] = sourcePrefixes(PLATE_B) as [string];
      const nullKey = `${images}written-while-suspended.tif`;
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: nullKey, Body: 'suspended\n' }),
      );
      ids.set(nullKey, 'null');
      const dir = await mkdtemp(join(suite.work, 'case-'));
      const csv = await writePlatesCsv([PLATE_B], dir);
      const args = plateArgs({ csv, live, cold });
      const env = serverEnv(suite.server);
      const a = await runCli(['archive', ...args, '--tmpdir', dir], env);
      assert.equal(a.code, 0, a.stdout + a.stderr);
      const etags = (
        await getBytes(
          suite.client,
          live,
          `projects/${PROJECT}/workspace/backup/${tag(PLATE_B)}_file_etags_s3.txt`,
        )
      ).toString('utf8');
      assert.match(etags, /written-while-suspended\.tif\t10\t[0-9a-f]{32}\tnull\n/);
      assert.equal((await runCli(['verify', ...args], env)).code, 0);
      const d = await runCli(['delete', '--yes', ...args], env);
      assert.equal(d.code, 0, d.stdout + d.stderr);
      assert.match(d.stdout, new RegExp(`${PLATE_B.plateId}\\s+deleted\\s+${ids.size}\\b`));
      const left = (
        await Promise.all(
          sourcePrefixes(PLATE_B).map((pre) => versionsUnder(suite.client, live, pre)),
        )
      ).flat();
      assert.deepEqual(left, [], 'no version and no delete marker left');
    });

    test('restore --to-s3 into a versioned bucket: members a failed tarball md5 discards leave no version behind', () =>
      restoreDiscards(suite, proxies, { loseFirstAnswer: false }));
  });
}

// radosgw 16.2.15 stored a PUT sent again with If-None-Match: * on a versioned bucket as a new
// version (seen here), where AWS documents 412 for a key that exists; moto answers 412, so the
// lost answer runs on moto.
for (const name of testServerNames('all').filter((n) => n === 'moto')) {
  describe(`a versioned bucket to restore into, against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-versions-');
    const proxies: FaultProxy[] = [];
    after(async () => {
      for (const p of proxies) await p.close();
    });

    test('a member whose PUT answer was lost is discarded by its version too (the retry answered 412)', () =>
      restoreDiscards(suite, proxies, { loseFirstAnswer: true }));
  });
}

/**
 * restore --to-s3 of an archive whose backend `.md5` is wrong, into a versioned bucket: the
 * backend's members, uploaded before that md5 was read, are taken back leaving no version and
 * no delete marker; the images tarball's stay, one version each. `loseFirstAnswer`: the first
 * backend member's PUT lands but its answer is lost, so the SDK sends it again and the 412 that
 * gets is our own write, whose version the discard must find too.
 */
async function restoreDiscards(
  suite: ServerSuite,
  proxies: FaultProxy[],
  opts: { loseFirstAnswer: boolean },
): Promise<void> {
  const c = await archivedCase(suite, [PLATE_B]);
  const to = await suite.server.newBucket('to');
  await suite.client.send(
    new PutBucketVersioningCommand({ Bucket: to, VersioningConfiguration: { Status: 'Enabled' } }),
  );
  // Without T_file_etags_s3.txt each member is proven by its tarball's md5 alone.
  await suite.client.send(
    new DeleteObjectCommand({
      Bucket: c.live,
      Key: `projects/${PROJECT}/workspace/backup/${tag(PLATE_B)}_file_etags_s3.txt`,
    }),
  );
  await suite.client.send(
    new PutObjectCommand({
      Bucket: c.cold,
      Key: `${coldDir}${tag(PLATE_B)}_backend.md5`,
      Body: `${'0'.repeat(32)}  ${tag(PLATE_B)}_backend.tar.gz\n`,
    }),
  );
  const backend = sourcePrefixes(PLATE_B)[3]!;
  let first: IncomingMessage | undefined;
  const proxy = await startFaultProxy(suite.server.endpoint, {
    rate: 0,
    dropAnswer: (req) => {
      if (!opts.loseFirstAnswer) return false;
      const put =
        req.method === 'PUT' &&
        decodeURIComponent(req.url ?? '').startsWith(`/${to}/${backend}`) &&
        !/[?&]partNumber=/.test(req.url ?? '');
      if (put) first ??= req;
      return put && first === req;
    },
  });
  proxies.push(proxy);
  const r = await c.run('restore', [
    '--to-s3',
    '--to-bucket',
    to,
    '--endpoint-url',
    proxy.endpoint,
  ]);
  assert.equal(r.code, 1, r.stderr + r.stdout);
  assert.equal(proxy.dropped, opts.loseFirstAnswer ? 1 : 0);
  assert.match(r.stdout + r.stderr, /says 0{32}; members checked only by it were not kept/);
  assert.deepEqual(
    await versionsUnder(suite.client, to, backend),
    [],
    'no version and no delete marker left',
  );
  const images = sourcePrefixes(PLATE_B)[0]!;
  const files = [...c.truth.get(PLATE_B.plateId)!.keys()].filter(
    (k) => k.startsWith(images) && !k.endsWith('/'),
  );
  const kept = await versionsUnder(suite.client, to, images);
  assert.deepEqual(kept.map((v) => v.split(' ')[0]).sort(), files.sort());
  assert.ok(kept.every((v) => !v.endsWith(' marker')));
}
