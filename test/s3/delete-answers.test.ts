// What the store answers is never trusted further than it says: a listing page that claims more
// pages without a token, a DeleteObjects answer that forgets a key, a retried DeleteObjects whose
// first attempt had landed, a store that ignores the per-key ETag of DeleteObjects while a key
// is overwritten during the delete, and an archive removed between the plan and the delete.
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DeleteObjectCommand, DeleteObjectsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getBytes, keysUnder } from '../helpers/s3.js';
import { runCli, serverEnv, plateArgs } from '../helpers/cli.js';
import {
  startFaultProxy,
  type FaultProxy,
  type FaultProxyOptions,
} from '../helpers/fault-proxy.js';
import {
  md5hex,
  PLATE_A,
  PLATE_B,
  plateObjects,
  PROJECT,
  SIBLINGS,
  sourcePrefixes,
  uploadPlates,
  writePlatesCsv,
  type FixturePlate,
} from '../helpers/fixtures.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const isDeleteObjects = (req: IncomingMessage) =>
  req.method === 'POST' && /[?&]delete(=|&|$)/.test(req.url ?? '');

/** The keys a DeleteObjects body names (XML-unescaped). */
function namedKeys(body: Buffer): string[] {
  return [...body.toString('utf8').matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) =>
    m[1]!
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, '&'),
  );
}

for (const name of testServerNames()) {
  describe(`store answers that are not the whole story, against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-answers-');
    const proxies: FaultProxy[] = [];
    after(async () => {
      for (const p of proxies) await p.close();
    });

    async function setup(plates: FixturePlate[], objs = (p: FixturePlate) => plateObjects(p)) {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const truth = await uploadPlates(suite.client, live, plates, objs);
      const dir = await mkdtemp(join(suite.work, 'case-'));
      const csv = await writePlatesCsv(plates, dir);
      const run = (cmd: string, extra: string[] = [], endpoint = suite.server.endpoint) =>
        runCli(
          [
            cmd,
            ...plateArgs({ csv, live, cold }),
            ...(cmd === 'archive' ? ['--tmpdir', dir] : []),
            ...extra,
          ],
          { ...serverEnv(suite.server), AWS_ENDPOINT_URL: endpoint },
        );
      const proxy = async (opts: Omit<FaultProxyOptions, 'rate'>) => {
        const p = await startFaultProxy(suite.server.endpoint, { rate: 0, ...opts });
        proxies.push(p);
        return p.endpoint;
      };
      return { live, cold, truth, run, proxy };
    }

    const plateKeys = (truth: Map<string, Buffer>, p: FixturePlate) =>
      [...truth.keys()].filter(
        (k) => !k.endsWith('/') && sourcePrefixes(p).some((pre) => k.startsWith(pre)),
      );

    test('a listing page that says "truncated" without a continuation token fails the plate', async () => {
      const { live, cold, run, proxy } = await setup([PLATE_B]);
      const [images] = sourcePrefixes(PLATE_B) as [string];
      const endpoint = await proxy({
        rewrite: (req) => {
          const url = decodeURIComponent(req.url ?? '');
          if (req.method !== 'GET' || !url.includes('list-type=2') || !url.includes(images))
            return undefined;
          return (xml) =>
            xml
              .replace(/<IsTruncated>false<\/IsTruncated>/, '<IsTruncated>true</IsTruncated>')
              .replace(/<NextContinuationToken>[^<]*<\/NextContinuationToken>/, '');
        },
      });
      const a = await run('archive', [], endpoint);
      assert.equal(a.code, 1, a.stdout + a.stderr);
      assert.match(a.stdout + a.stderr, /truncated but gave no NextContinuationToken/);
      assert.deepEqual(await keysUnder(suite.client, cold, 'imaging_analysis/'), []);
      assert.deepEqual(
        await keysUnder(suite.client, live, `projects/${PROJECT}/workspace/backup/`),
        [],
      );
    });

    test('a key a DeleteObjects answer leaves out is reported as not deleted', async () => {
      const { truth, run, proxy } = await setup([PLATE_B]);
      assert.equal((await run('archive')).code, 0);
      assert.equal((await run('verify')).code, 0);
      const mine = new WeakSet<IncomingMessage>();
      let dropped: string | undefined;
      const endpoint = await proxy({
        inspectBody: {
          match: isDeleteObjects,
          hook: (req, body) => {
            if (namedKeys(body).some((k) => plateKeys(truth, PLATE_B).includes(k))) mine.add(req);
          },
        },
        rewrite: (req) =>
          mine.has(req)
            ? (xml) =>
                xml.replace(/<Deleted>.*?<Key>([^<]*)<\/Key>.*?<\/Deleted>/, (_, key: string) => {
                  dropped = key;
                  return '';
                })
            : undefined,
      });
      const d = await run('delete', ['--yes'], endpoint);
      assert.ok(dropped, 'the proxy saw the plate’s DeleteObjects');
      assert.equal(d.code, 1, d.stdout + d.stderr);
      assert.match(d.stdout, /2058\s+failed.*1 key\(s\) not deleted/);
      assert.ok(d.stdout.includes(`${dropped}: NotInAnswer`), d.stdout);
    });

    test('a key overwritten during the delete survives, whether or not the store honours ETags', async () => {
      // Over 1000 files: two DeleteObjects batches, so a write can land between them.
      const objs = (p: FixturePlate) =>
        plateObjects(p, p === PLATE_A ? { manyFiles: 1005, bigFile: 1024 } : {});
      const { live, truth, run, proxy } = await setup([PLATE_A], objs);
      assert.equal((await run('archive')).code, 0);
      assert.equal((await run('verify')).code, 0);
      // The test's own probe: does this store refuse a DeleteObjects with a wrong ETag?
      const probeKey = 'probe-of-the-test';
      await suite.client.send(new PutObjectCommand({ Bucket: live, Key: probeKey, Body: 'p' }));
      await suite.client.send(
        new DeleteObjectsCommand({
          Bucket: live,
          Delete: { Objects: [{ Key: probeKey, ETag: `"${'0'.repeat(32)}"` }] },
        }),
      );
      const ignoresEtag = !(await keysUnder(suite.client, live, probeKey)).includes(probeKey);

      const keys = plateKeys(truth, PLATE_A);
      let victim: string | undefined;
      const newBytes = Buffer.from('written while the delete ran\n');
      const endpoint = await proxy({
        inspectBody: {
          match: isDeleteObjects,
          hook: async (_req, body) => {
            const named = new Set(namedKeys(body));
            if (victim || !keys.some((k) => named.has(k))) return;
            // A key of a later batch, overwritten before this batch reaches the store.
            victim = keys.find((k) => !named.has(k))!;
            await suite.client.send(
              new PutObjectCommand({ Bucket: live, Key: victim, Body: newBytes }),
            );
          },
        },
      });
      const d = await run('delete', ['--yes'], endpoint);
      assert.ok(victim, 'the proxy overwrote a key');
      assert.equal(d.code, 0, d.stdout + d.stderr);
      assert.match(d.stdout, /kept 1 changed key\(s\)/);
      assert.equal(
        (d.stdout + d.stderr).includes('offers no conditional delete'),
        ignoresEtag,
        d.stderr,
      );
      assert.deepEqual(await getBytes(suite.client, live, victim), newBytes);
      const left = (
        await Promise.all(sourcePrefixes(PLATE_A).map((pre) => keysUnder(suite.client, live, pre)))
      ).flat();
      assert.deepEqual(
        left.filter((k) => !k.endsWith('/')),
        [victim],
      );
      for (const s of SIBLINGS)
        for (const k of plateKeys(truth, s))
          assert.equal(md5hex(await getBytes(suite.client, live, k)), md5hex(truth.get(k)!));
      // The probe's scratch object is gone from the backup folder.
      const backup = await keysUnder(suite.client, live, `projects/${PROJECT}/workspace/backup/`);
      assert.deepEqual(
        backup.filter((k) => k.includes('probe')),
        [],
      );
    });

    test('a DeleteObjects sent again after its answer was lost counts its keys as gone', async () => {
      const { live, truth, run, proxy } = await setup([PLATE_B]);
      assert.equal((await run('archive')).code, 0);
      assert.equal((await run('verify')).code, 0);
      const keys = plateKeys(truth, PLATE_B);
      const attempts: IncomingMessage[] = [];
      const endpoint = await proxy({
        inspectBody: {
          match: isDeleteObjects,
          hook: (req, body) => {
            if (namedKeys(body).some((k) => keys.includes(k))) attempts.push(req);
          },
        },
        // The first attempt deletes the keys, and the SDK sees only a reset connection.
        dropAnswer: (req) => attempts[0] === req,
        // The second finds them gone. AWS may answer such a key, conditioned on an ETag it no
        // longer has, as not matching (as it answers a changed key) rather than as not found;
        // the answer is made so here, since neither test server conditions deletes on ETags.
        rewrite: (req) =>
          attempts.indexOf(req) > 0
            ? (xml) =>
                xml.replace(
                  /<Deleted>.*?<Key>([^<]*)<\/Key>.*?<\/Deleted>/g,
                  (_, key: string) =>
                    `<Error><Key>${key}</Key><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`,
                )
            : undefined,
      });
      const d = await run('delete', ['--yes'], endpoint);
      assert.equal(attempts.length, 2, 'the SDK sent the batch again');
      assert.equal(d.code, 0, d.stdout + d.stderr);
      assert.match(d.stdout, /2058\s+deleted/);
      assert.match(d.stdout, new RegExp(`${keys.length} already gone`));
      assert.doesNotMatch(d.stdout, /changed key/);
      const left = (
        await Promise.all(sourcePrefixes(PLATE_B).map((pre) => keysUnder(suite.client, live, pre)))
      ).flat();
      assert.deepEqual(
        left.filter((k) => !k.endsWith('/')),
        [],
      );
    });

    test('an archive removed after the delete was planned stops it: nothing deleted', async () => {
      const { live, cold, truth, run, proxy } = await setup([PLATE_B]);
      assert.equal((await run('archive')).code, 0);
      assert.equal((await run('verify')).code, 0);
      const tarballs = (await keysUnder(suite.client, cold, '')).filter((k) =>
        k.endsWith('.tar.gz'),
      );
      assert.equal(tarballs.length, 2);
      let removed = false;
      const endpoint = await proxy({
        // Every plate is planned before the run's one conditional-delete probe, and deleted
        // after it: the window in which another run could redo (first remove) the archive.
        onRequest: async (req) => {
          if (removed || req.method !== 'PUT' || !req.url?.includes('imgbackup-delete-probe'))
            return;
          removed = true;
          await suite.client.send(new DeleteObjectCommand({ Bucket: cold, Key: tarballs[0] }));
        },
      });
      const d = await run('delete', ['--yes'], endpoint);
      assert.ok(removed, 'the probe ran between the plan and the delete');
      assert.equal(d.code, 1, d.stdout + d.stderr);
      assert.match(d.stdout, /2058\s+failed.*changed since it was verified/);
      for (const k of plateKeys(truth, PLATE_B))
        assert.equal(md5hex(await getBytes(suite.client, live, k)), md5hex(truth.get(k)!), k);
    });
  });
}
