// The plate lease against real stores: conditional PUTs, renewals, a retried PUT that landed,
// takeover only after TTL + margin, a dead holder on this host, a holder that cannot renew, the
// probe (s3rver fails it: --shard refused), and plan showing the lease.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, describe, test } from 'node:test';
import { ListMultipartUploadsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import pino from 'pino';
import {
  acquireLease,
  encodeLease,
  leaseMargin,
  parseLease,
  type LeaseBody,
  type LeaseParams,
} from '../../src/core/lifecycle/lease.js';
import { probeLeases } from '../../src/core/lifecycle/lease-probe.js';
import { LeaseHeldError, LeaseLostError } from '../../src/errors.js';
import { plateLayout } from '../../src/layout/layout.js';
import { httpStatus, S3Store } from '../../src/s3/store.js';
import { plateArgs, runCli, serverEnv } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import {
  BATCH,
  PLATE_A,
  plateObjects,
  PROJECT,
  uploadAll,
  writePlatesCsv,
} from '../helpers/fixtures.js';
import { getBytes, keysUnder, storeOver } from '../helpers/s3.js';
import { testServerNames, type TestServer } from '../helpers/servers.js';
import { useServer } from '../helpers/suite.js';

const quiet = pino({ level: 'silent' });
const layoutOpts = (live: string, cold: string) => ({
  projectName: PROJECT,
  batchId: BATCH,
  bucket: live,
  coldBucket: cold,
});
const TTL = 3_000;
const HOLD = TTL + leaseMargin(TTL);

/** Clients the tests made (keep-alive sockets would hold an in-process server open). */
const clients: S3Client[] = [];
/** Registered after useServer in each block, so it runs before the server is closed. */
const closeClients = () => {
  for (const c of clients.splice(0)) c.destroy();
};

const storeAt = (server: TestServer, endpoint?: string, maxAttempts?: number): S3Store =>
  storeOver(clients, server, endpoint, maxAttempts);

async function readBody(server: TestServer, bucket: string, key: string): Promise<LeaseBody> {
  const client = server.client();
  clients.push(client);
  const body = parseLease((await getBytes(client, bucket, key)).toString('utf8'));
  assert.ok(body, 'the lease object holds a lease');
  return body;
}

const other = (over: Partial<LeaseBody> = {}): LeaseBody => ({
  owner: { host: `${hostname()}-elsewhere`, pid: 1, runId: 'theirs', nonce: 'theirnonce' },
  generation: 4,
  archiveGeneration: 3,
  work: 'archive',
  ttlMs: TTL,
  state: 'held',
  renewal: 0,
  // an hour in the past by the wall clock: expired, if wall clocks counted (they do not)
  since: new Date(Date.now() - 3_600_000).toISOString(),
  expires: new Date(Date.now() - 3_600_000 + TTL).toISOString(),
  ...over,
});

for (const name of testServerNames('all').filter((n) => n !== 's3rver')) {
  describe(`plate leases against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-lease-');
    after(closeClients);
    let live: string;
    let cold: string;
    let params: (key: string) => LeaseParams;
    const L = () => plateLayout(layoutOpts(live, cold), PLATE_A);

    test('setup: the probe passes', async () => {
      live = await suite.server.newBucket('live');
      cold = await suite.server.newBucket('cold');
      const probe = await probeLeases(storeAt(suite.server), L(), quiet);
      assert.equal(probe.ok, true, JSON.stringify(probe));
      const form = probe.ok ? probe.form : 'quoted';
      params = (key) => ({
        bucket: live,
        key,
        work: 'archive',
        ttlMs: TTL,
        runId: 'run1',
        form,
        log: quiet,
      });
      // The probe's scratch key is gone.
      assert.deepEqual(await keysUnder(suite.client, live, ''), []);
    });

    test('create (generation 1), a second If-None-Match PUT and a wrong If-Match answer 412, renewals change the ETag', async () => {
      const store = storeAt(suite.server);
      const lease = await acquireLease(store, params('k1.lease'));
      try {
        assert.equal(lease.generation, 1);
        const first = await readBody(suite.server, live, 'k1.lease');
        assert.equal(first.state, 'held');
        assert.equal(first.owner.pid, process.pid);
        const refused = async (cond: Parameters<S3Store['putConditional']>[3]) =>
          httpStatus(
            await store.putConditional(live, 'k1.lease', 'x', cond).then(
              () => undefined,
              (e: unknown) => e,
            ),
          );
        assert.equal(await refused({ ifNoneMatch: true }), 412);
        assert.equal(await refused({ ifMatch: '0'.repeat(32), form: params('').form }), 412);
        await new Promise((r) => setTimeout(r, TTL / 2));
        const later = await readBody(suite.server, live, 'k1.lease');
        assert.ok(later.renewal >= 2, `renewed ${later.renewal} times in TTL/2`);
        assert.equal(later.owner.nonce, first.owner.nonce);
        lease.assertHeld();
      } finally {
        await lease.release();
      }
      const released = await readBody(suite.server, live, 'k1.lease');
      assert.equal(released.state, 'released');
      assert.equal(released.generation, 1);
      // A released lease is taken at once, with the next generation.
      const t0 = performance.now();
      const next = await acquireLease(store, { ...params('k1.lease'), work: 'verify' });
      assert.ok(performance.now() - t0 < 1_000);
      assert.equal(next.generation, 2);
      await next.release();
    });

    test('a held lease renewed by its holder is never taken over: the waiter gives up after TTL + margin', async () => {
      const store = storeAt(suite.server);
      const holder = await acquireLease(store, params('k2.lease'));
      const t0 = performance.now();
      try {
        await assert.rejects(
          acquireLease(store, { ...params('k2.lease'), runId: 'run2' }),
          (e: unknown) => e instanceof LeaseHeldError && /held by host /.test(e.message),
        );
        assert.ok(performance.now() - t0 >= HOLD, 'waited TTL + margin');
        holder.assertHeld();
        assert.equal((await readBody(suite.server, live, 'k2.lease')).generation, 1);
      } finally {
        await holder.release();
      }
    });

    test("another host's lease is taken over only after its ETag stayed unchanged for TTL + margin (whatever its wall-clock times say)", async () => {
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: 'k3.lease', Body: encodeLease(other()) }),
      );
      const t0 = performance.now();
      const lease = await acquireLease(storeAt(suite.server), params('k3.lease'));
      const waited = performance.now() - t0;
      try {
        assert.ok(waited >= HOLD, `took over after ${waited} ms, before TTL + margin`);
        assert.equal(lease.generation, 5);
        const body = await readBody(suite.server, live, 'k3.lease');
        assert.equal(body.owner.pid, process.pid);
        assert.equal(body.archiveGeneration, 3, 'the archive generation survives');
      } finally {
        await lease.release();
      }
    });

    test('a lease of this host whose process is gone is taken over at once', async () => {
      const dead = spawnSync('true').pid!;
      const body = other({ owner: { host: hostname(), pid: dead, runId: 'x', nonce: 'y' } });
      await suite.client.send(
        new PutObjectCommand({ Bucket: live, Key: 'k4.lease', Body: encodeLease(body) }),
      );
      const t0 = performance.now();
      const lease = await acquireLease(storeAt(suite.server), params('k4.lease'));
      assert.ok(performance.now() - t0 < TTL / 2, 'at once');
      assert.equal(lease.generation, 5);
      await lease.release();
    });

    test('a create whose answer was lost is recognised as ours by its nonce (the retry got 412)', async () => {
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        dropAnswer: (req) =>
          req.method === 'PUT' && (req.url ?? '').includes('k5.lease') && proxy.dropped === 0,
      });
      try {
        const t0 = performance.now();
        const lease = await acquireLease(storeAt(suite.server, proxy.endpoint), params('k5.lease'));
        assert.equal(proxy.dropped, 1, 'the first PUT landed and its answer was dropped');
        assert.ok(performance.now() - t0 < TTL, 'ours at once, not waited for as if another run');
        assert.equal(lease.generation, 1);
        await lease.release();
        assert.equal((await readBody(suite.server, live, 'k5.lease')).state, 'released');
      } finally {
        await proxy.close();
      }
    });

    test('a holder that cannot renew loses the lease before TTL − margin has passed: its signal fires', async () => {
      let failing = false;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        answer: (req) =>
          failing && req.method === 'PUT' && (req.url ?? '').includes('k6.lease')
            ? { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' }
            : undefined,
      });
      try {
        const lease = await acquireLease(
          storeAt(suite.server, proxy.endpoint, 1),
          params('k6.lease'),
        );
        const before = await readBody(suite.server, live, 'k6.lease');
        failing = true;
        const t0 = performance.now();
        await new Promise<void>((resolve) =>
          lease.signal.addEventListener('abort', () => resolve()),
        );
        const after = performance.now() - t0;
        assert.ok(after <= TTL - leaseMargin(TTL) + 200, `lost after ${after} ms`);
        assert.throws(() => lease.assertHeld(), LeaseLostError);
        await lease.release(); // a lost lease writes nothing, not even its release
        const now = await readBody(suite.server, live, 'k6.lease');
        assert.equal(now.state, 'held');
        assert.ok(now.renewal - before.renewal <= 1);
      } finally {
        await proxy.close();
      }
    });

    test('archive whose lease cannot be renewed stops: exit 75, nothing written after, no upload left; a re-run archives it', async () => {
      const live2 = await suite.server.newBucket('live');
      const cold2 = await suite.server.newBucket('cold');
      const objects = plateObjects(PLATE_A, { manyFiles: 5 });
      await uploadAll(suite.client, live2, objects);
      const csv = await writePlatesCsv([PLATE_A], await mkdtemp(join(suite.work, 'csv-')));
      const tag = `${PROJECT}_${BATCH}_${PLATE_A.plateId}`;
      let failing = false;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        // The first source GET stalls past the lease's deadline, and the lease's PUTs fail.
        onRequest: (req) => {
          if (req.method !== 'GET' || !(req.url ?? '').includes('/images/') || failing) return;
          failing = true;
          return new Promise((r) => setTimeout(r, HOLD));
        },
        answer: (req) =>
          failing && req.method === 'PUT' && (req.url ?? '').includes('.lease')
            ? { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' }
            : undefined,
      });
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const args = [
        'archive',
        ...plateArgs({ csv, live: live2, cold: cold2 }),
        '--tmpdir',
        tmp,
        '--lease-ttl',
        '3s',
        '--max-attempts',
        '1',
      ];
      let r;
      try {
        r = await runCli(args, { ...serverEnv(suite.server), AWS_ENDPOINT_URL: proxy.endpoint });
      } finally {
        await proxy.close();
      }
      assert.equal(r.code, 75, r.stderr + r.stdout);
      assert.match(r.stdout + r.stderr, /lease lost: its lease .* could not be renewed/);
      assert.deepEqual(await keysUnder(suite.client, cold2, ''), [], 'nothing in the cold bucket');
      const backup = `projects/${PROJECT}/workspace/backup/`;
      assert.deepEqual(await keysUnder(suite.client, live2, backup), [
        `${backup}${tag}_archive_in_progress.json`,
      ]);
      const uploads = await suite.client.send(new ListMultipartUploadsCommand({ Bucket: cold2 }));
      assert.deepEqual(uploads.Uploads ?? [], []);

      // Its process is gone: the re-run on this host takes the lease at once and redoes the plate.
      const again = await runCli(args, serverEnv(suite.server));
      assert.equal(again.code, 0, again.stderr + again.stdout);
      const body = await readBody(suite.server, live2, `${backup}${tag}.lease`);
      assert.equal(body.state, 'released');
      assert.equal(body.generation, 2);
      assert.equal(body.archiveGeneration, 2);

      // plan shows the lease (and "none" for a plate without one).
      const plan = await runCli(
        ['plan', ...plateArgs({ csv, live: live2, cold: cold2 }), '--json'],
        serverEnv(suite.server),
      );
      const line = plan.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { type?: string; details?: { lease?: unknown } })
        .find((l) => l.type === 'plate');
      assert.deepEqual(line?.details?.lease, {
        state: 'released',
        holder: `${hostname()} pid ${body.owner.pid}`,
        work: 'archive',
        generation: 2,
        since: body.since,
        expires: body.expires,
      });
    });
  });
}

for (const name of testServerNames('all').filter((n) => n !== 's3rver')) {
  describe(`the lease guards verify and delete, and generations fence outputs, against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-lease-guard-');
    after(closeClients);
    const tag = `${PROJECT}_${BATCH}_${PLATE_A.plateId}`;
    const backup = `projects/${PROJECT}/workspace/backup/`;

    async function archived() {
      const live = await suite.server.newBucket('live');
      const cold = await suite.server.newBucket('cold');
      const objects = plateObjects(PLATE_A, { manyFiles: 3 });
      await uploadAll(suite.client, live, objects);
      const csv = await writePlatesCsv([PLATE_A], await mkdtemp(join(suite.work, 'csv-')));
      const tmp = await mkdtemp(join(suite.work, 'tmp-'));
      const run = (cmd: string, more: string[] = []) =>
        runCli(
          [cmd, ...plateArgs({ csv, live, cold }), '--lease-ttl', '3s', ...more],
          serverEnv(suite.server),
        );
      const a = await run('archive', ['--tmpdir', tmp]);
      assert.equal(a.code, 0, a.stderr + a.stdout);
      return { live, cold, objects, run, tmp };
    }

    test('no delete while another run holds the plate: it waits TTL + margin, then exit 75 and nothing deleted', async () => {
      const { live, objects, run } = await archived();
      assert.equal((await run('verify')).code, 0);
      const probe = await probeLeases(
        storeAt(suite.server),
        plateLayout(layoutOpts(live, 'x'), PLATE_A),
        quiet,
      );
      const holder = await acquireLease(storeAt(suite.server), {
        bucket: live,
        key: `${backup}${tag}.lease`,
        work: 'verify',
        ttlMs: TTL,
        runId: 'other-run',
        form: probe.ok ? probe.form : 'quoted',
        log: quiet,
      });
      try {
        const t0 = performance.now();
        const d = await run('delete', ['--yes']);
        assert.equal(d.code, 75, d.stderr + d.stdout);
        assert.ok(performance.now() - t0 >= HOLD);
        assert.match(
          d.stdout + d.stderr,
          /held: its lease .* is held by host .*\(pid \d+, verify\) since /,
        );
        const left = await keysUnder(suite.client, live, `projects/${PROJECT}/${BATCH}/`);
        for (const k of objects.keys())
          if (k.startsWith(`projects/${PROJECT}/${BATCH}/`)) assert.ok(left.includes(k), k);
      } finally {
        await holder.release();
      }
      const d = await run('delete', ['--yes']);
      assert.equal(d.code, 0, d.stderr + d.stdout);
      // Released: the delete goes ahead (folder markers are never deleted).
      const images = `projects/${PROJECT}/${BATCH}/images/`;
      const files = [...objects.keys()].filter((k) => k.startsWith(images) && !k.endsWith('/'));
      assert.ok(files.length > 0);
      const after = await keysUnder(suite.client, live, images);
      assert.deepEqual(
        files.filter((k) => after.includes(k)),
        [],
      );
    });

    test("an output of another generation (a fenced-off writer's late object) makes the archive partial: verify fails, plan says partial, archive redoes it", async () => {
      const { live, run } = await archived();
      const key = `${backup}${tag}_file_listing_tar.txt`;
      const bytes = await getBytes(suite.client, live, key);
      await suite.client.send(
        new PutObjectCommand({
          Bucket: live,
          Key: key,
          Body: bytes,
          Metadata: { 'imgbackup-generation': '7' },
        }),
      );
      const v = await run('verify');
      assert.equal(v.code, 1, v.stderr + v.stdout);
      assert.match(
        v.stdout,
        /the archive is partial: its outputs were written by different lease generations \(1, 7\)|the archive is partial: its outputs were written by different lease generations \(7, 1\)/,
      );
      const p = await run('plan', ['--json']);
      const line = p.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { type?: string; status?: string })
        .find((l) => l.type === 'plate');
      assert.equal(line?.status, 'partial');
      const again = await run('archive', ['--tmpdir', await mkdtemp(join(suite.work, 'tmp-'))]);
      assert.equal(again.code, 0, again.stderr + again.stdout);
      assert.match(again.stdout, /archived/);
      assert.equal((await run('verify')).code, 0);
    });
  });
}
