// archive's refusals and cleanup under races: keys tar cannot restore, objects listed without an
// ETag, another object written at a tarball key, stale multipart uploads of both tarball forms,
// cleanup that cannot delete, and lock holders that are dead, zombies or another process.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { IncomingMessage } from 'node:http';
import {
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BIN, plateArgs, runCli, serverEnv } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxyOptions } from '../helpers/fault-proxy.js';
import {
  BATCH,
  imageLike,
  PROJECT,
  readTree,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { getBytes, keysUnder, snapshot } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer, type ServerSuite } from '../helpers/suite.js';

const tag = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
const coldKey = (p: FixturePlate, group: string, ext = '.tar.gz') =>
  `imaging_analysis/${PROJECT}/plates/${tag(p)}_${group}${ext}`;
const backup = `projects/${PROJECT}/workspace/backup/`;
const marker = (p: FixturePlate) => `${backup}${tag(p)}_archive_in_progress.json`;
/** The key a request names (path-style URLs, as the tool sends them to a custom endpoint). */
const keyOf = (req: IncomingMessage) =>
  decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    .split('/')
    .slice(2)
    .join('/');
const query = (req: IncomingMessage) => new URL(req.url ?? '/', 'http://x').searchParams;

/** A plate's sources: a few small files and, with `big`, one incompressible multipart file. */
function plateFiles(p: FixturePlate, big = 0): GroundTruth {
  const [images, illum, analysis, backend] = sourcePrefixes(p) as [string, string, string, string];
  const m: GroundTruth = new Map([
    [`${images}r01c01f01p01-ch1.tiff`, imageLike(30_000, 1)],
    [`${images}sub/inside.txt`, Buffer.from('inside\n')],
    [`${illum}${p.plateId}_IllumDNA.npy`, imageLike(4_096, 2)],
    [`${analysis}A01-1/Cells.csv`, Buffer.from('ImageNumber,ObjectNumber\n1,1\n')],
    [`${backend}${p.plateId}.sqlite`, imageLike(20_000, 3)],
  ]);
  if (big > 0) m.set(`${images}big.bin`, randomBytes(big));
  return m;
}

/** The plate's tarballs, extracted by GNU tar, hold exactly the uploaded files, byte for byte. */
async function assertRestores(
  suite: ServerSuite,
  cold: string,
  p: FixturePlate,
  truth: GroundTruth,
) {
  const dir = await mkdtemp(join(suite.work, `x-${p.plateId}-`));
  for (const group of ['images_illum_analysis', 'backend']) {
    const file = join(suite.work, `${p.plateId}-${group}.tar.gz`);
    await writeFile(file, await getBytes(suite.client, cold, coldKey(p, group)));
    execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', dir]);
  }
  const tree = await readTree(dir);
  const files = [...truth].filter(([k]) => !k.endsWith('/'));
  assert.equal(tree.size, files.length, 'file count');
  for (const [k, bytes] of files)
    assert.ok(tree.get(k.slice('projects/'.length))?.equals(bytes), `${k} differs`);
}

async function openUploads(client: S3Client, bucket: string) {
  const r = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (r.Uploads ?? []).map((u) => u.Key);
}

async function exists(client: S3Client, bucket: string, key: string) {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

for (const name of testServerNames()) {
  describe(`archive refusals, races and cleanup against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-safety-');

    async function setup(plates: FixturePlate[], files: (p: FixturePlate) => GroundTruth) {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const truth = new Map(plates.map((p) => [p, files(p)] as const));
      for (const t of truth.values()) await uploadAll(suite.client, live, t);
      const csv = await writePlatesCsv(plates, await mkdtemp(join(suite.work, 'csv-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const args = ['archive', ...plateArgs({ csv, live, cold }), '--tmpdir', tmp];
      return { live, cold, truth, tmp, args };
    }

    async function viaProxy(args: string[], opts: Omit<FaultProxyOptions, 'rate'>) {
      const proxy = await startFaultProxy(suite.server.endpoint, { rate: 0, ...opts });
      try {
        return await runCli(args, { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint });
      } finally {
        await proxy.close();
      }
    }

    test('a file and a key below it, or its folder marker: the plate fails naming both, nothing is written', async () => {
      const P1: FixturePlate = { plateId: 'clash1', plateIdFull: 'clash1' };
      const P2: FixturePlate = { plateId: 'clash2', plateIdFull: 'clash2' };
      const OK: FixturePlate = { plateId: 'fine', plateIdFull: 'fine' };
      const { live, cold, tmp, args } = await setup([P1, P2, OK], (p) => {
        const m = plateFiles(p);
        const images = sourcePrefixes(p)[0]!;
        if (p === P1) {
          m.set(`${images}a`, Buffer.from('the file a\n'));
          m.set(`${images}a/b.tif`, Buffer.from('below a\n'));
        }
        if (p === P2) {
          m.set(`${images}c`, Buffer.from('the file c\n'));
          m.set(`${images}c/`, Buffer.alloc(0));
        }
        return m;
      });
      const r = await runCli(args, serverEnv(suite.server));
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const img = (p: FixturePlate) => sourcePrefixes(p)[0]!;
      assert.ok(
        r.stdout.includes(`"${img(P1)}a" and "${img(P1)}a/b.tif"`),
        `names both keys: ${r.stdout}`,
      );
      assert.ok(r.stdout.includes(`"${img(P2)}c" and "${img(P2)}c/"`), r.stdout);
      assert.match(r.stdout, /tar cannot both restore/);
      assert.match(r.stdout, /fine\s+archived/);
      for (const p of [P1, P2]) {
        assert.deepEqual(
          (await keysUnder(suite.client, cold, '')).filter((k) => k.includes(tag(p))),
          [],
        );
        assert.deepEqual(await keysUnder(suite.client, live, `${backup}${tag(p)}`), []);
      }
      assert.deepEqual(await readdir(tmp), []);
    });

    test('an object listed without an ETag fails its plate, naming it; nothing is written', async () => {
      const P: FixturePlate = { plateId: 'noetag', plateIdFull: 'noetag' };
      const { live, cold, args } = await setup([P], (p) => plateFiles(p));
      const victim = `${sourcePrefixes(P)[1]}${P.plateId}_IllumDNA.npy`;
      const before = [await snapshot(suite.client, live), await snapshot(suite.client, cold)];
      const r = await viaProxy(args, {
        rewrite: (req) =>
          req.method === 'GET' && query(req).get('list-type') === '2'
            ? (body) =>
                body
                  .split('<Contents>')
                  .map((c) =>
                    c.includes(`<Key>${victim}</Key>`) ? c.replace(/<ETag>[^<]*<\/ETag>/, '') : c,
                  )
                  .join('<Contents>')
            : undefined,
      });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.ok(
        r.stdout.includes(
          `objects listed without an ETag, so nothing can be proven about them: "${victim}"`,
        ),
        r.stdout,
      );
      assert.deepEqual(
        [await snapshot(suite.client, live), await snapshot(suite.client, cold)],
        before,
      );
    });

    for (const path of [
      'CompleteMultipartUpload',
      'single PUT',
      'CompleteMultipartUpload with --stream',
    ] as const) {
      test(`another object written at the tarball key before our ${path} (412): the plate fails, that object survives`, async () => {
        const P: FixturePlate = {
          plateId: `taken${path.length}`,
          plateIdFull: `taken${path.length}`,
        };
        // 9 MiB of noise: the images tarball is two parts (multipart); backend's is one PUT.
        const { live, cold, args: plain } = await setup([P], (p) => plateFiles(p, 9 * 1024 * 1024));
        const args = path.endsWith('--stream') ? [...plain, '--stream'] : plain;
        const target = coldKey(P, path === 'single PUT' ? 'backend' : 'images_illum_analysis');
        const other = Buffer.from('someone else archived this key meanwhile\n');
        const isFinal = (req: IncomingMessage) =>
          keyOf(req) === target &&
          (path === 'single PUT'
            ? req.method === 'PUT' && !query(req).has('partNumber')
            : req.method === 'POST' && query(req).has('uploadId'));
        let hit = 0;
        const r = await viaProxy(args, {
          onRequest: async (req) => {
            if (!isFinal(req)) return;
            hit += 1;
            await suite.client.send(
              new PutObjectCommand({ Bucket: cold, Key: target, Body: other }),
            );
          },
          // What a store that honours If-None-Match: * answers (s3rver does not).
          answer: (req) =>
            isFinal(req)
              ? {
                  status: 412,
                  code: 'PreconditionFailed',
                  message: 'At least one of the pre-conditions you specified did not hold',
                }
              : undefined,
        });
        assert.equal(hit, 1, 'the final write was sent once');
        const there = await getBytes(suite.client, cold, target).catch(() => undefined);
        assert.ok(there?.equals(other), `the other object is intact: ${r.stdout}`);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.ok(
          r.stdout.includes(
            `s3://${cold}/${target} was written by someone else during this archive`,
          ),
          r.stdout,
        );
        // Nothing else of ours is left: not the other tarball, not a sum, not the marker.
        assert.deepEqual(await keysUnder(suite.client, cold, ''), [target]);
        assert.deepEqual(await keysUnder(suite.client, live, backup), []);
        if (name === 'rgw') assert.deepEqual(await openUploads(suite.client, cold), []);
      });
    }

    test('a cleanup whose DeleteObjects fails: the error is shown, the marker stays, and a re-run redoes the plate', async () => {
      const P: FixturePlate = { plateId: 'nocleanup', plateIdFull: 'nocleanup' };
      const { live, cold, truth, args } = await setup([P], (p) => plateFiles(p));
      const script = `${backup}${tag(P)}_delete_s3.sh`;
      const denied = { status: 403, code: 'AccessDenied', message: 'Access Denied' };
      const r = await viaProxy(args, {
        answer: (req) =>
          (req.method === 'PUT' && keyOf(req) === script) ||
          (req.method === 'POST' && query(req).has('delete'))
            ? denied
            : undefined,
      });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      // Every output it wrote or tried to: two tarballs, four sums, two indexes, four listings,
      // the delete script (its PUT was refused, so it may be there); the marker is kept.
      assert.match(
        r.stdout,
        /Access Denied; and then could not remove 13 of its outputs \(AccessDenied\): "s3:\/\//,
      );
      assert.ok(
        r.stdout.includes(`"s3://${cold}/${coldKey(P, 'images_illum_analysis')}"`),
        r.stdout,
      );
      assert.ok(
        r.stdout.includes(
          `s3://${live}/${marker(P)} is kept, so a re-run of archive removes them and redoes the plate; or remove them by hand`,
        ),
        r.stdout,
      );
      assert.match(r.stderr, /failure cleanup could not remove these outputs/);
      assert.ok(await exists(suite.client, live, marker(P)), 'the in-progress marker stays');
      assert.ok(
        await exists(suite.client, cold, coldKey(P, 'backend')),
        'its partial output is there',
      );

      const again = await runCli(args, serverEnv(suite.server));
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /nocleanup\s+archived/);
      assert.equal(await exists(suite.client, live, marker(P)), false);
      await assertRestores(suite, cold, P, truth.get(P)!);
    });

    test('ListMultipartUploads denied: said once per run, with the fix; the plates still archive', async () => {
      const plates = ['nolist1', 'nolist2'].map((id) => ({ plateId: id, plateIdFull: id }));
      const { args } = await setup(plates, (p) => plateFiles(p));
      const r = await viaProxy([...args, '--max-procs', '2'], {
        answer: (req) =>
          req.method === 'GET' && query(req).has('uploads')
            ? { status: 403, code: 'AccessDenied', message: 'Access Denied' }
            : undefined,
      });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const said = r.stderr.split('\n').filter((l) => l.includes('ListMultipartUploads is denied'));
      assert.equal(said.length, 1, r.stderr);
      assert.match(said[0]!, /grant s3:ListBucketMultipartUploads/);
      assert.match(said[0]!, /AbortIncompleteMultipartUpload lifecycle rule/);
    });

    if (name === 'rgw') {
      // s3rver implements neither ListMultipartUploads nor AbortMultipartUpload.
      test('after an interrupted run with the other --no-compress setting: its uploads on .tar keys are aborted too', async () => {
        const P: FixturePlate = { plateId: 'otherform', plateIdFull: 'otherform' };
        const { live, cold, truth, args } = await setup([P], (p) => plateFiles(p));
        // What a run with --no-compress killed mid-upload leaves: its marker, and open uploads.
        await suite.client.send(
          new PutObjectCommand({ Bucket: live, Key: marker(P), Body: '{"pid":999999999}\n' }),
        );
        for (const group of ['images_illum_analysis', 'backend']) {
          const Key = coldKey(P, group, '.tar');
          const { UploadId } = await suite.client.send(
            new CreateMultipartUploadCommand({ Bucket: cold, Key }),
          );
          await suite.client.send(
            new UploadPartCommand({
              Bucket: cold,
              Key,
              UploadId,
              PartNumber: 1,
              Body: imageLike(1000, 9),
            }),
          );
        }
        assert.equal((await openUploads(suite.client, cold)).length, 2);
        const r = await runCli(args, serverEnv(suite.server));
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.deepEqual(await openUploads(suite.client, cold), [], 'no multipart upload left');
        await assertRestores(suite, cold, P, truth.get(P)!);
      });
    }

    test('a holder killed and never reaped (a zombie): an immediate re-run takes its lock and archives byte-exact', async () => {
      const P: FixturePlate = { plateId: 'zombie', plateIdFull: 'zombie' };
      const { live, cold, truth, tmp, args } = await setup([P], (p) => {
        const m = plateFiles(p);
        m.set(`${sourcePrefixes(p)[0]}huge.tiff`, imageLike(40 * 1024 * 1024, 7));
        return m;
      });
      // Killed at its first upload part: mid-plate, lock held, marker written.
      let onPid = (_: number) => {};
      const pidKnown = new Promise<number>((resolve) => (onPid = resolve));
      let onKilled = () => {};
      const killed = new Promise<void>((resolve) => (onKilled = resolve));
      let done = false;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        onRequest: async (req) => {
          if (done || req.method !== 'PUT' || !query(req).has('partNumber')) return;
          const pid = await pidKnown;
          if (done) return;
          done = true;
          process.kill(pid, 'SIGKILL');
          onKilled();
        },
      });
      // After exec, sleep is imgbackup's parent, and sleep never waits for a child.
      const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
      const cmd = `${q(process.execPath)} ${q(BIN)} ${args.map(q).join(' ')} >/dev/null 2>&1 & echo $!; exec sleep 600`;
      const parent = spawn('sh', ['-c', cmd], {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          AWS_CONFIG_FILE: '/nonexistent',
          AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
          ...serverEnv(suite.server),
          AWS_ENDPOINT_URL: proxy.endpoint,
        },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      try {
        const child = await new Promise<number>((resolve) =>
          parent.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
        );
        onPid(child);
        await killed;
        let state = '';
        for (let i = 0; i < 100 && state !== 'Z'; i++) {
          await new Promise((r) => setTimeout(r, 20));
          const stat = readFileSync(`/proc/${child}/stat`, 'utf8');
          state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
        }
        assert.equal(state, 'Z', 'the killed run is a zombie (kill(pid, 0) still succeeds on it)');
        assert.ok(existsSync(join(tmp, `${tag(P)}.lock`)), 'its lock is left behind');
        assert.ok(await exists(suite.client, live, marker(P)), 'and its in-progress marker');

        const again = await runCli(args, serverEnv(suite.server));
        assert.equal(again.code, 0, again.stdout + again.stderr);
        assert.match(again.stdout, /zombie\s+archived/);
        assert.deepEqual(await readdir(tmp), []);
        await assertRestores(suite, cold, P, truth.get(P)!);
        if (name === 'rgw') assert.deepEqual(await openUploads(suite.client, cold), []);
      } finally {
        parent.kill('SIGKILL'); // the sleep; init then reaps the zombie
        await proxy.close();
      }
    });

    test('a lock naming a live process with another start time (pid reused) is stale; with its own start time it holds', async () => {
      const P: FixturePlate = { plateId: 'reused', plateIdFull: 'reused' };
      const { cold, truth, tmp, args } = await setup([P], (p) => plateFiles(p));
      const other = spawn('sleep', ['600'], { stdio: 'ignore' });
      try {
        const pid = other.pid!;
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
        const lock = join(tmp, `${tag(P)}.lock`);
        await writeFile(lock, `${JSON.stringify({ pid, start, host: hostname() })}\n`);
        const held = await runCli(args, serverEnv(suite.server));
        assert.equal(held.code, 1, held.stdout + held.stderr);
        assert.match(held.stdout, new RegExp(`reused\\s+failed.*being archived by process ${pid}`));

        await writeFile(
          lock,
          `${JSON.stringify({ pid, start: String(Number(start) + 1), host: hostname() })}\n`,
        );
        const r = await runCli(args, serverEnv(suite.server));
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /reused\s+archived/);
        assert.deepEqual(await readdir(tmp), []);
        await assertRestores(suite, cold, P, truth.get(P)!);
      } finally {
        other.kill('SIGKILL');
      }
    });
  });
}
