// Many hosts, one plate set (issue 15): each worker is a separate process with its own hostname
// (unshare --uts) and tmpdir, so nothing local keeps two of them off a plate: only the S3 lease.
// On the stores that pass the lease probe (radosgw, moto); s3rver refuses --shard.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { plateArgs, runCli, serverEnv, type CliResult } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import {
  BATCH,
  plateObjects,
  PROJECT,
  readTree,
  sourcePrefixes,
  uploadAll,
  writePlatesCsv,
  type FixturePlate,
  type GroundTruth,
} from '../helpers/fixtures.js';
import { startHost, stopAllHosts, type Host } from '../helpers/host.js';
import { getBytes, snapshot } from '../helpers/s3.js';
import { testServerNames } from '../helpers/servers.js';
import { useServer, type ServerSuite } from '../helpers/suite.js';

/** Short, so a takeover (TTL + margin) costs seconds, not minutes. */
const TTL = '3s';
const TAKEOVER_MS = 3_000;

const plate = (i: number): FixturePlate => ({ plateId: `lp${i}`, plateIdFull: `lp${i}` });
const tagOf = (p: FixturePlate) => `${PROJECT}_${BATCH}_${p.plateId}`;
const coldKey = (p: FixturePlate, name: string) =>
  `imaging_analysis/${PROJECT}/plates/${tagOf(p)}_${name}.tar.gz`;

interface Case {
  live: string;
  cold: string;
  csv: string;
  plates: FixturePlate[];
  truth: Map<string, GroundTruth>;
}

/** N small plates; with `bigBytes`, each also holds one object that size (a multipart tarball). */
async function newCase(suite: ServerSuite, n: number, bigBytes = 0): Promise<Case> {
  const live = await suite.server.newBucket('live');
  const cold = await suite.server.newBucket('cold');
  const plates = Array.from({ length: n }, (_, i) => plate(i + 1));
  const truth = new Map<string, GroundTruth>();
  for (const p of plates) {
    const objs = plateObjects(p);
    if (bigBytes > 0) objs.set(`${sourcePrefixes(p)[0]}big.bin`, randomBytes(bigBytes));
    truth.set(p.plateId, objs);
    await uploadAll(suite.client, live, objs);
  }
  const csv = await writePlatesCsv(plates, await mkdtemp(join(suite.work, 'csv-')));
  return { live, cold, csv, plates, truth };
}

/** The archive command a worker of shard INDEX/COUNT runs. */
const archiveArgs = (c: Case, shard: string, extra: string[] = []) => [
  'archive',
  ...plateArgs({ csv: c.csv, live: c.live, cold: c.cold }),
  '--shard',
  shard,
  '--lease-ttl',
  TTL,
  '--json',
  ...extra,
];

type Line = { type?: string; plateId?: string; status?: string; message?: string };
const lines = (r: CliResult): Line[] =>
  r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line)
    .filter((l) => l.type === 'plate');

/**
 * Each plate's tarballs, extracted by GNU tar, hold exactly the files the test uploaded, byte
 * for byte; and no multipart upload is left in the cold bucket.
 */
async function assertArchivedExactly(suite: ServerSuite, c: Case): Promise<void> {
  const dir = await mkdtemp(join(suite.work, 'check-'));
  for (const p of c.plates) {
    const out = await mkdtemp(join(dir, `${p.plateId}-`));
    for (const name of ['images_illum_analysis', 'backend']) {
      const file = join(dir, `${p.plateId}_${name}.tar.gz`);
      await writeFile(file, await getBytes(suite.client, c.cold, coldKey(p, name)));
      execFileSync('tar', ['xzf', file, '--strip-components=1', '-C', out]);
    }
    const expected = new Map(
      [...c.truth.get(p.plateId)!]
        .filter(([k]) => !k.endsWith('/'))
        .map(([k, v]) => [k.slice('projects/'.length), v]),
    );
    assert.deepEqual(await readTree(out), expected, `${p.plateId}: tarballs hold its sources`);
  }
  const open = await suite.client.send(new ListMultipartUploadsCommand({ Bucket: c.cold }));
  assert.deepEqual(open.Uploads ?? [], [], 'no multipart upload left');
  const v = await runCli(
    ['verify', ...plateArgs({ csv: c.csv, live: c.live, cold: c.cold }), '--deep'],
    serverEnv(suite.server),
  );
  assert.equal(v.code, 0, v.stderr + v.stdout);
}

/** A worker host of shard `shard`, its S3 through `endpoint` (a proxy) if given. */
function worker(
  suite: ServerSuite,
  c: Case,
  name: string,
  shard: string,
  opts: { endpoint?: string; clockOffsetMs?: number } = {},
): Host {
  return startHost({
    hostname: name,
    args: archiveArgs(c, shard),
    env: {
      ...serverEnv(suite.server),
      ...(opts.endpoint ? { AWS_ENDPOINT_URL: opts.endpoint } : {}),
    },
    ...(opts.clockOffsetMs !== undefined ? { clockOffsetMs: opts.clockOffsetMs } : {}),
  });
}

/** Status per plate over several workers' runs: plateId → statuses seen. */
function statuses(runs: CliResult[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of runs)
    for (const l of lines(r)) out.set(l.plateId!, [...(out.get(l.plateId!) ?? []), l.status!]);
  return out;
}

for (const name of testServerNames('all').filter((n) => n !== 's3rver')) {
  describe(`many hosts, one lease per plate, against ${name}`, () => {
    const suite = useServer(name, 'imgbackup-lease-hosts-');
    after(stopAllHosts);

    test('two workers started for the same shard archive each plate exactly once', async () => {
      const c = await newCase(suite, 3);
      const hosts = [worker(suite, c, 'twin-a', '0/1'), worker(suite, c, 'twin-b', '0/1')];
      const runs = await Promise.all(hosts.map((h) => h.exited));
      for (const r of runs) assert.equal(r.code, 0, r.stderr + r.stdout);
      for (const [id, seen] of statuses(runs)) {
        assert.deepEqual(
          [...seen].sort(),
          ['archived', 'skipped'],
          `${id}: archived by one worker, found done by the other`,
        );
      }
      await assertArchivedExactly(suite, c);
    });

    test('a worker killed mid-plate (with its parent) is taken over after the TTL by its replacement', async () => {
      const c = await newCase(suite, 1, 20 * 1024 * 1024);
      let first: Host | undefined;
      let killed = false;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        onRequest: (req) => {
          if (!killed && first && req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '')) {
            killed = true;
            first.killGroup('SIGKILL');
          }
        },
      });
      try {
        first = worker(suite, c, 'pod-0-try-1', '0/1', { endpoint: proxy.endpoint });
        const r1 = await first.exited;
        assert.equal(
          r1.signal,
          'SIGKILL',
          `the first worker was killed mid-upload: ${JSON.stringify(r1)}`,
        );
      } finally {
        await proxy.close();
      }
      const started = performance.now();
      const r2 = await worker(suite, c, 'pod-0-try-2', '0/1').exited;
      assert.equal(r2.code, 0, r2.stderr + r2.stdout);
      assert.deepEqual(
        lines(r2).map((l) => l.status),
        ['archived'],
      );
      assert.ok(
        performance.now() - started >= TAKEOVER_MS,
        'another host waited out the lease before taking it',
      );
      await assertArchivedExactly(suite, c);
    });

    test('a worker frozen past its lease and thawed after another took over writes nothing more and does not exit 0', async () => {
      const c = await newCase(suite, 1, 20 * 1024 * 1024);
      let frozen: Host | undefined;
      let stopped = false;
      const proxy = await startFaultProxy(suite.server.endpoint, {
        rate: 0,
        onRequest: (req) => {
          if (!stopped && frozen && req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '')) {
            stopped = true;
            frozen.killGroup('SIGSTOP');
          }
        },
      });
      try {
        frozen = worker(suite, c, 'slow-node', '0/1', { endpoint: proxy.endpoint });
        while (!stopped) {
          // a worker that ends before its first part upload would leave this test waiting
          const ended = await Promise.race([
            frozen.exited.then(() => true),
            new Promise<false>((r) => setTimeout(() => r(false), 50)),
          ]);
          assert.ok(stopped || !ended, 'the worker ended before its first part upload');
        }
        const r2 = await worker(suite, c, 'fresh-node', '0/1').exited;
        assert.equal(r2.code, 0, r2.stderr + r2.stdout);
        const live = await snapshot(suite.client, c.live);
        const cold = await snapshot(suite.client, c.cold);
        frozen.killGroup('SIGCONT');
        const r1 = await frozen.exited;
        assert.notEqual(r1.code, 0, 'the fenced-off worker does not claim success');
        assert.equal(r1.code, 75, r1.stderr + r1.stdout);
        assert.deepEqual(
          await snapshot(suite.client, c.live),
          live,
          'nothing more in the live bucket',
        );
        assert.deepEqual(
          await snapshot(suite.client, c.cold),
          cold,
          'nothing more in the cold bucket',
        );
      } finally {
        await proxy.close();
      }
      await assertArchivedExactly(suite, c);
    });

    test('one worker whose clock is 10 minutes off changes nothing', async () => {
      const c = await newCase(suite, 3);
      const hosts = [
        worker(suite, c, 'clock-ahead', '0/1', { clockOffsetMs: 10 * 60_000 }),
        worker(suite, c, 'clock-right', '0/1'),
        worker(suite, c, 'clock-behind', '0/1', { clockOffsetMs: -10 * 60_000 }),
      ];
      const runs = await Promise.all(hosts.map((h) => h.exited));
      for (const r of runs) assert.equal(r.code, 0, r.stderr + r.stdout);
      for (const [id, seen] of statuses(runs))
        assert.deepEqual([...seen].sort(), ['archived', 'skipped', 'skipped'], id);
      await assertArchivedExactly(suite, c);
    });

    test('4 workers x 12 plates with kills and restarts converge: every plate archived once', async () => {
      const c = await newCase(suite, 12, 4 * 1024 * 1024);
      let seed = 7;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const runs: CliResult[] = [];
      let kills = 0;
      const shard = async (i: number) => {
        for (let attempt = 1; ; attempt++) {
          const h = worker(suite, c, `w${i}-try${attempt}`, `${i}/4`);
          // The first tries of two shards are killed at a random moment in their first seconds.
          if (attempt === 1 && i % 2 === 0) {
            await new Promise((r) => setTimeout(r, 300 + rand() * 1500));
            h.killGroup('SIGKILL');
            kills += 1;
          }
          const r = await h.exited;
          if (r.code === 0) return runs.push(r);
          assert.ok(r.signal === 'SIGKILL' || r.code === 75, r.stderr + r.stdout);
        }
      };
      await Promise.all([0, 1, 2, 3].map(shard));
      assert.equal(kills, 2);
      const done = statuses(runs);
      assert.deepEqual([...done.keys()].sort(), c.plates.map((p) => p.plateId).sort());
      for (const [id, seen] of done)
        assert.ok(
          ['archived', 'skipped'].includes(seen[0]!) && seen.length === 1,
          `${id}: ${seen}`,
        );
      await assertArchivedExactly(suite, c);
    });
  });
}
